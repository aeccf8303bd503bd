"""API tokens in the gateway database (gateway/web/tokens.py, `signet token`): kept hashed, one
in force per name, revocable; the table is part of schema version 3 and of the migration."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path

import pytest

from signet_gateway.store.sqlite import Store
from signet_gateway.web import tokens
from signet_tools.cli.main import main

V1 = Path(__file__).parents[1] / "store" / "data" / "v1.db"


def test_a_token_is_kept_as_its_hash_and_checked(store_at: Path | str) -> None:
    with Store.create(store_at) as store:
        token = tokens.create(store.conn, "grafana")
        assert token.startswith("signet_") and len(token) == len("signet_") + 43
        (stored,) = store.conn.execute("SELECT sha256 FROM api_tokens").fetchone()
        assert bytes(stored) == hashlib.sha256(token.encode()).digest()
        assert tokens.check(store.conn, token) == "grafana"
        for wrong in (token[:-1], token + "x", "", stored.hex()):
            assert tokens.check(store.conn, wrong) is None
        with pytest.raises(tokens.TokenError, match="in force"):
            tokens.create(store.conn, "grafana")
        tokens.revoke(store.conn, "grafana")
        assert tokens.check(store.conn, token) is None
        again = tokens.create(store.conn, "grafana")  # a revoked name may have a new token
        assert tokens.check(store.conn, again) == "grafana"
        assert [t.active for t in tokens.list_tokens(store.conn)] == [False, True]
    if isinstance(store_at, Path):  # the file holds no token (PostgreSQL: no file to read)
        assert token.encode() not in store_at.read_bytes()


def test_token_commands(
    store_at: Path | str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(store_at)
    Store.create(db).close()
    assert main(["token", "create", "--name", "ops", "--db", db]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("signet_") and out.count("\n") == 1 and "shown only now" in err
    assert main(["token", "create", "--name", "ops", "--db", db]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert main(["token", "create", "--name", " ops", "--db", db]) == 2
    assert "token name" in capsys.readouterr().err
    assert main(["token", "revoke", "ops", "--db", db]) == 0
    assert main(["token", "revoke", "ops", "--db", db]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("signet: error: no token named 'ops' is in force") and err.count("\n") == 1
    )
    assert main(["token", "list", "--db", db]) == 0
    assert "revoked" in capsys.readouterr().out
    assert main(["token", "list", "--db", str(tmp_path / "none.db")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_migration_to_version_3_adds_the_token_table(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    shutil.copyfile(V1, db)
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'api_tokens'").fetchone() is None
    conn.close()
    assert main(["db", "migrate", "--db", str(db)]) == 0
    with Store(db) as store:
        token = tokens.create(store.conn, "after-migration")
        assert tokens.check(store.conn, token) == "after-migration"
        # The same table and index as a new database's.
        fresh = Store.create(tmp_path / "new.db")
        sql = "SELECT type, name, sql FROM sqlite_master WHERE tbl_name = 'api_tokens' ORDER BY 2"
        assert store.conn.execute(sql).fetchall() == fresh.conn.execute(sql).fetchall()
        fresh.close()
