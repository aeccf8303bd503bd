"""verify_evidence: does this evidence prove the enrolled key was born in a secure element?

One function per kind, each a fixed sequence of checks (docs/TRUST.md, "Evidence the
gateway checks"); the first failure is the refusal. The challenge callback runs LAST,
after every cryptographic check passed, so evidence that fails for another reason never
touches the gateway's challenge table.

    se-chain        file -> key named = enrolled key -> roots configured -> chain to a root,
                    validity -> device certificate's key = enrolled key -> proof statement
                    signed by that key -> chip serial and config zone -> challenge
    tpm2-certify    file -> key named = enrolled key -> public area: ECC P-256 signing key,
                    non-exportable, its point = enrolled key -> roots configured -> AK chain
                    -> AK signature over attest -> attest: magic, type, certified name ->
                    challenge (extraData)
    line-statement  file -> key named = enrolled key -> line keys configured -> statement
                    signed by a configured line key -> names the enrolled key -> config zone
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from ..verify.pubkeys import DevicePublicKey
from .atecc_config import check_config_zone
from .evidence_file import (
    LineEvidence,
    SeChainEvidence,
    TpmEvidence,
    parse_evidence_file,
)
from .policy import TrustPolicy
from .refusals import EvidenceRefused
from .statements import check_signed_by, open_envelope, read_payload
from .tpm_structures import check_certify, check_signing_key, parse_tpms_attest, parse_tpmt_public
from .x509_chain import verify_chain

__all__ = [
    "CHALLENGE_BYTES",
    "ChallengeCheck",
    "VerifiedEvidence",
    "verify_evidence",
    "verify_stored",
]

CHALLENGE_BYTES: Final = 32

ChallengeCheck = Callable[[bytes], None]


@dataclass(frozen=True)
class VerifiedEvidence:
    """Evidence that checked out. ``summary`` is JSON-able: what `signet devices --json` shows."""

    kind: str
    summary: dict[str, Any]
    raw: bytes


def verify_evidence(
    raw: bytes,
    key: DevicePublicKey,
    policy: TrustPolicy,
    challenge_ok: ChallengeCheck,
) -> VerifiedEvidence:
    """Verify an evidence file for ``key``; raise :class:`EvidenceRefused` with the first failure.

    ``challenge_ok(nonce)`` is called once, last, with the challenge the evidence answers;
    it raises ``EvidenceRefused('challenge_unknown' | 'challenge_expired' |
    'challenge_replayed')`` or returns. Line statements answer no challenge (the line signs
    them at manufacturing, offline) and never call it.
    """
    evidence = parse_evidence_file(raw)
    if evidence.public_key != key.compressed or key.curve != evidence.curve:
        raise EvidenceRefused(
            "key_mismatch",
            f"the evidence is about key {evidence.public_key.hex()}, not the enrolled key "
            f"{key.compressed.hex()} ({key.curve})",
        )
    if isinstance(evidence, SeChainEvidence):
        summary = _verify_se_chain(evidence, key, policy, challenge_ok)
    elif isinstance(evidence, TpmEvidence):
        summary = _verify_tpm(evidence, key, policy, challenge_ok)
    else:
        assert isinstance(evidence, LineEvidence)
        summary = _verify_line(evidence, key, policy)
    return VerifiedEvidence(
        kind=evidence.kind, summary={"kind": evidence.kind, **summary}, raw=bytes(raw)
    )


def verify_stored(raw: bytes, key: DevicePublicKey, policy: TrustPolicy) -> VerifiedEvidence:
    """Re-check stored evidence offline (an auditor): every check but the challenge's freshness.

    The challenge was checked and consumed at enrollment, so it can only be required to be
    present, not looked up. Set ``policy.check_time_ms()`` to the enrollment time to judge the
    certificates' validity as the gateway did then.
    """
    return verify_evidence(raw, key, policy, _any_challenge)


def _any_challenge(nonce: bytes) -> None:
    return None


def _no_roots(what: str) -> EvidenceRefused:
    return EvidenceRefused("no_roots", f"[trust] {what} is empty: the gateway trusts no {what}")


def _challenge(nonce: bytes | None, challenge_ok: ChallengeCheck, where: str) -> bytes:
    if not nonce:
        raise EvidenceRefused("challenge_missing", f"{where} carries no challenge")
    if len(nonce) != CHALLENGE_BYTES:
        raise EvidenceRefused(
            "challenge_unknown",
            f"{where} carries a {len(nonce)}-byte challenge; the gateway issues "
            f"{CHALLENGE_BYTES}-byte ones",
        )
    challenge_ok(nonce)
    return nonce


def _verify_se_chain(
    evidence: SeChainEvidence,
    key: DevicePublicKey,
    policy: TrustPolicy,
    challenge_ok: ChallengeCheck,
) -> dict[str, Any]:
    if not policy.se_roots:
        raise _no_roots("se_roots")
    chain = verify_chain(
        evidence.chain, policy.se_roots, policy.check_time_ms(), "device certificate"
    )
    leaf_key = chain.leaf.public_key()
    if (
        not isinstance(leaf_key, ec.EllipticCurvePublicKey)
        or _compressed(leaf_key) != key.compressed
    ):
        raise EvidenceRefused(
            "key_mismatch",
            f"the device certificate {chain.leaf.subject.rfc4514_string()!r} certifies another key "
            f"than the enrolled key {key.device_id}",
        )
    what = "proof (enroll statement)"
    env = open_envelope(evidence.proof, what, "proof_invalid")
    check_signed_by(env, key, what, "proof_invalid")
    proof = read_payload(env, "enroll", what, "proof_invalid")
    summary: dict[str, Any] = {"chain": chain.summary()}
    if "cfg" in proof:
        zone = check_config_zone(proof["cfg"], evidence.slot)
        if "sn" in proof and proof["sn"] != zone.serial:
            raise EvidenceRefused(
                "proof_invalid",
                f"{what}: sn {proof['sn'].hex()} is not the serial {zone.serial.hex()} in its cfg",
            )
        summary["chip"] = zone.summary()
    elif "sn" in proof:
        summary["chip"] = {"serial": proof["sn"].hex(), "slot": evidence.slot}
    nonce = _challenge(proof.get("c"), challenge_ok, what)
    summary["challenge"] = nonce.hex()
    return summary


def _verify_tpm(
    evidence: TpmEvidence, key: DevicePublicKey, policy: TrustPolicy, challenge_ok: ChallengeCheck
) -> dict[str, Any]:
    public = parse_tpmt_public(evidence.tpm_public)
    point = check_signing_key(public)
    if point != key.uncompressed:
        raise EvidenceRefused(
            "key_mismatch",
            f"the TPM key's public area holds another point than the enrolled key {key.device_id}",
        )
    if not policy.tpm_roots:
        raise _no_roots("tpm_roots")
    chain = verify_chain(
        evidence.ak_chain, policy.tpm_roots, policy.check_time_ms(), "AK certificate"
    )
    ak_key = chain.leaf.public_key()
    if not isinstance(ak_key, ec.EllipticCurvePublicKey) or ak_key.curve.name != "secp256r1":
        raise EvidenceRefused(
            "attest_invalid", "the AK certificate's key is not an ECDSA P-256 key"
        )
    # The TPM's own signature: not normalised to low-S (that rule is for records), so it is
    # checked as ECDSA accepts it.
    r = int.from_bytes(evidence.signature[:32], "big")
    s = int.from_bytes(evidence.signature[32:], "big")
    try:
        if r == 0 or s == 0:
            raise InvalidSignature
        ak_key.verify(encode_dss_signature(r, s), evidence.attest, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise EvidenceRefused(
            "attest_invalid",
            f"the signature over attest does not verify with the AK certificate "
            f"{chain.leaf.subject.rfc4514_string()!r}",
        ) from None
    attest = parse_tpms_attest(evidence.attest)
    check_certify(attest, public)
    nonce = _challenge(attest.extra_data, challenge_ok, "the attestation's extraData")
    return {
        "ak_chain": chain.summary(),
        # Not the clock or firmware version: in the owner hierarchy the TPM obfuscates them.
        "tpm": {
            "attributes": f"0x{public.attributes:08x}",
            "qualified_signer": attest.qualified_signer.hex(),
        },
        "challenge": nonce.hex(),
    }


def _verify_line(
    evidence: LineEvidence, key: DevicePublicKey, policy: TrustPolicy
) -> dict[str, Any]:
    if not policy.line_keys:
        raise _no_roots("line_keys")
    what = "line statement"
    env = open_envelope(evidence.statement, what, "evidence_malformed")
    signer = next((k for k in policy.line_keys if k.kid == env.kid), None)
    if signer is None:
        raise EvidenceRefused(
            "line_key_unknown",
            f"{what} is signed under kid {env.kid.hex()}, not a configured line key",
        )
    check_signed_by(env, signer, what, "proof_invalid")
    statement = read_payload(env, "line", what, "evidence_malformed")
    if statement["pk"] != key.compressed:
        raise EvidenceRefused(
            "key_mismatch",
            f"{what} vouches for key {statement['pk'].hex()}, not the enrolled key "
            f"{key.compressed.hex()}",
        )
    summary: dict[str, Any] = {
        "line": statement["line"],
        "line_key": signer.device_id,
        "t": statement["t"],
        "chip": {"serial": statement["sn"].hex()},
    }
    if "cfg" in statement:
        zone = check_config_zone(statement["cfg"], 0)
        if zone.serial != statement["sn"]:
            raise EvidenceRefused(
                "proof_invalid",
                f"{what}: sn {statement['sn'].hex()} is not the serial {zone.serial.hex()} "
                "in its cfg",
            )
        summary["chip"] = zone.summary()
    return summary


def _compressed(public: ec.EllipticCurvePublicKey) -> bytes:
    return public.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )
