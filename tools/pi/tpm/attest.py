"""Evidence that the device key lives in this TPM: TPM2_Certify signed by an attestation key.

The attestation key (AK) is a restricted ECC P-256 signing key under the same owner storage
primary as the device key. Restricted means the TPM signs only structures it generated
itself with it, so an AK signature over a TPMS_ATTEST that names the device key is the TPM
saying "this key, with these attributes, is loaded in me". What makes that worth anything
is the AK's certificate: the operator's CA issues it after checking that the AK is in a
genuine TPM (docs/TRUST.md, "TPM 2.0 on a Raspberry Pi"); Signet does not do that step.

certify_evidence() returns the "tpm2-certify" evidence object of the enrollment contract:
the device key's TPMT_PUBLIC, the TPMS_ATTEST with the gateway's challenge as extraData, the
AK's signature as the TPM returned it, and the AK's certificate chain.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric import ec as crypto_ec
from tpm2_pytss.constants import TPM2_ALG
from tpm2_pytss.types import TPMT_SIG_SCHEME

from .objects import (
    AK_FORMAT,
    ATTESTATION_KEY_ATTRIBUTES,
    Blob,
    attribute_problems,
    create_blob,
    ecc_point,
    load_blob,
    read_blob,
    write_blob,
)
from .session import TpmError, connect, tpm_errors

if TYPE_CHECKING:
    from ..tpm_key import TpmSigner

EVIDENCE_FORMAT = "signet-evidence/1"
EVIDENCE_KIND = "tpm2-certify"
# TPM2B_DATA holds at most sizeof(TPMT_HA) bytes, 66 on a TPM with SHA-512 and 50 without
# (Part 2, 10.4.3); the gateway's challenges are 32.
MAX_CHALLENGE_BYTES = 32


@dataclass(frozen=True)
class AttestationKey:
    blob_path: Path
    blob: Blob

    @property
    def public_key(self) -> crypto_ec.EllipticCurvePublicKey:
        """The AK's public key, for the CA that certifies it."""
        x, y = ecc_point(self.blob.public.publicArea)
        return crypto_ec.EllipticCurvePublicNumbers(x, y, crypto_ec.SECP256R1()).public_key()

    @property
    def tpm_public(self) -> bytes:
        return self.blob.public.publicArea.marshal()


def _checked_ak(blob: Blob, blob_path: Path) -> AttestationKey:
    problems = attribute_problems(blob.public.publicArea, restricted=True)
    if problems:
        raise TpmError(
            f"attestation key blob {blob_path}: refused, {'; '.join(problems)} (not a "
            "restricted signing key generated in the TPM)"
        )
    return AttestationKey(Path(blob_path), blob)


def create_ak(tcti: str, blob_path: Path | str, force: bool = False) -> AttestationKey:
    """Have the TPM generate an attestation key and write its blob (0600, atomically)."""
    blob_path = Path(blob_path)
    if blob_path.exists() and not force:
        raise TpmError(f"{blob_path} exists; refusing to overwrite an attestation key blob")
    esapi = connect(tcti)
    try:
        blob = create_blob(esapi, tcti, ATTESTATION_KEY_ATTRIBUTES, "creating the attestation key")
    finally:
        esapi.close()
    ak = _checked_ak(blob, blob_path)
    write_blob(blob_path, AK_FORMAT, ak.blob, force)
    return ak


def open_ak(blob_path: Path | str) -> AttestationKey:
    """The attestation key of an existing blob (read and checked; the TPM loads it when it
    certifies)."""
    return _checked_ak(read_blob(Path(blob_path), AK_FORMAT), Path(blob_path))


def certify_evidence(
    tcti: str,
    signer: TpmSigner,
    ak: AttestationKey,
    ak_chain_der: list[bytes],
    challenge: bytes,
) -> dict[str, object]:
    """TPM2_Certify(object = the device key, signHandle = the AK, qualifyingData = challenge)
    as the "tpm2-certify" evidence object (JSON-able)."""
    if not 1 <= len(challenge) <= MAX_CHALLENGE_BYTES:
        raise ValueError(f"challenge is {len(challenge)} bytes, expected 1..{MAX_CHALLENGE_BYTES}")
    if not ak_chain_der:
        raise ValueError("ak_chain_der is empty: the AK's certificate comes first")
    if signer.tcti != tcti:
        raise TpmError(f"the signer's TPM is {signer.tcti}, not {tcti}: certify needs both keys")
    key = signer.loaded()
    esapi = signer._session()  # the signer's connection: both keys must be in one TPM
    with tpm_errors(tcti, "certifying the key"):
        try:
            ak_handle = load_blob(esapi, tcti, ak.blob, ak.blob_path)
            try:
                # NULL scheme: the AK's own (ECDSA-SHA256).
                attest, signature = esapi.certify(
                    key, ak_handle, challenge, TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL)
                )
            finally:
                esapi.flush_context(ak_handle)
        finally:
            esapi.flush_context(key)
    if signature.sigAlg != TPM2_ALG.ECDSA:
        raise TpmError(f"TPM at {tcti}: certified with algorithm {signature.sigAlg}, not ECDSA")
    r = bytes(signature.signature.ecdsa.signatureR)
    s = bytes(signature.signature.ecdsa.signatureS)
    # r || s as the TPM returned them, only left-padded to 32 bytes each (a TPM may drop
    # leading zero bytes); not low-S normalised: the gateway checks the TPM's own signature.
    raw_signature = r.rjust(32, b"\x00") + s.rjust(32, b"\x00")
    return {
        "format": EVIDENCE_FORMAT,
        "kind": EVIDENCE_KIND,
        "curve": "p256",
        "public_key": signer.public_key.hex(),
        "tpm_public": signer.tpm_public.hex(),
        "attest": bytes(attest).hex(),
        "signature": raw_signature.hex(),
        "ak_chain": [base64.b64encode(der).decode("ascii") for der in ak_chain_der],
    }
