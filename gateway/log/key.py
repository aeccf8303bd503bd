"""The gateway's log key: the Ed25519 key that signs its checkpoints, in a PKCS#8 PEM file.

The file is private to the gateway's user: written with mode 0600 from its first byte and
refused when group or others may read it. It is never overwritten unless asked (`signet
gateway init-key --force`): a log's key is its identity, and the checkpoints it signed verify
with its public key only. The key's name in signatures is the log's origin ([log] origin):
the public key is exported as the C2SP verifier key ``<origin>+<key id>+<key>`` that an
auditor configures, and as a PEM file.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from signet_gateway.config import LogConfig

from .note import Signer, Verifier

__all__ = [
    "KeyFileError",
    "generate",
    "load",
    "open_signer",
    "pub_path",
    "public_pem",
    "save",
    "save_public",
    "signer",
    "verifier",
]

# A PKCS#8 PEM Ed25519 key is 119 bytes; anything much bigger is not one.
_MAX_KEY_FILE = 16 * 1024


class KeyFileError(ValueError):
    """The key file is missing, not private, or not an Ed25519 private key (one line)."""


def generate() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def pub_path(path: Path) -> Path:
    """Where the public key PEM goes: next to the key, as `signet keygen` does."""
    return path.with_name(path.name + ".pub.pem")


def public_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def verifier(key: Ed25519PrivateKey, origin: str) -> Verifier:
    """The key as an auditor knows it: name, key ID, public key (``.vkey`` is the string)."""
    return Verifier.from_public_key(origin, key.public_key())


def signer(key: Ed25519PrivateKey, origin: str) -> Signer:
    return Signer(origin, key)


def _write_atomically(path: Path, data: bytes, replace: bool) -> None:
    """Write a new file in one step: a temporary file in the same directory (mkstemp: mode
    0600 from the first byte), flushed to disk, then linked into place. ``os.link`` fails if
    the name exists, so a key that appeared meanwhile is never overwritten; ``os.replace`` is
    used only when replacing is asked for."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the new name itself survives a power cut
    finally:
        os.close(dir_fd)


def save(path: Path, key: Ed25519PrivateKey, force: bool = False) -> None:
    """Write the key (PKCS#8 PEM, unencrypted, mode 0600). Raises :class:`KeyFileError` if a
    file is there already (unless ``force``) or the path is a directory."""
    path = Path(path)
    if path.is_dir():
        raise KeyFileError(f"{path} is a directory: give the key file's path")
    if (path.exists() or path.is_symlink()) and not force:
        raise KeyFileError(
            f"{path} exists; refusing to overwrite the log key (its checkpoints verify only"
            " with it): --force replaces it"
        )
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        _write_atomically(path, pem, replace=force)
    except FileExistsError:
        raise KeyFileError(f"{path} appeared while writing; refusing to overwrite it") from None


def save_public(path: Path, key: Ed25519PrivateKey) -> Path:
    """Write the public key PEM next to the key file (mode 0644: it is for everyone)."""
    out = pub_path(Path(path))
    _write_atomically(out, public_pem(key), replace=True)
    os.chmod(out, 0o644)
    return out


def load(path: Path, field: str = "log.key") -> Ed25519PrivateKey:
    """The key in ``path``; refused (:class:`KeyFileError` naming ``field``) when missing, when
    group or others may access it, or when it is not an unencrypted Ed25519 private key."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise KeyFileError(
            f"{field}: no key file at {path} (create one: signet gateway init-key)"
        ) from None
    except OSError as exc:
        raise KeyFileError(f"{field}: cannot read {path}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise KeyFileError(f"{field}: {path} is not a regular file")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"{field}: {path} is accessible by group/others (mode {stat.S_IMODE(mode):04o});"
            f" the private key must be private: chmod 600 {path}"
        )
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_KEY_FILE + 1)
    except OSError as exc:
        raise KeyFileError(f"{field}: cannot read {path}: {exc.strerror}") from None
    if len(data) > _MAX_KEY_FILE:
        raise KeyFileError(f"{field}: {path} is not a key file (more than {_MAX_KEY_FILE} bytes)")
    try:
        key = load_pem_private_key(data, password=None)
    except TypeError:
        raise KeyFileError(f"{field}: {path} is encrypted; the log key must not be") from None
    except (ValueError, UnsupportedAlgorithm):
        raise KeyFileError(f"{field}: {path} is not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{field}: {path} is {_kind(key)} key; the log key is Ed25519")
    return key


def _kind(key: object) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"an EC {key.curve.name}"
    if isinstance(key, rsa.RSAPrivateKey):
        return f"an RSA-{key.key_size}"
    return f"a {type(key).__name__}"


def open_signer(config: LogConfig, create: bool = False) -> tuple[Signer, str | None]:
    """The log's signer from ``[log] key`` and ``origin``; with ``create``, a missing key is
    generated first (the gateway's first start) and its verifier key returned beside the
    signer (None when the key existed). KeyFileError (one line) when it cannot be used."""
    made = None
    if create and not os.path.lexists(config.key):
        key = generate()
        save(config.key, key)
        save_public(config.key, key)
        made = verifier(key, config.origin).vkey
    return signer(load(config.key), config.origin), made
