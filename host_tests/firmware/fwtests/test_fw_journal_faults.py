# The journal when a write fails (low heap, a flash error): its state in RAM
# stays what flash holds. A module of its own: test_fw_journal.py already
# fills most of the 64 KiB MicroPython heap its runner gives one module.

import gc
import os

from signet.fsio import Files
from signet.journal import Journal

try:
    from .fwassert import hexlify, raises
except ImportError:  # MicroPython runner: flat import path
    from fwassert import hexlify, raises

_dirs = []


def teardown_function(function=None):
    while _dirs:
        path = _dirs.pop()
        for name in os.listdir(path):
            os.remove(path + "/" + name)
        os.rmdir(path)


def _files():
    path = "%s/signet-fwf-%s" % (
        (os.getenv("TMPDIR") or "/tmp").rstrip("/"),
        hexlify(os.urandom(6)),
    )
    _dirs.append(path)
    return Files(path, False)


def _journal(files):
    j = Journal(files, 1040)  # one 1 KiB record per segment at most
    j.open()
    return j


def _record(n):
    # A firmware record's fixed layout (150 bytes); the signature is filler.
    payload = bytes([n & 0xFF]) * 57
    return (
        b"\xd2\x84\x43\xa1\x01\x26\xa1\x04\x50"
        + bytes(16)
        + b"\x58\x39"
        + payload
        + b"\x58\x40"
        + bytes(64)
    )


def test_a_failed_write_leaves_the_journal_as_it_was():
    # Low heap or a flash error inside files.append: nothing was journaled, so the
    # journal's own state must not say otherwise (a retry appends the same n).
    files = _files()
    j = _journal(files)
    j.append(1, _record(1))
    j.ack(1)
    real = files.append
    failures = []

    def failing(name, data):
        failures.append(name)
        raise MemoryError("memory allocation failed")

    for n in (2, 8):  # into the open segment, then one that needs a new segment
        files.append = failing
        assert raises(MemoryError, j.append, n, _record(n))
        assert j.last()[0] == n - 1 if n == 2 else j.last()[0] == 7
        assert j.pending_count == (0 if n == 2 else 6)
        files.append = real
        if n == 2:
            for m in range(2, 8):  # fills the first segment (6 frames of 166 B)
                j.append(m, _record(m))
            continue
        j.append(8, _record(8))
    assert len(failures) == 2
    assert [m for m, _ in j.pending()] == [2, 3, 4, 5, 6, 7, 8]
    last = j.last()
    del j
    gc.collect()
    reopened = _journal(files)
    assert [m for m, _ in reopened.pending() if m > 1] == [2, 3, 4, 5, 6, 7, 8]
    assert reopened.damage == [] and reopened.torn_bytes == 0
    assert reopened.last() == last
