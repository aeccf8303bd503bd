# The agent at the edge of its heap: a MemoryError anywhere in the loop is
# survived, counted, never mistaken for a network fault, and costs no record
# and no sequence number. On MicroPython the heap is really locked
# (micropython.heap_lock(): every allocation fails); CPython has no such
# switch, so there the same moments fail by injection (the signer's builder
# and the transport raise MemoryError). CPython and MicroPython
# (host_tests/firmware/test_agent_micropython.py).

try:
    from micropython import heap_lock, heap_unlock
except ImportError:  # CPython
    heap_lock = heap_unlock = None

try:
    from .agentkit import Rig, make_config
    from .fwassert import raises
except ImportError:  # MicroPython runner: flat import path
    from agentkit import Rig, make_config
    from fwassert import raises


class _Starved:
    """Makes allocations fail while active: the real heap lock where it exists."""

    def __init__(self, rig):
        self.active = False
        if heap_lock is None:
            rec = rig.agent.recorder
            build = rec._builder.build
            publish = rig.transport.publish
            poll = rig.transport.poll

            def failing(real):
                def call(*args):
                    if self.active:
                        raise MemoryError("memory allocation failed")
                    return real(*args)

                return call

            rec._builder.build = failing(build)
            rig.transport.publish = failing(publish)
            rig.transport.poll = failing(poll)

    def __enter__(self):
        self.active = True
        if heap_lock is not None:
            heap_lock()
        return self

    def __exit__(self, kind, value, tb):  # no *args: a varargs tuple cannot be allocated
        if heap_lock is not None:
            heap_unlock()
        self.active = False
        return False


def _all_stored(rig):
    agent = rig.agent
    return rig.gw.ack == agent.recorder.last_n and agent.recorder.journal.acked == rig.gw.ack


def test_a_memory_error_while_signing_keeps_the_sequence_number():
    rig = Rig()
    agent = rig.agent
    try:
        rig.run_until(lambda: _all_stored(rig))
        last = agent.recorder.last_n
        starved = _Starved(rig)
        with starved:
            if heap_lock is None:
                raises(MemoryError, agent.record_revenue, 250, "EUR", "till")
            else:
                try:
                    agent.record_revenue(250, "EUR", "till")
                except MemoryError:
                    pass
                else:
                    raise AssertionError("signing with a locked heap did not fail")
        n = agent.record_revenue(250, "EUR", "till")
        assert n == last + 1  # the number the failed attempt took, not last + 2
        rig.run_until(lambda: _all_stored(rig))
        assert rig.gw.check_chain() == n  # 1..n, no gap, every link intact
    finally:
        rig.close()


def test_the_agent_keeps_publishing_through_low_memory_and_loses_nothing():
    rig = Rig(make_config(intervals={"heartbeat_s": 1, "loop_ms": 100}))
    agent = rig.agent
    try:
        rig.run_until(lambda: _all_stored(rig))
        starved = _Starved(rig)
        sold = 0
        for i in range(40):
            if i % 10 == 0:  # an outage now and then: catch-up batches after it
                rig.broker.up = i % 20 != 0
            try:
                agent.record_revenue(100 + i, "EUR", "till")
                sold += 1
            except Exception as e:
                assert getattr(e, "reason", None) == "journal_full", e
            for _ in range(3):
                if i % 4 == 1:
                    with starved:
                        wait = agent.step()  # must not raise
                else:
                    wait = agent.step()
                rig.platform.advance(wait if wait > 0 else 1)
                rig.platform.advance(400)  # heartbeats fall due inside the starved steps
        rig.broker.up = True
        rig.run_until(lambda: _all_stored(rig))
        stats = agent.stats
        assert stats["memory_errors"] >= 5, stats
        assert stats["disconnects"] <= 2, stats  # the outages, not the MemoryErrors
        assert sold == 40
        assert rig.gw.check_chain() == agent.recorder.last_n  # every number, in one chain
        revenue = [n for n, kind in rig.gw.kinds.items() if kind == "rev"]
        assert len(revenue) == 40
        notes = [
            rig.gw.fields(n)["msg"]
            for n, kind in rig.gw.kinds.items()
            if kind == "evt" and rig.gw.fields(n)["ev"] == "low_memory"
        ]
        assert notes and notes[-1].endswith("MemoryError survived"), notes
        assert len(notes) <= 1 + 40 * 3 * 500 // 1000  # at most one per heartbeat interval
    finally:
        rig.close()


class _Watchdog:
    """The platform's watchdog feed, driving Agent.run(): each feed is 100 ms of
    loop, and the steps whose number is in [starve_from, starve_to) run starved
    (the heap locked from this feed to the next one, so inside the step). After
    `stop_at` feeds it asks the agent to stop. Nothing here allocates while the
    heap is locked: counters are small ints, the attributes exist already."""

    def __init__(self, rig, starved, starve_from, starve_to, stop_at):
        self.rig = rig
        self.starved = starved
        self.starve_from = starve_from
        self.starve_to = starve_to
        self.stop_at = stop_at
        self.fed = 0
        self.locked = False
        self.signed_before = 0  # records signed when the starving began
        rig.platform.feed_watchdog = self.feed
        rig.platform.sleep_ms = self.sleep

    def feed(self):
        self._unlock()
        self.fed += 1
        self.rig.platform.advance(100)
        if self.fed >= self.stop_at:
            self.rig.agent.request_stop()
        elif self.starve_from <= self.fed < self.starve_to:
            if self.fed == self.starve_from:
                self.signed_before = self.rig.agent.recorder.signed
            self.locked = True
            self.starved.__enter__()

    def sleep(self, ms):
        pass  # the loop's time passes in feed(): a step that returns 0 has no sleep

    def _unlock(self):
        if self.locked:
            self.starved.__exit__(None, None, None)
            self.locked = False

    def run(self):
        try:
            return self.rig.agent.run()
        finally:
            self._unlock()


def _stall_config(heartbeat_s=1):
    return make_config(intervals={"heartbeat_s": heartbeat_s, "loop_ms": 100, "stall_s": 10})


def test_a_transient_low_memory_spell_keeps_the_watchdog_fed():
    rig = Rig(_stall_config())
    agent = rig.agent
    try:
        rig.run_until(lambda: _all_stored(rig))
        # 8 s of steps out of memory (heartbeats due, nothing signed or sent), less
        # than stall_s: the agent goes on, and feeds the watchdog at every step.
        dog = _Watchdog(rig, _Starved(rig), 20, 100, 200)
        assert dog.run() is True  # stopped on request, not stalled
        assert dog.fed == 200
        assert not agent.stalled and not agent.stats["stalled"]
        assert agent.stats["memory_errors"] >= 60, agent.stats
        rig.run_until(lambda: _all_stored(rig))
        assert rig.gw.check_chain() == agent.recorder.last_n
    finally:
        rig.close()


def test_an_agent_out_of_memory_at_every_step_stops_feeding_the_watchdog():
    rig = Rig(_stall_config())
    agent = rig.agent
    try:
        rig.run_until(lambda: _all_stored(rig))
        # Starved from the 20th step on (a stop is asked at the 200th): after stall_s (100 steps)
        # with nothing signed, published or acked, run() returns without feeding.
        dog = _Watchdog(rig, _Starved(rig), 20, 1000000, 200)
        assert dog.run() is False
        assert agent.stalled and agent.stats["stalled"]
        # The last step with progress came after the 19th feed; stall_s is 100 feeds.
        assert 19 + 100 <= dog.fed <= 19 + 100 + 10, dog.fed  # not before stall_s, soon after
        # The heap allowed nothing, not even the evt.
        assert agent.recorder.signed == dog.signed_before
    finally:
        rig.close()


class _DeadLink:
    """Only the link runs out of memory (its transport's calls fail): signing works."""

    def __init__(self, rig):
        self.active = False
        transport = rig.transport
        for name in ("poll", "publish"):
            setattr(transport, name, self._failing(getattr(transport, name)))

    def _failing(self, real):
        def call(*args):
            if self.active:
                raise MemoryError("memory allocation failed")
            return real(*args)

        return call

    def __enter__(self):
        self.active = True
        return self

    def __exit__(self, kind, value, tb):
        self.active = False
        return False


def test_a_stalled_agent_signs_an_evt_when_it_still_can():
    rig = Rig(_stall_config(heartbeat_s=3600))
    agent = rig.agent
    try:
        rig.run_until(lambda: _all_stored(rig))
        dead = _DeadLink(rig)
        dog = _Watchdog(rig, dead, 5, 1000000, 200)
        assert dog.run() is False
        assert agent.stalled
        n = agent.recorder.last_n
        assert agent.recorder.live[0] == n  # the evt, journaled before run() returned
        # The board resets; the new boot sends the journal, the evt with it.
        agent = rig.reboot()
        rig.run_until(lambda: _all_stored(rig))
        assert rig.gw.kinds[n] == "evt"
        fields = rig.gw.fields(n)
        assert fields["ev"] == "stalled" and fields["msg"] == "no progress for 10 s", fields
        rig.gw.check_chain()  # every stored record linked to the one before (the new
        # boot's lease leaves a declared gap)
    finally:
        rig.close()


def test_an_uptime_the_heap_cannot_hold_is_a_survived_memory_error():
    # Past 2^30 ms (12.4 days) the uptime is a bigint on a 32-bit port, and every
    # now() allocates one: with the heap full, the call that reads it for the link
    # ran out of memory outside any handler and the MemoryError escaped step().
    rig = Rig(_stall_config())
    agent = rig.agent
    try:
        rig.run_until(lambda: _all_stored(rig))
        starved = _Starved(rig)
        if heap_lock is None:
            now = agent.uptime.now

            def failing_now():
                if starved.active:
                    raise MemoryError("memory allocation failed")
                return now()

            agent.uptime.now = failing_now
        else:
            agent.uptime._ms = 1 << 62  # a bigint on either port
        errors = agent.stats["memory_errors"]
        with starved:
            agent.step()  # must not raise
        assert agent.stats["memory_errors"] >= errors + 2  # the recorder's and the link's
    finally:
        rig.close()
