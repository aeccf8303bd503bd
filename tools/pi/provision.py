"""`signet agent provision` on a Pi: the device key made or found where the config says, and the
facts its evidence needs (docs/TRUST.md, "Enrolling a device step by step").

- ``atecc608``: the chip on key.i2c.bus, through the same chip-side steps a board runs
  (firmware signet/se_provision.py): the slot's key kept (Trust&GO) or made by GenKey, the
  boot self-test, the "enroll" answer to the gateway's challenge signed by the chip, the
  binding file at key.path.
- ``tpm2``: the key created in the TPM (its blob at key.path), an attestation key (AK) whose
  certificate the operator's CA issued, and TPM2_Certify over the challenge (pi/tpm_key.py).
- ``file``: a key file made with the firmware's own code (software tier, no evidence).

The caller (cli/agent.py) writes the public key and the evidence file from what comes back.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from signet import keyfile
from signet.signer import SoftwareSigner

from .keys import KeyUnusable, open_i2c


class ProvisionError(Exception):
    """The device cannot be provisioned as asked; the message says why and what to do."""

    def __init__(self, message: str, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused  # the chip or TPM itself is unfit (exit 1), not the set-up


def atecc608(
    key_cfg: dict[str, Any],
    challenge: bytes | None,
    generate: str,
    i2c: Any = None,
) -> dict[str, Any]:
    """The chip's facts (signet.se_provision.provision); the binding file is written."""
    from signet import se_provision
    from signet.atecc608 import ATECC608, ATECCError
    from signet.se_signer import SelfTestError

    try:
        bus = i2c if i2c is not None else open_i2c(key_cfg)
    except KeyUnusable as exc:
        raise ProvisionError(str(exc)) from None
    chip = ATECC608(bus, key_cfg["address"], getattr(bus, "sleep_us", None))
    path = key_cfg["path"]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        return se_provision.provision(chip, key_cfg["slot"], path, challenge, generate)  # type: ignore[no-any-return]
    except SelfTestError as exc:
        raise ProvisionError(
            f"the chip is refused ({exc.code}): {exc}; a key in it would not be trusted",
            refused=True,
        ) from None
    except ATECCError as exc:
        hint = ""
        if generate == "never" and "GenKey" in str(exc):
            hint = (
                f" (slot {key_cfg['slot']} holds no key: a Trust&GO part ships one in slot 0 at "
                "address 0x35; a chip you configured yourself: --line-key, which makes one)"
            )
        raise ProvisionError(f"{exc}{hint}") from None


def _tpm_key() -> Any:
    try:
        from . import tpm_key
    except ImportError as exc:
        raise ProvisionError(
            f"--backend tpm2 needs tpm2-pytss ({exc}): pip install 'signet[tpm]'"
        ) from None
    return tpm_key


def tpm2_ak(tcti: str, ak_path: Path) -> Any:
    """The attestation key at ak_path, created in the TPM if there is none yet. Its public
    key goes to the operator's CA, which issues the AK certificate (--ak-chain)."""
    tpm_key = _tpm_key()
    try:
        if ak_path.exists():
            return tpm_key.open_ak(ak_path)
        ak_path.parent.mkdir(parents=True, exist_ok=True)
        return tpm_key.create_ak(tcti, ak_path)
    except tpm_key.TpmError as exc:
        raise ProvisionError(str(exc), refused=True) from None


def tpm2(
    key_cfg: dict[str, Any],
    challenge: bytes,
    ak: Any,
    ak_chain_der: list[bytes],
    new_key: bool,
) -> dict[str, Any]:
    """The tpm2-certify evidence object; the key blob is written (kept if there is one)."""
    tpm_key = _tpm_key()
    tcti, path = key_cfg["tcti"], Path(key_cfg["path"])
    try:
        if new_key or not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            signer = tpm_key.create_tpm_key(tcti, path, force=new_key)
        else:
            signer = tpm_key.open_tpm_signer(tcti, path)
        with signer:
            return tpm_key.certify_evidence(tcti, signer, ak, ak_chain_der, challenge)  # type: ignore[no-any-return]
    except tpm_key.TpmError as exc:
        raise ProvisionError(str(exc), refused=True) from None


def software(key_cfg: dict[str, Any], new_key: bool) -> tuple[SoftwareSigner, str]:
    """A key file at key.path (kept if there is one, unless new_key); (signer, new|kept)."""
    path = Path(key_cfg["path"])
    if path.exists() and not new_key:
        try:
            return keyfile.load(str(path)), "kept"
        except (OSError, keyfile.KeyFileError) as exc:
            raise ProvisionError(f"key.path: {path}: {exc}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    signer = SoftwareSigner.generate("p256")
    fd = os.open(str(path) + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(keyfile.dumps(signer) + "\n")
    os.replace(str(path) + ".tmp", path)
    return signer, "new"
