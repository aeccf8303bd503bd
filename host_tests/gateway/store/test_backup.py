"""`signet db backup | restore`: an online snapshot while another connection writes, a
round trip that keeps every record, the log and the report, and the refusals."""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kit.gatewaykit import Dev, write_config
from signet_gateway.ingest.instance_lock import InstanceLock
from signet_gateway.ingest.sequencer import Findings, Sequencer
from signet_gateway.log.note import Signer
from signet_gateway.mcr.aggregate import Aggregator, day_of
from signet_gateway.store.record_log import RecordLog
from signet_gateway.store.sqlite import Store
from signet_gateway.verify.verifier import Verifier
from signet_tools.cli.main import main

T = 1_700_000_000_000
V1 = Path(__file__).parent / "data" / "v1.db"


def _fill(db: Path, devs: list[Dev], count: int) -> None:
    """Records through the sequence rules, the aggregates and the log; a checkpoint."""
    with Store(db) as store:
        agg = Aggregator(store.conn)
        log = RecordLog(store.conn)
        seq = Sequencer(store.conn, Findings(), on_stored=agg.on_stored, record_log=log)
        verifier = Verifier(store.active_keys())
        with store.transaction():
            for i in range(count):
                for d in devs:
                    kind = "rev" if i % 3 == 2 else "hb"
                    received = T + 60_000 * i
                    seq.apply(verifier.verify(d.make(kind)), received, day_of(received))
            seq.flush()
        with store.transaction():
            log.issue_checkpoint(Signer("gw.test/signet", Ed25519PrivateKey.generate()))


@pytest.fixture
def site(tmp_path: Path) -> tuple[Path, Path]:
    db = tmp_path / "gateway.db"
    config = write_config(tmp_path / "gateway.toml", 1883, db)
    devs = [Dev(0), Dev(1)]
    with Store(db) as store:
        for d in devs:
            store.enroll(d.key, "software")
    _fill(db, devs, 30)
    return db, config


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _state(db: Path) -> tuple[object, ...]:
    with Store(db, readonly=True) as store:
        conn = store.conn
        log = RecordLog(conn)
        return (
            conn.execute("SELECT * FROM records ORDER BY kid, n").fetchall(),
            conn.execute("SELECT * FROM devices ORDER BY kid").fetchall(),
            log.size,
            log.tree.root(),
            log.checkpoints(),
        )


def _report(capsys: pytest.CaptureFixture[str], db: Path) -> dict[str, object]:
    code, out, _ = _run(capsys, "report", "--db", db, "--format", "json")
    assert code == 0
    return json.loads(out)


def test_a_backup_restores_to_the_same_records_log_and_report(
    site: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, config = site
    before, report = _state(db), _report(capsys, db)
    code, out, err = _run(capsys, "db", "backup", "--config", config, "--out", tmp_path / "b.db")
    assert code == 0, err
    assert "60 records, log 60 leaves (latest checkpoint 60)" in out
    restored = tmp_path / "restored.db"
    code, out, err = _run(capsys, "db", "restore", "--db", restored, tmp_path / "b.db")
    assert code == 0, err
    assert out.startswith(f"restored {restored}: schema 3, 2 devices, 60 records")
    assert _state(restored) == before
    assert _report(capsys, restored) == report
    # The restored database is a working one: the log takes new leaves after the old.
    with Store(restored) as store, store.transaction():
        assert RecordLog(store.conn).append([b"next"]) == 60


def test_a_backup_is_one_consistent_snapshot_while_another_connection_writes(
    site: tuple[Path, Path], tmp_path: Path
) -> None:
    db, _ = site
    stop = threading.Event()

    def writer() -> None:
        conn = sqlite3.connect(db, isolation_level=None)
        i = 0
        while not stop.is_set():
            # Two rows per transaction: a snapshot between them would hold an odd count.
            conn.execute("BEGIN IMMEDIATE")
            for half in ("a", "b"):
                conn.execute(
                    "INSERT INTO findings (kid, day, finding, count) VALUES ('', ?, ?, 1)",
                    (f"d{i}", half),
                )
            conn.execute("COMMIT")
            i += 1
        conn.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for k in range(5):
            out = tmp_path / f"snap{k}.db"
            assert main(["db", "backup", "--db", str(db), "--out", str(out)]) == 0
            with sqlite3.connect(out) as conn:
                (rows,) = conn.execute("SELECT count(*) FROM findings WHERE kid = ''").fetchone()
                assert rows % 2 == 0
                assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        stop.set()
        thread.join()


def test_refusals_change_nothing(
    site: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, _ = site
    backup = tmp_path / "b.db"
    assert _run(capsys, "db", "backup", "--db", db, "--out", backup)[0] == 0
    taken = backup.read_bytes()

    def refused(needle: str, *argv: object) -> None:
        code, out, err = _run(capsys, *argv)
        assert (code, out) == (2, ""), argv
        assert err.count("\n") == 1 and err.startswith("signet: error: ") and needle in err, err

    refused("already exists", "db", "backup", "--db", db, "--out", backup)
    assert backup.read_bytes() == taken
    before = _state(db)
    refused("is not empty (2 devices, 60 records)", "db", "restore", "--db", db, backup)
    lock = InstanceLock.acquire(db)  # as a running gateway holds it
    try:
        refused("in use by another gateway", "db", "restore", "--db", db, backup, "--force")
    finally:
        lock.release()
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(taken[: len(taken) // 2])
    refused("damaged.db", "db", "restore", "--db", db, damaged, "--force")
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    refused("not a Signet gateway database", "db", "restore", "--db", db, other, "--force")
    refused("not a Signet gateway database", "db", "restore", "--db", other, backup, "--force")
    assert _state(db) == before
    refused("directory", "db", "backup", "--db", db, "--out", tmp_path / "no" / "b.db")


def test_force_replaces_and_an_older_backup_asks_for_the_migration(
    site: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, _ = site
    old = tmp_path / "v1.db"
    shutil.copyfile(V1, old)
    code, out, err = _run(capsys, "db", "restore", "--db", db, old, "--force")
    assert code == 0, err
    assert "schema 1, 3 devices, 18 records" in out
    assert "note: the backup has schema version 1: run `signet db migrate`" in out
    assert _run(capsys, "db", "migrate", "--db", db)[0] == 0
    with Store(db, readonly=True) as store:
        assert store.record_count() == 18 and RecordLog(store.conn).size == 18
