# Boot counter and sequence lease: the numbers a key must never reuse.
#
# One 24-byte file, replaced atomically (write temp, rename):
#   "SQS1" | boot u32 | lease_end u64 | reserved u32 (0) | CRC32 of the first 20 bytes
# lease_end is the highest n this device may have handed out. A number beyond
# it is handed out only after a new lease_end has been written, so after any
# crash the next start resumes at lease_end + 1: above every n ever signed.
# Numbers between the last one used and lease_end are skipped, and the boot
# record's "ls" declares them unused (docs/PROTOCOL.md section 6.3).

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


class SeqState:
    def __init__(self, files, lease=64):
        if lease < 1:
            raise ValueError("lease must be at least 1")
        self.files = files
        self.lease = lease
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
        # The boot count and the first lease cost one write, not two.
        self._save(boot + 1, base + self.lease)
        self._next = base + 1
        return self.boot

    def next_n(self):
        if self.boot == 0:
            raise RuntimeError("SeqState.start() must run first")
        n = self._next
        if n > self._end:
            if n > MAX_SAFE_INT:
                raise OverflowError("sequence numbers exhausted")
            self._save(self.boot, n - 1 + self.lease)  # durable before n is used
        self._next = n + 1
        return n
