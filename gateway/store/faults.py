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
"""

from __future__ import annotations

import sqlite3
from typing import Final

__all__ = ["FULL", "UNUSABLE", "UNWRITABLE", "fault_of"]

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


def fault_of(exc: sqlite3.Error) -> str:
    """``full``, ``unwritable`` (both: wait and retry) or ``unusable`` (stop)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:  # raised by the sqlite3 module itself (closed connection, misuse)
        return UNUSABLE
    return _WAIT.get(code & 0xFF, UNUSABLE)
