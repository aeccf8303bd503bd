"""Is the system clock synchronised? The Linux kernel's own answer, through adjtimex(2).

An NTP client that disciplines the clock (systemd-timesyncd, chrony, ntpd) clears the
kernel's STA_UNSYNC status bit once it has synchronised, and the kernel sets it again when
the estimated error grows past its limit (about 16 s without updates). This is the flag
behind `timedatectl`'s NTPSynchronized, read here directly: no subprocess, no D-Bus. A read
with modes = 0 changes nothing and needs no privilege.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

# <sys/timex.h>
STA_UNSYNC = 0x0040  # status bit: clock not synchronised
TIME_OK = 0  # adjtimex's return value: clock synchronised, no leap second pending
TIME_ERROR = 5  # adjtimex's return value when the clock is not synchronised

# (clock state returned by adjtimex, status bits), or None when the kernel cannot be asked.
StatusReader = Callable[[], "tuple[int, int] | None"]


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _Timex(ctypes.Structure):
    # struct timex of glibc's adjtimex symbol (longs: 32-bit on armhf, 64-bit on arm64/x86_64).
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time", _Timeval),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_reserved", ctypes.c_int * 11),
        ("_slack", ctypes.c_byte * 64),  # room if a libc's struct is longer than this one
    ]


def read_status() -> tuple[int, int] | None:
    """(clock state, status bits) from adjtimex(2); None where there is no such call (not
    Linux, no libc found) or it fails (a sandbox that forbids it)."""
    try:
        adjtimex = ctypes.CDLL(None).adjtimex  # the symbols already loaded: libc's
    except (OSError, AttributeError):
        return None
    tx = _Timex()  # modes = 0: read only
    state = adjtimex(ctypes.byref(tx))
    if state < 0:
        return None
    return state, tx.status


def synced(reader: StatusReader = read_status) -> bool | None:
    """True if the kernel says the clock is synchronised, False if it says not, None if it
    cannot be asked."""
    answer = reader()
    if answer is None:
        return None
    state, status = answer
    return state != TIME_ERROR and not status & STA_UNSYNC
