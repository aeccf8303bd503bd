"""Device public keys (P-256 and secp256k1) and the raw r||s ECDSA check.

A device key is identified by its ``kid``: the first 16 bytes of SHA-256 over
the 33-byte compressed SEC1 point; the lowercase hex of the kid is the device
id used in MQTT topics and file names.

Verification backends: P-256 uses ``cryptography`` (OpenSSL); secp256k1 uses
``coincurve`` (libsecp256k1, ~30x faster than OpenSSL's generic code for that
curve). The two libraries disagree on high-S signatures (OpenSSL accepts them,
libsecp256k1 rejects them), so :func:`check_signature` decides encoding, range
and low-S itself *before* either backend runs: both curves follow one rule.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final, Literal

import coincurve
from coincurve.ecdsa import cdata_to_der, deserialize_compact
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from .refusals import Refused

__all__ = [
    "ALG_ES256",
    "ALG_ES256K",
    "CURVES",
    "CURVE_BY_ALG",
    "CurveInfo",
    "DevicePublicKey",
    "check_signature",
    "kid_for",
]

ALG_ES256: Final = -7
ALG_ES256K: Final = -47

CurveName = Literal["p256", "secp256k1"]


@dataclass(frozen=True)
class CurveInfo:
    """What the verifier needs to know about one supported curve."""

    name: str  # 'p256' | 'secp256k1'
    alg: int  # COSE algorithm identifier
    alg_name: str  # 'ES256' | 'ES256K'
    n: int  # group order
    half_n: int  # n // 2: the largest s accepted (low-S rule)
    display: str  # human name for messages

    @property
    def crypto_curve(self) -> ec.EllipticCurve:
        return ec.SECP256R1() if self.name == "p256" else ec.SECP256K1()


_P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

CURVES: Final = {
    "p256": CurveInfo("p256", ALG_ES256, "ES256", _P256_N, _P256_N // 2, "P-256"),
    "secp256k1": CurveInfo("secp256k1", ALG_ES256K, "ES256K", _K1_N, _K1_N // 2, "secp256k1"),
}
CURVE_BY_ALG: Final = {info.alg: info for info in CURVES.values()}
_CURVE_BY_OPENSSL_NAME: Final = {
    "secp256r1": "p256",
    "prime256v1": "p256",
    "secp256k1": "secp256k1",
}

_ECDSA_SHA256: Final = ec.ECDSA(hashes.SHA256())
_sha256 = hashlib.sha256


def kid_for(compressed: bytes) -> bytes:
    """kid = first 16 bytes of SHA-256 over the 33-byte compressed SEC1 public key."""
    return _sha256(compressed).digest()[:16]


class DevicePublicKey:
    """A validated device public key. Build with :meth:`from_sec1` or :meth:`from_pem`.

    Equality and hashing follow (curve, point). Construction validates the point
    (on the curve, not the identity); invalid input raises ``Refused('bad_key')``.
    """

    __slots__ = ("_cc", "_ossl", "compressed", "curve_info", "kid")

    def __init__(self, ossl_key: ec.EllipticCurvePublicKey) -> None:
        """Wrap an already-loaded ``cryptography`` EC public key (P-256 or secp256k1)."""
        curve_name = _CURVE_BY_OPENSSL_NAME.get(ossl_key.curve.name)
        if curve_name is None:
            raise Refused(
                "bad_key", f"curve {ossl_key.curve.name} is not supported (P-256 or secp256k1 only)"
            )
        self.curve_info: CurveInfo = CURVES[curve_name]
        self._ossl = ossl_key
        self.compressed: bytes = ossl_key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
        )
        self.kid: bytes = kid_for(self.compressed)
        self._cc = coincurve.PublicKey(self.compressed) if curve_name == "secp256k1" else None

    # -- construction -------------------------------------------------------------------

    @classmethod
    def from_sec1(cls, data: bytes, curve: CurveName = "p256") -> DevicePublicKey:
        """Load a SEC1 point: 33 bytes compressed (02/03 || x) or 65 uncompressed (04 || x || y).

        SEC1 bytes do not say which curve they are on, so ``curve`` does
        ('p256' by default).
        """
        info = CURVES.get(curve)
        if info is None:
            raise Refused("bad_key", f"unknown curve {curve!r} (use 'p256' or 'secp256k1')")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise Refused("bad_key", f"public key must be bytes, got {type(data).__name__}")
        data = bytes(data)
        if len(data) not in (33, 65):
            raise Refused(
                "bad_key",
                f"public key is {len(data)} bytes; SEC1 needs 33 (compressed) or 65 (uncompressed)",
            )
        prefix = data[0]
        if (len(data) == 33 and prefix not in (2, 3)) or (len(data) == 65 and prefix != 4):
            raise Refused(
                "bad_key", f"public key of {len(data)} bytes has invalid SEC1 prefix 0x{prefix:02x}"
            )
        try:
            key = ec.EllipticCurvePublicKey.from_encoded_point(info.crypto_curve, data)
        except ValueError:
            raise Refused(
                "bad_key", f"public key is not a point on the {info.display} curve"
            ) from None
        return cls(key)

    @classmethod
    def from_pem(cls, data: bytes | str) -> DevicePublicKey:
        """Load a PEM SubjectPublicKeyInfo ("-----BEGIN PUBLIC KEY-----") for P-256 or secp256k1."""
        if isinstance(data, str):
            data = data.encode("ascii", "replace")
        try:
            key = serialization.load_pem_public_key(bytes(data))
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise Refused("bad_key", f"not a valid PEM public key ({exc})") from None
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise Refused("bad_key", f"PEM key is {type(key).__name__}, not an EC public key")
        return cls(key)

    # -- properties ---------------------------------------------------------------------

    @property
    def curve(self) -> str:
        """'p256' or 'secp256k1'."""
        return self.curve_info.name

    @property
    def alg(self) -> int:
        """The COSE alg this key verifies: -7 (ES256) or -47 (ES256K)."""
        return self.curve_info.alg

    @property
    def device_id(self) -> str:
        """Lowercase hex of the kid (32 characters)."""
        return self.kid.hex()

    @property
    def uncompressed(self) -> bytes:
        """65-byte SEC1 uncompressed point."""
        return self._ossl.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )

    def to_pem(self) -> bytes:
        """PEM SubjectPublicKeyInfo."""
        return self._ossl.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def to_cryptography(self) -> ec.EllipticCurvePublicKey:
        return self._ossl

    # -- verification -------------------------------------------------------------------

    def verify(self, sig64: bytes, message: bytes) -> bool:
        """True iff ``sig64`` is a valid, canonical (64-byte, in range, low-S) signature.

        ``message`` is hashed with SHA-256. Never raises for bad signatures.
        """
        try:
            check_signature(self, message, sig64)
        except Refused:
            return False
        return True

    def _ecdsa_ok(self, r: int, s: int, sig64: bytes, message: bytes) -> bool:
        """Raw ECDSA-SHA256 check; the caller has already range- and low-S-checked r and s."""
        if self._cc is None:
            try:
                self._ossl.verify(encode_dss_signature(r, s), message, _ECDSA_SHA256)
            except InvalidSignature:
                return False
            return True
        return self._cc.verify(cdata_to_der(deserialize_compact(sig64)), message)

    # -- dunder -------------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DevicePublicKey):
            return NotImplemented
        return self.curve_info.name == other.curve_info.name and self.compressed == other.compressed

    def __hash__(self) -> int:
        return hash((self.curve_info.name, self.compressed))

    def __repr__(self) -> str:
        return f"DevicePublicKey({self.curve}, kid={self.device_id})"


def check_signature(public_key: DevicePublicKey, message: bytes, sig64: bytes) -> None:
    """Check a raw r||s ECDSA-SHA256 signature over ``message``; raise :class:`Refused` if bad.

    Order: encoding (exactly 64 bytes, 1 <= r < n, 1 <= s < n) ->
    ``bad_signature_encoding``; s > n/2 -> ``high_s``; ECDSA -> ``bad_signature``.
    """
    if type(sig64) is not bytes:
        if not isinstance(sig64, (bytearray, memoryview)):
            raise Refused(
                "bad_signature_encoding", f"signature must be bytes, got {type(sig64).__name__}"
            )
        sig64 = bytes(sig64)
    info = public_key.curve_info
    if len(sig64) != 64:
        hint = ""
        if len(sig64) >= 8 and sig64[0] == 0x30 and sig64[1] == len(sig64) - 2:
            hint = " (it looks like DER; COSE needs raw r||s)"
        raise Refused(
            "bad_signature_encoding",
            f"signature is {len(sig64)} bytes; {info.alg_name} needs exactly 64 (r||s){hint}",
        )
    r = int.from_bytes(sig64[:32], "big")
    s = int.from_bytes(sig64[32:], "big")
    n = info.n
    if not 0 < r < n:
        raise Refused(
            "bad_signature_encoding",
            f"signature r is {'zero' if r == 0 else 'not below the curve order n'}",
        )
    if not 0 < s < n:
        raise Refused(
            "bad_signature_encoding",
            f"signature s is {'zero' if s == 0 else 'not below the curve order n'}",
        )
    if s > info.half_n:
        raise Refused("high_s", "signature s is greater than n/2 (only low-S signatures are valid)")
    if not public_key._ecdsa_ok(r, s, sig64, message):
        raise Refused(
            "bad_signature",
            f"{info.alg_name} signature does not verify for key {public_key.device_id}",
        )
