"""Key rotation: the old key signs a 'rotate' statement naming the new key.

The statement is checked against the OLD key only (it is what the gateway already
trusts); the new key's own tier is a separate matter (its evidence, if any, goes through
verify_evidence). Everything wrong is ``rotation_invalid`` with a sentence saying what.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..verify.pubkeys import DevicePublicKey
from ..verify.refusals import Refused
from .refusals import EvidenceRefused
from .statements import check_signed_by, open_envelope, read_payload

__all__ = ["Rotation", "verify_rotation"]

_WHAT = "rotation statement"
_REASON = "rotation_invalid"


@dataclass(frozen=True)
class Rotation:
    """A verified rotation: the new key, the old key's last ``n``, the statement's time."""

    new_key: DevicePublicKey
    last_n: int  # the highest n the old key signed; its records above it are refused
    t: int | None  # Unix ms when the device signed it, None if its clock was unset


def verify_rotation(statement: bytes, old: DevicePublicKey) -> Rotation:
    """Verify a 'rotate' statement signed by ``old``; refuse it ``rotation_invalid``."""
    env = open_envelope(statement, _WHAT, _REASON)
    check_signed_by(env, old, _WHAT, _REASON)
    payload = read_payload(env, "rotate", _WHAT, _REASON)
    if payload["old"] != old.kid:
        raise EvidenceRefused(
            _REASON,
            f"{_WHAT} names old kid {payload['old'].hex()}, not {old.device_id} (which signed it)",
        )
    try:
        new_key = DevicePublicKey.from_sec1(payload["pk"], payload["crv"])
    except Refused as refusal:
        raise EvidenceRefused(_REASON, f"{_WHAT}: new key: {refusal.detail}") from None
    if new_key == old:
        raise EvidenceRefused(_REASON, f"{_WHAT} names the old key as the new key")
    return Rotation(new_key=new_key, last_n=payload["last"], t=payload["t"])
