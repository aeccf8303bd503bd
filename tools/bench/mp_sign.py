# MicroPython side of `signet bench sign` (runs on the unix port, not CPython).
# Usage: micropython -X heapsize=H mp_sign.py MODE CURVE COUNT LIBDIR [PORT BRIDGEDIR]
#   MODE time: prints us_per_record over COUNT record builds+signatures
#   MODE heap: prints the smallest free heap in which one more signature succeeds
#   MODE se-time / se-heap: the same with the key in an emulated ATECC608 (the real
#     driver over the I2C bridge on PORT, tools/runners/mp_i2c_bridge.py in BRIDGEDIR);
#     se-time also prints bridge_us_per_record, the time spent inside the bridge's
#     calls (socket round trips standing in for the bus), which the host takes out
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


def _smallest_heap(build):
    # The smallest free heap (512-byte steps from 1 KiB) in which build() succeeds.
    leave = 1024
    while leave < 65536:
        ballast = []
        _fill(leave, ballast)
        gc.collect()
        free = gc.mem_free()
        try:
            build()
        except MemoryError:
            ballast = None
            gc.collect()
            leave += 512
            continue
        return free
    return -1


def _secure_element(mode, count, lib, port, bridge_dir):
    sys.path.insert(0, lib)
    sys.path.insert(0, bridge_dir)
    from mp_i2c_bridge import BridgeI2C

    bus = BridgeI2C(port)
    facts = bus.control("new", kind="tng")
    gc.collect()
    before = gc.mem_alloc()
    from signet.atecc608 import ATECC608
    from signet.builder import RecordBuilder
    from signet.se_signer import SecureElementSigner

    builder = RecordBuilder(SecureElementSigner(ATECC608(bus, facts["address"], bus.sleep_us), 0))
    prev = bytes(32)
    builder.build("rev", 1, 1, 0, _T, prev, _FIELDS)
    gc.collect()
    print("at_rest_bytes=%d" % (gc.mem_alloc() - before))
    if mode == "se-time":
        spent = bus.spent_us
        start_facts = bus.control("facts")
        start = time.ticks_us()
        for i in range(count):
            builder.build("rev", i + 2, 1, i, _T + i, prev, _FIELDS)
        total = time.ticks_diff(time.ticks_us(), start)
        end_facts = bus.control("facts")
        print("us_per_record=%d" % (total // count))
        print("bridge_us_per_record=%d" % ((bus.spent_us - spent) // count))
        for name in ("chip_time_us", "bus_time_us", "transfers"):
            print("%s_per_record=%d" % (name, (end_facts[name] - start_facts[name]) // count))
        return
    print(
        "signature_heap_bytes=%d"
        % _smallest_heap(lambda: builder.build("rev", 2, 1, 0, _T, prev, _FIELDS))
    )


def main():
    mode, curve, count, lib = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    if mode.startswith("se-"):
        _secure_element(mode, count, lib, int(sys.argv[5]), sys.argv[6])
        return
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
    print(
        "signature_heap_bytes=%d"
        % _smallest_heap(lambda: builder.build("rev", 2, 1, 0, _T, prev, _FIELDS))
    )


main()
