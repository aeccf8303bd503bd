"""What the gateway says about its broker connection: every cause, but not a flood.

A broker that is down for a day must not write 3000 lines, and a broker that is down for
a minute must not leave the operator guessing: every failed attempt is logged with its
cause and the wait before the next one, the first ``burst`` of an outage all of them and
then one line per ``every_s`` (saying how many were not logged). The summary line carries
the state at any time: connected since when, or reconnecting since when, how many attempts
failed and the last error (:meth:`LinkState.describe`).

Causes are said as what they are: a session takeover (MQTT v5 DISCONNECT 0x8E: another
client connected with our client id) is named as such, and a connection the broker closed
without a DISCONNECT is "the broker closed the connection", not paho's "Unspecified error".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

__all__ = ["SESSION_TAKEN_OVER", "LinkState", "Throttle", "describe_os_error"]

SESSION_TAKEN_OVER: Final = 0x8E  # MQTT v5 DISCONNECT reason code "Session taken over"


class Throttle:
    """The first ``burst`` events are let through, then one per ``every_s`` seconds.

    :meth:`allow` returns None for an event not to log, else how many were held back since
    the last one let through; :meth:`reset` starts a new burst (a new outage)."""

    def __init__(
        self, burst: int, every_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.burst = burst
        self.every_s = every_s
        self._clock = clock
        self._let = 0
        self._last = 0.0
        self._held = 0

    def allow(self) -> int | None:
        now = self._clock()
        if self._let < self.burst or now - self._last >= self.every_s:
            held, self._held = self._held, 0
            self._let += 1
            self._last = now
            return held
        self._held += 1
        return None

    def reset(self) -> None:
        self._let = 0


def describe_os_error(exc: BaseException | None) -> str:
    """``[Errno 111] Connection refused`` style, for any exception a socket raises."""
    if exc is None:
        return "connection failed"
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, OSError) else f"{type(exc).__name__}: {text}"


def _clock_text(wall: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(wall))


class LinkState:
    """Connected or not, since when, failed attempts and the last error (network thread
    writes, the summary reads: plain attributes, each write a single assignment)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.connected = False
        self.ever_connected = False
        self.since = clock()
        self.attempts = 0  # failed connection attempts since `since`
        self.last_error: str | None = None
        self.closed = False  # disconnected on purpose (the gateway is stopping)
        self.takeovers = 0  # connections the broker closed for another client with our id

    def up(self) -> None:
        self.connected, self.ever_connected = True, True
        self.since = self._clock()
        self.attempts = 0

    def down(self, cause: str) -> None:
        self.connected = False
        self.since = self._clock()
        self.attempts = 0
        self.last_error = cause

    def close(self) -> None:
        self.connected, self.closed = False, True
        self.since = self._clock()

    def failed(self, cause: str) -> None:
        self.attempts += 1
        self.last_error = cause

    def describe(self) -> str:
        """For the summary line: ``broker connected since 2026-05-04 10:00:00``, ``broker
        reconnecting since ... (7 failed attempts, last error: [Errno 111] Connection
        refused)``; and how many session takeovers there were, if any."""
        if self.closed:
            text = f"broker disconnected since {_clock_text(self.since)} (stopping)"
        elif self.connected:
            text = f"broker connected since {_clock_text(self.since)}"
        else:
            verb = "reconnecting" if self.ever_connected else "connecting"
            text = f"broker {verb} since {_clock_text(self.since)}"
            if self.attempts:
                text += f" ({self.attempts} failed attempts"
                text += f", last error: {self.last_error})" if self.last_error else ")"
            elif self.last_error:
                text += f" (lost: {self.last_error})"
        if self.takeovers:
            text += f", session taken over {self.takeovers} times"
        return text
