"""`signet broker config`: the Mosquitto configuration for the enrolled devices (the work is
in tools/broker/)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .exits import EXIT_OK
from .exits import fail as _fail
from .gateway import add_db_args, gateway_db

if TYPE_CHECKING:
    from signet_tools.broker.generate import BrokerConfig, BrokerOptions

DESCRIPTION = (
    "Write a Mosquitto configuration into DIR from the gateway's database (read only): a TLS"
    " listener (a CA and a server certificate are generated unless --tls-ca/--tls-cert/"
    "--tls-key are given), one account per machine with an active key, named after the"
    " machine (a password, or with --certificates a client certificate), the gateway's"
    " account, and an ACL file: a device may publish only on its own signet/v1/<id>/rec and"
    " status and read only its own ack; the gateway reads every rec and status and alone"
    " publishes acks; anonymous clients are refused. Re-run it after enroll, revoke or rotate"
    " and reload Mosquitto (systemctl reload mosquitto, or kill -HUP): existing credentials"
    " are kept, new machines get new ones in DIR/credentials/ (mode 0600), revoked and"
    " rotated-away keys lose their topics and their account. Exit 0: written; 2: no"
    " database, an unusable DIR or TLS file, a bad name."
)


def _type(convert: Callable[[str], object]) -> Callable[[str], str]:
    """A ValueError of convert as argparse's usage error (exit 2), its message kept."""

    def check(text: str) -> str:
        try:
            return str(convert(text))
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    check.__name__ = getattr(convert, "__name__", "value")
    return check


def cmd_broker_config(args: argparse.Namespace) -> int:
    from signet_gateway.config import ConfigError
    from signet_gateway.store.model import StoreError
    from signet_tools.broker.generate import (
        BrokerConfigError,
        BrokerOptions,
        default_hosts,
        write_broker_config,
    )

    tls = (args.tls_ca, args.tls_cert, args.tls_key)
    if any(tls) and not all(tls):
        return _fail("--tls-ca, --tls-cert, --tls-key: give all three (your own TLS files) or none")
    opts = BrokerOptions(
        out=args.out,
        port=args.port,
        bind=args.bind,
        hosts=tuple(dict.fromkeys(args.host)) if args.host else default_hosts(),
        certificates=args.certificates,
        tls_files=tls if all(tls) else None,  # type: ignore[arg-type]
        gateway=args.gateway_user,
        renew=tuple(args.renew or ()),
    )
    try:
        if args.out.exists() and not args.out.is_dir():
            return _fail(f"--out {args.out}: not a directory")
        path, _config = gateway_db(args.db, args.config)
        written = write_broker_config(path, opts)
    except (BrokerConfigError, ConfigError, StoreError, FileNotFoundError) as exc:
        return _fail(str(exc))
    except OSError as exc:
        where = exc.filename or args.out
        return _fail(f"--out {args.out}: cannot write {where}: {exc.strerror or exc}")
    _summary(written, opts)
    return EXIT_OK


def _summary(w: BrokerConfig, opts: BrokerOptions) -> None:
    kind = "client certificates" if w.certificates else "passwords"
    machines = len(w.accounts.devices)
    print(
        f"wrote {w.out}: mosquitto.conf (TLS listener on port {opts.port}, {kind}, anonymous"
        f" refused), signet.acl ({machines} machine{'s' if machines != 1 else ''} and the"
        f" gateway's account {w.gateway})"
    )
    for d in w.accounts.left_out:
        print(f"no topics for {d.kid} ({d.status()}{', ' + d.name if d.name else ''})")
    if w.removed:
        print(f"accounts removed: {', '.join(w.removed)}")
    print(f"credentials kept: {w.kept}, new: {len(w.new_credentials)}")
    for name, path in w.new_credentials.items():
        owner = "the gateway" if name == w.gateway else "its device"
        print(f"  new {name}: {path} (give it to {owner} only)")
    for note in w.notes:
        print(f"note: {note}")
    print(
        f"the broker's CA for the gateway's mqtt.tls_ca and the devices' mqtt.tls.ca: {w.ca_file}"
    )
    print("then reload the broker: sudo systemctl reload mosquitto (or kill -HUP <its pid>)")


def register(sub: argparse._SubParsersAction, bench: argparse._SubParsersAction) -> None:
    """Add this group's commands to `sub`."""
    from signet_tools.broker.accounts import DEFAULT_GATEWAY_ACCOUNT, gateway_account_name
    from signet_tools.broker.generate import host_name

    p = sub.add_parser("broker", help="the MQTT broker: its configuration for the enrolled devices")
    br = p.add_subparsers(dest="broker_command", required=True, metavar="SUBCOMMAND")
    c = br.add_parser(
        "config",
        help="write a Mosquitto configuration (TLS, an account per machine, ACLs) from the"
        " gateway's database",
        description=DESCRIPTION,
    )
    add_db_args(c)
    c.add_argument("--out", type=Path, required=True, metavar="DIR", help="where to write")
    c.add_argument(
        "--port", type=_port, default=8883, help="the TLS listener's port (default: 8883)"
    )
    c.add_argument(
        "--bind", type=_type(host_name), help="listen on this address only (default: all)"
    )
    c.add_argument(
        "--host",
        action="append",
        type=_type(host_name),
        metavar="NAME",
        help="a DNS name or IP address the devices and the gateway connect to, for the"
        " generated server certificate; repeat for several (default: this machine's name,"
        " localhost, 127.0.0.1)",
    )
    c.add_argument(
        "--certificates",
        action="store_true",
        help="clients authenticate with a client certificate whose common name is their"
        " account (use_identity_as_username), instead of a password",
    )
    c.add_argument(
        "--tls-ca",
        type=Path,
        help="your CA file (PEM), with --tls-cert and --tls-key (default: a CA made in"
        " DIR/tls on the first run and kept)",
    )
    c.add_argument(
        "--tls-cert",
        type=Path,
        help="your broker's certificate (PEM) (default: DIR/tls/server.pem, issued by the"
        " generated CA for the --host names)",
    )
    c.add_argument(
        "--tls-key",
        type=Path,
        help="your broker's private key (PEM) (default: DIR/tls/server.key)",
    )
    c.add_argument(
        "--gateway-user",
        type=_type(gateway_account_name),
        default=DEFAULT_GATEWAY_ACCOUNT,
        help=f"the gateway's account (default: {DEFAULT_GATEWAY_ACCOUNT})",
    )
    c.add_argument(
        "--renew",
        action="append",
        metavar="ACCOUNT",
        help="new credentials for this account (a machine id or the gateway's account): the"
        " old password or certificate stops working after the reload; repeat for several"
        " (default: every existing account keeps its credentials)",
    )
    c.set_defaults(func=cmd_broker_config)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer 1..65535, got {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be an integer 1..65535, got {text!r}")
    return value
