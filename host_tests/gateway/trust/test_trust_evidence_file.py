"""The evidence file is parsed strictly: malformed -> evidence_malformed naming the field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kit.crafted_evidence import DROP, NOW_MS, Challenges, TrustAndGo, se_chain_evidence
from kit.independent_signer import make_key
from signet_gateway.trust import EvidenceRefused, TrustPolicy, verify_evidence
from signet_gateway.trust.evidence_file import MAX_EVIDENCE_BYTES
from signet_gateway.verify.pubkeys import DevicePublicKey

DEVICE = make_key("p256", 41)
KEY = DevicePublicKey.from_sec1(DEVICE.compressed)
PKI = TrustAndGo(DEVICE)
GOOD = se_chain_evidence(DEVICE, PKI)
POLICY = TrustPolicy(se_roots=(PKI.root(),), now_ms=NOW_MS)


def malformed(raw: bytes) -> str:
    challenges = Challenges()
    challenges.issue()
    with pytest.raises(EvidenceRefused) as info:
        verify_evidence(raw, KEY, POLICY, challenges.check)
    assert info.value.reason == "evidence_malformed", info.value
    assert "\n" not in info.value.sentence
    return info.value.sentence


def edited(**fields: Any) -> bytes:
    doc = json.loads(GOOD)
    for key, value in fields.items():
        if value is DROP:
            doc.pop(key)
        else:
            doc[key] = value
    return json.dumps(doc).encode()


def test_the_good_file_verifies():
    challenges = Challenges()
    challenges.issue()
    assert verify_evidence(GOOD, KEY, POLICY, challenges.check).kind == "se-chain"


# Cuts relative to the file's end: its length varies with the keys made at import, and
# test ids must not (parallel workers collect the module separately and must agree).
@pytest.mark.parametrize("keep", [1, 10, -len(GOOD) // 2, -1], ids=["1", "10", "half", "all-but-1"])
def test_truncated_json(keep: int):
    assert "not valid JSON" in malformed(GOOD[:keep])


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"", "not valid JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"format": NaN}', "NaN"),
        (b'{"format": "signet-evidence/1", "format": "signet-evidence/1"}', "twice"),
        (b"[" * 100_000, "evidence file is"),
    ],
)
def test_not_an_evidence_document(raw: bytes, words: str):
    assert words in malformed(raw)


def test_an_oversized_file_is_refused_before_parsing():
    raw = GOOD[:-1] + b" " * (MAX_EVIDENCE_BYTES - len(GOOD) + 1) + b"}"
    assert len(raw) == MAX_EVIDENCE_BYTES + 1
    assert f"limit is {MAX_EVIDENCE_BYTES}" in malformed(raw)


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"format": "signet-evidence/2"}, "field 'format'"),
        ({"kind": "tpm-quote"}, "field 'kind'"),
        ({"kind": 3}, "field 'kind'"),
        ({"curve": "secp256k1"}, "field 'curve'"),
        ({"public_key": DROP}, "missing field 'public_key'"),
        ({"proof": DROP}, "missing field 'proof'"),
        ({"comment": "hi"}, "unknown field(s) 'comment'"),
        ({"public_key": "zz" * 33}, "field 'public_key' is not an even number"),
        ({"public_key": DEVICE.compressed.hex().upper()}, "lowercase hex"),
        ({"public_key": DEVICE.compressed.hex()[:-1]}, "field 'public_key' is not an even number"),
        ({"public_key": DEVICE.compressed.hex() + "00"}, "field 'public_key' is 34 bytes"),
        ({"public_key": "04" + "00" * 32}, "compressed point"),
        ({"public_key": 5}, "field 'public_key' must be a hex string, got a number"),
        ({"proof": ""}, "field 'proof' is empty"),
        ({"proof": ["00"]}, "field 'proof' must be a hex string, got a list"),
        ({"chain": []}, "field 'chain' must be a non-empty list"),
        ({"chain": "MII="}, "field 'chain' must be a non-empty list"),
        ({"chain": [1]}, "field chain[0] must be a base64 string"),
        ({"chain": ["not base64!"]}, "field chain[0] is not base64"),
        ({"chain": ["AAAA"]}, "field chain[0] is not a DER X.509 certificate"),
        ({"chain": ["QQ"]}, "not base64"),
        ({"chain": ["AAAA"] * 9}, "limit is 8"),
        ({"slot": 16}, "field 'slot' must be an integer 0..15"),
        ({"slot": True}, "field 'slot' must be an integer 0..15"),
        ({"slot": "0"}, "field 'slot' must be an integer 0..15"),
    ],
)
def test_a_wrong_field_is_named(fields: dict[str, Any], words: str):
    assert words in malformed(edited(**fields))


def test_a_proof_that_is_not_cose_is_proof_invalid():
    challenges = Challenges()
    challenges.issue()
    with pytest.raises(EvidenceRefused) as info:
        verify_evidence(edited(proof="a0"), KEY, POLICY, challenges.check)
    assert info.value.reason == "proof_invalid"
    assert "not a valid COSE_Sign1" in info.value.sentence


def test_a_second_certificate_that_is_not_der_is_named():
    doc = json.loads(GOOD)
    doc["chain"][1] = "AAAA" + doc["chain"][1][4:]  # the outer SEQUENCE's header
    assert "chain[1]" in malformed(json.dumps(doc).encode())


@pytest.mark.parametrize("bad", [None, "text", 12])
def test_evidence_that_is_not_bytes(bad: Any):
    assert "must be bytes" in malformed(bad)


def test_a_certificate_with_a_negative_serial_is_malformed():
    import base64

    doc = json.loads(GOOD)
    der = base64.b64decode(doc["chain"][0])
    serial = b"\x02\x10\x55\xce"  # INTEGER, 16 bytes, 0x55ce...: the crafted device serial
    assert der.count(serial) == 1
    doc["chain"][0] = base64.b64encode(der.replace(serial, b"\x02\x10\xd5\xce")).decode()
    assert "serial number is not positive" in malformed(json.dumps(doc).encode())
