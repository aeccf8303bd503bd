"""`signet broker config` without a broker: what it writes, what a re-run keeps and changes,
and its refusals (one line, exit 2). Mosquitto itself reading these files is tested in
host_tests/e2e/test_broker_acl.py."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from kit.gatewaykit import Dev
from signet_gateway.store.sqlite import Store
from signet_tools.cli.main import main
from signet_tools.runners.gateway_process import create_gateway_database

GATEWAY = "signet-gateway"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "gateway.db"
    create_gateway_database(path)
    return path


def _enroll(db: Path, *devs: Dev, name: str | None = None) -> None:
    with Store(db) as store:
        for d in devs:
            store.enroll(d.key, "software", name=name)


def _config(db: Path, out: Path, *extra: str) -> int:
    return main(["broker", "config", "--db", str(db), "--out", str(out), *extra])


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _password_ok(entry: str, password: str) -> bool:
    """Check a password file entry as Mosquitto does ($7$: PBKDF2-HMAC-SHA512)."""
    _, seven, rounds, salt, digest = entry.split("$")
    assert seven == "7"
    got = hashlib.pbkdf2_hmac("sha512", password.encode(), base64.b64decode(salt), int(rounds))
    return base64.b64encode(got).decode() == digest


def _passwd(out: Path) -> dict[str, str]:
    lines = (out / "passwd").read_text().splitlines()
    return dict(line.split(":", 1) for line in lines)


def _acl_users(out: Path) -> dict[str, list[str]]:
    """user -> its topic lines, from the ACL file."""
    users: dict[str, list[str]] = {}
    current = None
    for line in (out / "signet.acl").read_text().splitlines():
        if line.startswith("user "):
            current = line.split()[1]
            users[current] = []
        elif line.startswith(("topic ", "pattern ")):
            assert current is not None, f"{line!r} applies to every client"
            users[current].append(line)
    return users


def test_accounts_passwords_and_acl(db: Path, tmp_path: Path) -> None:
    a, b = Dev(1400), Dev(1401)
    _enroll(db, a, b)
    out = tmp_path / "broker"
    assert _config(db, out, "--host", "broker.example", "--host", "10.0.0.5") == 0
    creds = out / "credentials"
    entries = _passwd(out)
    assert set(entries) == {GATEWAY, a.kid, b.kid}
    for account, entry in entries.items():
        password = (creds / f"{account}.password").read_text().strip()
        assert len(password) >= 32 and _password_ok(entry, password)
    assert _acl_users(out) == {
        GATEWAY: [
            "topic read signet/v1/+/rec",
            "topic read signet/v1/+/status",
            "topic write signet/v1/+/ack",
        ],
        **{
            d.kid: [
                f"topic write signet/v1/{d.kid}/rec",
                f"topic write signet/v1/{d.kid}/status",
                f"topic read signet/v1/{d.kid}/ack",
            ]
            for d in (a, b)
        },
    }
    conf = (out / "mosquitto.conf").read_text().splitlines()
    assert "allow_anonymous false" in conf
    assert f"password_file {out / 'passwd'}" in conf and f"acl_file {out / 'signet.acl'}" in conf
    assert "listener 8883" in conf and f"certfile {out / 'tls/server.pem'}" in conf
    server = x509.load_pem_x509_certificate((out / "tls/server.pem").read_bytes())
    ca = x509.load_pem_x509_certificate((out / "tls/ca.pem").read_bytes())
    server.verify_directly_issued_by(ca)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["broker.example"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]
    modes = {name: stat.S_IMODE(os.stat(out / name).st_mode) for name in _files(out)}
    for name, mode in modes.items():
        if name.startswith("credentials/") or name == "tls/ca.key":
            assert mode == 0o600, name
        else:
            assert mode & 0o007 == 0 or name.endswith(".pem"), (name, oct(mode))


def test_a_rerun_keeps_everything_and_a_new_device_gets_a_password(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = Dev(1410), Dev(1411)
    _enroll(db, a)
    out = tmp_path / "broker"
    assert _config(db, out) == 0
    first = _files(out)
    capsys.readouterr()
    assert _config(db, out) == 0
    assert _files(out) == first  # idempotent: byte for byte
    assert "credentials kept: 2, new: 0" in capsys.readouterr().out

    _enroll(db, b)
    assert _config(db, out) == 0
    printed = capsys.readouterr().out
    assert "credentials kept: 2, new: 1" in printed and f"new {b.kid}:" in printed
    after = _files(out)
    for name, data in first.items():
        if name not in ("passwd", "signet.acl"):
            assert after[name] == data, name
    old, new = (
        _passwd(out),
        dict(line.split(":", 1) for line in first["passwd"].decode().splitlines()),
    )
    assert {k: old[k] for k in new} == new  # the existing accounts' entries unchanged
    assert b.kid in old and b.kid in _acl_users(out)


def test_revoked_and_rotated_keys_get_no_topics(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A revoked machine loses its account and credentials; a rotated machine keeps its
    account (named after the machine) with the new key's topics only."""
    a, revoked, old, new = Dev(1420), Dev(1421), Dev(1422), Dev(1423)
    _enroll(db, a, revoked)
    _enroll(db, old, name="kiosk")
    out = tmp_path / "broker"
    assert _config(db, out) == 0
    machine_password = (out / "credentials" / f"{old.kid}.password").read_text()
    with Store(db) as store:
        store.revoke(revoked.kid)
        with store.transaction():
            store.add_device(new.key, "software", rotate_from=old.kid, last_n=0)
    capsys.readouterr()
    assert _config(db, out) == 0
    printed = capsys.readouterr().out
    users = _acl_users(out)
    assert set(users) == {GATEWAY, a.kid, old.kid} and set(_passwd(out)) == set(users)
    assert users[old.kid] == [
        f"topic write signet/v1/{new.kid}/rec",
        f"topic write signet/v1/{new.kid}/status",
        f"topic read signet/v1/{new.kid}/ack",
    ]
    assert (out / "credentials" / f"{old.kid}.password").read_text() == machine_password
    assert not (out / "credentials" / f"{revoked.kid}.password").exists()
    assert f"no topics for {revoked.kid} (revoked)" in printed
    assert f"no topics for {old.kid} (rotated, kiosk)" in printed
    assert f"accounts removed: {revoked.kid}" in printed


def test_renew_gives_an_account_a_new_password(db: Path, tmp_path: Path) -> None:
    a, b = Dev(1430), Dev(1431)
    _enroll(db, a, b)
    out = tmp_path / "broker"
    assert _config(db, out) == 0
    before = _passwd(out)
    password = (out / "credentials" / f"{a.kid}.password").read_text().strip()
    assert _config(db, out, "--renew", a.kid) == 0
    after = _passwd(out)
    assert after[b.kid] == before[b.kid] and after[GATEWAY] == before[GATEWAY]
    assert not _password_ok(after[a.kid], password)
    renewed = (out / "credentials" / f"{a.kid}.password").read_text().strip()
    assert _password_ok(after[a.kid], renewed)


def test_client_certificates_name_their_account_and_the_crl_lists_the_revoked(
    db: Path, tmp_path: Path
) -> None:
    a, b = Dev(1440), Dev(1441)
    _enroll(db, a, b)
    out = tmp_path / "broker"
    assert _config(db, out, "--certificates") == 0
    conf = (out / "mosquitto.conf").read_text().splitlines()
    assert "require_certificate true" in conf and "use_identity_as_username true" in conf
    assert not any(line.startswith("password_file") for line in conf)
    ca = x509.load_pem_x509_certificate((out / "tls/ca.pem").read_bytes())
    certs = {}
    for account in (GATEWAY, a.kid, b.kid):
        cert = x509.load_pem_x509_certificate((out / f"credentials/{account}.pem").read_bytes())
        cert.verify_directly_issued_by(ca)
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == account
        certs[account] = cert
    first = _files(out)
    assert _config(db, out, "--certificates") == 0
    assert _files(out) == first  # a re-run changes nothing
    with Store(db) as store:
        store.revoke(b.kid)
    assert _config(db, out, "--certificates") == 0
    crl = x509.load_pem_x509_crl((out / "tls/crl.pem").read_bytes())
    assert crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    assert {r.serial_number for r in crl} == {certs[b.kid].serial_number}
    assert not (out / f"credentials/{b.kid}.pem").exists()


def test_the_operators_tls_files(db: Path, tmp_path: Path) -> None:
    given = tmp_path / "given"
    given.mkdir()
    for name in ("ca.pem", "server.pem", "server.key"):
        (given / name).write_text("-----BEGIN X-----\n-----END X-----\n")
    out = tmp_path / "broker"
    args = ["--tls-ca", str(given / "ca.pem"), "--tls-cert", str(given / "server.pem")]
    assert _config(db, out, *args, "--tls-key", str(given / "server.key")) == 0
    conf = (out / "mosquitto.conf").read_text().splitlines()
    assert f"cafile {given / 'ca.pem'}" in conf and f"keyfile {given / 'server.key'}" in conf
    assert not (out / "tls").exists()  # no CA of ours


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda t: ["--db", str(t / "none.db"), "--out", str(t / "o")], "none.db"),
        (lambda t: ["--out", str(t / "file"), "--db", str(t / "gateway.db")], "not a directory"),
        (
            lambda t: ["--out", str(t / "file" / "sub"), "--db", str(t / "gateway.db")],
            "cannot write",
        ),
        (
            lambda t: ["--out", str(t / "with blank"), "--db", str(t / "gateway.db")],
            "blanks",
        ),
        (lambda t: ["--out", str(t / "o"), "--gateway-user", "bad name"], "account name"),
        (lambda t: ["--out", str(t / "o"), "--gateway-user", "a" * 32], "device's account"),
        (lambda t: ["--out", str(t / "o"), "--host", "not a host!"], "neither a DNS name"),
        (lambda t: ["--out", str(t / "o"), "--port", "70000"], "1..65535"),
        (lambda t: ["--out", str(t / "o"), "--tls-ca", str(t / "ca.pem")], "all three"),
        (
            lambda t: ["--out", str(t / "o"), "--db", str(t / "gateway.db"), "--renew", "nobody"],
            "--renew nobody: no such account",
        ),
        (
            lambda t: [
                "--out", str(t / "o"), "--db", str(t / "gateway.db"),
                "--tls-ca", str(t / "missing.pem"), "--tls-cert", str(t / "file"),
                "--tls-key", str(t / "file"),
            ],
            "missing.pem: cannot read it",
        ),
    ],
)  # fmt: skip
def test_refusals_are_one_line_and_exit_2(
    db: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make_args: object,
    message: str,
) -> None:
    (tmp_path / "file").write_text("a regular file\n")
    with pytest.raises(SystemExit) as stop:  # argparse's usage errors exit by themselves
        raise SystemExit(main(["broker", "config", *make_args(tmp_path)]))  # type: ignore[operator]
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    err = err.strip().splitlines()  # argparse's usage lines, then the error line
    assert message in err[-1], err
    assert not (tmp_path / "o").exists()  # refused before anything was written
    assert err[-1].startswith(("signet: error: ", "signet broker config: error: ")), err


def test_new_host_names_get_a_new_server_certificate_from_the_same_ca(
    db: Path, tmp_path: Path
) -> None:
    out = tmp_path / "broker"
    assert _config(db, out, "--host", "old.example") == 0
    before = _files(out)
    assert _config(db, out, "--host", "new.example", "--host", "127.0.0.1") == 0
    after = _files(out)
    assert after["tls/ca.pem"] == before["tls/ca.pem"]  # the devices' CA file stays valid
    assert after["tls/server.pem"] != before["tls/server.pem"]
    server = x509.load_pem_x509_certificate(after["tls/server.pem"])
    server.verify_directly_issued_by(x509.load_pem_x509_certificate(after["tls/ca.pem"]))
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["new.example"]
