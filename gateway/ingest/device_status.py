"""What each device last said on its status topic: ``online`` or ``offline`` (PROTOCOL 7.4).

The topic is unsigned and informational: the console shows it, nothing counts it (uptime
comes from signed heartbeats). A device publishes ``online`` (retained) when it connects and
its last will publishes ``offline`` when it vanishes, so subscribing gives every device's
latest word at once. Messages are taken on the network thread and read by the console's
threads; anything that is not a device's topic with one of the two words is counted and
dropped, and at most ``MAX_DEVICES`` devices are remembered, so a flood of made-up device
ids cannot grow the gateway's memory.
"""

from __future__ import annotations

import threading
from typing import Final

from .wire import device_of_status_topic

__all__ = ["MAX_DEVICES", "DeviceStatus"]

MAX_DEVICES: Final = 100_000
_WORDS: Final = {b"online": True, b"offline": False}


class DeviceStatus:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[str, tuple[bool, int]] = {}  # device id -> (online, received ms)
        self.ignored = 0  # not a device's status topic, not one of the two words, or no room

    def seen(self, topic: bytes, payload: bytes, received_ms: int) -> None:
        kid = device_of_status_topic(topic)
        online = _WORDS.get(bytes(payload))
        with self._lock:
            if kid is None or online is None:
                self.ignored += 1
            elif kid in self._latest or len(self._latest) < MAX_DEVICES:
                self._latest[kid] = (online, received_ms)
            else:
                self.ignored += 1

    def snapshot(self) -> dict[str, tuple[bool, int]]:
        """device id -> (online, when the gateway received that word, ms)."""
        with self._lock:
            return dict(self._latest)
