"""An independent Signet record signer for tests: ``cryptography`` + ``cbor2`` only.

It shares no code with the firmware or with ``signet_gateway``: it builds the
Sig_structure with cbor2, signs with OpenSSL (RFC 6979 deterministic ECDSA),
converts DER to low-S raw r||s itself, and assembles the envelope from
separately encoded pieces so that any single piece can be replaced by
arbitrary (malformed) bytes while the rest stays valid and correctly signed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

CURVES = {
    "p256": (ec.SECP256R1(), -7, P256_N),
    "secp256k1": (ec.SECP256K1(), -47, SECP256K1_N),
}

DELETE = object()  # use as a payload override value to remove a field


@dataclass
class SignerKey:
    curve: str
    private: ec.EllipticCurvePrivateKey

    @property
    def alg(self) -> int:
        return CURVES[self.curve][1]

    @property
    def n(self) -> int:
        return CURVES[self.curve][2]

    def _public(self, encoding: serialization.Encoding, fmt: serialization.PublicFormat) -> bytes:
        return self.private.public_key().public_bytes(encoding, fmt)

    @property
    def compressed(self) -> bytes:
        return self._public(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)

    @property
    def uncompressed(self) -> bytes:
        return self._public(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )

    @property
    def pem(self) -> bytes:
        return self._public(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @property
    def kid(self) -> bytes:
        return hashlib.sha256(self.compressed).digest()[:16]

    def sign_rs(self, message: bytes) -> tuple[int, int]:
        """Deterministic ECDSA-SHA256; returns (r, s) with s normalised to low-S."""
        der = self.private.sign(message, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
        r, s = decode_dss_signature(der)
        if s > self.n // 2:
            s = self.n - s
        return r, s


def make_key(curve: str = "p256", seed: int = 1) -> SignerKey:
    """A deterministic key for ``curve`` derived from ``seed`` (reproducible tests)."""
    ec_curve, _, n = CURVES[curve]
    scalar = int.from_bytes(hashlib.sha256(f"{curve}:{seed}".encode()).digest(), "big") % n
    return SignerKey(curve, ec.derive_private_key(scalar or 1, ec_curve))


def rs_bytes(r: int, s: int, size: int = 32) -> bytes:
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


SAMPLE_FIELDS: dict[str, dict[str, Any]] = {
    "boot": {"rc": "power_on", "fw": "signet-0.1.0+esp32", "ls": 41},
    "hb": {"iv": 60000, "st": "ok"},
    "rev": {"am": 250, "cur": "EUR", "src": "coin", "ref": "txn-0001/äö"},
    "meter": {"q": -1234, "unit": "kWh", "src": "modbus.1"},
    "evt": {"ev": "door_open", "msg": "service door opened"},
}


def payload(kind: str = "rev", n: int = 1, **overrides: Any) -> dict[str, Any]:
    """A valid payload map of ``kind``; ``overrides`` replace fields (``DELETE`` removes one)."""
    d: dict[str, Any] = {
        "v": 1,
        "n": n,
        "b": 3,
        "u": 123456,
        "t": 1_700_000_000_000,
        "p": bytes(32),
        "k": kind,
    }
    d.update(SAMPLE_FIELDS.get(kind, {}))
    overrides.setdefault("n", n)
    for key, value in overrides.items():
        if value is DELETE:
            d.pop(key, None)
        else:
            d[key] = value
    return d


def protected_for(alg: Any) -> bytes:
    return cbor2.dumps({1: alg})


def sig_structure(protected: bytes, payload_bytes: bytes) -> bytes:
    return cbor2.dumps(["Signature1", protected, b"", payload_bytes])


def _tag_head(tag: int) -> bytes:
    # cbor2 encodes CBORTag(tag, None) as <tag head> f6; drop the null.
    return cbor2.dumps(cbor2.CBORTag(tag, None))[:-1]


def make_record(
    key: SignerKey,
    body: dict[str, Any] | bytes | None = None,
    *,
    alg: Any = None,
    protected: bytes | None = None,
    unprotected: dict[Any, Any] | bytes | None = None,
    kid: Any = None,
    tag: int | None = 18,
    signature: bytes | None = None,
    sig_transform: Callable[[int, int, int], bytes] | None = None,
    sign_protected: bytes | None = None,
    trailing: bytes = b"",
    array_items: list[bytes] | None = None,
) -> bytes:
    """Build a signed record; every knob produces a specific malformation.

    body: payload map (encoded with cbor2) or raw payload bytes (signed as given).
    alg / protected: protected header from ``{1: alg}`` or raw bytes.
    unprotected / kid: unprotected map or raw CBOR bytes; ``kid`` overrides the kid.
    tag: outer tag number, or None for an untagged record.
    signature: raw signature bytes to use instead of signing.
    sig_transform(r, s, n) -> bytes: turn the valid low-S (r, s) into signature bytes.
    sign_protected: sign over this protected header but put ``protected`` in the record.
    array_items: raw CBOR items replacing the 4-item array body entirely.
    trailing: bytes appended after the record.
    """
    if isinstance(body, bytes):
        payload_bytes = body
    else:
        payload_bytes = cbor2.dumps(payload() if body is None else body)
    if protected is None:
        protected = protected_for(key.alg if alg is None else alg)
    if signature is None:
        r, s = key.sign_rs(
            sig_structure(protected if sign_protected is None else sign_protected, payload_bytes)
        )
        signature = sig_transform(r, s, key.n) if sig_transform else rs_bytes(r, s)
    if isinstance(unprotected, bytes):
        unprotected_bytes = unprotected
    else:
        header = {4: key.kid if kid is None else kid} if unprotected is None else unprotected
        unprotected_bytes = cbor2.dumps(header)
    if array_items is None:
        array_items = [
            cbor2.dumps(protected),
            unprotected_bytes,
            cbor2.dumps(payload_bytes),
            cbor2.dumps(signature),
        ]
    head = _tag_head(tag) if tag is not None else b""
    count = len(array_items)
    array_head = bytes((0x80 | count,)) if count < 24 else cbor2.dumps([None] * count)[:-count]
    return head + array_head + b"".join(array_items) + trailing


def der_signature(r: int, s: int, n: int = 0) -> bytes:
    """A DER ECDSA-Sig-Value (usable as a ``sig_transform``)."""
    return encode_dss_signature(r, s)
