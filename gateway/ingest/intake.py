"""The ingest pipeline's middle: messages in, verified in worker processes, out to the writer.

::

    paho network thread          verifier threads (N)         writer thread (1)
    (mqtt_link.py) on_message:   each sends chunks to its     (writer.py, service.py)
    wrap, append to the      --> own verifier process and --> in arrival order: one
    current chunk                attaches the results         transaction per batch;
    (nothing else)               (no GIL shared with the      after COMMIT: PUBACK the
                                 Python part of verifying)    messages, publish acks

Bounded memory: Receive Maximum (MQTT v5) caps the QoS 1 messages the broker
sends before they are PUBACKed, so at most ``receive_maximum`` messages are
anywhere in this pipeline, however large the backlog in the broker.

Order: the writer applies messages in arrival order (chunks are queued for the
writer in the order they were filled), so each device's records reach the
sequence rules in the order the broker delivered them, and PUBACKs leave in
the order the PUBLISHes arrived (MQTT 4.6).

Failures: a verifier process that dies or reports an error is replaced and the chunks
it held are verified in-thread; one that has held a chunk for ``WORKER_ANSWER_S``
without answering (hung, stopped) is killed by :meth:`Intake.check_workers`, and its
thread then recovers as for a dead one. A verifier thread that fails anyway (a bug)
reports it through ``on_failure`` and the service stops (exit 3, docs/GATEWAY.md).
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from signet_gateway.verify.pubkeys import DevicePublicKey
from signet_gateway.verify.verifier import Verifier

from .timings import Histogram
from .verify_pool import VerifyWorker, verify_chunk
from .wire import device_of_topic
from .writer import Message, Rejection

__all__ = ["Chunk", "Intake", "verify_message"]

log = logging.getLogger("signet.gateway")

CHUNK: Final = 32  # messages per verifier work item: amortises queue/event cost per message
PROCESS_CHUNK: Final = 128  # per work item for a worker process: amortises the pipe round trip
PIPELINE: Final = 2  # chunks sent to a worker process ahead of reading its results
# A verifier process answers a chunk in milliseconds (128 records, ~0.1 ms each): one that
# has not answered for this long is hung (stopped, swapped out for good) and is replaced.
WORKER_ANSWER_S: Final = 30.0


class Chunk:
    __slots__ = ("done", "msgs", "sent")

    def __init__(self, msgs: list[Message]) -> None:
        self.msgs = msgs
        self.done = threading.Event()
        self.sent = 0.0  # time.perf_counter() when handed to a verifier process


def verify_message(m: Message, verifier: Verifier) -> None:
    """Fill m.kid and m.results (or m.rejection) in this thread.

    The worker processes' loop and result form, so that the writer has one form to apply
    however a message was verified.
    """
    _attach_results([m], verify_chunk(verifier, [(m.topic, m.payload)]))


def _attach_results(msgs: list[Message], results: list[Any]) -> None:
    """Put :func:`verify_chunk`'s results for ``msgs`` on the messages."""
    for m, res in zip(msgs, results, strict=True):
        if type(res) is tuple:  # (REFUSED, reason, detail): the whole message
            _, reason, detail = res
            if reason != "bad_topic":
                m.kid = device_of_topic(m.topic)
            m.rejection = Rejection(reason, detail, m.payload)
            continue
        m.kid = device_of_topic(m.topic)
        # Verified items stay verify_chunk's tuples (the writer reads them as they are);
        # only refusals become Rejection objects.
        for i, item in enumerate(res):
            if type(item[0]) is not dict:
                reason, detail, raw = item
                res[i] = Rejection(reason, detail, m.payload if raw is None else raw)
        m.results = res


class Intake:
    """Messages from the network thread to the verifiers and, in order, to the writer.

    With ``keys`` given, every verifier thread drives a worker process of its own
    (:mod:`.verify_pool`) and only rebuilds the results; without, it verifies in-thread.
    Call :meth:`keys_changed` after mutating ``keys`` (enroll/revoke noticed).
    """

    def __init__(
        self,
        verifier: Verifier,
        threads: int,
        keys: Mapping[bytes, DevicePublicKey] | None = None,
        on_failure: Callable[[str, BaseException], None] | None = None,
        verify_timing: Histogram | None = None,
    ) -> None:
        """on_failure(what, exc): a verifier thread failed beyond recovery (a bug);
        verify_timing: observes each chunk's time in a verifier process (timings.py)."""
        self.verifier = verifier
        self._verify_timing = verify_timing
        self._on_failure = on_failure
        self._keys = keys
        self.keys_generation = 0
        self._lock = threading.Lock()
        self._current: list[Message] = []
        self._work: queue.SimpleQueue[Chunk | None] = queue.SimpleQueue()
        self.order: collections.deque[Chunk] = collections.deque()
        self.arrived = threading.Event()
        self.closed = False
        self.received = 0
        self.dropped_closing = 0
        self.verify_errors = 0
        self.chunk = CHUNK if keys is None else PROCESS_CHUNK
        self.workers: list[VerifyWorker | None] = [
            None if keys is None else VerifyWorker(f"signet-verify-{i}") for i in range(threads)
        ]
        self._threads = [
            threading.Thread(target=self._verify_main, args=(i,), name=f"signet-verify-{i}",
                             daemon=True)
            for i in range(threads)
        ]  # fmt: skip
        for t in self._threads:
            t.start()

    def verifier_problems(self) -> list[str]:
        """What is wrong with the verifier threads now (the gateway's readiness)."""
        dead = [t.name for t in self._threads if not t.is_alive()]
        return [f"verifier threads not running: {', '.join(dead)}"] if dead else []

    def keys_changed(self) -> None:
        self.keys_generation += 1

    def put(self, m: Message) -> None:
        """Called by the network thread for every message."""
        with self._lock:
            if self.closed:
                # Shutting down: leave it un-PUBACKed in the broker's session for next time.
                self.dropped_closing += 1
                return
            self.received += 1
            current = self._current
            current.append(m)
            if len(current) >= self.chunk:
                self._seal()
            elif len(current) == 1:
                self.arrived.set()

    def _seal(self) -> None:
        chunk = Chunk(self._current)
        self._current = []
        self.order.append(chunk)
        self._work.put(chunk)
        self.arrived.set()

    def seal_partial(self) -> bool:
        """Send a partly filled chunk on (the writer calls this when it would wait)."""
        with self._lock:
            if self._current:
                self._seal()
                return True
            return False

    def close(self) -> None:
        with self._lock:
            self.closed = True

    def idle(self) -> bool:
        with self._lock:
            return not self._current and not self.order

    def stop(self) -> None:
        for _ in self._threads:
            self._work.put(None)
        for t in self._threads:
            t.join(timeout=10)
        for w in self.workers:
            if w is not None:
                w.stop()

    def check_workers(self) -> None:
        """Kill any verifier process that has held a chunk for WORKER_ANSWER_S without
        answering: its thread then finds it gone and recovers (a new process; the chunks
        in-thread). The service calls it every second."""
        answer_s = WORKER_ANSWER_S
        now = time.monotonic()
        for worker in self.workers:
            if worker is not None and worker.silent_for(now) > answer_s:
                log.error(
                    "verifier process %d has not answered for %.0f s; killing it",
                    worker.pid,
                    worker.silent_for(now),
                )
                worker.kill()

    def _verify_main(self, index: int) -> None:
        try:
            self._verify_loop(index)
        except BaseException as exc:
            # A bug (every expected failure is handled in the loop): the chunks this thread
            # held will never be done, so the service must stop rather than wait forever.
            if self._on_failure is None:
                raise
            self._on_failure(f"verifier thread signet-verify-{index}", exc)

    def _verify_loop(self, index: int) -> None:
        """Feed one worker process, keeping up to PIPELINE chunks sent to it.

        With one chunk at a time the worker sat idle from returning a result until this
        thread had the gateway's GIL again (to read it, attach it and send the next chunk):
        measured 15-25 % of each worker's time while the writer and the network thread were
        busy. With the next chunk already in its pipe, the worker goes straight on.
        """
        sent: collections.deque[Chunk] = collections.deque()  # sent, results not read yet
        stopping = False
        while True:
            chunk: Chunk | None = None
            if not stopping:
                if not sent:
                    chunk = self._work.get()
                    if chunk is None:
                        return
                elif len(sent) < PIPELINE:
                    try:
                        chunk = self._work.get_nowait()
                    except queue.Empty:
                        chunk = None
                    else:
                        stopping = chunk is None  # finish what was sent, then return
            worker = self.workers[index]
            if chunk is not None:
                if worker is None:
                    self.verify_in_thread(chunk.msgs)
                    chunk.done.set()
                    continue
                try:
                    self._send_remote(worker, chunk.msgs)
                except Exception as exc:
                    self._worker_failed(index, exc, [*sent, chunk])
                    sent.clear()
                    continue
                chunk.sent = time.perf_counter()
                sent.append(chunk)
                continue  # top the pipeline up before waiting for a result
            if not sent:
                if stopping:
                    return
                continue
            head = sent[0]
            assert worker is not None
            try:
                self._receive_remote(worker, head.msgs)
            except Exception as exc:
                self._worker_failed(index, exc, list(sent))
                sent.clear()
                continue
            sent.popleft()
            if self._verify_timing is not None:
                self._verify_timing.observe(time.perf_counter() - head.sent)
            head.done.set()

    def _worker_failed(self, index: int, exc: Exception, chunks: list[Chunk]) -> None:
        """The worker died or failed: verify its chunks here, start a new worker."""
        log.error("verifier process failed (%s); restarting it", exc)
        worker = self.workers[index]
        if worker is not None:
            worker.stop(timeout=1.0)
        try:
            self.workers[index] = VerifyWorker(f"signet-verify-{index}")
        except Exception:
            log.exception("cannot restart the verifier process; verifying in-thread")
            self.workers[index] = None
        for chunk in chunks:
            self.verify_in_thread(chunk.msgs)
            chunk.done.set()

    def verify_in_thread(self, msgs: list[Message]) -> None:
        """Verify msgs in the calling thread with the gateway's own verifier (current keys),
        replacing whatever results they had."""
        verifier = self.verifier
        for m in msgs:
            m.kid = ""
            m.rejection = None
            m.results = []
            try:
                verify_message(m, verifier)
            except Exception as exc:  # a bug must not kill the thread or lose the message
                self.verify_errors += 1
                log.exception("verifier error on topic %r", m.topic[:80])
                m.results = []
                m.rejection = Rejection("internal_error", f"{type(exc).__name__}: {exc}", m.payload)

    def _send_remote(self, worker: VerifyWorker, msgs: list[Message]) -> None:
        generation = self.keys_generation
        if worker.keys_generation != generation:
            assert self._keys is not None
            snapshot = dict(self._keys)  # one C-level copy: the writer thread may mutate keys
            worker.set_keys(
                {kid: (k.compressed, k.curve) for kid, k in snapshot.items()}, generation
            )
        worker.submit([(m.topic, m.payload) for m in msgs])

    def _receive_remote(self, worker: VerifyWorker, msgs: list[Message]) -> None:
        _attach_results(msgs, worker.result())
