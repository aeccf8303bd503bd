"""Valid records of every kind, on both curves, verify and round-trip their fields."""

from __future__ import annotations

import hashlib

import cbor2
import pytest

from kit import independent_signer as signer
from signet_gateway.verify.verifier import (
    ALG_ES256,
    ALG_ES256K,
    DevicePublicKey,
    Refused,
    VerifiedRecord,
    Verifier,
)

CURVES = ("p256", "secp256k1")
KINDS = tuple(signer.SAMPLE_FIELDS)


def verifier_for(*keys: signer.SignerKey) -> Verifier:
    return Verifier({k.kid: DevicePublicKey.from_sec1(k.compressed, k.curve) for k in keys})


@pytest.mark.parametrize("curve", CURVES)
@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_accepted_and_round_trips(curve: str, kind: str) -> None:
    key = signer.make_key(curve, seed=7)
    body = signer.payload(kind, n=42)
    raw = signer.make_record(key, body)
    rec = verifier_for(key).verify(raw, expected_kid=key.kid)
    assert isinstance(rec, VerifiedRecord)
    assert rec.payload == body
    assert list(rec.payload) == list(body)  # order preserved too
    assert rec.raw == raw
    assert rec.kid == key.kid
    assert rec.device_id == key.kid.hex() and len(rec.device_id) == 32
    assert rec.alg == (ALG_ES256 if curve == "p256" else ALG_ES256K)
    assert rec.seq == 42
    assert rec.kind == kind
    assert rec.payload_bytes == cbor2.dumps(body)
    assert rec.prev_hash == bytes(32)
    assert rec.payload_hash == hashlib.sha256(rec.payload_bytes).digest()
    assert len(rec.signature) == 64


@pytest.mark.parametrize("curve", CURVES)
def test_without_expected_kid_and_with_several_devices(curve: str) -> None:
    keys = [signer.make_key(curve, seed=i) for i in range(3)]
    verifier = verifier_for(*keys)
    for i, key in enumerate(keys):
        rec = verifier.verify(signer.make_record(key, signer.payload("hb", n=i + 1)))
        assert rec.kid == key.kid and rec.seq == i + 1


@pytest.mark.parametrize(
    ("kind", "overrides"),
    [
        ("rev", {"ref": signer.DELETE}),
        ("meter", {"src": signer.DELETE}),
        ("evt", {"msg": signer.DELETE}),
        ("hb", {"t": None}),
        ("hb", {"n": 1, "b": 0, "u": 0, "t": 0}),
        ("hb", {"n": 2**53 - 1, "b": 2**32 - 1, "u": 2**53 - 1, "t": 2**53 - 1}),
        ("hb", {"iv": 1, "st": "a"}),
        ("hb", {"iv": 2**32 - 1, "st": "x" * 32}),
        ("hb", {"st": "lower_case.09-ok"}),
        ("hb", {"p": bytes(range(32))}),
        ("rev", {"am": -(2**53 - 1)}),
        ("rev", {"am": 2**53 - 1}),
        ("rev", {"am": 0, "cur": "JPY"}),
        ("rev", {"ref": "x"}),
        ("rev", {"ref": "é" * 32}),  # 64 bytes of UTF-8
        ("meter", {"q": 0, "unit": "m^3/h%._-Az09"}),
        ("meter", {"unit": "x" * 16}),
        ("boot", {"fw": "!" + "~" * 31, "ls": 0}),
        ("boot", {"ls": 2**53 - 1}),
        ("evt", {"msg": "m" * 64}),
    ],
)
def test_boundary_values_accepted(kind: str, overrides: dict[str, object]) -> None:
    key = signer.make_key("p256")
    body = signer.payload(kind, **overrides)
    rec = verifier_for(key).verify(signer.make_record(key, body))
    assert rec.payload == body


def test_key_order_is_free() -> None:
    key = signer.make_key("p256")
    body = dict(reversed(list(signer.payload("rev").items())))
    assert verifier_for(key).verify(signer.make_record(key, body)).payload == body


@pytest.mark.parametrize("curve", CURVES)
def test_hash_chain_links(curve: str) -> None:
    key = signer.make_key(curve)
    verifier = verifier_for(key)
    prev = bytes(32)
    for n in range(1, 4):
        rec = verifier.verify(signer.make_record(key, signer.payload("hb", n=n, p=prev)))
        assert rec.prev_hash == prev
        prev = rec.payload_hash


def test_callable_lookup_is_cached_and_forgettable() -> None:
    key = signer.make_key("p256")
    public = DevicePublicKey.from_sec1(key.compressed)
    calls: list[bytes] = []

    def lookup(kid: bytes) -> DevicePublicKey | None:
        calls.append(kid)
        return public if kid == public.kid else None

    verifier = Verifier(lookup)
    raw = signer.make_record(key, signer.payload("hb"))
    verifier.verify(raw)
    verifier.verify(raw)
    assert calls == [key.kid]
    verifier.forget(key.kid)
    verifier.verify(raw)
    assert calls == [key.kid, key.kid]
    verifier.forget()
    other = signer.make_key("p256", seed=99)
    with pytest.raises(Refused) as err:
        verifier.verify(signer.make_record(other, signer.payload("hb")))
    assert err.value.reason == "unknown_key"
    assert calls[-1] == other.kid


def test_mapping_is_read_live() -> None:
    key = signer.make_key("secp256k1")
    keys: dict[bytes, DevicePublicKey] = {}
    verifier = Verifier(keys)
    raw = signer.make_record(key, signer.payload("evt"))
    with pytest.raises(Refused, match="unknown_key"):
        verifier.verify(raw)
    keys[key.kid] = DevicePublicKey.from_sec1(key.uncompressed, "secp256k1")
    assert verifier.verify(raw).kind == "evt"


def test_bytearray_and_memoryview_input() -> None:
    key = signer.make_key("p256")
    raw = signer.make_record(key, signer.payload("hb"))
    verifier = verifier_for(key)
    assert verifier.verify(bytearray(raw)).raw == raw
    assert verifier.verify(memoryview(raw)).raw == raw


def test_verifier_rejects_non_key_store() -> None:
    with pytest.raises(TypeError):
        Verifier(42)  # type: ignore[arg-type]


def test_pycose_verifies_independent_signer_records() -> None:
    """Cross-check the test signer itself against a third COSE implementation (P-256)."""
    from pycose.keys import EC2Key
    from pycose.keys.curves import P256
    from pycose.messages import Sign1Message

    key = signer.make_key("p256")
    raw = signer.make_record(key, signer.payload("rev"))
    # cbor2 >= 6 decodes a tag's contents as a tuple, which pycose's decode() rejects;
    # hand it the array directly.
    msg = Sign1Message.from_cose_obj(cbor2.loads(raw[1:]), True)
    numbers = key.private.public_key().public_numbers()
    msg.key = EC2Key(crv=P256, x=numbers.x.to_bytes(32, "big"), y=numbers.y.to_bytes(32, "big"))
    assert msg.verify_signature()
