# Boot counter and sequence lease: the numbers a key must never reuse.
#
# One 24-byte file, replaced atomically (write temp, rename):
#   "SQS1" | boot u32 | lease_end u64 | reserved u32 (0) | CRC32 of the first 20 bytes
# lease_end is the highest n this device may have handed out. A number beyond
# it is handed out only after a new lease_end has been written, so after any
# crash the next start resumes at lease_end + 1: above every n ever signed.
# Numbers between the last one used and lease_end are skipped, and the boot
# record's "ls" declares them unused (docs/PROTOCOL.md section 6.3).
#
# Bound to a chip's monotonic counter (counter given, atecc608.ChipCounter:
# docs/JOURNAL.md section 3),
# lease number c covers n in ((c-1)*lease, c*lease], and a new lease first
# increments the counter (durable inside the chip, never decreasing), then
# writes the file. A restored old copy of the file (and journal) cannot bring
# the sequence back: the next lease still comes from the chip's higher counter.
# The boot counter is kept at least the lease number for the same reason.

from . import journal
from .record import MAX_SAFE_INT

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


NAME = "seq.state"
_MAGIC = b"SQS1"
_SIZE = const(24)


class StateError(Exception):
    """The state file exists but is unreadable: starting over could reuse numbers."""


class CounterExhausted(StateError):
    """The chip's monotonic counter reached its limit: no new lease can be bound to it."""


class SeqState:
    def __init__(self, files, lease=64, counter=None):
        if lease < 1:
            raise ValueError("lease must be at least 1")
        self.files = files
        self.lease = lease
        # read(), increment() -> int, limit (optional): atecc608.ChipCounter; None: flash only
        self.counter = counter
        self._count = 0  # the counter's value as last read or incremented
        self.boot = 0
        self._next = 0  # next n to hand out
        self._end = 0  # lease end as persisted: every n <= _end may be in use

    @property
    def lease_end(self):
        return self._end

    def _load(self):
        data = self.files.read(NAME)
        if data is None:
            return 0, 0
        if (
            len(data) != _SIZE
            or data[:4] != _MAGIC
            or journal.crc32(data[:20]) != int.from_bytes(data[20:], "big")
        ):
            raise StateError("%s is corrupt: refusing to restart the sequence" % NAME)
        return int.from_bytes(data[4:8], "big"), int.from_bytes(data[8:16], "big")

    def _save(self, boot, end):
        body = _MAGIC + boot.to_bytes(4, "big") + end.to_bytes(8, "big") + bytes(4)
        self.files.write_atomic(NAME, body + journal.crc32(body).to_bytes(4, "big"))
        self.boot = boot
        self._end = end

    def start(self, floor=0):
        """Count a boot and take a first lease; returns the new boot counter.

        floor: a number known to be used (the journal's newest n); the
        sequence resumes above it even if the state file was lost.
        """
        boot, end = self._load()
        base = end if end > floor else floor
        boot += 1
        if self.counter is None:
            end = base + self.lease
        else:
            self._count = self.counter.read()
            if base < self._count * self.lease:
                base = self._count * self.lease  # a restored file: the chip knows better
            end = self._bound_lease(base)
            # The boot counter follows the chip's too: a restored file's older b
            # would repeat a b already used (the gateway groups a boot's records by b).
            if boot < self._count:
                boot = self._count
        # The boot count and the first lease cost one write, not two.
        self._save(boot, end)
        self._next = base + 1
        return self.boot

    def _bound_lease(self, base):
        """Increment the chip counter until its lease ends above base; returns that end.

        Every n the device ever handed out is <= the counter's value times the lease
        (the counter is incremented before the file names the lease), so base is at
        least the counter's lease end after any restore: one increment, normally.
        """
        lease = self.lease
        count = self._count
        limit = getattr(self.counter, "limit", None)
        while count * lease <= base:
            if limit is not None and count >= limit:
                raise CounterExhausted(
                    "the chip's monotonic counter is at its limit (%d leases of %d numbers):"
                    " no sequence number can be bound to it; rotate to a key on a new chip"
                    % (limit, lease)
                )
            new = self.counter.increment()
            if new <= count:
                raise StateError(
                    "the chip's monotonic counter did not advance (%d after %d)" % (new, count)
                )
            count = new
            self._count = new
        return count * lease

    def next_n(self):
        if self.boot == 0:
            raise RuntimeError("SeqState.start() must run first")
        n = self._next
        if n > self._end:
            if n > MAX_SAFE_INT:
                raise OverflowError("sequence numbers exhausted")
            # With a counter: the chip first, then the file.
            end = n - 1 + self.lease if self.counter is None else self._bound_lease(n - 1)
            self._save(self.boot, end)  # durable before n is used
        self._next = n + 1
        return n
