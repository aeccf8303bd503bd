"""Schema migration in place, version 1 or 2 to 3, in one transaction.

Kept deliberately small: SQLite only, one function per step. Version 2 rebuilds the devices
table (new columns; a CHECK that ties the hardware tier to evidence that verified) and adds the
challenges table. A version-1 key enrolled as ``hardware`` was enrolled on evidence nobody
verified: it becomes ``software`` (its evidence bytes are kept), and the migration says so;
the way back to the hardware tier is a new key enrolled on verified evidence (a rotation,
docs/TRUST.md). Version 3 adds the transparency log (records.log_index, the log's tables)
and appends every stored record to it in the order they were received; it also adds the
HTTP API's token table (empty). Every other row,
record and aggregate is unchanged.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from .model import StoreError, StoreOpenError
from .record_log import RecordLog
from .schema import API_TOKENS_TABLE, CHALLENGES_TABLE, DEVICES_TABLE, LOG_TABLES, SCHEMA_VERSION
from .sqlite import connect

__all__ = ["Migration", "migrate"]


@dataclass
class Migration:
    from_version: str
    to_version: str = SCHEMA_VERSION
    notes: list[str] = field(default_factory=list)  # one line per thing an operator must know

    @property
    def changed(self) -> bool:
        return self.from_version != self.to_version


def migrate(path: Path | str) -> Migration:
    """Bring the database at ``path`` to SCHEMA_VERSION. Nothing is changed when it already
    is; StoreOpenError for a file that is not a gateway database or of an unknown version."""
    path = Path(path)
    if not path.exists():
        raise StoreOpenError(f"database {path} does not exist")
    conn = connect(path, any_version=True)
    try:
        conn.execute("BEGIN IMMEDIATE")  # the version is read under the write lock
        try:
            version = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0]
            result = Migration(version)
            if version not in ("1", "2", SCHEMA_VERSION):
                raise StoreOpenError(
                    f"database {path} has schema version {version}, which this version of"
                    f" Signet does not know (it knows 1 to {SCHEMA_VERSION})"
                )
            if version == "1":
                result.notes += _v1_to_v2(conn)
            if version in ("1", "2"):
                result.notes += _v2_to_v3(conn)
            conn.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (SCHEMA_VERSION,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        raise StoreError(f"cannot migrate database {path}: {exc}") from None
    finally:
        conn.close()
    return result


def _statements(script: str) -> list[str]:
    """The script's statements, split where SQLite's own tokenizer says one is complete (a
    ';' inside a comment or a string does not end one)."""
    statements, pending = [], ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        statements.append(pending.strip())
    return statements


def _v1_to_v2(conn: sqlite3.Connection) -> list[str]:
    notes = [
        f"device {kid}{f' ({name!r})' if name else ''} was enrolled as hardware on evidence"
        " that was never verified: it is software tier now (its evidence is kept); enroll a"
        " new key on verified evidence with `signet enroll --rotate-from` to regain hardware"
        for kid, name in conn.execute(
            "SELECT kid, name FROM devices WHERE tier = 'hardware' ORDER BY enrolled_ms, kid"
        )
    ]
    # SQLite's recipe for changing a table's constraints: a new table, copy, drop, rename.
    conn.execute("ALTER TABLE devices RENAME TO devices_v1")
    for statement in _statements(DEVICES_TABLE) + _statements(CHALLENGES_TABLE):
        conn.execute(statement)
    conn.execute(
        "INSERT INTO devices (kid, public_key, curve, tier, name, evidence, enrolled_ms,"
        " revoked_ms, flagged, machine)"
        " SELECT kid, public_key, curve, 'software', name, evidence, enrolled_ms, revoked_ms,"
        " flagged, kid FROM devices_v1"
    )
    conn.execute("DROP TABLE devices_v1")
    return notes


def _v2_to_v3(conn: sqlite3.Connection) -> list[str]:
    conn.execute("ALTER TABLE records ADD COLUMN log_index INTEGER")
    for statement in _statements(LOG_TABLES) + _statements(API_TOKENS_TABLE):
        conn.execute(statement)
    appended = RecordLog(conn).append_unlogged()
    if not appended:
        return []
    return [
        f"the transparency log now holds the {appended} records stored before it existed, in"
        " the order they were received (docs/AUDIT.md); the gateway signs its first"
        " checkpoint when it starts"
    ]
