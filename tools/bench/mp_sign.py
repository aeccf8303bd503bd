# MicroPython side of `signet bench sign` (runs on the unix port, not CPython).
# Usage: micropython -X heapsize=H mp_sign.py MODE CURVE COUNT LIBDIR
#   MODE time: prints us_per_record over COUNT record builds+signatures
#   MODE heap: prints the smallest free heap in which one more signature succeeds
import gc
import sys
import time

_D = 0xC9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721
_T = 1767225600000
_FIELDS = {"am": 250, "cur": "EUR", "src": "pulse", "ref": "bench-0001"}


def _fill(leave, ballast):
    # Allocate blocks until only `leave` bytes stay free, largest first, so the
    # holes a fragmented heap has are filled too.
    size = 16384
    while size >= 32:
        while gc.mem_free() - size > leave:
            try:
                ballast.append(bytearray(size))
            except MemoryError:
                break
        size //= 2


def main():
    mode, curve, count, lib = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    sys.path.insert(0, lib)
    from signet import ec
    from signet.builder import RecordBuilder
    from signet.signer import SoftwareSigner

    gc.collect()
    before_table = gc.mem_alloc()
    ec.comb_table(ec.curve_by_name(curve))
    gc.collect()
    print("table_bytes=%d" % (gc.mem_alloc() - before_table))
    builder = RecordBuilder(SoftwareSigner(curve, _D))
    prev = bytes(32)
    builder.build("rev", 1, 1, 0, _T, prev, _FIELDS)
    gc.collect()
    print("at_rest_bytes=%d" % gc.mem_alloc())
    if mode == "time":
        start = time.ticks_us()
        for i in range(count):
            builder.build("rev", i + 2, 1, i, _T + i, prev, _FIELDS)
        print("us_per_record=%d" % (time.ticks_diff(time.ticks_us(), start) // count))
        return
    leave = 1024
    while leave < 65536:
        ballast = []
        _fill(leave, ballast)
        gc.collect()
        free = gc.mem_free()
        try:
            builder.build("rev", 2, 1, 0, _T, prev, _FIELDS)
        except MemoryError:
            ballast = None
            gc.collect()
            leave += 512
            continue
        print("signature_heap_bytes=%d" % free)
        return
    print("signature_heap_bytes=-1")


main()
