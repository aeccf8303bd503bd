"""The agent's MQTT transport against a real Mosquitto with TLS and with passwords.

Certificates are made here with `cryptography`: a CA, a server certificate for
127.0.0.1 and a client certificate, so the broker can demand one.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from signet_tools.cli.main import main
from signet_tools.pi.paho_transport import PahoTransport
from signet_tools.pi.run import check_tls_files
from signet_tools.records import keygen
from signet_tools.runners.mosquitto import BrokerTls, Mosquitto

pytestmark = pytest.mark.timeout(60)

_DAY = datetime.timedelta(days=1)


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    ip: str | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _DAY)
        .not_valid_after(now + _DAY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ip is not None:
        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))])
        builder = builder.add_extension(san, critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _issue("Signet test CA", ca_key, None, ca_key, ca=True)
    other_key = ec.generate_private_key(ec.SECP256R1())
    other = _issue("Some other CA", other_key, None, other_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    client_key = ec.generate_private_key(ec.SECP256R1())
    return {
        "ca": _pem(ca, d / "ca.pem"),
        "other_ca": _pem(other, d / "other.pem"),
        "server": _pem(
            _issue("broker", server_key, ca.subject, ca_key, ip="127.0.0.1"), d / "server.pem"
        ),
        "server_key": _write_key(server_key, d / "server.key"),
        "client": _pem(_issue("device", client_key, ca.subject, ca_key), d / "client.pem"),
        "client_key": _write_key(client_key, d / "client.key"),
    }


def _round_trip(transport: PahoTransport, topic: str) -> bytes:
    """Subscribe, publish to ourselves, poll until it comes back (deadline, no sleeps)."""
    got: list[bytes] = []
    transport.set_callback(lambda t, payload: got.append(payload))
    transport.connect(topic + "/status", b"offline")
    transport.subscribe(topic)
    transport.publish(topic, b"hello over the wire")
    deadline = time.monotonic() + 10
    while not got and time.monotonic() < deadline:
        transport.poll()
    transport.disconnect()
    return got[0] if got else b""


def test_tls_with_client_certificate(tmp_path: Path, pki: dict[str, Path]) -> None:
    tls = BrokerTls(pki["ca"], pki["server"], pki["server_key"], require_certificate=True)
    with Mosquitto(tmp_path, tls=tls) as broker:
        good = PahoTransport(
            "127.0.0.1",
            broker.port,
            "dev-tls",
            tls_ca=str(pki["ca"]),
            tls_cert=str(pki["client"]),
            tls_key=str(pki["client_key"]),
        )
        assert _round_trip(good, "t/tls") == b"hello over the wire"

        no_cert = PahoTransport(
            "127.0.0.1", broker.port, "dev-nocert", tls_ca=str(pki["ca"]), timeout=3
        )
        with pytest.raises(OSError):
            no_cert.connect("t/tls/status", b"offline")

        wrong_ca = PahoTransport(
            "127.0.0.1",
            broker.port,
            "dev-wrongca",
            tls_ca=str(pki["other_ca"]),
            tls_cert=str(pki["client"]),
            tls_key=str(pki["client_key"]),
            timeout=3,
        )
        with pytest.raises(OSError, match="not trusted"):
            wrong_ca.connect("t/tls/status", b"offline")


def test_plain_tcp_client_cannot_talk_to_a_tls_listener(
    tmp_path: Path, pki: dict[str, Path]
) -> None:
    tls = BrokerTls(pki["ca"], pki["server"], pki["server_key"])
    with Mosquitto(tmp_path, tls=tls) as broker:
        plain = PahoTransport("127.0.0.1", broker.port, "dev-plain", timeout=2)
        with pytest.raises(OSError):
            plain.connect("t/plain/status", b"offline")


def test_username_and_password(tmp_path: Path) -> None:
    with Mosquitto(tmp_path, users={"device1": "s3cret"}) as broker:
        good = PahoTransport(
            "127.0.0.1", broker.port, "dev-auth", username="device1", password="s3cret"
        )
        assert _round_trip(good, "t/auth") == b"hello over the wire"
        assert "s3cret" not in repr(good)

        for user, password in (("device1", "wrong"), (None, None)):
            bad = PahoTransport(
                "127.0.0.1", broker.port, "dev-bad", username=user, password=password, timeout=3
            )
            with pytest.raises(OSError, match=r"refused|[Nn]ot authori"):
                bad.connect("t/auth/status", b"offline")


def test_agent_refuses_to_start_with_tls_files_it_cannot_use(
    tmp_path: Path, pki: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing or wrong TLS file used to start the agent, which then failed every connect
    with `cannot load CA/cert/key`; it is refused at start, naming the key and the file."""
    check_tls_files(
        {"ca": str(pki["ca"]), "cert": str(pki["client"]), "key": str(pki["client_key"])}
    )
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    missing = tmp_path / "missing.pem"
    cases = [
        ({"ca": str(missing)}, f"mqtt.tls.ca: cannot read {missing} (No such file or directory)"),
        ({"ca": str(junk)}, f"mqtt.tls.ca: {junk} holds no PEM CA certificate"),
        (
            {"ca": str(pki["ca"]), "cert": str(pki["client"]), "key": str(missing)},
            f"mqtt.tls.key: cannot read {missing} (No such file or directory)",
        ),
        (
            {"ca": str(pki["ca"]), "cert": str(pki["client"]), "key": str(pki["server_key"])},
            f"mqtt.tls.cert: {pki['client']} and mqtt.tls.key {pki['server_key']} are not a PEM "
            "certificate and its private key",
        ),
    ]
    keygen.generate("p256", tmp_path / "dev.key")
    for tls, expected in cases:
        cfg = {
            "mqtt": {"host": "127.0.0.1", "port": 1, "tls": tls},
            "key": {"path": "dev.key"},
            "journal": {"dir": "journal"},
        }
        (tmp_path / "agent.json").write_text(json.dumps(cfg))
        assert main(["agent", "run", "--config", str(tmp_path / "agent.json")]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"signet: error: {expected}") and err.count("\n") == 1, err
