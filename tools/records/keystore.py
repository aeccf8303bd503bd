"""Public keys an operator trusts, from one PEM file or a directory of them."""

from __future__ import annotations

from pathlib import Path

from signet_gateway.verify.pubkeys import DevicePublicKey
from signet_gateway.verify.refusals import Refused


class KeyStoreError(Exception):
    """A key file is missing or invalid: a configuration error, not a record refusal."""


def load_pem(path: Path) -> DevicePublicKey:
    try:
        return DevicePublicKey.from_pem(path.read_bytes())
    except OSError as exc:
        raise KeyStoreError(f"cannot read public key {path}: {exc.strerror}") from None
    except Refused as exc:
        raise KeyStoreError(f"{path}: {exc.detail}") from None


def load_dir(directory: Path) -> dict[bytes, DevicePublicKey]:
    """Every *.pem in directory, keyed by kid. A broken file is an error, not skipped:
    silently ignoring a trusted key would turn its device's records into 'unknown'."""
    if not directory.is_dir():
        raise KeyStoreError(f"key directory {directory} does not exist")
    keys: dict[bytes, DevicePublicKey] = {}
    for pem in sorted(directory.glob("*.pem")):
        key = load_pem(pem)
        keys[key.kid] = key
    if not keys:
        raise KeyStoreError(f"no *.pem public keys in {directory}")
    return keys
