"""`signet broker config`: the Mosquitto files for the devices enrolled in the gateway's
database, written again on every run (idempotent) so that enroll, revoke and rotate reach
the broker with a re-run and a reload.

What a re-run keeps: the CA, the server certificate (unless the names changed or it nears
its end), every remaining account's password or client certificate. What it changes: new
machines get new credentials, written once to credentials/ (mode 0600); accounts that are
gone lose their password entry, their credential files and (certificates) are put on the CRL.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from signet_gateway.store.sqlite import Store

from . import pki
from .accounts import DEFAULT_GATEWAY_ACCOUNT, Accounts, device_accounts
from .files import BROKER_READS, PUBLIC, SECRET, write_file
from .mosquitto_conf import Listener, render_acl, render_conf
from .passwords import new_password, parse_password_file, password_hash, render_password_file

CONF = "mosquitto.conf"
ACL = "signet.acl"
PASSWD = "passwd"
TLS_DIR = "tls"
CREDENTIALS_DIR = "credentials"

_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,62})"
_HOST = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")


class BrokerConfigError(Exception):
    """Something the command cannot work with: one line naming it (a set-up error)."""


def host_name(text: str) -> str:
    """argparse type of --host: a DNS name or an IP address for the server certificate."""
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(text))
    if _HOST.fullmatch(text):
        return text
    raise ValueError(f"{text!r} is neither a DNS name nor an IP address")


def default_hosts() -> tuple[str, ...]:
    """This machine's name, localhost and 127.0.0.1: a broker on this host."""
    names = [socket.gethostname(), "localhost", "127.0.0.1"]
    return tuple(dict.fromkeys(n for n in names if _HOST.fullmatch(n)))


@dataclass(frozen=True)
class BrokerOptions:
    out: Path
    port: int = 8883
    bind: str | None = None
    hosts: tuple[str, ...] = field(default_factory=default_hosts)
    certificates: bool = False  # client certificates instead of passwords
    tls_files: tuple[Path, Path, Path] | None = None  # the operator's CA, server cert and key
    gateway: str = DEFAULT_GATEWAY_ACCOUNT
    renew: tuple[str, ...] = ()  # accounts that get new credentials


@dataclass
class BrokerConfig:
    """What a run wrote, for the command's summary."""

    out: Path
    accounts: Accounts
    gateway: str
    certificates: bool
    ca_file: Path
    new_credentials: dict[str, Path] = field(default_factory=dict)  # account -> file
    kept: int = 0
    removed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def write_broker_config(db: Path, opts: BrokerOptions) -> BrokerConfig:
    """Read the devices (read-only) and write every file under opts.out."""
    with Store(db, readonly=True) as store:
        accounts = device_accounts(store.devices())
    out = opts.out.resolve()
    _check_paths([out, *(opts.tls_files or ())])
    names = [opts.gateway, *(a.name for a in accounts.devices)]
    unknown = sorted(set(opts.renew) - set(names))
    if unknown:
        raise BrokerConfigError(
            f"--renew {unknown[0]}: no such account (the gateway's is {opts.gateway}; a device's"
            " is its machine id, see `signet devices`)"
        )
    if opts.gateway in {a.name for a in accounts.devices}:
        raise BrokerConfigError(f"--gateway-user {opts.gateway}: a device has that name")
    given = None if opts.tls_files is None else [_readable_pem(p) for p in opts.tls_files]
    (out / CREDENTIALS_DIR).mkdir(parents=True, exist_ok=True, mode=0o700)
    if given is None:
        ca: pki.Issuer | None = _own_ca(out / TLS_DIR)
        cafile, certfile, keyfile = _server_certificate(out / TLS_DIR, ca, list(opts.hosts))
    else:
        ca, (cafile, certfile, keyfile) = None, given

    result = BrokerConfig(out, accounts, opts.gateway, opts.certificates, cafile)
    crlfile = None
    if opts.certificates:
        crlfile = _client_certificates(out, ca, names, opts.renew, result)
    else:
        _passwords(out, names, opts.renew, result)
    listener = Listener(opts.port, opts.bind, cafile, certfile, keyfile, opts.certificates, crlfile)
    write_file(out / ACL, render_acl(opts.gateway, accounts.devices), BROKER_READS)
    password_file = None if opts.certificates else out / PASSWD
    write_file(out / CONF, render_conf(listener, out / ACL, password_file), BROKER_READS)
    return result


def _check_paths(paths: Iterable[Path]) -> None:
    for path in paths:
        if any(ch.isspace() for ch in str(path)):
            raise BrokerConfigError(
                f"{path}: Mosquitto's configuration cannot name a path with blanks in it"
            )


def _readable_pem(path: Path) -> Path:
    path = path.resolve()
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise BrokerConfigError(f"{path}: cannot read it: {exc.strerror}") from None
    if b"-----BEGIN " not in text:
        raise BrokerConfigError(f"{path} is not a PEM file")
    return path


def _own_ca(tls: Path) -> pki.Issuer:
    """The CA made on the first run, kept ever after (the devices hold its certificate)."""
    tls.mkdir(exist_ok=True, mode=0o755)
    cert, key = tls / "ca.pem", tls / "ca.key"
    if cert.exists() or key.exists():
        try:
            return pki.load_issuer(cert, key)
        except (OSError, ValueError) as exc:
            raise BrokerConfigError(f"the CA in {tls} cannot be used: {exc}") from None
    ca = pki.new_ca(f"Signet broker CA {socket.gethostname()}")
    write_file(key, pki.key_pem(ca.key), SECRET)
    write_file(cert, pki.cert_pem(ca.cert), PUBLIC)
    return ca


def _server_certificate(tls: Path, ca: pki.Issuer, hosts: list[str]) -> tuple[Path, Path, Path]:
    """CA, certificate and key files of the listener; the certificate issued again only when
    the names changed, another CA signed it or its end is near."""
    cafile, certfile, keyfile = tls / "ca.pem", tls / "server.pem", tls / "server.key"
    if not pki.still_good(certfile, ca, server_hosts=hosts):
        cert, key = pki.issue(ca, hosts[0], server_hosts=hosts)
        write_file(keyfile, pki.key_pem(key), BROKER_READS)
        write_file(certfile, pki.cert_pem(cert), PUBLIC)
    return cafile, certfile, keyfile


def password_file(out: Path, account: str) -> Path:
    """Where a run writes an account's password (mode 0600), for its device or the gateway."""
    return out / CREDENTIALS_DIR / f"{account}.password"


def _stale(directory: Path, suffix: str, names: list[str]) -> list[Path]:
    return sorted(p for p in directory.glob(f"*{suffix}") if p.name[: -len(suffix)] not in names)


def _passwords(out: Path, names: list[str], renew: tuple[str, ...], result: BrokerConfig) -> None:
    creds = out / CREDENTIALS_DIR
    passwd = out / PASSWD
    old = parse_password_file(passwd.read_text()) if passwd.exists() else {}
    entries: dict[str, str] = {}
    for name in names:
        file = password_file(out, name)
        if name in old and name not in renew:
            entries[name] = old[name]
            result.kept += 1
        elif file.exists() and name not in renew:  # the file was kept, the entry lost: rehash
            entries[name] = password_hash(file.read_text().strip())
            result.kept += 1
        else:
            password = new_password()
            write_file(file, password + "\n", SECRET)
            entries[name] = password_hash(password)
            result.new_credentials[name] = file
    for name in sorted(set(old) - set(names)):
        result.removed.append(name)
    for path in _stale(creds, ".password", names):
        path.unlink()
        result.removed.append(path.name[: -len(".password")])
    result.removed = sorted(set(result.removed))
    write_file(passwd, render_password_file(entries), BROKER_READS)


def _client_certificates(
    out: Path, ca: pki.Issuer | None, names: list[str], renew: tuple[str, ...], result: BrokerConfig
) -> Path | None:
    """A certificate per account (CN = account), the CRL of those that are gone or renewed."""
    if ca is None:  # the operator's CA: we cannot sign with it
        result.notes.append(
            "client certificates: issue one per account with its name as the common name"
            " (the accounts are the `user` lines of signet.acl); revoke them with your CA"
        )
        return None
    creds = out / CREDENTIALS_DIR
    crl_path = out / TLS_DIR / "crl.pem"
    revoked = pki.crl_serials(crl_path)
    for name in names:
        cert_file, key_file = creds / f"{name}.pem", creds / f"{name}.key"
        if name not in renew and pki.still_good(cert_file, ca) and key_file.exists():
            result.kept += 1
            continue
        if cert_file.exists():
            revoked.add(_serial_or_none(cert_file) or 0)
        cert, key = pki.issue(ca, name)
        write_file(key_file, pki.key_pem(key), SECRET)
        write_file(cert_file, pki.cert_pem(cert), SECRET)
        result.new_credentials[name] = cert_file
    for cert_file in _stale(creds, ".pem", names):
        revoked.add(_serial_or_none(cert_file) or 0)
        name = cert_file.name[: -len(".pem")]
        cert_file.unlink()
        creds.joinpath(f"{name}.key").unlink(missing_ok=True)
        result.removed.append(name)
    revoked.discard(0)
    if not crl_path.exists() or pki.crl_serials(crl_path) != revoked:  # a re-run changes nothing
        write_file(crl_path, pki.crl_pem(ca, revoked), PUBLIC)
    return crl_path


def _serial_or_none(cert_file: Path) -> int | None:
    try:
        return pki.serial(cert_file)
    except (OSError, ValueError):
        return None
