"""The gateway's write path without MQTT: verify, sequence, aggregate, log, commit.

What `signet gateway run` does to each message once it has arrived (ingest's verifier,
BatchWriter with the aggregator's hooks and the transparency log), driven by the caller
with the receive time of its choice. For tests and benchmarks that need a real gateway
database full of genuine records fast (an audit bundle of 100,000 records), not for
production: there is no broker, no ack and no instance lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from signet_gateway.ingest.enrollment import Enrollment
from signet_gateway.ingest.intake import verify_message
from signet_gateway.ingest.writer import BatchWriter, Message, WriteResult
from signet_gateway.log.note import Signer
from signet_gateway.mcr.aggregate import Aggregator, settings_from_config
from signet_gateway.store.generation import Generations
from signet_gateway.store.record_log import RecordLog, StoredCheckpoint
from signet_gateway.store.sqlite import Store
from signet_gateway.verify.pubkeys import DevicePublicKey
from signet_gateway.verify.verifier import Verifier

__all__ = ["OfflineGateway"]


class OfflineGateway:
    """One database (created by the caller: create_gateway_database) and its writer."""

    def __init__(
        self,
        db: Path | str,
        *,
        aggregate: dict[str, Any] | None = None,
        max_future_skew_ms: int = 300_000,
        log: bool = True,
    ) -> None:
        self.db = db  # Store.path names a PostgreSQL URL without its password: not one to open
        self.store = Store(db)
        conn = self.store.conn
        self.aggregator = Aggregator(conn, hb_tolerance=settings_from_config(aggregate or {}))
        self.record_log = RecordLog(conn) if log else None
        # One view of the write generation for the writer, the keys and the checkpoints, as
        # in the gateway: its own writes never count as another process's (generation.py).
        self.generations = Generations(conn)
        self.enrollment = Enrollment(self.store, self.generations)
        self.verifier = Verifier(self.enrollment.keys)
        self.writer = BatchWriter(
            conn,
            max_future_skew_ms=max_future_skew_ms,
            quarantine_rows=1000,
            quarantine_bytes=4096,
            on_stored=self.aggregator.on_stored,
            on_stored_many=self.aggregator.on_stored_many,
            known_device=self.enrollment.known.__contains__,
            key_limits=self.enrollment.limits,
            record_log=self.record_log,
            generations=self.generations,
        )
        self._mid = 0

    def enroll(self, key: DevicePublicKey, tier: str = "software", **kwargs: Any) -> None:
        """Enroll a key as `signet enroll` does: from another connection, which the writer's
        enrollment notices before its next batch (as the running gateway does)."""
        with Store(self.db) as admin:
            admin.enroll(key, tier, **kwargs)

    def deliver(self, items: Sequence[tuple[str, bytes, int]]) -> WriteResult:
        """One batch, one transaction: (device id, message payload, receive time) each, the
        payload one record or a batch of them, as a device publishes them."""
        if self.enrollment.refresh():  # keys enrolled or revoked since the last batch
            self.verifier.forget()
        msgs = []
        for kid, payload, received_ms in items:
            self._mid += 1
            topic = f"signet/v1/{kid}/rec".encode()
            m = Message(self._mid, 1, 1, topic, payload, received_ms)
            verify_message(m, self.verifier)
            msgs.append(m)
        return self.writer.commit(msgs)

    def checkpoint(self, signer: Signer, now_ms: int | None = None) -> StoredCheckpoint:
        """Sign a checkpoint of the log as it is (as the gateway's timer does)."""
        assert self.record_log is not None, "the log is off"
        with self.generations.transaction():
            return self.record_log.issue_checkpoint(signer, now_ms)

    def close(self) -> None:
        self.store.close()
