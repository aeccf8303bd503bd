# Agent test kit (MicroPython-compatible): a fake platform whose ticks wrap at
# 2^30 like a 32-bit board, a temporary journal directory, and an agent wired
# to the scripted umqtt stand-in.

import os

from signet.agent import Agent
from signet.fsio import Files
from signet.mqtt import UmqttTransport
from signet.signer import SoftwareSigner

try:
    from . import fakeumqtt
except ImportError:  # MicroPython runner: flat import path
    import fakeumqtt

PRIVATE = 0xC9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721
WRAP = 1 << 30
T0 = 1767225600000  # 2026-01-01T00:00:00Z

_signer = None


def signer():
    # One signer for all tests: its comb table is the biggest allocation.
    global _signer
    if _signer is None:
        _signer = SoftwareSigner("p256", PRIVATE)
    return _signer


class FakePlatform:
    """ticks_ms wraps at 2^30; wall clock unset until sync_clock()."""

    def __init__(self, ticks=WRAP - 2500, rc="power_on", log_ring=16):
        self.ticks = ticks
        self.true_ms = T0  # what NTP would say
        self.rtc = None  # what the RTC says (None: never set)
        self.ntp_ok = True
        self.network = True
        self.network_calls = 0
        self.syncs = 0
        self.fed = 0
        self.rc = rc
        self.logs = []
        self.log_ring = log_ring  # last lines kept (bounded: the soak measures the heap)
        self._seed = 12345

    def advance(self, ms):
        self.ticks = (self.ticks + ms) % WRAP
        self.true_ms += ms
        if self.rtc is not None:
            self.rtc += ms

    def ticks_ms(self):
        return self.ticks

    def ticks_diff(self, a, b):
        # Small ints only, as the board's C function: 2^30 is a bigint on a 32-bit
        # port, which a locked heap cannot allocate (test_agent_lowmem.py).
        d = (a - b) & 0x3FFFFFFF
        return d | -0x40000000 if d & 0x20000000 else d

    def sleep_ms(self, ms):
        self.advance(ms)

    def wall_ms(self):
        return self.rtc

    def sync_clock(self):
        if not (self.network and self.ntp_ok):
            return False
        self.syncs += 1
        self.rtc = self.true_ms
        return True

    def reset_cause(self):
        return self.rc

    def feed_watchdog(self):
        self.fed += 1

    def network_ready(self):
        return self.network

    def connect_network(self):
        self.network_calls += 1

    def urandom(self, n):
        out = bytearray(n)
        for i in range(n):
            self._seed = (self._seed * 1103515245 + 12345) & 0x7FFFFFFF
            out[i] = self._seed >> 16 & 0xFF
        return bytes(out)

    def log(self, msg):
        self.logs.append(msg)
        if len(self.logs) > self.log_ring:
            self.logs.pop(0)


def tmpdir():
    name = "/tmp/signet-fwtest-%d" % (int.from_bytes(os.urandom(4), "big"))
    os.mkdir(name)
    return name


def rmtree(path):
    for name in os.listdir(path):
        os.remove(path + "/" + name)
    os.rmdir(path)


class TempDirs:
    """Directories a test module makes (new()); its teardown_function calls tidy()."""

    def __init__(self):
        self._made = []

    def new(self):
        directory = tmpdir()
        self._made.append(directory)
        return directory

    def tidy(self):
        while self._made:
            rmtree(self._made.pop())


def make_config(**over):
    from signet import config  # imported here: the soak drops it after use

    obj = {
        "mqtt": {"host": "broker.test", "keepalive_s": 10, "timeout_ms": 2000, "ack_timeout_s": 5},
        "key": {"path": "/key.json"},
        "intervals": {"heartbeat_s": 1, "loop_ms": 100},
        "journal": {"segment_bytes": 4096, "segments": 8, "reserve_segments": 2},
    }
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(obj.get(key), dict):
            obj[key].update(value)
        else:
            obj[key] = value
    return config.parse(obj)


class Rig:
    """One device: platform, broker world, files, agent; reboot() keeps the files."""

    def __init__(self, cfg=None, platform=None, broker=None, directory=None, sources=None):
        self.cfg = cfg or make_config()
        self.platform = platform or FakePlatform()
        if broker is None:
            broker = fakeumqtt.Broker(self.platform)
        self.broker = broker
        fakeumqtt.broker = broker
        self.dir = directory or tmpdir()
        self.sources = sources
        self.agent = None
        self.boot()

    def boot(self):
        self.files = Files(self.dir, sync=False)
        self.transport = UmqttTransport.from_config(
            self.cfg.mqtt, signer().device_id, fakeumqtt.MQTTClient
        )
        self.agent = Agent(
            self.cfg, self.platform, signer(), self.transport, self.files, self.sources
        )
        self.agent.start()
        return self.agent

    def reboot(self, rc="soft"):
        self.platform.rc = rc
        self.platform.advance(1234)
        return self.boot()

    def step(self):
        wait = self.agent.step()
        self.platform.feed_watchdog()
        self.platform.advance(wait if wait > 0 else 1)

    def run_ms(self, ms):
        end = self.platform.true_ms + ms
        while self.platform.true_ms < end:
            self.step()

    def run_until(self, cond, max_ms=120000):
        end = self.platform.true_ms + max_ms
        while not cond():
            if self.platform.true_ms >= end:
                raise AssertionError("condition not met within %d simulated ms" % max_ms)
            self.step()

    def close(self):
        rmtree(self.dir)

    @property
    def gw(self):
        return self.broker.gateway

    def journal_ns(self):
        return [n for n, _ in self.agent.recorder.journal.pending(0)]
