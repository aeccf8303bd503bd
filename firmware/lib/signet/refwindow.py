# Idempotent sales: the recent revenue references and the n each was journaled as.
#
# A caller that got no answer retries the sale with the same ref; the recorder looks
# the (src, ref) key up here first and answers with the original n instead of
# signing the sale twice (docs/AGENT.md, "Idempotent sales"). The window is the last
# `size` revenue records that carried a ref: bounded, and kept across restarts.
#
# RAM: one table of `size` entries of 31 bytes, a ring in age order (no object per
# entry). Flash: refs.log, the same entries, one appended per sale, the file replaced
# atomically by the table (oldest first) once it holds 2 x size entries. An entry:
#   key (8: SHA-256 of src NUL ref, truncated) | n u64 | am + 2^53 u64 | cur (3) | CRC32
#
# Crash safety (docs/JOURNAL.md): the entry is appended BEFORE the record it names is
# journaled, so a retry after a cut anywhere after the record's append finds it. A cut
# between the two leaves an entry whose n is above the journal's newest: open() drops
# it and replaces the file before any record can be journaled above it (else that n
# would look journaled later). A torn append is a partial entry at the end: ignored.
#
# May import: journal (crc32) only.

import hashlib

from .journal import crc32

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


NAME = "refs.log"
ENTRY = const(31)
_BODY = const(27)  # the bytes the CRC covers
_AM0 = 1 << 53  # added to amounts (|am| < 2^53) so they store as unsigned


def _n(buf, o):
    return int.from_bytes(buf[o + 8 : o + 16], "big")


class RefWindow:
    """The last `size` sales with a ref: open(), key(), find(), add() before journaling,
    forget() if journaling failed."""

    def __init__(self, files, size):
        self.files = files
        self.size = size
        self._t = bytearray(size * ENTRY)
        self._e = bytearray(ENTRY)  # the entry being added, on flash before in the table
        self._next = 0  # the slot add() writes: the oldest entry once the table is full
        self._full = False
        self._logged = 0  # entries in refs.log: the file is compacted at 2 x size

    def open(self, last_n):
        """Load refs.log; entries above last_n (the journal's newest n) were never journaled."""
        data = self.files.read(NAME) or b""
        count = len(data) // ENTRY
        phantom = False
        for k in range(count):
            o = k * ENTRY
            entry = data[o : o + ENTRY]
            if crc32(entry[:_BODY]) != int.from_bytes(entry[_BODY:], "big"):
                continue  # damaged: that sale's retry would be signed again, nothing worse
            if _n(entry, 0) > last_n:
                phantom = True
                continue
            self._put(entry)
        self._logged = count
        if phantom:
            self._rewrite()

    def _put(self, entry):
        o = self._next * ENTRY
        self._t[o : o + ENTRY] = entry
        self._next += 1
        if self._next == self.size:
            self._next = 0
            self._full = True

    def key(self, src, ref):
        """The 8-byte key of a sale: its source and its reference, together."""
        return hashlib.sha256((src + "\0" + ref).encode()).digest()[:8]

    def find(self, key):
        """(n, am, cur) of the newest sale with this key in the window, or None."""
        t = self._t
        k0 = key[0]
        best = None
        for o in range(0, len(t), ENTRY):
            if t[o] == k0 and t[o : o + 8] == key:
                n = _n(t, o)
                if n and (best is None or n > best[0]):
                    am = int.from_bytes(t[o + 16 : o + 24], "big") - _AM0
                    best = (n, am, bytes(t[o + 24 : o + _BODY]).decode())
        return best

    def add(self, key, n, am, cur):
        """Durably note that the sale `key` is about to be journaled as n."""
        if self._logged >= 2 * self.size:
            self._rewrite()  # compact first: a failure here has promised nothing yet
        e = self._e
        e[0:8] = key
        e[8:16] = n.to_bytes(8, "big")
        e[16:24] = (am + _AM0).to_bytes(8, "big")
        e[24:_BODY] = cur.encode()
        e[_BODY:] = crc32(e[:_BODY]).to_bytes(4, "big")
        self.files.append(NAME, e)
        self._logged += 1
        self._put(e)

    def forget(self, n):
        """The record n was not journaled after all (add() may have failed too): take its
        entry back, on flash as well, before any later record is journaled."""
        last = (self._next - 1) % self.size
        o = last * ENTRY
        if _n(self._t, o) == n:
            self._t[o : o + ENTRY] = bytes(ENTRY)
            self._next = last
            if last == self.size - 1:
                self._full = False
        self._rewrite()

    def _rewrite(self):
        # Oldest first: the order open() reads and the ring resumes in. A full ring
        # is turned oldest-first in RAM too and written from the table itself: the
        # two slices and their concatenation this took were the largest blocks a
        # sale allocated (2 x 0.5 KiB at the default size), every `size` sales.
        t = self._t
        if self._full and self._next:
            _rotate(t, self._next * ENTRY)
            self._next = 0
        size = len(t) if self._full else self._next * ENTRY
        self.files.write_atomic(NAME, memoryview(t)[:size])
        self._logged = size // ENTRY


def _rotate(b, k):
    # b becomes b[k:] + b[:k], in place, by three reversals: nothing allocated.
    _reverse(b, 0, k)
    _reverse(b, k, len(b))
    _reverse(b, 0, len(b))


def _reverse(b, i, j):
    j -= 1
    while i < j:
        b[i], b[j] = b[j], b[i]
        i += 1
        j -= 1
