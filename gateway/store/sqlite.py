"""The gateway's SQLite store: devices, records, findings, sequence state, quarantine.

Durability: WAL journal with ``synchronous=FULL``. In WAL mode, FULL makes every
COMMIT fsync the WAL before returning, so a committed transaction survives a
process kill (-9) *and* a power loss. NORMAL would survive kill -9 (the WAL is
in the OS page cache) but not power loss: the last transactions could vanish
after their records had been acknowledged and pruned from the device's journal
- exactly the loss Signet exists to prevent. The cost is one fsync per
transaction, which the ingest pipeline amortises by committing records in
batches (see ingest/writer.py). An ack is published only after COMMIT returned.

Tables: see schema.py.

The same Store runs on PostgreSQL (``Store("postgresql://...")``, pg_connection.py): its
queries are one SQL text each that both engines accept, and what differs (how a
transaction begins, the size cap, the list of tables) is an engine's method: SqliteEngine
here, pg_connection.PostgresEngine there.
"""

from __future__ import annotations

import json
import os
import shlex
import sqlite3
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

from signet_gateway.verify.payload_schema import decode_payload
from signet_gateway.verify.pubkeys import DevicePublicKey

from .generation import BUMP as BUMP_GENERATION
from .generation import keys_changed
from .key_groups import groups, marks
from .lookup import resolve
from .model import (
    Device,
    EvidenceLike,
    QuarantineRow,
    StoredRecord,
    StoreError,
    StoreOpenError,
    iso_ms,
    now_ms,
)
from .schema import SCHEMA, SCHEMA_VERSION, TIERS

__all__ = ["SqliteEngine", "Store", "connect", "engine_of", "is_url", "store_name"]

DAY_MS: Final = 86_400_000
URL_SCHEMES: Final = ("postgresql://", "postgres://")


def is_url(where: Path | str) -> bool:
    """A PostgreSQL URL ([store] url) rather than a SQLite file's path."""
    return isinstance(where, str) and where.startswith(URL_SCHEMES)


def store_name(where: Path | str) -> str:
    """How messages name a store: the file's path, or the URL without its password (as
    ``***``, given in the user part or as a ``password`` parameter). What every message,
    log line and status names a PostgreSQL store by: the URL itself is only connected with."""
    if not is_url(where):
        return str(where)
    text = str(where)
    try:
        parts = urllib.parse.urlsplit(text)
    except ValueError:  # not a URL this parser reads (libpq may): name only its scheme
        return text.split("//", 1)[0] + "//***"
    user, at, host = parts.netloc.rpartition("@")
    if ":" in user:
        user = user.split(":", 1)[0] + ":***"
    netloc = f"{user}{at}{host}"
    query = "&".join(
        "password=***" if item.split("=", 1)[0].lower() == "password" else item
        for item in parts.query.split("&")
    )
    if netloc == parts.netloc and query == parts.query:
        return text
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query))


class SqliteEngine:
    """What differs by engine, for one SQLite connection (the PostgreSQL one is
    pg_connection.PostgresEngine): the only place the Store uses PRAGMAs."""

    name: Final = "sqlite"
    # IMMEDIATE: the write lock at BEGIN, so what a transaction read stays true until COMMIT.
    begin: Final = "BEGIN IMMEDIATE"
    # A gateway writer's batch: the same (one writer at a time per file); no device locks, no
    # separate commit lock (pg_connection.PostgresEngine for what they are).
    begin_batch: Final = "BEGIN IMMEDIATE"
    # One gateway process per file (ingest/instance_lock.py): no write generation (generation.py).
    counts_generations: Final = False

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._default_pages: int | None = None  # SQLite's own limit, to lift a cap again

    def lock_devices(self, kids: Sequence[str]) -> None:
        """(PostgreSQL: the devices' locks. SQLite's BEGIN IMMEDIATE holds the whole file.)"""

    def lock_commit(self) -> None:
        """(PostgreSQL: the commit lock. SQLite's BEGIN IMMEDIATE holds the whole file.)"""

    def size_bytes(self) -> int:
        """Pages times page size (the -wal file not counted)."""
        count = int(self.conn.execute("PRAGMA page_count").fetchone()[0])
        return count * int(self.conn.execute("PRAGMA page_size").fetchone()[0])

    def limit_size(self, max_mib: int | None) -> None:
        """PRAGMA max_page_count for this connection (see Store.limit_size)."""
        if self._default_pages is None:
            self._default_pages = int(self.conn.execute("PRAGMA max_page_count").fetchone()[0])
        if max_mib is None:
            pages = self._default_pages
        else:
            page_size = int(self.conn.execute("PRAGMA page_size").fetchone()[0])
            pages = max_mib * 1024 * 1024 // page_size
        self.conn.execute(f"PRAGMA max_page_count = {int(pages)}")

    def at_size_limit(self) -> bool:
        conn = self.conn
        used = int(conn.execute("PRAGMA page_count").fetchone()[0]) - int(
            conn.execute("PRAGMA freelist_count").fetchone()[0]
        )
        return used >= int(conn.execute("PRAGMA max_page_count").fetchone()[0])

    def tables(self) -> set[str]:
        return {
            name
            for (name,) in self.conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        }

    def location(self) -> Path:
        return Path(self.conn.execute("PRAGMA database_list").fetchone()[2])


def engine_of(conn: Any) -> Any:
    """The engine of a connection the store was handed (Store.over)."""
    if isinstance(conn, sqlite3.Connection):
        return SqliteEngine(conn)
    return conn.engine()  # pg_connection.PgConnection


def connect(
    path: Path | str, *, readonly: bool = False, new: bool = False, any_version: bool = False
) -> sqlite3.Connection:
    """Open the database with the gateway's pragmas (autocommit mode: explicit BEGIN/COMMIT).

    The file must exist: SQLite would otherwise create an empty database at any mistyped
    path (Store.create is the one way to make one). Unless ``new`` (the empty file
    Store.create just made), it must be a Signet gateway database: checked before the first
    write, so opening some other file changes nothing in it. StoreOpenError otherwise, also
    for a database of an older schema version (unless ``any_version``: the migration's own
    connection), naming the command that migrates it.
    """
    path = Path(path)
    mode = "ro" if readonly else "rw"
    # A URI so that SQLite itself refuses a missing file; quoted, so '?', '#' or '%' in a
    # file name stay part of the name.
    uri = f"file:{urllib.parse.quote(str(path.absolute()))}?mode={mode}"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise StoreOpenError(f"cannot open database {path}: {exc}") from None
    conn.execute("PRAGMA busy_timeout = 10000")
    if not new:
        try:
            schema = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        except sqlite3.DatabaseError:
            schema = None  # no meta table: not ours (or not a database at all)
        if schema is None:
            conn.close()
            raise StoreOpenError(f"{path} is not a Signet gateway database")
        if schema[0] != SCHEMA_VERSION and not any_version:
            conn.close()
            raise StoreOpenError(
                f"database {path} has schema version {schema[0]}, this version of Signet needs"
                f" {SCHEMA_VERSION}: migrate it with `signet db migrate --db"
                f" {shlex.quote(str(path))}` (a backup first is wise)"
            )
    if not readonly:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StoreError(f"database {path}: cannot switch to WAL mode (got {mode})")
    # FULL: a COMMIT has reached the disk when it returns (see the module docstring).
    conn.execute("PRAGMA synchronous = FULL")
    if not readonly:
        # Fewer, larger checkpoints (each one copies pages back and fsyncs the database file):
        # measured +7 % drain rate over the default 1000 pages. Durability is unchanged (every
        # COMMIT still fsyncs the WAL); the WAL file grows to ~16 MiB between checkpoints.
        conn.execute("PRAGMA wal_autocheckpoint = 4000")
    conn.execute("PRAGMA foreign_keys = OFF")
    return conn


class Store:
    """One connection to the gateway database. Not shared between threads."""

    def __init__(self, where: Path | str, *, readonly: bool = False) -> None:
        """Open an existing gateway database (Store.create makes a new one): a SQLite file's
        path, or a ``postgresql://`` URL ([store] url). The one way to open a store.

        StoreOpenError if there is no such database or it is not a Signet gateway database.
        """
        self.conn: Any
        if is_url(where):
            from .pg_connection import open_postgres

            self.conn = open_postgres(str(where), readonly=readonly)
            # Named, never holding the password: the connection keeps the URL it needs.
            self.path: Path | str = self.conn.where
        else:
            self.path = Path(where)
            if not self.path.exists():
                raise StoreOpenError(
                    f"database {self.path} does not exist: create it with"
                    f" `signet db init --db {shlex.quote(str(self.path))}`"
                )
            self.conn = connect(self.path, readonly=readonly)
        self.engine = engine_of(self.conn)

    @classmethod
    def create(cls, where: Path | str) -> Store:
        """Make a new, empty gateway database and open it (`signet db init`): a SQLite file
        at a path, or the schema in an empty PostgreSQL database at a URL.

        Refuses a path that exists, a directory that does not, and a PostgreSQL database
        that has tables: creating is always asked for explicitly, so nothing is made or
        overwritten by mistake.
        """
        if is_url(where):
            from .pg_connection import create_postgres

            create_postgres(str(where))
            return cls(where)
        path = Path(where)
        exists = StoreError(
            f"{path} already exists: a new database is made only where there is none"
        )
        if path.exists():
            raise exists
        if not path.parent.is_dir():
            raise StoreError(
                f"cannot create database {path}: directory {path.parent} does not exist"
            )
        for leftover in (Path(f"{path}-wal"), Path(f"{path}-shm")):
            if leftover.exists():  # SQLite would take a stale WAL for the new database's
                raise StoreError(f"cannot create database {path}: {leftover} is in the way")
        try:  # O_EXCL: of two creators at once, one is refused
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            raise exists from None
        except OSError as exc:
            raise StoreError(f"cannot create database {path}: {exc.strerror}") from None
        try:
            conn = connect(path, new=True)
            try:
                conn.executescript(SCHEMA)
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,)
                )
            finally:
                conn.close()
        except BaseException:
            for made in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                made.unlink(missing_ok=True)
            raise
        return cls(path)

    @classmethod
    def over(cls, conn: Any) -> Store:
        """The store's queries on a connection its caller opened and will close (the
        writer's, inside its open transaction; a report's): no second connection."""
        store = cls.__new__(cls)
        store.conn = conn
        store.engine = engine_of(conn)
        store.path = store.engine.location()
        return store

    def close(self) -> None:
        self.conn.close()

    # -- size ------------------------------------------------------------------------------

    def limit_size(self, max_mib: int | None) -> None:
        """Cap the database file at ``max_mib`` MiB for this connection's writes (``[store]
        max_size_mb``); None lifts the cap. A write that would grow the database past it
        fails with SQLITE_FULL, as on a full disk (faults.py). SQLite never sets the cap
        below the current size: a database already over it takes no new pages at all.
        SQLite only: on PostgreSQL a cap is refused (StoreError), None is accepted."""
        self.engine.limit_size(max_mib)

    def at_size_limit(self) -> bool:
        """The database's pages in use fill its cap (limit_size): no room to write.

        Free pages inside the file (left by deleted rows) are reused before the file grows,
        so a file at its cap with free pages still takes writes. Always False on
        PostgreSQL (no cap)."""
        return bool(self.engine.at_size_limit())

    def size_bytes(self) -> int:
        """The database's size: SQLite's pages times page size (the -wal file not
        counted); PostgreSQL's pg_database_size."""
        return int(self.engine.size_bytes())

    def tables(self) -> set[str]:
        """The names of the database's tables (the aggregator's too, once it made them)."""
        return set(self.engine.tables())

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- devices -------------------------------------------------------------------------

    def enroll(
        self,
        key: DevicePublicKey,
        tier: str,
        *,
        name: str | None = None,
        evidence: EvidenceLike | None = None,
        enrolled_ms: int | None = None,
    ) -> Device:
        """Add a device key as a machine of its own, in one transaction (see add_device)."""
        with self.transaction():
            self.add_device(key, tier, name=name, evidence=evidence, enrolled_ms=enrolled_ms)
        return self._existing(key.device_id)

    def add_device(
        self,
        key: DevicePublicKey,
        tier: str,
        *,
        name: str | None = None,
        evidence: EvidenceLike | None = None,
        enrolled_ms: int | None = None,
        challenge: bytes | None = None,
        rotate_from: str | None = None,
        last_n: int | None = None,
    ) -> None:
        """Insert a device key inside the caller's write transaction (``transaction()``), so
        that what was checked before it in that transaction (the evidence's challenge) still
        holds when it commits.

        The hardware tier needs ``evidence`` that verified (gateway/trust's VerifiedEvidence:
        kind, summary, raw bytes); the table's CHECK refuses a hardware row without its kind,
        whatever writes it. A kid is enrolled at most once (a revoked key stays revoked:
        re-enrolling it would undo the revocation); a name is carried by at most one active
        device (lookup.py: a name must say which device).

        ``challenge``: the nonce the evidence answered (check_challenge), marked used here:
        of two enrollments racing on one challenge, the second finds it used.
        ``rotate_from``, ``last_n``: this key replaces that device's key (docs/TRUST.md,
        Rotation): it joins that key's machine and inherits its name unless given one, and
        the old key's records above ``last_n`` are refused from now on.
        """
        if tier not in TIERS:
            raise StoreError(f"tier must be 'software' or 'hardware', got {tier!r}")
        if isinstance(evidence, (bytes, bytearray)):  # the version-1 API: unchecked bytes
            raise StoreError(
                "evidence must be what gateway/trust verified (VerifiedEvidence), not bytes:"
                " enroll hardware through gateway/store/admission.py"
            )
        if tier == "hardware" and (evidence is None or not evidence.raw):
            raise StoreError(
                "tier 'hardware' needs evidence that verified (--evidence FILE: a secure"
                " element's certificate chain, a TPM2_Certify or a line statement)"
            )
        if name is not None and not name.strip():
            raise StoreError("a device name must not be empty (leave --name out instead)")
        when = now_ms() if enrolled_ms is None else enrolled_ms
        existing = self.device(key.device_id)
        if existing is not None:
            state = "revoked" if existing.revoked_ms is not None else "enrolled"
            raise StoreError(f"device {key.device_id} is already {state}")
        machine = key.device_id
        replaces = None
        if rotate_from is not None:
            old = self._rotatable(rotate_from, last_n, when)
            self.conn.execute("UPDATE devices SET last_n = ? WHERE kid = ?", (last_n, old.kid))
            machine, replaces = old.machine, old.kid
            name = old.name if name is None else name
        holder = self._active_named(name, when)
        if holder is not None:
            raise StoreError(
                f"the name {name!r} is taken by active device {holder}: names are unique"
                " among active devices (revoke that one first if this device replaces it)"
            )
        if challenge is not None:
            used = self.conn.execute(
                "UPDATE challenges SET used_ms = ?, used_by = ?"
                " WHERE nonce = ? AND used_ms IS NULL",
                (when, key.device_id, challenge),
            )
            if used.rowcount != 1:  # check_challenge passed in this transaction: a bug if so
                raise StoreError(f"challenge {challenge.hex()} is not open")
        self.conn.execute(
            "INSERT INTO devices (kid, public_key, curve, tier, name, evidence, evidence_kind,"
            " evidence_summary, enrolled_ms, machine, replaces)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key.device_id,
                key.compressed,
                key.curve,
                tier,
                name,
                None if evidence is None else evidence.raw,
                None if evidence is None else evidence.kind,
                None if evidence is None else json.dumps(evidence.summary, sort_keys=True),
                when,
                machine,
                replaces,
            ),
        )
        keys_changed(self.conn)  # the workers reload their keys (generation.py)

    def _rotatable(self, kid: str, last_n: int | None, at_ms: int) -> Device:
        """The device a rotation replaces, if it may be: enrolled, not revoked, not rotated
        already, and no record of it stored above the statement's last n."""
        old = self.device(kid)
        if old is None:
            raise StoreError(f"no device {kid} is enrolled")
        if last_n is None or last_n < 0:
            raise StoreError("a rotation needs the old key's last sequence number (>= 0)")
        if old.revoked_at(at_ms):
            raise StoreError(f"device {kid} is revoked: a revoked key cannot hand over")
        if old.last_n is not None:
            raise StoreError(
                f"device {kid} was already rotated (its last n is {old.last_n}):"
                " rotate from its newest key"
            )
        highest = self.highest(kid)
        if highest > last_n:
            raise StoreError(
                f"the gateway already stored record n={highest} of device {kid}, above the"
                f" rotation statement's last n={last_n}: the statement does not cover"
                " everything the old key signed"
            )
        return old

    def revoke(self, device_id: str, at_ms: int | None = None) -> Device:
        """Revoke a key at ``at_ms`` (default: now): records received at or after that moment
        are refused 'revoked', those received before stay counted. A moment ahead schedules
        it (and may be moved while it is ahead); a moment in the past is refused: records
        received since are already stored and counted. "Now" is read inside the write
        transaction, so every record the gateway committed before is older than it."""
        with self.transaction():
            device = self.device(device_id)
            if device is None:
                raise StoreError(f"no device {device_id} is enrolled")
            now = now_ms()
            if device.revoked_at(now):
                raise StoreError(f"device {device.kid} is already revoked")
            when = now if at_ms is None else at_ms
            if when < now:
                raise StoreError(
                    f"the moment {iso_ms(when)} is in the past (now {iso_ms(now)}): records"
                    " received since then are stored and stay counted; revoke --at now or"
                    " at a later moment"
                )
            self.conn.execute("UPDATE devices SET revoked_ms = ? WHERE kid = ?", (when, device.kid))
            keys_changed(self.conn)
        return self._existing(device.kid)

    # -- challenges ------------------------------------------------------------------------

    def issue_challenge(self, ttl_ms: int, issued_ms: int | None = None) -> tuple[bytes, int]:
        """A fresh 32-byte challenge (os.urandom), open for ``ttl_ms``: (nonce, expires_ms).
        Unused challenges that expired over a day ago are deleted (the table stays small;
        used ones stay, naming the enrollment they served)."""
        if ttl_ms <= 0:
            raise StoreError(f"a challenge's time to live must be positive, got {ttl_ms} ms")
        now = now_ms() if issued_ms is None else issued_ms
        nonce = os.urandom(32)
        with self.transaction():
            self.conn.execute(
                "DELETE FROM challenges WHERE used_ms IS NULL AND expires_ms < ?", (now - DAY_MS,)
            )
            self.conn.execute(
                "INSERT INTO challenges (nonce, issued_ms, expires_ms) VALUES (?, ?, ?)",
                (nonce, now, now + ttl_ms),
            )
        return nonce, now + ttl_ms

    def check_challenge(self, nonce: bytes, at_ms: int | None = None) -> str | None:
        """None if ``nonce`` is an issued challenge, unexpired and unused; otherwise the reason
        code (docs/TRUST.md): challenge_unknown, challenge_expired or challenge_replayed. Call
        it in the enrollment's transaction (add_device marks it used there)."""
        row = self.conn.execute(
            "SELECT expires_ms, used_ms FROM challenges WHERE nonce = ?", (bytes(nonce),)
        ).fetchone()
        if row is None:
            return "challenge_unknown"
        if row[1] is not None:
            return "challenge_replayed"
        if (now_ms() if at_ms is None else at_ms) >= row[0]:
            return "challenge_expired"
        return None

    def challenge(self, nonce: bytes) -> tuple[int, int, int | None, str | None] | None:
        """(issued_ms, expires_ms, used_ms, used_by) of a challenge, or None."""
        row = self.conn.execute(
            "SELECT issued_ms, expires_ms, used_ms, used_by FROM challenges WHERE nonce = ?",
            (bytes(nonce),),
        ).fetchone()
        return None if row is None else tuple(row)  # type: ignore[return-value]

    # -- reading devices -------------------------------------------------------------------

    def device(self, device_id: str) -> Device | None:
        row = self.conn.execute(
            f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE kid = ?", (device_id.lower(),)
        ).fetchone()
        return None if row is None else _device(row)

    def _existing(self, device_id: str) -> Device:
        device = self.device(device_id)
        assert device is not None
        return device

    def resolve_device(self, wanted: str) -> Device:
        """The one device a device id, id prefix (>= 8 hex digits) or name names;
        DeviceLookupError, listing the candidates, if none or several do (lookup.py)."""
        return resolve(self.devices(), wanted)

    def _active_named(self, name: str | None, at_ms: int) -> str | None:
        if name is None:
            return None
        row = self.conn.execute(
            "SELECT kid FROM devices WHERE name = ? AND (revoked_ms IS NULL OR revoked_ms > ?)"
            " AND last_n IS NULL LIMIT 1",
            (name, at_ms),
        ).fetchone()
        return None if row is None else str(row[0])

    def devices(self) -> list[Device]:
        rows = self.conn.execute(
            f"SELECT {_DEVICE_COLUMNS} FROM devices ORDER BY enrolled_ms, kid"
        ).fetchall()
        return [_device(row) for row in rows]

    def machine_keys(self, machine: str) -> list[Device]:
        """Every key of one machine (its first key's device id), oldest first."""
        rows = self.conn.execute(
            f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE machine = ? ORDER BY enrolled_ms, kid",
            (machine,),
        ).fetchall()
        return [_device(row) for row in rows]

    def active_keys(self) -> dict[bytes, DevicePublicKey]:
        """kid -> key for every enrolled device not revoked now (rotated keys included: their
        records up to their last n stay valid)."""
        return self._keys("WHERE revoked_ms IS NULL OR revoked_ms > ?", (now_ms(),))

    def all_keys(self) -> dict[bytes, DevicePublicKey]:
        """kid -> key for every enrolled device, revoked ones too: the gateway verifies their
        records and refuses them by receive time ('revoked') or n ('rotated'), key_limits."""
        return self._keys("", ())

    def _keys(self, where: str, args: tuple[Any, ...]) -> dict[bytes, DevicePublicKey]:
        keys: dict[bytes, DevicePublicKey] = {}
        for pub, curve in self.conn.execute(f"SELECT public_key, curve FROM devices {where}", args):
            key = DevicePublicKey.from_sec1(pub, curve)
            keys[key.kid] = key
        return keys

    def key_limits(self) -> dict[str, tuple[int | None, int | None]]:
        """kid -> (revoked_ms, last_n) of every key with either set: the writer refuses its
        records received at or after revoked_ms, and those numbered above last_n."""
        return {
            kid: (revoked_ms, last_n)
            for kid, revoked_ms, last_n in self.conn.execute(
                "SELECT kid, revoked_ms, last_n FROM devices"
                " WHERE revoked_ms IS NOT NULL OR last_n IS NOT NULL"
            )
        }

    def revoked_ids(self) -> set[str]:
        """Devices revoked now (a revocation scheduled ahead is not yet)."""
        return {
            kid
            for (kid,) in self.conn.execute(
                "SELECT kid FROM devices WHERE revoked_ms <= ?", (now_ms(),)
            )
        }

    # -- records and sequence state ----------------------------------------------------------

    def record(self, device_id: str, n: int) -> StoredRecord | None:
        row = self.conn.execute(
            "SELECT kid, n, kind, b, u, t, payload, raw, received_ms, late, future"
            " FROM records WHERE kid = ? AND n = ?",
            (device_id, n),
        ).fetchone()
        return None if row is None else _stored(row)

    def records(self, device_id: str | None = None, *, after_n: int = 0) -> Iterator[StoredRecord]:
        """Stored records in (kid, n) order; one device's with n > after_n if device_id given."""
        cols = "kid, n, kind, b, u, t, payload, raw, received_ms, late, future"
        if device_id is None:
            cur = self.conn.execute(f"SELECT {cols} FROM records ORDER BY kid, n")
        else:
            cur = self.conn.execute(
                f"SELECT {cols} FROM records WHERE kid = ? AND n > ? ORDER BY n",
                (device_id, after_n),
            )
        for row in cur:
            yield _stored(row)

    def payload(self, device_id: str, n: int) -> bytes | None:
        """The signed payload bytes of one stored record, undecoded (for hashing, comparing)."""
        row = self.conn.execute(
            "SELECT payload FROM records WHERE kid = ? AND n = ?", (device_id, n)
        ).fetchone()
        return None if row is None else row[0]  # type: ignore[no-any-return]

    def record_count(self, device_id: str | None = None) -> int:
        if device_id is None:
            return int(self.conn.execute("SELECT count(*) FROM records").fetchone()[0])
        return int(
            self.conn.execute(
                "SELECT count(*) FROM records WHERE kid = ?", (device_id,)
            ).fetchone()[0]
        )

    def chain_break_ns(self, device_id: str) -> list[int]:
        """Sequence numbers of records whose link to their predecessor is broken."""
        return [
            n
            for (n,) in self.conn.execute(
                "SELECT n FROM records WHERE kid = ? AND chain_break = 1 ORDER BY n", (device_id,)
            )
        ]

    def seq_state(self, device_id: str) -> tuple[int, int, int, int]:
        """(ack, highest, stored, unused) of a device; zeros before its first record."""
        row = self.conn.execute(
            "SELECT ack, highest, stored, unused FROM seqstate WHERE kid = ?", (device_id,)
        ).fetchone()
        return (0, 0, 0, 0) if row is None else tuple(row)  # type: ignore[return-value]

    def seq_states(
        self, device_ids: Sequence[str]
    ) -> dict[str, tuple[int, int, int, int, bytes | None]]:
        """kid -> (ack, highest, stored, unused, payload of the highest record) of each device
        that has stored anything (seq_state for many devices at once: key_groups.py)."""
        out: dict[str, tuple[int, int, int, int, bytes | None]] = {}
        for group in groups(device_ids):
            for kid, ack, highest, stored, unused, head in self.conn.execute(
                "SELECT s.kid, s.ack, s.highest, s.stored, s.unused, r.payload FROM seqstate s"
                " LEFT JOIN records r ON r.kid = s.kid AND r.n = s.highest"
                f" WHERE s.kid IN ({marks(len(group))})",
                group,
            ):
                out[kid] = (ack, highest, stored, unused, None if head is None else bytes(head))
        return out

    def unused_above_ack(self, device_ids: Sequence[str]) -> dict[str, list[tuple[int, int]]]:
        """kid -> its ranges declared never used that reach above its ack, in order
        (unused_ranges(kid, above=ack) for many devices at once: key_groups.py)."""
        out: dict[str, list[tuple[int, int]]] = {}
        for group in groups(device_ids):
            for kid, lo, hi in self.conn.execute(
                "SELECT u.kid, u.lo, u.hi FROM unused u LEFT JOIN seqstate s ON s.kid = u.kid"
                f" WHERE u.kid IN ({marks(len(group))}) AND u.hi > COALESCE(s.ack, 0)"
                " ORDER BY u.kid, u.lo",
                group,
            ):
                out.setdefault(kid, []).append((lo, hi))
        return out

    def ack(self, device_id: str) -> int:
        """ack(K) (PROTOCOL 6.5): every n in 1..ack is stored or declared unused."""
        return self.seq_state(device_id)[0]

    def highest(self, device_id: str) -> int:
        return self.seq_state(device_id)[1]

    def missing(self, device_id: str) -> int:
        """Sequence numbers below the highest stored one that are neither stored nor declared
        unused by a boot record: records the gateway has not (yet) received."""
        _ack, highest, stored, unused = self.seq_state(device_id)
        return highest - stored - unused

    def acks(self) -> dict[str, int]:
        return dict(self.conn.execute("SELECT kid, ack FROM seqstate WHERE ack > 0").fetchall())

    def unused_ranges(self, device_id: str, above: int = 0) -> list[tuple[int, int]]:
        """Ranges declared never used, in order; only those reaching above ``above``."""
        return [
            (lo, hi)
            for lo, hi in self.conn.execute(
                "SELECT lo, hi FROM unused WHERE kid = ? AND hi > ? ORDER BY lo",
                (device_id, above),
            )
        ]

    # -- findings, evidence, quarantine --------------------------------------------------------

    def findings(
        self, device_id: str | None = None, day_from: str | None = None, day_to: str | None = None
    ) -> dict[str, int]:
        """Finding -> count, summed over days (inclusive 'YYYY-MM-DD' bounds) and devices."""
        sql = "SELECT finding, sum(count) FROM findings WHERE TRUE"
        args: list[Any] = []
        if device_id is not None:
            sql += " AND kid = ?"
            args.append(device_id)
        if day_from is not None:
            sql += " AND day >= ?"
            args.append(day_from)
        if day_to is not None:
            sql += " AND day <= ?"
            args.append(day_to)
        sql += " GROUP BY finding ORDER BY finding"
        return {f: int(c) for f, c in self.conn.execute(sql, args)}

    def evidence(self, device_id: str) -> list[tuple[int, bytes, bytes]]:
        """(n, payload bytes, raw record) of every equivocating record kept for a device."""
        return [
            (n, payload, raw)
            for n, payload, raw in self.conn.execute(
                "SELECT n, payload, raw FROM evidence WHERE kid = ? ORDER BY n, received_ms",
                (device_id,),
            )
        ]

    def quarantine(self, limit: int = 100) -> list[QuarantineRow]:
        """The newest quarantined items first."""
        return [
            QuarantineRow(*row)
            for row in self.conn.execute(
                "SELECT id, received_ms, topic, kid, reason, detail, size, raw FROM quarantine"
                " ORDER BY id DESC LIMIT ?",
                (limit,),
            )
        ]

    def quarantine_count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM quarantine").fetchone()[0])

    # -- transactions ----------------------------------------------------------------------------

    def transaction(self) -> _Transaction:
        """BEGIN ... COMMIT, ROLLBACK on an exception, with the database's write lock from
        the start. SQLite: BEGIN IMMEDIATE. PostgreSQL: BEGIN (READ COMMITTED) and one
        advisory lock for the whole database (pg_connection.PostgresEngine.begin): the same
        one-writer-at-a-time semantics, which several gateway workers on one database rely
        on; there every write transaction also bumps the write generation (generation.py)."""
        return _Transaction(self.conn, self.engine.begin, self.engine.counts_generations)


class _Transaction:
    def __init__(self, conn: Any, begin: str, counts_generations: bool) -> None:
        self.conn = conn
        self.begin = begin
        self.counts_generations = counts_generations

    def __enter__(self) -> Any:
        self.conn.execute(self.begin)
        if self.counts_generations:  # PostgreSQL: tell the gateway workers (generation.py)
            try:
                self.conn.execute(BUMP_GENERATION)
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
        return self.conn

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        elif self.conn.in_transaction:  # SQLite may have rolled back by itself (SQLITE_FULL)
            self.conn.execute("ROLLBACK")


_DEVICE_COLUMNS: Final = (
    "kid, public_key, curve, tier, name, evidence, enrolled_ms, revoked_ms, flagged,"
    " evidence_kind, evidence_summary, machine, replaces, last_n"
)


def _device(row: tuple[Any, ...]) -> Device:
    summary = row[10]
    return Device(
        *row[:8],
        flagged=bool(row[8]),
        evidence_kind=row[9],
        evidence_summary=None if summary is None else json.loads(summary),
        machine=row[11],
        replaces=row[12],
        last_n=row[13],
    )


def _stored(row: tuple[Any, ...]) -> StoredRecord:
    kid, n, kind, b, u, t, payload, raw, received_ms, late, future = row
    return StoredRecord(
        kid=kid,
        n=n,
        kind=kind,
        b=b,
        u=u,
        t=t,
        payload=decode_payload(payload),
        raw=raw,
        received_ms=received_ms,
        late=bool(late),
        future=bool(future),
    )
