"""The transparency log of stored records, kept in the gateway database (docs/AUDIT.md).

Every record the writer stores is appended, in commit order, as the leaf SHA-256(0x00 ‖
raw signed bytes) of an RFC 9162 Merkle tree; its index goes in ``records.log_index`` and
the tree's nodes in ``log_tiles`` / ``log_tail`` (log_tiles.py), all in the writer's
transaction: after a crash at any moment the tree is exactly the committed records.

Checkpoints (C2SP tlog-checkpoint notes signed with the gateway key) are kept in
``log_checkpoints`` with the consistency proof from the one before. A checkpoint is
issued inside a write transaction that first reads the last one stored, so two processes
(the gateway's timer and `signet log checkpoint`) can never sign inconsistent ones.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass

from signet_gateway.log.checkpoint import Checkpoint, CheckpointSigner, parse
from signet_gateway.log.merkle import HASH_SIZE, leaf_hash
from signet_gateway.log.note import Signer, split
from signet_gateway.log.tree import MerkleTree
from signet_gateway.log.verification import ProofError, verify_consistency

from .log_tiles import SqliteNodeStore
from .model import StoreError

__all__ = ["LogError", "RecordLog", "StoredCheckpoint", "join_hashes", "split_hashes"]


class LogError(StoreError):
    """What was asked of the log cannot be given (one line: unknown record, no checkpoint)."""


@dataclass(frozen=True)
class StoredCheckpoint:
    size: int
    root: bytes
    note: str  # the signed note, verbatim
    issued_ms: int
    proof: tuple[bytes, ...]  # consistency proof from the previous stored checkpoint


def join_hashes(hashes: Sequence[bytes]) -> bytes:
    return b"".join(hashes)


def split_hashes(blob: bytes) -> tuple[bytes, ...]:
    if len(blob) % HASH_SIZE:
        raise LogError(f"a stored proof of {len(blob)} bytes is not a list of hashes")
    return tuple(blob[i : i + HASH_SIZE] for i in range(0, len(blob), HASH_SIZE))


class RecordLog:
    """The log over one connection: the writer's (appends) or a reader's (proofs)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.nodes = SqliteNodeStore(conn)
        with self.nodes.pinned():  # other workers may be committing meanwhile
            self._tree = MerkleTree(self.nodes)
        # The edge in memory may not be the database's (a rollback, another writer): it is
        # read again when the tree is next used, in that caller's transaction, never in the
        # handler of a failure (the session may be gone; docs/GATEWAY.md, Faults).
        self._stale = False

    @property
    def tree(self) -> MerkleTree:
        """The tree as committed (its edge read again first if it may be stale)."""
        if self._stale:
            self.reload()
        return self._tree

    @property
    def size(self) -> int:
        return self.tree.size

    # -- the writer ------------------------------------------------------------------------------

    def append(self, raws: Sequence[bytes]) -> int:
        """Append the records' leaves inside the open transaction; returns the first index."""
        if self.nodes.size() != self.tree.size:
            # Another connection appended since this one looked (a second writer on a shared
            # store): the in-memory edge of the tree is stale.
            self.reload()
        return self.tree.append_many([leaf_hash(raw) for raw in raws])

    def reload(self) -> None:
        """Read the tree's edge again, from one reading of the tails (SqliteNodeStore.pinned:
        right even while other workers commit)."""
        with self.nodes.pinned():
            self._tree.reload()
        self._stale = False  # only once read: a reload that failed is done again

    def rolled_back(self) -> None:
        """After ROLLBACK: forget what the rolled-back appends left in memory (no database
        access: the edge is read again when the tree is next used)."""
        self.nodes.forget()
        self._stale = True

    def another_wrote(self) -> None:
        """Another process committed since this one's last transaction: the tree's edge is
        read again when next used. The complete tiles read before stay cached: committed,
        they never change (a rolled-back transaction's are dropped by ``rolled_back``), so
        the edge is a few rows."""
        self._stale = True

    def append_unlogged(self, batch: int = 5000) -> int:
        """Append every unlogged record (call inside a write transaction); returns how many."""
        done = 0
        while True:
            rows = self.conn.execute(
                "SELECT kid, n, raw FROM records WHERE log_index IS NULL"
                " ORDER BY received_ms, kid, n LIMIT ?",
                (batch,),
            ).fetchall()
            if not rows:
                return done
            first = self.append([raw for _, _, raw in rows])
            self.conn.executemany(
                "UPDATE records SET log_index = ? WHERE kid = ? AND n = ?",
                [(first + i, kid, n) for i, (kid, n, _) in enumerate(rows)],
            )
            done += len(rows)

    # -- checkpoints -----------------------------------------------------------------------------

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        row = self.conn.execute(
            "SELECT size, root, note, issued_ms, proof FROM log_checkpoints"
            " ORDER BY size DESC LIMIT 1"
        ).fetchone()
        return None if row is None else _checkpoint(row)

    def checkpoint(self, size: int) -> StoredCheckpoint | None:
        row = self.conn.execute(
            "SELECT size, root, note, issued_ms, proof FROM log_checkpoints WHERE size = ?",
            (size,),
        ).fetchone()
        return None if row is None else _checkpoint(row)

    def checkpoint_covering(self, index: int) -> StoredCheckpoint | None:
        """The earliest stored checkpoint whose tree holds leaf ``index``."""
        row = self.conn.execute(
            "SELECT size, root, note, issued_ms, proof FROM log_checkpoints WHERE size > ?"
            " ORDER BY size LIMIT 1",
            (index,),
        ).fetchone()
        return None if row is None else _checkpoint(row)

    def checkpoints(self) -> list[StoredCheckpoint]:
        return [
            _checkpoint(row)
            for row in self.conn.execute(
                "SELECT size, root, note, issued_ms, proof FROM log_checkpoints ORDER BY size"
            )
        ]

    def issue_checkpoint(self, signer: Signer, now_ms: int | None = None) -> StoredCheckpoint:
        """Sign a checkpoint of the tree as it is and store it (call inside a write
        transaction). The tree unchanged since the last one: that one is returned, nothing
        is signed. Raises ``log.checkpoint.InconsistentCheckpoint`` if the stored history
        and the tree disagree (a database restored from an older copy, or edited)."""
        if self.nodes.size() != self.tree.size:
            self.reload()
        last = self.latest_checkpoint()
        size, root = self.tree.size, self.tree.root()
        if last is not None and last.size == size and last.root == root:
            return last
        previous = None if last is None else parse(split(last.note)[0])
        proof: tuple[bytes, ...] = ()
        if last is not None and last.size > 0 and size > last.size:
            proof = tuple(self.tree.consistency_proof(last.size, size))

        def consistent(old: Checkpoint, new: Checkpoint) -> bool:
            try:
                verify_consistency(old.size, new.size, old.root, new.root, proof)
            except ProofError:
                return False
            return True

        note = CheckpointSigner(signer, previous, consistent).sign(size, root)
        issued = int(time.time() * 1000) if now_ms is None else now_ms
        self.conn.execute(
            "INSERT INTO log_checkpoints (size, root, note, issued_ms, proof)"
            " VALUES (?, ?, ?, ?, ?)",
            (size, root, note, issued, join_hashes(proof)),
        )
        return StoredCheckpoint(size, root, note, issued, proof)

    # -- proofs ----------------------------------------------------------------------------------

    def index_of(self, kid: str, n: int) -> int:
        row = self.conn.execute(
            "SELECT log_index FROM records WHERE kid = ? AND n = ?", (kid, n)
        ).fetchone()
        if row is None:
            raise LogError(f"device {kid} has no stored record n={n}")
        if row[0] is None:
            raise LogError(
                f"record n={n} of device {kid} is not in the log yet (stored while the log was"
                " off): the gateway appends it when it next starts with the log on"
            )
        return int(row[0])

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        return self.tree.inclusion_proof(index, size)

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        return self.tree.consistency_proof(old_size, new_size)


def _checkpoint(row: tuple[object, ...]) -> StoredCheckpoint:
    size, root, note, issued_ms, proof = row
    return StoredCheckpoint(
        int(size),  # type: ignore[call-overload]
        bytes(root),  # type: ignore[call-overload]
        str(note),
        int(issued_ms),  # type: ignore[call-overload]
        split_hashes(bytes(proof)),  # type: ignore[call-overload]
    )
