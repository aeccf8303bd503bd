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
# May import: clock, recorder, link, and stats (Agent.stats, on first use). It is the
# only module that knows both the recorder and the link; the rest of the code
# (main.py, tools, tests) uses it, and reads their state as agent.recorder.* and
# agent.link.* (or agent.stats).
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
        # The progress watchdog (docs/AGENT.md, "Low memory"): 0 = off.
        self._stall_ms = config.intervals["stall_s"] * 1000
        self._progress_at = platform.ticks_ms()  # ticks: small ints, nothing to allocate
        self.stalled = False
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
        """Step, feed the watchdog, sleep what step() allows; until request_stop().

        Returns True once stopped, False when the agent stalled (every step out of
        memory, no progress for intervals.stall_s): the watchdog is no longer fed
        and the caller resets the board or exits for a restart.
        """
        if self.recorder.journal is None:
            self.start()
        while not self._stop_requested:
            wait = self.step()
            if self.stalled:
                return False
            self.platform.feed_watchdog()
            if wait > 0 and not self._stop_requested:
                self.platform.sleep_ms(wait)
        return True

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
        link = self.link
        # What progress looks like, read before the step (references, no allocation).
        errors = self.memory_errors + link.memory_errors
        signed = rec.signed
        published = link.published
        acked = rec.journal.acked
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
        try:
            more = link.step(self.uptime.now(), rec)
        except MemoryError:  # the uptime itself: past 2^30 ms a bigint on a 32-bit port
            gc.collect()
            self.memory_errors += 1
            more = False
        if self._stall_ms:
            self._watch_progress(errors, signed, published, acked)
        return 0 if more else self._loop_ms

    def _watch_progress(self, errors, signed, published, acked):
        # A step made progress unless it ran out of memory AND nothing was signed,
        # published or acknowledged: a transient low-memory spell, a network outage
        # or an idle machine never trips this. Plain ticks, no uptime arithmetic:
        # on a 32-bit board past 2^30 ms the uptime is a bigint, which a full heap
        # cannot allocate.
        rec = self.recorder
        link = self.link
        p = self.platform
        if (
            self.memory_errors + link.memory_errors == errors
            or rec.signed != signed
            or link.published != published
            or rec.journal.acked != acked
        ):
            self._progress_at = p.ticks_ms()
            return
        if self.stalled or p.ticks_diff(p.ticks_ms(), self._progress_at) < self._stall_ms:
            return
        self.stalled = True  # run() returns; its caller logs it and resets or exits
        gc.collect()
        try:  # journaled: sent after the reset if not before
            rec.note_event("stalled", "no progress for %d s" % (self._stall_ms // 1000))
        except MemoryError:
            pass

    def _note_low_memory(self, rec):
        # Signed once the heap allows, at most once per heartbeat interval: the
        # gateway sees that the device ran short, not one record per failure.
        count = self.memory_errors + self.link.memory_errors
        if count == self._mem_noted:
            return
        try:
            now = self.uptime.now()
            if self._mem_noted_at and now - self._mem_noted_at < self._hb_ms:
                return
            if rec.note_event("low_memory", "%d MemoryError survived" % count):
                self._mem_noted = count
                self._mem_noted_at = now
        except MemoryError:
            gc.collect()  # still short: tried again at a later step

    # -- introspection ---------------------------------------------------------------

    @property
    def stats(self):
        """Every counter, as one dict (stats.py, loaded on first use: a board never asks)."""
        from .stats import collect

        return collect(self)
