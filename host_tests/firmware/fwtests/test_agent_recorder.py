# The recorder on its own: Recorder(config, platform, signer, files, uptime,
# wall), start(), step(now), record_*(), and what it hands the link (journal,
# last_n, live). No transport exists here: signing never waits on a network.
# CPython and MicroPython (host_tests/firmware/test_agent_micropython.py).

import hashlib

from signet import FIRMWARE_VERSION, cose
from signet.clock import Uptime, WallClock
from signet.fsio import Files
from signet.recorder import Recorder, RecordRefused

try:
    from . import minicbor
    from .agentkit import FakePlatform, TempDirs, make_config, signer
    from .fwassert import raises
except ImportError:  # MicroPython runner: flat import path
    import minicbor
    from agentkit import FakePlatform, TempDirs, make_config, signer
    from fwassert import raises

_dirs = TempDirs()


def teardown_function(_):
    _dirs.tidy()


def _small():
    # 6 segments of 2 KiB, 2 in reserve: heartbeats may use 4 (8 KiB).
    return make_config(journal={"segment_bytes": 2048, "segments": 6, "reserve_segments": 2})


def _recorder(cfg=None, platform=None, directory=None):
    """A started Recorder and its uptime; the same directory is a reboot."""
    cfg = cfg or make_config()
    platform = platform or FakePlatform()
    if directory is None:
        directory = _dirs.new()
    uptime = Uptime(platform.ticks_ms, platform.ticks_diff)
    wall = WallClock(platform, uptime, cfg.time["resync_s"] * 1000)
    rec = Recorder(cfg, platform, signer(), Files(directory, sync=False), uptime, wall)
    rec.start()
    return rec, uptime


def _fields(record):
    return minicbor.loads(bytes(cose.payload_of(record)))


_sales = [0]


def _ref():
    # A new 60-byte reference per sale: a repeated one is a retry, answered, not signed.
    _sales[0] += 1
    return "x" * 52 + "%08d" % _sales[0]


def _journaled(rec):
    """(n, bytes) of every record above the ack, oldest first."""
    return [(n, bytes(r)) for n, r in rec.journal.pending()]


def test_start_signs_the_boot_record_and_the_newest_stays_live():
    platform = FakePlatform(rc="brownout")
    platform.network = False  # nothing here needs one
    rec, _ = _recorder(platform=platform)
    assert (rec.last_n, rec.signed, rec.boot) == (1, 1, 1)
    boot = _fields(rec.live[1])
    assert boot["k"] == "boot" and boot["n"] == 1 and boot["rc"] == "brownout"
    assert boot["fw"] == FIRMWARE_VERSION and boot["ls"] == 0
    assert _journaled(rec) == [(1, bytes(rec.live[1]))]
    n = rec.record_revenue(250, "EUR", "pulse", "r1")
    assert n == 2 and rec.last_n == 2 and rec.live[0] == 2
    # The link publishes live[1] instead of reading flash: it must be the journaled bytes.
    assert _journaled(rec)[-1] == (2, bytes(rec.live[1]))
    rev = _fields(rec.live[1])
    assert (rev["am"], rev["cur"], rev["src"], rev["ref"]) == (250, "EUR", "pulse", "r1")
    assert rev["p"] == hashlib.sha256(bytes(cose.payload_of(_journaled(rec)[0][1]))).digest()


def test_heartbeat_due_by_step_time_and_coarser_once_half_full():
    platform = FakePlatform()
    rec, uptime = _recorder(cfg=_small(), platform=platform)
    platform.advance(999)
    rec.step(uptime.now())
    assert rec.last_n == 1  # not due yet
    platform.advance(1)
    rec.step(uptime.now())
    hb = _fields(rec.live[1])
    assert (hb["k"], hb["iv"], hb["st"], hb["u"]) == ("hb", 1000, "ok", 1000)
    while rec.journal.fill_percent < 50:
        rec.record_revenue(100, "EUR", "pulse", _ref())
    last = rec.last_n
    platform.advance(1000)
    rec.step(uptime.now())
    assert rec.last_n == last  # at 50 % fill: every 2 x heartbeat_s
    platform.advance(1000)
    rec.step(uptime.now())
    hb = _fields(rec.live[1])
    assert hb["k"] == "hb" and hb["iv"] == 2000 and rec.last_n == last + 1


def test_journal_nearly_full_signed_once_per_episode():
    rec, uptime = _recorder(cfg=_small())

    def events():
        return [f["msg"] for f in map(_fields, (r for _, r in _journaled(rec))) if f["k"] == "evt"]

    while rec.journal.fill_percent < 75:
        rec.record_revenue(100, "EUR", "pulse", _ref())
    fill = rec.journal.fill_percent
    rec.step(uptime.now())
    assert events() == ["fill %d%%" % fill]
    rec.step(uptime.now())
    assert len(events()) == 1
    rec.journal.ack(rec.last_n)  # the gateway caught up: below 50 %, re-armed
    rec.step(uptime.now())
    while rec.journal.fill_percent < 75:
        rec.record_revenue(100, "EUR", "pulse", _ref())
    assert events() == []
    rec.step(uptime.now())
    assert len(events()) == 1 and _fields(rec.live[1])["ev"] == "journal_nearly_full"


def test_the_boot_record_waits_for_room_and_nothing_is_signed_before_it():
    cfg = _small()
    platform = FakePlatform()
    directory = _dirs.new()
    rec, _ = _recorder(cfg, platform, directory)
    while True:  # revenue goes on into the reserve, until refused
        try:
            rec.record_revenue(100, "EUR", "pulse")
        except RecordRefused as e:
            assert e.reason == "journal_full"
            break
    for _ in range(6):  # reboots: each boot record takes some of what room is left
        rec, uptime = _recorder(cfg, platform, directory)
        if rec.live is None:
            break
    assert rec.live is None, "a boot record always found room"
    last = rec.last_n
    assert platform.logs[-1] == "agent: journal full, boot record waits for an ack"
    assert raises(RecordRefused, rec.record_revenue, 5, "EUR", "pulse") == "journal_full"
    platform.advance(5000)
    rec.step(uptime.now())  # heartbeat and events wait too
    assert rec.last_n == last and rec.live is None and rec.events_dropped >= 1
    rec.journal.ack(last)  # room again, but the boot record comes first
    assert raises(RecordRefused, rec.record_revenue, 5, "EUR", "pulse") == "journal_full"
    assert rec.last_n == last
    rec.step(uptime.now())
    boot = _fields(rec.live[1])
    assert boot["k"] == "boot" and boot["ls"] == last and boot["b"] == rec.boot
    assert _journaled(rec) == [(rec.last_n, bytes(rec.live[1]))]


def test_step_syncs_the_clock_only_while_the_network_is_up():
    platform = FakePlatform()
    platform.network = False
    rec, uptime = _recorder(platform=platform)
    rec.step(uptime.now())
    assert rec.wall.syncs == 0 and platform.syncs == 0
    rec.record_revenue(1, "EUR", "pulse")
    assert _fields(rec.live[1])["t"] is None
    platform.network = True
    rec.step(uptime.now())
    assert rec.wall.syncs == 1
    rec.record_revenue(1, "EUR", "pulse")
    assert _fields(rec.live[1])["t"] == platform.true_ms
