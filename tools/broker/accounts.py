"""Who may use the broker, and on which topics: one account per machine, one for the gateway.

A device's account is named after its machine (the device id of the machine's first key):
`signet agent rotate` keeps the device's `mqtt` settings, so the same account carries on
after a rotation, and only the topics of the machine's active key are granted to it. A
revoked or rotated-away key gets no topic; a machine with no active key gets no account.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from signet_gateway.store.model import Device

DEFAULT_GATEWAY_ACCOUNT = "signet-gateway"

# What a Mosquitto password or ACL line can carry as a user name without quoting, and what an
# operator can type: no blanks, no ':' (the password file's separator), no '%' (ACL patterns).
_ACCOUNT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_DEVICE_ID = re.compile(r"[0-9a-f]{32}")


def gateway_account_name(text: str) -> str:
    """argparse type of --gateway-user: a name no device account can take."""
    if not _ACCOUNT_NAME.fullmatch(text):
        raise ValueError(
            f"{text!r}: an account name is 1-64 letters, digits, '.', '_' or '-',"
            " starting with a letter or digit"
        )
    if _DEVICE_ID.fullmatch(text):
        raise ValueError(f"{text!r}: 32 hex digits is a device's account name")
    return text


@dataclass(frozen=True)
class DeviceAccount:
    """A machine's broker account and the key whose topics it may use."""

    name: str  # the machine: its first key's device id
    kids: tuple[str, ...]  # its active key (one, unless the store says otherwise)
    label: str  # the device name, for the ACL file's comment (printable, one line)


@dataclass(frozen=True)
class Accounts:
    devices: tuple[DeviceAccount, ...]
    left_out: tuple[Device, ...]  # revoked or rotated-away keys: no topics


def _label(name: str | None) -> str:
    # A name is free text: never let one end the comment line it is printed on.
    return "".join(ch if ch.isprintable() else "?" for ch in (name or ""))


def device_accounts(devices: Iterable[Device]) -> Accounts:
    """The accounts of the machines that have an active key (now)."""
    kids: dict[str, list[str]] = {}
    labels: dict[str, str] = {}
    left_out: list[Device] = []
    for d in devices:
        if not d.active:
            left_out.append(d)
            continue
        machine = d.machine or d.kid
        kids.setdefault(machine, []).append(d.kid)
        labels[machine] = _label(d.name)
    granted = (DeviceAccount(m, tuple(sorted(k)), labels[m]) for m, k in sorted(kids.items()))
    return Accounts(tuple(granted), tuple(left_out))
