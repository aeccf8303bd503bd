"""The device key in a TPM 2.0 on a Raspberry Pi: create it, open it, sign with it.

create_tpm_key() has the TPM generate a non-exportable ECC P-256 signing key under the owner
hierarchy's storage primary key and writes its blob file; open_tpm_signer() loads that blob
(after checking the key's attributes) and returns a TpmSigner, the same signer interface as
the software key (firmware signet/signer.py): curve, alg, public_key(_uncompressed), kid,
device_id, sign_digest(). Attestation (TPM2_Certify evidence for enrollment) is in
tpm/attest.py and re-exported here.

Why tpm2-pytss rather than the tpm2-tools programs: the bindings install with pip against
Debian's libtss2 (the tpm extra), run in the agent's process (no fork per signature, no key
files handed between programs) and give return codes rather than text to parse.
"""

from __future__ import annotations

import binascii
from pathlib import Path
from types import TracebackType

from tpm2_pytss import ESAPI
from tpm2_pytss.constants import ESYS_TR, TPM2_ALG
from tpm2_pytss.types import TPMS_CONTEXT, TPMT_SIG_SCHEME

from signet import cose, ec

from .tpm.attest import AttestationKey, certify_evidence, create_ak, open_ak
from .tpm.objects import (
    KEY_FORMAT,
    SIGNING_KEY_ATTRIBUTES,
    Blob,
    attribute_problems,
    create_blob,
    ecc_point,
    load_blob,
    read_blob,
    write_blob,
)
from .tpm.session import DEFAULT_TCTI, TpmError, connect, tpm_errors

__all__ = [
    "DEFAULT_TCTI",
    "AttestationKey",
    "TpmError",
    "TpmSigner",
    "certify_evidence",
    "create_ak",
    "create_tpm_key",
    "open_ak",
    "open_tpm_signer",
]


def check_signing_key(blob: Blob, blob_path: Path) -> None:
    """Refuse a blob whose public area is not a Signet device key (from the blob alone)."""
    problems = attribute_problems(blob.public.publicArea, restricted=False)
    if problems:
        raise TpmError(
            f"TPM key blob {blob_path}: refused, {'; '.join(problems)} (not a non-exportable "
            "signing key generated in the TPM)"
        )


class TpmSigner:
    """A P-256 key inside the TPM. Between signatures the key is kept as a saved context
    (TPM2_ContextSave), so it holds no TPM object slot; after a TPM reset that context is
    void and the key is loaded again from its blob."""

    def __init__(self, tcti: str, blob_path: Path, blob: Blob, esapi: ESAPI) -> None:
        check_signing_key(blob, blob_path)
        self.tcti = tcti
        self.blob_path = Path(blob_path)
        self.blob = blob
        self.curve = ec.curve_by_name("p256")
        self.alg = cose.ALG_ES256
        x, y = ecc_point(blob.public.publicArea)
        if not self.curve.on_curve(x, y):
            raise TpmError(f"TPM key blob {blob_path}: its public point is not on P-256")
        self.public_key = ec.encode_point(x, y, True)
        self.public_key_uncompressed = ec.encode_point(x, y, False)
        self.kid = cose.kid_for(self.public_key)
        self.device_id = binascii.hexlify(self.kid).decode()
        self._esapi: ESAPI | None = esapi
        self._context: TPMS_CONTEXT | None = None
        self._context = self._load_context()

    @property
    def tpm_public(self) -> bytes:
        """The key's TPMT_PUBLIC as the TPM marshals it (its TPM name hashes these bytes)."""
        return self.blob.public.publicArea.marshal()

    def _session(self) -> ESAPI:
        if self._esapi is None:
            self._esapi = connect(self.tcti)
        return self._esapi

    def _load_context(self) -> TPMS_CONTEXT:
        esapi = self._session()
        with tpm_errors(self.tcti, f"loading the key {self.blob_path}"):
            handle = load_blob(esapi, self.tcti, self.blob, self.blob_path)
            try:
                return esapi.context_save(handle)
            finally:
                esapi.flush_context(handle)

    def loaded(self) -> ESYS_TR:
        """The key loaded in the TPM (the caller flushes it), reloaded from the blob after a
        TPM reset or a lost connection."""
        try:
            assert self._context is not None
            return self._session().context_load(self._context)
        except Exception:
            self._reset()
        with tpm_errors(self.tcti, f"loading the key {self.blob_path}"):
            self._context = self._load_context()
            return self._session().context_load(self._context)

    def _reset(self) -> None:
        if self._esapi is not None:
            self._esapi.close()
        self._esapi = None
        self._context = None

    def sign_digest(self, digest: bytes) -> bytes:
        """TPM2_Sign (ECDSA, SHA-256 scheme) over a 32-byte digest: r || s, s <= n/2."""
        if len(digest) != 32:
            raise ValueError(f"digest is {len(digest)} bytes, expected 32")
        handle = self.loaded()
        esapi = self._session()
        with tpm_errors(self.tcti, "signing"):
            try:
                # NULL scheme: the key's own (ECDSA-SHA256); NULL ticket: an unrestricted
                # key may sign any digest.
                sig = esapi.sign(handle, digest, TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL))
            finally:
                esapi.flush_context(handle)
        if sig.sigAlg != TPM2_ALG.ECDSA:
            raise TpmError(f"TPM at {self.tcti}: signed with algorithm {sig.sigAlg}, not ECDSA")
        r = int.from_bytes(bytes(sig.signature.ecdsa.signatureR), "big")
        s = int.from_bytes(bytes(sig.signature.ecdsa.signatureS), "big")
        if s > self.curve.half_n:  # the gateway refuses high-S; a TPM does not normalise
            s = self.curve.n - s
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def close(self) -> None:
        self._reset()

    def __enter__(self) -> TpmSigner:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TpmSigner(p256, device_id={self.device_id}, tcti={self.tcti})"


def create_tpm_key(tcti: str, blob_path: Path | str, force: bool = False) -> TpmSigner:
    """Have the TPM generate the device key and write its blob (0600, atomically); an
    existing blob is not overwritten unless force."""
    blob_path = Path(blob_path)
    if blob_path.exists() and not force:
        raise TpmError(f"{blob_path} exists; refusing to overwrite a TPM key blob")
    esapi = connect(tcti)
    try:
        blob = create_blob(esapi, tcti, SIGNING_KEY_ATTRIBUTES, "creating the signing key")
        signer = TpmSigner(tcti, blob_path, blob, esapi)
    except BaseException:
        esapi.close()
        raise
    write_blob(blob_path, KEY_FORMAT, blob, force)
    return signer


def open_tpm_signer(tcti: str, blob_path: Path | str) -> TpmSigner:
    """The signer for an existing blob; TpmError (one sentence) if it is missing, not a
    Signet signing key, or the TPM cannot load it (another TPM, or its owner seed changed)."""
    blob = read_blob(Path(blob_path), KEY_FORMAT)
    check_signing_key(blob, Path(blob_path))  # before touching the TPM
    esapi = connect(tcti)
    try:
        return TpmSigner(tcti, Path(blob_path), blob, esapi)
    except BaseException:
        esapi.close()
        raise
