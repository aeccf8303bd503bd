"""A certificate chain from the evidence to one of the configured roots (RFC 5280, the parts used).

Checked, in this order, each failure with its own reason:

1. each link in the chain as given: the child's issuer name is the parent's subject, the
   parent is a CA (basicConstraints cA, keyCertSign if it has keyUsage, pathLenConstraint
   respected), the child's signature verifies with the parent's key (ECDSA P-256/P-384,
   RSA >= 2048 bits; SHA-256/384/512), no unknown critical extension -> ``chain_invalid``;
2. the last certificate is a configured root, or is issued and signed by one
   -> ``unknown_root`` otherwise (also when a root of that name exists but did not sign);
3. every certificate of the path, the root included, is valid at ``now``
   -> ``cert_not_yet_valid`` / ``cert_expired``.

Why not ``cryptography.x509.verification`` (PolicyBuilder / ClientVerifier, cryptography
50): it cannot verify a genuine Microchip Trust&GO chain. Its Web PKI CA policy requires
keyUsage on the root, and Microchip's "Crypto Authentication Root CA 002" has none; and
the TNGTLS device certificate's subjectAltName is a directoryName, on which the client
verifier fails with "ASN.1 parsing error: invalid value" whatever the extension policy.
So the path is walked here, with ``Certificate.verify_directly_issued_by`` (the
library's own name-and-signature check) for each link, and the extensions are read by
:mod:`.der_extensions` (that SAN's PrintableString holds a '_', which cryptography's
strict parser refuses for the whole extension list). Trust&GO quirks that must pass:
no DNS/IP subjectAltName (or none at all), notAfter 9999-12-31 23:59:59 (RFC 5280
4.1.2.5, "no well-defined expiration date"), 16-byte serial numbers, pathLen 0 on the
signer.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtensionOID

from .der_extensions import (
    BASIC_CONSTRAINTS,
    KEY_USAGE,
    DerError,
    Extension,
    KeyUsage,
    basic_constraints,
    key_usage,
    read_extensions,
)
from .refusals import EvidenceRefused

__all__ = ["VerifiedChain", "cert_summary", "verify_chain"]

# Extensions this module understands; an unknown one marked critical must be refused
# (RFC 5280 4.2). Name constraints and policy constraints are not implemented, so a
# critical one is refused too rather than ignored. The SAN and extended key usage may be
# critical: they restrict what the names and the key are for, which Signet does not use.
_UNDERSTOOD: Final = frozenset(
    oid.dotted_string
    for oid in (
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
    )
)
_HASHES: Final = (hashes.SHA256, hashes.SHA384, hashes.SHA512)
_CURVES: Final = ("secp256r1", "secp384r1")
_MIN_RSA_BITS: Final = 2048


@dataclass(frozen=True)
class VerifiedChain:
    path: tuple[x509.Certificate, ...]  # leaf first, the configured root last

    @property
    def leaf(self) -> x509.Certificate:
        return self.path[0]

    def summary(self) -> list[dict[str, Any]]:
        return [cert_summary(cert) for cert in self.path]


def cert_summary(cert: x509.Certificate) -> dict[str, Any]:
    """What an operator reads about one certificate (JSON-able)."""
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": format(cert.serial_number, "x"),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
    }


def verify_chain(
    chain: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    now_ms: int,
    what: str,
) -> VerifiedChain:
    """Verify ``chain`` (leaf first; the root may be omitted) to one of ``roots`` at ``now_ms``.

    ``what`` names the leaf in messages ("device certificate", "AK certificate").
    """
    certs = list(chain)
    anchor = _configured(certs[-1], roots) if len(certs) > 1 else None
    if anchor is not None:
        certs.pop()  # the chain carried a configured root itself
    names = [what] + [f"chain certificate {i}" for i in range(1, len(certs))]
    for i, cert in enumerate(certs):
        _extensions(cert, names[i])
    _check_leaf_usage(certs[0], what)
    for i in range(len(certs) - 1):
        _check_link(certs[i], certs[i + 1], names[i], names[i + 1], ca_below=i)
    if anchor is None:
        anchor = _find_root(certs[-1], roots, names[-1])
    _check_issuer(anchor, f"root {_cn(anchor)}", ca_below=len(certs) - 1, is_root=True)
    path = (*certs, anchor)
    now = dt.datetime.fromtimestamp(now_ms / 1000, tz=dt.UTC)
    for cert, name in zip(path, [*names, "root"], strict=True):
        _check_validity(cert, name, now)
    return VerifiedChain(path)


def _spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _configured(
    cert: x509.Certificate, roots: Sequence[x509.Certificate]
) -> x509.Certificate | None:
    """The configured root ``cert`` is a copy of (same name and key; a re-issue counts)."""
    for root in roots:
        if root.subject == cert.subject and _spki(root) == _spki(cert):
            return root
    return None


def _invalid(sentence: str) -> EvidenceRefused:
    return EvidenceRefused("chain_invalid", sentence)


def _cn(cert: x509.Certificate) -> str:
    return repr(cert.subject.rfc4514_string())


def _extensions(cert: x509.Certificate, name: str) -> dict[str, Extension]:
    """The certificate's extensions by OID; an unknown critical one is refused (RFC 5280 4.2)."""
    try:
        extensions = read_extensions(cert.tbs_certificate_bytes)
    except DerError as exc:
        raise _invalid(f"{name} {_cn(cert)} has invalid extensions ({exc})") from None
    for ext in extensions:
        if ext.critical and ext.oid not in _UNDERSTOOD:
            raise _invalid(
                f"{name} {_cn(cert)} has a critical extension {ext.oid} "
                "this verifier does not implement"
            )
    return {ext.oid: ext for ext in extensions}


def _key_usage(cert: x509.Certificate, name: str) -> KeyUsage | None:
    ext = _extensions(cert, name).get(KEY_USAGE)
    if ext is None:
        return None
    try:
        return key_usage(ext.value)
    except DerError as exc:
        raise _invalid(f"{name} {_cn(cert)}: {exc}") from None


def _check_leaf_usage(cert: x509.Certificate, name: str) -> None:
    usage = _key_usage(cert, name)
    if usage is not None and not usage.digital_signature:
        raise _invalid(f"{name} {_cn(cert)}: its keyUsage does not allow digitalSignature")


def _check_issuer(cert: x509.Certificate, name: str, ca_below: int, is_root: bool = False) -> None:
    """``cert`` may issue certificates, with ``ca_below`` CA certificates under it in the path."""
    ext = _extensions(cert, name).get(BASIC_CONSTRAINTS)
    try:
        constraints = basic_constraints(ext.value) if ext is not None else None
    except DerError as exc:
        raise _invalid(f"{name}: {exc}") from None
    if constraints is None or not constraints.ca:
        if is_root and constraints is None:
            return  # an X.509 v1 trust anchor: the operator configured it, that is its authority
        raise _invalid(
            f"{name} is not a CA (basicConstraints cA is not set) but issued a certificate"
        )
    if constraints.path_length is not None and ca_below > constraints.path_length:
        raise _invalid(
            f"{name} allows {constraints.path_length} CA certificate(s) below it "
            f"(pathLenConstraint); the chain has {ca_below}"
        )
    usage = _key_usage(cert, name)
    if usage is not None and not usage.key_cert_sign:
        raise _invalid(f"{name}: its keyUsage does not allow keyCertSign")


def _check_signed(child: x509.Certificate, parent: x509.Certificate) -> str | None:
    """None if ``parent`` signed ``child`` (names link, signature verifies), else why not."""
    if child.issuer != parent.subject:
        return f"is issued by {child.issuer.rfc4514_string()!r}, not by {_cn(parent)}"
    try:
        hash_alg = child.signature_hash_algorithm
    except UnsupportedAlgorithm:
        oid = child.signature_algorithm_oid.dotted_string
        return f"is signed with an algorithm this verifier does not know ({oid})"
    if not isinstance(hash_alg, _HASHES):
        shown = hash_alg.name if hash_alg is not None else "none"
        return f"is signed with hash {shown}; SHA-256, SHA-384 or SHA-512 is required"
    key = parent.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in _CURVES:
            return f"is signed by a key on curve {key.curve.name} (P-256 or P-384 only)"
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size < _MIN_RSA_BITS:
            return f"is signed by a {key.key_size}-bit RSA key (at least {_MIN_RSA_BITS})"
    else:
        return f"is signed by a {type(key).__name__} (ECDSA or RSA only)"
    try:
        child.verify_directly_issued_by(parent)
    except InvalidSignature:
        return f"has a signature that does not verify with the key of {_cn(parent)}"
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        return f"cannot be checked against {_cn(parent)} ({exc})"
    return None


def _check_link(
    child: x509.Certificate,
    parent: x509.Certificate,
    child_name: str,
    parent_name: str,
    ca_below: int,
) -> None:
    problem = _check_signed(child, parent)
    if problem is not None:
        raise _invalid(f"{child_name} {_cn(child)} {problem}")
    _check_issuer(parent, f"{parent_name} {_cn(parent)}", ca_below)


def _find_root(
    top: x509.Certificate, roots: Sequence[x509.Certificate], name: str
) -> x509.Certificate:
    named = [root for root in roots if root.subject == top.issuer]
    for root in named:
        if _check_signed(top, root) is None:
            return root
    if top.issuer == top.subject:
        raise EvidenceRefused(
            "unknown_root", f"the chain ends at the root {_cn(top)}, which is not a configured root"
        )
    if named:
        raise EvidenceRefused(
            "unknown_root",
            f"{name} {_cn(top)} names the configured root {_cn(named[0])} as its issuer but is "
            "not signed by it (a different root of the same name)",
        )
    raise EvidenceRefused(
        "unknown_root",
        f"{name} {_cn(top)} is issued by {top.issuer.rfc4514_string()!r}, which is not a "
        "configured root",
    )


def _check_validity(cert: x509.Certificate, name: str, now: dt.datetime) -> None:
    if now < cert.not_valid_before_utc:
        raise EvidenceRefused(
            "cert_not_yet_valid",
            f"{name} {_cn(cert)} is valid from {cert.not_valid_before_utc.isoformat()}, "
            f"after the check time {now.isoformat()}",
        )
    if now > cert.not_valid_after_utc:
        raise EvidenceRefused(
            "cert_expired",
            f"{name} {_cn(cert)} expired at {cert.not_valid_after_utc.isoformat()}, "
            f"before the check time {now.isoformat()}",
        )
