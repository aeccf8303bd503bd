"""Why a record was refused: one exception type and one table of reason codes.

Every check the host verifier makes raises :class:`Refused` with a short, stable
``reason`` code (used for counters, metrics labels and docs) and a ``detail``
sentence that names the offending field, offset or value, so an operator can see
what was wrong without a hex dump.

The codes are listed in :data:`REASONS` in the order the verifier checks them:
a record that is wrong in several ways is refused for the first one.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

__all__ = ["REASONS", "Refused"]

REASONS: Final = MappingProxyType(
    {
        "too_large": "The record is larger than 1024 bytes; nothing in it was decoded.",
        "malformed": (
            "The record is not strict CBOR (truncated, indefinite length, duplicate map key, "
            "non-shortest form, float, stray tag, trailing bytes) or not a 4-item COSE_Sign1 array."
        ),
        "bad_tag": "The record is not wrapped in CBOR tag 18 (COSE_Sign1).",
        "bad_header": (
            "The protected header is not exactly {1: alg}, or the unprotected header is not "
            "exactly {4: kid} with a 16-byte kid."
        ),
        "bad_alg": (
            "The algorithm is neither ES256 (-7) nor ES256K (-47), or does not match the curve "
            "of the device's enrolled key."
        ),
        "unknown_key": "No public key is enrolled for the record's kid.",
        "kid_mismatch": (
            "The record's kid is not the device the caller expected (topic or --pubkey), or the "
            "enrolled key does not hash to that kid."
        ),
        "bad_key": (
            "The public key is invalid: wrong length, wrong format or a point not on the curve."
        ),
        "bad_signature_encoding": (
            "The signature is not raw r||s of exactly 64 bytes with 1 <= r, s < n (a DER blob, "
            "wrong length, zero or out-of-range value)."
        ),
        "high_s": "The signature's s is greater than n/2; only low-S signatures are accepted.",
        "bad_signature": "The ECDSA signature does not verify against the enrolled public key.",
        "bad_payload": (
            "The signed payload is not a strict CBOR map with exactly the fields and value ranges "
            "of its kind."
        ),
    }
)


class Refused(Exception):
    """A record (or a public key) was refused.

    Attributes:
        reason: one of the codes in :data:`REASONS`.
        detail: a specific human-readable sentence saying what exactly was wrong.
    """

    __slots__ = ("detail", "reason")

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown refusal reason {reason!r}")
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"

    def __repr__(self) -> str:
        return f"Refused({self.reason!r}, {self.detail!r})"
