"""The text of the Mosquitto files: the configuration and the ACL file.

Mosquitto denies whatever an ACL file does not grant, so the ACL lists, per account, exactly
the topics of PROTOCOL.md section 7.1 that account needs, and nothing with a wildcard except
the gateway's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .accounts import DeviceAccount

HEADER = (
    "# Written by `signet broker config`: re-run it after enroll, revoke or rotate, then reload\n"
    "# Mosquitto (`systemctl reload mosquitto` or `kill -HUP <pid>`): it re-reads the password\n"
    "# and ACL files on SIGHUP. Edits here are overwritten by the next run.\n"
)


@dataclass(frozen=True)
class Listener:
    port: int
    bind: str | None
    cafile: Path
    certfile: Path
    keyfile: Path
    certificates: bool  # clients authenticate with a certificate naming their account
    crlfile: Path | None = None


def render_conf(listener: Listener, acl_file: Path, password_file: Path | None) -> str:
    lines = [
        HEADER,
        "# Nobody without an account; an account only on its ACL's topics.",
        "allow_anonymous false",
    ]
    if password_file is not None:
        lines.append(f"password_file {password_file}")
    lines += [
        f"acl_file {acl_file}",
        "",
        "# The gateway's persistent session keeps the devices' records while it is down.",
        "persistence true",
        "max_queued_messages 0",
        "",
        f"listener {listener.port}" + (f" {listener.bind}" if listener.bind else ""),
        f"cafile {listener.cafile}",
        f"certfile {listener.certfile}",
        f"keyfile {listener.keyfile}",
        "tls_version tlsv1.2",
        "# A client's id is its account: no account can take over another's session (the",
        "# gateway's, with its queued records) or connection by connecting with its client id.",
        "use_username_as_clientid true",
    ]
    if listener.certificates:
        lines += [
            "# The client certificate's common name is the account name: no passwords.",
            "require_certificate true",
            "use_identity_as_username true",
        ]
        if listener.crlfile is not None:
            lines.append(f"crlfile {listener.crlfile}")
    else:
        lines.append("require_certificate false")
    return "\n".join(lines) + "\n"


def render_acl(gateway: str, devices: tuple[DeviceAccount, ...]) -> str:
    out = [
        HEADER,
        f"# the gateway: every device's records and status in, the acks out\nuser {gateway}",
        "topic read signet/v1/+/rec",
        "topic read signet/v1/+/status",
        "topic write signet/v1/+/ack",
    ]
    for account in devices:
        label = f" ({account.label})" if account.label else ""
        out.append(f"\n# machine {account.name}{label}\nuser {account.name}")
        for kid in account.kids:
            base = f"signet/v1/{kid}"
            out += [f"topic write {base}/rec", f"topic write {base}/status"]
            out.append(f"topic read {base}/ack")
    return "\n".join(out) + "\n"
