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
"""

from __future__ import annotations

import os
import shlex
import sqlite3
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from signet_gateway.verify.payload_schema import decode_payload
from signet_gateway.verify.pubkeys import DevicePublicKey

from .lookup import resolve
from .model import Device, QuarantineRow, StoredRecord, StoreError, StoreOpenError, now_ms
from .schema import SCHEMA, SCHEMA_VERSION, TIERS

__all__ = ["Store", "connect"]


def connect(path: Path | str, *, readonly: bool = False, new: bool = False) -> sqlite3.Connection:
    """Open the database with the gateway's pragmas (autocommit mode: explicit BEGIN/COMMIT).

    The file must exist: SQLite would otherwise create an empty database at any mistyped
    path (Store.create is the one way to make one). Unless ``new`` (the empty file
    Store.create just made), it must be a Signet gateway database: checked before the first
    write, so opening some other file changes nothing in it. StoreOpenError otherwise.
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

    def __init__(self, path: Path | str, *, readonly: bool = False) -> None:
        """Open an existing gateway database (Store.create makes a new one).

        StoreOpenError if there is no file at `path` or it is not a Signet gateway database.
        """
        self.path = Path(path)
        if not self.path.exists():
            raise StoreOpenError(
                f"database {self.path} does not exist: create it with"
                f" `signet db init --db {shlex.quote(str(self.path))}`"
            )
        self.conn = connect(self.path, readonly=readonly)

    @classmethod
    def create(cls, path: Path | str) -> Store:
        """Make a new, empty gateway database at `path` and open it (`signet db init`).

        Refuses a path that exists and a directory that does not: creating is always asked
        for explicitly, so nothing is made or overwritten by mistake.
        """
        path = Path(path)
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
    def over(cls, conn: sqlite3.Connection) -> Store:
        """The store's queries on a connection its caller opened and will close (the
        writer's, inside its open transaction; a report's): no second connection."""
        store = cls.__new__(cls)
        store.conn = conn
        store.path = Path(conn.execute("PRAGMA database_list").fetchone()[2])
        return store

    def close(self) -> None:
        self.conn.close()

    # -- size ------------------------------------------------------------------------------

    def limit_size(self, max_mib: int | None) -> None:
        """Cap the database file at ``max_mib`` MiB for this connection's writes (``[store]
        max_size_mb``); None lifts the cap. A write that would grow the database past it
        fails with SQLITE_FULL, as on a full disk (faults.py). SQLite never sets the cap
        below the current size: a database already over it takes no new pages at all."""
        if not hasattr(self, "_sqlite_max_pages"):  # SQLite's own limit, to lift a cap again
            self._sqlite_max_pages = int(self.conn.execute("PRAGMA max_page_count").fetchone()[0])
        if max_mib is None:
            pages = self._sqlite_max_pages
        else:
            page_size = int(self.conn.execute("PRAGMA page_size").fetchone()[0])
            pages = max_mib * 1024 * 1024 // page_size
        self.conn.execute(f"PRAGMA max_page_count = {int(pages)}")

    def at_size_limit(self) -> bool:
        """The database's pages in use fill its cap (limit_size): no room to write.

        Free pages inside the file (left by deleted rows) are reused before the file grows,
        so a file at its cap with free pages still takes writes."""
        conn = self.conn
        used = int(conn.execute("PRAGMA page_count").fetchone()[0]) - int(
            conn.execute("PRAGMA freelist_count").fetchone()[0]
        )
        return used >= int(conn.execute("PRAGMA max_page_count").fetchone()[0])

    def size_bytes(self) -> int:
        """The database's size (pages times page size; the -wal file not counted)."""
        count = int(self.conn.execute("PRAGMA page_count").fetchone()[0])
        return count * int(self.conn.execute("PRAGMA page_size").fetchone()[0])

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
        evidence: bytes | None = None,
        enrolled_ms: int | None = None,
    ) -> Device:
        """Add a device key. Hardware tier needs evidence; a kid is enrolled at most once
        (a revoked key stays revoked: re-enrolling it would undo the revocation); a name is
        carried by at most one active device (lookup.py: a name must say which device)."""
        if tier not in TIERS:
            raise StoreError(f"tier must be 'software' or 'hardware', got {tier!r}")
        if tier == "hardware" and not evidence:
            raise StoreError(
                "tier 'hardware' needs evidence (--evidence FILE: the secure element's "
                "certificate chain or a signed enrollment statement)"
            )
        if name is not None and not name.strip():
            raise StoreError("a device name must not be empty (leave --name out instead)")
        when = now_ms() if enrolled_ms is None else enrolled_ms
        # Checked inside the write transaction: two enrollments at once cannot both pass.
        with self.transaction():
            existing = self.device(key.device_id)
            if existing is not None:
                state = "revoked" if existing.revoked_ms is not None else "enrolled"
                raise StoreError(f"device {key.device_id} is already {state}")
            holder = self._active_named(name)
            if holder is not None:
                raise StoreError(
                    f"the name {name!r} is taken by active device {holder}: names are unique"
                    " among active devices (revoke that one first if this device replaces it)"
                )
            self.conn.execute(
                "INSERT INTO devices (kid, public_key, curve, tier, name, evidence, enrolled_ms)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key.device_id, key.compressed, key.curve, tier, name, evidence, when),
            )
        device = self.device(key.device_id)
        assert device is not None
        return device

    def revoke(self, device_id: str, revoked_ms: int | None = None) -> Device:
        device = self.device(device_id)
        if device is None:
            raise StoreError(f"no device {device_id} is enrolled")
        if device.revoked_ms is not None:
            raise StoreError(f"device {device_id} is already revoked")
        with self.transaction():
            self.conn.execute(
                "UPDATE devices SET revoked_ms = ? WHERE kid = ?",
                (now_ms() if revoked_ms is None else revoked_ms, device.kid),
            )
        revoked = self.device(device.kid)
        assert revoked is not None
        return revoked

    def device(self, device_id: str) -> Device | None:
        row = self.conn.execute(
            "SELECT kid, public_key, curve, tier, name, evidence, enrolled_ms, revoked_ms, flagged"
            " FROM devices WHERE kid = ?",
            (device_id.lower(),),
        ).fetchone()
        return None if row is None else Device(*row[:8], flagged=bool(row[8]))

    def resolve_device(self, wanted: str) -> Device:
        """The one device a device id, id prefix (>= 8 hex digits) or name names;
        DeviceLookupError, listing the candidates, if none or several do (lookup.py)."""
        return resolve(self.devices(), wanted)

    def _active_named(self, name: str | None) -> str | None:
        if name is None:
            return None
        row = self.conn.execute(
            "SELECT kid FROM devices WHERE name = ? AND revoked_ms IS NULL LIMIT 1", (name,)
        ).fetchone()
        return None if row is None else str(row[0])

    def devices(self) -> list[Device]:
        rows = self.conn.execute(
            "SELECT kid, public_key, curve, tier, name, evidence, enrolled_ms, revoked_ms, flagged"
            " FROM devices ORDER BY enrolled_ms, kid"
        ).fetchall()
        return [Device(*row[:8], flagged=bool(row[8])) for row in rows]

    def active_keys(self) -> dict[bytes, DevicePublicKey]:
        """kid -> key for every enrolled, non-revoked device (what the verifier may use)."""
        keys: dict[bytes, DevicePublicKey] = {}
        for pub, curve in self.conn.execute(
            "SELECT public_key, curve FROM devices WHERE revoked_ms IS NULL"
        ):
            key = DevicePublicKey.from_sec1(pub, curve)
            keys[key.kid] = key
        return keys

    def revoked_ids(self) -> set[str]:
        return {
            kid for (kid,) in self.conn.execute("SELECT kid FROM devices WHERE revoked_ms >= 0")
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
        sql = "SELECT finding, sum(count) FROM findings WHERE 1"
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
        return _Transaction(self.conn)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on exception)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")


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
