# The record journal: signed records kept on flash until the gateway acks them.
#
# On flash (docs/JOURNAL.md has the full argument):
#   jNNNNNNNN.seg  segment files, NNNNNNNN = decimal id, higher = newer. Each
#                  holds whole frames and never grows past segment_bytes:
#                  "SJ" | length u16 | n u64 | record | CRC32(all before it), big-endian
#   journal.meta   "SJM1" | acked u64 | last n u64 | last payload SHA-256 | CRC32,
#                  replaced atomically before any segment is deleted
# Segments are append-only; only the newest can end in a torn frame, and open()
# cuts it off. Whole segments are deleted, oldest first, once every record in
# them is acked: never to make room.

import hashlib

from . import cose, forget

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


try:
    from binascii import crc32 as _crc32
except ImportError:  # a port built without it
    _crc32 = None

META = "journal.meta"
_M0 = const(0x53)  # "S"
_M1 = const(0x4A)  # "J"
_HEAD = const(12)  # magic 2 + length 2 + n 8
OVERHEAD = const(16)  # header + CRC32
FRAME_BYTES = const(1040)  # OVERHEAD + cose.MAX_RECORD_BYTES: the largest frame
_META_MAGIC = b"SJM1"
_META_SIZE = const(56)
_CHUNK = const(256)  # resync scan step
_ZERO_HASH = bytes(32)
# Segment table entries are small lists, mutated in place.
_ID = const(0)
_FIRST = const(1)
_LAST = const(2)
_COUNT = const(3)
_SIZE = const(4)
_DAMAGED = const(5)


def crc32(data, crc=0):
    """CRC-32 (IEEE, as zlib); bit-at-a-time where binascii lacks it: no table in RAM."""
    if _crc32 is not None:
        return _crc32(data, crc) & 0xFFFFFFFF
    crc ^= 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def _uint(buf, start, end):
    # int.from_bytes would need a slice: one allocation per call on MicroPython.
    v = 0
    for i in range(start, end):
        v = (v << 8) | buf[i]
    return v


def _put(buf, start, end, v):
    for i in range(end - 1, start - 1, -1):
        buf[i] = v & 0xFF
        v >>= 8


def segment_name(sid):
    return "j%08d.seg" % sid


class JournalFull(Exception):
    """No room for this record without deleting unacknowledged ones."""


class Journal:
    def __init__(self, files, segment_bytes=4096, segments=16, reserve_segments=2, buf=None):
        if not 0 <= reserve_segments < segments:
            raise ValueError("reserve_segments must be in 0..segments-1")
        if segment_bytes < OVERHEAD + cose.MAX_RECORD_BYTES:
            raise ValueError(
                "segment_bytes must hold one largest record (%d)"
                % (OVERHEAD + cose.MAX_RECORD_BYTES)
            )
        self.files = files
        self.segment_bytes = segment_bytes
        self.segments = segments
        self.reserve_segments = reserve_segments
        self.capacity_bytes = segments * segment_bytes
        # One frame buffer for every read and write, allocated once; or buf, shared
        # with a user that is done with it whenever the journal is called (the
        # recorder's: its record builder's scratch, the record copied out first).
        self._buf = bytearray(FRAME_BYTES) if buf is None else buf
        self._mv = memoryview(self._buf)
        self._reset()

    def _reset(self):
        self._segs = []  # [id, first n, last n, frames, bytes, damaged], oldest first
        self._next_id = 1
        self._runs = []  # [lo, hi]: pending n's, as runs of consecutive numbers
        self._last_n = 0
        self._last_hash = _ZERO_HASH
        self._open = False
        self.acked = 0
        self.damage = []  # (file, offset, bytes) that open() could not read
        self.torn_bytes = 0  # cut off the newest segment by open()

    # -- recovery --------------------------------------------------------------

    def open(self):
        """Scan the segments, cut a torn tail, finish an interrupted prune."""
        self._reset()
        from . import recovery  # once, at start: forgotten after it

        try:
            recovery.recover(self)
        finally:
            forget("recovery")
        self._open = True
        self._prune()  # a prune cut short between its deletions

    def _frames(self, f, size):
        """Good frames of one segment file as (offset, n, length), the frame in
        self._buf; after a bad frame, resumes at the next good one."""
        off = 0
        while off + OVERHEAD <= size:
            length = self._read_frame(f, off, size)
            if length:
                yield off, _uint(self._buf, 4, _HEAD), length
                off += OVERHEAD + length
            else:
                off = self._resync(f, off + 1, size)

    def _read_frame(self, f, off, size):
        # Returns the record length if a whole, CRC-valid frame starts at off.
        buf = self._buf
        mv = self._mv
        f.seek(off)
        if f.readinto(mv[:_HEAD]) != _HEAD or buf[0] != _M0 or buf[1] != _M1:
            return 0
        length = (buf[2] << 8) | buf[3]
        # A frame longer than the buffer cannot be read whole: damage, like a bad CRC
        # (the recorder's buffer holds the largest record it signs, all it journals).
        if not 0 < length <= len(buf) - OVERHEAD or off + OVERHEAD + length > size:
            return 0
        end = _HEAD + length
        if f.readinto(mv[_HEAD : end + 4]) != length + 4:
            return 0
        if crc32(mv[:end]) != _uint(buf, end, end + 4):
            return 0
        return length

    def _resync(self, f, off, size):
        # Next offset holding the magic, or size if none: the frame there is
        # checked by the caller, so a false match only costs one more step.
        buf = self._buf
        while off + OVERHEAD <= size:
            f.seek(off)
            got = f.readinto(self._mv[:_CHUNK])
            if not got:
                break
            for i in range(got - 1):
                if buf[i] == _M0 and buf[i + 1] == _M1:
                    return off + i
            off += got - 1
        return size

    # -- pending bookkeeping -----------------------------------------------------

    @property
    def pending_count(self):
        total = 0
        for lo, hi in self._runs:
            total += hi - lo + 1
        return total

    # -- writing -----------------------------------------------------------------

    def _room(self, frame, use_reserve):
        # 0: fits the newest segment, 1: needs a new segment, -1: no room.
        limit = self.segments if use_reserve else self.segments - self.reserve_segments
        segs = self._segs
        if segs and segs[-1][_SIZE] + frame <= self.segment_bytes:
            return 0 if len(segs) <= limit else -1
        return 1 if len(segs) < limit else -1

    def free_for(self, nbytes, use_reserve=False):
        return self._room(nbytes + OVERHEAD, use_reserve) >= 0

    def append(self, n, record, use_reserve=False):
        """Journal one signed record; durable when this returns."""
        if not self._open:
            raise RuntimeError("Journal.open() must run first")
        if n <= self._last_n:
            raise ValueError("n=%d is not above the newest journaled n=%d" % (n, self._last_n))
        payload = cose.payload_of(record)  # refuses anything but a firmware-built record
        length = len(record)
        frame = length + OVERHEAD
        room = self._room(frame, use_reserve)
        if room < 0:
            raise JournalFull(
                "journal full: %d of %d segments%s"
                % (len(self._segs), self.segments, "" if use_reserve else " outside the reserve")
            )
        # Everything that allocates happens before the write: a MemoryError
        # (low heap) then leaves the journal as it was, and after the write
        # nothing can fail halfway between flash and the state kept here.
        digest = hashlib.sha256(payload).digest()
        buf = self._buf
        buf[0] = _M0
        buf[1] = _M1
        _put(buf, 2, 4, length)
        _put(buf, 4, _HEAD, n)
        end = _HEAD + length
        buf[_HEAD:end] = record
        _put(buf, end, end + 4, crc32(self._mv[:end]))
        # A new segment's id is spent only once its file holds a frame: a failed
        # append is retried into the same file, where open() reports the garbage.
        seg = [self._next_id, n, n, 0, 0, False] if room else self._segs[-1]
        runs = self._runs
        new_run = n > self.acked and not (runs and runs[-1][1] == n - 1)
        if room:
            self._segs.append(seg)
        if new_run:
            runs.append([n, n - 1])  # widened to n once durable
        try:
            self.files.append(segment_name(seg[_ID]), self._mv[:frame])
        except BaseException:
            if room:
                self._segs.pop()
            if new_run:
                runs.pop()
            raise
        # Durable from here on.
        if room:
            self._next_id += 1
        if seg[_COUNT] == 0:
            seg[_FIRST] = n
        seg[_LAST] = n
        seg[_COUNT] += 1
        seg[_SIZE] += frame
        self._last_n = n
        self._last_hash = digest
        if n > self.acked:
            runs[-1][1] = n
        if room:
            try:
                self._prune()  # the previous newest segment may be fully acked by now
            except MemoryError:
                pass  # redone at the next ack or segment

    def last(self):
        """(n, payload SHA-256) of the newest record ever journaled: the next
        record's "p", and the boot record's "ls"."""
        return self._last_n, self._last_hash

    # -- acknowledgement and pruning -----------------------------------------------

    def ack(self, n):
        """The gateway durably stored everything up to n: prune what it covers."""
        if n <= self.acked:
            return  # stale or repeated ack: never move backwards
        self.acked = n
        runs = self._runs
        while runs and runs[0][1] <= n:
            runs.pop(0)
        if runs and runs[0][0] <= n:
            runs[0][0] = n + 1
        self._prune()

    def _prunable(self, k):
        # The newest segment stays: it is where last() lives and appends go.
        segs = self._segs
        if k >= len(segs) - 1:
            return False
        seg = segs[k]
        if seg[_DAMAGED]:
            # Unreadable frames may hold numbers up to the next segment's first.
            return segs[k + 1][_FIRST] - 1 <= self.acked
        return seg[_LAST] <= self.acked

    def _prune(self):
        count = 0
        while self._prunable(count):
            count += 1
        if not count:
            return
        # last() must survive the deletion of every segment that held it.
        self._write_meta()
        for _ in range(count):
            self.files.remove(segment_name(self._segs[0][_ID]))
            self._segs.pop(0)

    def _write_meta(self):
        meta = bytearray(_META_SIZE)
        meta[:4] = _META_MAGIC
        _put(meta, 4, 12, self.acked)
        _put(meta, 12, 20, self._last_n)
        meta[20:52] = self._last_hash
        _put(meta, 52, 56, crc32(memoryview(meta)[:52]))
        self.files.write_atomic(META, meta)

    # -- reading -------------------------------------------------------------------

    def pending(self, after=None, view=False):
        """(n, record bytes) with n > after (default: > acked), oldest first.

        Streams one frame at a time. Records journaled after the call may not
        be seen; a segment pruned meanwhile is skipped (it was acked).
        view=True yields a memoryview into the journal's frame buffer instead of
        a copy, valid until the next step or journal call: the catch-up batch
        copies each record into its own buffer, and a bytes object per record
        would be one more allocation, of a record's odd size, in the hot path.
        """
        if after is None:
            after = self.acked
        floor = 0
        for seg in list(self._segs):
            if not seg[_COUNT] or (seg[_LAST] <= after and not seg[_DAMAGED]):
                floor = seg[_LAST] if seg[_LAST] > floor else floor
                continue
            try:
                f = self.files.open_read(segment_name(seg[_ID]))
            except OSError:
                continue
            try:
                for _off, n, length in self._frames(f, seg[_SIZE]):
                    if n <= floor:
                        continue  # out of order: reported by open()
                    floor = n
                    if n > after:
                        rec = self._mv[_HEAD : _HEAD + length]
                        yield n, rec if view else bytes(rec)
            finally:
                f.close()

    # -- fill level ----------------------------------------------------------------

    @property
    def used_bytes(self):
        # A sealed segment's unused tail is lost space too: count it as used.
        segs = self._segs
        if not segs:
            return 0
        return (len(segs) - 1) * self.segment_bytes + segs[-1][_SIZE]

    @property
    def fill_percent(self):
        """Used bytes in % of the space outside the reserve (above 100 once in the reserve).

        The agent's fill policy keys on this: the reserve is for revenue only.
        """
        normal = (self.segments - self.reserve_segments) * self.segment_bytes
        return self.used_bytes * 100 // normal
