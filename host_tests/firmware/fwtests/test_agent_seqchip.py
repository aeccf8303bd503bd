# The sequence lease bound to a chip's monotonic counter (state.py, docs/JOURNAL.md
# section 3): restoring an old copy of the state file and the journal never makes
# the device sign a number twice, and the boot record's ls stays the newest
# journaled n. CPython and MicroPython (host_tests/firmware/test_agent_micropython.py).

import hashlib

from signet import cose
from signet.atecc608 import ChipCounter
from signet.clock import Uptime, WallClock
from signet.fsio import Files
from signet.recorder import Recorder
from signet.state import NAME, CounterExhausted, SeqState, StateError

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


class FakeChip:
    """The chip's side of ChipCounter: a counter that only goes up and stops at the limit,
    kept outside the files (a restored flash image does not bring it back)."""

    def __init__(self, value=0, limit=2097151):
        self.value = value
        self.limit = limit
        self.increments = 0

    def counter_read(self, i):
        assert i == 1
        return self.value

    def counter_increment(self, i):
        assert i == 1
        if self.value >= self.limit:
            raise OSError("ATECC608 at 0x60: Counter failed (execution error)")
        self.value += 1
        self.increments += 1
        return self.value


def _recorder(directory, counter, platform=None):
    cfg = make_config()
    platform = platform or FakePlatform()
    uptime = Uptime(platform.ticks_ms, platform.ticks_diff)
    wall = WallClock(platform, uptime, cfg.time["resync_s"] * 1000)
    rec = Recorder(cfg, platform, signer(), Files(directory, sync=False), uptime, wall, counter)
    rec.start()
    return rec


def _fields(record):
    return minicbor.loads(bytes(cose.payload_of(record)))


def _snapshot(files):
    return dict((name, files.read(name)) for name in files.listdir())


def _restore(files, image):
    for name in files.listdir():
        files.remove(name)
    for name in image:
        files.write_atomic(name, image[name])


def test_each_lease_is_bound_to_the_counter_before_the_file_names_it():
    files = Files(_dirs.new(), sync=False)
    chip = FakeChip(value=5)
    state = SeqState(files, lease=4, counter=ChipCounter(chip, 1))
    assert state.start() == 6  # the boot counter is at least the lease number
    assert chip.value == 6 and state.lease_end == 24  # lease 6 covers 21..24
    seen = []
    for _ in range(10):
        n = state.next_n()
        seen.append(n)
        # What a crash right now would leave on flash is covered by the chip's counter.
        assert SeqState(files, 4)._load()[1] <= chip.value * 4
        assert n <= state.lease_end
    assert seen == list(range(21, 31))
    assert chip.value == 8 and state.lease_end == 32  # one increment per lease


def test_restoring_an_old_image_never_reuses_a_number():
    directory = _dirs.new()
    chip = FakeChip()
    counter = ChipCounter(chip, 1)
    rec = _recorder(directory, counter)
    for i in range(10):
        rec.record_revenue(100 + i, "EUR", "pulse")
    image = _snapshot(rec.files)  # an old copy of the flash: state file and journal
    old_last = rec.last_n
    old_hash = hashlib.sha256(bytes(cose.payload_of(rec.live[1]))).digest()
    signed = set(n for n, _ in rec.journal.pending())
    boots = [rec.boot]
    for _ in range(3):  # later boots sign far past the copy's lease
        for i in range(70):
            signed.add(rec.record_revenue(200 + i, "EUR", "pulse"))
        rec.journal.ack(rec.last_n)  # a gateway took them: the journal keeps room
        rec = _recorder(directory, counter)
        boots.append(rec.boot)
        signed.add(rec.last_n)
    highest = max(signed)
    _restore(rec.files, image)
    rec = _recorder(directory, counter)
    boot = _fields(rec.live[1])
    assert boot["k"] == "boot" and boot["n"] > highest  # above every number ever signed
    assert boot["b"] > max(boots)  # and a boot counter never used
    # ls is the newest record the restored journal holds, the chain goes on from it, and
    # everything from ls + 1 to n - 1 (what was signed after the copy, and the rest of the
    # leases) is declared unused: no record is claimed missing, none is signed twice.
    assert boot["ls"] == old_last and boot["p"] == old_hash
    for i in range(70):
        n = rec.record_revenue(300 + i, "EUR", "pulse")
        assert n not in signed


def test_without_the_counter_the_same_restore_reuses_numbers():
    # What the counter prevents: the flash-only lease comes back with the old file.
    directory = _dirs.new()
    rec = _recorder(directory, None)
    rec.record_revenue(100, "EUR", "pulse")
    image = _snapshot(rec.files)
    signed = set()
    for i in range(70):
        signed.add(rec.record_revenue(200 + i, "EUR", "pulse"))
    _restore(rec.files, image)
    rec = _recorder(directory, None)
    assert rec.last_n in signed  # the new boot record took a number already signed


def test_counter_exhaustion_is_a_clear_error():
    files = Files(_dirs.new(), sync=False)
    chip = FakeChip(value=2097150)
    state = SeqState(files, lease=4, counter=ChipCounter(chip, 1))
    state.start()  # the last lease the chip can give
    for _ in range(4):
        state.next_n()
    msg = raises(CounterExhausted, state.next_n)
    assert "monotonic counter is at its limit (2097151" in msg and "new chip" in msg
    assert chip.increments == 1  # the chip was not asked past its limit
    msg = raises(CounterExhausted, SeqState(files, lease=4, counter=ChipCounter(chip, 1)).start)
    assert "at its limit" in msg
    assert isinstance(CounterExhausted("x"), StateError)  # the agent's start catches it


def test_a_counter_that_does_not_advance_is_refused():
    class Stuck(FakeChip):
        def counter_increment(self, i):
            return self.value

    files = Files(_dirs.new(), sync=False)
    msg = raises(StateError, SeqState(files, counter=ChipCounter(Stuck(value=3), 1)).start)
    assert "did not advance (3 after 3)" in msg
    assert files.read(NAME) is None  # no lease was written
