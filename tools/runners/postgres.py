"""A private PostgreSQL cluster on a free loopback port, for tests and benchmarks.

`initdb` and `pg_ctl start` in a temporary directory of its own: nothing depends on a system
service, and stop() removes every file. The server listens on 127.0.0.1 only (its unix socket
is inside the directory), with fsync on: the durability the gateway relies on is what runs.
A role and a database are made for the caller (``url``); the role may create databases, so a
test can have a fresh one per test (new_database: CREATE DATABASE from a template).

initdb refuses to run as root: as root the server runs as the ``postgres`` system user (the
Debian package creates it), in a directory under the system's temporary folder that user
owns and can reach (a pytest tmp_path under /tmp/pytest-of-root is mode 0700: not reachable).
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import psycopg
from psycopg import sql

from signet_gateway.store.model import StoreError
from signet_gateway.store.pg_programs import pg_program

from .mosquitto import free_port

__all__ = ["Postgres", "PostgresError"]

SERVER_USER: Final = "postgres"  # who runs the server when we are root
ADMIN: Final = "postgres"  # the cluster's superuser (initdb -U)
# Settings for a throwaway cluster: durable (fsync, full page writes: what production runs),
# reachable only from this machine.
_SETTINGS: Final = (
    "listen_addresses = '127.0.0.1'",
    "fsync = on",
    "synchronous_commit = on",
    "full_page_writes = on",
    "max_connections = 100",
    "log_min_messages = warning",
)


class PostgresError(RuntimeError):
    """PostgreSQL is missing, or the cluster did not start or stop as asked."""


class Postgres:
    """start() makes and starts the cluster; stop() stops it and removes its directory.

    ``url``: postgresql://signet:...@127.0.0.1:PORT/signet, the role and database made for
    the caller. new_database() makes another database owned by that role.
    """

    def __init__(self, *, role: str = "signet", database: str = "signet") -> None:
        self.role = role
        self.database = database
        self.password = secrets.token_urlsafe(18)
        self.port = 0
        self.workdir: Path | None = None
        self._started = False
        self._serving = False  # the server runs (stop_server() keeps the cluster, stopped)

    # -- paths -----------------------------------------------------------------------------

    @property
    def data(self) -> Path:
        assert self.workdir is not None, "start() first"
        return self.workdir / "data"

    @property
    def log(self) -> Path:
        assert self.workdir is not None, "start() first"
        return self.workdir / "postgres.log"

    @property
    def socket_dir(self) -> Path:
        assert self.workdir is not None, "start() first"
        return self.workdir / "socket"

    @property
    def url(self) -> str:
        return self.url_of(self.database)

    def url_of(self, database: str) -> str:
        """The URL of one of this cluster's databases, as the role made for the caller."""
        return f"postgresql://{self.role}:{self.password}@127.0.0.1:{self.port}/{database}"

    @property
    def running(self) -> bool:
        return self._started

    # -- start, stop ---------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> Self:
        if self._started:
            return self
        as_root = os.geteuid() == 0
        owner = _server_user() if as_root else None
        # Under the system's temporary folder, not a caller's folder that the server user may
        # be unable to reach; /tmp if TMPDIR is somewhere it cannot pass through either.
        base = Path(tempfile.gettempdir())
        if owner is not None and not _traversable(base):
            base = Path("/tmp")
        self.workdir = Path(tempfile.mkdtemp(prefix="signet-pg-", dir=base))
        try:
            self.socket_dir.mkdir()
            if owner is not None:
                for path in (self.workdir, self.socket_dir):
                    os.chown(path, owner.pw_uid, owner.pw_gid)
            pwfile = self.workdir / "pwfile"
            pwfile.write_text(secrets.token_urlsafe(18) + "\n")  # the superuser's: never used
            if owner is not None:
                os.chown(pwfile, owner.pw_uid, owner.pw_gid)
            self._run(
                [
                    _program("initdb"),
                    "--pgdata",
                    str(self.data),
                    "--username",
                    ADMIN,
                    "--pwfile",
                    str(pwfile),
                    "--auth-local",
                    "trust",  # the socket is in a 0700 directory: only the owner reaches it
                    "--auth-host",
                    "scram-sha-256",
                    "--encoding",
                    "UTF8",
                    "--locale",
                    "C",
                    "--no-instructions",
                ],
                timeout,
                "initdb",
            )
            pwfile.unlink()
            self.port = free_port()
            settings = [
                *_SETTINGS,
                f"port = {self.port}",
                f"unix_socket_directories = '{self.socket_dir}'",
            ]
            with open(self.data / "postgresql.conf", "a") as conf:
                conf.write("\n# signet test cluster (tools/runners/postgres.py)\n")
                conf.write("\n".join(settings) + "\n")
            self._started = True
            self.start_server(timeout)
            with self.admin() as conn:
                conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD {}").format(
                        sql.Identifier(self.role), sql.Literal(self.password)
                    )
                )
            self.new_database(self.database)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (open sessions are ended), then the directory is removed."""
        if self.workdir is None:
            return
        try:
            if self._started and self._serving:
                self._run(
                    [
                        _program("pg_ctl"),
                        "stop",
                        "--pgdata",
                        str(self.data),
                        "-m",
                        "fast",
                        "-w",
                        "-t",
                        str(int(timeout)),
                    ],
                    timeout + 5,
                    "pg_ctl stop",
                )
        finally:
            self._started = self._serving = False
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    # -- the server alone: an outage of a running cluster -----------------------------------

    def start_server(self, timeout: float = 60.0) -> None:
        """Start the cluster's server (again), on its port; returns when it takes connections.

        -w: pg_ctl polls the server's pid file until it reports ready, up to -t seconds, and
        fails at once if the server exits."""
        self._run(
            [
                _program("pg_ctl"), "start", "--pgdata", str(self.data), "--log", str(self.log),
                "-w", "-t", str(int(timeout)),
            ],
            timeout + 5,
            "pg_ctl start",
        )  # fmt: skip
        self._serving = True

    def stop_server(self, timeout: float = 30.0) -> None:
        """Stop the server as an operator's fast shutdown does (every session ended), keeping
        the cluster: start_server() brings it back with its data, on the same port."""
        self._run(
            [
                _program("pg_ctl"), "stop", "--pgdata", str(self.data), "-m", "fast", "-w",
                "-t", str(int(timeout)),
            ],
            timeout + 5,
            "pg_ctl stop",
        )  # fmt: skip
        self._serving = False

    def restart(self, timeout: float = 60.0) -> None:
        """`pg_ctl restart -m fast`: every session ended, the server back on its port."""
        self._run(
            [
                _program("pg_ctl"), "restart", "--pgdata", str(self.data), "--log",
                str(self.log), "-m", "fast", "-w", "-t", str(int(timeout)),
            ],
            timeout + 5,
            "pg_ctl restart",
        )  # fmt: skip
        self._serving = True

    # -- databases -------------------------------------------------------------------------

    def admin(self) -> psycopg.Connection[Any]:
        """A superuser connection over the unix socket (autocommit): for set-up only."""
        return psycopg.connect(
            host=str(self.socket_dir),
            port=self.port,
            user=ADMIN,
            dbname="postgres",
            autocommit=True,
        )

    def new_database(self, name: str, template: str | None = None) -> str:
        """Make database ``name`` owned by the caller's role (a copy of ``template``, else
        empty); returns its URL."""
        statement = sql.SQL("CREATE DATABASE {} OWNER {}").format(
            sql.Identifier(name), sql.Identifier(self.role)
        )
        if template:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        with self.admin() as conn:
            conn.execute(statement)
        return self.url_of(name)

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except (OSError, AssertionError):
            return ""

    # -- running its programs ------------------------------------------------------------------

    def _run(self, argv: list[str], timeout: float, what: str) -> None:
        """Run a PostgreSQL program as the server's user (``postgres`` when we are root)."""
        owner = _server_user() if os.geteuid() == 0 else None
        user: dict[str, Any] = {}
        if owner is not None:
            user = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        try:
            done = subprocess.run(
                argv,
                cwd=self.workdir,  # the server's user may not reach the caller's folder
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
                check=False,
                **user,
            )
        except subprocess.TimeoutExpired:
            raise PostgresError(
                f"{what} did not finish in {timeout:g}s {self.log_tail()}"
            ) from None
        if done.returncode != 0:
            said = (done.stderr or done.stdout).decode(errors="replace").strip()
            raise PostgresError(
                f"{what} failed ({done.returncode}): {said} {self.log_tail()}".strip()
            )

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _server_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise PostgresError(
            f"running as root, the server needs the {SERVER_USER!r} system user (initdb refuses"
            " root): `./run setup` installs the postgresql package, which creates it"
        ) from None


def _traversable(folder: Path) -> bool:
    """Can any user pass through every folder from / down to this one (o+x)?"""
    folder = folder.resolve()
    return all(os.stat(part).st_mode & 0o001 for part in (folder, *folder.parents))


def _program(name: str) -> str:
    try:
        return str(pg_program(name))
    except StoreError as exc:  # not installed: the message names the package
        raise PostgresError(str(exc)) from None
