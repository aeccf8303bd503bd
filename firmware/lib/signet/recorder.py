# The recorder: what the device signs, and when.
#
# Owns the journal and the sequence state, the boot record, heartbeats under
# the journal fill policy (HB_STEPS), the journal_nearly_full, journal_full and
# clock_lost events, and the inputs sources hand in (record_revenue,
# record_meter, record_event), with the window of recent sale references that
# makes a retried sale count once (refwindow.py). Every record goes build+sign
# -> journal append (durable); sending it is the link's job (link.py), which
# reads `journal`, `last_n` and `live` from here and nothing else.
#
# May import: builder, journal, record, refwindow, state and the package's
# version; never link.py or an MQTT module, so signing never waits on the network.

from . import FIRMWARE_VERSION
from .builder import RecordBuilder
from .journal import OVERHEAD, Journal, JournalFull
from .record import RecordError, check_token, validate_fields
from .state import SeqState

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


# Upper bound of one signed record (the largest rev/evt, 64-byte text, ES256K
# header: 308 bytes), and the size of the record builder's buffer. Room is checked
# BEFORE a sequence number is taken: a number handed out and then not journaled
# would be a gap the gateway counts.
ROOM = const(320)
_MAX_IV = const(0xFFFFFFFF)
NEARLY_FULL = const(75)  # % fill: journal_nearly_full is signed once
_REARM = const(50)  # % fill below which it may be signed again
# (fill %, heartbeat interval multiplier): coarser heartbeats as the journal fills.
# Fill is measured against the space heartbeats may use (outside the reserve).
HB_STEPS = ((90, 8), (75, 4), (50, 2))


class RecordRefused(Exception):
    """The agent will not make this record; reason is a token (journal_full, bad_record...)."""

    def __init__(self, reason, detail=None):
        super().__init__(reason if detail is None else "%s: %s" % (reason, detail))
        self.reason = reason


def hb_multiplier(fill):
    for limit, mult in HB_STEPS:
        if fill >= limit:
            return mult
    return 1


class Recorder:
    """Signs and journals records; start() once, then step(now) once per loop."""

    def __init__(self, config, platform, signer, files, uptime, wall, counter=None):
        self.config = config
        self.counter = counter  # a chip's monotonic counter the sequence lease is bound to
        self.platform = platform
        self.files = files
        self.uptime = uptime
        self.wall = wall
        self._hb_ms = config.intervals["heartbeat_s"] * 1000
        # One scratch buffer for the record builder and the journal's frames: a
        # record is built, copied out, then journaled, and whatever the journal
        # reads (catch-up views, the scan at open) is used before the next build.
        # Sized for the largest record this agent makes (ROOM), not the protocol's
        # 1 KiB: every frame in its journal is one it built.
        self._frame = bytearray(ROOM + OVERHEAD)
        self._builder = RecordBuilder(signer, ROOM, self._frame)
        self.journal = None
        self.state = None
        self.boot = 0
        self._prev = None
        self.last_n = 0  # newest journaled n (this boot or before): what the link sends up to
        self.live = None  # (n, record) of the newest record: sent without a flash read
        self._spare = 0  # a number taken but never journaled: the next record uses it
        self._need_boot = True
        self._last_hb = 0
        self.refs = None  # refwindow.RefWindow, unless journal.ref_window is 0
        self.repeated = False  # the last record_* call was a retried sale: nothing signed
        # flags for once-per-episode events
        self._nearly_reported = False
        self._full_reported = False
        # counters (Agent.stats)
        self.signed = 0
        self.refused = 0
        self.hb_skipped = 0
        self.events_dropped = 0
        self.repeats = 0

    def start(self):
        """Recover journal and sequence state, then sign the boot record."""
        j = self.config.journal
        self.journal = Journal(
            self.files, j["segment_bytes"], j["segments"], j["reserve_segments"], self._frame
        )
        self.journal.open()
        ls, p = self.journal.last()
        size = j["ref_window"]
        if size:
            from .refwindow import RefWindow  # loaded only when configured: heap counts

            self.refs = RefWindow(self.files, size)
            self.refs.open(ls)  # before any record: an entry above ls was never journaled
        self.state = SeqState(self.files, counter=self.counter)
        self.boot = self.state.start(ls)
        self._prev = bytes(p)
        self.last_n = ls
        self._need_boot = True
        if self.platform.network_ready():  # a clock good now gives the boot record its t
            self.wall.maybe_sync()
        self._sign_boot()
        self._last_hb = self.uptime.now()

    def _sign_boot(self):
        rc = self.platform.reset_cause()
        try:
            check_token("rc", rc)
        except RecordError:
            rc = "unknown"
        fields = {
            "rc": rc,
            "fw": FIRMWARE_VERSION,
            "ls": self.last_n,  # nothing is signed before the boot record
        }
        if self._make("boot", fields, True, 0):
            self._need_boot = False
        else:
            self.platform.log("agent: journal full, boot record waits for an ack")

    def step(self, now):
        """Sign what is due: the boot record or a heartbeat, fill and clock events."""
        j = self.journal
        fill = j.fill_percent
        if self._need_boot:
            self._sign_boot()
        else:
            self._heartbeat(now, fill)
        if fill < _REARM:
            self._nearly_reported = False
        elif (
            fill >= NEARLY_FULL
            and not self._nearly_reported
            and self._event("journal_nearly_full", "fill %d%%" % fill)
        ):
            self._nearly_reported = True
        if self._full_reported and j.free_for(2 * ROOM, False):
            self._full_reported = False  # room again outside the reserve: episode over
        if self.platform.network_ready():
            self.wall.maybe_sync()
        lost = self.wall.lost()
        if lost is not None:
            self._event("clock_lost", lost)

    def _heartbeat(self, now, fill):
        if now - self._last_hb < self._hb_ms * hb_multiplier(fill):
            return
        iv = now - self._last_hb
        if iv > _MAX_IV:
            iv = _MAX_IV  # vouch for less than was covered, never more
        st = "ok" if fill < HB_STEPS[-1][0] else "degraded"
        if self._make("hb", {"iv": iv or 1, "st": st}, False, 0):
            self._last_hb = now
        else:
            # No room outside the reserve: the next heartbeat that fits covers
            # this interval too (coarser, still provable).
            self.hb_skipped += 1

    # -- making records ----------------------------------------------------------

    def _make(self, kind, fields, reserve, keep, key=None):
        """Sign and journal one record; returns its n, or 0 if the journal has no room.

        keep: bytes that must stay free afterwards (room for the journal_full event).
        key: a sale's reference key (RefWindow.key), noted in the window first.
        """
        j = self.journal
        if not j.free_for(ROOM + keep, reserve):
            return 0
        u = self.uptime.now()
        t = self.wall.now()
        n = self._spare or self.state.next_n()
        self._spare = 0
        try:
            if key is not None:
                # On flash before the record: a retry after a cut that follows the
                # record's append finds it (refwindow.py).
                self.refs.add(key, n, fields["am"], fields["cur"])
            rec = self._builder.build(kind, n, self.boot, u, t, self._prev, fields)[1]
            j.append(n, rec, reserve)
        except Exception as e:
            if key is not None:
                self.refs.forget(n)
            if j.last()[0] < n:
                # Nothing with n is journaled (low heap while signing, a refused
                # or failed write): the next record takes n. A number skipped here
                # would be a gap no boot record declares, holding the gateway's
                # ack below it for good. (A write that reached flash but reported
                # failure would leave a second frame for n: open() keeps the first.)
                self._spare = n
            if not isinstance(e, JournalFull):
                raise
            # free_for said yes: should not happen; nothing was stored nor sent.
            self.platform.log("agent: journal refused n=%d after free_for" % n)
            return 0
        self.last_n, self._prev = j.last()  # the journal hashed the payload on append
        self.live = (n, rec)
        self.signed += 1
        return n

    def _event(self, ev, msg=None):
        fields = {"ev": ev}
        if msg:
            fields["msg"] = msg
        n = 0 if self._need_boot else self._make("evt", fields, True, ROOM)
        if not n:
            self.events_dropped += 1
            self.platform.log("agent: no room for evt %s" % ev)
        return n

    def note_event(self, ev, msg=None):
        """An event of the agent's own (not a source's): its n, or 0 if no room."""
        return self._event(ev, msg)

    def _external(self, kind, fields):
        self.repeated = False
        # Validate before a number is taken: a bad input must not cost a sequence number.
        try:
            validate_fields(kind, fields)
        except RecordError as e:
            self.refused += 1
            raise RecordRefused("bad_record", str(e)) from None
        key = None
        if self.refs is not None and "ref" in fields:  # only rev records carry a ref
            key = self.refs.key(fields["src"], fields["ref"])
            seen = self.refs.find(key)
            if seen is not None:
                return self._repeat(fields, seen)
        if not self._need_boot:
            n = self._make(kind, fields, True, ROOM, key)
            if n:
                return n
            if not self._full_reported and self._make(
                "evt", {"ev": "journal_full", "msg": "%s refused at source" % kind}, True, 0
            ):
                self._full_reported = True
        self.refused += 1
        raise RecordRefused("journal_full")

    def _repeat(self, fields, seen):
        # A retry of a sale already journaled: its original n, nothing signed. The
        # same reference with another amount is not a retry: refused, never merged.
        n, am, cur = seen
        if am != fields["am"] or cur != fields["cur"]:
            self.refused += 1
            raise RecordRefused(
                "ref_conflict",
                "ref %s was recorded as n=%d with %d %s" % (fields["ref"], n, am, cur),
            )
        self.repeated = True
        self.repeats += 1
        return n

    def record_revenue(self, amount, currency, src, ref=None):
        fields = {"am": amount, "cur": currency, "src": src}
        if ref is not None:
            fields["ref"] = ref
        return self._external("rev", fields)

    def record_meter(self, q, unit, src=None):
        fields = {"q": q, "unit": unit}
        if src is not None:
            fields["src"] = src
        return self._external("meter", fields)

    def record_event(self, ev, msg=None):
        fields = {"ev": ev}
        if msg is not None:
            fields["msg"] = msg
        return self._external("evt", fields)
