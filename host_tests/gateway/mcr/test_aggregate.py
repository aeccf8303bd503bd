"""Incremental aggregation: revenue per day and currency, the uptime rule, calendar placement.

Expectations are computed by hand in each test. The database is a new gateway store
(Store.create), once on SQLite and once on PostgreSQL (new_db, conftest.py); records are
written the way the sequencer writes them and then handed to Aggregator.on_stored inside
the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kit.independent_signer import make_key
from signet_gateway.config import ConfigError
from signet_gateway.mcr.aggregate import (
    AGG_TABLES,
    DAY_MS,
    PLACED_BOOT_T,
    PLACED_RECEIVED,
    Aggregator,
    day_of,
    gap_is_up,
    settings_from_config,
)
from signet_gateway.store.model import StoredRecord
from signet_gateway.store.sqlite import Store
from signet_gateway.verify.pubkeys import DevicePublicKey

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
IV = 60_000


class Db:
    """A new gateway store (Store.create: SQLite or PostgreSQL) plus the aggregates, with
    helpers to store records by hand."""

    def __init__(self, where: Path | str, tolerance: float = 0.1) -> None:
        self.store = Store.create(where)
        self.conn = self.store.conn
        # Commits that do not wait for the disk: what is tested is what a transaction sees
        # and leaves, not whether it survives a power cut (the store's own tests do that).
        if self.store.engine.name == "sqlite":
            self.conn.execute("PRAGMA synchronous = OFF")
        else:
            self.conn.execute("SET synchronous_commit = off")
        self.agg = Aggregator(self.conn, tolerance)

    def close(self) -> None:
        self.store.close()

    def clear(self) -> None:
        """Empty every table the tests write, as in a new store: for the next of
        hypothesis's examples (a new database for each costs a second on PostgreSQL)."""
        with self.store.transaction() as conn:
            for table in ("records", "devices", "findings", *AGG_TABLES):
                conn.execute(f"DELETE FROM {table}")  # fixed names, no input

    def enroll(self, seed: int = 1, tier: str = "software", name: str | None = None) -> str:
        key = DevicePublicKey.from_sec1(make_key(seed=seed).compressed, "p256")
        hardware = tier == "hardware"  # (as if its evidence had verified: the schema's CHECK)
        self.conn.execute(
            "INSERT INTO devices (kid, public_key, curve, tier, name, evidence, evidence_kind,"
            " enrolled_ms, machine) VALUES (?, ?, 'p256', ?, ?, ?, ?, ?, ?)",
            (key.device_id, key.compressed, tier, name, b"ev" if hardware else None,
             "se-chain" if hardware else None, 0, key.device_id),
        )  # fmt: skip
        return key.device_id

    def put(self, rec: StoredRecord, payload_bytes: bytes | None = None) -> None:
        with self.store.transaction() as conn:
            conn.execute(
                "INSERT INTO records (kid, n, kind, b, u, t, payload, raw, received_ms, late,"
                " future) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    rec.kid,
                    rec.n,
                    rec.kind,
                    rec.b,
                    rec.u,
                    rec.t,
                    payload_bytes or cbor2.dumps(rec.payload),
                    rec.raw,
                    rec.received_ms,
                    rec.late,
                    rec.future,
                ),
            )
            self.agg.on_stored(rec)

    def finding(self, kid: str, day: str, finding: str, count: int) -> None:
        self.conn.execute(
            "INSERT INTO findings (kid, day, finding, count) VALUES (?, ?, ?, ?)",
            (kid, day, finding, count),
        )

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every aggregate table except the scan bound (an upper bound, order-dependent)."""
        out = {}
        for table in AGG_TABLES:
            if table != "agg_devices":
                out[table] = sorted(self.conn.execute(f"SELECT * FROM {table}").fetchall())
        return out

    def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, args).fetchall()


def rec(
    kid: str,
    n: int,
    kind: str,
    b: int = 1,
    u: int = 0,
    t: int | None = None,
    received_ms: int | None = None,
    future: bool = False,
    **fields: Any,
) -> StoredRecord:
    payload: dict[str, Any] = {"v": 1, "n": n, "b": b, "u": u, "t": t, "p": bytes(32), "k": kind}
    if kind == "boot":
        fields = {"rc": "power_on", "fw": "0.1.0", "ls": 0, **fields}
    if kind == "hb":
        fields = {"iv": IV, "st": "ok", **fields}
    if kind == "rev":
        fields = {"src": "pulse", **fields}
    payload.update(fields)
    if received_ms is None:
        received_ms = (t if t is not None else T0 + u) + 500
    raw = b"\xd2" + cbor2.dumps([kid, n, kind])  # stands in for the COSE bytes
    return StoredRecord(kid, n, kind, b, u, t, payload, raw, received_ms, False, future)


def up_total(db: Db, kid: str) -> int:
    return sum(ms for (ms,) in db.rows("SELECT up_ms FROM agg_uptime_day WHERE kid = ?", kid))


# ---------------------------------------------------------------------------- revenue


def test_revenue_per_currency_per_day_with_refunds(db: Db) -> None:
    kid = db.enroll()
    db.put(rec(kid, 1, "boot", u=0, t=T0))
    db.put(rec(kid, 2, "rev", u=1000, t=T0 + 1000, am=250, cur="EUR"))
    db.put(rec(kid, 3, "rev", u=2000, t=T0 + 2000, am=100, cur="EUR"))
    db.put(rec(kid, 4, "rev", u=3000, t=T0 + 3000, am=-50, cur="EUR"))  # refund
    db.put(rec(kid, 5, "rev", u=4000, t=T0 + 4000, am=500, cur="JPY"))
    db.put(rec(kid, 6, "rev", u=DAY_MS, t=T0 + DAY_MS + 5, am=700, cur="EUR"))
    rows = db.rows("SELECT day, cur, amount, count FROM agg_revenue_day ORDER BY day, cur")
    assert rows == [
        ("2026-01-01", "EUR", 300, 3),
        ("2026-01-01", "JPY", 500, 1),
        ("2026-01-02", "EUR", 700, 1),
    ]


def test_revenue_near_midnight_uses_utc_day(db: Db) -> None:
    kid = db.enroll()
    db.put(rec(kid, 1, "rev", u=5, t=T0 - 1, am=1, cur="EUR"))  # 23:59:59.999 the day before
    db.put(rec(kid, 2, "rev", u=6, t=T0, am=2, cur="EUR"))
    assert db.rows("SELECT day, amount FROM agg_revenue_day ORDER BY day") == [
        ("2025-12-31", 1),
        ("2026-01-01", 2),
    ]


# ---------------------------------------------------------------------------- uptime rule


@pytest.mark.parametrize(
    ("gap", "tolerance", "up"),
    [
        (66_000, 0.1, True),  # exactly iv * 1.1
        (66_001, 0.1, False),
        (60_000, 0.0, True),
        (60_001, 0.0, False),
        (90_000, 0.5, True),
        (90_001, 0.5, False),
    ],
)
def test_uptime_rule_at_the_tolerance_boundary(
    new_db: Callable[..., Db], gap: int, tolerance: float, up: bool
) -> None:
    db = new_db(tolerance)
    kid = db.enroll()
    db.put(rec(kid, 1, "hb", u=10_000, t=T0 + 10_000))
    db.put(rec(kid, 2, "hb", u=10_000 + gap, t=T0 + 10_000 + gap))
    assert gap_is_up(gap, IV, round(tolerance * 1_000_000)) is up
    assert up_total(db, kid) == (gap if up else 0)


def test_boot_record_anchors_the_first_interval(db: Db) -> None:
    kid = db.enroll()
    db.put(rec(kid, 1, "boot", u=200, t=T0 + 200))
    db.put(rec(kid, 2, "hb", u=60_200, t=T0 + 60_200))
    db.put(rec(kid, 3, "hb", u=120_200, t=T0 + 120_200))
    pts = db.rows("SELECT n, up, up_start_ms, up_end_ms FROM agg_points ORDER BY n")
    assert pts == [
        (1, 0, None, None),
        (2, 1, T0 + 200, T0 + 60_200),
        (3, 1, T0 + 60_200, T0 + 120_200),
    ]
    assert up_total(db, kid) == 120_000


def test_first_heartbeat_without_boot_record_covers_nothing(db: Db) -> None:
    kid = db.enroll()
    db.put(rec(kid, 5, "hb", u=60_000, t=T0 + 60_000))
    assert up_total(db, kid) == 0


def test_coarser_heartbeats_use_their_own_declared_interval(db: Db) -> None:
    kid = db.enroll()
    db.put(rec(kid, 1, "boot", u=0, t=T0))
    db.put(rec(kid, 2, "hb", u=60_000, t=T0 + 60_000))
    # The journal filled: the device now heartbeats every 5 minutes and says so.
    db.put(rec(kid, 3, "hb", u=360_000, t=T0 + 360_000, iv=300_000))
    db.put(rec(kid, 4, "hb", u=720_000, t=T0 + 720_000, iv=300_000))  # 360 s > 330 s: down
    assert up_total(db, kid) == 360_000


def test_gaps_across_boots_are_down(db: Db) -> None:
    kid = db.enroll()
    db.put(rec(kid, 1, "boot", b=1, u=0, t=T0))
    db.put(rec(kid, 2, "hb", b=1, u=60_000, t=T0 + 60_000))
    # Power lost; boot 2 starts 10 minutes later on the calendar, u restarts at 0.
    db.put(rec(kid, 3, "boot", b=2, u=0, t=T0 + 660_000))
    db.put(rec(kid, 4, "hb", b=2, u=60_000, t=T0 + 720_000))
    assert up_total(db, kid) == 120_000
    starts = db.rows("SELECT up_start_ms FROM agg_points WHERE up = 1 ORDER BY up_start_ms")
    assert starts == [(T0,), (T0 + 660_000,)]


def test_heartbeat_inserted_between_two_known_ones_replaces_the_interval(db: Db) -> None:
    kid = db.enroll()
    db.put(rec(kid, 1, "boot", u=0, t=T0))
    db.put(rec(kid, 3, "hb", u=120_000, t=T0 + 120_000))  # 120 s after the boot: down
    assert up_total(db, kid) == 0
    db.put(rec(kid, 2, "hb", u=60_000, t=T0 + 60_000))  # late: fills the gap
    assert up_total(db, kid) == 120_000
    assert db.rows("SELECT n, prev_u, up FROM agg_points ORDER BY n") == [
        (1, None, 0),
        (2, 0, 1),
        (3, 60_000, 1),
    ]


def test_up_interval_across_midnight_is_split_over_days(db: Db) -> None:
    kid = db.enroll()
    db.put(rec(kid, 1, "boot", u=0, t=T0 - 20_000))
    db.put(rec(kid, 2, "hb", u=60_000, t=T0 + 40_000))
    assert db.rows("SELECT day, up_ms FROM agg_uptime_day ORDER BY day") == [
        ("2025-12-31", 20_000),
        ("2026-01-01", 40_000),
    ]


# ---------------------------------------------------------------------------- placement


def test_null_t_records_are_placed_by_the_boot_origin(db: Db) -> None:
    kid = db.enroll()
    origin = T0 + 5_000_000
    db.put(rec(kid, 1, "boot", u=100, t=None, received_ms=T0 + 50))
    db.put(rec(kid, 2, "rev", u=30_000, t=None, am=10, cur="EUR", received_ms=T0 + 60))
    # Until a synced record arrives the boot is placed by receive time.
    assert db.rows("SELECT n, at_ms, placed FROM agg_records ORDER BY n") == [
        (1, T0 + 50 - 100 + 100, PLACED_RECEIVED),
        (2, T0 - 50 + 30_000, PLACED_RECEIVED),
    ]
    db.put(rec(kid, 3, "hb", u=60_100, t=origin + 60_100))  # the clock synced
    assert db.rows("SELECT n, at_ms, placed FROM agg_records ORDER BY n") == [
        (1, origin + 100, PLACED_BOOT_T),
        (2, origin + 30_000, PLACED_BOOT_T),
        (3, origin + 60_100, PLACED_BOOT_T),  # a heartbeat: at origin + u, like its interval
    ]
    assert db.rows("SELECT up_start_ms, up_end_ms FROM agg_points WHERE up = 1") == [
        (origin + 100, origin + 60_100)
    ]
    assert db.rows("SELECT day, amount FROM agg_revenue_day") == [(day_of(origin), 10)]


def test_revenue_moves_day_when_the_origin_becomes_known(db: Db) -> None:
    kid = db.enroll()
    db.put(rec(kid, 1, "boot", u=0, t=None, received_ms=T0 + 1000))
    db.put(rec(kid, 2, "rev", u=1000, t=None, am=42, cur="EUR", received_ms=T0 + 2000))
    assert db.rows("SELECT day, amount FROM agg_revenue_day") == [("2026-01-01", 42)]
    # The device's clock says the boot began two days earlier (a catch-up after an outage).
    db.put(rec(kid, 3, "hb", u=60_000, t=T0 - 2 * DAY_MS + 60_000))
    assert db.rows("SELECT day, amount, count FROM agg_revenue_day") == [("2025-12-30", 42, 1)]


def test_origin_comes_from_the_lowest_synced_n(db: Db) -> None:
    kid = db.enroll()
    db.put(rec(kid, 1, "boot", u=0, t=None, received_ms=T0))
    db.put(rec(kid, 4, "hb", u=180_000, t=T0 + 180_000 + 7))  # clock stepped by 7 ms later
    db.put(rec(kid, 2, "hb", u=60_000, t=T0 + 60_000))  # lower n: its origin wins
    assert db.rows("SELECT t_n, t_origin FROM agg_boots") == [(2, T0)]
    assert db.rows("SELECT at_ms FROM agg_points WHERE n = 1") == [(T0,)]


def test_future_t_is_not_trusted_for_placement(db: Db) -> None:
    kid = db.enroll()
    db.put(rec(kid, 1, "boot", u=0, t=None, received_ms=T0))
    db.put(rec(kid, 2, "rev", u=1000, t=T0 + 400 * DAY_MS, future=True, am=5, cur="EUR"))
    assert db.rows("SELECT t, placed, at_ms FROM agg_records WHERE n = 2") == [
        (None, PLACED_RECEIVED, T0 + 1000)
    ]
    assert db.rows("SELECT t_n FROM agg_boots") == [(None,)]


# ---------------------------------------------------------------------------- order


def _scenario(kid: str) -> list[StoredRecord]:
    """Two boots: unsynced start, revenue, a missed heartbeat, a slow one, a reboot."""
    o1, o2 = T0 + 3_600_000, T0 + 30 * 3_600_000 + 123
    out = [
        rec(kid, 1, "boot", b=1, u=50, t=None, received_ms=T0 + 10),
        rec(kid, 2, "hb", b=1, u=60_050, t=None, received_ms=T0 + 20),
        rec(kid, 3, "rev", b=1, u=70_000, t=None, am=300, cur="EUR", received_ms=T0 + 30),
        rec(kid, 4, "hb", b=1, u=120_050, t=o1 + 120_050),
        rec(kid, 5, "hb", b=1, u=250_000, t=o1 + 250_000),  # 130 s: down
        rec(kid, 6, "hb", b=1, u=316_000, t=o1 + 316_000),  # 66 s: up at the boundary
        rec(kid, 7, "rev", b=1, u=317_000, t=o1 + 317_000, am=-100, cur="EUR"),
        rec(kid, 8, "rev", b=1, u=318_000, t=o1 + 318_000, am=900, cur="USD"),
        rec(kid, 9, "hb", b=1, u=616_000, t=o1 + 616_000, iv=300_000),
        rec(kid, 12, "boot", b=2, u=10, t=None, received_ms=o2 + 500),
        rec(kid, 13, "hb", b=2, u=60_010, t=o2 + 60_010),
        rec(kid, 14, "rev", b=2, u=61_000, t=None, am=75, cur="EUR"),
        rec(kid, 15, "hb", b=2, u=DAY_MS, t=o2 + DAY_MS, iv=DAY_MS - 60_010),
    ]
    return out


EXPECTED_UP = 60_000 + 60_000 + 66_000 + 300_000 + 60_000 + (DAY_MS - 60_010)


def test_scenario_in_order_matches_hand_computation(db: Db) -> None:
    kid = db.enroll()
    for r in _scenario(kid):
        db.put(r)
    assert up_total(db, kid) == EXPECTED_UP
    o1 = T0 + 3_600_000
    eur = db.rows("SELECT day, amount, count FROM agg_revenue_day WHERE cur = 'EUR' ORDER BY day")
    assert eur == [(day_of(o1), 200, 2), ("2026-01-02", 75, 1)]


# Hypothesis's examples per engine: each costs a few hundred transactions, several times
# slower on PostgreSQL (a round trip each statement), where fewer keep the suite's time.
EXAMPLES = {"sqlite": 60, "postgresql": 20}


def test_any_arrival_order_gives_the_same_aggregates(two_dbs: tuple[Db, Db]) -> None:
    reference, shuffled = two_dbs

    @settings(max_examples=EXAMPLES[reference.store.engine.name], deadline=None)
    @given(st.permutations(range(13)))
    def check(order: list[int]) -> None:
        reference.clear()
        shuffled.clear()
        kid = reference.enroll()
        records = _scenario(kid)
        for r in records:
            reference.put(r)
        shuffled.enroll()
        for i in order:
            shuffled.put(records[i])
        assert shuffled.snapshot() == reference.snapshot()
        assert up_total(shuffled, kid) == EXPECTED_UP

    check()


# ---------------------------------------------------------------------------- admin


def test_rebuild_reproduces_the_incremental_tables(db: Db) -> None:
    kid = db.enroll()
    for r in _scenario(kid):
        db.put(r)
    before = db.snapshot()
    with db.store.transaction():
        assert db.agg.rebuild() == 13
    assert db.snapshot() == before


def test_changed_tolerance_recomputes_at_startup(db: Db) -> None:
    kid = db.enroll()
    for r in _scenario(kid):
        db.put(r)
    strict = Aggregator(db.conn, 0.0)  # 66 s after 60 s is now down, and so is 60.01 s
    assert strict.tol_ppm == 0
    assert up_total(db, kid) == EXPECTED_UP - 66_000
    assert db.rows("SELECT value FROM agg_meta WHERE key = 'hb_tolerance_ppm'") == [("0",)]


def test_aggregate_config_section_is_checked() -> None:
    assert settings_from_config({}) == 0.1
    assert settings_from_config({"hb_tolerance": 0.25}) == 0.25
    assert settings_from_config({"hb_tolerance": 1}) == 1.0
    with pytest.raises(ConfigError, match=r"aggregate\.hb_tolerance: must be a number"):
        settings_from_config({"hb_tolerance": "10%"})
    with pytest.raises(ConfigError, match=r"aggregate\.hb_tolerance"):
        settings_from_config({"hb_tolerance": -0.1})
    with pytest.raises(ConfigError, match=r"aggregate\.hb_tol: unknown key"):
        settings_from_config({"hb_tol": 0.1})


def test_on_stored_cost_does_not_depend_on_history(db: Db, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every query on_stored runs is an indexed search, never a table scan: read from each
    engine's query plans (PostgreSQL's with sequential scans disabled, so that a scan left
    in a plan says no index serves the query, not that the table is small)."""
    kid = db.enroll()
    for r in _scenario(kid)[:5]:
        db.put(r)
    sqlite = db.store.engine.name == "sqlite"
    statements: list[tuple[str, Sequence[Any]]] = []
    if sqlite:  # the statements as run, parameters written in
        db.conn.set_trace_callback(lambda sql: statements.append((sql, ())))
    else:  # the statements and their parameters (an executemany's first row)
        execute, executemany = db.conn.execute, db.conn.executemany

        def spy(sql: str, params: Sequence[Any] = ()) -> Any:
            statements.append((sql, params))
            return execute(sql, params)

        def spy_many(sql: str, rows: Iterable[Sequence[Any]]) -> Any:
            rows = list(rows)
            statements.extend((sql, row) for row in rows[:1])
            return executemany(sql, rows)

        monkeypatch.setattr(db.conn, "execute", spy)
        monkeypatch.setattr(db.conn, "executemany", spy_many)
    db.put(rec(kid, 20, "hb", b=1, u=676_000, t=T0 + 4_276_000))
    db.put(rec(kid, 21, "rev", b=1, u=677_000, t=None, am=1, cur="EUR"))
    db.put(rec(kid, 30, "boot", b=3, u=0, t=None, received_ms=T0 + 9 * DAY_MS))
    db.put(rec(kid, 31, "hb", b=3, u=60_000, t=T0 + 8 * DAY_MS))  # re-places boot 3
    if sqlite:
        db.conn.set_trace_callback(None)
    else:
        monkeypatch.undo()
        db.conn.execute("SET enable_seqscan = off")
    plans: list[str] = []
    for sql, params in statements:
        if sql.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE")):
            explain = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN "
            plans += [row[-1] for row in db.conn.execute(explain + sql, params).fetchall()]
    if sqlite:  # a SCAN of a one-row subquery (LIMIT 1 co-routine) is fine; a table scan is not
        scans = [p for p in plans if p.startswith("SCAN") and "subquery" not in p]
    else:
        scans = [p for p in plans if "Seq Scan" in p]
    assert plans and not scans, scans
