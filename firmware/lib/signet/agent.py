# The device agent: sign what the machine does, keep it until a gateway has it.
#
# One single-threaded loop (step()) does everything: heartbeats, sources,
# clock, transport. Every record goes build+sign -> journal append (durable)
# -> publish; the journal is pruned only by the gateway's retained ack, never
# by an MQTT PUBACK (a broker may have no gateway behind it). docs/AGENT.md
# describes the loop, the journal fill policy and the interfaces below.
#
# platform (duck-typed; board.py on MicroPython, tools/pi_platform.py on a Pi):
#   ticks_ms(), ticks_diff(a, b), sleep_ms(ms), wall_ms() -> int | None (unix ms),
#   sync_clock() -> bool, reset_cause() -> str token, feed_watchdog(),
#   network_ready() -> bool, connect_network() (non-blocking, idempotent),
#   urandom(n) -> bytes, log(msg)
# transport (duck-typed; mqtt.py wraps umqtt.simple, tools/paho_transport.py wraps paho):
#   set_callback(cb(topic: str, payload: bytes)), connect(will_topic, will_payload)
#   (will retained, QoS 1; raises OSError), subscribe(topic), publish(topic, payload,
#   retain=False) (QoS 1; payload is bytes-like and MAY BE A MEMORYVIEW into a buffer
#   the agent reuses: copy it if you keep it), poll() (non-blocking; delivers incoming
#   messages through the callback), ping(), disconnect() (clean), close() (drop).
# source (anything with poll(agent), called once per step, must not block).


from . import FIRMWARE_VERSION
from .builder import RecordBuilder
from .clock import Uptime, WallClock
from .journal import Journal, JournalFull
from .record import MAX_SAFE_INT, RecordError, check_token, validate_fields
from .state import SeqState

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


# Upper bound of one signed record (the largest rev/evt, 64-byte text, ES256K
# header: ~310 bytes). Room is checked BEFORE a sequence number is taken: a
# number handed out and then not journaled would be a gap the gateway counts.
ROOM = const(320)
_MAX_IV = const(0xFFFFFFFF)
NEARLY_FULL = const(75)  # % fill: journal_nearly_full is signed once
_REARM = const(50)  # % fill below which it may be signed again
# (fill %, heartbeat interval multiplier): coarser heartbeats as the journal fills.
# Fill is measured against the space heartbeats may use (outside the reserve).
HB_STEPS = ((90, 8), (75, 4), (50, 2))
_BATCH_HEAD = const(3)  # room for a CBOR array head (count < 65536)


class RecordRefused(Exception):
    """The agent will not make this record; reason is a token (journal_full, bad_record...)."""

    def __init__(self, reason, detail=None):
        super().__init__(reason if detail is None else "%s: %s" % (reason, detail))
        self.reason = reason


def parse_ack(data):
    """The n of an ack payload: exactly the deterministic CBOR map {"n": uint53}, else None."""
    size = len(data)
    if size < 4 or data[0] != 0xA1 or data[1] != 0x61 or data[2] != 0x6E:
        return None
    ai = data[3]
    if ai < 24:
        return ai if size == 4 else None
    width = 1 << (ai - 24) if 24 <= ai <= 27 else 0
    if not width or size != 4 + width:
        return None
    value = int.from_bytes(bytes(data[4:]), "big")
    # Shortest form only (a non-canonical ack is not what a gateway sends).
    if value < (24 if width == 1 else 1 << (4 * width)) or value > MAX_SAFE_INT:
        return None
    return value


def hb_multiplier(fill):
    for limit, mult in HB_STEPS:
        if fill >= limit:
            return mult
    return 1


def _token_or_unknown(value):
    try:
        check_token("rc", value)
        return value
    except RecordError:
        return "unknown"


class Agent:
    def __init__(self, config, platform, signer, transport, files, sources=None):
        self.config = config
        self.platform = platform
        self.signer = signer
        self.transport = transport
        self.files = files
        self.sources = list(sources or ())
        mq = config.mqtt
        base = "signet/v1/" + signer.device_id
        self.topic_rec = base + "/rec"
        self.topic_ack = base + "/ack"
        self.topic_status = base + "/status"
        self._hb_ms = config.intervals["heartbeat_s"] * 1000
        self._loop_ms = config.intervals["loop_ms"]
        self._ping_ms = mq["keepalive_s"] * 500  # ping at half the keepalive
        self._ack_timeout = mq["ack_timeout_s"] * 1000
        self._ack_wait = mq["ack_wait_ms"]
        self._bmin = mq["backoff_min_ms"]
        self._bmax = mq["backoff_max_ms"]
        self._builder = RecordBuilder(signer)
        # One catch-up buffer for the agent's life: a batch never allocates.
        self._batch = memoryview(bytearray(mq["batch_bytes"]))
        self.uptime = Uptime(platform.ticks_ms, platform.ticks_diff)
        self.wall = WallClock(platform, self.uptime, config.time["resync_s"] * 1000)
        self.journal = None
        self.state = None
        self.boot = 0
        self._prev = None
        self._last_n = 0
        self._live = None  # (n, record) of the newest record: sent without a flash read
        self._need_boot = True
        self._last_hb = 0
        self._stop_requested = False
        # transport state
        self._connected = False
        self._failures = 0
        self._next_try = 0
        self._cursor = 0  # highest n published on this connection
        self._ack_in = 0  # highest valid ack received, applied in step()
        self._ack_got = False
        self._sync_until = 0
        self._ack_progress = 0
        self._last_tx = 0
        # flags for once-per-episode events
        self._nearly_reported = False
        self._full_reported = False
        # counters (stats)
        self.signed = 0
        self.published = 0
        self.records_sent = 0
        self.refused = 0
        self.connects = 0
        self.disconnects = 0
        self.resends = 0
        self.bad_acks = 0
        self.stale_acks = 0
        self.hb_skipped = 0
        self.events_dropped = 0
        self.source_errors = 0
        self.last_backoff_ms = 0
        transport.set_callback(self._on_message)

    # -- lifecycle -----------------------------------------------------------

    def start(self):
        """Recover journal and sequence state, then sign the boot record."""
        j = self.config.journal
        self.journal = Journal(self.files, j["segment_bytes"], j["segments"], j["reserve_segments"])
        self.journal.open()
        ls, p = self.journal.last()
        self.state = SeqState(self.files)
        self.boot = self.state.start(ls)
        self._prev = bytes(p)
        self._last_n = ls
        self._cursor = self.journal.acked
        self._need_boot = True
        self._sign_boot()
        self._last_hb = self.uptime.now()

    def _sign_boot(self):
        fields = {
            "rc": _token_or_unknown(self.platform.reset_cause()),
            "fw": FIRMWARE_VERSION,
            "ls": self._last_n,  # nothing is signed before the boot record
        }
        if self._make("boot", fields, True, 0):
            self._need_boot = False
        else:
            self.platform.log("agent: journal full, boot record waits for an ack")

    def run(self):
        """Step, feed the watchdog, sleep what step() allows; until request_stop()."""
        if self.journal is None:
            self.start()
        while not self._stop_requested:
            wait = self.step()
            self.platform.feed_watchdog()
            if wait > 0 and not self._stop_requested:
                self.platform.sleep_ms(wait)

    def request_stop(self):
        # One store, safe from a signal handler: run() returns after the step
        # in progress, never in the middle of a journal write.
        self._stop_requested = True

    def stop(self):
        """Publish "offline" and disconnect cleanly (the last will is for unclean ends)."""
        self._stop_requested = True
        if self._connected:
            try:
                self.transport.publish(self.topic_status, b"offline", True)
                self.transport.disconnect()
            except Exception as e:
                self.platform.log("agent: disconnect: %r" % (e,))
            self._connected = False

    # -- the loop --------------------------------------------------------------

    def step(self):
        """One loop iteration; returns the ms the caller may sleep."""
        now = self.uptime.now()
        j = self.journal
        fill = j.fill_percent
        if self._need_boot:
            self._sign_boot()
        else:
            self._heartbeat(now, fill)
        self._journal_events(j, fill)
        if self.platform.network_ready():
            self.wall.maybe_sync()
        lost = self.wall.lost()
        if lost is not None:
            self._event("clock_lost", lost)
        for src in self.sources:
            try:
                src.poll(self)
            except Exception as e:  # a broken source must not stop heartbeats
                self.source_errors += 1
                self.platform.log("agent: source %r: %r" % (src, e))
        more = self._net(self.uptime.now())
        return 0 if more else self._loop_ms

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

    def _journal_events(self, j, fill):
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

    # -- making records ----------------------------------------------------------

    def _make(self, kind, fields, reserve, keep):
        """Sign and journal one record; returns its n, or 0 if the journal has no room.

        keep: bytes that must stay free afterwards (room for the journal_full event).
        """
        j = self.journal
        if not j.free_for(ROOM + keep, reserve):
            return 0
        u = self.uptime.now()
        t = self.wall.now()
        n = self.state.next_n()
        rec = self._builder.build(kind, n, self.boot, u, t, self._prev, fields)[1]
        try:
            j.append(n, rec, reserve)
        except JournalFull:
            # free_for said yes: should not happen. The number is lost (a gap the
            # gateway will count), the record was never stored nor sent.
            self.platform.log("agent: journal refused n=%d after free_for" % n)
            return 0
        self._last_n, self._prev = j.last()  # the journal hashed the payload on append
        self._live = (n, rec)
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

    def _external(self, kind, fields):
        # Validate before a number is taken: a bad input must not cost a sequence number.
        try:
            validate_fields(kind, fields)
        except RecordError as e:
            self.refused += 1
            raise RecordRefused("bad_record", str(e)) from None
        if not self._need_boot:
            n = self._make(kind, fields, True, ROOM)
            if n:
                return n
            if not self._full_reported and self._make(
                "evt", {"ev": "journal_full", "msg": "%s refused at source" % kind}, True, 0
            ):
                self._full_reported = True
        self.refused += 1
        raise RecordRefused("journal_full")

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

    # -- transport -----------------------------------------------------------------

    def _on_message(self, topic, payload):
        if topic != self.topic_ack:
            return
        n = parse_ack(payload)
        if n is None:
            self.bad_acks += 1
            self.platform.log("agent: ignored malformed ack (%d bytes)" % len(payload))
            return
        self._ack_got = True
        if n > self._ack_in:
            self._ack_in = n
        elif n < self._ack_in:
            self.stale_acks += 1  # lower than one already taken: ignored

    def _apply_ack(self, now):
        j = self.journal
        n = self._ack_in
        if n <= j.acked:
            return
        if n > self._last_n:
            # An ack for records this device never journaled: pruning on it
            # could delete unsent records. Refuse it.
            self.bad_acks += 1
            self._ack_in = j.acked
            self.platform.log("agent: ignored ack %d beyond last record %d" % (n, self._last_n))
            return
        j.ack(n)
        self._ack_progress = now
        if self._cursor < n:
            self._cursor = n

    def _backoff(self, now):
        self._failures += 1
        shift = self._failures - 1
        base = self._bmax if shift > 20 else min(self._bmax, self._bmin << shift)
        # Half fixed, half random: a fleet that lost its broker does not return in step.
        half = base // 2
        r = self.platform.urandom(2)
        delay = half + (r[0] << 8 | r[1]) * (base - half) // 65535
        self.last_backoff_ms = delay
        self._next_try = now + delay

    def _drop(self, now, e):
        self.platform.log("agent: connection lost: %r" % (e,))
        self._connected = False
        self.disconnects += 1
        try:
            self.transport.close()
        except Exception:
            pass
        self._backoff(now)

    def _net(self, now):
        """Connect or exchange messages; True if more is ready to send at once."""
        if not self._connected:
            if now < self._next_try:
                return False
            if not self.platform.network_ready():
                self.platform.connect_network()
                self._backoff(now)
                return False
            try:
                self.transport.connect(self.topic_status, b"offline")
                self.transport.subscribe(self.topic_ack)
                self.transport.publish(self.topic_status, b"online", True)
            except Exception as e:  # OSError, umqtt's MQTTException and asserts
                self._drop(now, e)
                self.disconnects -= 1  # never connected: a failed attempt, not a drop
                return False
            self._connected = True
            self.connects += 1
            self._failures = 0
            self._cursor = self.journal.acked  # resend everything not acked
            self._ack_got = False
            self._sync_until = now + self._ack_wait  # let the retained ack arrive first
            self._ack_progress = now
            self._last_tx = now
            return False
        try:
            self.transport.poll()
            self._apply_ack(now)
            if now - self._last_tx >= self._ping_ms:
                self.transport.ping()  # umqtt sends no keepalive by itself
                self._last_tx = now
            return self._send(now)
        except Exception as e:
            self._drop(now, e)
            return False

    def _send(self, now):
        j = self.journal
        if not self._ack_got and now < self._sync_until:
            return False
        if self._cursor >= self._last_n:
            if self._cursor > j.acked and now - self._ack_progress >= self._ack_timeout:
                # Published but not acked in time: a gateway may have crashed after
                # the broker's PUBACK. Resend from the ack (duplicates are harmless).
                self._cursor = j.acked
                self._ack_progress = now
                self.resends += 1
            return False
        if self._cursor == j.acked:
            self._ack_progress = now  # the ack timeout runs from the first unacked publish
        live = self._live
        if live is not None and live[0] == self._cursor + 1 == self._last_n:
            self._publish(live[1], live[0], 1)
        else:
            self._publish_batch()
        return self._cursor < self._last_n

    def _publish(self, payload, last, count):
        self.transport.publish(self.topic_rec, payload)
        self._last_tx = self.uptime.now()
        self._cursor = last
        self.published += 1
        self.records_sent += count

    def _publish_batch(self):
        # [+ bstr]: each element the exact journaled bytes, oldest first. Elements
        # are written after a gap of _BATCH_HEAD bytes; the array head goes right
        # before them once the count is known, so nothing is copied twice.
        buf = self._batch
        cap = len(buf)
        pos = _BATCH_HEAD
        count = 0
        last = self._cursor
        first = None
        it = self.journal.pending(self._cursor)
        try:
            for n, rec in it:
                size = len(rec)
                head = 2 if size < 256 else 3
                if pos + head + size > cap:
                    break
                if size < 256:
                    buf[pos] = 0x58
                    buf[pos + 1] = size
                else:
                    buf[pos] = 0x59
                    buf[pos + 1] = size >> 8
                    buf[pos + 2] = size & 0xFF
                pos += head
                buf[pos : pos + size] = rec
                pos += size
                if first is None:
                    first = pos - size
                count += 1
                last = n
        finally:
            it.close()  # a generator: releases the segment file it has open
        if count == 0:
            return
        if count == 1:
            self._publish(buf[first:pos], last, 1)
            return
        if count < 24:
            start = _BATCH_HEAD - 1
            buf[start] = 0x80 | count
        elif count < 256:
            start = _BATCH_HEAD - 2
            buf[start] = 0x98
            buf[start + 1] = count
        else:
            start = 0
            buf[0] = 0x99
            buf[1] = count >> 8
            buf[2] = count & 0xFF
        self._publish(buf[start:pos], last, count)

    # -- introspection ---------------------------------------------------------------

    @property
    def connected(self):
        return self._connected

    @property
    def stats(self):
        j = self.journal
        return {
            "boot": self.boot,
            "last_n": self._last_n,
            "signed": self.signed,
            "published": self.published,
            "records_sent": self.records_sent,
            "acked": j.acked if j else 0,
            "pending": j.pending_count if j else 0,
            "journal_fill": j.fill_percent if j else 0,
            "connected": self._connected,
            "connects": self.connects,
            "disconnects": self.disconnects,
            "resends": self.resends,
            "refused": self.refused,
            "bad_acks": self.bad_acks,
            "stale_acks": self.stale_acks,
            "hb_skipped": self.hb_skipped,
            "events_dropped": self.events_dropped,
            "source_errors": self.source_errors,
            "clock_synced": self.wall.synced,
            "clock_syncs": self.wall.syncs,
            "clock_sync_failures": self.wall.sync_failures,
            "sources": {s.src: s.counts for s in self.sources if hasattr(s, "counts")},
        }
