"""The MCR report: figures against hand computation, score and letters, the three formats."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path

import jsonschema
import pytest
from test_aggregate import DAY_MS, T0, Db, rec

from kit.paths import REPO
from signet_gateway.mcr import scoring
from signet_gateway.mcr.report import (
    REPORT_SCHEMA,
    Period,
    ReportError,
    build_report,
    render,
)
from signet_gateway.store.sqlite import Store
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
def report() -> dict:
    db = Db()
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


def test_period_bounds_select_days(report: dict) -> None:
    db = Db()
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
    with pytest.raises(ReportError, match="no enrolled device"):
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


def test_cli_report_reads_a_gateway_database(tmp_path: Path, capsys) -> None:
    path = tmp_path / "signet.db"
    store = Store(path)
    fleet(Db(store.conn))
    store.close()
    assert cli.main(["report", "--db", str(path), "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    jsonschema.validate(document, REPORT_SCHEMA)
    assert len(document["devices"]) == 2
    assert cli.main(["report", "--db", str(path), "--device", "cafe-1"]) == 0
    assert "cafe-1" in capsys.readouterr().out
    toml = tmp_path / "gateway.toml"
    toml.write_text('[store]\npath = "signet.db"\n[aggregate]\nhb_tolerance = 0.1\n')
    assert cli.main(["report", "--config", str(toml), "--format", "csv"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    assert cli.main(["report", "--db", str(tmp_path / "nope.db")]) == 2
    assert "signet: error: cannot open database" in capsys.readouterr().err
    assert cli.main(["report", "--db", str(path), "--from", "yesterday"]) == 2
    assert "--from: expected YYYY-MM-DD" in capsys.readouterr().err


def test_docs_worked_example() -> None:
    """docs/MCR.md section 3: up 486 s of 1260 s, outages 127 s and 647 s."""
    db = Db()
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
