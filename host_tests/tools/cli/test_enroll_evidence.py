"""`signet challenge`, `signet enroll --tier hardware --evidence` through the command line on
crafted evidence (kit.crafted_evidence, independent of the gateway's verifier): every kind of
bad evidence is one line `enrollment refused (REASON): ...` and exit 1, and nothing is
enrolled; good evidence enrolls, consumes its challenge, and is shown and exported."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from kit.crafted_evidence import (
    DECRYPT,
    KEY_ATTRIBUTES,
    TpmPki,
    config_zone,
    ec_key,
    line_evidence,
    tpm_evidence,
    tpms_attest,
    tpmt_public,
)
from kit.independent_signer import make_key
from kit.trust_site import DEVICE, LINE, OTHER, TPM, Site, pub, se_evidence, tpm_evidence_for
from signet_gateway.store.sqlite import Store
from signet_tools.cli.main import main


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


def test_challenge_prints_hex_and_expiry_and_stores_it(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["challenge", "--ttl", "60", "--config", str(site.cfg)]) == 0
    captured = capsys.readouterr()
    nonce = bytes.fromhex(captured.out.strip())
    assert len(nonce) == 32 and "single use" in captured.err and "(in 60 s)" in captured.err
    with Store(site.db, readonly=True) as store:
        issued, expires, used, _by = store.challenge(nonce)  # type: ignore[misc]
    assert expires - issued == 60_000 and used is None
    assert main(["challenge", "--json", "--config", str(site.cfg)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == {"challenge", "expires", "expires_ms"}
    assert doc["expires_ms"] - issued >= 900_000  # [trust] challenge_ttl_s by default


BAD: dict[str, Callable[[bytes], bytes]] = {
    "evidence_malformed": lambda c: b"-----BEGIN CERTIFICATE-----\nMIIB\n",
    "key_mismatch": lambda c: tpm_evidence(
        OTHER, TPM, attest=tpms_attest(tpmt_public(OTHER), extra_data=c)
    ),
    "tpm_attributes": lambda c: tpm_evidence_for(c, attributes=KEY_ATTRIBUTES | DECRYPT),
    "attest_invalid": lambda c: tpm_evidence(
        DEVICE, TPM, attest=tpms_attest(tpmt_public(DEVICE), extra_data=c, magic=0xFF544348)
    ),
    "unknown_root": lambda c: tpm_evidence(
        DEVICE, TpmPki(root_key=ec_key(901), ak=ec_key(902)),
        attest=tpms_attest(tpmt_public(DEVICE), extra_data=c),
    ),
    "cert_expired": lambda c: tpm_evidence(
        DEVICE, TPM, attest=tpms_attest(tpmt_public(DEVICE), extra_data=c),
        ak_chain=[TPM.ak_cert(not_after=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))],
    ),
    "challenge_unknown": lambda c: tpm_evidence_for(bytes(32)),
    "chip_unlocked": lambda c: se_evidence(c, cfg=config_zone(lock_config=0x55)),
    "line_key_unknown": lambda c: line_evidence(OTHER, DEVICE),
}  # fmt: skip


@pytest.mark.parametrize("reason", sorted(BAD))
def test_bad_evidence_is_one_line_exit_1_and_nothing_enrolled(
    site: Site, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    nonce = site.challenge(capsys)
    assert site.enroll(BAD[reason](nonce)) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"signet: error: enrollment refused ({reason}): "), err
    assert err.count("\n") == 1 and "Traceback" not in err
    with Store(site.db, readonly=True) as store:
        assert store.devices() == [] and store.check_challenge(nonce) is None  # still open


@pytest.mark.parametrize("kind", ["se-chain", "tpm2-certify", "line-statement"])
def test_good_evidence_enrolls_once_and_is_shown_and_exported(
    site: Site, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    nonce = site.challenge(capsys)
    makers: dict[str, Callable[[bytes], bytes]] = {
        "se-chain": se_evidence,
        "tpm2-certify": tpm_evidence_for,
        "line-statement": lambda c: line_evidence(LINE, DEVICE),
    }
    evidence = makers[kind](nonce)
    assert site.enroll(evidence, "--name", "pump-3") == 0
    out = capsys.readouterr().out
    assert f"enrolled {pub(DEVICE).device_id} (p256, tier hardware, evidence {kind}" in out
    assert main(["devices", "--json", "--config", str(site.cfg)]) == 0
    row = json.loads(capsys.readouterr().out)
    assert (row["tier"], row["evidence_kind"], row["machine"]) == (
        "hardware", kind, pub(DEVICE).device_id,
    )  # fmt: skip
    assert row["evidence_summary"] and row["evidence_bytes"] == len(evidence)
    assert main(["devices", "--evidence", "pump-3", "--config", str(site.cfg)]) == 0
    assert capsys.readouterr().out == evidence.decode()  # the exact bytes, for an auditor
    if kind != "line-statement":  # a line statement answers no challenge
        # The same answer again (a replay): refused, the key is not enrolled twice.
        assert site.enroll(evidence) == 1
        err = capsys.readouterr().err
        assert err.startswith("signet: error: enrollment refused (challenge_replayed): ")


def test_expired_challenge_and_no_roots(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    from signet_gateway.store.model import now_ms

    with Store(site.db) as store:
        stale, _ = store.issue_challenge(1_000, issued_ms=now_ms() - 5_000)
    assert site.enroll(tpm_evidence_for(stale)) == 1
    assert "enrollment refused (challenge_expired): " in capsys.readouterr().err
    nonce = site.challenge(capsys)
    path = site.dir / "e.json"
    path.write_bytes(tpm_evidence_for(nonce))
    # --db instead of --config: no [trust] section, so no roots to verify against.
    assert main(["enroll", "--pubkey", str(site.pubkey), "--tier", "hardware", "--evidence",
                 str(path), "--db", str(site.db)]) == 1  # fmt: skip
    assert "enrollment refused (no_roots): " in capsys.readouterr().err


def test_software_with_evidence_and_hardware_without_stay_refused(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    path = site.dir / "e.json"
    path.write_bytes(tpm_evidence_for(bytes(32)))
    for tier, extra in (("software", ["--evidence", str(path)]), ("hardware", [])):
        assert main(["enroll", "--pubkey", str(site.pubkey), "--tier", tier, *extra,
                     "--config", str(site.cfg)]) == 2  # fmt: skip
        assert capsys.readouterr().err.count("\n") == 1


def test_revoke_at_a_moment(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["enroll", "--pubkey", str(site.pubkey), "--tier", "software", "--name", "p",
                 "--config", str(site.cfg)]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["revoke", "p", "--at", "2020-01-01T00:00:00Z", "--config", str(site.cfg)]) == 1
    err = capsys.readouterr().err
    assert "is in the past" in err and "stay counted" in err and err.count("\n") == 1
    with pytest.raises(SystemExit) as usage:  # argparse: exit 2 with one line
        main(["revoke", "p", "--at", "2020-01-01T00:00:00", "--config", str(site.cfg)])
    assert usage.value.code == 2 and "give the time zone" in capsys.readouterr().err
    ahead = "2999-01-01T00:00:00+01:00"
    assert main(["revoke", "p", "--at", ahead, "--config", str(site.cfg)]) == 0
    assert "from 2998-12-31T23:00:00.000Z: records received from then on" in capsys.readouterr().out
    assert main(["devices", "--json", "--config", str(site.cfg)]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["status"] == "active" and row["revoked_ms"] == 32472140400000  # scheduled
    assert main(["revoke", "p", "--at", "now", "--config", str(site.cfg)]) == 0
    assert main(["revoke", "p", "--config", str(site.cfg)]) == 1
    assert "already revoked" in capsys.readouterr().err


def test_rotation_through_the_command_line_to_a_hardware_key(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    from kit.crafted_evidence import rotate_statement

    old = make_key("p256", 40)
    old_pem = site.dir / "old.pub.pem"
    old_pem.write_bytes(pub(old).to_pem())
    assert main(["enroll", "--pubkey", str(old_pem), "--tier", "software", "--name", "till",
                 "--config", str(site.cfg)]) == 0  # fmt: skip
    statement = site.dir / "rotate.hex"
    statement.write_text(rotate_statement(old, DEVICE, last=0).hex() + "\n")  # hex text works
    capsys.readouterr()
    nonce = site.challenge(capsys)
    evidence = site.dir / "new.json"
    evidence.write_bytes(tpm_evidence_for(nonce))
    capsys.readouterr()
    argv = ["enroll", "--pubkey", str(site.pubkey), "--rotate-from", "till", "--statement",
            str(statement), "--config", str(site.cfg)]  # fmt: skip
    assert main([*argv, "--tier", "hardware", "--evidence", str(evidence)]) == 0
    out = capsys.readouterr().out
    new_id, old_id = pub(DEVICE).device_id, pub(old).device_id
    assert f"enrolled {new_id} (p256, tier hardware, evidence tpm2-certify, name 'till')" in out
    assert f"rotated: machine {old_id} now signs with {new_id}" in out
    assert main(["devices", "--json", "--config", str(site.cfg)]) == 0
    rows = {r["device"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert (rows[old_id]["status"], rows[old_id]["last_n"]) == ("rotated", 0)
    assert (rows[new_id]["machine"], rows[new_id]["replaces"]) == (old_id, old_id)
    # The name now means the new key; a second rotation from the old key is refused; a
    # statement without --rotate-from too.
    argv[argv.index("till")] = old_id
    assert main([*argv, "--tier", "software"]) == 1
    assert "already enrolled" in capsys.readouterr().err
    assert main(["enroll", "--pubkey", str(site.pubkey), "--tier", "software", "--statement",
                 str(statement), "--config", str(site.cfg)]) == 2  # fmt: skip
    assert "go together" in capsys.readouterr().err
