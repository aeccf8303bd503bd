"""Rotation statements: signed by the old key, naming it, low-S; never confused with records."""

from __future__ import annotations

from typing import Any

import pytest

from kit.crafted_evidence import DROP, NOW_MS, rotate_statement
from kit.independent_signer import make_key, make_record, payload, rs_bytes
from signet_gateway.trust import EvidenceRefused, verify_rotation
from signet_gateway.verify.pubkeys import DevicePublicKey

OLD = make_key("p256", 61)
NEW = make_key("p256", 62)
OLD_KEY = DevicePublicKey.from_sec1(OLD.compressed)


def refused(statement: bytes, old: DevicePublicKey = OLD_KEY) -> str:
    with pytest.raises(EvidenceRefused) as info:
        verify_rotation(statement, old)
    assert info.value.reason == "rotation_invalid", info.value
    return info.value.sentence


def test_a_good_rotation():
    rotation = verify_rotation(rotate_statement(OLD, NEW), OLD_KEY)
    assert rotation.new_key == DevicePublicKey.from_sec1(NEW.compressed)
    assert (rotation.last_n, rotation.t) == (41, NOW_MS)


def test_a_rotation_to_a_secp256k1_key_with_no_clock():
    new = make_key("secp256k1", 63)
    rotation = verify_rotation(rotate_statement(OLD, new, t=None, last=0), OLD_KEY)
    assert rotation.new_key.curve == "secp256k1" and rotation.t is None and rotation.last_n == 0


def test_signed_by_the_wrong_key():
    other = make_key("p256", 64)
    assert "not by key" in refused(rotate_statement(other, NEW, old=OLD.kid))


def test_a_forged_signature_under_the_old_kid():
    other = make_key("p256", 64)
    body = {
        "v": 1,
        "k": "rotate",
        "old": OLD.kid,
        "pk": NEW.compressed,
        "crv": "p256",
        "last": 1,
        "t": None,
    }
    assert "does not verify" in refused(make_record(other, body, kid=OLD.kid))


def test_old_kid_mismatch():
    other = make_key("p256", 65)
    assert "names old kid" in refused(rotate_statement(OLD, NEW, old=other.kid))


def test_a_high_s_signature():
    body = {
        "v": 1,
        "k": "rotate",
        "old": OLD.kid,
        "pk": NEW.compressed,
        "crv": "p256",
        "last": 1,
        "t": None,
    }
    statement = make_record(OLD, body, sig_transform=lambda r, s, n: rs_bytes(r, n - s))
    assert "n/2" in refused(statement)


def test_a_record_passed_as_a_statement():
    assert "it is a record (k = 'hb')" in refused(make_record(OLD, payload("hb")))


def test_another_statement_kind_passed_as_a_rotation():
    body = {"v": 1, "k": "enroll", "c": bytes(32)}
    assert "field 'k' must be 'rotate'" in refused(make_record(OLD, body))


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"last": -1}, "field 'last'"),
        ({"last": DROP}, "missing field 'last'"),
        ({"t": DROP}, "missing field 't'"),
        ({"crv": "p384"}, "field 'crv'"),
        ({"pk": b"\x05" + bytes(32)}, "new key: public key of 33 bytes has invalid SEC1 prefix"),
        ({"pk": OLD.compressed}, "names the old key as the new key"),
        ({"old": OLD.kid[:8]}, "field 'old' is 8 bytes"),
        ({"note": "x"}, "unknown field"),
        ({"last": True}, "field 'last'"),
    ],
)
def test_a_statement_not_matching_its_schema(fields: dict[str, Any], words: str):
    assert words in refused(rotate_statement(OLD, NEW, **fields))


def test_not_cose_at_all():
    assert "not a valid COSE_Sign1" in refused(b"\xa0")
