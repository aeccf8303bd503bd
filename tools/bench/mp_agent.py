# MicroPython side of `signet bench agent` (runs on the unix port, not CPython).
# Usage: micropython -X heapsize=H mp_agent.py COUNT LIBDIR DIR
# Prints script_bytes (this script's code, before signet is imported), frozen (1: the
# binary has signet frozen in and that code ran, not the .mpy files in LIBDIR),
# code_bytes, us_per_record (agent: build+sign+journal),
# us_per_sign (the same build+sign without the journal: the reference),
# record_bytes, flash_bytes, and loaded (the signet modules the agent loaded, comma-
# separated; tools/bench/mp_modules.py then measures each). Run at several heap sizes
# by the host side to find the smallest heap the running agent fits in.
import gc
import sys
import time

_D = 0xC9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721


class _Platform:
    ticks_ms = staticmethod(time.ticks_ms)
    ticks_diff = staticmethod(time.ticks_diff)
    sleep_ms = staticmethod(time.sleep_ms)

    def wall_ms(self):
        return None

    def sync_clock(self):
        return False

    def reset_cause(self):
        return "power_on"

    def feed_watchdog(self):
        pass

    def network_ready(self):
        return False

    def connect_network(self):
        pass

    def urandom(self, n):
        return bytes(n)

    def log(self, msg):
        pass


class _NoTransport:
    def set_callback(self, cb):
        pass


class _Cfg:
    def __init__(self):
        self.mqtt = {
            "keepalive_s": 60,
            "ack_timeout_s": 30,
            "ack_wait_ms": 2000,
            "backoff_min_ms": 1000,
            "backoff_max_ms": 60000,
            "batch_bytes": 4096,
        }
        self.intervals = {"heartbeat_s": 3600, "loop_ms": 100, "stall_s": 300}
        self.time = {"resync_s": 3600}
        self.journal = {
            "segment_bytes": 4096,
            "segments": 16,
            "reserve_segments": 2,
            "ref_window": 16,  # the default: every sale below carries a ref
        }


def main():
    gc.collect()
    # This script's own code, compiled into the heap as a board compiles main.py: it stands
    # in for main.py (two lines on a board, whose start-up lives in the package).
    print("script_bytes=%d" % gc.mem_alloc())
    count, lib, directory = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    # Frozen modules first, as on a board (MICROPYPATH="" leaves ".frozen" off the path):
    # a binary with signet frozen in runs that, any other the .mpy files in lib.
    sys.path.insert(0, lib)
    sys.path.insert(0, ".frozen")
    import signet

    signet.load(*signet.AGENT_MODULES)  # as main.py loads them on a board
    from signet.agent import Agent
    from signet.builder import RecordBuilder
    from signet.fsio import Files
    from signet.signer import SoftwareSigner

    gc.collect()
    print("code_bytes=%d" % gc.mem_alloc())
    # A frozen module's __file__ is its path in the firmware ("signet/__init__.py").
    print("frozen=%d" % (not sys.modules["signet"].__file__.startswith(lib)))
    signer = SoftwareSigner("p256", _D)
    files = Files(directory, sync=False)
    agent = Agent(_Cfg(), _Platform(), signer, _NoTransport(), files)
    agent.start()
    gc.collect()
    print("at_rest_bytes=%d" % gc.mem_alloc())
    print("loaded=" + ",".join(sorted(m for m in sys.modules if m.startswith("signet"))))
    written0 = files.bytes_written
    record_bytes = 0
    start = time.ticks_us()
    for i in range(count):
        n = agent.record_revenue(250, "EUR", "pulse", "bench-%04d" % (i % 10000))
        record_bytes += len(agent.recorder.live[1])
        if i % 20 == 19:
            agent.recorder.journal.ack(n)  # a gateway keeps up: segments get pruned
    us = time.ticks_diff(time.ticks_us(), start)
    print("us_per_record=%d" % (us // count))
    print("record_bytes=%d" % record_bytes)
    print("flash_bytes=%d" % (files.bytes_written - written0))
    builder = RecordBuilder(signer)
    prev = bytes(32)
    fields = {"am": 250, "cur": "EUR", "src": "pulse", "ref": "bench-0001"}
    start = time.ticks_us()
    for i in range(count):
        builder.build("rev", i + 1, 1, i, None, prev, fields)
    print("us_per_sign=%d" % (time.ticks_diff(time.ticks_us(), start) // count))


main()
