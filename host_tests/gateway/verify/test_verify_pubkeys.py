"""DevicePublicKey: loading, kid derivation, invalid keys, the bool verify()."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from kit import independent_signer as signer
from signet_gateway.verify.pubkeys import CURVES, DevicePublicKey, kid_for
from signet_gateway.verify.refusals import Refused

CURVE_NAMES = ("p256", "secp256k1")
P256_P = 2**256 - 2**224 + 2**192 + 2**96 - 1
K1_P = 2**256 - 2**32 - 977
FIELD = {"p256": P256_P, "secp256k1": K1_P}


def bad_key(call: object, *args: object) -> Refused:
    with pytest.raises(Refused) as err:
        call(*args)  # type: ignore[operator]
    assert err.value.reason == "bad_key"
    return err.value


@pytest.mark.parametrize("curve", CURVE_NAMES)
def test_all_encodings_give_the_same_key(curve: str) -> None:
    key = signer.make_key(curve, seed=3)
    a = DevicePublicKey.from_sec1(key.compressed, curve)  # type: ignore[arg-type]
    b = DevicePublicKey.from_sec1(key.uncompressed, curve)  # type: ignore[arg-type]
    c = DevicePublicKey.from_pem(key.pem)
    d = DevicePublicKey.from_pem(key.pem.decode())
    assert a == b == c == d and len({a, b, c, d}) == 1
    assert a.curve == curve
    assert a.alg == CURVES[curve].alg == (-7 if curve == "p256" else -47)
    assert a.compressed == key.compressed and len(a.compressed) == 33
    assert a.uncompressed == key.uncompressed
    assert a.kid == hashlib.sha256(key.compressed).digest()[:16] == key.kid == kid_for(a.compressed)
    assert a.device_id == key.kid.hex() and len(a.device_id) == 32
    assert a.to_pem() == key.pem
    assert DevicePublicKey.from_pem(a.to_pem()) == a
    assert curve in repr(a) and a.device_id in repr(a)


def test_same_point_bytes_on_two_curves_are_different_keys() -> None:
    key = signer.make_key("p256")
    try:
        other = DevicePublicKey.from_sec1(key.compressed, "secp256k1")
    except Refused:
        return  # x is not on secp256k1: also fine
    assert other != DevicePublicKey.from_sec1(key.compressed, "p256")


@pytest.mark.parametrize("curve", CURVE_NAMES)
def test_uncompressed_point_not_on_curve(curve: str) -> None:
    key = signer.make_key(curve)
    raw = bytearray(key.uncompressed)
    raw[-1] ^= 1  # y + 1 or y - 1: off the curve
    err = bad_key(DevicePublicKey.from_sec1, bytes(raw), curve)
    assert "not a point on the" in err.detail


@pytest.mark.parametrize("curve", CURVE_NAMES)
def test_compressed_x_without_a_point(curve: str) -> None:
    info = CURVES[curve]
    p = FIELD[curve]
    b = (
        7
        if curve == "secp256k1"
        else int("5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b", 16)
    )
    a = 0 if curve == "secp256k1" else p - 3
    x = 1
    while True:  # find an x for which x^3 + ax + b is not a square mod p
        rhs = (x**3 + a * x + b) % p
        if pow(rhs, (p - 1) // 2, p) == p - 1:
            break
        x += 1
    err = bad_key(DevicePublicKey.from_sec1, b"\x02" + x.to_bytes(32, "big"), curve)
    assert info.display in err.detail


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "0 bytes"),
        (b"\x02" + bytes(31), "32 bytes"),
        (b"\x04" + bytes(63), "64 bytes"),
        (b"\x04" + bytes(64) + b"\x00", "66 bytes"),
        (b"\x05" + bytes(32), "invalid SEC1 prefix 0x05"),
        (b"\x04" + bytes(32), "invalid SEC1 prefix 0x04"),
        (b"\x02" + bytes(64), "invalid SEC1 prefix 0x02"),
        (b"\x04" + bytes(64), "not a point"),  # (0, 0)
        (b"\x02" + b"\xff" * 32, "not a point"),  # x >= p
    ],
)
def test_bad_sec1(data: bytes, words: str) -> None:
    for curve in CURVE_NAMES:
        assert words in bad_key(DevicePublicKey.from_sec1, data, curve).detail


def test_bad_sec1_arguments() -> None:
    key = signer.make_key("p256")
    assert "unknown curve" in bad_key(DevicePublicKey.from_sec1, key.compressed, "p384").detail
    assert "must be bytes" in bad_key(DevicePublicKey.from_sec1, key.compressed.hex()).detail


def test_bad_pem() -> None:
    bad_key(DevicePublicKey.from_pem, b"")
    bad_key(
        DevicePublicKey.from_pem, b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
    )
    bad_key(DevicePublicKey.from_pem, signer.make_key("p256").compressed)
    # a private key is not a public key
    private_pem = signer.make_key("p256").private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    bad_key(DevicePublicKey.from_pem, private_pem)


@pytest.mark.parametrize(
    "private",
    [
        ec.generate_private_key(ec.SECP384R1()),
        ed25519.Ed25519PrivateKey.generate(),
        rsa.generate_private_key(public_exponent=65537, key_size=1024),
    ],
    ids=["p384", "ed25519", "rsa"],
)
def test_unsupported_key_types(private: object) -> None:
    pem = private.public_key().public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    err = bad_key(DevicePublicKey.from_pem, pem)
    assert "not supported" in err.detail or "not an EC public key" in err.detail


@pytest.mark.parametrize("curve", CURVE_NAMES)
def test_verify_returns_bool_with_the_same_rules_on_both_curves(curve: str) -> None:
    key = signer.make_key(curve)
    public = DevicePublicKey.from_sec1(key.compressed, curve)  # type: ignore[arg-type]
    msg = b"hello signet"
    r, s = key.sign_rs(msg)
    n = key.n
    assert public.verify(signer.rs_bytes(r, s), msg) is True
    assert public.verify(signer.rs_bytes(r, n - s), msg) is False  # high-S twin
    assert public.verify(signer.der_signature(r, s), msg) is False
    assert public.verify(signer.rs_bytes(r, s), msg + b"!") is False
    assert public.verify(signer.rs_bytes(r, s)[:63], msg) is False
    assert public.verify(signer.rs_bytes(0, s), msg) is False
    assert public.verify(bytearray(signer.rs_bytes(r, s)), msg) is True
    assert public.verify("not bytes", msg) is False  # type: ignore[arg-type]
