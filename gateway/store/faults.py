"""Which storage errors are the disk's state (wait, then retry) and which the database's (stop).

The gateway waits out a store that is full or cannot be written at the moment: devices
keep their records until they are acknowledged, so nothing is lost while it waits, and it
keeps its broker session meanwhile. A store that is corrupt or not a usable Signet database
does not get better by waiting: the gateway stops (exit 3). By SQLite's primary result code:

- ``full``: SQLITE_FULL, the disk is full or the database reached ``store.max_size_mb``
  (``PRAGMA max_page_count``).
- ``unwritable``: SQLITE_READONLY (the file or its filesystem became read-only),
  SQLITE_IOERR (an I/O error: a disk or network filesystem that failed or went away),
  SQLITE_CANTOPEN and SQLITE_PERM (a journal file that cannot be created or opened),
  SQLITE_BUSY and SQLITE_LOCKED (another process held the write lock beyond the busy
  timeout), SQLITE_NOMEM, SQLITE_PROTOCOL.
- ``unusable``: everything else, in particular SQLITE_CORRUPT and SQLITE_NOTADB, and
  SQLITE_ERROR (a table or column missing: not the schema this gateway writes).

PostgreSQL (pg_connection.py), by SQLSTATE, to the same three: ``full`` for 53100
(disk_full); ``unwritable`` for the rest of class 53 (out of memory, too many connections),
class 08 (the connection failed or was lost, also a lost connection with no SQLSTATE),
57P01-57P03 (the server shuts down or is starting), 40001 and 40P01 (serialization failure,
deadlock: retry), 55P03 (lock not available) and 25006 (a read-only transaction);
``unusable`` for everything else (42P01: a table missing, 23xxx: a constraint, XX001 data
corrupted...).

database_error() turns either engine's exception into the store's DatabaseError carrying
that fault, so a caller handles one class whatever the engine.
"""

from __future__ import annotations

import sqlite3
from typing import Final

from .model import DatabaseError

__all__ = [
    "ENGINE_ERRORS",
    "FULL",
    "UNUSABLE",
    "UNWRITABLE",
    "database_error",
    "fault_of",
    "is_constraint",
]

FULL: Final = "full"
UNWRITABLE: Final = "unwritable"
UNUSABLE: Final = "unusable"

# SQLite primary result codes (https://sqlite.org/rescode.html).
_SQLITE_PERM: Final = 3
_SQLITE_BUSY: Final = 5
_SQLITE_LOCKED: Final = 6
_SQLITE_NOMEM: Final = 7
_SQLITE_READONLY: Final = 8
_SQLITE_IOERR: Final = 10
_SQLITE_FULL: Final = 13
_SQLITE_CANTOPEN: Final = 14
_SQLITE_PROTOCOL: Final = 15

_WAIT: Final = {
    _SQLITE_FULL: FULL,
    _SQLITE_PERM: UNWRITABLE,
    _SQLITE_BUSY: UNWRITABLE,
    _SQLITE_LOCKED: UNWRITABLE,
    _SQLITE_NOMEM: UNWRITABLE,
    _SQLITE_READONLY: UNWRITABLE,
    _SQLITE_IOERR: UNWRITABLE,
    _SQLITE_CANTOPEN: UNWRITABLE,
    _SQLITE_PROTOCOL: UNWRITABLE,
}


# What a statement on the store's connection raises: sqlite3's errors on a SQLite connection,
# the store's DatabaseError on PostgreSQL (pg_connection.py). ``except ENGINE_ERRORS``
# catches either; fault_of and is_constraint read both.
ENGINE_ERRORS: Final = (sqlite3.Error, DatabaseError)

# PostgreSQL SQLSTATEs (https://www.postgresql.org/docs/current/errcodes-appendix.html).
_PG_FULL: Final = "53100"
_PG_WAIT_CLASSES: Final = ("08", "53")
_PG_WAIT: Final = frozenset({"57P01", "57P02", "57P03", "40001", "40P01", "55P03", "25006"})


def fault_of(exc: sqlite3.Error | DatabaseError) -> str:
    """``full``, ``unwritable`` (both: wait and retry) or ``unusable`` (stop)."""
    if isinstance(exc, DatabaseError):
        return exc.fault
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:  # raised by the sqlite3 module itself (closed connection, misuse)
        return UNUSABLE
    return _WAIT.get(code & 0xFF, UNUSABLE)


def is_constraint(exc: BaseException) -> bool:
    """A constraint refused the statement (a key taken, a CHECK): the data's fault, not the
    database's: SQLite's IntegrityError, PostgreSQL's class 23."""
    if isinstance(exc, sqlite3.IntegrityError):
        return True
    if isinstance(exc, DatabaseError):
        if isinstance(exc.__cause__, sqlite3.Error):  # the engine's own error, wrapped
            return isinstance(exc.__cause__, sqlite3.IntegrityError)
        return (exc.code or "").startswith("23")  # PostgreSQL's SQLSTATE
    return False


def _pg_fault(exc: BaseException) -> str:
    state = getattr(exc, "sqlstate", None)
    if state is None:  # psycopg's own: a connection lost or closed has no SQLSTATE
        return UNWRITABLE if type(exc).__name__ == "OperationalError" else UNUSABLE
    if state == _PG_FULL:
        return FULL
    if state[:2] in _PG_WAIT_CLASSES or state in _PG_WAIT:
        return UNWRITABLE
    return UNUSABLE


def database_error(exc: BaseException, where: str) -> DatabaseError:
    """The store's DatabaseError for an engine's exception (sqlite3 or psycopg): one line
    naming the database, the fault (above) and the engine's code."""
    if isinstance(exc, sqlite3.Error):
        fault = fault_of(exc)
        code = getattr(exc, "sqlite_errorcode", None)
        state = None if code is None else str(code)
    else:
        fault = _pg_fault(exc)
        state = getattr(exc, "sqlstate", None)
    text = str(exc).strip().splitlines()
    said = text[0] if text else type(exc).__name__
    return DatabaseError(f"database {where}: {said}", fault, state)
