"""Enrollment evidence and rotation statements: is this key really inside a secure element?

Pure verification over bytes (JSON evidence files, COSE statements, X.509 chains, TPM
structures) against the roots and line keys the operator configured. Imports only
``verify`` (strict CBOR/COSE, device keys) and ``config``; knows nothing of MQTT or SQL.
"""

from .evidence import VerifiedEvidence, verify_evidence, verify_stored
from .policy import TrustPolicy, load_policy
from .refusals import REASONS, EvidenceRefused
from .rotation import Rotation, verify_rotation

__all__ = [
    "REASONS",
    "EvidenceRefused",
    "Rotation",
    "TrustPolicy",
    "VerifiedEvidence",
    "load_policy",
    "verify_evidence",
    "verify_rotation",
    "verify_stored",
]
