"""Which device a person means: the one resolver for a device id, id prefix or name.

Every command that takes a device (revoke, report, export) goes through :func:`resolve`, so
they share one minimum prefix length, one rule for names and one error text. Pure: it works
on the list of devices any store implementation returns.

Names are unique among active devices (Store.enroll refuses a second active device with the
same name); a revoked device's name may be reused by its replacement. So a name means the
active device that carries it, or, when no active device does, the one revoked device that
did (a key replaced by a rotation gave its name to its successor and is passed over). Anything
that still matches several devices (two revoked devices of one name, or a
database enrolled before names were unique) is refused with the candidates listed, never
resolved by picking one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from .model import Device, DeviceLookupError

__all__ = ["MIN_PREFIX", "WHAT_TO_GIVE", "resolve"]

MIN_PREFIX: Final = 8
"""Hex digits a device id prefix needs: 8 digits (32 bits) make an accidental match unlikely
in any fleet a gateway serves, and a shorter string is read only as a name."""

WHAT_TO_GIVE: Final = (
    f"a device id, a unique prefix of at least {MIN_PREFIX} hex digits, or a device name"
)

_KID_DIGITS: Final = 32
_LISTED: Final = 10  # candidates named in an "ambiguous" error; the rest are counted


def resolve(devices: Sequence[Device], wanted: str) -> Device:
    """The one device `wanted` names (see the module docstring); DeviceLookupError if none
    or several do."""
    text = wanted.strip()
    if not text:
        raise DeviceLookupError(f"no device given: give {WHAT_TO_GIVE}")
    digits = text.lower()
    hexadecimal = all(c in "0123456789abcdef" for c in digits)
    if hexadecimal and len(digits) == _KID_DIGITS:
        exact = [d for d in devices if d.kid == digits]
        if exact:
            return exact[0]
    by_id = (
        [d for d in devices if d.kid.startswith(digits)]
        if hexadecimal and len(digits) >= MIN_PREFIX
        else []
    )
    named = [d for d in devices if d.name == text]
    # A rotated key handed its name to its successor: among inactive ones, the name is the
    # successor's (revoked) rather than the key it replaced.
    by_name = [d for d in named if d.active] or [d for d in named if d.last_n is None] or named
    candidates = list({d.kid: d for d in by_id + by_name}.values())
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise DeviceLookupError(
            f"no device {wanted!r} is enrolled: give {WHAT_TO_GIVE} (`signet devices` lists them)"
        )
    listed = ", ".join(_describe(d) for d in candidates[:_LISTED])
    more = f" and {len(candidates) - _LISTED} more" if len(candidates) > _LISTED else ""
    raise DeviceLookupError(
        f"{wanted!r} matches {len(candidates)} devices: {listed}{more}; give the full device id"
    )


def _describe(device: Device) -> str:
    status = device.status()
    return (
        f"{device.kid} ({device.name!r}, {status})" if device.name else f"{device.kid} ({status})"
    )
