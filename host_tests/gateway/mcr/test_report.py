"""The MCR report: figures against hand computation, score and letters, the three formats."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import jsonschema
import pytest
from test_aggregate import DAY_MS, T0, Db, rec

from kit.paths import REPO
from signet_gateway.mcr import display, scoring
from signet_gateway.mcr.aggregate import (
    PLACED_BOOT_T,
    PLACED_RECORD_T,
    RULES_VERSION,
    Aggregator,
)
from signet_gateway.mcr.peaq import export_events
from signet_gateway.mcr.report import (
    REPORT_SCHEMA,
    Period,
    ReportError,
    build_report,
    render,
)
from signet_tools.cli import main as cli

DOC = REPO / "docs" / "MCR.md"
HOUR = 3_600_000


def fleet(db: Db) -> tuple[str, str]:
    """A software device with a known day, and a hardware one that equivocated."""
    a = db.enroll(seed=1, name="cafe-1")
    # Day 1: boot at 00:00, heartbeats every minute until 01:00, then silence until 02:00,
    # reboot at 02:00, heartbeats until 03:00. Revenue 250 + 100 - 50 EUR on day 1,
    # 400 EUR on day 2.
    n = 1
    db.put(rec(a, n, "boot", b=1, u=0, t=T0))
    for i in range(1, 61):
        n += 1
        db.put(rec(a, n, "hb", b=1, u=i * 60_000, t=T0 + i * 60_000))
    for am in (250, 100, -50):
        n += 1
        db.put(rec(a, n, "rev", b=1, u=30 * 60_000 + n, t=T0 + 30 * 60_000 + n, am=am, cur="EUR"))
    n = 100
    db.put(rec(a, n, "boot", b=2, u=0, t=T0 + 2 * HOUR))
    for i in range(1, 61):
        n += 1
        db.put(rec(a, n, "hb", b=2, u=i * 60_000, t=T0 + 2 * HOUR + i * 60_000))
    n += 1
    db.put(rec(a, n, "rev", b=2, u=3_600_001, t=T0 + DAY_MS + 5, am=400, cur="EUR"))
    db.finding(a, "2026-01-01", "verified", 126)
    db.finding(a, "2026-01-02", "verified", 1)
    db.finding(a, "2026-01-01", "late", 3)
    db.finding(a, "2026-01-01", "refused:bad_signature", 2)

    h = db.enroll(seed=2, tier="hardware")
    db.put(rec(h, 1, "boot", u=0, t=T0))
    db.put(rec(h, 2, "hb", u=60_000, t=T0 + 60_000))
    db.put(rec(h, 3, "rev", u=61_000, t=T0 + 61_000, am=999, cur="USD"))
    db.conn.execute("UPDATE devices SET flagged = 1 WHERE kid = ?", (h,))
    db.finding(h, "2026-01-01", "verified", 3)
    db.finding(h, "2026-01-01", "equivocation", 1)
    db.finding("", "2026-01-01", "refused:unknown_key", 7)
    return a, h


AS_OF = T0 + DAY_MS + HOUR  # 2026-01-02T01:00Z


@pytest.fixture
def report(db: Db) -> dict:
    fleet(db)
    return build_report(db.conn, as_of_ms=AS_OF, missing=lambda kid: 4)


def test_uptime_figures_match_hand_computation(report: dict) -> None:
    a = report["devices"][0]
    up = a["uptime"]
    # Observed from the first boot (T0) to as_of (T0 + 25 h): up 1 h + 1 h.
    assert up["observed_from_ms"] == T0
    assert up["observed_to_ms"] == AS_OF
    assert up["up_ms"] == 2 * HOUR
    assert up["down_ms"] == 23 * HOUR
    assert up["ratio"] == pytest.approx(2 / 25)
    # Outages: 01:00-02:00 and 03:00 until as_of (22 h, the longest).
    assert up["outage_count"] == 2
    assert up["longest_outage_ms"] == 22 * HOUR
    assert [(o["start_ms"], o["duration_ms"]) for o in up["outages"]] == [
        (T0 + HOUR, HOUR),
        (T0 + 3 * HOUR, 22 * HOUR),
    ]
    assert up["daily"] == [{"day": "2026-01-01", "up_ms": 2 * HOUR}]


def test_revenue_integrity_history_and_score(report: dict) -> None:
    a, h = report["devices"]
    eur = a["revenue"]["currencies"][0]
    assert (eur["currency"], eur["amount"], eur["count"], eur["refunds"]) == ("EUR", 700, 4, 1)
    assert [d["amount"] for d in eur["daily"]] == [300, 400]
    assert eur["slope_per_day"] == pytest.approx(100)
    assert eur["trend"] == pytest.approx(100 / 350)
    assert eur["volatility"] == pytest.approx(50 / 350)
    integ = a["integrity"]
    assert integ["verified"] == 127
    assert integ["missing"] == 4
    assert integ["late"] == 3
    assert integ["refused"] == {"bad_signature": 2}
    assert integ["ratio"] == pytest.approx(127 / 131)
    assert a["history"]["days"] == pytest.approx((DAY_MS + 5) / DAY_MS)
    sc = a["score"]
    parts = {c["name"]: c["points"] for c in sc["components"]}
    assert parts["uptime"] == pytest.approx(30 * 2 / 25)
    assert parts["integrity"] == pytest.approx(20 * 127 / 131)
    assert parts["stability"] == pytest.approx(20 * (1 - 50 / 350))
    assert parts["trend"] == pytest.approx(15)
    assert parts["trust"] == pytest.approx(4)
    assert parts["history"] == pytest.approx(5 * ((DAY_MS + 5) / DAY_MS) / 90)
    assert sc["score"] == math.floor(sum(parts.values()) + 0.5)
    assert sc["letter"] == scoring.letter(sc["score"])
    assert sc["caps"] == []
    # The equivocating hardware device is capped inside NR whatever else it shows.
    assert h["flagged"] is True
    assert h["score"]["score"] <= 29 and h["score"]["letter"] == "NR"
    assert h["score"]["caps"] and "equivocation" in h["score"]["caps"][0]
    assert report["refused_unattributed"] == 7


def test_period_bounds_select_days(new_db: Callable[..., Db]) -> None:
    db = new_db()
    a, _ = fleet(db)
    day2 = build_report(
        db.conn, device=a, period=Period.parse("2026-01-02", "2026-01-02"), as_of_ms=AS_OF
    )
    (d,) = day2["devices"]
    assert d["period"]["from"] == d["period"]["to"] == "2026-01-02"
    assert d["revenue"]["currencies"][0]["amount"] == 400
    assert d["integrity"]["verified"] == 1
    assert d["uptime"]["up_ms"] == 0 and d["uptime"]["observed_ms"] == HOUR
    with pytest.raises(ReportError, match="--from 2026-01-03 is after --to"):
        Period.parse("2026-01-03", "2026-01-02")
    with pytest.raises(ReportError, match="expected YYYY-MM-DD"):
        Period.parse("2026-1-3", None)
    with pytest.raises(ReportError, match="no device 'ffffffff' is enrolled"):
        build_report(db.conn, device="ffffffff")


def test_json_output_validates_against_the_documented_schema(report: dict) -> None:
    jsonschema.Draft202012Validator.check_schema(REPORT_SCHEMA)
    document = json.loads(render(report, "json"))
    jsonschema.validate(document, REPORT_SCHEMA)
    broken = json.loads(render(report, "json"))
    broken["devices"][0]["score"]["letter"] = "AAA+"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, REPORT_SCHEMA)


def test_docs_print_the_same_schema() -> None:
    text = DOC.read_text()
    blocks = re.findall(r"```json\n(.*?)```", text, flags=re.S)
    schemas = [json.loads(b) for b in blocks if '"$schema"' in b]
    assert schemas == [REPORT_SCHEMA]


def test_csv_has_one_row_per_device_and_period(report: dict) -> None:
    rows = list(csv.DictReader(io.StringIO(render(report, "csv"))))
    assert len(rows) == 2
    a, h = rows
    assert a["name"] == "cafe-1" and a["tier"] == "software"
    assert int(a["revenue_EUR"]) == 700 and a["revenue_USD"] == ""
    assert int(h["revenue_USD"]) == 999
    assert int(a["up_s"]) == 7200 and int(a["longest_outage_s"]) == 22 * 3600
    assert int(a["score"]) == report["devices"][0]["score"]["score"]
    assert h["letter"] == "NR" and h["flagged"] == "1"


def test_table_shows_the_figures(report: dict) -> None:
    text = render(report, "table")
    a = report["devices"][0]
    assert "Signet's own indicative score, not peaq's" in text
    assert f"score {a['score']['score']:3d}  {a['score']['letter']}" in text
    assert "7.00 EUR (primary)  4 records (1 refund) over 2 days;" in text
    assert "9.99 USD" in text
    assert "uptime     8.00%  up 2h 0m 0s, down 23h 0m 0s" in text
    assert "2 outages, longest 22h 0m 0s" in text
    assert "verified 127, missing 4" in text
    assert "FLAGGED: equivocation" in text
    assert "CAP: equivocation" in text
    assert "Refused input naming no enrolled device: 7" in text


# ---------------------------------------------------------------------------- score


@pytest.mark.parametrize(
    ("score", "letter"),
    [
        (100, "AAA"),
        (95, "AAA"),
        (94, "AA"),
        (85, "AA"),
        (84, "A"),
        (75, "A"),
        (74, "BBB"),
        (60, "BBB"),
        (59, "BB"),
        (45, "BB"),
        (44, "B"),
        (30, "B"),
        (29, "NR"),
        (0, "NR"),
    ],
)
def test_letter_boundaries(score: int, letter: str) -> None:
    assert scoring.letter(score) == letter


def _inputs(**changes: object) -> scoring.ScoreInputs:
    base = {
        "uptime_ratio": 1.0,
        "integrity_ratio": 1.0,
        "revenue": scoring.series_stats([100] * 30),
        "tier": "hardware",
        "history_days": 120.0,
        "equivocations": 0,
        "revoked": False,
    }
    base.update(changes)
    return scoring.ScoreInputs(**base)  # type: ignore[arg-type]


def test_score_formula_and_caps() -> None:
    best = scoring.score(_inputs())
    assert (best.score, best.letter, best.caps) == (100, "AAA", ())
    assert [c.weight for c in best.components] == [30, 20, 20, 15, 10, 5]
    software = scoring.score(_inputs(tier="software"))
    assert software.score == 94 and software.letter == "AA"
    assert scoring.score(_inputs(equivocations=1)).score == 29
    assert scoring.score(_inputs(equivocations=1)).letter == "NR"
    revoked = scoring.score(_inputs(revoked=True))
    assert (revoked.score, revoked.letter) == (29, "NR") and "revoked" in revoked.caps[0]
    # Revenue falling 10 %/day or faster earns no trend points; half at 5 %/day.
    falling = scoring.score(_inputs(revenue=scoring.SeriesStats(10, 100.0, -10.0, -0.10, 0.0)))
    assert falling.components[3].points == 0
    half = scoring.score(_inputs(revenue=scoring.SeriesStats(10, 100.0, -5.0, -0.05, 0.0)))
    assert half.components[3].points == pytest.approx(7.5)
    # Rounding: raw 74.5 rounds to 75 = A.
    mid = scoring.score(_inputs(uptime_ratio=1 - 25.5 / 30))
    assert mid.raw == pytest.approx(74.5) and (mid.score, mid.letter) == (75, "A")
    nothing = scoring.score(_inputs(uptime_ratio=None, integrity_ratio=None, revenue=None))
    assert nothing.score == 15
    # One day of revenue proves neither stability nor a trend: half of each.
    one_day = scoring.score(_inputs(revenue=scoring.series_stats([500])))
    assert [c.points for c in one_day.components[2:4]] == [10, 7.5]
    assert one_day.score == 83


def test_series_stats_by_hand() -> None:
    s = scoring.series_stats([100, 200, 300])
    assert (s.days, s.mean, s.slope) == (3, 200, pytest.approx(100))
    assert s.trend == pytest.approx(0.5)
    assert s.volatility == pytest.approx(math.sqrt(20_000 / 3) / 200)
    assert scoring.series_stats([0, 0]).volatility is None
    assert scoring.series_stats([500]).trend is None
    assert scoring.series_stats([500]).volatility == 0


# ---------------------------------------------------------------------------- CLI


def test_cli_report_reads_a_gateway_database(store_at: Path | str, tmp_path: Path, capsys) -> None:
    db = Db(store_at)
    fleet(db)
    db.close()
    path = str(store_at)
    assert cli.main(["report", "--db", path, "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    jsonschema.validate(document, REPORT_SCHEMA)
    assert len(document["devices"]) == 2
    assert cli.main(["report", "--db", path, "--device", "cafe-1"]) == 0
    assert "cafe-1" in capsys.readouterr().out
    toml = tmp_path / "gateway.toml"
    where = f'url = "{path}"' if isinstance(store_at, str) else f'path = "{store_at.name}"'
    toml.write_text(f"[store]\n{where}\n[aggregate]\nhb_tolerance = 0.1\n")
    assert cli.main(["report", "--config", str(toml), "--format", "csv"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    assert cli.main(["report", "--db", str(tmp_path / "nope.db")]) == 2
    assert "nope.db does not exist: create it with `signet db init" in capsys.readouterr().err
    assert cli.main(["report", "--db", path, "--from", "yesterday"]) == 2
    assert "--from: expected YYYY-MM-DD" in capsys.readouterr().err


def test_docs_worked_example(db: Db) -> None:
    """docs/MCR.md section 3: up 486 s of 1260 s, outages 127 s and 647 s."""
    kid = db.enroll()
    o1, o2 = T0 + 10 * HOUR, T0 + 10 * HOUR + 1_200_000
    db.put(rec(kid, 1, "boot", b=1, u=0, t=o1))
    for n, u, iv in ((2, 60, 60), (3, 126, 60), (4, 253, 60), (5, 553, 300)):
        db.put(rec(kid, n, "hb", b=1, u=u * 1000, t=o1 + u * 1000, iv=iv * 1000))
    db.put(rec(kid, 7, "boot", b=2, u=0, t=o2))
    db.put(rec(kid, 8, "hb", b=2, u=60_000, t=o2 + 60_000))
    up = build_report(db.conn, as_of_ms=o2 + 60_000)["devices"][0]["uptime"]
    assert (up["observed_ms"], up["up_ms"], up["down_ms"]) == (1_260_000, 486_000, 774_000)
    assert round(up["ratio"], 3) == 0.386
    assert sorted(o["duration_ms"] for o in up["outages"]) == [127_000, 647_000]
    assert up["longest_outage_ms"] == 647_000


# ---------------------------------------------------------------------------- formats agree


def _frac_report(db: Db) -> dict:
    """Up 48.7 s, then 61.5 s of silence until as_of: fractional seconds everywhere."""
    kid = db.enroll(name="frac")
    db.put(rec(kid, 1, "boot", u=0, t=T0))
    db.put(rec(kid, 2, "hb", u=48_700, t=T0 + 48_700))  # iv 60 s: the 48.7 s are up
    return build_report(db.conn, as_of_ms=T0 + 48_700 + 61_500)


def test_a_fractional_duration_agrees_in_json_csv_and_table(db: Db) -> None:
    report = json.loads(render(_frac_report(db), "json"))
    (d,) = report["devices"]
    up = d["uptime"]
    assert (up["up_ms"], up["down_ms"], up["longest_outage_ms"]) == (48_700, 61_500, 61_500)
    (row,) = csv.DictReader(io.StringIO(render(report, "csv")))
    # CSV: the JSON figures, nothing lost: ms as exact seconds, floats in JSON's own text.
    for column, field in (("up_s", "up_ms"), ("down_s", "down_ms")):
        assert Decimal(row[column]) * 1000 == up[field]
    assert Decimal(row["longest_outage_s"]) * 1000 == up["longest_outage_ms"]
    assert (row["up_s"], row["down_s"], row["longest_outage_s"]) == ("48.7", "61.5", "61.5")
    assert row["uptime_ratio"] == json.dumps(up["ratio"])
    assert float(row["uptime_ratio"]) == up["ratio"]
    assert float(row["history_days"]) == d["history"]["days"]
    # Table: the same figures rounded half up to the unit shown (61.5 s is 1m 2s, not 1m 1s).
    text = render(report, "table")
    assert "up 48.7s, down 1m 2s of 1m 50s observed; 1 outage, longest 1m 2s" in text
    assert "uptime     44.19%  up" in text  # 0.44192...: the JSON ratio, half up


def test_fleet_floats_in_csv_are_the_json_values(report: dict) -> None:
    a = report["devices"][0]
    eur = a["revenue"]["currencies"][0]
    row = next(csv.DictReader(io.StringIO(render(report, "csv"))))
    assert float(row["trend_EUR"]) == eur["trend"]  # 100/350: was cut to 6 decimals
    assert float(row["volatility_EUR"]) == eur["volatility"]
    assert float(row["history_days"]) == a["history"]["days"]


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "0.0s"),
        (48_700, "48.7s"),
        (48_650, "48.7s"),  # half up on the ms (a float 48.65 would print 48.6)
        (48_649, "48.6s"),
        (59_949, "59.9s"),
        (59_950, "1m 0s"),  # rounds into the next unit, shown in that unit
        (61_500, "1m 2s"),
        (3_599_500, "1h 0m 0s"),
        (7_200_000, "2h 0m 0s"),
        (86_399_499, "23h 59m 59s"),
        (86_399_500, "1d 0h 0m"),
        (2 * DAY_MS + 30_000, "2d 0h 1m"),
    ],
)
def test_table_durations_round_half_up_to_the_unit_shown(ms: int, text: str) -> None:
    assert display.duration(ms) == text


def test_table_decimals_round_the_json_text_half_away_from_zero() -> None:
    # 0.985 and 0.125 are ties in the JSON text; binary formatting would give 0.98 and 0.12.
    assert display.rounded(0.985, 2) == "0.99"
    assert display.rounded(0.125, 2) == "0.13"
    assert display.rounded(-0.125, 2) == "-0.13"
    assert display.rounded(-0.0001, 2) == "0.00"
    assert display.rounded(0.00125, 2, sign=True, percent=True) == "+0.13%"
    assert display.rounded(None, 2) == "n/a"
    assert display.exact_percent(0.125) == "12.5%" and display.exact_percent(0.1) == "10%"
    assert display.seconds(48_700) == "48.7" and display.seconds(7_200_000) == "7200"
    assert display.seconds(1) == "0.001"


# ---------------------------------------------------------------------------- placement


def test_history_places_heartbeats_at_origin_plus_u_like_their_intervals(db: Db) -> None:
    """MCR.md section 2: a heartbeat is placed at its boot's origin + u, not at its own t."""
    kid = db.enroll()
    db.put(rec(kid, 1, "boot", u=0, t=T0))  # the boot's origin: T0
    db.put(rec(kid, 2, "rev", u=10_000, t=T0 + 10_000, am=5, cur="EUR"))
    # The clock was stepped 7 s ahead after the boot synced: the heartbeat's own t says so.
    db.put(rec(kid, 3, "hb", u=60_000, t=T0 + 67_000))
    (d,) = build_report(db.conn, as_of_ms=T0 + 60_000)["devices"]
    assert d["history"]["first_ms"] == T0
    assert d["history"]["last_ms"] == T0 + 60_000  # origin + u, where its interval ends
    assert d["uptime"]["observed_to_ms"] == T0 + 60_000
    assert d["uptime"]["up_ms"] == 60_000 and d["uptime"]["outage_count"] == 0
    # A revenue record is still placed at its own signed t.
    assert db.rows("SELECT n, at_ms, placed FROM agg_records ORDER BY n") == [
        (1, T0, PLACED_BOOT_T),
        (2, T0 + 10_000, PLACED_RECORD_T),
        (3, T0 + 60_000, PLACED_BOOT_T),
    ]


def test_aggregates_built_under_older_rules_are_refused_then_rebuilt(db: Db) -> None:
    kid = db.enroll()
    db.put(rec(kid, 1, "boot", u=0, t=T0))
    db.put(rec(kid, 2, "hb", u=60_000, t=T0 + 67_000))
    # What a gateway before rules 2 left: the heartbeat's row at its own t, no 'rules' key.
    db.conn.execute(
        "UPDATE agg_records SET at_ms = ?, placed = 'record_t' WHERE n = 2", (T0 + 67_000,)
    )
    db.conn.execute("DELETE FROM agg_meta WHERE key = 'rules'")
    with pytest.raises(ReportError, match="built under rules 1, this version reads rules 2"):
        build_report(db.conn, as_of_ms=T0 + 60_000)
    with pytest.raises(ReportError, match="start the gateway once with this version"):
        export_events(db.conn)  # the peaq export reads the same placement
    Aggregator(db.conn, 0.1)  # what the gateway does at start-up
    assert db.rows("SELECT value FROM agg_meta WHERE key = 'rules'") == [(str(RULES_VERSION),)]
    (d,) = build_report(db.conn, as_of_ms=T0 + 60_000)["devices"]
    assert d["history"]["last_ms"] == T0 + 60_000


# ---------------------------------------------------------------------------- plurals


def test_table_counts_of_one_take_the_singular(db: Db) -> None:
    kid = db.enroll()
    # One unsynced boot (placed by receive time), one sale, one outage, one day.
    db.put(rec(kid, 1, "boot", u=0, t=None, received_ms=T0))
    db.put(rec(kid, 2, "rev", u=1_000, t=None, am=300, cur="EUR", received_ms=T0 + 1_000))
    db.put(rec(kid, 3, "hb", u=60_000, t=None, received_ms=T0 + 60_000))
    text = render(build_report(db.conn, as_of_ms=T0 + 90_000), "table")
    assert "1 record (0 refunds) over 1 day;" in text
    assert "; 1 outage, longest 30.0s" in text
    assert "1 boot placed by receive time" in text
    assert "trend n/a," in text  # not "n/a/day"
    assert not re.search(r"(?<![\d.])1 (records|refunds|days|outages|boots)\b|\(s\)", text)
