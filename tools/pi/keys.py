"""The device key on a Pi: open_device_key(key_cfg) for `signet agent run` and the virtual fleet.

One function per backend of the config's ``key.type`` (docs/DEVICE.md section 7):

- ``file``: the key file of `signet keygen` (software tier), refused when group/world
  readable;
- ``atecc608``: the chip on the kernel's I2C bus (``key.i2c.bus``, pi/i2c_linux.py), its
  binding file and boot self-test: the same code a board runs (firmware signet/devkey.py),
  and the chip's monotonic counter for the sequence lease (``key.counter``);
- ``tpm2``: the key blob loaded into the TPM (pi/tpm_key.py), whose attribute check is its
  self-test.

A chip or TPM that fails at start is not a set-up error: with ``key.fallback_path`` the
software key from it signs instead (tier software) and the agent signs an ``evt`` naming the
failure; without it the result is ``refused`` (the agent signs that evt with the secure
element if it still can, then does not start). A set-up error (no key file, an unreadable
binding file, a bus that does not exist) raises KeyUnusable naming the config field.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from signet import keyfile
from signet.devkey import SELFTEST_EVENT, Opened
from signet.signer import SoftwareSigner

OpenedKey = Opened  # signer, counter, tier, selftest_error (+ refused, event_message())

__all__ = ["SELFTEST_EVENT", "KeyUnusable", "OpenedKey", "load_key", "open_device_key"]


class KeyUnusable(Exception):
    """The key cannot be opened as configured; the message names the config field."""


class BackendFailed(Exception):
    """A TPM that fails at start, as the ATECC608's SelfTestError: a code and a sentence."""

    def __init__(self, code: str, sentence: str) -> None:
        super().__init__(sentence)
        self.code = code


def load_key(path: str, field: str = "key.path") -> SoftwareSigner:
    """The key file of `signet keygen`; refused if group/world readable (software tier)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise KeyUnusable(
            f"{field}: no key file at {path} (create one: signet keygen --out {path})"
        ) from None
    except OSError as exc:
        raise KeyUnusable(f"{field}: cannot read {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyUnusable(
            f"{field}: {path} is accessible by group/others (mode {stat.S_IMODE(mode):04o}); "
            f"the private key must be private: chmod 600 {path}"
        )
    try:
        return keyfile.load(path)
    except keyfile.KeyFileError as exc:
        raise KeyUnusable(f"{field}: {path}: {exc}") from None
    except OSError as exc:
        raise KeyUnusable(f"{field}: cannot read {path}: {exc.strerror}") from None


def _fallback(path: str) -> SoftwareSigner:
    return load_key(path, "key.fallback_path")


def open_i2c(key_cfg: dict[str, Any]) -> Any:
    """The kernel's I2C bus of key.i2c.bus (default /dev/i2c-1, the Pi's GPIO 2/3)."""
    from .i2c_linux import LinuxI2C

    path = key_cfg["i2c"]["bus"] or "/dev/i2c-1"
    try:
        return LinuxI2C(path)
    except OSError as exc:
        hint = " (enable I2C: sudo raspi-config nonint do_i2c 0, then reboot)"
        if isinstance(exc, PermissionError):
            hint = " (add the agent's user to the i2c group: sudo usermod -aG i2c signet)"
        raise KeyUnusable(f"key.i2c.bus: cannot open {path}: {exc.strerror or exc}{hint}") from None


def _open_atecc608(key_cfg: dict[str, Any], i2c: Any) -> Opened:
    from signet import binding, devkey

    bus = i2c if i2c is not None else open_i2c(key_cfg)
    try:
        return devkey.open_atecc608(key_cfg, bus, _fallback)
    except binding.BindingError as exc:
        raise KeyUnusable(f"key.path: {key_cfg['path']}: {exc}") from None
    except OSError as exc:
        raise KeyUnusable(
            f"key.path: cannot read the binding file {key_cfg['path']} ({exc.strerror or exc}); "
            "it is written by signet agent provision"
        ) from None


def _open_tpm2(key_cfg: dict[str, Any]) -> Opened:
    try:
        from . import tpm_key
    except ImportError as exc:
        raise KeyUnusable(
            f"key.type: 'tpm2' needs tpm2-pytss ({exc}): pip install 'signet[tpm]'"
        ) from None
    path = key_cfg["path"]
    if not os.path.exists(path):
        raise KeyUnusable(
            f"key.path: no TPM key blob at {path} (create it: signet agent provision "
            "--backend tpm2)"
        )
    try:
        return Opened(tpm_key.open_tpm_signer(key_cfg["tcti"], path), None, "hardware")
    except tpm_key.TpmError as exc:
        failure = BackendFailed("tpm_error", str(exc))
    if key_cfg["fallback_path"] is not None:
        return Opened(_fallback(key_cfg["fallback_path"]), None, "software", failure)
    return Opened(None, None, "hardware", failure)


def open_device_key(key_cfg: dict[str, Any], i2c: Any = None) -> Opened:
    """The signer the config's key section names. i2c: a machine.I2C-like bus to use
    instead of key.i2c.bus (tests and the virtual fleet pass an emulated ATECC608)."""
    kind = key_cfg["type"]
    if kind == "file":
        return Opened(load_key(key_cfg["path"]))
    if kind == "atecc608":
        return _open_atecc608(key_cfg, i2c)
    if kind == "tpm2":
        return _open_tpm2(key_cfg)
    raise KeyUnusable(f"key.type: {kind!r} is not a key backend")
