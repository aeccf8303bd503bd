# The journal's recovery at open (journal.Journal.open): read the meta file, scan
# every segment, cut a torn tail off the newest, report what cannot be read.
#
# Apart from journal.py because it runs once, at start: Journal.open forgets this
# module afterwards, so its code does not stay in the heap for the agent's life
# (about 1 KiB on a 32-bit board, from .mpy). The formats are journal.py's (its
# header): a segment table entry is [id, first n, last n, frames, bytes, damaged],
# journal.meta is "SJM1" | acked u64 | last n u64 | last payload SHA-256 | CRC32.

import hashlib

from . import cose
from .journal import _META_MAGIC, META, OVERHEAD, _uint, crc32, segment_name

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_META_SIZE = const(56)
_HEAD = const(12)  # a frame's magic, length and n: the record follows


def recover(j):
    """Fill journal j's state from flash (j freshly reset)."""
    files = j.files
    names = files.listdir()
    for name in names:
        # A tail cut interrupted before its rename: the segment is intact.
        if name.endswith(".tmp") and _segment_id(name[:-4]) >= 0:
            files.remove(name)
    meta = files.read(META)
    if meta is not None:
        if (
            len(meta) == _META_SIZE
            and meta[:4] == _META_MAGIC
            and crc32(meta[:52]) == _uint(meta, 52, 56)
        ):
            j.acked = _uint(meta, 4, 12)
            j._last_n = _uint(meta, 12, 20)
            j._last_hash = bytes(meta[20:52])
        else:
            j.damage.append((META, 0, len(meta)))
    ids = [_segment_id(name) for name in names]
    ids = sorted(i for i in ids if i >= 0)
    newest = None  # (segment id, offset) of the newest good frame
    for k, sid in enumerate(ids):
        found = _scan(j, sid, k == len(ids) - 1)
        if found is not None:
            newest = (sid, found)
    if ids:
        j._next_id = ids[-1] + 1
    if newest is not None:
        _hash_frame(j, newest[0], newest[1])


def _segment_id(name):
    if len(name) != 13 or name[0] != "j" or not name.endswith(".seg"):
        return -1
    try:
        return int(name[1:9])
    except ValueError:
        return -1


def _scan(j, sid, final):
    # Returns the offset of the segment's newest good frame, or None.
    name = segment_name(sid)
    files = j.files
    size = files.size(name)
    first = last = count = 0
    damaged = False
    good_end = 0
    last_off = None
    floor = j._segs[-1][2] if j._segs else 0  # the previous segment's last n
    with files.open_read(name) as f:
        for off, n, length in j._frames(f, size):
            # Unreadable bytes before a good frame, or a frame out of order:
            # corruption, not a torn write (those only end a file). Report it.
            if off > good_end:
                damaged = True
                j.damage.append((name, good_end, off - good_end))
            good_end = off + OVERHEAD + length
            if n <= floor:
                damaged = True
                j.damage.append((name, off, OVERHEAD + length))
                continue
            floor = n
            last_off = off
            if count == 0:
                first = n
            last = n
            count += 1
            if n > j.acked:
                _add_pending(j._runs, n)
        tail = None
        if good_end < size:
            if final:
                f.seek(0)
                tail = f.read(good_end)
            else:
                damaged = True
                j.damage.append((name, good_end, size - good_end))
    if tail is not None:
        # Only an append can leave this: the last frame was cut by power loss.
        files.write_atomic(name, tail)
        j.torn_bytes += size - good_end
        size = good_end
    j._segs.append([sid, first, last, count, size, damaged])
    return last_off


def _add_pending(runs, n):
    if runs and runs[-1][1] == n - 1:
        runs[-1][1] = n
    else:
        runs.append([n, n])


def _hash_frame(j, sid, off):
    name = segment_name(sid)
    with j.files.open_read(name) as f:
        length = j._read_frame(f, off, j.files.size(name))
    n = _uint(j._buf, 4, _HEAD)
    if n > j._last_n:
        j._last_n = n
        payload = cose.payload_of(j._mv[_HEAD : _HEAD + length])
        j._last_hash = hashlib.sha256(payload).digest()
