"""The record verifier refuses statements (enroll, line, rotate): they are never records."""

from __future__ import annotations

import pytest

from kit.independent_signer import make_key, make_record, payload
from signet_gateway.verify.verifier import DevicePublicKey, Refused, Verifier

KEY = make_key("p256", 71)
VERIFIER = Verifier({KEY.kid: DevicePublicKey.from_sec1(KEY.compressed)})


@pytest.mark.parametrize("kind", ["enroll", "line", "rotate"])
def test_a_statement_signed_by_the_device_key_is_not_a_record(kind: str):
    # Even with every record field present, a statement kind is refused as a record.
    record = make_record(KEY, payload(kind))
    with pytest.raises(Refused) as info:
        VERIFIER.verify(record)
    assert info.value.reason == "bad_payload"
    assert f"{kind!r} is a statement, not a record" in info.value.detail


def test_a_bare_rotate_statement_is_not_a_record():
    body = {
        "v": 1,
        "k": "rotate",
        "old": KEY.kid,
        "pk": KEY.compressed,
        "crv": "p256",
        "last": 3,
        "t": None,
    }
    with pytest.raises(Refused) as info:
        VERIFIER.verify(make_record(KEY, body))
    assert info.value.reason == "bad_payload"


def test_the_record_verifier_knows_every_statement_kind_the_trust_layer_verifies():
    from signet_gateway.trust.statements import STATEMENT_KINDS as VERIFIED
    from signet_gateway.verify.payload_schema import STATEMENT_KINDS

    assert set(STATEMENT_KINDS) == set(VERIFIED)
