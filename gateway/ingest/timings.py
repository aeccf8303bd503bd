"""Latency histograms the pipeline fills as it works, for the console's /metrics.

Plain Python (no metrics library in the ingest layer): a fixed list of bucket bounds, a count
per bucket, a sum. An observation is a bisect and three additions under a lock, made once per
batch or per verifier chunk, never per record. gateway/web/metrics.py reads :meth:`snapshot`
when Prometheus scrapes and exposes each as a histogram in seconds.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

__all__ = ["LATENCY_BUCKETS_S", "Histogram", "ThreadWork", "Timings"]

# Seconds: from a quick commit (a few ms) to a store that waits out an outage (minutes).
LATENCY_BUCKETS_S: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip


class Histogram:
    """Counts of observations at or below each bound (Prometheus' ``le``), and their sum."""

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS_S) -> None:
        self.bounds = bounds
        self._counts = [0] * (len(bounds) + 1)  # the last: above every bound (+Inf only)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        i = bisect.bisect_left(self.bounds, seconds)
        with self._lock:
            self._counts[i] += 1
            self._sum += seconds

    def snapshot(self) -> tuple[list[tuple[float, int]], float, int]:
        """(cumulative (bound, count) pairs, +Inf last; sum; count), consistent with each other."""
        with self._lock:
            counts = list(self._counts)
            total = self._sum
        cumulative: list[tuple[float, int]] = []
        running = 0
        for bound, count in zip((*self.bounds, float("inf")), counts, strict=True):
            running += count
            cumulative.append((bound, running))
        return cumulative, total, running


class ThreadWork:
    """One kind of work that one thread does (the writer's log work): the wall time of each
    piece in a histogram, and the thread's CPU time in it, summed. CPU time rather than wall
    time alone because a loaded machine stretches the wall time by whatever else runs
    meanwhile, not the CPU time: the CPU is what the work costs. A piece inside another (the
    catch-up's appends) counts once, in the outer one."""

    def __init__(self) -> None:
        self.seconds = Histogram()
        self.cpu_s = 0.0  # written by the working thread alone; a float read whole by others
        self._depth = 0

    @contextmanager
    def timed(self) -> Iterator[None]:
        self._depth += 1
        outer = self._depth == 1
        wall0, cpu0 = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            self._depth -= 1
            if outer:
                self.cpu_s += time.thread_time() - cpu0
                self.seconds.observe(time.perf_counter() - wall0)


class Timings:
    """The gateway's latency histograms (docs/GATEWAY.md, "Metrics")."""

    def __init__(self) -> None:
        # writer.commit() of one batch: the transaction with its fsync, aggregates and log.
        self.commit = Histogram()
        # A batch's first message, from its arrival to its PUBACK after the commit.
        self.ack = Histogram()
        # A chunk of messages, from being handed to a verifier process to its results.
        self.verify = Histogram()
        # The transparency log's work on the writer thread: a batch's appends (inside its
        # commit), the catch-up at start, each checkpoint (log_keeper.py).
        self.log = ThreadWork()
