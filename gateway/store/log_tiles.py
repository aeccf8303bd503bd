"""The transparency log's Merkle nodes in the gateway database: tiles of 8 hashes.

The log (gateway/log/tree.py) asks a NodeStore for perfect-subtree hashes by (level,
index). This one keeps level 0 (the leaf hashes) and every eighth level above it (8, 16,
24...), as the C2SP tlog-tiles layout does; the tree recomputes the levels in between from
them (at most 255 hashes for a node seven levels above a stored one). That is 32 × 1.004
bytes of hashes per record.

How the bytes are laid out matters as much: a row per node would cost more in SQLite's
row overhead than the hash itself. Nodes are grouped in rows of ``TILE_WIDTH`` hashes:

* ``log_tiles``: complete tiles, inserted once and never changed. Their key is the order
  in which tiles complete (``tile_key``), so every insert lands at the right end of the
  b-tree and SQLite packs its pages full: 15 tiles (120 hashes) per 4 KiB page.
* ``log_tail``: per stored level, the tile being filled (fewer than 8 hashes), rewritten by
  the transaction that adds to it: a few hundred bytes at most.

Everything is written inside the caller's transaction (the writer's, with the records the
leaves hash), so a crash or ROLLBACK leaves nodes and records in step; call
:meth:`SqliteNodeStore.forget` after a ROLLBACK, which drops the read cache.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Final

from signet_gateway.log.merkle import HASH_SIZE
from signet_gateway.log.nodes import Node

from .model import StoreError

__all__ = ["LEVEL_STRIDE", "TILE_WIDTH", "LogStorageError", "SqliteNodeStore", "tile_key"]

LEVEL_STRIDE: Final = 8  # levels kept: 0, 8, 16... (tlog-tiles' tile height)
TILE_WIDTH: Final = 8  # hashes per row: 8 × 32 + ~13 bytes of row overhead pack 15 per page
_TILE_BYTES: Final = TILE_WIDTH * HASH_SIZE
_CACHE_TILES: Final = 4096  # complete tiles kept in memory for proofs (about 1 MiB)


class LogStorageError(StoreError):
    """The log's stored nodes contradict themselves (a bug or a database edited by hand)."""


def tile_key(level: int, tile: int) -> int:
    """The row key of complete tile ``tile`` of stored ``level``.

    A tile of level L holding nodes [8t, 8t + 8) completes when the log reaches
    (t + 1) · 8 · 2^L leaves; ordering rows by that leaf count makes every insert an append
    to the b-tree. Tiles of several levels complete at the same count (a level-8 tile with
    the last level-0 tile under it); the level, in the low bits, orders them and keeps keys
    unique.
    """
    return ((((tile + 1) * TILE_WIDTH) << level) << 3) | (level // LEVEL_STRIDE)


class SqliteNodeStore:
    """A ``gateway.log.nodes.NodeStore`` over the log_tiles and log_tail tables."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._tiles: dict[tuple[int, int], bytes] = {}  # complete tiles read so far
        self._pinned: dict[int, tuple[int, bytes]] | None = None  # level -> tail (pinned)

    @contextlib.contextmanager
    def pinned(self) -> Iterator[None]:
        """Answer from one reading of every level's tail meanwhile: a consistent view of the
        tree's edge for several reads outside the commit lock, while other workers commit
        (PostgreSQL, READ COMMITTED: each statement sees the commits before it). A tail read
        once is a moment of the log; the nodes before it are in complete tiles, committed
        with or before that tail, so found however much the log has grown since."""
        self._pinned = {
            int(level): (int(first), bytes(hashes))
            for level, first, hashes in self.conn.execute(
                "SELECT level, first, hashes FROM log_tail"
            )
        }
        try:
            yield
        finally:
            self._pinned = None

    # -- NodeStore -----------------------------------------------------------------------------

    def size(self) -> int:
        if self._pinned is not None:
            first, hashes = self._pinned.get(0, (0, b""))
            return first + len(hashes) // HASH_SIZE
        row = self.conn.execute("SELECT first, hashes FROM log_tail WHERE level = 0").fetchone()
        return 0 if row is None else int(row[0]) + len(row[1]) // HASH_SIZE

    def get(self, level: int, index: int) -> bytes | None:
        if level % LEVEL_STRIDE:
            return None
        if self._pinned is not None:
            tail = self._pinned.get(level)
            if tail is not None and index >= tail[0]:
                offset = index - tail[0]
                if offset < len(tail[1]) // HASH_SIZE:
                    return tail[1][offset * HASH_SIZE : (offset + 1) * HASH_SIZE]
                return None
        tile, offset = divmod(index, TILE_WIDTH)
        hashes = self._tiles.get((level, tile))
        if hashes is None:
            row = self.conn.execute(
                "SELECT hashes FROM log_tiles WHERE key = ?", (tile_key(level, tile),)
            ).fetchone()
            if row is None:
                return self._tail_node(level, index)
            hashes = bytes(row[0])
            if len(self._tiles) >= _CACHE_TILES:
                self._tiles.clear()
            self._tiles[(level, tile)] = hashes
        return hashes[offset * HASH_SIZE : (offset + 1) * HASH_SIZE]

    def put(self, nodes: Sequence[Node]) -> None:
        tails = {
            int(level): [int(first), bytes(hashes)]
            for level, first, hashes in self.conn.execute(
                "SELECT level, first, hashes FROM log_tail"
            )
        }
        complete: list[tuple[int, bytes]] = []
        changed: set[int] = set()
        for level, index, digest in nodes:
            if level % LEVEL_STRIDE:
                continue
            first, hashes = tails.setdefault(level, [index - index % TILE_WIDTH, b""])
            if index != first + len(hashes) // HASH_SIZE:
                raise LogStorageError(
                    f"log node ({level}, {index}) does not follow the stored ones"
                    f" (next is {first + len(hashes) // HASH_SIZE})"
                )
            hashes += digest
            if len(hashes) == _TILE_BYTES:
                complete.append((tile_key(level, first // TILE_WIDTH), hashes))
                first, hashes = first + TILE_WIDTH, b""
            tails[level] = [first, hashes]
            changed.add(level)
        if complete:
            self.conn.executemany("INSERT INTO log_tiles (key, hashes) VALUES (?, ?)", complete)
        if changed:
            self.conn.executemany(
                "INSERT INTO log_tail (level, first, hashes) VALUES (?, ?, ?) ON CONFLICT (level)"
                " DO UPDATE SET first = excluded.first, hashes = excluded.hashes",
                [(level, *tails[level]) for level in sorted(changed)],
            )

    # -- the rest ------------------------------------------------------------------------------

    def forget(self) -> None:
        """Drop the cache (after a ROLLBACK: a tile it holds may not have been committed)."""
        self._tiles.clear()

    def _tail_node(self, level: int, index: int) -> bytes | None:
        row = self.conn.execute(
            "SELECT first, hashes FROM log_tail WHERE level = ?", (level,)
        ).fetchone()
        if row is None:
            return None
        offset = index - int(row[0])
        hashes = bytes(row[1])
        if 0 <= offset < len(hashes) // HASH_SIZE:
            return hashes[offset * HASH_SIZE : (offset + 1) * HASH_SIZE]
        return None
