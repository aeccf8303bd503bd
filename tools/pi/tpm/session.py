"""One connection to a TPM (ESAPI over a TCTI) and the one exception its failures become.

A TCTI string names the TPM as tpm2-tools does: "device:/dev/tpmrm0" (the kernel's resource
manager on a Pi; the default in the device config), "swtpm:host=127.0.0.1,port=N" (tests).
Every failure is a TpmError whose message is one sentence naming that TCTI and what to do,
never a TSS return code alone.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from tpm2_pytss import ESAPI, TSS2_Exception
from tpm2_pytss.constants import ESYS_TR, TPMA_OBJECT, TSS2_RC
from tpm2_pytss.types import TPM2B_PUBLIC, TPM2B_SENSITIVE_CREATE

# tpm2-tss prints its own ERROR lines to stderr for an absent TPM; the TpmError says it
# better, once. TSS2_LOG set by the operator (e.g. "all+debug") still wins. tpm2-tss reads
# it at its first log call, not at load time, so setting it here (before any TPM call) works.
os.environ.setdefault("TSS2_LOG", "all+none")

DEFAULT_TCTI = "device:/dev/tpmrm0"

ENABLE_HINT = (
    "enable it (on a Raspberry Pi with an SLB9670 TPM board: dtparam=spi=on and "
    "dtoverlay=tpm-slb9670 in /boot/firmware/config.txt, then reboot)"
)


class TpmError(Exception):
    """A TPM operation failed; str(e) is one sentence naming the TPM (its TCTI)."""


def _device_path(tcti: str) -> str | None:
    name, _, conf = tcti.partition(":")
    if name != "device":
        return None
    return conf or "/dev/tpm0"  # tpm2-tss's default for "device" without a path


def check_device(tcti: str) -> None:
    """For a device TCTI, the two set-up mistakes a Pi owner makes, said plainly."""
    path = _device_path(tcti)
    if path is None:
        return
    if not os.path.exists(path):
        raise TpmError(f"no TPM at {path}: {ENABLE_HINT}")
    if not os.access(path, os.R_OK | os.W_OK):
        raise TpmError(
            f"no permission to use the TPM at {path}: add the agent's user to the tss group "
            "(sudo usermod -aG tss USER, then log in again or restart the service)"
        )


def _unreachable(rc: int) -> bool:
    layer = rc & TSS2_RC.RC_LAYER_MASK
    base = rc & 0xFFFF
    return layer in (TSS2_RC.TCTI_RC_LAYER, TSS2_RC.ESAPI_RC_LAYER) and base in (
        TSS2_RC.BASE_RC_IO_ERROR,
        TSS2_RC.BASE_RC_NO_CONNECTION,
        TSS2_RC.BASE_RC_TRY_AGAIN,
    )


def explain(tcti: str, what: str, exc: BaseException) -> TpmError:
    """The TpmError for exc, raised while doing `what` (e.g. "signing") on the TPM at tcti."""
    if isinstance(exc, TpmError):
        return exc
    if isinstance(exc, TSS2_Exception) and _unreachable(int(exc.rc)):
        where = _device_path(tcti)
        if where is not None and not os.path.exists(where):
            return TpmError(f"no TPM at {where}: {ENABLE_HINT}")
        return TpmError(f"TPM at {tcti}: not reachable while {what} (is it running?)")
    return TpmError(f"TPM at {tcti}: {what} failed: {exc}")


@contextmanager
def tpm_errors(tcti: str, what: str) -> Iterator[None]:
    """Turn any TSS failure inside the block into the TpmError explain() gives."""
    try:
        yield
    except TpmError:
        raise
    except (TSS2_Exception, OSError, RuntimeError) as exc:
        raise explain(tcti, what, exc) from exc


def connect(tcti: str) -> ESAPI:
    """An ESAPI context on the TPM at tcti; TpmError when there is none."""
    check_device(tcti)
    if ":" not in tcti and tcti not in ("device", "swtpm", "mssim"):
        raise TpmError(
            f"TPM {tcti!r}: not a TCTI string (expected e.g. {DEFAULT_TCTI} or "
            "swtpm:host=127.0.0.1,port=2321)"
        )
    with tpm_errors(tcti, "connecting"):
        esapi = ESAPI(tcti)
    try:
        with tpm_errors(tcti, "connecting"):
            esapi.get_random(1)  # the TCTI opens lazily: prove a TPM answers now
    except TpmError:
        esapi.close()
        raise
    return esapi


# The storage primary key: the TCG's ECC P-256 Storage Root Key template ("TCG TPM v2.0
# Provisioning Guidance", SRK template; the same as tpm2_createprimary -C o -G ecc256:aes128cfb).
# A primary key is a function of the hierarchy's seed and this template, so the owner
# hierarchy gives back the same key after every TPM reset: nothing has to be made persistent,
# and keys created under it reload from their blob file. (TPM2_Clear changes the owner seed:
# then every key under it is gone, by design.)
STORAGE_PRIMARY_ATTRIBUTES = (
    TPMA_OBJECT.FIXEDTPM
    | TPMA_OBJECT.FIXEDPARENT
    | TPMA_OBJECT.SENSITIVEDATAORIGIN
    | TPMA_OBJECT.USERWITHAUTH
    | TPMA_OBJECT.NODA
    | TPMA_OBJECT.RESTRICTED
    | TPMA_OBJECT.DECRYPT
)


def storage_primary_template() -> TPM2B_PUBLIC:
    # ECC NIST P-256, nameAlg SHA-256, AES-128-CFB for its children, no scheme, no KDF, an
    # empty unique field (host_tests check the marshalled bytes against the template).
    return TPM2B_PUBLIC.parse(
        "ecc256:aes128cfb", objectAttributes=STORAGE_PRIMARY_ATTRIBUTES, nameAlg="sha256"
    )


def storage_primary(esapi: ESAPI) -> ESYS_TR:
    """Derive (TPM2_CreatePrimary) the owner hierarchy's storage key; the caller flushes it."""
    handle, _public, _data, _digest, _ticket = esapi.create_primary(
        TPM2B_SENSITIVE_CREATE(), storage_primary_template(), ESYS_TR.OWNER
    )
    return handle
