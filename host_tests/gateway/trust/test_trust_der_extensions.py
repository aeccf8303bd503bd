"""Extensions read from a certificate's DER by hand (gateway/trust/der_extensions.py)."""

from __future__ import annotations

import pytest

from kit.crafted_evidence import TrustAndGo
from kit.independent_signer import make_key
from signet_gateway.trust.der_extensions import (
    DerError,
    basic_constraints,
    key_usage,
    read_extensions,
)


def tlv(tag: int, body: bytes) -> bytes:
    assert len(body) < 0x80
    return bytes((tag, len(body))) + body


def tbs_with(*extensions: bytes) -> bytes:
    fields = tlv(0x02, b"\x01") + tlv(0x30, b"") + tlv(0xA3, tlv(0x30, b"".join(extensions)))
    return tlv(0x30, fields)


BC_OID = tlv(0x06, bytes.fromhex("551d13"))
KU_OID = tlv(0x06, bytes.fromhex("551d0f"))
CA_TRUE = tlv(0x04, tlv(0x30, tlv(0x01, b"\xff") + tlv(0x02, b"\x00")))


def test_the_extensions_of_a_trust_and_go_signer_certificate():
    signer = TrustAndGo(make_key("p256", 95)).signer()
    by_oid = {e.oid: e for e in read_extensions(signer.tbs_certificate_bytes)}
    bc = basic_constraints(by_oid["2.5.29.19"].value)
    assert (bc.ca, bc.path_length, by_oid["2.5.29.19"].critical) == (True, 0, True)
    ku = key_usage(by_oid["2.5.29.15"].value)
    assert (ku.digital_signature, ku.key_cert_sign) == (True, True)
    assert "2.5.29.14" in by_oid and not by_oid["2.5.29.14"].critical


def test_no_extensions():
    assert read_extensions(tlv(0x30, tlv(0x02, b"\x01"))) == []


@pytest.mark.parametrize(
    ("tbs", "words"),
    [
        (tbs_with(tlv(0x30, BC_OID + CA_TRUE), tlv(0x30, BC_OID + CA_TRUE)), "appears twice"),
        (tbs_with(tlv(0x30, BC_OID + tlv(0x01, b"\x01") + CA_TRUE)), "critical flag"),
        (tbs_with(tlv(0x30, BC_OID)), "OCTET STRING"),
        (tbs_with(tlv(0x31, BC_OID + CA_TRUE)), "OCTET STRING"),
        (tbs_with()[:-1], "past the end"),
        (tbs_with() + b"\x00", "not one SEQUENCE"),
        (tlv(0x30, tlv(0xA3, tlv(0x30, b"")) + tlv(0xA3, tlv(0x30, b""))), "more than one"),
    ],
)
def test_malformed_extensions(tbs: bytes, words: str):
    with pytest.raises(DerError, match=words):
        read_extensions(tbs)


@pytest.mark.parametrize(
    ("value", "ca", "path_length"),
    [
        (tlv(0x30, b""), False, None),
        (tlv(0x30, tlv(0x01, b"\xff")), True, None),
        (tlv(0x30, tlv(0x01, b"\xff") + tlv(0x02, b"\x03")), True, 3),
    ],
)
def test_basic_constraints(value: bytes, ca: bool, path_length: int | None):
    bc = basic_constraints(value)
    assert (bc.ca, bc.path_length) == (ca, path_length)


@pytest.mark.parametrize(
    "value",
    [
        tlv(0x30, tlv(0x02, b"\xff")),
        tlv(0x30, tlv(0x04, b"")),
        tlv(0x04, b""),
        tlv(0x30, b"") + b"\x00",
    ],
)
def test_bad_basic_constraints(value: bytes):
    with pytest.raises(DerError):
        basic_constraints(value)


def test_key_usage_bits():
    assert key_usage(tlv(0x03, b"\x07\x80")).digital_signature  # bit 0 only
    only_cert_sign = key_usage(tlv(0x03, b"\x02\x04"))
    assert only_cert_sign.key_cert_sign and not only_cert_sign.digital_signature
    with pytest.raises(DerError):
        key_usage(tlv(0x03, b"\x08\x00"))
