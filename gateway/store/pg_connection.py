"""The PostgreSQL engine: a psycopg 3 connection that answers the sqlite3 calls the store makes.

The Store's queries are one SQL text each, in the subset SQLite and PostgreSQL both accept
(``INSERT ... ON CONFLICT``, ``excluded.x``, COALESCE, no PRAGMA). What differs is said
here once:

* placeholders: SQLite's ``?`` becomes psycopg's ``%s`` (a literal ``%`` doubled), once per
  statement text (cached); statements without parameters are sent as written;
* results: Python ints as SQLite gives them (``sum()`` of BIGINT is NUMERIC in PostgreSQL:
  loaded as int, or float when it has a fraction), bytes for BYTEA; a Python bool is
  written as 0 or 1, as SQLite stores it;
* transactions: autocommit, with explicit ``BEGIN``/``COMMIT`` as on the SQLite connection
  (isolation_level=None); Store.transaction() begins READ COMMITTED and takes one
  advisory lock, as SQLite's BEGIN IMMEDIATE takes the write lock (PostgresEngine.begin);
* errors: every psycopg error becomes the store's own (faults.database_error), so callers
  never see psycopg's classes;
* a lost connection (the server restarted or stopped, the network failed): every statement
  fails as ``unwritable`` (an outage, faults.py) until the owner calls
  :meth:`PgConnection.reconnect`, which opens a new session with the same settings. It is
  never done behind the caller's back: a transaction lost with its session must be begun
  again whole, by whoever began it (the gateway's writer: docs/GATEWAY.md, Faults).

Importing this module imports psycopg (a third of a second): the store imports it only
when a ``postgresql://`` URL is opened.
"""

from __future__ import annotations

import contextlib
import functools
import urllib.parse
from collections.abc import Iterable, Sequence
from typing import Any, Final

import psycopg
from psycopg.adapt import Dumper, Loader
from psycopg.pq import TransactionStatus

from .faults import UNUSABLE, UNWRITABLE, database_error
from .model import DatabaseError, StoreError, StoreOpenError, StoreUnreachable
from .schema import SCHEMA, SCHEMA_VERSION, postgres_ddl
from .sqlite import store_name as redact

__all__ = [
    "PgConnection",
    "PostgresEngine",
    "create_postgres",
    "open_postgres",
    "pg_sql",
    "redact",
    "refuse_tables",
]


WRITE_LOCK: Final = 0x5349474E4554  # "SIGNET": the advisory lock key of Store.transaction()
COMMIT_LOCK: Final = 0x5349474E4C47  # "SIGNLG": a gateway batch's global part (lock_commit)
DEVICE_LOCKS: Final = 0x5347  # the first key of a device's lock (two-key form), hashtext the second
LOCK_TIMEOUT: Final = "10s"  # as SQLite's busy_timeout: then an error (fault "unwritable")


@functools.lru_cache(maxsize=1024)
def pg_sql(sql: str) -> str:
    """SQLite's ``?`` placeholders as psycopg's ``%s``, and a literal ``%`` as ``%%``.

    Quoted text ('...', "...") and comments are copied as they are, but for ``%``: psycopg
    reads the whole text for placeholders, so a ``%`` anywhere must be doubled.
    """
    out: list[str] = []
    quote = ""  # the quote we are inside of, if any
    i, size = 0, len(sql)
    while i < size:
        c = sql[i]
        if c == "%":
            out.append("%%")
        elif quote:
            out.append(c)
            if c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
            out.append(c)
        elif c == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            end = size if end < 0 else end
            out.append(sql[i:end].replace("%", "%%"))
            i = end
            continue
        elif c == "?":
            out.append("%s")
        else:
            out.append(c)
        i += 1
    return "".join(out)


class _BoolAsInt(Dumper):
    """True/False as 1/0 in a BIGINT column: SQLite stores bools that way, and the store's
    flag columns (late, future, chain_break, flagged) are integers on both engines."""

    oid = psycopg.adapters.types["int8"].oid

    def dump(self, obj: bool) -> bytes:
        return b"1" if obj else b"0"


class _NumericAsNumber(Loader):
    """NUMERIC (what sum() of BIGINT gives) as int, or float when it has a fraction (avg):
    the Python types SQLite returns for the same query."""

    def load(self, data: Any) -> int | float:
        text = bytes(data).decode()
        return float(text) if any(c in text for c in ".eEN") else int(text)


class PostgresEngine:
    """What differs by engine, for one PostgreSQL connection (the SQLite one is
    sqlite.SqliteEngine)."""

    name: Final = "postgresql"
    # SQLite's BEGIN IMMEDIATE on PostgreSQL: READ COMMITTED, and one writing transaction at
    # a time per database (a transaction-level advisory lock, released at COMMIT/ROLLBACK),
    # so what a transaction read stays true until it commits (a challenge answered once, a
    # checkpoint following the last one, a batch of several gateway workers applied in one
    # commit order: docs/GATEWAY.md, Several workers).
    begin: Final = f"BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})"
    # A gateway writer's batch (several workers at once: docs/GATEWAY.md, Several writers):
    # the write lock shared (so a command's transaction still has the database to itself),
    # then its devices' locks (lock_devices: the batch's per-device work runs in parallel
    # with other workers' batches of other devices), then the commit lock for what is one
    # sequence for the whole database (lock_commit: the log, the quarantine's bound, the
    # findings of senders not locked, the generation), held to COMMIT.
    begin_batch: Final = f"BEGIN; SELECT pg_advisory_xact_lock_shared({WRITE_LOCK})"
    # Several processes write: each write transaction says so (generation.py).
    counts_generations: Final = True

    def __init__(self, conn: PgConnection) -> None:
        self.conn = conn

    def lock_devices(self, kids: Sequence[str]) -> None:
        """Take the transaction-level lock of each device, in one order every worker uses
        (the lock keys sorted), so two batches sharing devices wait for each other and never
        deadlock. A hash collision between two devices only makes them wait for each other."""
        if kids:
            self.conn.execute(
                f"SELECT count(pg_advisory_xact_lock({DEVICE_LOCKS}, k)) FROM"
                " (SELECT DISTINCT hashtext(kid) AS k FROM unnest(CAST(? AS text[])) AS kid"
                " ORDER BY k) AS locks",
                (list(kids),),
            )

    def lock_commit(self) -> None:
        self.conn.execute(f"SELECT pg_advisory_xact_lock({COMMIT_LOCK})")

    def size_bytes(self) -> int:
        return int(self.conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])

    def limit_size(self, max_mib: int | None) -> None:
        if max_mib is not None:
            raise StoreError(
                "store.max_size_mb is not supported on PostgreSQL: the server manages its"
                " own disk space"
            )

    def at_size_limit(self) -> bool:
        return False  # no cap (limit_size)

    def tables(self) -> set[str]:
        return {
            str(name)
            for (name,) in self.conn.execute(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = current_schema()"
            )
        }

    def location(self) -> str:
        return self.conn.where


class PgConnection:
    """The sqlite3.Connection calls the store uses, over one psycopg connection."""

    def __init__(self, url: str, *, readonly: bool = False) -> None:
        self.where = redact(url)  # what messages name it by: never the password
        self._url = url
        self._readonly = readonly
        self.reconnects = 0  # sessions opened again after one was lost (reconnect)
        self._conn = self._connect()

    def _connect(self) -> psycopg.Connection[Any]:
        """A new session with the store's settings; StoreUnreachable if the server cannot be
        reached now, StoreOpenError if it refused (a password, a database that is not there)."""
        try:
            conn = psycopg.connect(self._url, autocommit=True, connect_timeout=10)
        except (psycopg.Error, ValueError) as exc:  # ValueError: a URL libpq cannot parse
            said = self._scrub(_first_line(exc))
            error = StoreUnreachable if _unreachable(exc) else StoreOpenError
            raise error(f"cannot open database {self.where}: {said}") from None
        conn.adapters.register_dumper(bool, _BoolAsInt)
        conn.adapters.register_loader("numeric", _NumericAsNumber)
        try:
            conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'".encode())
            if self._readonly:
                conn.execute(b"SET default_transaction_read_only = on")
        except psycopg.Error as exc:  # lost at once: the server went away again
            with contextlib.suppress(psycopg.Error):
                conn.close()
            said = _first_line(exc)
            raise StoreUnreachable(f"cannot open database {self.where}: {said}") from None
        return conn

    def _scrub(self, text: str) -> str:
        """A libpq message that quotes part of the URL (a malformed one), without the
        password in it, as written or decoded."""
        try:
            password = urllib.parse.urlsplit(self._url).password
        except ValueError:
            return text if self._url not in text else text.replace(self._url, self.where)
        for form in {password, urllib.parse.unquote(password or "")}:
            if form:
                text = text.replace(form, "***")
        return text

    def _error(self, exc: psycopg.Error) -> DatabaseError:
        """The store's DatabaseError for psycopg's; whatever it says, a statement that found
        the session lost is an outage (``unwritable``): reconnect() may cure it."""
        error = database_error(exc, self.where)
        if self._conn.broken:
            error.fault = UNWRITABLE
        return error

    @property
    def lost(self) -> bool:
        """The session is gone (the server restarted or stopped, the network failed): every
        statement fails until reconnect()."""
        return self._conn.broken

    def reconnect(self) -> None:
        """A new session in place of a lost one: the same URL and session settings (lock
        timeout, read-only). DatabaseError ``unwritable`` if the server cannot be reached
        now, ``unusable`` if it refuses this gateway (its password, the database gone).
        Whatever the caller kept of the old session (a transaction, caches of what it read)
        is its own to drop."""
        with contextlib.suppress(psycopg.Error):
            self._conn.close()
        try:
            self._conn = self._connect()
        except StoreOpenError as exc:
            fault = UNWRITABLE if isinstance(exc, StoreUnreachable) else UNUSABLE
            raise DatabaseError(str(exc), fault) from None
        self.reconnects += 1

    def execute(self, sql: str, params: Sequence[Any] | None = ()) -> psycopg.Cursor[Any]:
        try:
            cursor = self._conn.cursor()  # fails too when the session is lost
            if params:
                cursor.execute(pg_sql(sql), params)  # type: ignore[call-overload]
            else:  # sent as written: no placeholders, a literal % stays one
                cursor.execute(sql.encode())
        except psycopg.Error as exc:
            raise self._error(exc) from exc
        return cursor

    def executemany(self, sql: str, seq: Iterable[Sequence[Any]]) -> psycopg.Cursor[Any]:
        rows = list(seq)
        try:
            cursor = self._conn.cursor()
            if rows:
                cursor.executemany(pg_sql(sql), rows)  # type: ignore[arg-type]
        except psycopg.Error as exc:
            raise self._error(exc) from exc
        return cursor

    def executescript(self, script: str) -> None:
        """Several statements without parameters, in one round trip."""
        self.execute(script)

    @property
    def in_transaction(self) -> bool:
        """A transaction is open on the session (False once the session is lost: whatever
        it held is gone, there is nothing to roll back)."""
        return self._conn.info.transaction_status in _IN_TRANSACTION

    def copy_rows(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """COPY rows into a table (db copy): much faster than INSERTs for a whole store."""
        names = ", ".join(f'"{c}"' for c in columns)
        try:
            with self._conn.cursor().copy(f'COPY "{table}" ({names}) FROM STDIN'.encode()) as copy:
                for row in rows:
                    copy.write_row(row)
        except psycopg.Error as exc:
            raise self._error(exc) from exc

    def engine(self) -> PostgresEngine:
        return PostgresEngine(self)

    def close(self) -> None:
        self._conn.close()

    @property
    def closed(self) -> bool:
        return self._conn.closed


_IN_TRANSACTION: Final = frozenset(
    {TransactionStatus.ACTIVE, TransactionStatus.INTRANS, TransactionStatus.INERROR}
)
# What a server or libpq says when it refuses a connection for good (until someone changes a
# setting): the password or the method, the role or the database, the URL itself. Anything
# else (refused at the port, a timeout, the server starting or shutting down, out of
# connection slots, a name lookup failing) may pass by itself: StoreUnreachable.
_REFUSED_FOR_GOOD: Final = (
    "authentication failed",
    "no pg_hba.conf entry",
    "does not exist",
    "permission denied",
    "invalid ",
    "unsupported",
    'missing "="',
)


def _unreachable(exc: BaseException) -> bool:
    """A connection that failed for now, not for good (_REFUSED_FOR_GOOD)."""
    if not isinstance(exc, psycopg.OperationalError):
        return False  # ValueError, ProgrammingError: the URL itself
    text = str(exc).lower()
    return not any(said in text for said in _REFUSED_FOR_GOOD)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def open_postgres(url: str, *, readonly: bool = False, any_version: bool = False) -> PgConnection:
    """A connection to a Signet gateway database on PostgreSQL, checked as sqlite.connect
    checks a file: StoreOpenError if it is not one, or of another schema version (unless
    ``any_version``)."""
    conn = PgConnection(url, readonly=readonly)
    try:
        version = schema_version(conn)
    except BaseException:
        conn.close()
        raise
    if version is None:
        conn.close()
        raise StoreOpenError(
            f"{conn.where} is not a Signet gateway database (no meta table): create one"
            " in an empty database with `signet db init`"
        )
    if version != SCHEMA_VERSION and not any_version:
        conn.close()
        raise StoreOpenError(
            f"database {conn.where} has schema version {version}, this version of Signet"
            f" needs {SCHEMA_VERSION}"
        )
    return conn


def schema_version(conn: PgConnection) -> str | None:
    """meta's schema version; None when there is no meta table (not a gateway database)."""
    if "meta" not in conn.engine().tables():
        return None
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    return None if row is None else str(row[0])


def refuse_tables(conn: PgConnection, advice: str) -> None:
    """StoreError naming the tables the database at ``conn`` holds, if any, and ``advice``:
    the gateway's tables are only ever made in an empty database."""
    held = sorted(conn.engine().tables())
    if held:
        listed = ", ".join(held[:5]) + (" ..." if len(held) > 5 else "")
        raise StoreError(f"{conn.where} is not empty (tables: {listed}): {advice}")


def create_postgres(url: str) -> None:
    """The gateway's tables (schema.py, in PostgreSQL's types) in an empty database, in one
    transaction; StoreError if the database has tables already."""
    conn = PgConnection(url)
    try:
        refuse_tables(conn, "a new gateway database is made only in an empty database")
        conn.execute("BEGIN")
        try:
            conn.executescript(postgres_ddl(SCHEMA))
            conn.execute("INSERT INTO meta (key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        conn.close()
