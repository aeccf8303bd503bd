"""Incremental aggregation of stored records into MCR inputs.

The gateway calls :meth:`Aggregator.on_stored` inside its write transaction,
once for every record it stores as new (never for a duplicate or the losing
side of an equivocation). Every call does a bounded number of indexed lookups
and row updates, so the cost per record does not grow with history:

- ``agg_records``  one row per stored record: where it sits on the calendar.
- ``agg_boots``    one row per (device, boot): the boot's wall-clock origin.
- ``agg_points``   one row per boot or heartbeat record, ordered by the device's
                   monotonic clock (b, u); a heartbeat row holds the up interval
                   that ends at it, if the rule below says up.
- ``agg_revenue_day``  sum and count per device, UTC day and currency.
- ``agg_uptime_day``   up milliseconds per device and UTC day.

Uptime rule (docs/MCR.md has a worked example): within one boot, take the boot
record and the heartbeats in (u, n) order. The interval between a heartbeat H
and the point before it, P, is *up* when ``H.u - P.u <= H.iv * (1 + tol)``
(tol = ``[aggregate] hb_tolerance``, applied in parts per million so the
comparison is exact); otherwise, and everywhere no such interval reaches, the
time is down. Inserting a heartbeat between two known points replaces the
later point's interval by two, so the result does not depend on arrival order.

Calendar placement: ``b``/``u`` are the device's monotonic clock. A boot's
origin is ``t - u`` of its lowest-``n`` record whose ``t`` is usable (not null,
not flagged future). Until one is stored, the origin is estimated as
``received_ms - u`` of the boot's lowest-``n`` record and rows placed with it
are marked ``received``. Boot and heartbeat records (their rows in agg_records and
their up intervals alike) are always placed at origin + u, so an interval ends exactly
where its heartbeat is placed; a revenue, meter or event record is placed at its own
usable ``t``, else at origin + u. When a
boot's origin changes (a lower-``n`` record arrives), that boot's rows are
re-placed once: with the device's oldest-first delivery this happens at most
twice per boot (estimate, then the first synced record).
"""

from __future__ import annotations

import datetime as _dt
import functools
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol

from signet_gateway.store.key_groups import groups, marks
from signet_gateway.store.schema import postgres_ddl
from signet_gateway.store.sqlite import Store, engine_of

DAY_MS: Final = 86_400_000
PPM: Final = 1_000_000
DEFAULT_HB_TOLERANCE: Final = 0.10
# Up intervals longer than this are recorded in agg_devices; reports scan back
# max(LONG_INTERVAL_MS, that) before a period to find intervals crossing its start.
LONG_INTERVAL_MS: Final = 3_600_000

PLACED_RECORD_T: Final = "record_t"  # the record's own signed t
PLACED_BOOT_T: Final = "boot_t"  # origin from a synced record of the same boot, plus u
PLACED_RECEIVED: Final = "received"  # origin estimated from the gateway's receive time
# Placed at origin + u whatever their own t says: the points the uptime rule measures between.
POINT_KINDS: Final = ("boot", "hb")
# The placement and uptime rules the agg_* tables were built with (agg_meta 'rules').
# 1 (no key): heartbeats' agg_records rows at their own t; 2: at origin + u. Tables built
# under other rules are rebuilt when the gateway starts, and the report refuses them.
RULES_VERSION: Final = 2

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS agg_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS agg_records (
    kid TEXT NOT NULL,
    n INTEGER NOT NULL,
    b INTEGER NOT NULL,
    u INTEGER NOT NULL,
    kind TEXT NOT NULL,
    t INTEGER,              -- own usable t: null if t is null or flagged future
    at_ms INTEGER NOT NULL, -- placed wall-clock time
    placed TEXT NOT NULL,   -- record_t | boot_t | received
    am INTEGER,
    cur TEXT,
    PRIMARY KEY (kid, n)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS agg_records_boot ON agg_records (kid, b);
CREATE INDEX IF NOT EXISTS agg_records_time ON agg_records (kid, at_ms);
CREATE TABLE IF NOT EXISTS agg_boots (
    kid TEXT NOT NULL,
    b INTEGER NOT NULL,
    t_n INTEGER,            -- lowest n of this boot with a usable t
    t_origin INTEGER,       -- its t - u
    r_n INTEGER NOT NULL,   -- lowest n of this boot
    r_origin INTEGER NOT NULL, -- its received_ms - u
    records INTEGER NOT NULL,  -- records of this boot aggregated
    PRIMARY KEY (kid, b)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS agg_points (
    kid TEXT NOT NULL,
    b INTEGER NOT NULL,
    u INTEGER NOT NULL,
    n INTEGER NOT NULL,
    kind TEXT NOT NULL,     -- boot | hb
    iv INTEGER,             -- hb: declared interval, ms
    at_ms INTEGER NOT NULL,
    prev_u INTEGER,         -- u of the point before it in this boot, if any
    up INTEGER NOT NULL,    -- 1: (prev_u, u] is up by the rule
    up_start_ms INTEGER,    -- placed up interval, null unless up
    up_end_ms INTEGER,
    PRIMARY KEY (kid, b, u, n)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS agg_points_up ON agg_points (kid, up_start_ms);
CREATE INDEX IF NOT EXISTS agg_points_time ON agg_points (kid, at_ms);
CREATE TABLE IF NOT EXISTS agg_revenue_day (
    kid TEXT NOT NULL,
    day TEXT NOT NULL,
    cur TEXT NOT NULL,
    amount INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (kid, day, cur)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS agg_uptime_day (
    kid TEXT NOT NULL,
    day TEXT NOT NULL,
    up_ms INTEGER NOT NULL,
    PRIMARY KEY (kid, day)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS agg_devices (
    kid TEXT PRIMARY KEY,
    max_up_ms INTEGER NOT NULL -- longest up interval over LONG_INTERVAL_MS: bounds report scans
) WITHOUT ROWID;
"""

AGG_TABLES: Final = (
    "agg_records",
    "agg_boots",
    "agg_points",
    "agg_revenue_day",
    "agg_uptime_day",
    "agg_devices",
)


class BatchItemFailed(Exception):
    """Folding in record ``index`` of an :meth:`Aggregator.on_stored_many` call raised ``exc``."""

    def __init__(self, index: int, exc: BaseException) -> None:
        super().__init__(index, exc)
        self.index = index
        self.exc = exc


class RecordLike(Protocol):
    """What on_stored reads: gateway.store.StoredRecord satisfies it."""

    @property
    def kid(self) -> str: ...
    @property
    def n(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def b(self) -> int: ...
    @property
    def u(self) -> int: ...
    @property
    def t(self) -> int | None: ...
    @property
    def payload(self) -> dict[str, Any]: ...
    @property
    def received_ms(self) -> int: ...
    @property
    def future(self) -> bool: ...


def settings_from_config(section: Mapping[str, Any]) -> float:
    """Check the [aggregate] table of gateway.toml; returns hb_tolerance.

    Raises gateway.config.ConfigError naming the wrong key, like every other section.
    """
    from signet_gateway.config import ConfigError

    for key in section:
        if key != "hb_tolerance":
            raise ConfigError(f"aggregate.{key}: unknown key (known: hb_tolerance)")
    value = section.get("hb_tolerance", DEFAULT_HB_TOLERANCE)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 10:
        raise ConfigError(
            f"aggregate.hb_tolerance: must be a number 0..10 (0.1 = 10% late), got {value!r}"
        )
    return float(value)


def rules_of(conn: sqlite3.Connection) -> int:
    """The rules version the agg_* tables were built with (1: before the key existed)."""
    row = conn.execute("SELECT value FROM agg_meta WHERE key = 'rules'").fetchone()
    return 1 if row is None else int(row[0])


def look_back_ms(conn: sqlite3.Connection, kid: str) -> int:
    """How far before a period a query must look to find up intervals crossing its start."""
    row = conn.execute("SELECT max_up_ms FROM agg_devices WHERE kid = ?", (kid,)).fetchone()
    return max(LONG_INTERVAL_MS, 0 if row is None else int(row[0]))


def day_of(ms: int) -> str:
    """UTC calendar day 'YYYY-MM-DD' of a unix-ms instant."""
    return _day_name(ms // DAY_MS)


# The writer asks once per message: cached, 0.15 instead of 0.9 us (measured), and the
# instants of a batch fall on one or two days.
@functools.lru_cache(maxsize=1024)
def _day_name(days: int) -> str:
    return (_dt.date(1970, 1, 1) + _dt.timedelta(days=days)).isoformat()


def day_start_ms(day: str) -> int:
    """Unix ms of 00:00 UTC on 'YYYY-MM-DD'."""
    return (_dt.date.fromisoformat(day) - _dt.date(1970, 1, 1)).days * DAY_MS


def tolerance_ppm(tolerance: float) -> int:
    """hb_tolerance as an integer number of parts per million (0.1 -> 100000)."""
    if not 0.0 <= tolerance <= 10.0:
        raise ValueError(f"aggregate.hb_tolerance: must be between 0 and 10, got {tolerance!r}")
    return round(tolerance * PPM)


def gap_is_up(gap_ms: int, iv_ms: int, tol_ppm: int) -> bool:
    """The uptime rule, in integers: gap <= iv * (1 + tol)."""
    return gap_ms * PPM <= iv_ms * (PPM + tol_ppm)


class Aggregator:
    """Keeps the agg_* tables up to date, one stored record at a time.

    Never commits on its own inside :meth:`on_stored`: the caller's transaction
    makes the record and its aggregates durable together.
    """

    def __init__(
        self, conn: sqlite3.Connection, hb_tolerance: float = DEFAULT_HB_TOLERANCE
    ) -> None:
        self.conn = conn
        self.hb_tolerance = hb_tolerance
        self.tol_ppm = tolerance_ppm(hb_tolerance)
        engine = engine_of(conn)
        if engine.name == "sqlite" or conn.in_transaction:
            self.create_schema(conn)
        else:  # several workers may start at once: one creates, the others find the tables
            conn.execute(engine.begin)
            try:
                self.create_schema(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        meta = dict(conn.execute("SELECT key, value FROM agg_meta").fetchall())
        if meta.get("hb_tolerance_ppm") == str(self.tol_ppm) and rules_of(conn) == RULES_VERSION:
            return
        # The rule decided up/down and placement at insert time: a different tolerance or
        # rules version needs a recompute. Done here, at startup, in one transaction.
        own = not conn.in_transaction
        if own:
            conn.execute(engine.begin)
        try:
            self.rebuild()
            conn.executemany(
                "INSERT INTO agg_meta (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [("hb_tolerance_ppm", str(self.tol_ppm)), ("rules", str(RULES_VERSION))],
            )
        except BaseException:
            if own:
                conn.execute("ROLLBACK")
            raise
        if own:
            conn.execute("COMMIT")

    @staticmethod
    def create_schema(conn: sqlite3.Connection) -> None:
        """Create the aggregate tables and indexes if missing (idempotent), in the types of
        the connection's engine (schema.postgres_ddl on PostgreSQL)."""
        script = SCHEMA if engine_of(conn).name == "sqlite" else postgres_ddl(SCHEMA)
        for statement in script.split(";"):
            if statement.strip():
                conn.execute(statement)

    # ------------------------------------------------------------------ ingest

    def on_stored_many(self, recs: Sequence[RecordLike]) -> None:
        """Fold newly stored records in, in order (no commit).

        The end state is the same as folding them in one by one (:meth:`on_stored`); what
        one call shares (:class:`_Pending`): a boot's ``agg_boots`` row is read once and
        kept in memory; ``agg_records`` and ``agg_points`` rows are inserted with one
        ``executemany`` each (flushed before anything reads those tables); a heartbeat that
        follows the last point of its boot known in this call needs no look-up of its
        neighbours; revenue and uptime changes are summed per row and written once.

        If folding record i in fails, :class:`BatchItemFailed` says i; a failure while
        writing the buffered rows has no index (the caller retries record by record).
        """
        pending = _Pending()
        self._prefetch(recs, pending)
        for index, rec in enumerate(recs):
            try:
                self._fold(rec, pending)
            except Exception as exc:
                raise BatchItemFailed(index, exc) from exc
        self._write(pending)

    def _prefetch(self, recs: Sequence[RecordLike], pending: _Pending) -> None:
        """Read, for every boot the records belong to, its agg_boots row and its last point,
        in a few statements (key_groups.py) instead of two look-ups per boot as each boot's
        first record is folded in: a batch holds records of tens or hundreds of boots."""
        conn = self.conn
        boots = list(dict.fromkeys((rec.kid, rec.b) for rec in recs))
        for key in boots:
            pending.boots[key] = None  # no row unless read below
        for group in groups(boots):
            for kid, b, *row in conn.execute(
                "SELECT kid, b, t_n, t_origin, r_n, r_origin, records FROM agg_boots"
                f" WHERE (kid, b) IN ({marks(len(group), 2)})",
                [part for key in group for part in key],
            ):
                pending.boots[(kid, b)] = row
        with_points = list(
            dict.fromkeys((rec.kid, rec.b) for rec in recs if rec.kind in POINT_KINDS)
        )
        last = " ORDER BY u DESC, n DESC LIMIT 1)"
        for group in groups(with_points):
            for kid, b, u, n in conn.execute(
                f"WITH boots (kid, b) AS (VALUES {marks(len(group), 2)})"
                " SELECT kid, b, (SELECT u FROM agg_points p WHERE p.kid = boots.kid"
                f" AND p.b = boots.b{last}, (SELECT n FROM agg_points p WHERE p.kid = boots.kid"
                f" AND p.b = boots.b{last} FROM boots",
                [part for key in group for part in key],
            ):
                pending.last_point[(kid, b)] = _NO_POINT if u is None else (u, n)

    def on_stored(self, rec: RecordLike) -> None:
        """Fold one newly stored record into the aggregates (no commit)."""
        pending = _Pending()
        self._fold(rec, pending)
        self._write(pending)

    def _fold(self, rec: RecordLike, pending: _Pending) -> None:
        kid, n, b, u = rec.kid, rec.n, rec.b, rec.u
        usable_t = rec.t if rec.t is not None and not rec.future else None
        new_t_n = None if usable_t is None else n
        boots = pending.boots
        row = boots.get((kid, b), _UNREAD)
        if row is _UNREAD:
            found = self.conn.execute(
                "SELECT t_n, t_origin, r_n, r_origin, records FROM agg_boots"
                " WHERE kid = ? AND b = ?",
                (kid, b),
            ).fetchone()
            row = None if found is None else list(found)
            if row is not None:
                boots[(kid, b)] = row
        if row is None:
            row = boots[(kid, b)] = [
                new_t_n,
                None if usable_t is None else usable_t - u,
                n,
                rec.received_ms - u,
                1,
            ]
        else:  # a boot's anchors are its lowest-n records (with a usable t; at all)
            if new_t_n is not None and (row[0] is None or new_t_n < row[0]):
                row[0], row[1] = new_t_n, usable_t - u  # type: ignore[operator]
            if n < row[2]:
                row[2], row[3] = n, rec.received_ms - u
            row[4] += 1
        t_n, t_origin, r_n, r_origin, count = row
        origin, placed = _origin(t_n, t_origin, r_origin)
        if count > 1 and (t_n == n or (t_n is None and r_n == n)):
            # This record became the boot's anchor: move what was placed with the old one.
            self._replace_boot(kid, b, origin, placed, pending)
        pending.records.append(self._place(rec, usable_t, origin, placed, pending))

    def _write(self, pending: _Pending) -> None:
        """Write what one call buffered (:class:`_Pending`) into the open transaction."""
        conn = self.conn
        pending.insert_rows(conn)
        if pending.boots:
            conn.executemany(
                "INSERT INTO agg_boots (kid, b, t_n, t_origin, r_n, r_origin, records)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (kid, b) DO UPDATE SET"
                " t_n = excluded.t_n, t_origin = excluded.t_origin, r_n = excluded.r_n,"
                " r_origin = excluded.r_origin, records = excluded.records",
                [(kid, b, *row) for (kid, b), row in pending.boots.items() if row is not None],
            )
        if pending.revenue:
            conn.executemany(
                "INSERT INTO agg_revenue_day (kid, day, cur, amount, count)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (kid, day, cur) DO UPDATE SET"
                " amount = agg_revenue_day.amount + excluded.amount,"
                " count = agg_revenue_day.count + excluded.count",  # PostgreSQL: qualified
                [(*key, amount, count) for key, (amount, count) in pending.revenue.items()],
            )
            # A day whose last sale moved to another day has no row (as if never written).
            conn.executemany(
                "DELETE FROM agg_revenue_day WHERE kid = ? AND day = ? AND cur = ? AND count = 0",
                [key for key, (_, count) in pending.revenue.items() if count <= 0],
            )
        if pending.uptime:
            conn.executemany(
                "INSERT INTO agg_uptime_day (kid, day, up_ms) VALUES (?, ?, ?)"
                " ON CONFLICT (kid, day) DO UPDATE SET"
                " up_ms = agg_uptime_day.up_ms + excluded.up_ms",
                [(*key, up_ms) for key, up_ms in pending.uptime.items()],
            )
            conn.executemany(
                "DELETE FROM agg_uptime_day WHERE kid = ? AND day = ? AND up_ms = 0",
                [key for key, up_ms in pending.uptime.items() if up_ms <= 0],
            )
        if pending.long_up:
            conn.executemany(
                "INSERT INTO agg_devices (kid, max_up_ms) VALUES (?, ?) ON CONFLICT (kid)"
                " DO UPDATE SET max_up_ms = CASE WHEN excluded.max_up_ms > agg_devices.max_up_ms"
                " THEN excluded.max_up_ms ELSE agg_devices.max_up_ms END",
                list(pending.long_up.items()),
            )

    def _place(
        self, rec: RecordLike, usable_t: int | None, origin: int, placed: str, pending: _Pending
    ) -> tuple[Any, ...]:
        """Put one record on the calendar: revenue and uptime points now; its agg_records
        row is returned for the caller to buffer."""
        kid, n, b, u, kind = rec.kid, rec.n, rec.b, rec.u, rec.kind
        if usable_t is not None and kind not in POINT_KINDS:
            at_ms, rec_placed = usable_t, PLACED_RECORD_T
        else:
            at_ms, rec_placed = origin + u, placed
        am: int | None = None
        cur: str | None = None
        if kind == "rev":
            am, cur = int(rec.payload["am"]), str(rec.payload["cur"])
            pending.add_revenue(kid, day_of(at_ms), cur, am, 1)
        if kind in POINT_KINDS:
            iv = int(rec.payload["iv"]) if kind == "hb" else None
            self._insert_point(kid, b, u, n, kind, iv, origin, pending)
        return (kid, n, b, u, kind, usable_t, at_ms, rec_placed, am, cur)

    def _insert_point(
        self,
        kid: str,
        b: int,
        u: int,
        n: int,
        kind: str,
        iv: int | None,
        origin: int,
        pending: _Pending,
    ) -> None:
        conn = self.conn
        last = pending.last_point.get((kid, b))
        succ = None
        if last is not None and (u, n) > last:
            # After the boot's last point: it is the predecessor (none if the boot has none).
            prev_u: int | None = None if last is _NO_POINT else last[0]
        else:
            pending.insert_rows(conn)  # the look-up must see this call's points
            near = conn.execute(
                "SELECT * FROM (SELECT 0, u, n, iv, up_start_ms, up_end_ms FROM agg_points"
                " WHERE kid = ? AND b = ? AND (u, n) < (?, ?) ORDER BY u DESC, n DESC LIMIT 1)"
                " AS subquery_pred UNION ALL SELECT * FROM"
                " (SELECT 1, u, n, iv, up_start_ms, up_end_ms FROM agg_points"
                " WHERE kid = ? AND b = ? AND (u, n) > (?, ?)"
                " ORDER BY u, n LIMIT 1) AS subquery_succ",  # PostgreSQL 15 wants aliases
                (kid, b, u, n, kid, b, u, n),
            ).fetchall()
            pred = next((row[1:] for row in near if row[0] == 0), None)
            succ = next((row[1:] for row in near if row[0] == 1), None)
            prev_u = None if pred is None else int(pred[0])
        up = iv is not None and prev_u is not None and gap_is_up(u - prev_u, iv, self.tol_ppm)
        start, end = (origin + prev_u, origin + u) if up and prev_u is not None else (None, None)
        pending.points.append((kid, b, u, n, kind, iv, origin + u, prev_u, int(up), start, end))
        if start is not None and end is not None:
            pending.add_up(kid, start, end, 1)

        if succ is None:
            pending.last_point[(kid, b)] = (u, n)
            return
        s_u, s_n, s_iv, s_start, s_end = succ
        # The successor's interval now starts at the new point: replace its contribution.
        if s_start is not None:
            pending.add_up(kid, s_start, s_end, -1)
        s_up = s_iv is not None and gap_is_up(s_u - u, s_iv, self.tol_ppm)
        s_start, s_end = (origin + u, origin + s_u) if s_up else (None, None)
        conn.execute(
            "UPDATE agg_points SET prev_u = ?, up = ?, up_start_ms = ?, up_end_ms = ?"
            " WHERE kid = ? AND b = ? AND u = ? AND n = ?",
            (u, int(s_up), s_start, s_end, kid, b, s_u, s_n),
        )
        if s_start is not None and s_end is not None:
            pending.add_up(kid, s_start, s_end, 1)

    def _replace_boot(self, kid: str, b: int, origin: int, placed: str, pending: _Pending) -> None:
        """Move one boot's rows to a new origin (its lowest-n anchor changed): the points, and
        the other records placed by origin + u (no usable t of their own)."""
        conn = self.conn
        pending.insert_rows(conn)  # read below: this call's rows too
        rows = conn.execute(
            "SELECT n, u, at_ms, am, cur FROM agg_records WHERE kid = ? AND b = ?"
            f" AND (t IS NULL OR kind IN ({', '.join('?' * len(POINT_KINDS))}))",
            (kid, b, *POINT_KINDS),
        ).fetchall()
        for n, u, old_at, am, cur in rows:
            new_at = origin + u
            if am is not None and day_of(new_at) != day_of(old_at):
                pending.add_revenue(kid, day_of(old_at), cur, -am, -1)
                pending.add_revenue(kid, day_of(new_at), cur, am, 1)
            conn.execute(
                "UPDATE agg_records SET at_ms = ?, placed = ? WHERE kid = ? AND n = ?",
                (new_at, placed, kid, n),
            )
        points = conn.execute(
            "SELECT u, n, prev_u, up_start_ms, up_end_ms FROM agg_points WHERE kid = ? AND b = ?",
            (kid, b),
        ).fetchall()
        for u, n, prev_u, start, end in points:
            new_start = new_end = None
            if start is not None:
                pending.add_up(kid, start, end, -1)
                new_start, new_end = origin + prev_u, origin + u
                pending.add_up(kid, new_start, new_end, 1)
            conn.execute(
                "UPDATE agg_points SET at_ms = ?, up_start_ms = ?, up_end_ms = ?"
                " WHERE kid = ? AND b = ? AND u = ? AND n = ?",
                (origin + u, new_start, new_end, kid, b, u, n),
            )

    # ------------------------------------------------------------------ admin

    def rebuild(self) -> int:
        """Recompute every aggregate from the records table (no commit); returns records read.

        A full scan: for a changed hb_tolerance or a repaired database, never per record.
        """
        conn = self.conn
        for table in AGG_TABLES:
            conn.execute(f"DELETE FROM {table}")  # fixed names, no input
        count = 0
        for rec in Store.over(conn).records():
            self.on_stored(rec)
            count += 1
        return count


def _origin(t_n: int | None, t_origin: int | None, r_origin: int) -> tuple[int, str]:
    if t_n is not None and t_origin is not None:
        return t_origin, PLACED_BOOT_T
    return r_origin, PLACED_RECEIVED


_UNREAD: Final[Any] = object()  # _Pending.boots: a boot whose agg_boots row was not read
_NO_POINT: Final = (-1, -1)  # _Pending.last_point: a boot with no point (below every (u, n))


class _Pending:
    """What one :meth:`Aggregator.on_stored_many` call has computed but not yet written."""

    __slots__ = ("boots", "last_point", "long_up", "points", "records", "revenue", "uptime")

    def __init__(self) -> None:
        # (kid, b) -> [t_n, t_origin, r_n, r_origin, records]: the agg_boots row as it will be
        # (None: read, and the boot has none yet)
        self.boots: dict[tuple[str, int], list[Any] | None] = {}
        # (kid, b) -> (u, n) of the boot's last point (_NO_POINT: none), where this call knows it
        self.last_point: dict[tuple[str, int], tuple[int, int]] = {}
        self.records: list[tuple[Any, ...]] = []  # agg_records rows to insert
        self.points: list[tuple[Any, ...]] = []  # agg_points rows to insert
        self.revenue: dict[tuple[str, str, str], list[int]] = {}  # -> [amount, count] change
        self.uptime: dict[tuple[str, str], int] = {}  # (kid, day) -> up_ms change
        self.long_up: dict[str, int] = {}  # kid -> its longest new up interval over the bound

    def insert_rows(self, conn: sqlite3.Connection) -> None:
        """Insert the buffered agg_records and agg_points rows (before reading those tables)."""
        if self.records:
            conn.executemany(
                "INSERT INTO agg_records (kid, n, b, u, kind, t, at_ms, placed, am, cur)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                self.records,
            )
            self.records.clear()
        if self.points:
            conn.executemany(
                "INSERT INTO agg_points (kid, b, u, n, kind, iv, at_ms, prev_u, up,"
                " up_start_ms, up_end_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                self.points,
            )
            self.points.clear()

    def add_revenue(self, kid: str, day: str, cur: str, amount: int, count: int) -> None:
        change = self.revenue.get((kid, day, cur))
        if change is None:
            self.revenue[(kid, day, cur)] = [amount, count]
        else:
            change[0] += amount
            change[1] += count

    def add_up(self, kid: str, start: int, end: int, sign: int) -> None:
        """Add (sign=1) or remove (sign=-1) an up interval, split over UTC days."""
        if sign > 0 and end - start > LONG_INTERVAL_MS:
            self.long_up[kid] = max(self.long_up.get(kid, 0), end - start)
        uptime = self.uptime
        pos = start
        while pos < end:
            day_end = (pos // DAY_MS + 1) * DAY_MS
            piece = min(end, day_end) - pos
            key = (kid, day_of(pos))
            uptime[key] = uptime.get(key, 0) + sign * piece
            pos += piece
