# The agent's records: boot, heartbeats across a tick wrap, revenue, chain
# across reboots, journal fill policy. CPython and MicroPython (mprun.py).

from signet import FIRMWARE_VERSION, ec, record
from signet.agent import RecordRefused
from signet.builder import RecordBuilder
from signet.recorder import ROOM, hb_multiplier
from signet.signer import SoftwareSigner

try:
    from .agentkit import T0, WRAP, FakePlatform, Rig, make_config
    from .fwassert import raises
except ImportError:  # MicroPython runner: flat import path
    from agentkit import T0, WRAP, FakePlatform, Rig, make_config
    from fwassert import raises


def test_boot_record_then_ack_prunes():
    rig = Rig(platform=FakePlatform(rc="wdt"))
    try:
        assert rig.agent.stats["pending"] == 1
        rig.run_until(lambda: rig.gw.ack >= 1)
        boot = rig.gw.fields(1)
        assert boot["k"] == "boot" and boot["rc"] == "wdt" and boot["fw"] == FIRMWARE_VERSION
        assert boot["ls"] == 0 and boot["b"] == 1 and boot["p"] == bytes(32)
        assert boot["t"] == T0  # the network is up: the clock synced before the boot record
        rig.run_until(lambda: rig.agent.recorder.journal.acked >= 1)
        assert 1 not in [n for n, _ in rig.agent.recorder.journal.pending()]
    finally:
        rig.close()


def test_unknown_reset_cause_becomes_unknown():
    rig = Rig(platform=FakePlatform(rc="PWRON RESET"))
    try:
        rig.run_until(lambda: rig.gw.ack >= 1)
        assert rig.gw.fields(1)["rc"] == "unknown"
    finally:
        rig.close()


class _StopAfterSleeps(FakePlatform):
    """Asks the agent to stop from inside its nth sleep, as a SIGTERM handler would."""

    def __init__(self, sleeps):
        FakePlatform.__init__(self)
        self.sleeps = sleeps
        self.agent = None

    def sleep_ms(self, ms):
        FakePlatform.sleep_ms(self, ms)
        self.sleeps -= 1
        if self.sleeps == 0:
            self.agent.request_stop()


def test_run_steps_feeds_the_watchdog_and_returns_on_request_stop():
    platform = _StopAfterSleeps(50)
    rig = Rig(platform=platform)
    try:
        platform.agent = rig.agent
        rig.agent.run()  # returns: a test that hangs here failed
        assert platform.sleeps == 0 and platform.fed >= 50
        assert rig.gw.ack >= 1  # it did real work: the boot record went out and was acked
        rig.agent.stop()
        assert not rig.agent.link.connected
    finally:
        rig.close()


def test_heartbeats_cover_time_across_the_tick_wrap():
    platform = FakePlatform(ticks=WRAP - 2500)  # wraps 2.5 s after boot
    rig = Rig(platform=platform)
    try:
        rig.run_ms(6500)
        rig.run_until(lambda: rig.gw.ack == rig.agent.stats["last_n"])
        hbs = [rig.gw.fields(n) for n in sorted(rig.gw.records) if rig.gw.kinds[n] == "hb"]
        assert len(hbs) >= 5
        prev_u = 0
        for hb in hbs:
            assert 1000 <= hb["iv"] <= 1000 + 100, hb
            assert hb["u"] - prev_u == hb["iv"]  # contiguous: no time lost or invented
            assert hb["st"] == "ok"
            prev_u = hb["u"]
        assert hbs[-1]["u"] >= 6000  # u kept counting through the wrap
        # t is null before the first sync, unix ms after it
        assert all(hb["t"] is None or hb["t"] > 1700000000000 for hb in hbs)
        assert hbs[-1]["t"] is not None
    finally:
        rig.close()


def test_revenue_meter_event_signed_and_chained():
    rig = Rig()
    try:
        a = rig.agent
        n1 = a.record_revenue(250, "EUR", "pulse")
        n2 = a.record_revenue(-100, "EUR", "uart", "r-17")
        n3 = a.record_meter(1234, "Wh", "meter1")
        n4 = a.record_event("door_open", "front")
        assert (n2, n3, n4) == (n1 + 1, n1 + 2, n1 + 3)
        rig.run_until(lambda: rig.gw.ack >= n4)
        assert rig.gw.fields(n2)["am"] == -100 and rig.gw.fields(n2)["ref"] == "r-17"
        assert rig.gw.fields(n3)["unit"] == "Wh"
        assert rig.gw.fields(n4)["ev"] == "door_open"
        assert rig.gw.check_chain() >= 5
        assert rig.gw.equivocations == 0
    finally:
        rig.close()


def test_bad_record_refused_without_spending_a_number():
    rig = Rig()
    try:
        a = rig.agent
        n = a.record_revenue(100, "EUR", "pulse")
        for args in ((2.5, "EUR", "pulse"), (True, "EUR", "pulse"), (1, "eur", "pulse")):
            e = raises(RecordRefused, a.record_revenue, *args)
            assert e.startswith("bad_record: rev."), e
        assert a.record_revenue(100, "EUR", "pulse") == n + 1
        assert a.stats["refused"] == 3
    finally:
        rig.close()


def test_reboot_continues_sequence_and_chain():
    rig = Rig()
    try:
        rig.agent.record_revenue(1, "EUR", "pulse")
        last = rig.agent.stats["last_n"]
        rig.reboot(rc="soft")
        boot_n = rig.agent.stats["last_n"]
        assert boot_n > last
        rig.run_until(lambda: rig.gw.ack >= boot_n)
        boot = rig.gw.fields(boot_n)
        assert boot["k"] == "boot" and boot["ls"] == last and boot["b"] == 2
        assert boot["rc"] == "soft"
        assert rig.gw.check_chain() == len(rig.gw.records)
    finally:
        rig.close()


def test_unacked_records_resent_after_reboot():
    rig = Rig()
    try:
        rig.broker.up = False
        ns = [rig.agent.record_revenue(i + 1, "EUR", "pulse") for i in range(5)]
        rig.run_ms(2000)
        assert rig.gw.records == {}
        rig.reboot()
        rig.broker.up = True
        rig.run_until(lambda: rig.gw.ack >= rig.agent.stats["last_n"])
        for n in ns:
            assert rig.gw.kinds[n] == "rev"
        assert rig.gw.check_chain() == len(rig.gw.records)
    finally:
        rig.close()


def test_heartbeat_multiplier_steps():
    assert [hb_multiplier(f) for f in (0, 49, 50, 74, 75, 89, 90, 100)] == [1, 1, 2, 2, 4, 4, 8, 8]


def _fill_rig():
    # 6 segments of 2 KiB, 2 in reserve: heartbeats may use 4 (8 KiB).
    cfg = make_config(journal={"segment_bytes": 2048, "segments": 6, "reserve_segments": 2})
    rig = Rig(cfg=cfg)
    rig.gw.online = False  # broker takes everything, no gateway acks
    return rig


def _kinds(rig):
    kinds = []
    for n, rec in rig.agent.recorder.journal.pending(0):
        kinds.append((n, rec))
    return kinds


def test_journal_fill_policy_coarser_heartbeats_then_reserve_then_refusal():
    rig = _fill_rig()
    try:
        a = rig.agent
        # Heartbeats fill the space outside the reserve, coarser as it fills...
        rig.run_until(lambda: a.recorder.hb_skipped > 0, max_ms=900000)
        ivs = _hb_ivs(rig)
        assert ivs[0] <= 1100 and max(ivs) >= 8000, ivs  # x1 at first, x8 near full
        steps = [iv // 1000 for iv in ivs]
        assert steps == sorted(steps) and set(steps) == {1, 2, 4, 8}, ivs  # never finer again
        assert _events(rig) == ["journal_nearly_full"]
        rig.run_ms(30000)  # ...then wait: nothing more fits outside the reserve
        n_before = a.stats["last_n"]
        assert n_before == [n for n, _ in a.recorder.journal.pending(0)][-1]
        # Revenue goes into the reserve...
        taken = []
        try:
            while True:
                taken.append(a.record_revenue(100, "EUR", "pulse"))
        except RecordRefused as e:
            assert e.reason == "journal_full"
        assert len(taken) >= 3 and taken[0] == n_before + 1
        # ...then exactly one journal_full event, and further revenue is refused.
        assert raises(RecordRefused, a.record_revenue, 100, "EUR", "pulse") == "journal_full"
        ns = [n for n, _ in a.recorder.journal.pending(0)]
        assert ns == list(range(1, ns[-1] + 1))  # nothing overwritten, no number skipped
        assert ns[-1] == taken[-1] + 1
        assert _events(rig) == ["journal_nearly_full", "journal_full"]
        # The gateway returns: acks prune, revenue is accepted again, and the next
        # heartbeat covers the whole time heartbeats could not be stored.
        rig.gw.online = True
        rig.run_until(lambda: a.recorder.journal.acked >= ns[-1], max_ms=60000)
        assert a.record_revenue(100, "EUR", "pulse") > ns[-1]
        rig.run_until(lambda: rig.gw.ack >= a.stats["last_n"] and a.stats["last_n"] > ns[-1] + 2)
        hbs = [rig.gw.fields(n) for n in sorted(rig.gw.records) if rig.gw.kinds[n] == "hb"]
        assert max(hb["iv"] for hb in hbs) >= 30000
        assert rig.gw.check_chain() == len(rig.gw.records)
    finally:
        rig.close()


def _records(rig):
    try:
        from . import minicbor
    except ImportError:
        import minicbor
    from signet import cose

    for _n, rec in rig.agent.recorder.journal.pending(0):
        yield minicbor.loads(bytes(cose.payload_of(rec)))


def _events(rig):
    return [f["ev"] for f in _records(rig) if f["k"] == "evt"]


def _hb_ivs(rig):
    return [f["iv"] for f in _records(rig) if f["k"] == "hb"]


def test_largest_records_signed_journaled_and_delivered():
    # The recorder's buffer is sized for its largest record: the longest sale, meter
    # reading and event are signed, journaled, read back for sending and acked.
    rig = Rig()
    try:
        a = rig.agent
        n1 = a.record_revenue(-9007199254740991, "EUR", "s" * 32, "r" * 64)
        n2 = a.record_meter(9007199254740991, "u" * 16, "s" * 32)
        n3 = a.record_event("e" * 32, "m" * 64)
        rig.run_until(lambda: rig.gw.ack >= n3)
        assert rig.gw.fields(n1)["ref"] == "r" * 64
        assert rig.gw.fields(n2)["unit"] == "u" * 16
        assert rig.gw.fields(n3)["msg"] == "m" * 64
        assert rig.gw.check_chain() >= 4
    finally:
        rig.close()


def test_largest_record_of_every_kind_fits_the_recorders_buffer():
    # The recorder builds into a buffer of ROOM bytes (and the journal reads frames back
    # through it): every field at its longest and largest, on the curve with the longer
    # protected header, still fits.
    big = record.MAX_SAFE_INT
    largest = {
        "boot": {"rc": "r" * 32, "fw": "~" * 32, "ls": big},
        "hb": {"iv": 0xFFFFFFFF, "st": "s" * 32},
        "rev": {"am": -big, "cur": "EUR", "src": "s" * 32, "ref": "r" * 64},
        "meter": {"q": -big, "unit": "u" * 16, "src": "s" * 32},
        "evt": {"ev": "e" * 32, "msg": "m" * 64},
    }
    signer = SoftwareSigner("secp256k1", 0xC9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B12)
    try:
        builder = RecordBuilder(signer, ROOM)
        sizes = [
            len(builder.build(kind, big, 0xFFFFFFFF, big, big, bytes(32), largest[kind])[1])
            for kind in record.KINDS
        ]
    finally:
        ec.release_table(signer.curve)  # the agent tests' signer is a P-256 one
    assert max(sizes) <= ROOM, sizes
