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
    TrustAndGo,
    config_zone,
    ec_key,
    enroll_statement,
    line_evidence,
    pem,
    se_chain_evidence,
    tpm_evidence,
    tpms_attest,
    tpmt_public,
)
from kit.independent_signer import SignerKey, make_key
from signet_gateway.store.sqlite import Store
from signet_gateway.verify.pubkeys import DevicePublicKey
from signet_tools.cli.main import main
from signet_tools.runners.gateway_process import write_gateway_config

DEVICE = make_key("p256", 31)
OTHER = make_key("p256", 32)
LINE = make_key("p256", 33)
TPM = TpmPki()
SE = TrustAndGo(DEVICE)


class Site:
    """A gateway.toml with [trust] roots and a line key, its database, and the device's key."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path
        (tmp_path / "tpm-root.pem").write_bytes(pem(TPM.root()))
        (tmp_path / "se-root.pem").write_bytes(pem(SE.root()))
        (tmp_path / "line.pub.pem").write_bytes(_pub(LINE).to_pem())
        self.db = tmp_path / "gateway.db"
        self.cfg = write_gateway_config(
            tmp_path / "gateway.toml",
            1883,
            self.db,
            trust={"se_roots": ["se-root.pem"], "tpm_roots": ["tpm-root.pem"],
                   "line_keys": ["line.pub.pem"]},
        )  # fmt: skip
        self.pubkey = tmp_path / "dev.pub.pem"
        self.pubkey.write_bytes(_pub(DEVICE).to_pem())

    def challenge(self, capsys: pytest.CaptureFixture[str]) -> bytes:
        assert main(["challenge", "--json", "--config", str(self.cfg)]) == 0
        doc = json.loads(capsys.readouterr().out)
        return bytes.fromhex(doc["challenge"])

    def enroll(self, evidence: bytes, *extra: str) -> int:
        path = self.dir / "evidence.json"
        path.write_bytes(evidence)
        return main(["enroll", "--pubkey", str(self.pubkey), "--tier", "hardware",
                     "--evidence", str(path), "--config", str(self.cfg), *extra])  # fmt: skip


def _pub(key: SignerKey) -> DevicePublicKey:
    return DevicePublicKey.from_sec1(key.compressed, key.curve)  # type: ignore[arg-type]


def _tpm(nonce: bytes, **attest: object) -> bytes:
    public = tpmt_public(DEVICE, **attest)  # type: ignore[arg-type]
    return tpm_evidence(DEVICE, TPM, public=public, attest=tpms_attest(public, extra_data=nonce))


def _se(nonce: bytes, **statement: object) -> bytes:
    return se_chain_evidence(DEVICE, SE, proof=enroll_statement(DEVICE, c=nonce, **statement))


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
    "tpm_attributes": lambda c: _tpm(c, attributes=KEY_ATTRIBUTES | DECRYPT),
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
    "challenge_unknown": lambda c: _tpm(bytes(32)),
    "chip_unlocked": lambda c: _se(c, cfg=config_zone(lock_config=0x55)),
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
    evidence = {"se-chain": _se, "tpm2-certify": _tpm, "line-statement": lambda c: line_evidence(
        LINE, DEVICE)}[kind](nonce)  # fmt: skip
    assert site.enroll(evidence, "--name", "pump-3") == 0
    out = capsys.readouterr().out
    assert f"enrolled {_pub(DEVICE).device_id} (p256, tier hardware, evidence {kind}" in out
    assert main(["devices", "--json", "--config", str(site.cfg)]) == 0
    row = json.loads(capsys.readouterr().out)
    assert (row["tier"], row["evidence_kind"], row["machine"]) == (
        "hardware", kind, _pub(DEVICE).device_id,
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
    assert site.enroll(_tpm(stale)) == 1
    assert "enrollment refused (challenge_expired): " in capsys.readouterr().err
    nonce = site.challenge(capsys)
    path = site.dir / "e.json"
    path.write_bytes(_tpm(nonce))
    # --db instead of --config: no [trust] section, so no roots to verify against.
    assert main(["enroll", "--pubkey", str(site.pubkey), "--tier", "hardware", "--evidence",
                 str(path), "--db", str(site.db)]) == 1  # fmt: skip
    assert "enrollment refused (no_roots): " in capsys.readouterr().err


def test_software_with_evidence_and_hardware_without_stay_refused(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    path = site.dir / "e.json"
    path.write_bytes(_tpm(bytes(32)))
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
    old_pem.write_bytes(_pub(old).to_pem())
    assert main(["enroll", "--pubkey", str(old_pem), "--tier", "software", "--name", "till",
                 "--config", str(site.cfg)]) == 0  # fmt: skip
    statement = site.dir / "rotate.hex"
    statement.write_text(rotate_statement(old, DEVICE, last=0).hex() + "\n")  # hex text works
    capsys.readouterr()
    nonce = site.challenge(capsys)
    evidence = site.dir / "new.json"
    evidence.write_bytes(_tpm(nonce))
    capsys.readouterr()
    argv = ["enroll", "--pubkey", str(site.pubkey), "--rotate-from", "till", "--statement",
            str(statement), "--config", str(site.cfg)]  # fmt: skip
    assert main([*argv, "--tier", "hardware", "--evidence", str(evidence)]) == 0
    out = capsys.readouterr().out
    new_id, old_id = _pub(DEVICE).device_id, _pub(old).device_id
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
