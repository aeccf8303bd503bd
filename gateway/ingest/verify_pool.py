"""Verification in worker processes: one process per verifier thread, no shared GIL.

Measured on the 2-core target: with verification in threads, the Python part of
verifying (envelope and payload decode, schema checks, ~30 us a record) and every
return from OpenSSL competed for one GIL with the paho network thread and the
writer; the process used ~1.35 of 2 cores and each part ran ~40 % slower than
alone. In a process of its own, a verifier runs its Python part in parallel with
the writer, and the gateway's GIL only carries network, storage and a cheap
rebuild of the results.

Protocol over one ``multiprocessing`` pipe per worker (pickled tuples):

- ``("keys", {kid: (sec1, curve)})``: the complete set of enrolled, active keys
  (sent before the first chunk and again whenever the gateway's key set changed).
- ``("chunk", [(topic, payload), ...])`` -> one result per message, in order:
  ``(REFUSED, reason, detail)`` for a message refused as a whole, else a list with
  one item per record: ``(payload_map, payload_len, payload_sha256)`` for a
  verified record (``(payload_map, payload_len, payload_sha256, raw)`` inside a
  batch message; the payload bytes are the ``payload_len`` bytes before the
  66-byte signature item at the end of the record: strict CBOR leaves no other
  layout), or ``(reason, detail, raw_or_None)`` for a refused one (None: the raw
  is the whole message).

The verified items go to the writer as they are (no ``VerifiedRecord`` is built in
the gateway process: measured ~1 us each, on the GIL every other thread needs), and
the payload hash the sequence rules need is computed here, off that GIL.

The worker uses the one verifier (:class:`gateway.verify.Verifier`).
:func:`verify_chunk` is also what a verifier thread runs when it has no worker
(``ingest.verify_message``): one verify loop, one result form for the writer.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import time
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

from signet_gateway.verify.refusals import Refused

from .wire import BadTopic, device_of_topic, split_message

if TYPE_CHECKING:
    from signet_gateway.verify.verifier import Verifier

__all__ = ["REFUSED", "VerifyWorker", "verify_chunk"]

REFUSED: Final = 0  # first element of a whole-message refusal
_sha256 = hashlib.sha256


def verify_chunk(verifier: Verifier, msgs: list[tuple[bytes, bytes]]) -> list[Any]:
    """Verify the messages of one chunk; the compact results described in the module doc."""
    out: list[Any] = []
    append = out.append
    verify = verifier.verify
    for topic, payload in msgs:
        try:
            kid = device_of_topic(topic)
            elements = split_message(payload)
        except BadTopic as bad:
            append((REFUSED, bad.reason, bad.detail))
            continue
        except Refused as refused:
            append((REFUSED, refused.reason, refused.detail))
            continue
        expected = bytes.fromhex(kid)
        single = len(elements) == 1 and elements[0] is payload
        items: list[Any] = []
        for raw in elements:
            try:
                rec = verify(raw, expected)
            except Refused as refused:
                items.append((refused.reason, refused.detail, None if single else raw))
                continue
            pbytes = rec.payload_bytes
            if single:
                items.append((rec.payload, len(pbytes), _sha256(pbytes).digest()))
            else:
                items.append((rec.payload, len(pbytes), _sha256(pbytes).digest(), raw))
        append(items)
    return out


WORKER_NICE: Final = 5


def _lower_priority() -> None:
    """Run verification below the gateway process's priority (measured: see docs/GATEWAY.md).

    The gateway's single writer thread is the pipeline's critical path: at the same
    priority, two busy workers took 2/3 of both cores from it, the writer fell behind and
    finished its backlog alone after the workers were done. Niced, the workers get every
    cycle the writer and the network thread do not need, and no more.
    """
    with contextlib.suppress(OSError, AttributeError):
        os.nice(WORKER_NICE)


# Signals that reach every process of the gateway at once, and on which the gateway stops
# gracefully: Ctrl-C in a terminal (SIGINT to the foreground process group), systemd's stop
# (SIGTERM to the whole cgroup), a terminal or ssh session that goes away (SIGHUP).
_GROUP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _worker_main(conn: multiprocessing.connection.Connection) -> None:
    from signet_gateway.verify.pubkeys import DevicePublicKey
    from signet_gateway.verify.verifier import Verifier

    # The gateway decides when a worker stops: it drains first, and a worker that died on
    # the same signal would leave its chunks to be verified in-thread and be restarted in
    # the middle of the shutdown (or print a KeyboardInterrupt traceback). A worker ends on
    # None, when its pipe closes (the gateway exited, even by kill -9), or by SIGKILL.
    for signum in _GROUP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    _lower_priority()
    keys: dict[bytes, DevicePublicKey] = {}
    verifier = Verifier(keys)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        what, body = message
        if what == "keys":
            keys.clear()
            for kid, (sec1, curve) in body.items():
                keys[kid] = DevicePublicKey.from_sec1(sec1, curve)
            verifier.forget()
            continue
        try:
            result: Any = ("ok", verify_chunk(verifier, body))
        except Exception as exc:  # a bug: report it, keep serving
            result = ("error", f"{type(exc).__name__}: {exc}")
        conn.send(result)


_context: Any = None


def _mp_context() -> Any:
    """forkserver: children fork from a clean single-threaded server (the gateway process
    has paho, writer and verifier threads and an open database; forking it is unsafe),
    and after the first start a worker costs a fork, not a fresh interpreter."""
    global _context
    if _context is None:
        methods = multiprocessing.get_all_start_methods()
        _context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        if "forkserver" in methods:
            _context.set_forkserver_preload(
                ["signet_gateway.ingest.verify_pool", "signet_gateway.verify.verifier"]
            )
    return _context


@contextlib.contextmanager
def _group_signals_blocked() -> Iterator[None]:
    """Block the group signals in this thread while a child process is started.

    A child inherits the blocked mask, also across the exec that starts the forkserver: so
    neither the forkserver nor a worker forked from it can be hit by a group signal in the
    moment before _worker_main ignores it. A signal for the gateway itself arriving
    meanwhile stays pending and is handled as soon as the mask is restored.
    """
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _GROUP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


_live: weakref.WeakSet[VerifyWorker] = weakref.WeakSet()


def _kill_unstopped() -> None:
    """At interpreter exit, SIGKILL workers that nobody stopped (a start that failed midway).

    They ignore SIGTERM, and multiprocessing's own exit handler sends SIGTERM to daemonic
    children and then waits for them without a timeout: it would wait forever. atexit runs
    handlers last-registered first, and this one is registered after multiprocessing's.
    """
    for worker in list(_live):
        worker.stop(timeout=0)


class VerifyWorker:
    """One worker process and its pipe; used by exactly one verifier thread."""

    def __init__(self, name: str) -> None:
        ctx = _mp_context()
        ours, theirs = ctx.Pipe(duplex=True)
        self._conn = ours
        self._proc = ctx.Process(target=_worker_main, args=(theirs,), name=name, daemon=True)
        with _group_signals_blocked():
            self._proc.start()
        theirs.close()
        self.keys_generation = -1
        self._unanswered = 0  # chunks sent whose results were not read yet
        self._waiting_since = 0.0  # monotonic: since when the oldest of them waits
        if not _live:
            atexit.unregister(_kill_unstopped)
            atexit.register(_kill_unstopped)  # after multiprocessing's (imported by now)
        _live.add(self)

    def set_keys(self, keys: dict[bytes, tuple[bytes, str]], generation: int) -> None:
        self._conn.send(("keys", keys))
        self.keys_generation = generation

    def submit(self, msgs: list[tuple[bytes, bytes]]) -> None:
        """Send one chunk; its results come from :meth:`result`, in the order sent."""
        if not self._unanswered:
            self._waiting_since = time.monotonic()
        self._unanswered += 1
        try:
            self._conn.send(("chunk", msgs))
        except (OSError, ValueError) as exc:
            raise RuntimeError(f"verifier process {self._proc.pid} is gone ({exc})") from exc

    def result(self) -> list[Any]:
        """Results of the oldest chunk sent and not yet read; RuntimeError if the worker
        failed or died."""
        try:
            status, body = self._conn.recv()
        except (EOFError, OSError) as exc:
            raise RuntimeError(f"verifier process {self._proc.pid} is gone ({exc})") from exc
        self._unanswered -= 1
        self._waiting_since = time.monotonic()  # the next chunk has been worked on since now
        if status != "ok":
            raise RuntimeError(f"verifier process failed: {body}")
        return body  # type: ignore[no-any-return]

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    def silent_for(self, now: float) -> float:
        """Seconds the worker has held a chunk without answering (0 when it holds none)."""
        return now - self._waiting_since if self._unanswered else 0.0

    def kill(self) -> None:
        """SIGKILL and reap: for a worker that failed or hangs (any thread may call it; a
        thread blocked on its pipe then gets an error)."""
        _live.discard(self)
        with contextlib.suppress(OSError, ValueError):
            self._proc.kill()
        self._proc.join(5)

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the worker to exit; SIGKILL after timeout (it ignores the group signals).

        A worker still holding a chunk is killed at once: its thread has stopped waiting for
        it, and a hung worker with a full pipe would block the polite send for ever."""
        _live.discard(self)
        if self._unanswered:
            self.kill()
        with contextlib.suppress(OSError, ValueError):
            self._conn.send(None)
        self._proc.join(timeout)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(1)
        self._conn.close()
