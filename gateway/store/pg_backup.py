"""Backup and restore of a gateway database on PostgreSQL: pg_dump and pg_restore.

``backup`` runs ``pg_dump --format=custom`` (one consistent snapshot: pg_dump reads in one
REPEATABLE READ transaction while the database keeps taking writes) into a temporary file
beside the destination, checks it with ``pg_restore --list`` (whole, and the dump of a
Signet gateway database), flushes it to disk and only then links it into place: a backup
file is whole or absent, and an existing file is never overwritten (as backup.py does for
SQLite).

``restore`` refuses a file pg_restore cannot read (damaged, or not a custom-format dump)
and the dump of anything but a Signet gateway database. It writes into an empty database
or a gateway database without devices or records; one that holds devices or records is
replaced only when forced. A database that holds tables but is not a Signet gateway
database is never replaced. pg_restore turns the dump into SQL, which psql applies in ONE
transaction together with dropping the tables it replaces: a restore that fails leaves the
target as it was.

The password of the URL goes to the programs in PGPASSWORD, never on a command line.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import Final

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .backup import BackupSummary, new_backup_file, summary
from .model import StoreError, StoreOpenError
from .pg_connection import PgConnection, open_postgres, redact, schema_version
from .pg_programs import pg_program

__all__ = ["backup", "restore"]

# A dump is a Signet gateway database's when its table of contents holds these tables.
_SIGNET_TABLES: Final = ("meta", "devices", "records")
_TIMEOUT_S: Final = 3600.0


def _client(url: str) -> tuple[str, dict[str, str]]:
    """The connection string without its password, and the environment that carries it."""
    try:
        params = conninfo_to_dict(url)
    except Exception as exc:  # psycopg.ProgrammingError: a URL libpq cannot parse
        raise StoreOpenError(f"cannot use database {redact(url)}: {exc}") from None
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    password = params.pop("password", None)
    if password is not None:
        env["PGPASSWORD"] = str(password)
    return make_conninfo(**{k: str(v) for k, v in params.items()}), env


def _run(argv: list[str], env: dict[str, str], what: str) -> str:
    try:
        done = subprocess.run(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise StoreError(f"{what} did not finish in {_TIMEOUT_S:g}s") from None
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip().splitlines()
        raise StoreError(f"{what} failed: {said[0] if said else f'exit {done.returncode}'}")
    return done.stdout.decode(errors="replace")


def _check_dump(dump: Path, what: str) -> None:
    """pg_restore reads the whole table of contents, and it is a gateway database's."""
    try:
        listing = _run([str(pg_program("pg_restore")), "--list", str(dump)], dict(os.environ), "")
    except StoreError:
        raise StoreError(
            f"{what} is not a PostgreSQL backup pg_restore can read (damaged, or another kind"
            " of file: a SQLite backup is restored with --db PATH)"
        ) from None
    names: set[str] = set()
    for line in listing.splitlines():
        if line.startswith(";"):
            continue
        words = line.split()
        # "<id>; <oid> <oid> TABLE public <name> <owner>"
        if len(words) >= 6 and words[3] == "TABLE" and words[4] == "public":
            names.add(words[5])
    if not all(name in names for name in _SIGNET_TABLES):
        raise StoreOpenError(f"{what} is not a backup of a Signet gateway database")


def backup(url: str, destination: Path) -> BackupSummary:
    """pg_dump the gateway database at ``url`` (which may be in use) to the new file
    ``destination``."""
    with new_backup_file(destination) as temp:
        source = open_postgres(url, readonly=True, any_version=True)  # a gateway database?
        try:
            conninfo, env = _client(url)
            _run(
                [
                    str(pg_program("pg_dump")),
                    "--format=custom",
                    "--no-owner",
                    "--no-privileges",
                    f"--file={temp}",
                    f"--dbname={conninfo}",
                ],
                env,
                f"pg_dump of {source.where}",
            )
            _check_dump(Path(temp), f"the backup of {source.where}")
            # What the dump holds: read from the database in a snapshot of its own, so the
            # counts may be newer than the dump's if the gateway writes meanwhile.
            result = summary(source, os.path.getsize(temp))  # type: ignore[arg-type]
        finally:
            source.close()
    return result


def restore(backup_file: Path, url: str, force: bool = False) -> BackupSummary:
    """Write the pg_dump ``backup_file`` into the database at ``url``: an empty one, or a
    gateway database holding tables when ``force``. One transaction."""
    if not backup_file.is_file():
        raise StoreError(f"no backup file at {backup_file}")
    _check_dump(backup_file, str(backup_file))
    target = PgConnection(url)
    try:
        tables = sorted(target.engine().tables())
        if tables:
            if schema_version(target) is None:  # only a Signet database is ever replaced
                raise StoreError(
                    f"{target.where} holds tables but is not a Signet gateway database:"
                    " restore into an empty database"
                )
            held = _holds(target)
            if held and not force:
                raise StoreError(
                    f"{target.where} is not empty ({held}): restoring would replace it; back"
                    " it up, then use --force to replace it"
                )
    finally:
        target.close()
    conninfo, env = _client(url)
    with tempfile.TemporaryDirectory(prefix="signet-restore-") as work:
        script = Path(work) / "restore.sql"
        _run(
            [
                str(pg_program("pg_restore")),
                "--no-owner",
                "--no-privileges",
                f"--file={script}",
                str(backup_file),
            ],
            env,
            f"pg_restore of {backup_file}",
        )
        drop = Path(work) / "drop.sql"
        quoted = ", ".join('"' + t.replace('"', '""') + '"' for t in tables)
        drop.write_text(f"DROP TABLE IF EXISTS {quoted} CASCADE;\n" if tables else "")
        _run(
            [
                str(pg_program("psql")),
                "--no-psqlrc",
                "--quiet",
                "--single-transaction",  # the drop and every statement of the dump: one
                "--set=ON_ERROR_STOP=1",
                f"--file={drop}",
                f"--file={script}",
                f"--dbname={conninfo}",
            ],
            env,
            f"restoring {backup_file} into {redact(url)}",
        )
    restored = open_postgres(url, any_version=True)
    try:
        return summary(restored, os.path.getsize(backup_file))  # type: ignore[arg-type]
    finally:
        restored.close()


def _holds(conn: PgConnection) -> str:
    """'' for a gateway database without devices or records, else what it holds (as
    backup.py says it for SQLite)."""
    devices = conn.execute("SELECT count(*) FROM devices").fetchone()[0]
    records = conn.execute("SELECT count(*) FROM records").fetchone()[0]
    return f"{devices} devices, {records} records" if devices or records else ""
