"""docs/TRUST.md lists exactly the evidence refusal codes of gateway/trust/refusals.py."""

from __future__ import annotations

import re

from kit.paths import REPO
from signet_gateway.trust import REASONS

DOC = REPO / "docs" / "TRUST.md"
START = "<!-- reasons-table: generated from gateway/trust/refusals.py REASONS -->"
END = "<!-- /reasons-table -->"


def reasons_table() -> str:
    """The table as the doc must hold it (paste this when a code is added or reworded)."""
    rows = ["| code | meaning |", "|---|---|"]
    rows += [f"| `{code}` | {sentence} |" for code, sentence in REASONS.items()]
    return "\n".join(rows)


def test_the_doc_table_is_the_refusal_table():
    text = DOC.read_text()
    assert START in text and END in text, "docs/TRUST.md lost its reasons-table markers"
    table = text.split(START, 1)[1].split(END, 1)[0].strip()
    assert table == reasons_table(), f"regenerate the table in docs/TRUST.md:\n{reasons_table()}"


def test_every_code_is_refused_by_a_crafted_input_in_these_tests():
    tests = "\n".join(p.read_text() for p in (REPO / "host_tests/gateway/trust").glob("test_*.py"))
    untested = [code for code in REASONS if f'"{code}"' not in tests]
    assert untested == []


def test_every_code_the_checks_raise_is_in_the_table():
    source = "\n".join(p.read_text() for p in (REPO / "gateway" / "trust").glob("*.py"))
    raised = set(re.findall(r'EvidenceRefused\(\s*"([a-z_]+)"', source))
    assert raised and raised <= set(REASONS)
