"""The agent's platform layer on CPython / Linux (a Raspberry Pi under systemd).

Same duck-typed interface as firmware/lib/signet/board.py on a MicroPython board
(docs/AGENT.md): ticks_ms, ticks_diff, sleep_ms, wall_ms, sync_clock, reset_cause,
feed_watchdog, network_ready, connect_network, urandom, log.

Linux-specific answers:
- Ticks: time.monotonic_ns() in ms. It does not wrap in practice (64 bits), so ticks_diff is a
  plain subtraction; the agent's Uptime extension still works, it just never sees a wrap.
- Wall clock: the system clock, trusted once the kernel says it is synchronised (adjtimex:
  STA_UNSYNC clear, pi/kernel_clock.py; systemd-timesyncd, chrony and ntpd clear it, and
  `timedatectl`'s NTPSynchronized shows it). Only where the kernel cannot be asked (not
  Linux, a sandbox that forbids adjtimex) is the clock taken as synced if its year is
  plausible (>= PLAUSIBLE_YEAR). A Pi has no battery clock: it boots at a 1970 or
  fake-hwclock date with STA_UNSYNC set, and records carry t = null until NTP has run.
  The agent asks before it signs the boot record (network_ready() is True here), so a
  clock already synchronised at start gives the boot record its t.
- Reset cause: Linux does not say why a process started, so the agent tells its next start.
  A clean stop (SIGTERM, `systemctl stop`) leaves a marker file in the state directory;
  the kernel's boot id (/proc/sys/kernel/random/boot_id) tells a new system boot apart:
    marker present                       -> "soft"      (clean stop and start)
    no marker, first start of this boot  -> "power_on"  (power cut, kernel crash or reboot
                                                         without stopping the agent first)
    no marker, same system boot          -> "unknown"   (the process was killed or crashed;
                                                         systemd's watchdog kill lands here)
- Watchdog: systemd's, through sd_notify (a datagram to $NOTIFY_SOCKET; no dependency).
  feed_watchdog() sends WATCHDOG=1 at most every WatchdogSec/4 when $WATCHDOG_USEC is set.
- Network: managed by the OS; network_ready() is True, and a broker that cannot be reached
  shows up as a failed MQTT connect, which the agent retries with backoff.
- Log: one line per message on stderr, which systemd sends to the journal.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TextIO

from . import kernel_clock

PLAUSIBLE_YEAR = 2024
CLEAN_STOP_MARKER = "clean-stop"
BOOT_ID_FILE = "boot-id"
_BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"

FdSource = Callable[[], Iterable[int | None]]


def _sd_notify(message: str) -> bool:
    """Send one sd_notify datagram; False when not run by systemd with NotifyAccess."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
        return True
    except OSError:
        return False


class PiPlatform:
    """Platform for the agent under CPython. state_dir holds the reset-cause files."""

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        *,
        stream: TextIO | None = None,
        clock_status: kernel_clock.StatusReader = kernel_clock.read_status,
        boot_id_path: str = _BOOT_ID_PATH,
    ) -> None:
        self.state_dir = Path(state_dir)
        self._stream = stream
        self._clock_status = clock_status
        self._boot_id_path = boot_id_path
        self._synced = False
        self._reset_cause: str | None = None
        self._fd_sources: list[FdSource] = []
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        # WATCHDOG_PID names the process systemd expects pings from (not a child of ours).
        mine = not pid or pid == str(os.getpid())
        self._wd_interval = int(usec) / 4e6 if usec.isdigit() and int(usec) > 0 and mine else 0.0
        self._wd_last = 0.0

    # -- time ----------------------------------------------------------------------------

    def ticks_ms(self) -> int:
        return time.monotonic_ns() // 1_000_000

    def ticks_diff(self, a: int, b: int) -> int:
        return a - b

    def sleep_ms(self, ms: int) -> None:
        """Sleep, but wake early when a registered socket (MQTT, local socket) is readable,
        so a `signet agent record` request is answered without waiting out the interval."""
        if ms <= 0:
            return
        fds = [fd for source in self._fd_sources for fd in source() if fd is not None]
        if not fds:
            time.sleep(ms / 1000)
            return
        with contextlib.suppress(OSError, ValueError):  # an fd closed under us: just return
            select.select(fds, [], [], ms / 1000)

    def add_fd_source(self, source: FdSource) -> None:
        """Register a callable returning file descriptors that should cut sleep_ms short."""
        self._fd_sources.append(source)

    def wall_ms(self) -> int | None:
        return time.time_ns() // 1_000_000 if self._synced else None

    def sync_clock(self) -> bool:
        """True once the kernel says the system clock is synchronised (stays true: the OS
        keeps it so). Asked at start, before the boot record, then by signet.clock.WallClock
        at most once a minute while unsynced: no rate limit here."""
        if self._synced:
            return True
        answer = kernel_clock.synced(self._clock_status)
        if answer is None:  # the kernel cannot be asked: judge by the year
            answer = time.gmtime().tm_year >= PLAUSIBLE_YEAR
        self._synced = answer
        return answer

    # -- reset cause ---------------------------------------------------------------------

    def reset_cause(self) -> str:
        """Why the agent (re)started; decided once per process (see the module docstring)."""
        if self._reset_cause is None:
            self._reset_cause = self._decide_reset_cause()
        return self._reset_cause

    def _decide_reset_cause(self) -> str:
        marker = self.state_dir / CLEAN_STOP_MARKER
        boot_file = self.state_dir / BOOT_ID_FILE
        try:
            boot_id = Path(self._boot_id_path).read_text().strip()
        except OSError:
            boot_id = ""
        try:
            previous_boot = boot_file.read_text().strip()
        except OSError:
            previous_boot = None
        clean = marker.exists()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if boot_id:
            boot_file.write_text(boot_id + "\n")
        # Remove the marker now: if this run crashes, the next start must not say "soft".
        marker.unlink(missing_ok=True)
        if clean:
            return "soft"
        if not boot_id or previous_boot is None or previous_boot != boot_id:
            return "power_on"
        return "unknown"

    def mark_clean_stop(self) -> None:
        """Called after the agent stopped cleanly; the next start reports "soft"."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.state_dir / CLEAN_STOP_MARKER, os.O_WRONLY | os.O_CREAT, 0o600)
        os.fsync(fd)
        os.close(fd)

    # -- systemd -------------------------------------------------------------------------

    @property
    def watchdog_enabled(self) -> bool:
        return self._wd_interval > 0

    def feed_watchdog(self) -> None:
        if not self._wd_interval:
            return
        now = time.monotonic()
        if now - self._wd_last >= self._wd_interval:
            self._wd_last = now
            _sd_notify("WATCHDOG=1")

    def notify_ready(self, status: str = "") -> bool:
        return _sd_notify("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def notify_stopping(self) -> bool:
        return _sd_notify("STOPPING=1")

    # -- network, randomness, log --------------------------------------------------------

    def network_ready(self) -> bool:
        return True

    def connect_network(self) -> None:
        pass

    def urandom(self, n: int) -> bytes:
        return os.urandom(n)

    def log(self, msg: str) -> None:
        print(msg, file=self._stream or sys.stderr, flush=True)
