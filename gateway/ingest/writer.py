"""One write transaction per batch of verified messages.

The writer thread hands :meth:`BatchWriter.commit` the messages of one batch in
arrival order. Inside a single write transaction (the store engine's BEGIN: the database's
write lock from the start, SQLite's BEGIN IMMEDIATE or PostgreSQL's advisory lock) it applies the
sequence rules to every verified record (which stores new ones, appends them to the
transparency log and calls the aggregation hook), quarantines refused input, adds the
findings counters and the per-device sequence state, and trims the quarantine to its bound. Only
when COMMIT has returned does the caller PUBACK the messages and publish acks.

A bug while handling one message (an exception that is not a storage error)
must not stop ingest, and must not half-apply: the whole transaction is rolled
back, the message is set aside as ``internal_error`` (quarantined, counted) and
the batch is applied again without it. A storage error is not any message's
fault, and nothing of the batch is committed or acknowledged: a store that is full
or cannot be written now (``gateway/store/faults.py``) raises
:class:`StorageUnavailable`, and the service waits and commits the same batch
again; a corrupt or unusable store raises :class:`StorageError` and the service
stops, the broker keeping the messages for the next start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from signet_gateway.mcr.aggregate import day_of
from signet_gateway.store.faults import ENGINE_ERRORS, UNUSABLE, fault_of, is_constraint
from signet_gateway.store.generation import Generations
from signet_gateway.store.model import StoredRecord, iso_ms
from signet_gateway.store.record_log import RecordLog
from signet_gateway.store.sqlite import engine_of

from .sequencer import (
    DUPLICATE,
    EQUIVOCATION,
    NEW,
    UNATTRIBUTED,
    Findings,
    HookFailed,
    Sequencer,
)

__all__ = [
    "BatchWriter",
    "Message",
    "Rejection",
    "StorageError",
    "StorageUnavailable",
    "WriteResult",
    "storage_error",
]

log = logging.getLogger("signet.gateway")

SIG_ITEM: Final = 66  # a valid record ends with 0x58 0x40 and the 64 signature bytes
INTERNAL_ERROR: Final = "internal_error"
REVOKED: Final = "revoked"  # received at or after its key's revocation (docs/TRUST.md)
ROTATED: Final = "rotated"  # numbered above its key's last n before a rotation


def _raw_of(m: Message, item: tuple[Any, ...]) -> bytes:
    """The received bytes of one verified item of ``m.results``."""
    return m.payload if len(item) == 3 else item[3]  # type: ignore[no-any-return]


def _limited(m: Message, limit: tuple[int | None, int | None]) -> list[Any]:
    """m's results with the records its key may no longer sign refused: received at or after
    the key's revocation ('revoked': the moment is compared with each message's receive time,
    so a revocation scheduled ahead takes effect while the gateway runs), or numbered above
    its last n before a rotation ('rotated'). Records that did not verify keep their reason."""
    revoked_ms, last_n = limit
    kid = m.kid
    if revoked_ms is not None and m.received_ms >= revoked_ms:
        detail = (
            f"device {kid} is revoked since {iso_ms(revoked_ms)}; this record was received"
            f" at {iso_ms(m.received_ms)}"
        )
        return [
            item if type(item) is Rejection else Rejection(REVOKED, detail, _raw_of(m, item))
            for item in m.results
        ]
    if last_n is None:
        return m.results
    out: list[Any] = []
    for item in m.results:
        if type(item) is not Rejection and item[0]["n"] > last_n:
            n = item[0]["n"]
            item = Rejection(
                ROTATED,
                f"device {kid} was rotated to a new key after n={last_n}; record n={n} is refused",
                _raw_of(m, item),
            )
        out.append(item)
    return out


class StorageError(RuntimeError):
    """The database failed (not the input): nothing of the batch was committed. As such
    (not StorageUnavailable): the database is corrupt or unusable, waiting will not help."""


class StorageUnavailable(StorageError):
    """The store is full or cannot be written now (``fault``: ``full`` or ``unwritable``,
    gateway/store/faults.py): nothing was committed; the same work may be tried again."""

    def __init__(self, message: str, fault: str) -> None:
        super().__init__(message)
        self.fault = fault


def storage_error(exc: BaseException) -> StorageError:
    """The StorageError (or StorageUnavailable) a database error amounts to (either engine's:
    faults.ENGINE_ERRORS)."""
    fault = fault_of(exc)  # type: ignore[arg-type]
    if fault == UNUSABLE:
        return StorageError(f"database error: {exc}")
    return StorageUnavailable(f"{exc}", fault)


class Rejection:
    """A refused record or message: reason code, detail sentence and the refused bytes."""

    __slots__ = ("detail", "raw", "reason")

    def __init__(self, reason: str, detail: str, raw: bytes) -> None:
        self.reason = reason
        self.detail = detail
        self.raw = raw

    def __repr__(self) -> str:
        return f"Rejection({self.reason!r}, {self.detail!r})"


class Message:
    """One MQTT ``rec`` message on its way through the pipeline."""

    __slots__ = ("epoch", "kid", "mid", "payload", "qos", "received_ms", "rejection", "results",
                 "topic")  # fmt: skip

    def __init__(
        self, mid: int, qos: int, epoch: int, topic: bytes, payload: bytes, received_ms: int
    ) -> None:
        self.mid = mid
        self.qos = qos
        self.epoch = epoch
        self.topic = topic
        self.payload = payload
        self.received_ms = received_ms
        self.kid = ""  # device id from the topic, once it parsed
        self.rejection: Rejection | None = None  # the whole message was refused
        # Per record: verify_pool.verify_chunk's tuple for a verified one, or a Rejection.
        self.results: list[tuple[Any, ...] | Rejection] = []


@dataclass
class WriteResult:
    acks: dict[str, int]  # device id -> ack that advanced in this commit
    republish: set[str]  # devices whose unchanged ack should be published again
    stored: int = 0
    duplicates: int = 0
    equivocations: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)


class _ItemFailed(Exception):
    def __init__(self, index: int, exc: BaseException) -> None:
        super().__init__(index, exc)
        self.index = index
        self.exc = exc


class BatchWriter:
    """Owns the write connection's transactions; used by the single writer thread."""

    def __init__(
        self,
        conn: Any,
        *,
        max_future_skew_ms: int,
        quarantine_rows: int,
        quarantine_bytes: int,
        on_stored: Callable[[StoredRecord], None] | None = None,
        on_stored_many: Callable[[list[StoredRecord]], None] | None = None,
        known_device: Callable[[str], bool] = lambda kid: False,
        key_limits: Mapping[str, tuple[int | None, int | None]] | None = None,
        record_log: RecordLog | None = None,
        generations: Generations | None = None,
    ) -> None:
        self.conn = conn
        self.engine = engine_of(conn)
        self._commit_locked = False  # this transaction holds the commit lock (_lock_commit)
        self.findings = Findings()
        self.seq = Sequencer(
            conn,
            self.findings,
            max_future_skew_ms=max_future_skew_ms,
            on_stored=on_stored,
            on_stored_many=on_stored_many,
            record_log=record_log,
        )
        self.seq.before_append = self._lock_commit
        self.quarantine_rows = quarantine_rows
        self.quarantine_bytes = quarantine_bytes
        self.known_device = known_device
        # kid -> (revoked_ms, last_n) for keys with either (Enrollment.limits, kept current).
        self.key_limits: Mapping[str, tuple[int | None, int | None]] = (
            {} if key_limits is None else key_limits
        )
        # Another process wrote since this one's last transaction (PostgreSQL, several
        # workers): what the sequencer and the log keep in memory is stale (generation.py).
        self.generations = Generations(conn) if generations is None else generations
        self.generations.on_foreign_write(self.seq.forget)

    def commit(self, messages: list[Message]) -> WriteResult:
        """Apply and commit one batch; raise StorageError if the database failed."""
        poisoned: dict[int, str] = {}
        while True:
            result = WriteResult({}, set())
            try:
                # Several workers (PostgreSQL): what concerns only the batch's devices runs
                # under their locks, in parallel with other workers' batches; the rest
                # (the log, the quarantine, the generation) under the commit lock, taken as
                # late as it can be (docs/GATEWAY.md, Several writers on one database).
                self._commit_locked = False
                self.conn.execute(self.engine.begin_batch)
                kids = [m.kid for m in messages if m.rejection is None and m.kid]
                self.engine.lock_devices(kids)  # each once, in the engine's order
                self.generations.begin_batch()
                self.seq.preload(kids)
                refused = self._apply(messages, poisoned, result)
                try:
                    self.seq.fold()  # the aggregates: the batch's devices only
                    self._lock_commit()
                    if refused:
                        self._quarantine(refused, result)
                    self.seq.flush()
                except HookFailed as hook:
                    raise _ItemFailed(hook.tag, hook.exc) from hook.exc
                self.generations.before_commit()
                self.conn.execute("COMMIT")
            except _ItemFailed as failed:
                self._rollback()
                if isinstance(failed.exc, ENGINE_ERRORS) and not is_constraint(failed.exc):
                    raise storage_error(failed.exc) from failed.exc
                if failed.index == UNATTRIBUTED and not self.seq.unbatched:
                    # The batched hook failed and cannot say for which record: apply the
                    # batch again calling the hook record by record, which can.
                    self.seq.unbatched = True
                    continue
                poisoned[failed.index] = f"{type(failed.exc).__name__}: {failed.exc}"
                log.error(
                    "internal error on message %d of a batch (%s); quarantined, batch retried",
                    failed.index,
                    poisoned[failed.index],
                    exc_info=failed.exc,
                )
                continue
            except ENGINE_ERRORS as exc:
                self._rollback()
                raise storage_error(exc) from exc
            except BaseException:
                self._rollback()
                raise
            self.generations.committed()
            self.seq.unbatched = False
            result.acks, result.republish = self.seq.committed()
            result.events = self.seq.events[:]
            self.seq.events.clear()
            return result

    def _lock_commit(self) -> None:
        if not self._commit_locked:
            self._commit_locked = True
            self.engine.lock_commit()

    def _rollback(self) -> None:
        try:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
        except ENGINE_ERRORS:
            # SQLite may have rolled back by itself (SQLITE_FULL, SQLITE_IOERR on COMMIT);
            # the error that got us here is the one to report.
            pass
        finally:
            self.generations.rolled_back()
            self.seq.rolled_back()  # memory only: nothing here may need the lost session

    def _apply(
        self, messages: list[Message], poisoned: dict[int, str], out: WriteResult
    ) -> list[tuple[Any, ...]]:
        """Apply the batch's records; returns what is refused, for the caller to quarantine."""
        seq = self.seq
        apply_parts = seq.apply_parts
        limits = self.key_limits
        refused: list[tuple[Any, ...]] = []
        stored = duplicates = equivocations = 0
        for index, m in enumerate(messages):
            received_ms = m.received_ms
            day = day_of(received_ms)
            if index in poisoned:
                refused.append((m, Rejection(INTERNAL_ERROR, poisoned[index], m.payload), day))
                continue
            seq.tag = index
            try:
                if m.rejection is not None:
                    refused.append((m, m.rejection, day))
                    continue
                kid = m.kid
                limit = limits.get(kid)
                if limit is not None:  # a dict miss for every key neither revoked nor rotated
                    m.results = _limited(m, limit)
                for item in m.results:
                    if type(item) is Rejection:
                        refused.append((m, item, day))
                        continue
                    # (payload map, payload length, payload hash [, raw]): the payload is
                    # the bytes before the signature item.
                    raw = _raw_of(m, item)
                    end = len(raw) - SIG_ITEM
                    outcome = apply_parts(
                        kid, item[0], raw[end - item[1] : end], item[2], raw, received_ms, day
                    )
                    if outcome is NEW:
                        stored += 1
                    elif outcome is DUPLICATE:
                        duplicates += 1
                    elif outcome is EQUIVOCATION:
                        equivocations += 1
            except HookFailed as hook:  # an earlier message's record, flushed just now
                raise _ItemFailed(hook.tag, hook.exc) from hook.exc
            except Exception as exc:
                raise _ItemFailed(index, exc) from exc
        # (After a failure ``out`` is discarded with the rolled-back attempt.)
        out.stored += stored
        out.duplicates += duplicates
        out.equivocations += equivocations
        return refused

    def _quarantine(self, refused: Iterable[tuple[Any, ...]], out: WriteResult) -> None:
        cap = self.quarantine_bytes
        rows = []
        for m, rejection, day in refused:
            kid = m.kid
            reason, raw = rejection.reason, rejection.raw
            detail = rejection.detail
            # Findings are per device only for enrolled devices: an unknown sender flooding
            # random device ids must not grow the findings table without bound.
            self.findings.add(kid if kid and self.known_device(kid) else "", day,
                              "refused:" + reason)  # fmt: skip
            out.refused[reason] = out.refused.get(reason, 0) + 1
            topic = m.topic[:256].decode("utf-8", "replace")
            rows.append((m.received_ms, topic, kid, reason, detail[:500], len(raw), raw[:cap]))
        self.conn.executemany(
            "INSERT INTO quarantine (received_ms, topic, kid, reason, detail, size, raw)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        # Ids grow by one per row and only the oldest are deleted: max(id) - max_rows is the
        # newest id that no longer fits. One indexed range delete per batch.
        self.conn.execute(
            "DELETE FROM quarantine WHERE id <= (SELECT max(id) FROM quarantine) - ?",
            (self.quarantine_rows,),
        )

    def all_acks(self) -> dict[str, int]:
        return self.seq.all_acks()
