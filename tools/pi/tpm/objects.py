"""What a Signet TPM key is (its template and the attribute rules a loaded blob must meet) and
the blob file that holds it between runs.

A TPM key lives outside the TPM as TPM2B_PUBLIC + TPM2B_PRIVATE: the private part is
encrypted and integrity-protected under the storage primary key (session.py), so the file
is useless on any other TPM, and the TPM refuses to load a public area that was changed.
The attribute check on open is for a blob that was created wrong, not forged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tpm2_pytss import ESAPI, TSS2_Exception
from tpm2_pytss.constants import ESYS_TR, TPM2_ALG, TPM2_ECC, TPM2_RC, TPMA_OBJECT
from tpm2_pytss.types import TPM2B_PRIVATE, TPM2B_PUBLIC, TPM2B_SENSITIVE_CREATE, TPMT_PUBLIC

from signet_tools.runners.atomic_file import write_atomically

from .session import TpmError, storage_primary, tpm_errors

# The device's signing key (TPM 2.0 Part 2, 8.3 TPMA_OBJECT):
#   fixedTPM             never duplicated out of this TPM
#   fixedParent          never re-parented (duplicated) either
#   sensitiveDataOrigin  the TPM generated the private key itself (it was never outside)
#   userWithAuth         TPM2_Sign with a password session (empty auth: the Pi's own user
#                        access to /dev/tpmrm0 is the gate, as a file key's mode is)
#   noDA                 exempt from dictionary-attack lockout: its auth is empty, so
#                        there is no password to guess, and another program's failed
#                        passwords locking the TPM out must not stop the device signing
#   sign                 a signing key, and NOT decrypt and NOT restricted: it signs any
#                        32-byte digest (a record's COSE digest), nothing else
SIGNING_KEY_ATTRIBUTES = (
    TPMA_OBJECT.FIXEDTPM
    | TPMA_OBJECT.FIXEDPARENT
    | TPMA_OBJECT.SENSITIVEDATAORIGIN
    | TPMA_OBJECT.USERWITHAUTH
    | TPMA_OBJECT.NODA
    | TPMA_OBJECT.SIGN_ENCRYPT
)
# The attestation key: the same, plus restricted, so it signs only structures the TPM
# itself generated (TPMS_ATTEST from TPM2_Certify / Quote), never an outside digest that
# could imitate one (Part 1, 25.1 "Restricted signing keys").
ATTESTATION_KEY_ATTRIBUTES = SIGNING_KEY_ATTRIBUTES | TPMA_OBJECT.RESTRICTED

_REQUIRED = (
    (TPMA_OBJECT.FIXEDTPM, "fixedTPM"),
    (TPMA_OBJECT.FIXEDPARENT, "fixedParent"),
    (TPMA_OBJECT.SENSITIVEDATAORIGIN, "sensitiveDataOrigin"),
    (TPMA_OBJECT.USERWITHAUTH, "userWithAuth"),
    (TPMA_OBJECT.SIGN_ENCRYPT, "sign"),
)


def key_template(attributes: TPMA_OBJECT) -> TPM2B_PUBLIC:
    """ECC NIST P-256, nameAlg SHA-256, scheme ECDSA with SHA-256, no symmetric algorithm."""
    template = TPM2B_PUBLIC.parse(
        "ecc256:ecdsa-sha256", objectAttributes=attributes, nameAlg="sha256"
    )
    # parse() gives a restricted key AES-128-CFB, which only a restricted DECRYPTION key may
    # have: a signing key's symmetric must be TPM_ALG_NULL (Part 2, 12.2.3.6 TPMS_ECC_PARMS).
    template.publicArea.parameters.eccDetail.symmetric.algorithm = TPM2_ALG.NULL
    return template


def attribute_problems(public: TPMT_PUBLIC, restricted: bool) -> list[str]:
    """What makes `public` not a Signet signing key (restricted=False) or AK (True)."""
    problems = []
    if public.type != TPM2_ALG.ECC:
        return [f"it is not an ECC key (type 0x{int(public.type):04x})"]
    if public.nameAlg != TPM2_ALG.SHA256:
        problems.append("its nameAlg is not SHA-256")
    attrs = public.objectAttributes
    problems += [f"it lacks {name}" for flag, name in _REQUIRED if not attrs & flag]
    if attrs & TPMA_OBJECT.DECRYPT:
        problems.append("it is a decrypt key too")
    if bool(attrs & TPMA_OBJECT.RESTRICTED) != restricted:
        problems.append("it is restricted" if not restricted else "it is not restricted")
    detail = public.parameters.eccDetail
    if detail.curveID != TPM2_ECC.NIST_P256:
        problems.append("its curve is not NIST P-256")
    if detail.scheme.scheme != TPM2_ALG.ECDSA or detail.scheme.details.ecdsa.hashAlg != (
        TPM2_ALG.SHA256
    ):
        problems.append("its scheme is not ECDSA with SHA-256")
    return problems


def ecc_point(public: TPMT_PUBLIC) -> tuple[int, int]:
    point = public.unique.ecc
    return int.from_bytes(bytes(point.x), "big"), int.from_bytes(bytes(point.y), "big")


# --- the blob file ----------------------------------------------------------------------
# "<format>\n" then TPM2B_PUBLIC then TPM2B_PRIVATE, each as the TPM marshals it (a 2-byte
# size first, so the file needs no other framing). The first line names what it is, so a
# key blob is never loaded as an attestation key or the reverse.
KEY_FORMAT = "signet-tpm2-key/1"
AK_FORMAT = "signet-tpm2-ak/1"


@dataclass(frozen=True)
class Blob:
    public: TPM2B_PUBLIC
    private: TPM2B_PRIVATE


def create_blob(esapi: ESAPI, tcti: str, attributes: TPMA_OBJECT, what: str) -> Blob:
    """Have the TPM generate a key (key_template(attributes)) under the storage primary."""
    with tpm_errors(tcti, what):
        primary = storage_primary(esapi)
        try:
            private, public, _data, _digest, _ticket = esapi.create(
                primary, TPM2B_SENSITIVE_CREATE(), key_template(attributes)
            )
        finally:
            esapi.flush_context(primary)
    return Blob(public, private)


def write_blob(path: Path, fmt: str, blob: Blob, force: bool = False) -> None:
    """Atomically, mode 0600 from the first byte; an existing blob is a key: not overwritten
    unless force."""
    path = Path(path)
    if path.exists() and not force:
        raise TpmError(f"{path} exists; refusing to overwrite a TPM key blob")
    data = fmt.encode() + b"\n" + blob.public.marshal() + blob.private.marshal()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, data, private=True)


def read_blob(path: Path, fmt: str) -> Blob:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TpmError(f"no TPM key blob at {path}") from None
    except OSError as exc:
        raise TpmError(f"TPM key blob {path}: cannot read it ({exc.strerror})") from None
    head, nl, body = data.partition(b"\n")
    if not nl or head != fmt.encode():
        shown = head[:40].decode("ascii", "replace") if nl else "no format line"
        raise TpmError(f"{path} is not a {fmt} blob (it starts with {shown!r})")
    try:
        public, used = TPM2B_PUBLIC.unmarshal(body)
        private, used2 = TPM2B_PRIVATE.unmarshal(body[used:])
    except Exception:
        raise TpmError(f"TPM key blob {path}: truncated or corrupt") from None
    if used + used2 != len(body):
        raise TpmError(f"TPM key blob {path}: {len(body) - used - used2} stray bytes at its end")
    return Blob(public, private)


def load_blob(esapi: ESAPI, tcti: str, blob: Blob, blob_path: Path) -> ESYS_TR:
    """TPM2_Load the blob under a freshly derived storage primary, which is flushed again at
    once: a loaded key needs no loaded parent, and a TPM without a resource manager has only
    about three object slots. The caller flushes the key."""
    primary = storage_primary(esapi)
    try:
        return esapi.load(primary, blob.private, blob.public)
    except TSS2_Exception as exc:
        if exc.error != TPM2_RC.INTEGRITY:
            raise
        # The private part is bound to the primary's seed and to the public area.
        raise TpmError(
            f"TPM at {tcti}: refuses the key blob {blob_path} (integrity check failed): it "
            "was created by another TPM, this TPM was cleared since, or the file was altered"
        ) from None
    finally:
        esapi.flush_context(primary)
