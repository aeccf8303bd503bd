# Time for records: "u" (ms since boot, never wraps) and "t" (unix ms or None).
#
# ticks_ms() wraps (2^30 ms, ~12.4 days, on 32-bit ports) and an RTC can be
# unset, reset or stepped backwards. Records must never carry a "u" that
# decreases within a boot, nor a "t" from a clock the device knows is wrong.

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


UNIX_2000_MS = const(946684800000)  # 2000-01-01T00:00:00Z: ESP32 MicroPython's epoch
# An RTC reading before 2024-01-01 means "never set" (boards start at their epoch).
MIN_VALID_MS = const(1704067200000)
_BACKWARD_TOLERANCE_MS = const(2000)  # RTC vs uptime drift allowed between two reads


def epoch_offset_ms(gmtime0_year):
    """ms to add to the platform's time to get unix time (time.gmtime(0)[0] is its epoch)."""
    return UNIX_2000_MS if gmtime0_year == 2000 else 0


class Uptime:
    """Extends a wrapping ticks counter to a 53-bit ms count since construction.

    now() must be called more often than half the wrap period (the main loop
    does, many times a second); ticks_diff is then exact across the wrap.
    """

    def __init__(self, ticks_ms, ticks_diff):
        self._ticks = ticks_ms
        self._diff = ticks_diff
        self._last = ticks_ms()
        self._ms = 0

    def now(self):
        t = self._ticks()
        d = self._diff(t, self._last)
        if d > 0:  # never backwards, whatever the source does
            self._ms += d
            self._last = t
        return self._ms


class WallClock:
    """Unix ms from the platform's RTC, or None while it cannot be trusted.

    The clock is trusted after a successful sync (NTP on boards, the system
    clock on a Pi) and stops being trusted when the RTC reads as unset or
    jumps backwards against the monotonic uptime: then "t" is null until the
    next good sync, and lost() reports it once so the agent can sign a
    clock_lost event.
    """

    def __init__(self, platform, uptime, resync_ms):
        self._p = platform
        self._up = uptime
        self._resync = resync_ms
        self._synced = False
        self._anchor = None  # (wall_ms, uptime_ms) of the last trusted read
        self._next_sync = 0  # uptime ms of the next sync attempt
        self._lost = None  # reason, until taken by lost()
        self.syncs = 0
        self.sync_failures = 0

    def maybe_sync(self):
        """Sync when due (every resync_ms, retried sooner while unsynced)."""
        now = self._up.now()
        if now < self._next_sync:
            return
        ok = False
        try:
            ok = self._p.sync_clock()
        except Exception as e:  # a failed NTP query must never stop the agent
            self._p.log("clock: sync error %r" % (e,))
        if ok:
            wall = self._read()
            ok = wall is not None
        if ok:
            self.syncs += 1
            if self._anchor is not None:
                w0, u0 = self._anchor
                if wall < w0 + (self._up.now() - u0) - _BACKWARD_TOLERANCE_MS:
                    # The sync itself stepped the clock back: earlier "t" values
                    # were ahead. Still trusted from here on, but reported.
                    self._lost = "stepped_back"
            self._synced = True
            self._anchor = (wall, self._up.now())
            self._next_sync = now + self._resync
        else:
            self.sync_failures += 1
            # Unsynced: retry each minute at most; synced: the RTC still runs.
            self._next_sync = now + (min(self._resync, 60000) if not self._synced else self._resync)

    def _read(self):
        wall = self._p.wall_ms()
        if wall is None or wall < MIN_VALID_MS:
            return None
        return wall

    def now(self):
        """Unix ms, or None while not synced since boot or after the clock was lost."""
        if not self._synced:
            return None
        wall = self._read()
        up = self._up.now()
        if wall is None:
            return self._lose("rtc_unset")
        w0, u0 = self._anchor
        if wall < w0 + (up - u0) - _BACKWARD_TOLERANCE_MS:
            return self._lose("rtc_backwards")
        self._anchor = (wall, up)
        return wall

    def _lose(self, reason):
        self._synced = False
        self._anchor = None
        self._next_sync = 0  # try to get it back at once
        self._lost = reason
        return None

    def lost(self):
        """The reason the clock was lost since the last call, or None."""
        reason = self._lost
        self._lost = None
        return reason

    @property
    def synced(self):
        return self._synced
