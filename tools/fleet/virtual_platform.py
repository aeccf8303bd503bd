"""The platform and network of a virtual device, for `signet simulate` (tools/fleet/simulate.py).

The agent (firmware/lib/signet/agent.py) talks to its board through a small duck-typed
platform object and to MQTT through a transport. A virtual device gets:

- :class:`VirtualNet`: the device's link to the network, down during scheduled outages
  (a Wi-Fi drop, a cut cable). Times are seconds on the simulator's monotonic clock.
- :class:`VirtualPlatform`: real monotonic time (so heartbeat intervals are real), the
  host's wall clock (trusted only while the network is up, as NTP would need it), a reset
  cause chosen by the simulator, no watchdog, a per-device log.
- :class:`LinkTransport`: wraps the real paho transport (tools/pi/paho_transport.py). While the
  link is down every call raises OSError, exactly what the agent sees when a socket dies;
  the first such call also drops the real connection (no DISCONNECT, so the broker
  publishes the device's "offline" will), like a device whose Wi-Fi vanished.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, TextIO

from signet_tools.pi.paho_transport import Payload

Clock = Callable[[], float]


class VirtualNet:
    """Up except inside the given [start, end) windows of the simulator's clock."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self.windows: list[tuple[float, float]] = []

    def add_outage(self, start: float, end: float) -> None:
        self.windows.append((start, end))

    def up(self) -> bool:
        now = self._clock()
        return not any(start <= now < end for start, end in self.windows)


class VirtualPlatform:
    """The agent's platform interface (see firmware/lib/signet/agent.py) for a virtual device."""

    def __init__(
        self,
        net: VirtualNet,
        reset_cause: str,
        log: TextIO | None = None,
        name: str = "",
    ) -> None:
        self.net = net
        self._reset_cause = reset_cause
        self._log = log
        self._name = name

    # Time: the host's monotonic clock never wraps; the agent's Uptime handles ticks anyway.
    def ticks_ms(self) -> int:
        return time.monotonic_ns() // 1_000_000

    def ticks_diff(self, a: int, b: int) -> int:
        return a - b

    def sleep_ms(self, ms: int) -> None:
        # Only agent.run() sleeps; the fleet drives step() itself and never calls run().
        if ms > 0:
            time.sleep(ms / 1000)

    def wall_ms(self) -> int | None:
        return time.time_ns() // 1_000_000

    def sync_clock(self) -> bool:
        # An NTP query needs the network: while the link is down a first sync fails, so
        # a device that boots during an outage signs t = null until the link returns.
        return self.net.up()

    def reset_cause(self) -> str:
        return self._reset_cause

    def feed_watchdog(self) -> None:
        pass

    def network_ready(self) -> bool:
        return self.net.up()

    def connect_network(self) -> None:
        pass  # the link comes back by itself when the outage window ends

    def urandom(self, n: int) -> bytes:
        return os.urandom(n)

    def log(self, msg: str) -> None:
        if self._log is not None:
            self._log.write(f"{time.strftime('%H:%M:%S')} {self._name} {msg}\n")


class LinkTransport:
    """A transport that fails like a dead socket while the device's network is down."""

    def __init__(self, inner: Any, net: VirtualNet) -> None:
        self.inner = inner
        self.net = net
        self.published = 0  # messages handed to the broker connection (all topics)

    def _check(self) -> None:
        if not self.net.up():
            # The radio is gone: the real connection dies without a DISCONNECT.
            self.inner.close()
            raise OSError("network down (simulated outage)")

    def set_callback(self, cb: Callable[[str, bytes], None]) -> None:
        self.inner.set_callback(cb)

    def connect(self, will_topic: str, will_payload: bytes) -> None:
        self._check()
        self.inner.connect(will_topic, will_payload)

    def subscribe(self, topic: str) -> None:
        self._check()
        self.inner.subscribe(topic)

    def publish(self, topic: str, payload: Payload, retain: bool = False) -> None:
        self._check()
        self.inner.publish(topic, payload, retain)
        self.published += 1

    def poll(self) -> None:
        self._check()
        self.inner.poll()

    def ping(self) -> None:
        self._check()
        self.inner.ping()

    @property
    def rx(self) -> int:
        """The inner transport's count of reads that brought bytes (the link's liveness)."""
        return int(self.inner.rx)

    def disconnect(self) -> None:
        self.inner.disconnect()

    def close(self) -> None:
        self.inner.close()

    def fileno(self) -> int | None:
        return self.inner.fileno()
