"""Online backup and restore of the gateway database (SQLite's backup API).

``backup`` copies a consistent snapshot while the gateway keeps writing: the copy is read in
one read transaction of the WAL database (the writer is not blocked), written to a
temporary file beside the destination, checked (``PRAGMA integrity_check``, the schema
version), flushed to disk and only then linked into place, so a backup file is whole or
absent, and an existing file is never overwritten.

``restore`` writes a backup *through* SQLite into the target (the backup API again, in one
transaction of the target connection), never by copying files over it: a target whose WAL
still holds committed pages would otherwise apply them to the restored file. It refuses a
target that holds devices or records unless forced, and the caller holds the gateway's lock
so that no gateway writes during it.

The transparency log's key is not in the database: back it up with it (docs/GATEWAY.md).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .log_tiles import SqliteNodeStore
from .model import StoreError, StoreOpenError
from .record_log import RecordLog
from .schema import SCHEMA_VERSION
from .sqlite import connect

__all__ = ["BackupSummary", "backup", "fsync_dir", "restore", "summary"]


@dataclass(frozen=True)
class BackupSummary:
    schema: str
    devices: int
    records: int
    log_size: int  # leaves in the transparency log
    checkpoint: int | None  # size of the latest stored checkpoint
    bytes: int


def summary(conn: sqlite3.Connection, size: int) -> BackupSummary:
    """What a database holds, for the lines `signet db backup | restore` print."""
    schema = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0]
    devices = conn.execute("SELECT count(*) FROM devices").fetchone()[0]
    records = conn.execute("SELECT count(*) FROM records").fetchone()[0]
    log_size, checkpoint = 0, None
    if schema == SCHEMA_VERSION:  # an older backup has no log yet
        log_size = SqliteNodeStore(conn).size()
        latest = RecordLog(conn).latest_checkpoint()
        checkpoint = None if latest is None else latest.size
    return BackupSummary(str(schema), devices, records, log_size, checkpoint, size)


def _check(conn: sqlite3.Connection, what: str) -> None:
    """A whole, Signet database: integrity_check passes and the schema is one we know."""
    try:
        problems = [row[0] for row in conn.execute("PRAGMA integrity_check")]
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{what} is not a readable SQLite database ({exc})") from None
    if problems != ["ok"]:
        raise StoreError(f"{what} is damaged: {problems[0]}")
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    except sqlite3.DatabaseError:
        row = None  # no meta table
    if row is None:
        raise StoreOpenError(f"{what} is not a Signet gateway database")


@contextlib.contextmanager
def new_backup_file(destination: Path) -> Iterator[str]:
    """A temporary file beside ``destination`` for the caller's block to fill. If the block
    succeeds, the file is flushed to disk and linked under ``destination``, never over an
    existing file; it is removed either way. Both engines' backups are written through it."""
    if destination.exists():
        raise StoreError(f"{destination} already exists: a backup never overwrites a file")
    if not destination.parent.is_dir():
        raise StoreError(f"cannot write {destination}: directory {destination.parent} is missing")
    fd, temp = tempfile.mkstemp(prefix=f".{destination.name}.", dir=destination.parent)
    os.close(fd)
    try:
        yield temp
        with open(temp, "rb") as f:
            os.fsync(f.fileno())
        os.link(temp, destination)  # fails if the name was taken meanwhile: never overwrite
        fsync_dir(destination.parent)
    except FileExistsError:
        raise StoreError(
            f"{destination} already exists: a backup never overwrites a file"
        ) from None
    finally:
        Path(temp).unlink(missing_ok=True)


def backup(source: Path, destination: Path) -> BackupSummary:
    """Copy the database at ``source`` (which may be in use) to the new file ``destination``."""
    with new_backup_file(destination) as temp:
        src = connect(source, readonly=True, any_version=True)
        try:
            dst = sqlite3.connect(temp)
            try:
                src.backup(dst)  # one step: one read snapshot of the source
                # A backup is one self-contained file: no WAL beside it.
                dst.execute("PRAGMA journal_mode = DELETE")
                _check(dst, f"the backup of {source}")
                result = summary(dst, os.path.getsize(temp))
            finally:
                dst.close()
        finally:
            src.close()
    return result


def restore(backup_file: Path, target: Path, force: bool = False) -> BackupSummary:
    """Write ``backup_file`` into the database ``target`` (made if missing); refuses a target
    holding devices or records unless ``force``. Call it holding the gateway's lock."""
    if not backup_file.is_file():
        raise StoreError(f"no backup file at {backup_file}")
    src = sqlite3.connect(f"file:{backup_file}?mode=ro", uri=True)
    try:
        _check(src, str(backup_file))
        if target.exists():
            # Only a Signet database is ever replaced (connect refuses any other file).
            dst = connect(target, any_version=True)
            held = _holds(dst)
            if held and not force:
                dst.close()
                raise StoreError(
                    f"{target} is not empty ({held}): restoring would replace it; back it"
                    " up, then use --force to replace it"
                )
        else:
            if not target.parent.is_dir():
                raise StoreError(
                    f"cannot restore to {target}: directory {target.parent} is missing"
                )
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            dst = connect(target, new=True)
        try:
            src.backup(dst)  # replaces the target's content in one transaction of its own
            _check(dst, f"the restored {target}")
            result = summary(dst, os.path.getsize(target))
        finally:
            dst.close()
    finally:
        src.close()
    return result


def _holds(conn: sqlite3.Connection) -> str:
    """'' for a database without devices or records, else what it holds."""
    devices = conn.execute("SELECT count(*) FROM devices").fetchone()[0]
    records = conn.execute("SELECT count(*) FROM records").fetchone()[0]
    return f"{devices} devices, {records} records" if devices or records else ""


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
