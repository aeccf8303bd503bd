# The link on its own: Link(mqtt_cfg, platform, transport, device_id, uptime)
# driven through step(now, rec) with a stand-in recorder (journal, last_n, live),
# a transport that logs every call, and explicit times. CPython and MicroPython
# (host_tests/firmware/test_agent_micropython.py runs every test_agent_* module).

from signet.link import Link

try:
    from . import minicbor
    from .agentkit import FakePlatform, make_config
except ImportError:  # MicroPython runner: flat import path
    import minicbor
    from agentkit import FakePlatform, make_config

KID = "dev1"
STATUS = "signet/v1/dev1/status"
ACK = "signet/v1/dev1/ack"
REC = "signet/v1/dev1/rec"


def _ack(n):
    # The canonical {"n": n} a gateway retains (n < 24 here).
    return b"\xa1\x61\x6e" + bytes([n])


def _record(n, size):
    # Opaque bytes to the link; 0xd2 (COSE_Sign1's tag) tells them from a batch array.
    return b"\xd2" + bytes([n & 0xFF]) * (size - 1)


class Journal:
    """What the link uses of journal.Journal: acked, pending(after, view), ack(n)."""

    def __init__(self):
        self.records = []  # (n, bytes), oldest first
        self.acked = 0
        self.reads = 0  # pending() calls: a flash read on a device

    def pending(self, after=None, view=False):
        self.reads += 1
        return self._after(self.acked if after is None else after, view)

    def _after(self, after, view):
        for n, rec in self.records:
            if n > after:
                yield n, memoryview(rec) if view else rec

    def ack(self, n):
        self.acked = n
        self.records = [r for r in self.records if r[0] > n]


class Recorder:
    """What the link reads from recorder.Recorder: journal, last_n, live."""

    def __init__(self):
        self.journal = Journal()
        self.last_n = 0
        self.live = None

    def sign(self, n, size=40, live=True):
        rec = _record(n, size)
        self.journal.records.append((n, rec))
        self.last_n = n
        self.live = (n, rec) if live else None
        return rec


class Transport:
    """Logs every call as a tuple; fail = "connect", "poll", ... makes that call raise once."""

    def __init__(self):
        self.cb = None
        self.calls = []
        self.inbox = []  # (topic, payload) delivered by the next poll()
        self.fail = None
        self.error = OSError(110)  # what the failing call raises
        self.silent = False  # a hung broker: nothing comes back
        self.rx = 0  # what came back (acks, PUBACKs, PINGRESPs): the link's liveness proof
        self.pieces = []  # per catch-up batch: the sizes of the pieces it was written in

    def _call(self, *call):
        self.calls.append(call)
        if call[0] == self.fail:
            self.fail = None
            raise self.error

    def set_callback(self, cb):
        self.cb = cb

    def connect(self, will_topic, will_payload):
        self._call("connect", will_topic, will_payload)
        if self.silent:
            raise OSError(110)  # the TCP connection opens, no CONNACK comes

    def subscribe(self, topic):
        self._call("subscribe", topic)

    def publish(self, topic, payload, retain=False):
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            payload = self._collect(payload)
        self._call("publish", topic, bytes(payload), retain)  # payload may be a memoryview
        if not self.silent:
            self.rx += 1  # its PUBACK

    def _collect(self, batch):
        # A catch-up batch streams itself (link._Batch), as umqtt.simple's publish takes
        # it: its len() for the packet header first, then its pieces.
        size = len(batch)
        pieces = []

        def write(piece):
            pieces.append(bytes(piece))  # a view into a buffer the next piece reuses

        batch.write_to(write)
        self.pieces.append([len(p) for p in pieces])
        data = b"".join(pieces)
        assert len(data) == size, (len(data), size)
        return data

    def poll(self):
        self._call("poll")
        while self.inbox and not self.silent:
            topic, payload = self.inbox.pop(0)
            self.rx += 1
            self.cb(topic, payload)

    def ping(self):
        self._call("ping")
        if not self.silent:
            self.rx += 1  # its PINGRESP

    def disconnect(self):
        self._call("disconnect")

    def close(self):
        self._call("close")

    def sent(self):
        """Payloads published on the rec topic, in order."""
        return [c[2] for c in self.calls if c[0] == "publish" and c[1] == REC]

    def count(self, name):
        return len([c for c in self.calls if c[0] == name])


class Clock:
    def __init__(self):
        self.ms = 0

    def now(self):
        return self.ms


def _link(**mqtt):
    cfg = {"ack_wait_ms": 0, "keepalive_s": 10, "ack_timeout_s": 5}
    cfg.update(mqtt)
    platform = FakePlatform()
    transport = Transport()
    link = Link(make_config(mqtt=cfg).mqtt, platform, transport, KID, Clock())
    return link, transport, platform


def _records_in(message, records):
    """The records a message carries: itself if it is one, else its batch array."""
    if message in records:
        return [message]
    items = minicbor.loads(message)
    assert isinstance(items, list) and len(items) > 1, message[:4]
    return items


def test_connect_with_will_waits_for_the_retained_ack_then_resends_from_it():
    link, tr, _ = _link(ack_wait_ms=500)
    rec = Recorder()
    for n in (1, 2, 3):
        rec.sign(n)
    assert link.step(0, rec) is False
    assert tr.calls == [
        ("connect", STATUS, b"offline"),
        ("subscribe", ACK),
        ("publish", STATUS, b"online", True),
    ]
    assert link.connected and link.connects == 1
    link.step(100, rec)
    assert tr.sent() == []  # the retained ack may still be on its way
    tr.inbox.append((ACK, _ack(2)))
    link.step(200, rec)
    assert rec.journal.acked == 2
    assert tr.sent() == [rec.live[1]]  # only record 3, straight from RAM
    assert rec.journal.reads == 0
    assert (link.published, link.records_sent) == (1, 1)


def test_ack_wait_ends_without_an_ack():
    link, tr, _ = _link(ack_wait_ms=500)
    rec = Recorder()
    rec.sign(1)
    link.step(0, rec)
    link.step(499, rec)
    assert tr.sent() == []
    link.step(500, rec)  # no retained ack (a new device): send everything
    assert tr.sent() == [rec.live[1]]


def test_catch_up_batches_oldest_first_within_batch_bytes():
    link, tr, _ = _link(batch_bytes=2048)
    rec = Recorder()
    records = []
    for n in range(1, 15):
        records.append(rec.sign(n, 600 if n % 3 else 40, live=False))  # 3- and 2-byte heads
    link.step(0, rec)
    more = True
    steps = 0
    while more:
        more = link.step(10 + steps, rec)
        steps += 1
        assert len(tr.sent()) == steps  # one message per step
    carried = []
    for message in tr.sent():
        assert len(message) <= 2048
        carried.extend(_records_in(message, records))
    assert carried == records  # each exactly once, oldest first, byte for byte
    assert steps >= 3 and link.records_sent == 14 and link.published == steps
    assert rec.journal.acked == 0  # sent is not stored: only an ack prunes


def test_a_batch_of_24_or_more_records_and_a_lone_record():
    link, tr, _ = _link(batch_bytes=2048)
    rec = Recorder()
    records = [rec.sign(n, 20, live=False) for n in range(1, 31)]
    link.step(0, rec)
    assert link.step(1, rec) is False
    message = tr.sent()[0]
    assert message[:2] == b"\x98\x1e"  # array of 30: one-byte count
    assert minicbor.loads(message) == records
    lone = rec.sign(31, 20, live=False)  # newest, but not in RAM (e.g. after a reboot)
    link.step(2, rec)
    assert tr.sent()[1] == lone  # a batch of one goes out as the bare record
    assert rec.journal.reads == 4  # each batch read twice: sized, then written


def test_acks_are_checked_before_they_prune():
    link, tr, platform = _link()
    rec = Recorder()
    for n in (1, 2, 3):
        rec.sign(n)
    link.step(0, rec)
    link.step(1, rec)
    assert len(tr.sent()) == 1 and rec.journal.acked == 0
    for bad in (b"\xa1\x61\x6e\x18\x01", b'{"n": 1}'):
        tr.inbox.append((ACK, bad))
    tr.inbox.append((STATUS, _ack(3)))  # not the ack topic: not an ack
    link.step(2, rec)
    assert link.bad_acks == 2 and rec.journal.acked == 0
    tr.inbox.append((ACK, _ack(9)))  # beyond anything journaled
    link.step(3, rec)
    assert link.bad_acks == 3 and rec.journal.acked == 0
    assert platform.logs[-1] == "agent: ignored ack 9 beyond last record 3"
    tr.inbox.append((ACK, _ack(2)))
    link.step(4, rec)
    assert rec.journal.acked == 2 and [n for n, _ in rec.journal.records] == [3]
    tr.inbox.append((ACK, _ack(1)))
    link.step(5, rec)
    assert link.stale_acks == 1 and rec.journal.acked == 2


def test_resend_from_the_ack_after_ack_timeout():
    link, tr, _ = _link(ack_timeout_s=5)
    rec = Recorder()
    first = rec.sign(1)
    link.step(0, rec)
    link.step(0, rec)
    second = rec.sign(2)
    link.step(10, rec)
    assert tr.sent() == [first, second]
    link.step(4999, rec)
    assert link.resends == 0
    link.step(5000, rec)  # 5 s since the first unacked publish
    assert link.resends == 1 and len(tr.sent()) == 2
    link.step(5001, rec)
    assert minicbor.loads(tr.sent()[2]) == [first, second]  # everything above the ack


def test_backoff_doubles_with_jitter_and_resets_after_a_session():
    link, tr, _ = _link(backoff_min_ms=1000, backoff_max_ms=8000)
    rec = Recorder()
    now = 0
    delays = []
    for i in range(6):
        tr.fail = "connect"
        assert link.step(now, rec) is False
        assert tr.count("connect") == i + 1 and tr.calls[-1] == ("close",)
        delays.append(link.last_backoff_ms)
        link.step(now + delays[-1] - 1, rec)  # too early: no attempt
        assert tr.count("connect") == i + 1
        now += delays[-1]
    for i, base in enumerate((1000, 2000, 4000, 8000, 8000, 8000)):
        assert base // 2 <= delays[i] <= base, delays
    assert len(set(delays[3:])) > 1  # jittered at the cap
    assert link.disconnects == 0 and link.connects == 0  # failed attempts are not drops
    link.step(now, rec)
    assert link.connected and link.connects == 1
    tr.fail = "poll"
    link.step(now + 1, rec)  # the session dies
    assert not link.connected and link.disconnects == 1 and tr.calls[-1] == ("close",)
    assert 500 <= link.last_backoff_ms <= 1000  # back to the minimum


def test_no_network_asks_the_platform_and_backs_off():
    link, tr, platform = _link(backoff_min_ms=1000)
    rec = Recorder()
    platform.network = False
    link.step(0, rec)
    assert platform.network_calls == 1 and tr.calls == []
    link.step(link.last_backoff_ms - 1, rec)
    assert platform.network_calls == 1  # waits out the backoff
    platform.network = True
    link.step(5000, rec)
    assert link.connected


def test_ping_when_idle_for_half_the_keepalive():
    link, tr, _ = _link(keepalive_s=10, ack_timeout_s=60)
    rec = Recorder()
    link.step(0, rec)
    link.step(4999, rec)
    assert tr.count("ping") == 0
    link.step(5000, rec)
    assert tr.count("ping") == 1
    link.uptime.ms = 6000
    rec.sign(1)
    link.step(6000, rec)  # a publish counts as traffic...
    link.step(10999, rec)
    assert tr.count("ping") == 1
    link.step(11000, rec)  # ...from the time it went out
    assert tr.count("ping") == 2


def _run(link, rec, start, end, sign_every=0):
    """Step every 100 ms from start to end; returns the time of the first drop, or None."""
    for t in range(start, end, 100):
        if sign_every and t % sign_every == 0:
            link.uptime.ms = t
            rec.sign(rec.last_n + 1)
        was = link.connected
        link.step(t, rec)
        if was and not link.connected:
            return t
    return None


def test_a_silent_broker_is_dropped_within_the_keepalive_then_retried_with_backoff():
    link, tr, platform = _link(keepalive_s=10, ack_timeout_s=600, backoff_min_ms=1000)
    rec = Recorder()
    link.step(0, rec)
    # A broker that answers: an idle link pings every 5 s and is never dropped.
    assert _run(link, rec, 100, 60000) is None
    assert link.connected and tr.count("ping") == 11
    tr.silent = True  # hung at 60 s (SIGSTOP): the connection stays open, nothing comes back
    pings = tr.count("ping")
    dropped = _run(link, rec, 60000, 120000)
    # The last answer (the PINGRESP of the ping at 55 s, seen at 55.1 s) came before
    # the hang: dropped keepalive_s after it, once pings had found nobody.
    assert dropped == 65100, dropped
    assert tr.count("ping") > pings and link.disconnects == 1
    assert platform.logs[-1].startswith("agent: connection lost: OSError(")
    assert "no packet from the broker for 10 s" in platform.logs[-1]
    # Reconnect attempts get no CONNACK: each fails, waits a growing backoff.
    attempts = tr.count("connect")
    _run(link, rec, dropped + 100, dropped + 8000)
    assert 3 <= tr.count("connect") - attempts <= 4 and not link.connected
    tr.silent = False  # SIGCONT
    _run(link, rec, dropped + 8000, dropped + 20000)
    assert link.connected and link.connects == 2


def test_a_broker_that_takes_publishes_but_answers_nothing_is_probed_and_dropped():
    # Records go out every second, so the link is never idle: the probe ping must
    # come from the silence, not from the lack of traffic.
    link, tr, _ = _link(keepalive_s=10, ack_timeout_s=600)
    rec = Recorder()
    link.step(0, rec)
    assert _run(link, rec, 100, 30000, sign_every=1000) is None
    assert tr.count("ping") == 0  # PUBACKs prove it alive, publishes keep it from idling
    tr.silent = True
    dropped = _run(link, rec, 30000, 60000, sign_every=1000)
    assert dropped is not None and 30000 < dropped <= 41000, dropped
    assert tr.count("ping") == 1


def test_stop_says_offline_once_and_disconnects():
    link, tr, _ = _link()
    rec = Recorder()
    link.stop()
    assert tr.calls == []  # never connected: nothing to say
    link.step(0, rec)
    link.stop()
    assert tr.calls[-2:] == [("publish", STATUS, b"offline", True), ("disconnect",)]
    assert not link.connected
    link.stop()
    assert tr.count("disconnect") == 1


def test_low_memory_is_not_a_network_fault():
    link, tr, platform = _link(batch_bytes=2048, backoff_min_ms=1000)
    rec = Recorder()
    records = [rec.sign(n, 200, live=False) for n in range(1, 121)]
    link.step(0, rec)
    tr.fail = "publish"
    tr.error = MemoryError("memory allocation failed")
    assert link.step(1, rec) is False  # caught, not raised out of step()
    assert link.memory_errors == 1 and link.disconnects == 0  # not counted as a drop
    assert not link.connected and tr.calls[-1] == ("close",)  # the stream state is unknown
    assert platform.logs[-1] == "agent: low memory (1): reconnecting"
    link.step(1, rec)  # no backoff: reconnects at once
    assert link.connected and link.connects == 2 and link.last_backoff_ms == 0
    before = len(tr.sent())
    for i in range(100):
        if not link.step(2 + i, rec):
            break
    carried = []
    for message in tr.sent()[before:]:
        carried.extend(_records_in(message, records))
    assert carried == records  # every record, once, after the failure
    # A batch holds no memory of its size: it keeps its size after a MemoryError.
    assert len(tr.sent()[before]) > 1900


def test_a_catch_up_batch_is_written_in_pieces_never_held_whole():
    link, tr, _ = _link(batch_bytes=16384)
    rec = Recorder()
    records = [rec.sign(n, 900 if n == 7 else 200, live=False) for n in range(1, 91)]
    link.step(0, rec)
    while link.step(1, rec):
        pass
    messages = tr.sent()
    carried = []
    for message in messages:
        assert len(message) <= 16384
        carried.extend(_records_in(message, records))
    assert carried == records
    assert len(messages) == 2 and len(messages[0]) > 16000  # the batch is as large as allowed
    # Up to 256 bytes a piece, whole elements each; the 900-byte record alone.
    pieces = tr.pieces[0] + tr.pieces[1]
    assert pieces.count(900) == 1 and max(p for p in pieces if p != 900) <= 256, pieces
    assert rec.journal.reads == 4  # each batch read twice: sized, then written


def test_a_journal_that_changes_under_a_batch_breaks_the_message_not_the_journal():
    # The journal is read twice per batch (the length goes out first): if the second
    # read brings fewer records, the message is short of its announced length, so the
    # link raises and drops the connection instead of sending a truncated packet.
    link, tr, platform = _link(batch_bytes=2048)
    rec = Recorder()
    records = [rec.sign(n, 200, live=False) for n in range(1, 6)]
    link.step(0, rec)
    pending = rec.journal.pending
    calls = []

    def shrinking(after=None, view=False):
        calls.append(after)
        it = pending(after, view)
        if len(calls) == 2:  # the write: the journal lost a record meanwhile
            rec.journal.records = rec.journal.records[:-1]
        return it

    rec.journal.pending = shrinking
    tr_collect = tr._collect

    def collect(batch):
        try:
            return tr_collect(batch)
        except OSError:
            tr.calls.append(("write", "refused"))
            raise

    tr._collect = collect
    assert link.step(1, rec) is False
    assert ("write", "refused") in tr.calls and not link.connected and link.disconnects == 1
    assert platform.logs[-1].startswith("agent: connection lost: OSError")
    rec.journal.records = list(enumerate(records, 1))
    rec.journal.pending = pending
    link.step(link.last_backoff_ms + 2, rec)
    link.step(link.last_backoff_ms + 3, rec)
    assert tr.sent() and _records_in(tr.sent()[-1], records) == records


def test_an_error_handler_that_cannot_allocate_its_message_does_not_raise():
    link, tr, platform = _link()
    rec = Recorder()
    rec.sign(1)
    link.step(0, rec)

    def log(msg):
        raise MemoryError("no room for the log line")

    platform.log = log
    tr.fail = "poll"  # an OSError: the drop handler logs it
    assert link.step(1, rec) is False
    assert link.disconnects == 1 and not link.connected
    tr.fail = "connect"
    tr.error = MemoryError()
    assert link.step(link.last_backoff_ms + 2, rec) is False
    assert link.memory_errors == 1
