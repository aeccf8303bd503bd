"""The Store on PostgreSQL: what differs by engine (placeholders, types, size, errors,
opening), checked where it differs. The Store's behaviour itself is checked on both
engines by the store tests (the store_at fixture)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from kit.gatewaykit import Dev
from signet_gateway.store.faults import FULL, UNUSABLE, UNWRITABLE, fault_of
from signet_gateway.store.model import DatabaseError, StoreError, StoreOpenError, StoreUnreachable
from signet_gateway.store.pg_connection import pg_sql
from signet_gateway.store.sqlite import Store, store_name
from signet_tools.runners.mosquitto import free_port
from signet_tools.runners.postgres import Postgres


def test_placeholders_are_translated_once_per_text_and_percent_is_kept() -> None:
    assert pg_sql("SELECT a FROM t WHERE b = ? AND c > ?") == (
        "SELECT a FROM t WHERE b = %s AND c > %s"
    )
    # A '?' quoted or commented is text; a '%' anywhere is doubled (psycopg reads it all).
    assert pg_sql("SELECT '?', \"a?\", x % 2 FROM t -- why? 5%\nWHERE y LIKE 'a%' AND z = ?") == (
        "SELECT '?', \"a?\", x %% 2 FROM t -- why? 5%%\nWHERE y LIKE 'a%%' AND z = %s"
    )
    assert pg_sql("SELECT 'it''s ?' , ?") == "SELECT 'it''s ?' , %s"
    pg_sql.cache_clear()
    pg_sql("SELECT ?")
    pg_sql("SELECT ?")
    assert pg_sql.cache_info().hits == 1


def test_values_come_back_as_sqlite_gives_them(pg_url: str) -> None:
    with Store.create(pg_url) as store:
        conn = store.conn
        conn.execute(
            "INSERT INTO findings (kid, day, finding, count) VALUES (?, ?, ?, ?), (?, ?, ?, ?)",
            ("k", "2026-01-01", "late%", True, "k", "2026-01-02", "late%", 2),
        )
        # sum() of BIGINT is NUMERIC in PostgreSQL: an int here; a bool was stored as 1.
        assert store.findings("k") == {"late%": 3}
        assert type(conn.execute("SELECT sum(count) FROM findings").fetchone()[0]) is int
        assert conn.execute("SELECT avg(count) FROM findings").fetchone()[0] == 1.5
        conn.execute("INSERT INTO meta (key, value) VALUES ('a%b', '100%')")  # no parameters
        assert conn.execute("SELECT value FROM meta WHERE key = ?", ("a%b",)).fetchone() == (
            "100%",
        )
        assert store.size_bytes() > 0 and not store.at_size_limit()
        store.limit_size(None)  # no cap: accepted
        with pytest.raises(StoreError, match="max_size_mb is not supported on PostgreSQL"):
            store.limit_size(10)


def test_database_errors_are_the_stores_own_with_the_same_faults(pg_url: str) -> None:
    with Store.create(pg_url) as store:
        dev = Dev(41)
        store.enroll(dev.key, "software")
        with pytest.raises(DatabaseError) as missing:
            store.conn.execute("SELECT * FROM no_such_table")
        assert fault_of(missing.value) == UNUSABLE and missing.value.code == "42P01"
        assert not isinstance(missing.value.__cause__, DatabaseError)  # psycopg's, kept as cause
        with pytest.raises(DatabaseError, match="duplicate key"):
            store.conn.execute(
                "INSERT INTO devices (kid, public_key, curve, tier, enrolled_ms, machine)"
                " VALUES (?, ?, 'p256', 'software', 1, ?)",
                (dev.kid, b"k", dev.kid),
            )
        store.conn.execute("SELECT 1")  # the connection is still usable
    assert fault_of(DatabaseError("x", FULL, "53100")) == FULL


def _end_session(cluster: Postgres, conn: Any) -> None:
    """The server ends conn's session, as a restart does (and waits until it has)."""
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    with cluster.admin() as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,)).fetchone() == (True,)


def test_a_lost_server_is_a_fault_to_wait_out() -> None:
    pg = Postgres().start()
    try:
        store = Store.create(pg.url)
        store.enroll(Dev(43).key, "software")
        with pg.admin() as admin:  # the server ends this session, as a restart would
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (pg.role,),
            )
        with pytest.raises(DatabaseError) as lost:
            store.devices()
        assert fault_of(lost.value) == UNWRITABLE
        pg.stop_server()  # and stays down: a new session cannot be made yet
        with pytest.raises(DatabaseError) as down:
            store.conn.reconnect()
        assert fault_of(down.value) == UNWRITABLE and "cannot open database" in str(down.value)
        with pytest.raises(StoreUnreachable):  # opening waits too (the gateway's start)
            Store(pg.url)
        assert pg.password not in str(down.value)
        pg.start_server()  # back, with its data, on the same port
        store.conn.reconnect()
        assert [d.kid for d in store.devices()] == [Dev(43).kid]
        store.close()
    finally:
        pg.stop()


def test_a_lost_session_fails_every_statement_as_an_outage_until_made_again(
    pg_url: str, pg_cluster: Postgres
) -> None:
    Store.create(pg_url).close()
    with Store(pg_url) as store, Store(pg_url, readonly=True) as reader:
        conn = store.conn
        conn.execute("BEGIN")
        _end_session(pg_cluster, conn)
        with pytest.raises(DatabaseError) as lost:
            store.devices()
        assert fault_of(lost.value) == UNWRITABLE
        assert conn.lost and not conn.in_transaction  # nothing left to roll back
        for _ in range(2):  # the store's own error each time, never psycopg's
            with pytest.raises(DatabaseError) as again:
                conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", [("a", "b")])
            assert fault_of(again.value) == UNWRITABLE
        assert not isinstance(again.value, psycopg.Error)
        conn.reconnect()  # a new session with the same settings
        assert not conn.lost and conn.reconnects == 1
        assert store.devices() == []
        assert conn.execute("SHOW lock_timeout").fetchone() == ("10s",)
        _end_session(pg_cluster, reader.conn)
        with pytest.raises(DatabaseError):
            reader.devices()
        reader.conn.reconnect()
        with pytest.raises(DatabaseError, match="read-only"):  # still a reader
            reader.enroll(Dev(44).key, "software")


def test_no_message_and_no_store_location_holds_the_password(
    pg_url: str, pg_cluster: Postgres
) -> None:
    secret = pg_cluster.password
    with Store.create(pg_url) as store:
        assert store.path == store_name(pg_url) and secret not in str(store.path)
        assert store.engine.location() == store.path
    # libpq quotes a malformed part of a URL: the password is not said, written or decoded.
    malformed = pg_url.replace(secret, "s3cr%zzet")
    with pytest.raises(StoreOpenError) as refused:
        Store(malformed)
    assert "s3cr" not in str(refused.value) and not isinstance(refused.value, StoreUnreachable)
    # A wrong password is refused for good; a port where nothing listens may come up.
    with pytest.raises(StoreOpenError) as wrong:
        Store(pg_url.replace(secret, "not-the-password"))
    assert not isinstance(wrong.value, StoreUnreachable)
    nobody = f"postgresql://signet:{secret}@127.0.0.1:{free_port()}/signet"
    with pytest.raises(StoreUnreachable) as unreachable:
        Store(nobody)
    assert secret not in str(unreachable.value)
    # Given as a parameter, it is hidden too.
    assert (
        store_name(f"postgresql://signet@h/db?sslmode=require&password={secret}")
        == "postgresql://signet@h/db?sslmode=require&password=***"
    )


def test_only_a_gateway_database_of_this_version_opens(
    pg_url: str, pg_cluster: Postgres, tmp_path: Path
) -> None:
    with pytest.raises(StoreOpenError, match="is not a Signet gateway database"):
        Store(pg_url)
    with psycopg.connect(pg_url) as conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT INTO meta VALUES ('schema', '2')")
    with pytest.raises(StoreOpenError, match="schema version 2, this version of Signet needs 3"):
        Store(pg_url)
    wrong = pg_url.replace(pg_cluster.password, "not-the-password")
    with pytest.raises(StoreOpenError, match="cannot open database") as refused:
        Store(wrong)
    assert "not-the-password" not in str(refused.value)  # a URL is named without its password
    assert store_name(wrong) == wrong.replace("not-the-password", "***")
    assert store_name(tmp_path / "g.db") == str(tmp_path / "g.db")


def test_a_read_only_store_refuses_writes(pg_url: str) -> None:
    Store.create(pg_url).close()
    with Store(pg_url, readonly=True) as store, pytest.raises(DatabaseError, match="read-only"):
        store.enroll(Dev(42).key, "software")


def test_the_schema_keeps_its_constraints_in_postgresql_types(pg_url: str) -> None:
    with Store.create(pg_url) as store:
        types = dict(
            store.conn.execute(
                "SELECT table_name || '.' || column_name, data_type"
                " FROM information_schema.columns WHERE table_schema = current_schema()"
            ).fetchall()
        )
        assert types["records.payload"] == "bytea" and types["records.received_ms"] == "bigint"
        assert types["devices.kid"] == "text"
        indexes = dict(
            store.conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()"
            ).fetchall()
        )
        assert "WHERE (log_index IS NULL)" in indexes["records_unlogged"]
        assert "WHERE (revoked_ms IS NULL)" in indexes["api_tokens_name"]
        assert "(kid, n)" in indexes["records_pkey"]
