"""tools/runners/postgres.py: a throwaway PostgreSQL cluster, and the finder of its programs."""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import psycopg
import pytest

from signet_gateway.store.model import StoreError
from signet_gateway.store.pg_programs import pg_program
from signet_tools.runners.postgres import Postgres


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_cluster_runs_durably_on_loopback_and_leaves_nothing_behind() -> None:
    pg = Postgres().start()
    try:
        workdir = pg.workdir
        assert workdir is not None
        with psycopg.connect(pg.url) as conn:  # over TCP, with the role's password
            row = conn.execute(
                "SELECT current_user, current_database(), current_setting('fsync'),"
                " current_setting('listen_addresses')"
            ).fetchone()
        assert row == ("signet", "signet", "on", "127.0.0.1")
        with pg.admin() as conn:  # the unix socket: inside the cluster's own directory
            where = conn.execute("SHOW unix_socket_directories").fetchone()
        assert where == (str(pg.socket_dir),)
        assert pg.socket_dir.parent == workdir
        if os.geteuid() == 0:  # initdb refuses root: the server's files are postgres's
            import pwd

            assert pg.data.stat().st_uid == pwd.getpwnam("postgres").pw_uid
        with pytest.raises(psycopg.OperationalError):  # the password is checked
            psycopg.connect(pg.url.replace(pg.password, "wrong"), connect_timeout=5)
        made = pg.new_database("second")
        with psycopg.connect(made) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("second",)
        port = pg.port
    finally:
        pg.stop()
    assert not workdir.exists()
    assert not _accepts(port)
    pg.stop()  # twice is harmless


def test_newest_version_of_a_program_is_found(tmp_path: Path) -> None:
    for version in ("13", "15", "9.6"):
        program = tmp_path / version / "bin" / "pg_dump"
        program.parent.mkdir(parents=True)
        program.write_text("#!/bin/sh\n")
        program.chmod(0o755)
    assert pg_program("pg_dump", root=tmp_path) == tmp_path / "15" / "bin" / "pg_dump"


def test_missing_program_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(StoreError, match=r"initdb not found.*apt-get install postgresql"):
        pg_program("initdb", root=tmp_path)


@pytest.mark.skipif(os.geteuid() != 0, reason="the server user differs only when run as root")
def test_as_root_the_cluster_is_made_where_the_server_user_can_reach_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    private = tmp_path / "private"  # under pytest's 0700 folder: postgres cannot pass
    private.mkdir(mode=0o700)
    monkeypatch.setenv("TMPDIR", str(private))
    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
    pg = Postgres().start()
    try:
        assert pg.workdir is not None and pg.workdir.parent == Path("/tmp")
    finally:
        pg.stop()
