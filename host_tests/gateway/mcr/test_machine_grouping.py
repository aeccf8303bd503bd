"""A rotated machine is one element of the report and one machineId in the peaq export:
revenue summed over its keys, uptime over the heartbeats of both keys, integrity findings
added (each key's sequence and chain its own); the tier of a figure is hardware only if
every key whose records are in it is; trustLevel 2 only for a hardware key's records."""

from __future__ import annotations

from test_aggregate import T0, Db, rec

from signet_gateway.mcr.peaq import decode_metadata, export_events
from signet_gateway.mcr.report import build_report, render

MIN = 60_000


def rotated_machine(db: Db, new_tier: str = "hardware") -> tuple[str, str, str]:
    """An old software key that ran 30 minutes (and sold 250 EUR), rotated at n=32 to a new
    key that ran the next 30 (and sold 400 EUR); plus a machine of its own, untouched."""
    old = db.enroll(seed=1, name="kiosk")
    new = db.enroll(seed=2, tier=new_tier)
    other = db.enroll(seed=3)
    db.conn.execute("UPDATE devices SET last_n = 32 WHERE kid = ?", (old,))
    db.conn.execute(
        "UPDATE devices SET machine = ?, replaces = ?, name = 'kiosk' WHERE kid = ?",
        (old, old, new),
    )
    db.conn.execute("UPDATE devices SET name = NULL WHERE kid = ?", (old,))
    db.put(rec(old, 1, "boot", u=0, t=T0))
    for i in range(1, 31):
        db.put(rec(old, 1 + i, "hb", u=i * MIN, t=T0 + i * MIN))
    db.put(rec(old, 32, "rev", u=30 * MIN + 1, t=T0 + 30 * MIN + 1, am=250, cur="EUR"))
    # The new key: its own sequence from n=1 (and its own boot counter), 30 minutes on.
    start = T0 + 30 * MIN
    db.put(rec(new, 1, "boot", u=0, t=start))
    for i in range(1, 31):
        db.put(rec(new, 1 + i, "hb", u=i * MIN, t=start + i * MIN))
    db.put(rec(new, 32, "rev", u=30 * MIN + 1, t=start + 30 * MIN + 1, am=400, cur="EUR"))
    db.put(rec(other, 1, "boot", u=0, t=T0))
    for kid, verified in ((old, 32), (new, 32), (other, 1)):
        db.finding(kid, "2026-01-01", "verified", verified)
    db.finding(old, "2026-01-01", "refused:rotated", 2)
    return old, new, other


AS_OF = T0 + 60 * MIN


def test_report_shows_one_machine_with_the_sums_of_its_keys(db: Db) -> None:
    old, new, other = rotated_machine(db)
    report = build_report(db.conn, as_of_ms=AS_OF, missing=lambda kid: 0)
    assert [d["device"] for d in report["devices"]] == [old, other]
    m = report["devices"][0]
    assert m["name"] == "kiosk"
    assert [k["device"] for k in m["keys"]] == [old, new]
    assert (m["keys"][0]["last_n"], m["keys"][1]["replaces"]) == (32, old)
    eur = m["revenue"]["currencies"][0]
    assert (eur["amount"], eur["count"]) == (650, 2)
    # Up: 30 minutes of each key's heartbeats, one observed span over both.
    assert m["uptime"]["up_ms"] == 60 * MIN and m["uptime"]["observed_ms"] == 60 * MIN
    assert m["uptime"]["outage_count"] == 0
    assert m["integrity"]["verified"] == 64 and m["integrity"]["refused"] == {"rotated": 2}
    # The old key signed in software: figures made of its records are software-tier.
    assert m["tier"] == "software"
    text = render(report, "table")
    assert f"keys       {old} (n <= 32), {new} (current)" in text
    # Once the old key too is a verified hardware key, the machine's figures are hardware.
    db.conn.execute(
        "UPDATE devices SET tier = 'hardware', evidence = ?, evidence_kind = 'se-chain'"
        " WHERE kid = ?",
        (b"\x00", old),  # a parameter: a blob literal is written differently on each engine
    )
    report = build_report(db.conn, as_of_ms=AS_OF, missing=lambda kid: 0)
    assert report["devices"][0]["tier"] == "hardware"


def test_report_of_a_key_names_its_machine(db: Db) -> None:
    old, new, _ = rotated_machine(db)
    for wanted in (new, old, "kiosk"):
        report = build_report(db.conn, device=wanted, as_of_ms=AS_OF, missing=lambda kid: 0)
        assert [d["device"] for d in report["devices"]] == [old]


def test_peaq_export_one_machine_id_trust_per_key(db: Db) -> None:
    old, new, _ = rotated_machine(db)
    export = export_events(db.conn, as_of_ms=AS_OF, metadata_format="json")
    mine = [e for e in export.events if e["machineId"] == "0x" + old]
    assert {decode_metadata(e["metadata"])["device"] for e in mine} == {old, new}
    revenue = {decode_metadata(e["metadata"])["device"]: e for e in mine if e["eventType"] == 0}
    assert revenue[old]["value"] == 250 and revenue[old]["trustLevel"] == 0  # software key
    assert revenue[new]["value"] == 400 and revenue[new]["trustLevel"] == 2  # hardware key
    up = sum(e["value"] for e in mine if e["eventType"] == 1)
    assert up == 60 * 60  # seconds: both keys' windows
    assert not any(e["machineId"] == "0x" + new for e in export.events)
    named = export_events(db.conn, as_of_ms=AS_OF, machine_ids={new: 77})
    assert {e["machineId"] for e in named.events if e["machineId"] != "0x" + other_of(db)} == {77}


def other_of(db: Db) -> str:
    return str(db.conn.execute("SELECT kid FROM devices WHERE name IS NULL AND tier = 'software'"
                               " AND last_n IS NULL").fetchone()[0])  # fmt: skip


def test_a_revoked_key_takes_the_whole_machine_out_of_trust_level_2(db: Db) -> None:
    old, new, _ = rotated_machine(db, new_tier="hardware")
    db.conn.execute("UPDATE devices SET revoked_ms = ? WHERE kid = ?", (AS_OF, new))
    export = export_events(db.conn, as_of_ms=AS_OF)
    assert {e["trustLevel"] for e in export.events} == {0}
    report = build_report(db.conn, as_of_ms=AS_OF, missing=lambda kid: 0)
    assert report["devices"][0]["revoked_ms"] == AS_OF
    assert report["devices"][0]["score"]["letter"] == "NR"
    del old
