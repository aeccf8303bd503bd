# Firmware ECDSA core: RFC 6979 vectors, HMAC, scalar multiplication, low-S.
# Runs under CPython (pytest) and the MicroPython unix port (mprun.py).

import hashlib

from signet import ec, ecdsa
from signet.rfc6979 import NonceStream, hmac_sha256

try:
    from . import reference_ec
    from . import vectors_ecdsa as vectors
    from .fwassert import hexlify, raises
except ImportError:  # MicroPython runner: flat import path
    import reference_ec
    import vectors_ecdsa as vectors
    from fwassert import hexlify, raises

P256 = ec.curve_by_name("p256")
SECP256K1 = ec.curve_by_name("secp256k1")


def teardown_function(function=None):
    # A device holds one curve's comb table; tests use both, so free them
    # between tests to stay inside the 64 KiB heap the MicroPython run uses.
    ec.release_table()


def test_hmac_sha256_rfc4231():
    for key, data, mac in vectors.HMAC_SHA256:
        assert hexlify(hmac_sha256(key, data)) == mac
        # The same MAC when the message arrives in pieces.
        assert hexlify(hmac_sha256(key, data[:3], data[3:])) == mac


def test_rfc6979_p256_nonces():
    n = P256.n
    for msg, k, _, _ in vectors.P256_SHA256:
        assert NonceStream(vectors.P256_PRIVATE, hashlib.sha256(msg).digest(), n).next() == k


def test_rfc6979_secp256k1_nonces():
    n = SECP256K1.n
    for d, msg, k in vectors.SECP256K1_NONCES:
        assert NonceStream(d, hashlib.sha256(msg).digest(), n).next() == k


def test_rfc6979_p256_signatures_low_s():
    curve = P256
    n = curve.n
    for msg, _, r, s in vectors.P256_SHA256:
        sig = ecdsa.sign_digest(curve, vectors.P256_PRIVATE, hashlib.sha256(msg).digest())
        assert len(sig) == 64
        assert int.from_bytes(sig[:32], "big") == r
        # The published s, or its low-S twin n - s: the firmware always emits s <= n/2.
        expected_s = s if s <= n // 2 else n - s
        assert int.from_bytes(sig[32:], "big") == expected_s


def test_public_key_rfc6979():
    x, y = ec.public_point(P256, vectors.P256_PRIVATE)
    assert x == vectors.P256_PUBLIC_X
    assert y == vectors.P256_PUBLIC_Y
    assert ec.encode_point(x, y, True) == b"\x03" + x.to_bytes(32, "big")
    assert ec.encode_point(x, y, False) == b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")


def test_small_multiples():
    for curve, table in (
        (P256, vectors.P256_MULTIPLES),
        (SECP256K1, vectors.SECP256K1_MULTIPLES),
    ):
        assert ec.public_point(curve, 1) == (curve.gx, curve.gy)
        for k, x in table:
            assert ec.public_point(curve, k)[0] == x
        # (n-1)G = -G
        assert ec.public_point(curve, curve.n - 1) == (curve.gx, curve.p - curve.gy)


def _structured_scalars(n):
    # Scalars that stress the comb: zero columns, single teeth, all ones, the top.
    yield 1
    yield 2**42
    yield 2**43
    yield 2**255
    yield (1 << 256) - 1 - (1 << 200)  # reduced mod n by the caller
    yield n - 2
    yield int("5" * 64, 16)
    yield int("8000000000" * 6 + "8000", 16)
    for i in range(6):
        yield 1 << (i * 43)


def test_comb_matches_reference():
    for curve in (P256, SECP256K1):
        G = (curve.gx, curve.gy)
        for k in _structured_scalars(curve.n):
            k %= curve.n
            if k == 0:
                continue
            assert ec.public_point(curve, k) == reference_ec.mul(curve, k, G), hex(k)


def test_signatures_verify_with_reference_and_are_low_s():
    for curve in (P256, SECP256K1):
        d = ecdsa.generate_scalar(curve)
        public = ec.public_point(curve, d)
        for i in range(3):
            digest = hashlib.sha256(b"record %d" % i).digest()
            sig = ecdsa.sign_digest(curve, d, digest)
            r = int.from_bytes(sig[:32], "big")
            s = int.from_bytes(sig[32:], "big")
            assert 0 < s <= curve.n // 2
            assert reference_ec.verify(curve, public, digest, r, s)
            # Deterministic: the same digest gives the same signature.
            assert ecdsa.sign_digest(curve, d, digest) == sig
            # And a different digest does not verify.
            other = hashlib.sha256(b"other").digest()
            assert not reference_ec.verify(curve, public, other, r, s)


def test_generated_scalars_in_range_and_distinct():
    seen = set()
    for curve in (P256, SECP256K1):
        for _ in range(8):
            d = ecdsa.generate_scalar(curve)
            assert 0 < d < curve.n
            seen.add(d)
    assert len(seen) == 16


def test_bad_inputs_rejected():
    for bad in (0, P256.n, -1):
        raises(ValueError, ecdsa.sign_digest, P256, bad, bytes(32))
    assert "32 bytes" in raises(ValueError, ecdsa.sign_digest, P256, 1, bytes(31))
    assert "unknown curve" in raises(ValueError, ec.curve_by_name, "p384")


def test_on_curve():
    for curve in (P256, SECP256K1):
        assert curve.on_curve(curve.gx, curve.gy)
        assert not curve.on_curve(curve.gx, curve.gy + 1)
        assert not curve.on_curve(curve.gx, curve.gy + curve.p)


def test_blinded_inverse():
    import os

    for m in (P256.p, P256.n, SECP256K1.p, SECP256K1.n):
        for x in (1, 2, m - 1, int.from_bytes(os.urandom(32), "big") % (m - 1) + 1):
            inv = ec.inverse(x, m)
            assert 0 < inv < m
            assert x * inv % m == 1
        for zero in (0, m):
            raises(ValueError, ec.inverse, zero, m)
