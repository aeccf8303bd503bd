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
