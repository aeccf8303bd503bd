"""The gateway service: wires store, verifier, pipeline and MQTT; start, run, stop.

``Gateway(config).start()`` opens the database, loads the enrolled keys, starts
the verifier threads, the writer thread and the MQTT network thread.
``request_stop()`` (SIGTERM) stops taking messages; ``stop()`` drains what was
taken, commits it, PUBACKs it, publishes the acks, disconnects cleanly (the
persistent session stays, holding anything that arrived meanwhile) and closes
the database.

Faults (docs/GATEWAY.md, "Faults"): the broker connection is made again whenever it
is lost or the broker stops answering (mqtt_link.py); a store that is full or cannot
be written is waited out with nothing acknowledged (store_outage.py), and so is a
PostgreSQL server that restarts or stops under a running gateway (its session made again,
what was kept over the old one dropped: :meth:`Gateway._reconnect_if_lost`) or that cannot
be reached when the gateway starts (:meth:`Gateway._open_store`); a verifier process that
dies or hangs is replaced (intake.py). What no design recovers from -
an unusable store, a thread that fails (a bug) - is said in one CRITICAL line and
stops the gateway with exit 3 (:meth:`Gateway._fatal`). :meth:`Gateway.readiness` is
what the HTTP console (gateway/web) serves as ``/readyz``; it is written beside the database
(instance_lock.py) and ends the summary line meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Final

from signet_gateway.config import ConfigError, GatewayConfig, load
from signet_gateway.mcr.aggregate import Aggregator, settings_from_config
from signet_gateway.store.faults import ENGINE_ERRORS, UNWRITABLE
from signet_gateway.store.generation import Generations
from signet_gateway.store.model import StoreUnreachable
from signet_gateway.store.sqlite import Store, is_url
from signet_gateway.verify.verifier import Verifier

from .device_status import DeviceStatus
from .enrollment import Enrollment
from .instance_lock import InstanceLock
from .intake import Intake
from .link_state import Throttle
from .log_keeper import LogKeeper
from .mqtt_link import MqttLink
from .store_outage import StoreOutage
from .timings import Timings
from .wire import REC_SUBSCRIPTION
from .writer import (
    BatchWriter,
    Message,
    StorageError,
    StorageUnavailable,
    WriteResult,
    storage_error,
)

__all__ = ["Gateway", "StoppedWaiting", "rss_kib"]

log = logging.getLogger("signet.gateway")

KEY_REFRESH_S: Final = 1.0  # an idle gateway logs enroll/revoke within this time
REFUSAL_LOG_LIMIT: Final = 10  # refusal lines per reason per summary period (then counted)
EXIT_OK: Final = 0
EXIT_FAILED: Final = 3  # storage unusable, a thread failed, or could not start


class StoppedWaiting(Exception):
    """Asked to stop (SIGTERM) while still waiting for the database at start: nothing was
    taken, nothing is lost (exit 0)."""


def rss_kib(pid: int | str = "self") -> tuple[int, int]:
    """(current RSS, peak RSS) of a process in KiB, from /proc (0, 0 if unavailable)."""
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
    except OSError:
        pass
    return rss, hwm


class Gateway:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.log_keeper: LogKeeper | None = None
        self.device_status = DeviceStatus()  # the devices' online/offline words, for the console
        self.failed: BaseException | None = None
        self.stopped = threading.Event()  # set when the writer has exited (drained or failed)
        self.stats: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self.timings = Timings()  # latency histograms for the console's /metrics (timings.py)
        self._refusal_lines: Counter[str] = Counter()
        self._writer_thread: threading.Thread | None = None
        self._started = 0.0
        self._lock: InstanceLock | None = None
        self._stop_requested = False
        self._stopping = threading.Event()  # stop requested, or a fatal failure
        self._abort = threading.Event()  # a fatal failure: commit nothing more
        self.outage = StoreOutage()
        self._max_size_mb = config.store.max_size_mb
        self._read_errors = Throttle(burst=1, every_s=60)
        self._status: dict[str, Any] | None = None
        self._unpublished: dict[str, int] = {}  # committed acks held back (ack_interval_ms)
        self._committing = False  # the writer is in _commit (its retries remake a lost session)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Open, lock and load the store, start the threads and the broker connection.

        On failure, whatever was started is stopped again (verifier processes included)
        before the exception propagates; InstanceLockError if another gateway holds the
        database.
        """
        cfg = self.config
        self.store = self._open_store(cfg.store.location)
        try:
            # Before anything is read or started: a second gateway on this database stops here.
            # PostgreSQL takes several workers (docs/GATEWAY.md, Several workers): no lock.
            if not is_url(self.store.path):
                self._lock = InstanceLock.acquire(self.store.path)
            self._start()
        except BaseException:
            self._abandon_start()
            raise

    def _open_store(self, where: Path | str) -> Store:
        """The store, opened; a PostgreSQL server that cannot be reached now (down, starting,
        out of connection slots: StoreUnreachable) is waited for, logged as an outage of the
        store (store_outage.py), until it answers or the gateway is asked to stop
        (StoppedWaiting). Any other refusal (no such database, a wrong password) raises."""
        while True:
            try:
                store = Store(where)
            except StoreUnreachable as exc:
                delay = self.outage.failed(UNWRITABLE, str(exc), 0)
                if self._stopping.wait(delay):
                    raise StoppedWaiting(
                        f"stopped while waiting for the database: {self.outage.problem}"
                    ) from None
                continue
            self.outage.recovered()
            return store

    def _abandon_start(self) -> None:
        intake: Intake | None = getattr(self, "intake", None)  # None: failed before it
        if intake is not None:
            intake.close()
            intake.stop()
        with contextlib.suppress(Exception):
            self.store.close()
        if self._lock is not None:
            self._lock.release()

    def _start(self) -> None:
        cfg = self.config
        conn = self.store.conn
        # What another process wrote since this one looked (PostgreSQL: generation.py).
        self.generations = generations = Generations(conn)
        self.aggregator = Aggregator(conn, hb_tolerance=settings_from_config(cfg.aggregate))
        if cfg.store.max_size_mb is not None:
            self.store.limit_size(cfg.store.max_size_mb)
            if self.store.at_size_limit():
                log.warning(
                    "database is %d MiB, at or over store.max_size_mb = %d: it takes no new"
                    " records until the cap is raised",
                    self.store.size_bytes() >> 20,
                    cfg.store.max_size_mb,
                )
        # The transparency log: its key (made on the first start), the records stored while
        # it was off, then one leaf per stored record in the writer's transactions.
        self.log_keeper = (
            LogKeeper(cfg.log, conn, generations, self.timings.log) if cfg.log.enabled else None
        )
        if self.log_keeper is not None:
            self.log_keeper.catch_up()
        self.enrollment = enrollment = Enrollment(self.store, generations)
        self.verifier = Verifier(enrollment.keys)
        agg = self.aggregator
        self.writer = BatchWriter(
            conn,
            max_future_skew_ms=cfg.time.max_future_skew_s * 1000,
            quarantine_rows=cfg.quarantine.max_rows,
            quarantine_bytes=cfg.quarantine.max_bytes_per_row,
            on_stored=agg.on_stored,
            on_stored_many=agg.on_stored_many,
            known_device=enrollment.known.__contains__,
            key_limits=enrollment.limits,
            record_log=None if self.log_keeper is None else self.log_keeper.record_log,
            generations=generations,
        )
        self.intake = Intake(
            self.verifier,
            cfg.ingest.verify_threads,
            keys=enrollment.keys,
            on_failure=self._fatal,
            verify_timing=self.timings.verify,
        )
        if self._stop_requested:  # SIGTERM/SIGINT while starting: take nothing
            self.intake.close()
        self.link = MqttLink(
            cfg.mqtt,
            self.intake.put,
            committed_acks=self.writer.all_acks,
            on_failure=self._fatal,
            device_status=self.device_status,
        )
        log.info(
            "database %s (%d devices enrolled, %d active)",
            self.store.engine.location(),  # the file's absolute path, or the URL redacted
            len(enrollment.known),
            len(self.store.active_keys()),
        )
        self._started = time.monotonic()
        self._writer_thread = threading.Thread(
            target=self._writer_main, name="signet-writer", daemon=True
        )
        self._writer_thread.start()
        self.link.start()
        log.info(
            "ingesting from mqtt://%s:%d %s (receive maximum %d, %d verifier threads,"
            " batches of up to %d records / %d ms)",
            cfg.mqtt.host,
            cfg.mqtt.port,
            REC_SUBSCRIPTION,
            cfg.mqtt.receive_maximum,
            cfg.ingest.verify_threads,
            cfg.ingest.batch_max,
            cfg.ingest.batch_ms,
        )

    def request_stop(self) -> None:
        """Stop taking messages (the network thread keeps running until stop()).

        Safe at any moment, also from a signal handler that runs while start() has not
        created the intake yet."""
        self._stop_requested = True
        self._stopping.set()
        intake: Intake | None = getattr(self, "intake", None)
        if intake is not None:
            intake.close()

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful: drain and commit what was taken, ack it, disconnect, close the database.

        While the store cannot be written, or after a fatal failure, what was not committed
        is left to the broker (not acknowledged: delivered again after the next start)."""
        self._stopping.set()
        self.intake.close()
        self.stopped.wait(timeout)
        self.link.stop()
        self.intake.stop()
        if self._writer_thread is not None:
            self._writer_thread.join(timeout=5)
        try:
            self.store.close()
        except Exception:  # closing must not hide why we stopped
            log.exception("closing the database")
        if self._lock is not None:
            self._write_status()
            self._lock.release()
        log.info(
            "stopped: %d messages received, %d records stored, %d duplicates, %d refused",
            self.intake.received,
            self.stats["stored"],
            self.stats["duplicates"],
            sum(self.refused.values()),
        )

    # -- keys ----------------------------------------------------------------------------------

    def _sync_enrollment(self) -> None:
        """Take in what `signet enroll/revoke` committed since the last look (enrollment.py)."""
        if self.enrollment.refresh():
            self.verifier.forget()  # a revoked key must not stay in its cache
            self.intake.keys_changed()  # the verifier processes get the new key set

    def _verify_with_current_keys(self, msgs: list[Message]) -> None:
        """Called before committing msgs: records refused ``unknown_key`` by a verifier whose
        key snapshot predates their device's enrollment are verified again (enrollment.py).
        Their messages arrived after the enrollment committed, so a fresh look sees it."""
        self._sync_enrollment()
        stale = self.enrollment.now_enrolled(msgs)
        if stale:
            self.intake.verify_in_thread(stale)

    # -- failures ------------------------------------------------------------------------------

    def _fatal(self, what: str, exc: BaseException) -> None:
        """``what`` failed in a way no design recovers from: say so once, commit nothing more,
        and make run() stop the gateway with exit 3. Any thread may call it."""
        if self.failed is None:
            self.failed = exc
            if isinstance(exc, StorageError):
                log.critical(
                    "storage failure (the database is unusable), stopping without"
                    " acknowledging the batch (exit 3): %s",
                    exc,
                )
            else:
                log.critical(
                    "%s failed, stopping (exit 3): %s: %s",
                    what,
                    type(exc).__name__,
                    exc,
                    exc_info=exc,
                )
        self._abort.set()
        self._stopping.set()
        self.intake.close()
        self.intake.arrived.set()  # wake the writer

    # -- writer thread -------------------------------------------------------------------------

    def _writer_main(self) -> None:
        try:
            self._writer_loop()
        except BaseException as exc:
            self._fatal("the writer thread", exc)
        finally:
            self.stopped.set()

    def _housekeeping(self, now: float) -> None:
        lost = self._store_lost()
        if self.log_keeper is not None and not lost:
            self.log_keeper.tick(now)
        # Acks: take in the broker's PUBACKs and connects; publish what is due (ack_outbox.py).
        self.link.reconcile_acks()
        if lost and self._committing:
            return  # the commit's next try makes the session again (_commit)
        if now >= self._next_refresh:
            # While idle too: the "device ... enrolled/revoked" lines appear without traffic.
            self._next_refresh = now + KEY_REFRESH_S
            try:
                if self._reconnect_if_lost() and not self._committing:
                    self.outage.recovered()  # idle: no commit to say it
                self._sync_enrollment()
            except ENGINE_ERRORS as exc:
                error = storage_error(exc)
                if not isinstance(error, StorageUnavailable):
                    raise error from exc
                if self._store_lost() and not self._committing:
                    # The server went away while idle: the same outage as a commit's (its
                    # lines, readiness), the session made again at the same pace.
                    delay = self.outage.failed(error.fault, str(exc), self._waiting())
                    self._next_refresh = now + delay
                # Busy or failing now: the next look tries again (a commit reports the store).
                elif self._read_errors.allow() is not None:
                    log.warning("cannot read the enrolled keys now (%s); trying again", exc)

    def _store_lost(self) -> bool:
        """The store's session is gone (PostgreSQL restarted or stopped, the network failed)."""
        return bool(getattr(self.store.conn, "lost", False))

    def _reconnect_if_lost(self) -> bool:
        """If the store's session was lost, open a new one (the same settings) and drop
        every cache kept over the old one, as after another process's write (generation.py):
        a COMMIT whose answer was lost may have committed. True if it reconnected; the
        store's DatabaseError if the server cannot be reached yet."""
        if not self._store_lost():
            return False
        self.store.conn.reconnect()
        self.generations.reconnected()
        log.debug("made a new session with database %s", self.store.path)
        return True

    def _waiting(self, msgs: list[Message] | None = None) -> int:
        """Messages taken and not yet committed: ``msgs`` and those in the intake's order."""
        return len(msgs or ()) + sum(len(c.msgs) for c in list(self.intake.order))

    def _flush_acks(self) -> None:
        if self._unpublished:
            self.link.publish_acks(self._unpublished)
            self._unpublished.clear()

    def _commit(self, msgs: list[Message]) -> WriteResult | None:
        """Commit msgs; while the store is full or cannot be written, wait and try the same
        batch again, acknowledging nothing (store_outage.py). None if the gateway stops first."""
        self._committing = True
        try:
            return self._commit_until_stored(msgs)
        finally:
            self._committing = False

    def _commit_until_stored(self, msgs: list[Message]) -> WriteResult | None:
        while True:
            try:
                try:
                    self._reconnect_if_lost()  # its session lost (a restarted server)
                    self._verify_with_current_keys(msgs)
                except ENGINE_ERRORS as exc:  # making the session again, reading the keys
                    raise storage_error(exc) from exc
                began = time.perf_counter()
                result = self.writer.commit(msgs)
                self.timings.commit.observe(time.perf_counter() - began)
            except StorageUnavailable as exc:
                self._flush_acks()  # what did commit is acknowledged while this waits
                delay = self.outage.failed(exc.fault, self._cause(exc), self._waiting(msgs))
                if not self._wait_for_store(delay):
                    waiting = self._waiting(msgs)
                    log.warning(
                        "stopping with %d messages not stored (store %s): not acknowledged,"
                        " the broker delivers them again after the next start",
                        waiting,
                        exc.fault,
                    )
                    return None
                continue
            self.outage.recovered()
            return result

    def _cause(self, exc: StorageUnavailable) -> str:
        """The database's message; for a full SQLite store, the database's size against the
        cap (store.max_size_mb) and the space left on its filesystem: which of them is full.
        (A PostgreSQL server's disk is its own: its message, SQLSTATE 53100, says it.)"""
        if exc.fault != "full":
            return str(exc)
        facts = []
        if is_url(self.store.path):
            return str(exc)
        with contextlib.suppress(*ENGINE_ERRORS):
            size = f"the database is {self.store.size_bytes() / 2**20:.1f} MiB"
            if self._max_size_mb is not None:
                size += f", store.max_size_mb = {self._max_size_mb}"
            facts.append(size)
        with contextlib.suppress(OSError):
            fs = os.statvfs(self.store.path.resolve().parent)
            facts.append(f"{fs.f_bavail * fs.f_frsize / 2**20:.0f} MiB free on its filesystem")
        return f"{exc} ({'; '.join(facts)})" if facts else str(exc)

    def _wait_for_store(self, delay: float) -> bool:
        """Wait ``delay`` s before the next try, keeping acks and key refreshes going; then
        take in a changed store.max_size_mb. False if the gateway is stopping."""
        deadline = time.monotonic() + delay
        while (now := time.monotonic()) < deadline:
            if self._stopping.is_set():
                return False
            self._housekeeping(now)
            self._stopping.wait(min(0.1, deadline - now))
        if self._stopping.is_set():
            return False
        if self.outage.fault == "full":
            self._reload_size_limit()
        return True

    def _reload_size_limit(self) -> None:
        """While the store is full, read store.max_size_mb again from the configuration file:
        raising the cap lets the gateway go on without a restart."""
        source = self.config.source
        if source is None:
            return
        try:
            wanted = load(source).store.max_size_mb
        except ConfigError as exc:
            if self._read_errors.allow() is not None:
                log.warning("cannot read store.max_size_mb again from %s: %s", source, exc)
            return
        if wanted != self._max_size_mb:
            self.store.limit_size(wanted)
            log.info(
                "store.max_size_mb is now %s (was %s), read again from %s",
                "not set" if wanted is None else wanted,
                "not set" if self._max_size_mb is None else self._max_size_mb,
                source,
            )
            self._max_size_mb = wanted

    def _writer_loop(self) -> None:
        intake = self.intake
        order = intake.order
        batch_max = self.config.ingest.batch_max
        batch_s = self.config.ingest.batch_ms / 1000.0
        ack_every = self.config.ingest.ack_interval_ms / 1000.0
        self._next_refresh = time.monotonic() + KEY_REFRESH_S
        unpublished = self._unpublished  # committed acks not yet published (coalescing)
        next_ack = 0.0
        while not self._abort.is_set():
            now = time.monotonic()
            self._housekeeping(now)
            if not order and not intake.seal_partial():
                # Idle: publish what is committed before waiting for more.
                self._flush_acks()
                if intake.closed and intake.idle():
                    if self.log_keeper is not None:  # a clean stop: the tree as it is, signed
                        self.log_keeper.checkpoint()
                    return
                intake.arrived.wait(0.1)
                intake.arrived.clear()
                continue
            msgs: list[Message] = []
            deadline = 0.0
            while len(msgs) < batch_max:
                if not order and not intake.seal_partial():
                    break  # nothing else in flight: commit now rather than wait
                head = order[0]
                if msgs:
                    if not head.done.wait(max(0.0, deadline - time.monotonic())):
                        break
                else:
                    while not head.done.wait(0.5):
                        if self._abort.is_set():  # a verifier thread failed: never done
                            return
                    deadline = time.monotonic() + batch_s
                order.popleft()
                msgs.extend(head.msgs)
            result = self._commit(msgs)
            if result is None:  # stopping while the store could not be written
                return
            # Durable now: only from here on may anything be acknowledged.
            self.link.puback(msgs)
            self.timings.ack.observe(max(0.0, time.time() - msgs[0].received_ms / 1000))
            unpublished.update(result.acks)
            for kid in result.republish:
                unpublished[kid] = self.writer.seq.ack(kid)
            now = time.monotonic()
            if unpublished and now >= next_ack:
                self._flush_acks()
                next_ack = now + ack_every
            self._account(msgs, result)

    def _account(self, msgs: list[Message], result: WriteResult) -> None:
        stats = self.stats
        stats["commits"] += 1
        stats["messages"] += len(msgs)
        stats["stored"] += result.stored
        stats["duplicates"] += result.duplicates
        stats["equivocations"] += result.equivocations
        for event in result.events:
            log.warning("%s", event)
        if result.refused:
            self.refused.update(result.refused)
            self._log_refusals(msgs)

    def _log_refusals(self, msgs: list[Message]) -> None:
        lines = self._refusal_lines
        for m in msgs:
            items = [m.rejection] if m.rejection is not None else m.results
            for item in items:
                reason = getattr(item, "reason", None)
                if reason is None or item is None:
                    continue
                lines[reason] += 1
                if lines[reason] <= REFUSAL_LOG_LIMIT:
                    topic = m.topic[:100].decode("utf-8", "replace")
                    log.warning("refused %s on %s: %s", reason, topic, item.detail)  # type: ignore[union-attr]
                    if lines[reason] == REFUSAL_LOG_LIMIT:
                        log.warning("(further %s refusals are counted, not logged)", reason)

    # -- main thread ---------------------------------------------------------------------------

    def readiness(self) -> tuple[bool, list[str]]:
        """Ready to take, store and acknowledge records now, and if not, why: what ``/readyz``
        serves. Not ready while the broker is not connected, the store cannot be written, a
        verifier thread is not running, or the gateway is stopping."""
        problems = []
        if self.outage.problem is not None:
            problems.append(self.outage.problem)
        if not self.link.connected.is_set():
            problems.append(f"broker not connected: {self.link.state.describe()}")
        if self._stopping.is_set():
            problems.append("stopping")  # the verifier threads end in the drain: not news
        else:
            problems += self.intake.verifier_problems()
        return not problems, problems

    def _write_status(self) -> None:
        """Write the readiness beside the database (instance_lock.py) when it changed."""
        ready, problems = self.readiness()
        # The broker's state text carries times and counts: compare and write its gist.
        gist = [p.split(":")[0] if p.startswith("broker") else p for p in problems]
        if self._status is not None and self._status["problems"] == gist:
            return
        self._status = {
            "ready": ready,
            "problems": gist,
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        if self._lock is not None:  # none on PostgreSQL: several workers, no file of theirs
            self._lock.write_status(self._status)

    def summary(self) -> str:
        elapsed = max(1e-9, time.monotonic() - self._started)
        rss, hwm = rss_kib()
        refused = ", ".join(f"{r} {c}" for r, c in sorted(self.refused.items())) or "none"
        # The log's work on the writer thread, in CPU (timings.py): what `signet bench
        # gateway` reads as the log's cost.
        logged = "" if self.log_keeper is None else f", log {self.timings.log.cpu_s:.4f} s CPU"
        self._refusal_lines.clear()  # next period logs a few examples again
        return (
            f"summary: {self.intake.received} messages ({self.intake.received / elapsed:.0f}/s"
            f" since start), {self.stats['stored']} records stored, {self.stats['duplicates']}"
            f" duplicates, {self.stats['equivocations']} equivocations, refused: {refused};"
            f" {self.link.acks_published} acks published, {self.stats['commits']} commits{logged};"
            f" {self._readiness_text()}; rss {rss // 1024} MiB (peak {hwm // 1024} MiB);"
            f" {self.link.state.describe()}"
        )

    def _readiness_text(self) -> str:
        ready, problems = self.readiness()
        if ready:
            return "ready"
        # The broker's state ends the line anyway.
        said = [p for p in problems if not p.startswith("broker")]
        return f"not ready ({'; '.join(said)})" if said else "not ready (broker not connected)"

    def run(self, stop: threading.Event) -> int:
        """Run until ``stop`` is set (signal handler) or something fails beyond recovery;
        0 after a graceful stop, 3 after a failure (:meth:`_fatal`)."""
        period = self.config.ingest.summary_s
        next_summary = time.monotonic() + period if period else float("inf")
        while not stop.is_set() and not self.stopped.is_set() and not self._abort.is_set():
            stop.wait(min(1.0, max(0.05, next_summary - time.monotonic())))
            try:
                self.intake.check_workers()  # a hung verifier process is replaced
                self._write_status()
                if time.monotonic() >= next_summary:
                    log.info("%s", self.summary())
                    next_summary += period
            except Exception as exc:
                self._fatal("the main thread", exc)
        if self.failed is None:
            log.info("stopping: no new messages; draining, committing and acknowledging")
        self.stop()
        log.info("%s", self.summary())
        return EXIT_OK if self.failed is None else EXIT_FAILED
