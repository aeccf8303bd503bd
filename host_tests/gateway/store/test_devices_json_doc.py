"""docs/GATEWAY.md documents every field of `signet devices --json`: the table lists exactly
the fields the command prints, for an active and a revoked device."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from kit.gatewaykit import Dev
from kit.paths import REPO
from signet_gateway.store.sqlite import Store
from signet_gateway.trust import VerifiedEvidence
from signet_tools.cli.main import main
from signet_tools.runners.gateway_process import create_gateway_database

DOC = REPO / "docs" / "GATEWAY.md"


def documented_fields() -> list[str]:
    text = DOC.read_text()
    match = re.search(r"^### `signet devices --json`\n(.*?)(?=^#)", text, re.M | re.S)
    assert match, f"no section '### `signet devices --json`' in {DOC}"
    rows = [line for line in match.group(1).splitlines() if line.startswith("|")][2:]
    names = []
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        found = re.fullmatch(r"`([a-z_]+)`", cells[0])
        assert found, f"first cell is not one `field`: {cells[0]!r}"
        assert len(cells) == 3 and cells[1] and cells[2], f"type and meaning for {cells[0]}"
        names.append(found.group(1))
    return names


def test_the_documented_fields_are_exactly_the_fields_printed(
    store_at: Path | str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = store_at  # on each engine
    create_gateway_database(db)
    with Store(db) as store:
        store.enroll(Dev(600).key, "software", name="till-1")
        evidence = VerifiedEvidence("se-chain", {"chip_serial": "0123"}, b"chain")
        revoked = store.enroll(Dev(601).key, "hardware", evidence=evidence)
        store.revoke(revoked.kid)
    assert main(["devices", "--json", "--db", str(db)]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [json.loads(line) for line in lines]
    assert len(rows) == 2
    documented = documented_fields()
    assert len(documented) == len(set(documented))
    for row in rows:
        assert sorted(row) == sorted(documented)
    by_status = {row["status"]: row for row in rows}
    assert by_status["active"]["name"] == "till-1" and by_status["active"]["revoked_ms"] is None
    assert by_status["revoked"]["evidence_bytes"] == 5
    assert by_status["revoked"]["evidence"] == "Y2hhaW4="  # base64 of the bytes as given
    assert by_status["revoked"]["evidence_kind"] == "se-chain"
    assert by_status["revoked"]["evidence_summary"] == {"chip_serial": "0123"}
