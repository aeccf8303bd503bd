# MicroPython side of `signet bench sign` (runs on the unix port, not CPython).
# Usage: micropython -X heapsize=H mp_sign.py MODE CURVE COUNT LIBDIR [PORT BRIDGEDIR]
#   MODE time: prints us_per_record over COUNT record builds+signatures
#   MODE heap: prints the smallest free heap in which one more signature succeeds
#   MODE se-time / se-heap: the same with the key in an emulated ATECC608 (the real
#     driver over the I2C bridge on PORT, tools/runners/mp_i2c_bridge.py in BRIDGEDIR);
#     se-time also prints bridge_us_per_record, the time spent inside the bridge's
#     calls (socket round trips standing in for the bus), which the host takes out
# Every mode prints frozen (1: the binary has signet frozen in and that code ran, not
# the .mpy files in LIBDIR)
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


def _use(lib):
    # Frozen modules first, as on a board (MICROPYPATH="" leaves ".frozen" off the path):
    # a binary with signet frozen in runs that, any other the .mpy files in lib.
    sys.path.insert(0, lib)
    sys.path.insert(0, ".frozen")


def _say_where_signet_came_from(lib):
    # Called once signet is imported (it is not imported for this alone: heap counts).
    # A frozen module's __file__ is its path in the firmware ("signet/__init__.py").
    print("frozen=%d" % (not sys.modules["signet"].__file__.startswith(lib)))


def _secure_element(mode, count, lib, port, bridge_dir):
    _use(lib)
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
    else:
        print(
            "signature_heap_bytes=%d"
            % _smallest_heap(lambda: builder.build("rev", 2, 1, 0, _T, prev, _FIELDS))
        )
    _say_where_signet_came_from(lib)


def main():
    mode, curve, count, lib = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    if mode.startswith("se-"):
        _secure_element(mode, count, lib, int(sys.argv[5]), sys.argv[6])
        return
    _use(lib)
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
    _say_where_signet_came_from(lib)
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
