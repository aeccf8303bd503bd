# Device persistence: file layer, journal, sequence lease, COSE payload slicing.
# Runs under CPython (pytest) and the MicroPython unix port (mprun.py, 64 KiB heap).

import binascii
import gc
import hashlib
import os
import sys

from signet import cose, ec, journal
from signet.fsio import Files
from signet.journal import OVERHEAD, Journal, JournalFull

try:
    from .fwassert import hexlify, raises
except ImportError:  # MicroPython runner: flat import path
    from fwassert import hexlify, raises

SEG = 1040  # the smallest segment allowed: one 1024-byte record plus framing
_dirs = []


def teardown_function(function=None):
    ec.release_table()
    while _dirs:
        path = _dirs.pop()
        for name in os.listdir(path):
            os.remove(path + "/" + name)
        os.rmdir(path)


def _files(sync=False):
    base = os.getenv("TMPDIR") or "/tmp"
    path = "%s/signet-fw-%s" % (base.rstrip("/"), hexlify(os.urandom(6)))
    _dirs.append(path)
    return Files(path, sync)


def _record(n, size=150):
    # Same fixed layout as a firmware-built ES256 record; the signature is filler.
    payload = bytearray(size - 93)
    for i in range(len(payload)):
        payload[i] = (n + i) & 0xFF
    head = b"\xd2\x84\x43\xa1\x01\x26\xa1\x04\x50" + bytes(16)
    return head + bytes((0x58, len(payload))) + payload + b"\x58\x40" + bytes(64)


def _payload_hash(record):
    return hashlib.sha256(cose.payload_of(record)).digest()


def _journal(files, **kw):
    j = Journal(files, kw.pop("segment_bytes", SEG), **kw)
    j.open()
    return j


def _segments(files):
    return sorted(name for name in files.listdir() if name.endswith(".seg"))


def test_crc32_fallback_matches_binascii():
    data = b"123456789" + bytes(range(256))
    fast = journal.crc32(data)
    saved = journal._crc32
    journal._crc32 = None
    try:
        assert journal.crc32(b"123456789") == 0xCBF43926  # the CRC-32 check value
        assert journal.crc32(data) == fast
        assert journal.crc32(data[9:], journal.crc32(data[:9])) == fast
    finally:
        journal._crc32 = saved


# Firmware-built hb records (key 12345, n=7): RecordBuilder output, checked live on CPython.
# Embedded because signing needs more heap than this module leaves in 64 KiB.
_HB_P256 = (
    "d28443a10126a10450df3e616449f81aa4b4cd2f63d65106d85845a9616201616b626862616e07617058"
    "200000000000000000000000000000000000000000000000000000000000000000"
    "6174f66175056176016269761903e8627374626f6b584059ecbdd4eaaed41512885b39824577af72e348"
    "63cba3af3d034d834477eb655b4bde8df3cfc5eeda8db0b29601c1928ac39ebfe4d3392abbf5a911c546"
    "cbe518"
)
_HB_K256 = (
    "d28444a101382ea1045023e862766880fb6e4755c5fefbf228175845a9616201616b626862616e076170"
    "58200000000000000000000000000000000000000000000000000000000000000000"
    "6174f66175056176016269761903e8627374626f6b5840f48b3d1d3f837071786fae6603ab923a47ceac"
    "720564e8bf48a97bbc24d83e8f5ace45b10085cb91fe295420178750aa81846b74b10d33480ed84298aa"
    "1c2edb"
)


def test_payload_of_slices_firmware_records():
    for curve, hexrec, at in (("p256", _HB_P256, 27), ("secp256k1", _HB_K256, 28)):
        rec = binascii.unhexlify(hexrec)
        if sys.implementation.name == "cpython":
            from signet.builder import RecordBuilder
            from signet.signer import SoftwareSigner

            fields = {"iv": 1000, "st": "ok"}
            built = RecordBuilder(SoftwareSigner(curve, 12345)).build(
                "hb", 7, 1, 5, None, bytes(32), fields
            )
            assert built[1] == rec
        payload = cose.payload_of(rec)
        assert bytes(payload) == rec[at : at + 0x45] and len(payload) == 0x45
    for bad in (b"", rec[:-1], rec + b"\x00", b"\xd3" + rec[1:], rec[:8] + b"\x51" + rec[9:]):
        assert raises(ValueError, cose.payload_of, bad)


def test_files_atomic_write_append_and_stale_tmp():
    files = _files()
    assert files.read("a") is None and files.size("a") == -1
    files.write_atomic("a", b"one")
    files.write_atomic("a", b"three")
    files.append("b", b"xy")
    files.append("b", b"z")
    assert files.read("a") == b"three" and files.read("b") == b"xyz" and files.size("b") == 3
    assert sorted(files.listdir()) == ["a", "b"]  # no .tmp left behind
    assert files.bytes_written == 3 + 5 + 3
    # A write_atomic cut before its rename: the old contents stand.
    files.append("a.tmp", b"new but not renamed")
    assert files.read("a") == b"three"
    files.remove("a")
    files.remove("a")  # missing is fine
    assert files.read("a") is None


def test_frame_format_on_flash():
    files = _files()
    j = _journal(files)
    rec = _record(5)
    j.append(5, rec)
    raw = files.read(_segments(files)[0])
    assert _segments(files) == ["j00000001.seg"]
    assert raw[:2] == b"SJ" and int.from_bytes(raw[2:4], "big") == len(rec)
    assert int.from_bytes(raw[4:12], "big") == 5 and raw[12:-4] == rec
    assert int.from_bytes(raw[-4:], "big") == journal.crc32(raw[:-4])
    assert len(raw) == len(rec) + OVERHEAD


def test_append_reopen_pending_and_last():
    files = _files()
    j = _journal(files)
    assert j.last() == (0, bytes(32)) and j.pending_count == 0
    for n in range(1, 31):
        j.append(n, _record(n))
    raises(ValueError, j.append, 30, _record(30))  # n must increase
    raises(ValueError, j.append, 31, b"\xd2\x84 not a record")
    j2 = _journal(files)  # a reboot: fresh objects, same directory
    assert j2.last() == (30, _payload_hash(_record(30)))
    assert j2.pending_count == 30 and j2.damage == [] and j2.torn_bytes == 0
    got = [n for n, rec in j2.pending() if rec == _record(n)]
    assert got == list(range(1, 31))
    assert [n for n, _ in j2.pending(after=27)] == [28, 29, 30]
    # view=True: the same records, each a view into the journal's one frame buffer
    # (the catch-up batch copies it before the next), no bytes object per record
    views = [(n, bytes(rec)) for n, rec in j2.pending(view=True) if isinstance(rec, memoryview)]
    assert views == [(n, _record(n)) for n in range(1, 31)]
    assert len(_segments(files)) == 5  # 6 frames of 166 bytes per 1040-byte segment


def test_ack_prunes_whole_segments_only():
    files = _files()
    j = _journal(files)
    for n in range(1, 20):
        j.append(n, _record(n))
    segs = _segments(files)
    j.ack(8)  # frames 1-6 fill segment 1; segment 2 holds 7-12
    assert _segments(files) == segs[1:]
    assert j.acked == 8 and j.pending_count == 11
    assert [n for n, _ in j.pending()][:2] == [9, 10]
    j.ack(5)  # lower than one already applied: ignored
    assert j.acked == 8
    j.ack(100)  # everything: the newest segment stays, it holds last()
    assert _segments(files) == segs[-1:] and j.pending_count == 0
    assert list(j.pending()) == []
    j2 = _journal(files)
    assert j2.acked == 100 and j2.last() == (19, _payload_hash(_record(19)))
    assert list(j2.pending()) == []


def test_last_survives_losing_every_segment():
    files = _files()
    j = _journal(files)
    for n in range(1, 7):
        j.append(n, _record(n))
    j.ack(6)
    j.append(7, _record(7))  # opens segment 2, prunes segment 1: meta written first
    assert _segments(files) == ["j00000002.seg"]
    files.remove("j00000002.seg")
    j2 = _journal(files)
    assert j2.last() == (7, _payload_hash(_record(7))) and j2.acked == 6


def test_torn_tail_is_cut_on_open():
    files = _files()
    j = _journal(files)
    for n in range(1, 4):
        j.append(n, _record(n))
    name = _segments(files)[0]
    good = files.size(name)
    for cut in (1, 13, 100, 165):  # inside the header, the record, the CRC
        files.append(name, (b"SJ" + bytes(200))[:cut])
        j = _journal(files)
        assert j.torn_bytes == cut and j.damage == []
        assert files.size(name) == good and j.last()[0] == 3
    j.append(4, _record(4))
    assert [n for n, _ in _journal(files).pending()] == [1, 2, 3, 4]


def test_corrupt_frame_is_reported_and_later_frames_kept():
    files = _files()
    j = _journal(files)
    for n in range(1, 15):
        j.append(n, _record(n))
    segs = _segments(files)  # 1-6, 7-12, 13-14
    del j
    gc.collect()  # this test's own 1 KiB buffers need a 64 KiB heap unfragmented
    for name, off in ((segs[0], 166), (segs[2], 0)):  # a sealed segment, then the newest
        raw = bytearray(files.read(name))
        raw[off + 40] ^= 0x55  # inside frame 2 (n=2), frame 1 (n=13)
        files.write_atomic(name, raw)
    j = _journal(files)
    assert j.damage == [(segs[0], 166, 166), (segs[2], 0, 166)]
    assert j.torn_bytes == 0 and files.size(segs[2]) == 2 * 166  # not cut: a frame follows
    ns = [n for n, _ in j.pending()]
    assert ns == [1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14]
    assert j.last() == (14, _payload_hash(_record(14)))
    j.ack(5)  # frames after the damage could hold 6: the damaged segment stays
    assert _segments(files) == segs
    j.ack(6)
    assert _segments(files) == segs[1:]


def test_journal_full_keeps_unacked_and_reserve_takes_more():
    files = _files()
    j = _journal(files, segments=4, reserve_segments=1)
    n = 0
    try:
        while True:
            n += 1
            j.append(n, _record(n))
    except JournalFull:
        pass
    assert n == 19 and len(_segments(files)) == 3  # 3 segments of 6 frames
    assert not j.free_for(150) and j.free_for(150, True)
    raises(JournalFull, j.append, n, _record(n))
    for k in range(6):
        j.append(n + k, _record(n + k), use_reserve=True)
    assert raises(JournalFull, j.append, n + 6, _record(n + 6), True)
    assert j.used_bytes == j.capacity_bytes - (SEG - 996)
    assert j.fill_percent == 131  # of the 3 segments outside the reserve: into the reserve
    ns = [m for m, rec in j.pending() if rec == _record(m)]
    assert ns == list(range(1, n + 6)) and j.pending_count == n + 5  # nothing deleted
    j.ack(12)  # two segments freed
    assert len(_segments(files)) == 2 and j.free_for(150)
    j.append(n + 6, _record(n + 6))
    assert [m for m, _ in j.pending()] == list(range(13, n + 7))


def test_seq_lease_persisted_before_use():
    # Imported here, not at the top: the journal's own tests run in a 64 KiB heap
    # without the sequence state's code.
    from signet.state import SeqState, StateError

    files = _files()
    state = SeqState(files, lease=4)
    raises(RuntimeError, state.next_n)
    assert state.start() == 1
    for expect in range(1, 11):
        n = state.next_n()
        assert n == expect
        on_flash = SeqState(files, 4)._load()  # what a crash right now would leave
        assert on_flash[0] == 1 and on_flash[1] >= n
    end = state.lease_end
    again = SeqState(files, lease=4)
    assert again.start() == 2 and again.next_n() == end + 1
    third = SeqState(files, lease=4)
    assert third.start(floor=500) == 3 and third.next_n() == 501
    files.write_atomic("seq.state", b"garbage")
    assert "corrupt" in raises(StateError, SeqState(files).start)


def test_write_amplification_steady_state():
    from signet.state import SeqState

    files = _files()
    j = _journal(files)
    state = SeqState(files)
    state.start()
    record_bytes = 0
    before = files.bytes_written
    for i in range(300):
        n = state.next_n()
        rec = _record(n, 120 + i % 60)
        j.append(n, rec)
        record_bytes += len(rec)
        if i % 5 == 4:
            j.ack(n)
    ratio = (files.bytes_written - before) * 100 // record_bytes
    print("journal write amplification x100:", ratio)
    assert ratio <= 300  # the target: 3 bytes written per record byte
    assert ratio < 120  # what the format gives: 16 bytes of framing + rare meta/lease writes


def test_heap_does_not_grow_with_records():
    from signet.state import SeqState

    files = _files()
    j = _journal(files)
    state = SeqState(files)
    state.start()
    rec = _record(1)

    def run(count):
        for _ in range(count):
            n = state.next_n()
            j.append(n, rec)
            if n % 4 == 0:
                for _m, _r in j.pending():
                    pass
                j.ack(n)

    run(50)  # warm up: segment table and runs at their steady size
    gc.collect()
    start = gc.mem_alloc() if hasattr(gc, "mem_alloc") else 0
    run(300)
    gc.collect()
    if hasattr(gc, "mem_alloc"):  # MicroPython: the heap figure that matters
        grown = gc.mem_alloc() - start
        print("journal heap growth over 300 records:", grown)
        assert grown < 512
    assert j.pending_count == 350 % 4 and len(_segments(files)) <= 2


def test_the_frame_buffer_holds_the_largest_frame():
    # FRAME_BYTES is a literal (const() takes no other module's constant): kept in step.
    assert journal.FRAME_BYTES == OVERHEAD + cose.MAX_RECORD_BYTES
