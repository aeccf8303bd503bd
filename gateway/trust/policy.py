"""What the gateway trusts: the configured roots and line keys, and the moment of the check.

:func:`load_policy` reads the PEM files the [trust] section names (gateway/config.py
checked the field types and that each file is readable); a file that is not the PEM it
should be is a :class:`~signet_gateway.config.ConfigError` naming the field and the file.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from ..config import ConfigError, TrustConfig
from ..verify.pubkeys import DevicePublicKey
from ..verify.refusals import Refused

__all__ = ["TrustPolicy", "load_policy"]


@dataclass(frozen=True)
class TrustPolicy:
    """The roots and line keys evidence is checked against, at ``now_ms``.

    ``now_ms`` is the moment certificates must be valid at: the enrollment's time, or, for
    an auditor re-checking stored evidence, the time the device was enrolled; None means
    the moment of each check. ``challenge_ttl`` is in seconds (``[trust] challenge_ttl_s``).
    """

    se_roots: tuple[x509.Certificate, ...] = ()
    tpm_roots: tuple[x509.Certificate, ...] = ()
    line_keys: tuple[DevicePublicKey, ...] = ()
    now_ms: int | None = None
    challenge_ttl: int = 900

    def check_time_ms(self) -> int:
        """``now_ms``, or the current time when it is None."""
        return int(time.time() * 1000) if self.now_ms is None else self.now_ms


def load_policy(cfg: TrustConfig, now_ms: int | None = None) -> TrustPolicy:
    """Load the [trust] section's PEM files into a :class:`TrustPolicy` (at ``now_ms``, or now)."""
    return TrustPolicy(
        se_roots=_load_roots("trust.se_roots", cfg.se_roots),
        tpm_roots=_load_roots("trust.tpm_roots", cfg.tpm_roots),
        line_keys=tuple(
            _load_line_key(f"trust.line_keys[{i}]", path) for i, path in enumerate(cfg.line_keys)
        ),
        now_ms=int(time.time() * 1000) if now_ms is None else now_ms,
        challenge_ttl=cfg.challenge_ttl_s,
    )


def _read(name: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read {path}: {exc.strerror}") from None


def _load_roots(field: str, paths: tuple[Path, ...]) -> tuple[x509.Certificate, ...]:
    roots: list[x509.Certificate] = []
    for i, path in enumerate(paths):
        name = f"{field}[{i}]"
        try:
            # One file may hold several roots (a bundle), as PEM files usually may.
            certs = x509.load_pem_x509_certificates(_read(name, path))
        except ValueError as exc:
            raise ConfigError(f"{name}: {path} is not a PEM certificate file ({exc})") from None
        roots.extend(certs)
    return tuple(roots)


def _load_line_key(name: str, path: Path) -> DevicePublicKey:
    try:
        return DevicePublicKey.from_pem(_read(name, path))
    except Refused as refusal:
        raise ConfigError(f"{name}: {path} is not a line key: {refusal.detail}") from None
