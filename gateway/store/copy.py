"""`signet db copy`: a SQLite gateway database moved into an empty PostgreSQL database.

Every table of the SQLite file is copied (the store's, and the aggregator's so that
`signet report` reads the copy as it read the original), with its indexes: the same CREATE
text each table was made with (read from the file itself), in PostgreSQL's types
(schema.postgres_ddl). All of it in ONE PostgreSQL transaction, read from ONE read
snapshot of the file, and checked before COMMIT: every table's row count, and the
transparency log's size and root hash, equal on both sides. A copy that does not check is
rolled back: the target is left empty.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from .model import StoreError
from .pg_connection import PgConnection, refuse_tables
from .record_log import RecordLog
from .schema import postgres_ddl
from .sqlite import connect

__all__ = ["CopySummary", "copy_to_postgres"]


@dataclass(frozen=True)
class CopySummary:
    rows: dict[str, int]  # table -> rows copied
    log_size: int
    log_root: bytes


def copy_to_postgres(source: Path, url: str) -> CopySummary:
    """Copy the gateway database at ``source`` into the empty database at ``url``."""
    src = connect(source, readonly=True)  # a gateway database of the current schema
    try:
        target = PgConnection(url)
        try:
            return _copy(src, target)
        finally:
            target.close()
    finally:
        src.close()


def _copy(src: sqlite3.Connection, target: PgConnection) -> CopySummary:
    refuse_tables(
        target,
        "copy into an empty database"
        " (the copy creates the tables itself: not one `signet db init` made)",
    )
    src.execute("BEGIN")  # one read snapshot of the whole file
    try:
        objects = src.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL"
            " AND name NOT LIKE 'sqlite_%' ORDER BY type = 'index', rowid"
        ).fetchall()
        target.execute("BEGIN")
        try:
            rows: dict[str, int] = {}
            for kind, name, sql in objects:
                target.execute(postgres_ddl(sql))
                if kind == "table":
                    rows[name] = _copy_table(src, target, name)
            _restart_identities(target)
            summary = _check(src, target, rows)
            target.execute("COMMIT")
        except BaseException:
            if target.in_transaction:
                target.execute("ROLLBACK")
            raise
    finally:
        src.execute("ROLLBACK")
    return summary


def _copy_table(src: sqlite3.Connection, target: PgConnection, table: str) -> int:
    cursor = src.execute(f'SELECT * FROM "{table}"')
    columns = [d[0] for d in cursor.description]
    count = 0

    def counted() -> object:
        nonlocal count
        for row in cursor:
            count += 1
            yield row

    try:
        target.copy_rows(table, columns, counted())  # type: ignore[arg-type]
    except StoreError as exc:
        raise StoreError(f"cannot copy table {table} (nothing was copied): {exc}") from exc
    return count


def _restart_identities(target: PgConnection) -> None:
    """An identity column (SQLite's AUTOINCREMENT) goes on after the highest copied id."""
    for table, column in target.execute(
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND is_identity = 'YES'"
    ).fetchall():
        target.execute(
            f'SELECT setval(pg_get_serial_sequence(?, ?), COALESCE(max("{column}"), 0) + 1,'
            f' false) FROM "{table}"',
            (table, column),
        )


def _check(src: sqlite3.Connection, target: PgConnection, rows: dict[str, int]) -> CopySummary:
    for table, copied in rows.items():
        there = int(target.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])
        here = int(src.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])
        if not here == copied == there:
            raise StoreError(
                f"the copy of table {table} does not check: {here} rows in the source,"
                f" {there} in the target: nothing was copied"
            )
    mine, theirs = RecordLog(src), RecordLog(target)  # type: ignore[arg-type]
    if (mine.size, mine.tree.root()) != (theirs.size, theirs.tree.root()):
        raise StoreError(
            f"the copy's transparency log ({theirs.size} leaves) differs from the source's"
            f" ({mine.size} leaves): nothing was copied"
        )
    return CopySummary(rows, mine.size, mine.tree.root())
