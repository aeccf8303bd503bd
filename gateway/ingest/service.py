"""The gateway service: wires store, verifier, pipeline and MQTT; start, run, stop.

``Gateway(config).start()`` opens the database, loads the enrolled keys, starts
the verifier threads, the writer thread and the MQTT network thread.
``request_stop()`` (SIGTERM) stops taking messages; ``stop()`` drains what was
taken, commits it, PUBACKs it, publishes the acks, disconnects cleanly (the
persistent session stays, holding anything that arrived meanwhile) and closes
the database.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from typing import Final

from signet_gateway.config import GatewayConfig
from signet_gateway.mcr.aggregate import Aggregator, settings_from_config
from signet_gateway.store.sqlite import Store
from signet_gateway.verify.verifier import Verifier

from .enrollment import Enrollment
from .instance_lock import InstanceLock
from .intake import Intake
from .mqtt_link import MqttLink
from .wire import REC_SUBSCRIPTION
from .writer import BatchWriter, Message, StorageError, WriteResult

__all__ = ["Gateway", "rss_kib"]

log = logging.getLogger("signet.gateway")

KEY_REFRESH_S: Final = 1.0  # an idle gateway logs enroll/revoke within this time
REFUSAL_LOG_LIMIT: Final = 10  # refusal lines per reason per summary period (then counted)


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
        self.failed: BaseException | None = None
        self.stopped = threading.Event()  # set when the writer has exited (drained or failed)
        self.stats: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self._refusal_lines: Counter[str] = Counter()
        self._republish_all = threading.Event()
        self._writer_thread: threading.Thread | None = None
        self._started = 0.0
        self._lock: InstanceLock | None = None
        self._stop_requested = False

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Open, lock and load the store, start the threads and the broker connection.

        On failure, whatever was started is stopped again (verifier processes included)
        before the exception propagates; InstanceLockError if another gateway holds the
        database.
        """
        cfg = self.config
        self.store = Store(cfg.store.path)
        try:
            # Before anything is read or started: a second gateway on this database stops here.
            self._lock = InstanceLock.acquire(self.store.path)
            self._start()
        except BaseException:
            self._abandon_start()
            raise

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
        self.aggregator = Aggregator(conn, hb_tolerance=settings_from_config(cfg.aggregate))
        self.enrollment = enrollment = Enrollment(self.store)
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
            revoked_device=enrollment.revoked.__contains__,
        )
        self.intake = Intake(self.verifier, cfg.ingest.verify_threads, keys=enrollment.keys)
        if self._stop_requested:  # SIGTERM/SIGINT while starting: take nothing
            self.intake.close()
        self.link = MqttLink(cfg.mqtt, self.intake.put, self._on_connected)
        log.info(
            "database %s (%d devices enrolled, %d active)",
            self.store.path.resolve(),
            len(enrollment.known),
            len(enrollment.keys),
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
        intake: Intake | None = getattr(self, "intake", None)
        if intake is not None:
            intake.close()

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful: drain and commit what was taken, ack it, disconnect, close the database."""
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

    def _on_connected(self, session_present: bool) -> None:
        # Retained acks may be gone (a broker that lost its store) or stale (we stopped between
        # COMMIT and publish): after every connect, publish every device's committed ack.
        # Committed acks never decrease, so this never moves a device's ack backwards.
        self._republish_all.set()

    # -- writer thread -------------------------------------------------------------------------

    def _writer_main(self) -> None:
        try:
            self._writer_loop()
        except StorageError as exc:
            self.failed = exc
            log.critical("storage failure, stopping without acknowledging the batch: %s", exc)
        except BaseException as exc:  # pragma: no cover - a bug in the loop itself
            self.failed = exc
            log.critical("writer thread died", exc_info=exc)
        finally:
            self.stopped.set()

    def _housekeeping(self, now: float) -> None:
        if now >= self._next_refresh:
            # While idle too: the "device ... enrolled/revoked" lines appear without traffic.
            self._next_refresh = now + KEY_REFRESH_S
            self._sync_enrollment()
        if self._republish_all.is_set():
            self._republish_all.clear()
            acks = self.writer.all_acks()
            if acks:
                self.link.publish_acks(acks)
                log.info("republished the committed ack of %d devices", len(acks))

    def _writer_loop(self) -> None:
        intake = self.intake
        order = intake.order
        batch_max = self.config.ingest.batch_max
        batch_s = self.config.ingest.batch_ms / 1000.0
        ack_every = self.config.ingest.ack_interval_ms / 1000.0
        self._next_refresh = time.monotonic() + KEY_REFRESH_S
        unpublished: dict[str, int] = {}  # committed acks not yet published (coalescing)
        next_ack = 0.0
        while True:
            now = time.monotonic()
            self._housekeeping(now)
            if not order and not intake.seal_partial():
                # Idle: publish what is committed before waiting for more.
                if unpublished:
                    self.link.publish_acks(unpublished)
                    unpublished = {}
                if intake.closed and intake.idle():
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
                    head.done.wait()
                    deadline = time.monotonic() + batch_s
                order.popleft()
                msgs.extend(head.msgs)
            self._verify_with_current_keys(msgs)
            result = self.writer.commit(msgs)
            # Durable now: only from here on may anything be acknowledged.
            self.link.puback(msgs)
            unpublished.update(result.acks)
            for kid in result.republish:
                unpublished[kid] = self.writer.seq.ack(kid)
            now = time.monotonic()
            if unpublished and now >= next_ack:
                self.link.publish_acks(unpublished)
                unpublished = {}
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

    def summary(self) -> str:
        elapsed = max(1e-9, time.monotonic() - self._started)
        rss, hwm = rss_kib()
        refused = ", ".join(f"{r} {c}" for r, c in sorted(self.refused.items())) or "none"
        self._refusal_lines.clear()  # next period logs a few examples again
        return (
            f"summary: {self.intake.received} messages ({self.intake.received / elapsed:.0f}/s"
            f" since start), {self.stats['stored']} records stored, {self.stats['duplicates']}"
            f" duplicates, {self.stats['equivocations']} equivocations, refused: {refused};"
            f" {self.link.acks_published} acks published, {self.stats['commits']} commits;"
            f" rss {rss // 1024} MiB (peak {hwm // 1024} MiB); {self.link.state.describe()}"
        )

    def run(self, stop: threading.Event) -> int:
        """Run until ``stop`` is set (signal handler) or storage fails; 0 ok, 3 storage failure."""
        period = self.config.ingest.summary_s
        next_summary = time.monotonic() + period if period else float("inf")
        while not stop.is_set() and not self.stopped.is_set():
            stop.wait(min(1.0, max(0.05, next_summary - time.monotonic())))
            if time.monotonic() >= next_summary:
                log.info("%s", self.summary())
                next_summary += period
        if self.failed is None:
            log.info("stopping: no new messages; draining, committing and acknowledging")
        self.stop()
        log.info("%s", self.summary())
        return 0 if self.failed is None else 3
