"""Why enrollment evidence or a rotation statement was refused: one exception, one table.

Every check raises :class:`EvidenceRefused` with a stable ``reason`` code (what
``signet enroll`` prints, what tests and docs name) and a one-line ``sentence`` saying
exactly what was wrong (the field, the certificate, the attribute). :data:`REASONS`
holds each code's general meaning; docs/TRUST.md's table is generated from it and a
test checks the two agree.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

__all__ = ["REASONS", "EvidenceRefused"]

REASONS: Final = MappingProxyType(
    {
        "evidence_malformed": (
            "The evidence file is not the documented JSON (format, kind, a field's type, hex or "
            "base64, size), or a statement or certificate in it does not decode."
        ),
        "key_mismatch": (
            "The evidence is about another key: the key it names, certifies or attests is not "
            "the key being enrolled."
        ),
        "chain_invalid": (
            "A certificate in the chain is not signed by the next one, their names do not link, "
            "or an issuer is not a CA."
        ),
        "unknown_root": "The chain does not end at a root the gateway was configured with.",
        "cert_expired": "A certificate in the chain had expired at the time of the check.",
        "cert_not_yet_valid": (
            "A certificate in the chain was not yet valid at the time of the check."
        ),
        "challenge_missing": "The evidence answers no challenge (no nonce in it).",
        "challenge_unknown": "The evidence answers a challenge this gateway never issued.",
        "challenge_expired": "The evidence answers a challenge whose time to live has passed.",
        "challenge_replayed": "The evidence answers a challenge already used by an enrollment.",
        "proof_invalid": (
            "The signed proof (challenge answer or line statement) does not verify with the "
            "key it must be signed by, or contradicts the rest of the evidence."
        ),
        "chip_unlocked": (
            "The ATECC608 configuration zone or data zone is not locked, so its slot rules "
            "are not yet in force."
        ),
        "slot_config": (
            "The ATECC608 key slot's configuration lets the private key be read or written "
            "from outside, forbids external signatures, or is not a P-256 private key."
        ),
        "tpm_attributes": (
            "The TPM key is not a non-exportable ECC P-256 signing key (fixedTPM, fixedParent, "
            "sensitiveDataOrigin, sign; no decrypt, not restricted; SHA-256 name)."
        ),
        "attest_invalid": (
            "The TPM2_Certify attestation is not signed by the attestation key, or is not a "
            "certify structure (magic, type) naming the enrolled key."
        ),
        "line_key_unknown": (
            "The line statement is signed by a key that is not a configured line key."
        ),
        "no_roots": (
            "The gateway has no roots (or line keys) configured for this kind of evidence in "
            "its [trust] section."
        ),
        "rotation_invalid": (
            "The rotation statement is not a valid 'rotate' statement signed by the old key "
            "for that key."
        ),
    }
)


class EvidenceRefused(Exception):
    """Evidence (or a rotation statement) was refused.

    Attributes:
        reason: one of the codes in :data:`REASONS`.
        sentence: one line saying what exactly was wrong (defaults to the code's meaning).
    """

    __slots__ = ("reason", "sentence")

    def __init__(self, reason: str, sentence: str | None = None) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown evidence refusal reason {reason!r}")
        line = " ".join((sentence or REASONS[reason]).split())  # one line, always
        super().__init__(reason, line)
        self.reason = reason
        self.sentence = line

    def __str__(self) -> str:
        return f"{self.reason}: {self.sentence}"

    def __repr__(self) -> str:
        return f"EvidenceRefused({self.reason!r}, {self.sentence!r})"
