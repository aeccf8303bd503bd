"""line-statement evidence: a statement signed by a manufacturing line key the operator trusts."""

from __future__ import annotations

from typing import Any

import pytest

from kit.crafted_evidence import (
    DROP,
    NOW_MS,
    SERIAL,
    Challenges,
    config_zone,
    line_evidence,
    line_statement,
)
from kit.independent_signer import make_key, make_record, payload, rs_bytes
from signet_gateway.trust import EvidenceRefused, TrustPolicy, verify_evidence
from signet_gateway.verify.pubkeys import DevicePublicKey

DEVICE = make_key("p256", 31)
KEY = DevicePublicKey.from_sec1(DEVICE.compressed)
LINE = make_key("p256", 32)
LINE_KEY = DevicePublicKey.from_sec1(LINE.compressed)


def policy(**changes: Any) -> TrustPolicy:
    return TrustPolicy(**{"line_keys": (LINE_KEY,), "now_ms": NOW_MS, **changes})


def refused(raw: bytes, reason: str, pol: TrustPolicy | None = None) -> str:
    with pytest.raises(EvidenceRefused) as info:
        verify_evidence(raw, KEY, pol or policy(), Challenges().check)
    assert info.value.reason == reason, info.value
    return info.value.sentence


def test_a_line_statement_verifies_without_a_challenge():
    challenges = Challenges()
    verified = verify_evidence(line_evidence(LINE, DEVICE), KEY, policy(), challenges.check)
    assert challenges.calls == []  # signed offline at manufacturing: nothing to be fresh against
    assert verified.summary["line"] == "line-1"
    assert verified.summary["line_key"] == LINE_KEY.device_id
    assert verified.summary["chip"]["serial"] == SERIAL.hex()


def test_a_secp256k1_line_key_works_too():
    k1 = make_key("secp256k1", 33)
    k1_key = DevicePublicKey.from_sec1(k1.compressed, "secp256k1")
    raw = line_evidence(k1, DEVICE)
    assert verify_evidence(raw, KEY, policy(line_keys=(k1_key,)), Challenges().check).kind


def test_a_statement_by_a_key_not_configured_is_line_key_unknown():
    stranger = make_key("p256", 34)
    assert "not a configured line key" in refused(
        line_evidence(stranger, DEVICE), "line_key_unknown"
    )


def test_no_configured_line_keys_is_no_roots():
    refused(line_evidence(LINE, DEVICE), "no_roots", policy(line_keys=()))


def test_a_forged_signature_under_the_line_kid_is_proof_invalid():
    forger = make_key("p256", 35)
    statement = make_record(
        forger,
        {
            "v": 1,
            "k": "line",
            "pk": DEVICE.compressed,
            "crv": "p256",
            "sn": SERIAL,
            "t": 1,
            "line": "x",
        },
        kid=LINE.kid,
    )
    assert "does not verify" in refused(
        line_evidence(LINE, DEVICE, statement=statement), "proof_invalid"
    )


def test_a_high_s_line_signature_is_proof_invalid():
    body = {
        "v": 1,
        "k": "line",
        "pk": DEVICE.compressed,
        "crv": "p256",
        "sn": SERIAL,
        "t": 1,
        "line": "x",
    }
    statement = make_record(LINE, body, sig_transform=lambda r, s, n: rs_bytes(r, n - s))
    refused(line_evidence(LINE, DEVICE, statement=statement), "proof_invalid")


def test_a_statement_for_another_key_is_key_mismatch():
    statement = line_statement(LINE, make_key("p256", 36))
    refused(line_evidence(LINE, DEVICE, statement=statement), "key_mismatch")


def test_a_statement_with_an_unlocked_chip_is_chip_unlocked():
    statement = line_statement(LINE, DEVICE, cfg=config_zone(lock_config=0x55))
    refused(line_evidence(LINE, DEVICE, statement=statement), "chip_unlocked")


def test_a_statement_whose_serial_is_not_its_config_zones_is_proof_invalid():
    statement = line_statement(LINE, DEVICE, sn=b"\x01" * 9)
    refused(line_evidence(LINE, DEVICE, statement=statement), "proof_invalid")


def test_a_statement_without_cfg_is_accepted():
    statement = line_statement(LINE, DEVICE, cfg=DROP)
    assert verify_evidence(
        line_evidence(LINE, DEVICE, statement=statement), KEY, policy(), Challenges().check
    )


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"line": DROP}, "missing field 'line'"),
        ({"crv": "secp256k1"}, "field 'crv'"),
        ({"t": -1}, "field 't'"),
        ({"v": 2}, "field 'v'"),
        ({"pk": b"\x02" * 32}, "field 'pk' is 32 bytes"),
        ({"extra": 1}, "unknown field"),
    ],
)
def test_a_statement_not_matching_its_schema_is_evidence_malformed(
    fields: dict[str, Any], words: str
):
    statement = line_statement(LINE, DEVICE, **fields)
    assert words in refused(line_evidence(LINE, DEVICE, statement=statement), "evidence_malformed")


def test_a_record_signed_by_the_line_key_is_not_a_statement():
    record = make_record(LINE, payload("rev"))
    assert "it is a record" in refused(
        line_evidence(LINE, DEVICE, statement=record), "evidence_malformed"
    )
