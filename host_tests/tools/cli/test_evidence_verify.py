"""`signet evidence verify`: an auditor re-checks enrollment evidence against the roots,
from the database (--device, --all) or from an exported file (--file --pubkey), without
trusting the gateway: evidence altered in the database, or checked against roots that do
not include its issuer, is REFUSED with its reason (exit 1); usage is one line, exit 2."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from kit.crafted_evidence import line_evidence
from kit.trust_site import DEVICE, LINE, Site, pub, se_evidence
from signet_tools.cli.main import main

pytestmark = pytest.mark.usefixtures("site")


@pytest.fixture
def site(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Site:
    site = Site(tmp_path)
    assert site.enroll(se_evidence(site.challenge(capsys)), "--name", "till-7") == 0
    capsys.readouterr()
    return site


def _verify(site: Site, *args: str) -> int:
    return main(["evidence", "verify", *args])


def test_stored_evidence_verifies_and_an_altered_copy_is_refused(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _verify(site, "--device", "till-7", "--config", str(site.cfg)) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"verified  {pub(DEVICE).device_id} (till-7)  se-chain  chip "), out
    # Someone with write access to the database edits the stored proof: the auditor sees it.
    with sqlite3.connect(site.db) as conn:
        (raw,) = conn.execute("SELECT evidence FROM devices").fetchone()
        doc = json.loads(raw)
        proof = bytearray.fromhex(doc["proof"])
        proof[-1] ^= 1  # the last byte of the signature
        doc["proof"] = proof.hex()
        conn.execute("UPDATE devices SET evidence = ?", (json.dumps(doc).encode(),))
    assert _verify(site, "--all", "--json", "--config", str(site.cfg)) == 1
    (result,) = json.loads(capsys.readouterr().out)
    assert result["verified"] is False and result["reason"] == "proof_invalid", result


def test_an_exported_file_is_checked_against_the_auditors_own_roots(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["devices", "--evidence", "till-7", "--config", str(site.cfg)]) == 0
    exported = tmp_path / "till-7.evidence.json"
    exported.write_bytes(capsys.readouterr().out.encode())
    mine = tmp_path / "auditor"
    mine.mkdir()
    (mine / "se-root.pem").write_bytes((tmp_path / "se-root.pem").read_bytes())
    (mine / "trust.toml").write_text('[trust]\nse_roots = ["se-root.pem"]\n')
    args = ["--file", str(exported), "--pubkey", str(site.pubkey), "--at", "2026-12-01T10:00:00Z"]
    assert _verify(site, *args, "--roots", str(mine / "trust.toml"), "--json") == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["verified"] and result["kind"] == "se-chain"
    assert result["checked_at_ms"] == 1796119200000  # judged at --at, not now
    # Roots that do not include the chain's issuer (only a line key): refused, named.
    (mine / "other.toml").write_text("[trust]\nse_roots = []\nline_keys = []\n")
    assert _verify(site, *args, "--roots", str(mine / "other.toml")) == 1
    assert capsys.readouterr().out.startswith(f"REFUSED   {pub(DEVICE).device_id}  no_roots: ")


def test_line_evidence_and_usage_errors(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    evidence = tmp_path / "line.json"
    evidence.write_bytes(line_evidence(LINE, DEVICE))
    assert _verify(site, "--file", str(evidence), "--pubkey", str(site.pubkey),
                   "--config", str(site.cfg)) == 0  # fmt: skip
    assert "line-statement" in capsys.readouterr().out
    for args, words in (
        ([], "say what to check"),
        (["--file", str(evidence)], "--file needs --pubkey"),
        (["--device", "nobody", "--config", str(site.cfg)], "nobody"),
        (["--device", "till-7", "--at", "0", "--config", str(site.cfg)], "--at is for --file"),
    ):
        assert _verify(site, *args) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("signet: error: ") and words in err and err.count("\n") == 1, err
