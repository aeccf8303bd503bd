# The device agent: sign what the machine does, keep it until a gateway has it.
#
# Owns the composition and the loop: one Recorder (recorder.py: what gets
# signed, the journal fill policy) and one Link (link.py: the MQTT session),
# the clocks they share, the sources, and step(), a single-threaded loop
# iteration: sign what is due, poll every source, then let the link exchange
# messages. Records therefore go build+sign -> journal append (durable) ->
# publish, within one step or across several. docs/AGENT.md describes the loop,
# the journal fill policy and the interfaces below.
#
# May import: clock, recorder, link. It is the only module that knows both the
# recorder and the link; the rest of the code (main.py, tools, tests) uses it,
# and reads their state as agent.recorder.* and agent.link.* (or agent.stats).
#
# platform (duck-typed; board.py on MicroPython, tools/pi/platform.py on a Pi):
#   ticks_ms(), ticks_diff(a, b), sleep_ms(ms), wall_ms() -> int | None (unix ms),
#   sync_clock() -> bool, reset_cause() -> str token, feed_watchdog(),
#   network_ready() -> bool, connect_network() (non-blocking, idempotent),
#   urandom(n) -> bytes, log(msg)
# transport (duck-typed; mqtt.py wraps umqtt.simple, tools/pi/paho_transport.py wraps paho):
#   set_callback(cb(topic: str, payload: bytes)), connect(will_topic, will_payload)
#   (will retained, QoS 1; raises OSError), subscribe(topic), publish(topic, payload,
#   retain=False) (QoS 1; payload is bytes-like and MAY BE A MEMORYVIEW into a buffer
#   the agent reuses: copy it if you keep it), poll() (non-blocking; delivers incoming
#   messages through the callback), ping(), disconnect() (clean), close() (drop).
# source (anything with poll(agent), called once per step, must not block).

import gc

from .clock import Uptime, WallClock
from .link import Link
from .recorder import Recorder, RecordRefused  # noqa: F401 (sources and tools catch it here)


class Agent:
    def __init__(self, config, platform, signer, transport, files, sources=None, counter=None):
        # Collected first: the garbage of what ran before (the key's comb table and
        # public point) is gone, so the agent's long-lived objects fill the holes low
        # in the heap instead of landing between it and cutting up the free heap.
        gc.collect()
        self.config = config
        self.platform = platform
        self.signer = signer
        self.transport = transport
        self.files = files
        self.sources = list(sources or ())
        self._loop_ms = config.intervals["loop_ms"]
        self._hb_ms = config.intervals["heartbeat_s"] * 1000
        self.uptime = Uptime(platform.ticks_ms, platform.ticks_diff)
        self.wall = WallClock(platform, self.uptime, config.time["resync_s"] * 1000)
        # counter: the chip's monotonic counter the sequence lease is bound to (state.py)
        # The link first: its catch-up buffer is the largest block the agent holds.
        self.link = Link(config.mqtt, platform, transport, signer.device_id, self.uptime)
        self.recorder = rec = Recorder(
            config, platform, signer, files, self.uptime, self.wall, counter
        )
        # Bound once rather than wrapped: no extra call per record, no method
        # objects in RAM. start() recovers journal and state, signs the boot record.
        self.start = rec.start
        self.record_revenue = rec.record_revenue
        self.record_meter = rec.record_meter
        self.record_event = rec.record_event
        self._stop_requested = False
        self.source_errors = 0
        self.memory_errors = 0  # outside the link (which counts its own)
        self._mem_noted = 0  # the count the last low_memory evt reported
        self._mem_noted_at = 0

    # -- lifecycle -----------------------------------------------------------

    def run(self):
        """Step, feed the watchdog, sleep what step() allows; until request_stop()."""
        if self.recorder.journal is None:
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
        self.link.stop()

    # -- the loop --------------------------------------------------------------

    def step(self):
        """One loop iteration; returns the ms the caller may sleep."""
        rec = self.recorder
        try:
            rec.step(self.uptime.now())
        except MemoryError:
            # Low heap is not fatal: what was due (a heartbeat) is due again at
            # the next step, after the collection frees what this one left.
            gc.collect()
            self.memory_errors += 1
        self._note_low_memory(rec)
        for src in self.sources:
            try:
                src.poll(self)
            except MemoryError:
                gc.collect()
                self.memory_errors += 1
            except Exception as e:  # a broken source must not stop heartbeats
                self.source_errors += 1
                try:
                    self.platform.log("agent: source %r: %r" % (src, e))
                except MemoryError:
                    pass
        more = self.link.step(self.uptime.now(), rec)
        return 0 if more else self._loop_ms

    def _note_low_memory(self, rec):
        # Signed once the heap allows, at most once per heartbeat interval: the
        # gateway sees that the device ran short, not one record per failure.
        count = self.memory_errors + self.link.memory_errors
        if count == self._mem_noted:
            return
        now = self.uptime.now()
        if self._mem_noted_at and now - self._mem_noted_at < self._hb_ms:
            return
        try:
            if rec.note_event("low_memory", "%d MemoryError survived" % count):
                self._mem_noted = count
                self._mem_noted_at = now
        except MemoryError:
            gc.collect()  # still short: tried again at a later step

    # -- introspection ---------------------------------------------------------------

    @property
    def stats(self):
        rec = self.recorder
        link = self.link
        j = rec.journal
        counts = {}
        for s in self.sources:
            if hasattr(s, "counts"):
                counts[s.src] = s.counts
        return {
            "boot": rec.boot,
            "last_n": rec.last_n,
            "signed": rec.signed,
            "published": link.published,
            "records_sent": link.records_sent,
            "acked": j.acked if j else 0,
            "pending": j.pending_count if j else 0,
            "journal_fill": j.fill_percent if j else 0,
            "connected": link.connected,
            "connects": link.connects,
            "disconnects": link.disconnects,
            "resends": link.resends,
            "memory_errors": self.memory_errors + link.memory_errors,
            "refused": rec.refused,
            "repeats": rec.repeats,
            "bad_acks": link.bad_acks,
            "stale_acks": link.stale_acks,
            "hb_skipped": rec.hb_skipped,
            "events_dropped": rec.events_dropped,
            "source_errors": self.source_errors,
            "clock_synced": self.wall.synced,
            "clock_syncs": self.wall.syncs,
            "clock_sync_failures": self.wall.sync_failures,
            "sources": counts,
        }
