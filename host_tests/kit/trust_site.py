"""A gateway site for enrollment tests: gateway.toml with [trust] roots (a Trust&GO-shaped
PKI, a TPM AK PKI, a line key) and its database, a device key, and its evidence crafted by
kit.crafted_evidence (independent of the gateway's verifier)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kit.crafted_evidence import (
    TpmPki,
    TrustAndGo,
    enroll_statement,
    pem,
    se_chain_evidence,
    tpm_evidence,
    tpms_attest,
    tpmt_public,
)
from kit.independent_signer import SignerKey, make_key
from signet_gateway.verify.pubkeys import DevicePublicKey
from signet_tools.cli.main import main
from signet_tools.runners.gateway_process import write_gateway_config

__all__ = ["DEVICE", "LINE", "OTHER", "SE", "TPM", "Site", "pub", "se_evidence", "tpm_evidence_for"]

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
        (tmp_path / "line.pub.pem").write_bytes(pub(LINE).to_pem())
        self.db = tmp_path / "gateway.db"
        self.cfg = write_gateway_config(
            tmp_path / "gateway.toml",
            1883,
            self.db,
            trust={"se_roots": ["se-root.pem"], "tpm_roots": ["tpm-root.pem"],
                   "line_keys": ["line.pub.pem"]},
        )  # fmt: skip
        self.pubkey = tmp_path / "dev.pub.pem"
        self.pubkey.write_bytes(pub(DEVICE).to_pem())

    def challenge(self, capsys: pytest.CaptureFixture[str]) -> bytes:
        assert main(["challenge", "--json", "--config", str(self.cfg)]) == 0
        doc = json.loads(capsys.readouterr().out)
        return bytes.fromhex(doc["challenge"])

    def enroll(self, evidence: bytes, *extra: str) -> int:
        path = self.dir / "evidence.json"
        path.write_bytes(evidence)
        return main(["enroll", "--pubkey", str(self.pubkey), "--tier", "hardware",
                     "--evidence", str(path), "--config", str(self.cfg), *extra])  # fmt: skip


def pub(key: SignerKey) -> DevicePublicKey:
    return DevicePublicKey.from_sec1(key.compressed, key.curve)  # type: ignore[arg-type]


def tpm_evidence_for(nonce: bytes, **attest: object) -> bytes:
    public = tpmt_public(DEVICE, **attest)  # type: ignore[arg-type]
    return tpm_evidence(DEVICE, TPM, public=public, attest=tpms_attest(public, extra_data=nonce))


def se_evidence(nonce: bytes, **statement: object) -> bytes:
    return se_chain_evidence(DEVICE, SE, proof=enroll_statement(DEVICE, c=nonce, **statement))
