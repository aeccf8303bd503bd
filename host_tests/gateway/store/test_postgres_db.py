"""`signet db init | migrate | backup | restore | copy` on PostgreSQL, refusals included: one
`signet: error:` line and exit 2, nothing changed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest

from kit.audit_site import make_site
from kit.gatewaykit import Dev
from signet_gateway.ingest.instance_lock import InstanceLock
from signet_gateway.store.model import StoreError
from signet_gateway.store.record_log import RecordLog
from signet_gateway.store.sqlite import Store
from signet_tools.cli.main import main
from signet_tools.runners.postgres import Postgres


def _signet(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    said = capsys.readouterr()
    return status, said.out, said.err


def _refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Exit 2 and one error line, no traceback: that line."""
    status, _out, err = _signet(capsys, *argv)
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("signet: error: "), err
    return lines[0]


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
    return {name for (name,) in rows}


def test_init_makes_the_schema_once_and_only_in_an_empty_database(
    pg_url: str, pg_cluster: Postgres, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = _signet(capsys, "db", "init", "--db", pg_url)
    assert status == 0 and "created gateway database" in out and "schema version 3" in out
    assert pg_cluster.password not in out  # the URL is shown without its password
    with Store(pg_url) as store:
        assert store.engine.name == "postgresql" and store.devices() == []
    assert "is a gateway database already" in _refused(capsys, "db", "init", "--db", pg_url)
    other = pg_cluster.new_database("init_other")
    with psycopg.connect(other) as conn:
        conn.execute("CREATE TABLE someone_elses (x int)")
    assert "is not empty (tables: someone_elses)" in _refused(capsys, "db", "init", "--db", other)
    assert _tables(other) == {"someone_elses"}


def test_migrate_has_nothing_to_do_at_the_current_version(
    pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _signet(capsys, "db", "init", "--db", pg_url)[0] == 0
    status, out, _ = _signet(capsys, "db", "migrate", "--db", pg_url)
    assert status == 0 and "schema version 3: nothing to do" in out
    with psycopg.connect(pg_url) as conn:
        conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema'")
    line = _refused(capsys, "db", "migrate", "--db", pg_url)
    assert "schema version 2: PostgreSQL support starts at schema version 3" in line
    assert "schema version 2" in _refused(capsys, "devices", "--db", pg_url)


def test_backup_and_restore_round_trip_with_their_refusals(
    pg_url: str, pg_cluster: Postgres, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _signet(capsys, "db", "init", "--db", pg_url)[0] == 0
    dev = Dev(31)
    with Store(pg_url) as store:
        store.enroll(dev.key, "software", name="till-31")
        with store.transaction():
            RecordLog(store.conn).append([b"one", b"two", b"three"])
    out = tmp_path / "gateway.pgdump"
    status, said, _ = _signet(capsys, "db", "backup", "--db", pg_url, "--out", str(out))
    assert status == 0 and "1 devices" in said and "log 3 leaves" in said
    assert out.read_bytes().startswith(b"PGDMP")  # pg_dump's custom format
    before = out.read_bytes()
    line = _refused(capsys, "db", "backup", "--db", pg_url, "--out", str(out))
    assert "already exists: a backup never overwrites a file" in line
    assert out.read_bytes() == before

    target = pg_cluster.new_database("restored")
    assert _signet(capsys, "db", "init", "--db", target)[0] == 0  # no devices, no records
    status, said, _ = _signet(capsys, "db", "restore", "--db", target, str(out))
    assert status == 0 and "restored" in said and "1 devices" in said
    with Store(target) as store:
        assert [d.kid for d in store.devices()] == [dev.kid]
        assert RecordLog(store.conn).size == 3
    # Onto a gateway database that holds devices: only with --force.
    line = _refused(capsys, "db", "restore", "--db", target, str(out))
    assert "is not empty (1 devices, 0 records)" in line and "--force" in line
    with Store(target) as store:
        store.enroll(Dev(32).key, "software")
    assert _signet(capsys, "db", "restore", "--db", target, str(out), "--force")[0] == 0
    with Store(target) as store:
        assert [d.kid for d in store.devices()] == [dev.kid]  # replaced, not merged

    # A damaged backup, a file of another kind, another database's dump: refused, and the
    # target is left as it was.
    damaged = tmp_path / "damaged.pgdump"
    damaged.write_bytes(before[: len(before) // 2])
    sqlite_file = tmp_path / "sqlite.db"
    assert _signet(capsys, "db", "init", "--db", str(sqlite_file))[0] == 0
    foreign_db = pg_cluster.new_database("foreign")
    with psycopg.connect(foreign_db) as conn:
        conn.execute("CREATE TABLE other (x int)")
    foreign = tmp_path / "foreign.pgdump"
    # A dump of a database that is not a gateway's is refused by backup itself...
    assert "not a Signet gateway database" in _refused(
        capsys, "db", "backup", "--db", foreign_db, "--out", str(foreign)
    )
    assert _pg_dump(foreign_db, foreign) == 0  # ...so make one with pg_dump by hand
    for bad, why in (
        (damaged, "not a PostgreSQL backup pg_restore can read"),
        (sqlite_file, "not a PostgreSQL backup pg_restore can read"),
        (foreign, "is not a backup of a Signet gateway database"),
        (tmp_path / "missing.pgdump", "no backup file at"),
    ):
        fresh = pg_cluster.new_database(f"r_{bad.stem}")
        assert why in _refused(capsys, "db", "restore", "--db", fresh, str(bad), "--force")
        assert _tables(fresh) == set()
    # --force never replaces a database that is not a gateway's.
    line = _refused(capsys, "db", "restore", "--db", foreign_db, str(out), "--force")
    assert "is not a Signet gateway database" in line
    assert _tables(foreign_db) == {"other"}


def _pg_dump(url: str, out: Path) -> int:
    """pg_dump as an operator would run it by hand, on any database."""
    import os
    import subprocess

    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from signet_gateway.store.pg_programs import pg_program

    params = conninfo_to_dict(url)
    env = dict(os.environ, PGPASSWORD=str(params.pop("password")))
    return subprocess.run(
        [str(pg_program("pg_dump")), "-Fc", f"--file={out}", f"--dbname={make_conninfo(**params)}"],
        env=env,
        check=False,
    ).returncode


def test_copy_moves_a_sqlite_store_and_the_report_is_the_same(
    pg_url: str, pg_cluster: Postgres, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = make_site(tmp_path / "site", devices=2, hours=24)  # records, findings, checkpoint
    with Store(site.db) as store:
        store.issue_challenge(60_000)
        store.conn.execute(
            "INSERT INTO quarantine (received_ms, topic, kid, reason, detail, size, raw)"
            " VALUES (1, 'signet/v1/x/rec', '', 'bad_cbor', 'd', 1, x'00')"
        )
    status, out, _ = _signet(capsys, "db", "copy", "--from", str(site.db), "--to", pg_url)
    assert status == 0 and "checked" in out and pg_cluster.password not in out
    original = sqlite3.connect(site.db)
    with Store(pg_url) as copy:
        for table in sorted(Store(site.db).tables()):
            count = f"SELECT count(*) FROM {table}"
            assert copy.conn.execute(count).fetchone() == original.execute(count).fetchone()
        log, copied_log = RecordLog(original), RecordLog(copy.conn)  # type: ignore[arg-type]
        assert copied_log.size == log.size > 0
        assert copied_log.tree.root() == log.tree.root()
        assert copied_log.checkpoints() == log.checkpoints() != []
        # The identity goes on after the copied ids: a new quarantine row gets the next one.
        copy.conn.execute(
            "INSERT INTO quarantine (received_ms, topic, kid, reason, detail, size, raw)"
            " VALUES (2, 't', '', 'r', 'd', 1, ?)",
            (b"\0",),
        )
        ids = [row[0] for row in copy.conn.execute("SELECT id FROM quarantine ORDER BY id")]
        assert ids == sorted(set(ids)) and len(ids) == 2
    original.close()
    for fmt in ("json", "table"):
        here = _signet(capsys, "report", "--db", str(site.db), "--format", fmt)
        there = _signet(capsys, "report", "--db", pg_url, "--format", fmt)
        assert here[0] == there[0] == 0
        assert here[1] == there[1] and "till-0" in here[1]

    # Onto a database that holds tables: refused, nothing changed.
    line = _refused(capsys, "db", "copy", "--from", str(site.db), "--to", pg_url)
    assert "is not empty" in line
    # While a gateway runs on the source: refused.
    other = pg_cluster.new_database("copy_locked")
    lock = InstanceLock.acquire(site.db)
    try:
        _refused(capsys, "db", "copy", "--from", str(site.db), "--to", other)
    finally:
        lock.release()
    assert _tables(other) == set()


def test_a_copy_that_fails_half_way_leaves_the_target_empty(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "gateway.db"
    Store.create(db).close()
    with sqlite3.connect(db) as conn:  # SQLite keeps text in an INTEGER column; PostgreSQL won't
        conn.execute("INSERT INTO findings VALUES ('k', '2026-01-01', 'verified', 'many')")
    assert "findings" in _refused(capsys, "db", "copy", "--from", str(db), "--to", pg_url)
    assert _tables(pg_url) == set()
    with pytest.raises(StoreError):
        Store(pg_url)


def test_the_commands_run_on_a_copy(
    pg_url: str, pg_cluster: Postgres, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What docs/GATEWAY.md says runs on PostgreSQL runs on a database `signet db copy`
    made, and no password is printed (the gateway service itself: host_tests/e2e/
    test_gateway_postgres.py)."""
    site = make_site(tmp_path / "site", devices=2, hours=24)
    assert _signet(capsys, "db", "copy", "--from", str(site.db), "--to", pg_url)[0] == 0
    config = tmp_path / "pg.toml"
    text = site.config.read_text()
    config.write_text(text.replace(f'path = "{site.db}"', f'url = "{pg_url}"'))
    assert f'url = "{pg_url}"' in config.read_text()
    cfg = str(config)

    status, out, _ = _signet(capsys, "log", "checkpoint", "--config", cfg)
    assert status == 0 and out.startswith("audit.test/signet\n")
    bundle = tmp_path / "till-0.bundle"
    status, out, err = _signet(
        capsys, "audit", "export", "--config", cfg, "--device", "till-0", "--out", str(bundle)
    )
    assert status == 0, err
    status, out, err = _signet(capsys, "audit", "verify", str(bundle), "--gateway-key", site.vkey)
    assert status == 0, out + err
    status, token, err = _signet(capsys, "token", "create", "--name", "ops", "--config", cfg)
    assert status == 0 and token.startswith("signet_") and pg_cluster.password not in err, err
    assert "a token named 'ops' is in force" in _refused(
        capsys, "token", "create", "--name", "ops", "--config", cfg
    )
    status, out, _ = _signet(capsys, "token", "list", "--config", cfg)
    assert status == 0 and "ops" in out
    status, out, err = _signet(capsys, "token", "revoke", "ops", "--config", cfg)
    assert status == 0 and "revoked token 'ops'" in out, err
    line = _refused(capsys, "gateway", "status", "--config", cfg)
    assert "ask each worker's console (/readyz)" in line and pg_cluster.password not in line
