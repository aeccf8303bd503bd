"""docs/MCR.md section 7 defines every field of the JSON report and every CSV column.

The JSON fields come from REPORT_SCHEMA (the published format), the CSV columns from
what render_csv writes; the doc's tables must list exactly those, each with a type,
a unit or rounding, and a meaning.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from typing import Any

from test_aggregate import T0, Db, rec

from kit.paths import REPO
from signet_gateway.mcr.report import (
    CSV_FIXED,
    CSV_PER_CURRENCY,
    REPORT_SCHEMA,
    build_report,
    render,
)

DOC = REPO / "docs" / "MCR.md"


def schema_paths(node: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """Every property path of the schema: `devices[].uptime.outages[].start_ms`..."""
    if "$ref" in node:
        node = REPORT_SCHEMA["$defs"][node["$ref"].rsplit("/", 1)[1]]
    if "items" in node:
        yield from schema_paths(node["items"], prefix + "[]")
    for name, sub in node.get("properties", {}).items():
        path = f"{prefix}.{name}" if prefix else name
        yield path
        yield from schema_paths(sub, path)


def doc_table(heading: str) -> list[list[str]]:
    """The rows of the first table under `### ... heading`, cells stripped."""
    text = DOC.read_text()
    match = re.search(rf"^### [\d.]* *{re.escape(heading)}\n(.*?)(?=^##)", text, re.M | re.S)
    assert match, f"no section '{heading}' in {DOC}"
    rows = [line for line in match.group(1).splitlines() if line.startswith("|")]
    assert len(rows) > 2, f"no table under '{heading}'"
    return [[c.strip() for c in row.strip("|").split("|")] for row in rows[2:]]


def _names(rows: list[list[str]]) -> list[str]:
    names = []
    for row in rows:
        found = re.fullmatch(r"`([^`]+)`", row[0])
        assert found, f"first cell is not one `name`: {row[0]!r}"
        names.append(found.group(1))
    return names


def test_every_json_field_is_defined_in_the_doc() -> None:
    rows = doc_table("JSON fields")
    documented = _names(rows)
    assert len(documented) == len(set(documented)), "a field is listed twice"
    assert set(documented) == set(schema_paths(REPORT_SCHEMA))
    for row in rows:
        assert len(row) == 4 and all(row), f"type, unit and meaning needed: {row}"


def test_every_csv_column_is_defined_in_the_doc(db: Db) -> None:
    rows = doc_table("CSV columns")
    documented = _names(rows)
    assert len(documented) == len(set(documented))
    per_currency = [f"{column}_<CUR>" for column in CSV_PER_CURRENCY]
    assert documented == [*CSV_FIXED, *per_currency]  # in the order the CSV writes them
    for row in rows:
        assert len(row) == 3 and all(row), f"unit and JSON field needed: {row}"
    # And the header of a real report is made of those columns only.
    kid = db.enroll()
    db.put(rec(kid, 1, "boot", u=0, t=T0))
    db.put(rec(kid, 2, "rev", u=1_000, t=T0 + 1_000, am=250, cur="EUR"))
    db.put(rec(kid, 3, "rev", u=2_000, t=T0 + 2_000, am=900, cur="USD"))
    header = next(csv.reader(io.StringIO(render(build_report(db.conn), "csv"))))
    expected = [*CSV_FIXED] + [
        c.replace("<CUR>", cur) for cur in ("EUR", "USD") for c in per_currency
    ]
    assert header == expected


def test_the_json_of_a_real_report_uses_documented_fields_only(db: Db) -> None:
    kid = db.enroll()
    db.put(rec(kid, 1, "boot", u=0, t=T0))
    db.put(rec(kid, 2, "hb", u=60_000, t=T0 + 60_000))
    db.put(rec(kid, 3, "rev", u=61_000, t=T0 + 61_000, am=-5, cur="EUR"))
    db.finding(kid, "2026-01-01", "refused:bad_signature", 1)
    documented = set(_names(doc_table("JSON fields")))

    def walk(value: Any, prefix: str) -> Iterator[str]:
        if isinstance(value, list):
            for item in value:
                yield from walk(item, prefix + "[]")
        elif isinstance(value, dict) and not prefix.endswith("integrity.refused"):
            for key, sub in value.items():
                path = f"{prefix}.{key}" if prefix else key
                yield path
                yield from walk(sub, path)

    seen = set(walk(build_report(db.conn, as_of_ms=T0 + 120_000), ""))
    assert seen <= documented, seen - documented
