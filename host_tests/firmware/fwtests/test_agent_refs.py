# Idempotent sales: a retried sale (same src and ref) is answered with its
# original n and never signed twice; the window of recent refs is bounded and
# survives restarts (refwindow.py, docs/AGENT.md "Idempotent sales"). The
# power-cut proof is host_tests/firmware/test_agent_powercut.py.
# CPython and MicroPython (host_tests/firmware/test_agent_micropython.py).

from signet import cose
from signet.clock import Uptime, WallClock
from signet.fsio import Files
from signet.recorder import Recorder, RecordRefused
from signet.refwindow import ENTRY, NAME, RefWindow

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


def _recorder(directory, window=4, files=None):
    """A started Recorder on `directory`; the same directory again is a reboot."""
    cfg = make_config(journal={"ref_window": window})
    platform = FakePlatform()
    platform.network = False
    uptime = Uptime(platform.ticks_ms, platform.ticks_diff)
    wall = WallClock(platform, uptime, cfg.time["resync_s"] * 1000)
    files = files or Files(directory, sync=False)
    rec = Recorder(cfg, platform, signer(), files, uptime, wall)
    rec.start()
    return rec


def _revs(rec):
    """n of every journaled rev record, in order."""
    out = []
    for n, r in rec.journal.pending(0):
        if minicbor.loads(bytes(cose.payload_of(r)))["k"] == "rev":
            out.append(n)
    return out


def test_a_retried_sale_gets_its_first_n_and_nothing_is_signed():
    rec = _recorder(_dirs.new())
    n = rec.record_revenue(250, "EUR", "uart", "T-17")
    assert not rec.repeated
    signed, last = rec.signed, rec.last_n
    for _ in range(3):  # a terminal that missed the answer, three times
        assert rec.record_revenue(250, "EUR", "uart", "T-17") == n
        assert rec.repeated
    assert (rec.signed, rec.last_n, rec.repeats) == (signed, last, 3)
    # The key is (src, ref): the same reference from another source is another sale.
    m = rec.record_revenue(250, "EUR", "till", "T-17")
    assert m == last + 1 and not rec.repeated
    # Without a ref there is no key: every call is a new sale.
    assert rec.record_revenue(250, "EUR", "uart") == m + 1
    assert rec.record_revenue(250, "EUR", "uart") == m + 2
    assert _revs(rec) == [n, m, m + 1, m + 2]


def test_the_same_ref_with_another_amount_is_a_conflict_not_a_retry():
    rec = _recorder(_dirs.new())
    n = rec.record_revenue(250, "EUR", "uart", "T-1")
    last = rec.last_n
    msg = raises(RecordRefused, rec.record_revenue, 300, "EUR", "uart", "T-1")
    assert msg == "ref_conflict: ref T-1 was recorded as n=%d with 250 EUR" % n
    msg = raises(RecordRefused, rec.record_revenue, 250, "USD", "uart", "T-1")
    assert msg.startswith("ref_conflict: ")
    assert rec.last_n == last and rec.refused == 2 and not rec.repeated
    # A refund is its own sale, under its own reference.
    assert rec.record_revenue(-250, "EUR", "uart", "T-1/refund") == last + 1
    # A bad record is refused as such before the window is asked.
    assert raises(RecordRefused, rec.record_revenue, 250, "eur", "uart", "T-1").startswith(
        "bad_record"
    )


def test_the_window_survives_restarts_and_holds_the_last_n_sales():
    directory = _dirs.new()
    rec = _recorder(directory, window=4)
    ns = [rec.record_revenue(100 + i, "EUR", "uart", "S-%d" % i) for i in range(6)]
    for _ in range(2):  # two reboots: the window comes back from flash each time
        rec = _recorder(directory, window=4)
        for i in (2, 3, 4, 5):  # the last 4 sales are recognised
            assert rec.record_revenue(100 + i, "EUR", "uart", "S-%d" % i) == ns[i]
            assert rec.repeated
    # S-0 and S-1 fell out of the window: a "retry" of them now is a new sale.
    assert rec.record_revenue(101, "EUR", "uart", "S-1") > ns[-1]
    assert not rec.repeated


def test_the_window_file_stays_bounded():
    directory = _dirs.new()
    rec = _recorder(directory, window=4)
    files = rec.files
    for i in range(50):
        rec.record_revenue(1, "EUR", "uart", "B-%d" % i)
        assert 0 < files.size(NAME) <= 2 * 4 * ENTRY
    assert rec.record_revenue(1, "EUR", "uart", "B-49") == rec.last_n  # still the newest
    rec = _recorder(directory, window=4)
    assert rec.record_revenue(1, "EUR", "uart", "B-46") < rec.last_n and rec.repeated
    # A smaller window after a config change keeps the newest entries.
    rec = _recorder(directory, window=2)
    assert rec.record_revenue(1, "EUR", "uart", "B-49") < rec.last_n and rec.repeated
    last = rec.last_n
    assert rec.record_revenue(1, "EUR", "uart", "B-47") == last + 1


def test_compacting_the_window_does_not_copy_its_table():
    # The file is rewritten from the table itself, turned oldest-first in place: not
    # from two slices and their concatenation (three blocks of up to the table's size
    # in the middle of a sale). The ring's order survives the turn and a restart.
    import gc

    directory = _dirs.new()
    window = RefWindow(Files(directory, sync=False), 16)
    window.open(0)
    for i in range(1, 21):  # full and wrapped: the oldest entry is in slot 4
        window.add(window.key("uart", "C-%d" % i), i, i, "EUR")
    if hasattr(gc, "mem_alloc"):  # MicroPython: what the rewrite allocates
        gc.collect()
        gc.disable()
        before = gc.mem_alloc()
        window._rewrite()
        spent = gc.mem_alloc() - before
        gc.enable()
        # The file's open and rename only: 384 bytes on a 32-bit port, 736 on the
        # 64-bit one (before: 1,504 and 1,792, the table copied twice more).
        assert spent < 2 * 16 * ENTRY, spent
    else:
        window._rewrite()
    for reopened in (window, RefWindow(Files(directory, sync=False), 16)):
        if reopened is not window:
            reopened.open(20)
        assert reopened.find(window.key("uart", "C-4")) is None  # fell out of the window
        for i in range(5, 21):
            assert reopened.find(reopened.key("uart", "C-%d" % i)) == (i, i, "EUR")
    window.add(window.key("uart", "C-21"), 21, 21, "EUR")  # overwrites the oldest, C-5
    assert window.find(window.key("uart", "C-5")) is None
    assert window.find(window.key("uart", "C-6")) == (6, 6, "EUR")
    window.forget(21)  # taken back: C-21 gone, nothing else lost
    assert window.find(window.key("uart", "C-21")) is None
    assert window.find(window.key("uart", "C-20")) == (20, 20, "EUR")


def test_an_entry_whose_record_never_reached_the_journal_is_dropped_at_start():
    # Power lost after the window noted the sale and before its record was
    # journaled: the entry names an n above the journal's newest.
    directory = _dirs.new()
    rec = _recorder(directory)
    rec.record_revenue(250, "EUR", "uart", "A-1")
    files = Files(directory, sync=False)
    w = RefWindow(files, 4)
    w.open(rec.last_n)
    w.add(w.key("uart", "P-1"), rec.last_n + 1, 700, "EUR")  # the entry, not its record
    phantom = rec.last_n + 1
    rec = _recorder(directory)
    assert rec.last_n > phantom  # the boot record: that n is declared unused now
    rec = _recorder(directory)  # the dropped entry stays dropped (it was erased on flash)
    n = rec.record_revenue(700, "EUR", "uart", "P-1")  # the retry: recorded now, once
    assert n != phantom and not rec.repeated and _revs(rec)[-1] == n
    rec = _recorder(directory)
    assert rec.record_revenue(700, "EUR", "uart", "P-1") == n and rec.repeated


class FailingFiles(Files):
    """A flash that refuses segment appends while `broken` is set."""

    broken = False

    def append(self, name, data):
        if self.broken and name.endswith(".seg"):
            raise OSError(5)  # EIO
        Files.append(self, name, data)


def test_a_sale_whose_record_failed_is_not_remembered():
    directory = _dirs.new()
    files = FailingFiles(directory, sync=False)
    rec = _recorder(directory, files=files)
    files.broken = True
    raises(OSError, rec.record_revenue, 250, "EUR", "uart", "F-1")
    files.broken = False
    n = rec.record_revenue(250, "EUR", "uart", "F-1")  # the retry signs it: nothing was
    assert not rec.repeated and _revs(rec) == [n]
    assert rec.record_revenue(250, "EUR", "uart", "F-1") == n and rec.repeated
    rec = _recorder(directory)
    assert rec.record_revenue(250, "EUR", "uart", "F-1") == n and rec.repeated


def test_a_refused_sale_is_not_remembered_and_a_window_of_0_is_off():
    directory = _dirs.new()
    cfg = make_config(journal={"segment_bytes": 2048, "segments": 3, "reserve_segments": 1})
    platform = FakePlatform()
    uptime = Uptime(platform.ticks_ms, platform.ticks_diff)
    rec = Recorder(cfg, platform, signer(), Files(directory, sync=False), uptime,
                   WallClock(platform, uptime, 3600000))  # fmt: skip
    rec.start()
    i = 0
    while True:
        i += 1
        try:
            rec.record_revenue(i, "EUR", "uart", "J-%d" % i)
        except RecordRefused as e:
            assert e.reason == "journal_full"
            break
    rec.journal.ack(rec.last_n)  # room again: the refused sale is retried and recorded
    assert rec.record_revenue(i, "EUR", "uart", "J-%d" % i) == rec.last_n
    assert not rec.repeated
    off = _recorder(_dirs.new(), window=0)
    assert off.refs is None
    n = off.record_revenue(250, "EUR", "uart", "T-1")
    assert off.record_revenue(250, "EUR", "uart", "T-1") == n + 1
