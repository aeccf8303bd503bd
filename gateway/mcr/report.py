"""The MCR report: per device and period, from the aggregate tables; table, JSON and CSV.

Everything here reads: the aggregates are kept by gateway/mcr/aggregate.py as
records are stored. Report-time work is bounded by the rows of the period
(day rows, and the up intervals for outages), never by the whole history.
docs/MCR.md defines every figure; REPORT_SCHEMA below is the JSON Schema of
the JSON format (and is printed in docs/MCR.md).
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from signet_gateway.store.model import Device, DeviceLookupError, iso_ms
from signet_gateway.store.sqlite import Store

from . import scoring
from .aggregate import (
    DAY_MS,
    PLACED_RECEIVED,
    RULES_VERSION,
    day_of,
    day_start_ms,
    look_back_ms,
    rules_of,
)
from .display import counted, duration, exact_percent, money, number, rounded, seconds

REPORT_FORMAT: Final = "signet-mcr-report/1"
MAX_OUTAGES_LISTED: Final = 50  # the longest ones; the count and totals cover all

INTEGRITY_FINDINGS: Final = (
    "verified",
    "duplicate",
    "equivocation",
    "chain_break",
    "late",
    "future_time",
)


class ReportError(Exception):
    """The report cannot be made as asked (unknown device, bad date...)."""


@dataclass(frozen=True)
class Period:
    """Inclusive UTC days; either bound may be None (= the device's own history)."""

    day_from: str | None = None
    day_to: str | None = None

    @staticmethod
    def parse(day_from: str | None, day_to: str | None) -> Period:
        for name, value in (("--from", day_from), ("--to", day_to)):
            if value is not None:
                try:
                    _dt.date.fromisoformat(value)
                except ValueError:
                    raise ReportError(f"{name}: expected YYYY-MM-DD, got {value!r}") from None
                if len(value) != 10:
                    raise ReportError(f"{name}: expected YYYY-MM-DD, got {value!r}")
        if day_from is not None and day_to is not None and day_from > day_to:
            raise ReportError(f"--from {day_from} is after --to {day_to}")
        return Period(day_from, day_to)

    def days_for(self, first_ms: int, last_ms: int, as_of: int) -> tuple[str, str]:
        """The inclusive days for a device whose records are placed first_ms..last_ms."""
        day_from = self.day_from or day_of(first_ms)
        day_to = self.day_to or day_of(max(as_of, last_ms))
        return day_from, max(day_from, day_to)


def _span(conn: sqlite3.Connection, table: str, kids: Sequence[str]) -> tuple[int, int] | None:
    """The earliest and latest at_ms of these keys in an aggregate table (two index probes
    per key), or None if it holds none of theirs."""
    firsts, lasts = [], []
    for kid in kids:
        first = conn.execute(
            f"SELECT at_ms FROM {table} WHERE kid = ? ORDER BY at_ms LIMIT 1", (kid,)
        ).fetchone()
        last = conn.execute(
            f"SELECT at_ms FROM {table} WHERE kid = ? ORDER BY at_ms DESC LIMIT 1", (kid,)
        ).fetchone()
        if first is not None and last is not None:
            firsts.append(int(first[0]))
            lasts.append(int(last[0]))
    return (min(firsts), max(lasts)) if firsts else None


def record_span(conn: sqlite3.Connection, kids: Sequence[str]) -> tuple[int, int] | None:
    """Placed times of the first and last record of these keys."""
    return _span(conn, "agg_records", kids)


def _days(first: str, last: str) -> list[str]:
    start = _dt.date.fromisoformat(first)
    count = (_dt.date.fromisoformat(last) - start).days + 1
    return [(start + _dt.timedelta(days=i)).isoformat() for i in range(max(0, count))]


def check_rules(conn: sqlite3.Connection) -> None:
    """Refuse aggregates built under other placement rules: their figures would not be the
    ones docs/MCR.md defines (the gateway rebuilds them when it starts)."""
    rules = rules_of(conn)
    if rules != RULES_VERSION:
        raise ReportError(
            f"the aggregates were built under rules {rules}, this version reads rules"
            f" {RULES_VERSION}: start the gateway once with this version to rebuild them"
        )


def default_as_of(conn: sqlite3.Connection) -> int | None:
    """The latest receive time in the store: a re-run on the same database gives the same
    report. None for an empty store."""
    row = conn.execute("SELECT max(received_ms) FROM records").fetchone()
    return None if row is None or row[0] is None else int(row[0])


@dataclass(frozen=True)
class Machine:
    """What the report and the export group by: a machine and every key it has had (a
    rotation adds one, docs/TRUST.md). ``keys`` oldest first; the newest speaks for it."""

    keys: tuple[Device, ...]

    @property
    def machine(self) -> str:
        return self.keys[0].machine or self.keys[0].kid

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(k.kid for k in self.keys)

    @property
    def name(self) -> str | None:
        return next((k.name for k in reversed(self.keys) if k.name), None)

    @property
    def revoked_ms(self) -> int | None:
        """The earliest revocation of any of its keys: the operator withdrew trust then."""
        return min((k.revoked_ms for k in self.keys if k.revoked_ms is not None), default=None)

    @property
    def flagged(self) -> bool:
        return any(k.flagged for k in self.keys)

    def tier(self, kids: Iterable[str] | None = None) -> str:
        """'hardware' only if every key (of ``kids``, default all) is: one software key's
        records in a figure make the whole figure software-tier."""
        wanted = set(self.kids if kids is None else kids)
        keys = [k for k in self.keys if k.kid in wanted] or list(self.keys)
        return "hardware" if all(verified_hardware(k) for k in keys) else "software"


def verified_hardware(key: Device) -> bool:
    """Hardware tier on evidence that verified: the schema's CHECK already ties the one to
    the other; read both so that no other path to the tier exists here either."""
    return key.tier == "hardware" and key.evidence_kind is not None


def resolve_devices(conn: sqlite3.Connection, device: str | None) -> list[Machine]:
    """The machines to report, in enrollment order of their first key: all, or the one
    machine a key's id, id prefix or name belongs to (the store's one resolver;
    ReportError if none or several devices match)."""
    store = Store.over(conn)
    everything = store.devices()
    by_machine: dict[str, list[Device]] = {}
    for d in everything:  # enrollment order: a machine's first key comes first
        by_machine.setdefault(d.machine or d.kid, []).append(d)
    if device is not None:
        try:
            chosen = store.resolve_device(device)
        except DeviceLookupError as exc:
            raise ReportError(str(exc)) from None
        return [Machine(tuple(by_machine[chosen.machine or chosen.kid]))]
    return [Machine(tuple(keys)) for keys in by_machine.values()]


# ------------------------------------------------------------------ uptime


def _merge(
    intervals: Iterable[tuple[int, int]], lo: int, hi: int
) -> tuple[list[tuple[int, int]], int]:
    """Clip intervals (sorted by start) to [lo, hi) and merge them; also the clipped sum."""
    runs: list[tuple[int, int]] = []
    total = 0
    for start, end in intervals:
        s, e = max(start, lo), min(end, hi)
        if e <= s:
            continue
        total += e - s
        if runs and s <= runs[-1][1]:
            if e > runs[-1][1]:
                runs[-1] = (runs[-1][0], e)
        else:
            runs.append((s, e))
    return runs, total


def uptime(
    conn: sqlite3.Connection, kids: Sequence[str], period_lo: int, period_hi: int, as_of: int
) -> dict[str, Any]:
    """Uptime over the observed span: [first boot/heartbeat point, as_of] within the period,
    over the heartbeats of every key of one machine (their up intervals merged)."""
    first_at, last_at = _span(conn, "agg_points", kids) or (None, None)
    lo = period_lo if first_at is None else max(period_lo, first_at)
    hi = min(period_hi, as_of if last_at is None else max(as_of, last_at))
    result: dict[str, Any] = {
        "observed_from_ms": None,
        "observed_to_ms": None,
        "observed_ms": 0,
        "up_ms": 0,
        "down_ms": 0,
        "ratio": None,
        "outage_count": 0,
        "longest_outage_ms": 0,
        "outages": [],
        "overlap_ms": 0,
        "boots_placed_by_receive_time": 0,
        "daily": [],
    }
    if first_at is None or hi <= lo:
        return result
    intervals: list[tuple[int, int]] = []
    boots = 0
    daily_ms: dict[str, int] = {}
    for kid in kids:
        reach = look_back_ms(conn, kid)
        intervals += conn.execute(
            "SELECT up_start_ms, up_end_ms FROM agg_points WHERE kid = ?"
            " AND up_start_ms >= ? AND up_start_ms < ? ORDER BY up_start_ms",
            (kid, lo - reach, hi),
        ).fetchall()
        boots += conn.execute(
            "SELECT count(*) FROM agg_boots AS bt WHERE bt.kid = ? AND bt.t_n IS NULL AND EXISTS"
            " (SELECT 1 FROM agg_points AS p WHERE p.kid = bt.kid AND p.b = bt.b"
            " AND p.at_ms >= ? AND p.at_ms < ?)",
            (kid, lo, hi),
        ).fetchone()[0]
        for day, ms in conn.execute(
            "SELECT day, up_ms FROM agg_uptime_day WHERE kid = ? AND day >= ? AND day <= ?",
            (kid, day_of(lo), day_of(hi - 1)),
        ):
            daily_ms[day] = daily_ms.get(day, 0) + int(ms)
    intervals.sort()  # one key's rows come sorted; a machine's keys interleave
    runs, clipped = _merge(intervals, lo, hi)
    up = sum(e - s for s, e in runs)
    outages: list[tuple[int, int]] = []
    pos = lo
    for s, e in runs:
        if s > pos:
            outages.append((pos, s))
        pos = e
    if pos < hi:
        outages.append((pos, hi))
    longest = max(outages, key=lambda o: (o[1] - o[0], -o[0]), default=None)
    listed = sorted(outages, key=lambda o: (o[0] - o[1], o[0]))[:MAX_OUTAGES_LISTED]
    result.update(
        observed_from_ms=lo,
        observed_to_ms=hi,
        observed_ms=hi - lo,
        up_ms=up,
        down_ms=hi - lo - up,
        ratio=up / (hi - lo),
        outage_count=len(outages),
        longest_outage_ms=0 if longest is None else longest[1] - longest[0],
        outages=[
            {"start_ms": s, "end_ms": e, "start": iso_ms(s), "duration_ms": e - s}
            for s, e in sorted(listed)
        ],
        overlap_ms=clipped - up,
        boots_placed_by_receive_time=int(boots),
        daily=[{"day": d, "up_ms": ms} for d, ms in sorted(daily_ms.items())],
    )
    return result


# ------------------------------------------------------------------ revenue


def revenue(
    conn: sqlite3.Connection, kids: Sequence[str], first_day: str, last_day: str
) -> dict[str, Any]:
    """Per currency: sum, count, the daily series (zero days included), trend, volatility;
    summed over every key of one machine."""
    days = _days(first_day, last_day)
    lo, hi = day_start_ms(first_day), day_start_ms(last_day) + DAY_MS
    by_cur: dict[str, dict[str, tuple[int, int]]] = {}
    by_received: dict[str, int] = {}
    refunds: dict[str, int] = {}
    for kid in kids:
        for day, cur, amount, count in conn.execute(
            "SELECT day, cur, amount, count FROM agg_revenue_day WHERE kid = ?"
            " AND day >= ? AND day <= ?",
            (kid, first_day, last_day),
        ):
            a, c = by_cur.setdefault(cur, {}).get(day, (0, 0))
            by_cur[cur][day] = (a + int(amount), c + int(count))
        for cur, c in conn.execute(
            "SELECT cur, count(*) FROM agg_records WHERE kid = ? AND kind = 'rev' AND placed = ?"
            " AND at_ms >= ? AND at_ms < ? GROUP BY cur",
            (kid, PLACED_RECEIVED, lo, hi),
        ):
            by_received[cur] = by_received.get(cur, 0) + int(c)
        for cur, c in conn.execute(
            "SELECT cur, count(*) FROM agg_records WHERE kid = ? AND kind = 'rev'"
            " AND am < 0 AND at_ms >= ? AND at_ms < ? GROUP BY cur",
            (kid, lo, hi),
        ):
            refunds[cur] = refunds.get(cur, 0) + int(c)
    currencies = []
    for cur in sorted(by_cur):
        series = [by_cur[cur].get(d, (0, 0)) for d in days]
        stats = scoring.series_stats([a for a, _ in series])
        currencies.append(
            {
                "currency": cur,
                "amount": sum(a for a, _ in series),
                "count": sum(c for _, c in series),
                "refunds": refunds.get(cur, 0),
                "placed_by_receive_time": by_received.get(cur, 0),
                "days": stats.days,
                "mean_daily": stats.mean,
                "slope_per_day": stats.slope,
                "trend": stats.trend,
                "volatility": stats.volatility,
                "daily": [
                    {"day": d, "amount": a, "count": c}
                    for d, (a, c) in zip(days, series, strict=True)
                ],
            }
        )
    # The score reads one currency: the one with the most records (ties: alphabetical).
    primary = min(currencies, key=lambda c: (-c["count"], c["currency"]), default=None)
    return {
        "primary_currency": None if primary is None else primary["currency"],
        "currencies": currencies,
    }


# ------------------------------------------------------------------ the report


def integrity(
    conn: sqlite3.Connection,
    kids: Sequence[str],
    first_day: str,
    last_day: str,
    missing: Callable[[str], int] | None,
) -> dict[str, Any]:
    """The findings of every key of one machine, summed (each key's sequence and chain are
    its own: missing numbers and chain breaks are counted per key, then added)."""
    store = Store.over(conn)
    found: dict[str, int] = {}
    for kid in kids:
        for finding, count in store.findings(kid, first_day, last_day).items():
            found[finding] = found.get(finding, 0) + count
    refused = {
        f.split(":", 1)[1]: int(c) for f, c in sorted(found.items()) if f.startswith("refused:")
    }
    figures = {name: int(found.get(name, 0)) for name in INTEGRITY_FINDINGS}
    miss = None if missing is None else sum(int(missing(kid)) for kid in kids)
    bad = (miss or 0) + figures["chain_break"] + figures["future_time"]
    verified = figures["verified"]
    return {
        "verified": verified,
        "duplicates": figures["duplicate"],
        "equivocations": figures["equivocation"],
        "chain_breaks": figures["chain_break"],
        "late": figures["late"],
        "future_time": figures["future_time"],
        "missing": miss,
        "refused": refused,
        "refused_total": sum(refused.values()),
        "ratio": verified / (verified + bad) if verified + bad > 0 else None,
    }


def _history(conn: sqlite3.Connection, kids: Sequence[str], until_ms: int) -> dict[str, Any]:
    firsts, lasts = [], []
    for kid in kids:
        first = conn.execute(
            "SELECT at_ms FROM agg_records WHERE kid = ? ORDER BY at_ms LIMIT 1", (kid,)
        ).fetchone()
        last = conn.execute(
            "SELECT at_ms FROM agg_records WHERE kid = ? AND at_ms < ? ORDER BY at_ms DESC LIMIT 1",
            (kid, until_ms),
        ).fetchone()
        if first is not None:
            firsts.append(int(first[0]))
        if last is not None:
            lasts.append(int(last[0]))
    if not firsts or not lasts:
        return {"first_ms": None, "last_ms": None, "first": None, "last": None, "days": 0.0}
    f, la = min(firsts), max(lasts)
    return {
        "first_ms": f,
        "last_ms": la,
        "first": iso_ms(f),
        "last": iso_ms(la),
        "days": max(0, la - f) / DAY_MS,
    }


def keys_in(conn: sqlite3.Connection, kids: Sequence[str], lo: int, hi: int) -> list[str]:
    """The keys with a record placed in [lo, hi): whose tier a figure of that period has."""
    return [
        kid
        for kid in kids
        if conn.execute(
            "SELECT 1 FROM agg_records WHERE kid = ? AND at_ms >= ? AND at_ms < ? LIMIT 1",
            (kid, lo, hi),
        ).fetchone()
    ]


def device_report(
    conn: sqlite3.Connection,
    machine: Machine,
    period: Period,
    as_of: int,
    missing: Callable[[str], int] | None,
) -> dict[str, Any] | None:
    """One machine's report (every key it has had), or None when it has no record at all."""
    kids = machine.kids
    revoked_ms, flagged = machine.revoked_ms, machine.flagged
    span = record_span(conn, kids)
    if span is None:
        return None
    first, last = span
    day_from, day_to = period.days_for(first, last, as_of)
    lo, hi = day_start_ms(day_from), day_start_ms(day_to) + DAY_MS
    # The revenue series runs over the days the device could have earned in this period.
    series_from = max(day_from, day_of(first))
    series_to = min(day_to, day_of(max(as_of, last)))
    rev = (
        revenue(conn, kids, series_from, series_to)
        if series_from <= series_to
        else {"primary_currency": None, "currencies": []}
    )
    up = uptime(conn, kids, lo, hi, as_of)
    integ = integrity(conn, kids, day_from, day_to, missing)
    hist = _history(conn, kids, hi)
    # The tier of what the period's figures are made of: hardware only if every key whose
    # records are in it is (a software key's records in a sum make the sum software-tier).
    tier = machine.tier(keys_in(conn, kids, lo, hi))
    primary = next((c for c in rev["currencies"] if c["currency"] == rev["primary_currency"]), None)
    stats = (
        None
        if primary is None
        else scoring.SeriesStats(
            primary["days"],
            primary["mean_daily"],
            primary["slope_per_day"],
            primary["trend"],
            primary["volatility"],
        )
    )
    equivocations = integ["equivocations"] + (1 if flagged and not integ["equivocations"] else 0)
    result = scoring.score(
        scoring.ScoreInputs(
            uptime_ratio=up["ratio"],
            integrity_ratio=integ["ratio"],
            revenue=stats,
            tier=tier,
            history_days=hist["days"],
            equivocations=equivocations,
            revoked=revoked_ms is not None,
        )
    )
    return {
        "device": machine.machine,
        "name": machine.name,
        "tier": tier,
        "revoked_ms": revoked_ms,
        "flagged": bool(flagged),
        "keys": [
            {
                "device": k.kid,
                "tier": k.tier,
                "evidence_kind": k.evidence_kind,
                "replaces": k.replaces,
                "last_n": k.last_n,
                "revoked_ms": k.revoked_ms,
            }
            for k in machine.keys
        ],
        "period": {"from": day_from, "to": day_to, "from_ms": lo, "to_ms": hi},
        "revenue": rev,
        "uptime": up,
        "integrity": integ,
        "history": hist,
        "score": {
            "score": result.score,
            "letter": result.letter,
            "raw": result.raw,
            "label": result.label,
            "components": [
                {
                    "name": c.name,
                    "weight": c.weight,
                    "fraction": c.fraction,
                    "points": c.points,
                    "basis": c.basis,
                }
                for c in result.components
            ],
            "caps": list(result.caps),
        },
    }


def build_report(
    conn: sqlite3.Connection,
    *,
    device: str | None = None,
    period: Period | None = None,
    as_of_ms: int | None = None,
    missing: Callable[[str], int] | None = None,
    hb_tolerance: float | None = None,
) -> dict[str, Any]:
    """The whole report as a JSON-ready dict (see REPORT_SCHEMA)."""
    check_rules(conn)
    period = period or Period()
    machines = resolve_devices(conn, device)
    as_of = as_of_ms if as_of_ms is not None else default_as_of(conn)
    reports = []
    if as_of is not None:
        for machine in machines:
            one = device_report(conn, machine, period, as_of, missing)
            if one is not None:
                reports.append(one)
    unattributed = sum(
        count
        for finding, count in Store.over(conn).findings("").items()
        if finding.startswith("refused:")
    )
    if hb_tolerance is None:
        row = conn.execute("SELECT value FROM agg_meta WHERE key = 'hb_tolerance_ppm'").fetchone()
        hb_tolerance = None if row is None else int(row[0]) / 1_000_000
    return {
        "format": REPORT_FORMAT,
        "as_of_ms": as_of,
        "as_of": iso_ms(as_of),
        "hb_tolerance": hb_tolerance,
        "score_label": scoring.SCORE_LABEL,
        "refused_unattributed": int(unattributed),
        "devices": reports,
    }


# ------------------------------------------------------------------ rendering


def render_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=False)


CSV_FIXED: Final = (
    "device",
    "name",
    "tier",
    "revoked",
    "flagged",
    "period_from",
    "period_to",
    "score",
    "letter",
    "uptime_ratio",
    "up_s",
    "down_s",
    "outages",
    "longest_outage_s",
    "verified",
    "missing",
    "chain_breaks",
    "equivocations",
    "late",
    "future_time",
    "refused",
    "duplicates",
    "history_days",
    "primary_currency",
)
# Then, per currency present in the report (sorted), these columns suffixed _<CUR>.
CSV_PER_CURRENCY: Final = ("revenue", "count", "trend", "volatility")


def render_csv(report: dict[str, Any]) -> str:
    """One row per device and period; revenue columns per currency seen in the report.

    Nothing is rounded: numbers are the JSON report's (same text), durations in seconds
    written exactly (display.seconds); null is an empty cell.
    """
    currencies = sorted(
        {c["currency"] for d in report["devices"] for c in d["revenue"]["currencies"]}
    )
    header = list(CSV_FIXED) + [f"{f}_{c}" for c in currencies for f in CSV_PER_CURRENCY]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for d in report["devices"]:
        up, integ = d["uptime"], d["integrity"]
        row: list[Any] = [
            d["device"],
            d["name"] or "",
            d["tier"],
            int(d["revoked_ms"] is not None),
            int(d["flagged"]),
            d["period"]["from"],
            d["period"]["to"],
            d["score"]["score"],
            d["score"]["letter"],
            number(up["ratio"]),
            seconds(up["up_ms"]),
            seconds(up["down_ms"]),
            up["outage_count"],
            seconds(up["longest_outage_ms"]),
            integ["verified"],
            "" if integ["missing"] is None else integ["missing"],
            integ["chain_breaks"],
            integ["equivocations"],
            integ["late"],
            integ["future_time"],
            integ["refused_total"],
            integ["duplicates"],
            number(d["history"]["days"]),
            d["revenue"]["primary_currency"] or "",
        ]
        by_cur = {c["currency"]: c for c in d["revenue"]["currencies"]}
        for cur in currencies:
            c = by_cur.get(cur)
            if c is None:
                row += ["", "", "", ""]
            else:
                row += [
                    c["amount"],
                    c["count"],
                    number(c["trend"]),
                    number(c["volatility"]),
                ]
        writer.writerow(row)
    return out.getvalue()


def render_table(report: dict[str, Any]) -> str:
    lines = [
        f"Signet MCR report, as of {report['as_of'] or 'n/a (no records)'}"
        f"   heartbeat tolerance {exact_percent(report['hb_tolerance'])}",
        f"Score: {report['score_label']} (formula in docs/MCR.md).",
    ]
    if not report["devices"]:
        lines.append("No device has stored records.")
    for d in report["devices"]:
        sc, up, integ, hist = d["score"], d["uptime"], d["integrity"], d["history"]
        state = []
        if d["revoked_ms"] is not None:
            state.append(f"REVOKED {iso_ms(d['revoked_ms'])}")
        if d["flagged"]:
            state.append("FLAGGED: equivocation")
        lines += [
            "",
            f"device {d['device']}" + (f"  ({d['name']})" if d["name"] else ""),
            f"  tier {d['tier']}   period {d['period']['from']} .. {d['period']['to']}"
            + (f"   {', '.join(state)}" if state else ""),
            f"  score {sc['score']:3d}  {sc['letter']}",
        ]
        if len(d["keys"]) > 1:  # a rotated machine: its keys, oldest first
            lines.insert(
                -1,
                "  keys       "
                + ", ".join(
                    k["device"]
                    + (" (current)" if k["last_n"] is None else f" (n <= {k['last_n']})")
                    for k in d["keys"]
                ),
            )
        for c in sc["components"]:
            lines.append(
                f"    {c['name']:<10} {rounded(c['points'], 2):>6} of {rounded(c['weight'], 1):>5}"
                f"   {c['basis']}"
            )
        for cap in sc["caps"]:
            lines.append(f"    CAP: {cap}")
        if not d["revenue"]["currencies"]:
            lines.append("  revenue    none in period")
        for c in d["revenue"]["currencies"]:
            mark = " (primary)" if c["currency"] == d["revenue"]["primary_currency"] else ""
            trend = c["trend"]
            lines.append(
                f"  revenue    {money(c['amount'], c['currency'])}{mark}"
                f"  {counted(c['count'], 'record')} ({counted(c['refunds'], 'refund')})"
                f" over {counted(c['days'], 'day')};"
                f" trend {rounded(trend, 2, sign=True, percent=True)}"
                + ("" if trend is None else "/day")
                + f", volatility {rounded(c['volatility'], 2)}"
            )
            if c["placed_by_receive_time"]:
                lines.append(
                    f"             {c['placed_by_receive_time']} placed by receive time"
                    " (device clock never synced in that boot)"
                )
        lines.append(
            f"  uptime     {rounded(up['ratio'], 2, percent=True)}  up {duration(up['up_ms'])},"
            f" down {duration(up['down_ms'])} of {duration(up['observed_ms'])} observed;"
            f" {counted(up['outage_count'], 'outage')},"
            f" longest {duration(up['longest_outage_ms'])}"
        )
        if up["boots_placed_by_receive_time"]:
            lines.append(
                f"             {counted(up['boots_placed_by_receive_time'], 'boot')} placed by"
                " receive time (no synced clock)"
            )
        if up["overlap_ms"]:
            lines.append(
                f"             {duration(up['overlap_ms'])} of overlapping boots counted once"
            )
        refused = ", ".join(f"{k} {v}" for k, v in integ["refused"].items()) or "none"
        lines += [
            f"  integrity  verified {integ['verified']}, missing "
            f"{'n/a' if integ['missing'] is None else integ['missing']},"
            f" chain breaks {integ['chain_breaks']}, equivocations {integ['equivocations']},"
            f" late {integ['late']}, future time {integ['future_time']},"
            f" duplicates {integ['duplicates']}",
            f"             refused {integ['refused_total']} ({refused})",
            f"  history    {rounded(hist['days'], 2)} days ({hist['first']} .. {hist['last']})",
        ]
    if report["refused_unattributed"]:
        lines += [
            "",
            f"Refused input naming no enrolled device: {report['refused_unattributed']}",
        ]
    return "\n".join(lines) + "\n"


def render(report: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return render_json(report) + "\n"
    if fmt == "csv":
        return render_csv(report)
    if fmt == "table":
        return render_table(report)
    raise ReportError(f"--format: expected table, json or csv, got {fmt!r}")


# ------------------------------------------------------------------ JSON Schema

_INT: Final = {"type": "integer"}
_NUM: Final = {"type": "number"}
_OPT_NUM: Final = {"type": ["number", "null"]}
_OPT_INT: Final = {"type": ["integer", "null"]}
_DAY: Final = {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}
_MS_ISO: Final = {"type": ["string", "null"], "pattern": "Z$"}


def _obj(props: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "required": sorted(props),
        "additionalProperties": False,
        "properties": props,
        **extra,
    }


REPORT_SCHEMA: Final[dict[str, Any]] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://signet.invalid/schemas/mcr-report-1.json",
    "title": "Signet MCR report (signet report --format json)",
    **_obj(
        {
            "format": {"const": REPORT_FORMAT},
            "as_of_ms": _OPT_INT,
            "as_of": _MS_ISO,
            "hb_tolerance": _OPT_NUM,
            "score_label": {"const": scoring.SCORE_LABEL},
            "refused_unattributed": {"type": "integer", "minimum": 0},
            "devices": {"type": "array", "items": {"$ref": "#/$defs/device"}},
        }
    ),
    "$defs": {
        "device": _obj(
            {
                "device": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                "name": {"type": ["string", "null"]},
                "tier": {"enum": ["software", "hardware"]},
                "revoked_ms": _OPT_INT,
                "flagged": {"type": "boolean"},
                "keys": {
                    "type": "array",
                    "minItems": 1,
                    "items": _obj(
                        {
                            "device": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                            "tier": {"enum": ["software", "hardware"]},
                            "evidence_kind": {"type": ["string", "null"]},
                            "replaces": {"type": ["string", "null"]},
                            "last_n": _OPT_INT,
                            "revoked_ms": _OPT_INT,
                        }
                    ),
                },
                "period": _obj(
                    {"from": _DAY, "to": _DAY, "from_ms": _INT, "to_ms": _INT},
                ),
                "revenue": _obj(
                    {
                        "primary_currency": {"type": ["string", "null"]},
                        "currencies": {"type": "array", "items": {"$ref": "#/$defs/currency"}},
                    }
                ),
                "uptime": {"$ref": "#/$defs/uptime"},
                "integrity": {"$ref": "#/$defs/integrity"},
                "history": _obj(
                    {
                        "first_ms": _OPT_INT,
                        "last_ms": _OPT_INT,
                        "first": _MS_ISO,
                        "last": _MS_ISO,
                        "days": {"type": "number", "minimum": 0},
                    }
                ),
                "score": {"$ref": "#/$defs/score"},
            }
        ),
        "currency": _obj(
            {
                "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
                "amount": _INT,
                "count": {"type": "integer", "minimum": 0},
                "refunds": {"type": "integer", "minimum": 0},
                "placed_by_receive_time": {"type": "integer", "minimum": 0},
                "days": {"type": "integer", "minimum": 0},
                "mean_daily": _NUM,
                "slope_per_day": _OPT_NUM,
                "trend": _OPT_NUM,
                "volatility": {"type": ["number", "null"], "minimum": 0},
                "daily": {
                    "type": "array",
                    "items": _obj(
                        {"day": _DAY, "amount": _INT, "count": {"type": "integer", "minimum": 0}}
                    ),
                },
            }
        ),
        "uptime": _obj(
            {
                "observed_from_ms": _OPT_INT,
                "observed_to_ms": _OPT_INT,
                "observed_ms": {"type": "integer", "minimum": 0},
                "up_ms": {"type": "integer", "minimum": 0},
                "down_ms": {"type": "integer", "minimum": 0},
                "ratio": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
                "outage_count": {"type": "integer", "minimum": 0},
                "longest_outage_ms": {"type": "integer", "minimum": 0},
                "outages": {
                    "type": "array",
                    "maxItems": MAX_OUTAGES_LISTED,
                    "items": _obj(
                        {
                            "start_ms": _INT,
                            "end_ms": _INT,
                            "start": _MS_ISO,
                            "duration_ms": {"type": "integer", "minimum": 1},
                        }
                    ),
                },
                "overlap_ms": {"type": "integer", "minimum": 0},
                "boots_placed_by_receive_time": {"type": "integer", "minimum": 0},
                "daily": {
                    "type": "array",
                    "items": _obj({"day": _DAY, "up_ms": {"type": "integer", "minimum": 0}}),
                },
            }
        ),
        "integrity": _obj(
            {
                "verified": {"type": "integer", "minimum": 0},
                "duplicates": {"type": "integer", "minimum": 0},
                "equivocations": {"type": "integer", "minimum": 0},
                "chain_breaks": {"type": "integer", "minimum": 0},
                "late": {"type": "integer", "minimum": 0},
                "future_time": {"type": "integer", "minimum": 0},
                "missing": {"type": ["integer", "null"], "minimum": 0},
                "refused": {
                    "type": "object",
                    "additionalProperties": {"type": "integer", "minimum": 0},
                },
                "refused_total": {"type": "integer", "minimum": 0},
                "ratio": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
            }
        ),
        "score": _obj(
            {
                "score": {"type": "integer", "minimum": 0, "maximum": 100},
                "letter": {"enum": ["AAA", "AA", "A", "BBB", "BB", "B", "NR"]},
                "raw": _NUM,
                "label": {"const": scoring.SCORE_LABEL},
                "components": {
                    "type": "array",
                    "minItems": 6,
                    "maxItems": 6,
                    "items": _obj(
                        {
                            "name": {
                                "enum": [
                                    "uptime",
                                    "integrity",
                                    "stability",
                                    "trend",
                                    "trust",
                                    "history",
                                ]
                            },
                            "weight": _NUM,
                            "fraction": {"type": "number", "minimum": 0, "maximum": 1},
                            "points": {"type": "number", "minimum": 0},
                            "basis": {"type": "string"},
                        }
                    ),
                },
                "caps": {"type": "array", "items": {"type": "string"}},
            }
        ),
    },
}
