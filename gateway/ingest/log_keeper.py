"""The gateway's side of the transparency log: its key, catching up, signing checkpoints.

The writer appends each record's leaf in its own transaction (sequencer.py, through the
``RecordLog`` this keeper opens on the writer's connection). The keeper does the rest, on
the writer thread between batches:

* at start: reads the log key (``[log] key``), generating it on the first start if there is
  none (mode 0600; its verifier key is logged), and appends the records stored while the log
  was off, in the order they were received;
* every ``[log] checkpoint_interval_s`` when the tree has grown, and at a clean stop: signs a
  checkpoint in its own transaction (record_log.issue_checkpoint). A checkpoint that cannot
  be written now (a full or locked store) is tried again at the next interval; the records
  are safe either way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

from signet_gateway.config import ConfigError, LogConfig
from signet_gateway.log import key as log_key
from signet_gateway.log.checkpoint import CheckpointError
from signet_gateway.store.faults import ENGINE_ERRORS
from signet_gateway.store.generation import Generations
from signet_gateway.store.record_log import RecordLog, StoredCheckpoint
from signet_gateway.store.sqlite import Store

from .link_state import Throttle
from .timings import ThreadWork

__all__ = ["LogKeeper"]

log = logging.getLogger("signet.gateway")


class _TimedRecordLog(RecordLog):
    """The writer's RecordLog, its appends timed (the sequencer calls append in each batch's
    transaction: the leaves' hashes, the tree's new nodes, their rows)."""

    def __init__(self, conn: Any, work: ThreadWork) -> None:
        super().__init__(conn)
        self.work = work

    def append(self, raws: Sequence[bytes]) -> int:
        with self.work.timed():
            return super().append(raws)


class LogKeeper:
    """Owns the log on the writer's connection; every method runs on the writer thread."""

    def __init__(
        self,
        config: LogConfig,
        conn: Any,
        generations: Generations | None = None,
        work: ThreadWork | None = None,
    ) -> None:
        self.config = config
        self.store = Store.over(conn)
        # Its transactions are this process's own writes (generation.py): not a reason for
        # the writer to drop its caches.
        self.generations = Generations(conn) if generations is None else generations
        try:
            self.signer, made = log_key.open_signer(config, create=True)
        except (log_key.KeyFileError, OSError) as exc:
            raise ConfigError(str(exc)) from None
        if made is not None:
            log.info(
                "generated the log key %s; its verifier key (give it to auditors): %s",
                config.key,
                made,
            )
        # The log's work on the writer thread, timed for /metrics and `signet bench gateway`.
        self.work = work
        self.record_log = RecordLog(conn) if work is None else _TimedRecordLog(conn, work)
        self._interval = config.checkpoint_interval_s
        self._next = time.monotonic() + self._interval
        self._failures = Throttle(1, 60.0)
        self.last: StoredCheckpoint | None = self.record_log.latest_checkpoint()

    def catch_up(self) -> int:
        """Append the records not in the log yet (one transaction); returns how many."""
        with self._timed(), self.generations.transaction():
            appended = self.record_log.append_unlogged()
        if appended:
            log.info("appended %d records stored while the log was off to the log", appended)
        return appended

    def tick(self, now: float) -> None:
        """Between batches: sign a checkpoint if the interval is up and the tree grew."""
        if self._interval and now >= self._next:
            self._next = now + self._interval
            self.checkpoint(quiet=True)

    def checkpoint(self, quiet: bool = False) -> StoredCheckpoint | None:
        """Sign and store a checkpoint of the tree now (unless it is unchanged)."""
        try:
            size = self.record_log.size  # the edge read again first if stale (a rollback)
            if size == 0 or (self.last is not None and self.last.size == size):
                return self.last  # nothing new to sign
            with self._timed(), self.generations.transaction():
                self.last = self.record_log.issue_checkpoint(self.signer)
        except ENGINE_ERRORS as exc:
            self.record_log.rolled_back()
            if self._failures.allow() is not None:
                log.warning("cannot store a log checkpoint now (%s); trying again later", exc)
            return None
        except CheckpointError as exc:
            # The stored history and the tree disagree: signing would be a split view. The
            # records keep flowing; an operator must look (docs/AUDIT.md).
            self.record_log.rolled_back()
            if self._failures.allow() is not None:
                log.error("refusing to sign a log checkpoint: %s", exc)
            return None
        if not quiet:
            log.info("log checkpoint: %d records, root %s", self.last.size, self.last.root.hex())
        return self.last

    def _timed(self) -> Any:
        return nullcontext() if self.work is None else self.work.timed()
