"""The transparency log in the gateway database: tiles of nodes, appends in the caller's
transaction, rollback, reopening, checkpoints and their refusals."""

from __future__ import annotations

import itertools
import random
import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kit.merkle_reference import mth, path
from signet_gateway.log import merkle
from signet_gateway.log.checkpoint import InconsistentCheckpoint, open_checkpoint
from signet_gateway.log.note import Signer, Verifier
from signet_gateway.log.verification import verify_consistency, verify_inclusion
from signet_gateway.store.log_tiles import LEVEL_STRIDE, TILE_WIDTH, LogStorageError, tile_key
from signet_gateway.store.record_log import LogError, RecordLog
from signet_gateway.store.sqlite import Store

ORIGIN = "test.example/signet"


@pytest.fixture
def store(store_at: Path | str) -> Store:
    """A new gateway store on each engine (SQLite, PostgreSQL)."""
    s = Store.create(store_at)
    yield s  # type: ignore[misc]
    s.close()


def _entries(count: int, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(rng.randrange(1, 300)) for _ in range(count)]


def _append(store: Store, log: RecordLog, entries: list[bytes]) -> int:
    with store.transaction():
        return log.append(entries)


def test_appends_in_random_batches_give_the_reference_heads_and_proofs(store: Store) -> None:
    entries = _entries(2300)
    log = RecordLog(store.conn)
    rng = random.Random(2)
    done = 0
    while done < len(entries):
        step = rng.choice((1, 1, 2, 7, 8, 9, 63, 300))
        assert _append(store, log, entries[done : done + step]) == done
        done = min(len(entries), done + step)
    for reader in (log, RecordLog(store.conn)):  # the writer's, and a fresh one from disk
        tree = reader.tree
        assert tree.size == len(entries)
        for size in (1, 2, 7, 8, 9, 255, 256, 257, 2047, 2048, 2049, 2300):
            assert tree.root(size) == mth(entries[:size])
        for index, size in ((0, 2300), (2299, 2300), (2048, 2049), (1000, 2048), (5, 9)):
            proof = tree.inclusion_proof(index, size)
            assert proof == path(index, entries[:size])
            verify_inclusion(
                merkle.leaf_hash(entries[index]), index, size, proof, mth(entries[:size])
            )


def test_nodes_are_kept_in_full_tiles_and_one_short_tail_per_level(store: Store) -> None:
    log = RecordLog(store.conn)
    _append(store, log, _entries(2 * 8 * 256 + 5))  # 4101 leaves: two level-8 tiles... and 5
    conn = store.conn
    tiles = conn.execute("SELECT key, length(hashes) FROM log_tiles ORDER BY key").fetchall()
    assert {length for _, length in tiles} == {TILE_WIDTH * 32}
    # Level 0: 512 full tiles; level 8 (16 nodes of 256 leaves): 2 full tiles.
    assert len(tiles) == 4101 // 8 + 16 // 8
    keys = [key for key, _ in tiles]
    assert keys == sorted(keys) and tile_key(8, 0) in keys and tile_key(0, 511) in keys
    tails = dict(conn.execute("SELECT level, length(hashes) FROM log_tail").fetchall())
    assert tails == {0: 5 * 32, LEVEL_STRIDE: 0}
    # Levels 1-7 and 9+ are not stored: recomputed, and still right.
    assert log.tree.root() == mth(_entries(2 * 8 * 256 + 5))


def test_a_rolled_back_append_leaves_no_trace(store: Store) -> None:
    log = RecordLog(store.conn)
    first, second, other = _entries(20, 1), _entries(30, 2), _entries(40, 3)
    _append(store, log, first)
    store.conn.execute(store.engine.begin)
    log.append(second)
    assert log.size == 50
    store.conn.execute("ROLLBACK")
    log.rolled_back()
    assert log.size == 20
    _append(store, log, other)
    assert log.tree.root() == mth(first + other)
    assert RecordLog(store.conn).tree.root() == mth(first + other)


def test_forgetting_reads_nothing_and_the_edge_is_read_when_next_used(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # After a rollback, or another writer's commit, the session may be gone (a PostgreSQL
    # restart): forgetting must not need it; the tree is read again by its next user.
    log = RecordLog(store.conn)
    first = _entries(20, 1)
    _append(store, log, first)
    store.conn.execute(store.engine.begin)
    log.append(_entries(30, 2))
    store.conn.execute("ROLLBACK")

    def session_lost() -> None:
        raise AssertionError("read the database while forgetting")

    with monkeypatch.context() as m:
        m.setattr(log.nodes, "pinned", session_lost)
        log.rolled_back()
        log.another_wrote()
    assert log.size == 20  # read now
    assert log.tree.root() == mth(first)
    assert _append(store, log, _entries(5, 3)) == 20


def test_a_second_writer_is_noticed_before_appending(store: Store, store_at: Path | str) -> None:
    mine = RecordLog(store.conn)
    _append(store, mine, _entries(10, 1))
    other_store = Store(store_at)  # (store.path names a URL without its password)
    try:
        _append(other_store, RecordLog(other_store.conn), _entries(5, 2))
    finally:
        other_store.close()
    assert _append(store, mine, _entries(3, 3)) == 15  # not 10: the edge was reloaded
    assert mine.tree.root() == mth(_entries(10, 1) + _entries(5, 2) + _entries(3, 3))


def test_nodes_out_of_step_are_refused(store: Store) -> None:
    log = RecordLog(store.conn)
    _append(store, log, _entries(3))
    with (
        pytest.raises(LogStorageError, match=r"log node \(0, 7\) does not follow"),
        store.transaction(),
    ):
        log.nodes.put([(0, 7, bytes(32))])


def _signer() -> tuple[Signer, Verifier]:
    key = Ed25519PrivateKey.generate()
    return Signer(ORIGIN, key), Verifier.from_public_key(ORIGIN, key.public_key())


def test_checkpoints_are_signed_stored_and_chained_by_consistency_proofs(store: Store) -> None:
    signer, verifier = _signer()
    log = RecordLog(store.conn)
    sizes = (1, 5, 8, 100, 257)
    issued = []
    done = 0
    for size in sizes:
        _append(store, log, _entries(size - done, size))
        done = size
        with store.transaction():
            issued.append(log.issue_checkpoint(signer, now_ms=size))
        with store.transaction():  # the tree unchanged: the same checkpoint, nothing new
            assert log.issue_checkpoint(signer) == issued[-1]
    stored = RecordLog(store.conn).checkpoints()
    assert stored == issued and [c.size for c in stored] == list(sizes)
    for old, new in itertools.pairwise(stored):
        cp = open_checkpoint(new.note, [verifier], origin=ORIGIN).checkpoint
        assert (cp.size, cp.root) == (new.size, new.root)
        verify_consistency(old.size, new.size, old.root, new.root, new.proof)
    assert stored[0].proof == ()
    assert log.checkpoint_covering(0) == stored[0]
    assert log.checkpoint_covering(8) == stored[3]
    assert log.checkpoint_covering(257) is None


def test_a_history_that_contradicts_the_last_checkpoint_is_not_signed(store: Store) -> None:
    signer, _ = _signer()
    log = RecordLog(store.conn)
    _append(store, log, _entries(16))
    with store.transaction():
        log.issue_checkpoint(signer)
    # A database edited (or restored from another history): leaf 3 is not what was signed.
    (hashes,) = store.conn.execute(
        "SELECT hashes FROM log_tiles WHERE key = ?", (tile_key(0, 0),)
    ).fetchone()
    store.conn.execute(
        "UPDATE log_tiles SET hashes = ? WHERE key = ?",
        (hashes[:96] + bytes(32) + hashes[128:], tile_key(0, 0)),
    )
    reader = RecordLog(store.conn)
    _append(store, reader, _entries(4, 9))
    with (
        pytest.raises(InconsistentCheckpoint, match="does not extend the last signed"),
        store.transaction(),
    ):
        reader.issue_checkpoint(signer)
    assert len(reader.checkpoints()) == 1


def test_index_of_names_what_is_missing(store: Store) -> None:
    log = RecordLog(store.conn)
    with pytest.raises(LogError, match="device ab has no stored record n=3"):
        log.index_of("ab", 3)
    store.conn.execute(
        "INSERT INTO records (kid, n, kind, b, u, t, payload, raw, received_ms)"
        " VALUES ('ab', 3, 'hb', 1, 1, NULL, ?, ?, 1)",
        (b"\0", b"\0"),
    )
    with pytest.raises(LogError, match="is not in the log yet"):
        log.index_of("ab", 3)
    with store.transaction():
        assert log.append_unlogged() == 1
    assert log.index_of("ab", 3) == 0


def test_the_unlogged_index_is_empty_when_everything_is_logged(tmp_path: Path) -> None:
    # SQLite's query plan (EXPLAIN QUERY PLAN); the partial index is the same on PostgreSQL.
    conn: sqlite3.Connection = Store.create(tmp_path / "g.db").conn
    conn.execute(
        "INSERT INTO records (kid, n, kind, b, u, t, payload, raw, received_ms, log_index)"
        " VALUES ('ab', 1, 'hb', 1, 1, NULL, x'00', x'00', 1, 0)"
    )
    plan = " ".join(
        str(row[-1])
        for row in conn.execute(
            "EXPLAIN QUERY PLAN SELECT kid, n, raw FROM records WHERE log_index IS NULL"
            " ORDER BY received_ms, kid, n"
        )
    )
    assert "records_unlogged" in plan


class _CommitsBetween:
    """A connection on which another writer's append commits just after the first tile
    look-up that found nothing (the leaf is in the tail, the next read goes there): the
    moment, between two reads of the tree's edge, when a worker on PostgreSQL sees another
    worker's commit (READ COMMITTED, no lock held)."""

    def __init__(self, conn: object, commit: object) -> None:
        self.conn, self.commit = conn, commit

    def __getattr__(self, name: str) -> object:
        return getattr(self.conn, name)

    def execute(self, sql: str, params: object = ()) -> object:
        if self.commit is not None and sql.startswith("SELECT hashes FROM log_tiles"):
            rows = self.conn.execute(sql, params).fetchall()
            if not rows:
                commit, self.commit = self.commit, None
                commit()  # type: ignore[operator]
            return _Rows(rows)
        return self.conn.execute(sql, params)


class _Rows:
    def __init__(self, rows: list[object]) -> None:
        self.rows = rows

    def fetchone(self) -> object:
        return self.rows[0] if self.rows else None


def test_the_edge_is_read_right_while_another_writer_commits(
    store: Store, store_at: Path | str
) -> None:
    """The tree's edge is several reads; another worker's commit between them moves leaves
    from the level's tail into a complete tile. Read from one reading of the tails, the
    edge is the log as it was at that reading, whatever was committed after."""
    first = _entries(TILE_WIDTH + 5, 1)  # one complete tile and 5 leaves in the tail
    writer = RecordLog(store.conn)
    _append(store, writer, first)
    other = Store(store_at)
    try:
        more = _entries(TILE_WIDTH, 2)  # completes the tile that holds the tail's 5 leaves

        def commit() -> None:
            _append(other, RecordLog(other.conn), more)

        log = RecordLog(store.conn)
        racing = _CommitsBetween(store.conn, commit)
        log.nodes.conn = racing  # type: ignore[assignment]
        log.nodes.forget()
        log.another_wrote()  # the edge read again, the other's commit in the middle if asked
        assert log.size == len(first)
        assert log.tree.root() == mth(first)
        if racing.commit is not None:  # the edge was read without looking for a tile that
            commit()  # is not there: the other commits now
        log.nodes.conn = store.conn  # type: ignore[assignment]
        with store.transaction():
            assert log.append(_entries(1, 3)) == len(first) + len(more)  # then seen
        assert log.tree.root() == mth(first + more + _entries(1, 3))
    finally:
        other.close()
