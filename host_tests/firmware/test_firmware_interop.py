"""Firmware crypto checked against independent implementations (CPython only).

The firmware's ECDSA, CBOR and COSE code is our own (nothing exists for
MicroPython); these tests hold it to `cryptography`, `ecdsa`, `cbor2` and
`pycose`, which share no code with it.
"""

from __future__ import annotations

import hashlib

import cbor2
import ecdsa
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec as crypto_ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycose.algorithms import Es256
from pycose.headers import KID, Algorithm
from pycose.keys.curves import P256
from pycose.keys.ec2 import EC2Key
from pycose.messages import Sign1Message

from signet import cbor, ec
from signet import ecdsa as fw_ecdsa
from signet.builder import RecordBuilder
from signet.record import GENESIS_HASH
from signet.signer import SoftwareSigner
from signet_gateway.verify.pubkeys import DevicePublicKey
from signet_gateway.verify.verifier import Verifier

CURVES = {
    "p256": (ec.curve_by_name("p256"), crypto_ec.SECP256R1(), ecdsa.NIST256p),
    "secp256k1": (ec.curve_by_name("secp256k1"), crypto_ec.SECP256K1(), ecdsa.SECP256k1),
}
# valid on both curves
scalars = st.integers(min_value=1, max_value=min(c[0].n for c in CURVES.values()) - 1)


def _sample_records(signer: SoftwareSigner) -> list[tuple[bytes, bytes]]:
    builder = RecordBuilder(signer)
    out = []
    prev = GENESIS_HASH
    fields = (
        ("boot", {"rc": "power_on", "fw": "0.1.0", "ls": 0}),
        ("hb", {"iv": 60000, "st": "ok"}),
        ("rev", {"am": 250, "cur": "EUR", "src": "pulse", "ref": "t-1"}),
        ("meter", {"q": -12, "unit": "Wh"}),
        ("evt", {"ev": "clock_lost"}),
    )
    for n, (kind, f) in enumerate(fields, start=1):
        payload, record = builder.build(kind, n, 1, n * 10, 1700000000000 + n, prev, f)
        prev = hashlib.sha256(payload).digest()
        out.append((payload, record))
    return out


def _sig_structure(protected: bytes, payload: bytes) -> bytes:
    return cbor2.dumps(["Signature1", protected, b"", payload])


@pytest.mark.parametrize("curve_name", sorted(CURVES))
def test_records_verify_with_cryptography_and_ecdsa(curve_name: str) -> None:
    _, crypto_curve, ecdsa_curve = CURVES[curve_name]
    signer = SoftwareSigner.generate(curve_name)
    crypto_pub = crypto_ec.EllipticCurvePublicKey.from_encoded_point(
        crypto_curve, signer.public_key
    )
    ecdsa_pub = ecdsa.VerifyingKey.from_string(
        signer.public_key, curve=ecdsa_curve, hashfunc=hashlib.sha256
    )
    for payload, record in _sample_records(signer):
        tag = cbor2.loads(record)
        assert tag.tag == 18
        protected, unprotected, body, sig = tag.value
        assert body == payload
        assert unprotected == {4: signer.kid}
        assert cbor2.loads(protected) == {1: signer.alg}
        tbs = _sig_structure(protected, payload)
        r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
        crypto_pub.verify(encode_dss_signature(r, s), tbs, crypto_ec.ECDSA(hashes.SHA256()))
        assert ecdsa_pub.verify(sig, tbs)
        with pytest.raises(InvalidSignature):
            crypto_pub.verify(
                encode_dss_signature(r, s), tbs + b"x", crypto_ec.ECDSA(hashes.SHA256())
            )


def _pycose_decode(record: bytes) -> Sign1Message:
    # pycose 1.1's Sign1Message.decode() insists on a list and a dict, but
    # cbor2 >= 6 decodes the contents of a tag immutably (tuple, frozen map);
    # hand pycose the same structure through its own from_cose_obj() so it
    # still parses the headers and verifies the signature itself.
    tag = cbor2.loads(record)
    assert tag.tag == 18
    protected, unprotected, payload, signature = tag.value
    return Sign1Message.from_cose_obj([protected, dict(unprotected), payload, signature], True)


@pytest.mark.parametrize("curve_name", sorted(CURVES))
def test_host_verifier_accepts_every_firmware_kind(curve_name: str) -> None:
    signer = SoftwareSigner.generate(curve_name)
    key = DevicePublicKey.from_sec1(signer.public_key, curve_name)
    verifier = Verifier({key.kid: key})
    for n, (payload, record) in enumerate(_sample_records(signer), start=1):
        rec = verifier.verify(record, expected_kid=signer.kid)
        assert rec.seq == n and rec.device_id == signer.device_id
        assert rec.payload_bytes == payload
        assert rec.payload == cbor2.loads(payload)


def test_p256_records_verify_with_pycose() -> None:
    signer = SoftwareSigner.generate("p256")
    point = signer.public_key_uncompressed
    key = EC2Key(crv=P256, x=point[1:33], y=point[33:])
    for payload, record in _sample_records(signer):
        msg = _pycose_decode(record)
        msg.key = key
        assert msg.get_attr(Algorithm) == Es256
        assert msg.get_attr(KID) == signer.kid
        assert msg.payload == payload
        assert msg.verify_signature()
        tampered = bytearray(record)
        tampered[-1] ^= 1
        bad = _pycose_decode(bytes(tampered))
        bad.key = key
        assert not bad.verify_signature()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(d=scalars, curve_name=st.sampled_from(sorted(CURVES)))
def test_public_key_matches_cryptography(d: int, curve_name: str) -> None:
    curve, crypto_curve, _ = CURVES[curve_name]
    expected = crypto_ec.derive_private_key(d, crypto_curve).public_key().public_numbers()
    assert ec.public_point(curve, d) == (expected.x, expected.y)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(d=scalars, message=st.binary(max_size=200), curve_name=st.sampled_from(sorted(CURVES)))
def test_signature_equals_ecdsa_rfc6979_low_s(d: int, message: bytes, curve_name: str) -> None:
    curve, _, ecdsa_curve = CURVES[curve_name]
    digest = hashlib.sha256(message).digest()
    sk = ecdsa.SigningKey.from_secret_exponent(d, curve=ecdsa_curve, hashfunc=hashlib.sha256)
    r_ref, s_ref = ecdsa.util.sigdecode_string(
        sk.sign_digest_deterministic(digest, hashfunc=hashlib.sha256), curve.n
    )
    sig = fw_ecdsa.sign_digest(curve, d, digest)
    assert int.from_bytes(sig[:32], "big") == r_ref
    assert int.from_bytes(sig[32:], "big") == min(s_ref, curve.n - s_ref)


cbor_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.binary(max_size=40)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(value=cbor_values)
def test_cbor_encoder_matches_cbor2_canonical(value: object) -> None:
    ours = cbor.dumps(value, 8192)
    assert ours == cbor2.dumps(value, canonical=True)
    assert cbor2.loads(ours) == value
