"""[store]: path (SQLite, the default) or url (PostgreSQL), never both; how a command opens
the store it names."""

from __future__ import annotations

from pathlib import Path

import pytest

from signet_gateway.config import ConfigError, load
from signet_tools.cli.gateway import gateway_db
from signet_tools.cli.main import main
from signet_tools.runners.postgres import Postgres

URL = "postgresql://signet:s3cret@db.example:5432/signet"


def _config(tmp_path: Path, store: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(f"[store]\n{store}\n")
    return path


def test_sqlite_stays_the_default_and_a_url_selects_postgresql(tmp_path: Path) -> None:
    default = load(_config(tmp_path, ""))
    assert default.store.url is None and default.store.location == tmp_path / "signet.db"
    pg = load(_config(tmp_path, f'url = "{URL}"'))
    assert pg.store.url == URL and pg.store.location == URL
    assert "s3cret" not in repr(pg.store)  # a password in the URL is never printed
    assert gateway_db(None, _config(tmp_path, f'url = "{URL}"'))[0] == URL


@pytest.mark.parametrize(
    ("store", "error"),
    [
        (
            f'url = "{URL}"\npath = "g.db"',
            "store.path, store.url: give one of them, path (SQLite, the default) or url"
            " (PostgreSQL)",
        ),
        (f'url = "{URL}"\nmax_size_mb = 10', "store.max_size_mb: SQLite only"),
        ('url = "mysql://s3cret@h/db"', "store.url: must be a postgresql://"),
        ('url = "postgresql://u:s3cret@h/d b"', "store.url: must not contain spaces"),
        ("url = 5", "store.url: must be a postgresql://"),
    ],
)
def test_a_wrong_store_is_one_clear_error(tmp_path: Path, store: str, error: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load(_config(tmp_path, store))
    assert str(refused.value).startswith(error)
    assert "s3cret" not in str(refused.value)


def test_the_gateway_service_opens_postgresql(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pg_url: str, pg_cluster: Postgres
) -> None:
    """`signet gateway run` with [store] url opens the database (it runs there: host_tests/
    e2e/test_gateway_postgres.py): one that is not a gateway database yet is refused in
    one line naming `signet db init`, without the password."""
    assert main(["gateway", "run", "--config", str(_config(tmp_path, f'url = "{pg_url}"'))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("signet: error: ") and "signet db init" in err[0], err
    assert "is not a Signet gateway database" in err[0]
    assert pg_cluster.password not in err[0]


def test_db_takes_a_url_as_it_is(tmp_path: Path) -> None:
    from signet_tools.cli.gateway import store_arg

    assert store_arg(URL) == URL  # a Path would fold its '//'
    assert store_arg("g.db") == Path("g.db")
