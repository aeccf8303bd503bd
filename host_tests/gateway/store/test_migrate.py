"""Schema version 1 -> 3 in place: `signet db migrate` and `signet db init` on an existing
file. data/v1.db was made by the version-1 code (commit 7e6a73d): three devices (one
'hardware' on evidence nobody verified, one revoked), six records each, their aggregates."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from kit.gatewaykit import write_config
from signet_gateway.log import merkle
from signet_gateway.store.model import StoreOpenError
from signet_gateway.store.record_log import RecordLog
from signet_gateway.store.sqlite import Store
from signet_tools.cli.main import main

V1 = Path(__file__).parent / "data" / "v1.db"
SOFT, HARD, GONE = (
    "fc395cfb2122e79e4ffd61543473d1f7",
    "fb329b2ae6543f42768d9349788f766c",
    "500766969d0b86b6ec5ce922beba79b2",
)


@pytest.fixture
def v1(tmp_path: Path) -> Path:
    db = tmp_path / "old.db"
    shutil.copyfile(V1, db)
    return db


def _dump(db: Path, table: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
    finally:
        conn.close()


def test_a_version_1_database_is_refused_with_the_command_that_migrates_it(
    v1: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(StoreOpenError, match=r"schema version 1.*signet db migrate --db"):
        Store(v1)
    cfg = write_config(tmp_path / "gateway.toml", 1, v1)
    for argv in (["gateway", "run", "--config", str(cfg)], ["devices", "--db", str(v1)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "`signet db migrate --db" in err, err


def test_migrate_keeps_everything_and_downgrades_unverified_hardware(
    v1: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records, findings, aggregates = (_dump(v1, t) for t in ("records", "findings", "agg_records"))
    assert main(["db", "migrate", "--db", str(v1)]) == 0
    out = capsys.readouterr().out
    assert f"note: device {HARD} ('kiosk') was enrolled as hardware on evidence that was" in out
    assert "migrated gateway database" in out and "from schema version 1 to 3" in out
    after = _dump(v1, "records")
    assert ([r[:-1] for r in after], _dump(v1, "findings"), _dump(v1, "agg_records")) == (
        records,
        findings,
        aggregates,
    )
    # Version 3: every record appended to the log, in the order they were received.
    logged = sorted(after, key=lambda r: (r[8], r[0], r[1]))  # received_ms, kid, n
    assert [r[-1] for r in logged] == list(range(18))
    with Store(v1) as store:
        tree = RecordLog(store.conn).tree
        assert tree.size == 18
        assert tree.root() == merkle.root(merkle.leaf_hash(r[7]) for r in logged)
    assert "the transparency log now holds the 18 records stored before it existed" in out
    assert main(["devices", "--json", "--db", str(v1)]) == 0
    rows = {r["device"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert {k: (r["tier"], r["status"], r["name"]) for k, r in rows.items()} == {
        SOFT: ("software", "active", "cafe-1"),
        HARD: ("software", "active", "kiosk"),
        GONE: ("software", "revoked", None),
    }
    assert rows[HARD]["evidence_bytes"] == len(b"legacy unchecked chain")
    assert rows[HARD]["evidence_kind"] is None
    assert all(r["machine"] == k and r["replaces"] is None for k, r in rows.items())
    assert rows[SOFT]["ack"] == 6 and rows[GONE]["revoked_ms"] == 1_700_000_200_000
    with Store(v1) as store:
        assert store.issue_challenge(1000)  # the new table is there
    # Again: nothing to do; `db init` on a current database is still refused.
    assert main(["db", "migrate", "--db", str(v1)]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert main(["db", "init", "--db", str(v1)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_db_init_on_an_existing_version_1_file_migrates_it(
    v1: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "init", "--db", str(v1)]) == 0
    assert "from schema version 1 to 3" in capsys.readouterr().out
    with Store(v1, readonly=True) as store:
        assert store.record_count() == 18 and len(store.devices()) == 3


def test_a_failed_migration_changes_nothing(v1: Path) -> None:
    conn = sqlite3.connect(v1)
    conn.execute("CREATE TABLE devices_v1 (x)")  # in the way of the step's RENAME
    conn.commit()
    conn.close()
    before = _dump(v1, "devices")
    assert main(["db", "migrate", "--db", str(v1)]) == 2
    assert _dump(v1, "devices") == before
    with pytest.raises(StoreOpenError, match="schema version 1"):
        Store(v1)


def test_migrate_refuses_while_a_gateway_holds_the_database(
    v1: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from signet_gateway.ingest.instance_lock import InstanceLock

    lock = InstanceLock.acquire(v1)  # as a running gateway (an older version, say) holds it
    try:
        assert main(["db", "migrate", "--db", str(v1)]) == 2
        assert "is in use by another gateway" in capsys.readouterr().err
    finally:
        lock.release()
    assert main(["db", "migrate", "--db", str(v1)]) == 0
