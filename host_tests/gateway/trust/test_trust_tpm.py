"""tpm2-certify evidence: a hand-marshalled TPMS_ATTEST signed by an AK chaining to a test root."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from kit.crafted_evidence import (
    CHALLENGE,
    DECRYPT,
    FIXED_PARENT,
    FIXED_TPM,
    KEY_ATTRIBUTES,
    NOW_MS,
    RESTRICTED,
    SENSITIVE_DATA_ORIGIN,
    SIGN,
    Challenges,
    TpmPki,
    ec_key,
    tpm_evidence,
    tpm_name,
    tpm_signature,
    tpms_attest,
    tpmt_public,
)
from kit.independent_signer import make_key
from signet_gateway.trust import EvidenceRefused, TrustPolicy, verify_evidence
from signet_gateway.verify.pubkeys import DevicePublicKey

DEVICE = make_key("p256", 21)
KEY = DevicePublicKey.from_sec1(DEVICE.compressed)
PKI = TpmPki()
ROOT = PKI.root()


def policy(**changes: Any) -> TrustPolicy:
    return TrustPolicy(**{"tpm_roots": (ROOT,), "now_ms": NOW_MS, **changes})


def refused(
    raw: bytes, reason: str, pol: TrustPolicy | None = None, challenges: Challenges | None = None
) -> str:
    if challenges is None:
        challenges = Challenges()
        challenges.issue()
    with pytest.raises(EvidenceRefused) as info:
        verify_evidence(raw, KEY, pol or policy(), challenges.check)
    assert info.value.reason == reason, info.value
    return info.value.sentence


def test_a_certified_tpm_key_verifies():
    challenges = Challenges()
    challenges.issue()
    verified = verify_evidence(tpm_evidence(DEVICE, PKI), KEY, policy(), challenges.check)
    assert challenges.calls == [CHALLENGE]
    assert verified.kind == "tpm2-certify"
    assert verified.summary["ak_chain"][0]["subject"] == "CN=AK of test TPM 1,O=Signet Tests"
    assert verified.summary["tpm"]["attributes"] == f"0x{KEY_ATTRIBUTES:08x}"


@pytest.mark.parametrize("high_s", [True, False])
def test_the_tpms_own_signature_is_accepted_high_or_low_s(high_s: bool):
    attest = tpms_attest(tpmt_public(DEVICE))
    raw = tpm_evidence(DEVICE, PKI, attest=attest, signature=tpm_signature(PKI.ak, attest, high_s))
    challenges = Challenges()
    challenges.issue()
    assert verify_evidence(raw, KEY, policy(), challenges.check).kind == "tpm2-certify"


@pytest.mark.parametrize(
    ("missing", "words"),
    [
        (FIXED_TPM, "fixedTPM"),
        (FIXED_PARENT, "fixedParent"),
        (SENSITIVE_DATA_ORIGIN, "sensitiveDataOrigin"),
        (SIGN, "sign"),
    ],
)
def test_a_key_lacking_a_required_attribute_is_tpm_attributes(missing: int, words: str):
    public = tpmt_public(DEVICE, attributes=KEY_ATTRIBUTES & ~missing)
    assert f"lack {words}" in refused(tpm_evidence(DEVICE, PKI, public=public), "tpm_attributes")


@pytest.mark.parametrize(("extra", "words"), [(DECRYPT, "decrypt"), (RESTRICTED, "restricted")])
def test_a_key_with_a_forbidden_attribute_is_tpm_attributes(extra: int, words: str):
    public = tpmt_public(DEVICE, attributes=KEY_ATTRIBUTES | extra)
    assert f"set {words}" in refused(tpm_evidence(DEVICE, PKI, public=public), "tpm_attributes")


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"alg_type": 0x0001}, "not ECC"),
        ({"name_alg": 0x0004}, "not SHA-256"),
        ({"curve": 0x0004}, "not NIST P-256"),
    ],
)
def test_a_key_of_another_type_hash_or_curve_is_tpm_attributes(changes: dict[str, int], words: str):
    public = tpmt_public(DEVICE, **changes)
    assert words in refused(tpm_evidence(DEVICE, PKI, public=public), "tpm_attributes")


@pytest.mark.parametrize(
    "public",
    [
        tpmt_public(DEVICE)[:-1],  # truncated
        tpmt_public(DEVICE) + b"\x00",  # trailing byte
        tpmt_public(DEVICE)[:8] + b"\xff\xff" + tpmt_public(DEVICE)[10:],  # authPolicy size too big
    ],
)
def test_a_public_area_that_does_not_unmarshal_is_tpm_attributes(public: bytes):
    assert "TPMT_PUBLIC" in refused(tpm_evidence(DEVICE, PKI, public=public), "tpm_attributes")


def test_a_public_area_of_another_key_is_key_mismatch():
    public = tpmt_public(make_key("p256", 22))
    refused(tpm_evidence(DEVICE, PKI, public=public), "key_mismatch")


def test_wrong_magic_is_attest_invalid():
    public = tpmt_public(DEVICE)
    attest = tpms_attest(public, magic=0xFF544348)
    assert "magic" in refused(tpm_evidence(DEVICE, PKI, attest=attest), "attest_invalid")


def test_a_tpm2b_attest_is_refused_with_a_hint():
    attest = tpms_attest(tpmt_public(DEVICE))
    wrapped = struct.pack(">H", len(attest)) + attest
    assert "TPM2B_ATTEST" in refused(tpm_evidence(DEVICE, PKI, attest=wrapped), "attest_invalid")


def test_wrong_type_is_attest_invalid():
    attest = tpms_attest(tpmt_public(DEVICE), st=0x8018)  # TPM_ST_ATTEST_QUOTE
    assert "TPM_ST_ATTEST_CERTIFY" in refused(
        tpm_evidence(DEVICE, PKI, attest=attest), "attest_invalid"
    )


def test_a_certified_name_of_another_object_is_attest_invalid():
    other = tpmt_public(make_key("p256", 23))
    attest = tpms_attest(tpmt_public(DEVICE), certified_name=tpm_name(other))
    assert "certifies the object" in refused(
        tpm_evidence(DEVICE, PKI, attest=attest), "attest_invalid"
    )


def test_an_attest_with_trailing_bytes_is_attest_invalid():
    attest = tpms_attest(tpmt_public(DEVICE)) + b"\x00"
    assert "trailing" in refused(tpm_evidence(DEVICE, PKI, attest=attest), "attest_invalid")


def test_a_signature_by_another_key_than_the_ak_is_attest_invalid():
    attest = tpms_attest(tpmt_public(DEVICE))
    raw = tpm_evidence(DEVICE, PKI, attest=attest, signature=tpm_signature(ec_key(299), attest))
    assert "does not verify" in refused(raw, "attest_invalid")


def test_a_signature_over_other_bytes_is_attest_invalid():
    public = tpmt_public(DEVICE)
    attest = tpms_attest(public)
    signature = tpm_signature(PKI.ak, tpms_attest(public, extra_data=bytes(32)))
    refused(tpm_evidence(DEVICE, PKI, attest=attest, signature=signature), "attest_invalid")


def test_an_ak_not_chaining_to_a_tpm_root_is_unknown_root():
    other = TpmPki(root_key=ec_key(250))
    raw = tpm_evidence(DEVICE, other, ak_chain=[other.ak_cert(subject=PKI.ak_cert().subject)])
    refused(raw, "unknown_root")


def test_an_se_root_does_not_vouch_for_a_tpm():
    refused(tpm_evidence(DEVICE, PKI), "no_roots", policy(tpm_roots=(), se_roots=(ROOT,)))


def test_an_ak_cert_expired_is_cert_expired():
    import datetime as dt

    from kit.crafted_evidence import NOW

    raw = tpm_evidence(DEVICE, PKI, ak_chain=[PKI.ak_cert(not_after=NOW - dt.timedelta(days=1))])
    refused(raw, "cert_expired")


def test_extra_data_not_issued_is_challenge_unknown():
    attest = tpms_attest(tpmt_public(DEVICE), extra_data=bytes(range(32)))
    refused(tpm_evidence(DEVICE, PKI, attest=attest), "challenge_unknown")


def test_extra_data_of_another_length_is_challenge_unknown():
    attest = tpms_attest(tpmt_public(DEVICE), extra_data=b"\x01" * 16)
    refused(tpm_evidence(DEVICE, PKI, attest=attest), "challenge_unknown")


def test_empty_extra_data_is_challenge_missing():
    attest = tpms_attest(tpmt_public(DEVICE), extra_data=b"")
    refused(tpm_evidence(DEVICE, PKI, attest=attest), "challenge_missing")


def test_a_stale_challenge_is_challenge_expired():
    challenges = Challenges(ttl_ms=60_000)
    challenges.issue(at_ms=NOW_MS - 60_001)
    refused(tpm_evidence(DEVICE, PKI), "challenge_expired", challenges=challenges)
