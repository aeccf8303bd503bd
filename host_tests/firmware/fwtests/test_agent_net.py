# The agent's transport: acks, catch-up batches, resend, backoff, keepalive,
# socket timeouts. CPython and MicroPython (host_tests/firmware/test_agent_micropython.py).

from signet import cbor
from signet.link import parse_ack

try:
    from .agentkit import Rig, make_config
except ImportError:  # MicroPython runner: flat import path
    from agentkit import Rig, make_config

KID = None


def _ack_topic(rig):
    return rig.agent.link.topic_ack


def test_parse_ack_accepts_only_the_canonical_map():
    assert parse_ack(b"\xa1\x61\x6e\x00") == 0
    assert parse_ack(b"\xa1\x61\x6e\x17") == 23
    assert parse_ack(b"\xa1\x61\x6e\x18\x18") == 24
    assert parse_ack(b"\xa1\x61\x6e\x19\x01\x00") == 256
    assert parse_ack(b"\xa1\x61\x6e\x1b\x00\x1f\xff\xff\xff\xff\xff\xff") == 2**53 - 1
    for bad in (
        b"",
        b"\xa1\x61\x6e",
        b"\xa1\x61\x6e\x18\x05",  # not the shortest form
        b"\xa1\x61\x6e\x19\x00\x20",
        b"\xa1\x61\x6e\x1b\x00\x20\x00\x00\x00\x00\x00\x00",  # above 2^53 - 1
        b"\xa1\x61\x6e\x20",  # negative
        b"\xa1\x61\x6e\xf9\x3c\x00",  # float
        b"\xa1\x61\x6e\x05\x00",  # trailing byte
        b"\xa1\x61\x6d\x05",  # key "m"
        b"\xa2\x61\x6e\x05\x61\x6d\x05",  # extra key
        b'{"n": 5}',
    ):
        assert parse_ack(bad) is None, bad


def test_online_status_will_and_live_records_one_per_message():
    rig = Rig()
    try:
        rig.run_until(lambda: rig.agent.link.connected and rig.gw.ack >= 1)
        status = rig.agent.link.topic_status
        assert rig.broker.retained[status] == b"online"
        client = rig.broker.clients[0]
        assert (client.lw_topic, client.lw_msg, client.lw_retain, client.lw_qos) == (
            status,
            b"offline",
            True,
            1,
        )
        before = rig.gw.batches
        n = rig.agent.record_revenue(5, "EUR", "pulse")
        rig.run_until(lambda: rig.gw.ack >= n)
        assert rig.gw.batches == before  # live: a single record, no array
        rig.broker.drop_all()  # unclean: the broker publishes the will
        assert rig.broker.retained[status] == b"offline"
        rig.run_until(lambda: rig.agent.link.connects >= 2)
        assert rig.broker.retained[status] == b"online"
        rig.agent.stop()
        assert rig.broker.retained[status] == b"offline" and rig.broker.clean_disconnects == 1
    finally:
        rig.close()


def test_catch_up_in_bounded_batches_oldest_first():
    cfg = make_config(mqtt={"batch_bytes": 2048})
    rig = Rig(cfg=cfg)
    try:
        rig.broker.up = False
        ns = [rig.agent.record_revenue(i + 1, "EUR", "pulse", "r%d" % i) for i in range(40)]
        rig.run_ms(3000)
        assert rig.gw.records == {}
        rig.broker.up = True
        rig.run_until(lambda: rig.gw.ack >= ns[-1])
        assert rig.gw.batches >= 3
        assert max(rig.gw.batch_sizes) <= 2048
        assert rig.gw.duplicates == 0 and rig.gw.equivocations == 0
        for i, n in enumerate(ns):
            assert rig.gw.fields(n)["am"] == i + 1
        assert rig.gw.check_chain() == len(rig.gw.records)
    finally:
        rig.close()


def test_prune_only_on_ack_and_resend_after_ack_timeout():
    rig = Rig()
    try:
        rig.run_until(lambda: rig.agent.link.connected)
        rig.gw.online = False  # broker PUBACKs, no gateway stores anything
        ns = [rig.agent.record_revenue(7, "EUR", "pulse") for _ in range(3)]
        rig.run_ms(3000)  # published (PUBACKed) but not acked
        assert rig.agent.link.records_sent >= 3
        pending = [n for n, _ in rig.agent.recorder.journal.pending()]
        assert all(n in pending for n in ns)  # nothing pruned on PUBACK
        resends = rig.agent.link.resends
        rig.gw.online = True
        rig.run_until(lambda: rig.gw.ack >= ns[-1], max_ms=20000)
        assert rig.agent.link.resends > resends  # came back through the ack timeout
        rig.run_until(lambda: rig.agent.recorder.journal.acked >= ns[-1])
        assert [n for n, _ in rig.agent.recorder.journal.pending()] == []
    finally:
        rig.close()


def test_lost_puback_times_out_and_reconnects():
    rig = Rig()
    try:
        rig.run_until(lambda: rig.agent.link.connected)
        rig.broker.lose_pubacks = 1
        n = rig.agent.record_revenue(9, "EUR", "pulse")
        rig.run_until(lambda: rig.gw.ack >= n and rig.agent.link.connects >= 2)
        assert rig.agent.link.disconnects >= 1
    finally:
        rig.close()


def test_stale_ack_ignored():
    rig = Rig()
    try:
        ns = [rig.agent.record_revenue(1, "EUR", "pulse") for _ in range(4)]
        rig.run_until(lambda: rig.agent.recorder.journal.acked >= ns[-1])
        acked = rig.agent.recorder.journal.acked
        rig.broker.gateway.acking = False
        rig.broker.publish_retained(_ack_topic(rig), cbor.dumps({"n": 2}, 16))
        rig.run_ms(500)
        assert rig.agent.recorder.journal.acked == acked
        assert rig.agent.link.stale_acks >= 1
    finally:
        rig.close()


def test_malformed_and_impossible_acks_ignored():
    rig = Rig()
    try:
        rig.gw.acking = False
        rig.run_until(lambda: rig.agent.link.connected and rig.agent.link.records_sent >= 1)
        last = rig.agent.stats["last_n"]
        for payload in (b"\xa1\x61\x6e\x18\x01", b'{"n": 1}', b"\xa1\x61\x6e\x01\x00"):
            rig.broker.publish_retained(_ack_topic(rig), payload)
            rig.run_ms(300)
        assert rig.agent.link.bad_acks == 3
        rig.broker.publish_retained(_ack_topic(rig), cbor.dumps({"n": last + 1000}, 16))
        rig.run_ms(300)
        assert rig.agent.link.bad_acks == 4  # beyond anything journaled: would prune unsent records
        assert rig.agent.recorder.journal.acked == 0
        rig.broker.publish_retained(_ack_topic(rig), cbor.dumps({"n": 1}, 16))
        rig.run_until(lambda: rig.agent.recorder.journal.acked == 1)
    finally:
        rig.close()


def test_backoff_grows_with_jitter_and_resets():
    cfg = make_config(mqtt={"backoff_min_ms": 1000, "backoff_max_ms": 16000})
    rig = Rig(cfg=cfg)
    try:
        rig.broker.up = False
        delays = []
        while len(delays) < 8:
            refused = rig.broker.refused
            rig.step()
            if rig.broker.refused > refused:
                delays.append(rig.agent.link.last_backoff_ms)
        bases = [1000, 2000, 4000, 8000, 16000, 16000, 16000, 16000]
        for i, base in enumerate(bases):
            delay = delays[i]
            assert base // 2 <= delay <= base, (delays, bases)
        assert len(set(delays[4:])) > 1  # jittered, not all equal at the cap
        rig.broker.up = True
        rig.run_until(lambda: rig.agent.link.connected, max_ms=40000)
        rig.broker.drop_all()
        rig.run_until(lambda: not rig.agent.link.connected)
        assert rig.agent.link.last_backoff_ms <= 1000  # back to the minimum after a success
    finally:
        rig.close()


def test_wifi_down_asks_platform_to_reconnect():
    rig = Rig()
    try:
        rig.platform.network = False
        rig.run_ms(5000)
        assert rig.platform.network_calls >= 2 and not rig.agent.link.connected
        assert rig.broker.connects == 0
        rig.platform.network = True
        rig.run_until(lambda: rig.agent.link.connected, max_ms=30000)
    finally:
        rig.close()


def test_keepalive_ping_and_socket_timeout_reapplied():
    # keepalive 10 s: ping every 5 s when nothing else was sent
    rig = Rig(cfg=make_config(intervals={"heartbeat_s": 3600}))
    try:
        rig.run_until(lambda: rig.agent.link.connected)
        rig.run_ms(12000)
        assert rig.broker.pings >= 2
        sock = rig.broker.clients[0].raw
        # umqtt's check_msg() leaves the socket blocking; the transport turns
        # that into "blocking with a timeout" every time.
        assert sock.modes[-1] == "timeout" and sock.timeout == 2.0
        assert "blocking" not in sock.modes
    finally:
        rig.close()


def test_a_hung_broker_is_dropped_within_the_keepalive_and_nothing_is_lost():
    # keepalive 10 s and rare heartbeats: only the keepalive can notice the hang.
    cfg = make_config(
        intervals={"heartbeat_s": 3600}, mqtt={"backoff_min_ms": 500, "backoff_max_ms": 4000}
    )
    rig = Rig(cfg=cfg)
    try:
        rig.run_until(lambda: rig.agent.link.connected)
        rig.run_ms(7000)
        assert rig.broker.pings >= 1  # answered: still connected
        assert rig.agent.link.connected and rig.agent.link.disconnects == 0
        rig.broker.silent = True  # SIGSTOP: the TCP connection stays open, nothing answers
        hung = rig.platform.true_ms
        rig.run_until(lambda: not rig.agent.link.connected, max_ms=20000)
        assert rig.platform.true_ms - hung <= 10000 + 100  # within keepalive_s of the hang
        assert rig.agent.link.disconnects == 1
        # While it hangs, a sale is journaled and each attempt times out waiting for CONNACK.
        n = rig.agent.record_revenue(7, "EUR", "pulse", "H-1")
        rig.run_ms(15000)
        assert not rig.agent.link.connected and rig.broker.connects == 1
        rig.broker.silent = False  # SIGCONT
        rig.run_until(lambda: rig.gw.ack >= n)
        assert rig.agent.link.connects == 2
        assert rig.gw.fields(n)["ref"] == "H-1" and rig.gw.check_chain() == len(rig.gw.records)
    finally:
        rig.close()
