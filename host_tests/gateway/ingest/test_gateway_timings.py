"""The pipeline's latency histograms (ingest/timings.py) and the verifier threads' part of the
readiness (Intake.verifier_problems), which the console serves as /metrics and /readyz."""

from __future__ import annotations

import math
import time

from signet_gateway.ingest.intake import Intake
from signet_gateway.ingest.timings import LATENCY_BUCKETS_S, Histogram, ThreadWork
from signet_gateway.verify.verifier import Verifier


def test_histogram_counts_are_cumulative_with_inf_last() -> None:
    h = Histogram((0.01, 0.1, 1.0))
    for seconds in (0.001, 0.01, 0.05, 0.5, 5.0, 50.0):
        h.observe(seconds)
    buckets, total, count = h.snapshot()
    # le is inclusive: 0.01 counts in the 0.01 bucket.
    assert buckets == [(0.01, 2), (0.1, 3), (1.0, 4), (math.inf, 6)]
    assert count == 6 and math.isclose(total, 55.561)
    assert list(LATENCY_BUCKETS_S) == sorted(LATENCY_BUCKETS_S)


def _burn(seconds: float) -> None:
    """Work on this thread's CPU (a sleep would count as wall time, not CPU)."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_thread_work_counts_each_piece_once_with_the_thread_s_cpu() -> None:
    """The log's work (ThreadWork): one observation per outermost piece (the catch-up's
    appends inside it are not counted again), and the thread's CPU time in them, not the
    time spent outside."""
    work = ThreadWork()
    with work.timed():
        _burn(0.02)
        with work.timed():  # an append inside the catch-up
            _burn(0.02)
    _burn(0.05)  # outside: not the log's
    with work.timed():
        _burn(0.01)
    _buckets, wall, count = work.seconds.snapshot()
    assert count == 2
    assert 0.05 <= work.cpu_s < 0.08 and work.cpu_s <= wall + 1e-3


def test_stopped_verifier_threads_make_the_gateway_not_ready() -> None:
    intake = Intake(Verifier({}), 2)  # in-thread verifiers: no processes to start
    assert intake.verifier_problems() == []
    intake.stop()  # each thread takes its None and ends
    assert intake.verifier_problems() == [
        "verifier threads not running: signet-verify-0, signet-verify-1"
    ]
