"""`signet broker config` against a real Mosquitto started with the configuration it writes:
no device can speak for another (publish on its topics, forge its acks) or read another's
acks, nobody without an account gets in, a revoked device is refused after a re-run and a
SIGHUP, client certificates name their machine, and the gateway works through it all.

Each "the broker dropped it" is observed from the receiving side: a message the broker let
through would reach the subscriber before a marker published after it on the same
connection (Mosquitto handles one client's publishes in order), so once the marker has
arrived, what did not arrive before it was dropped.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from kit.agentproc import AgentProcess
from kit.gatewaykit import Dev, Mqtt, write_config
from signet_gateway.ingest.wire import ack_payload, ack_topic
from signet_gateway.store.sqlite import Store
from signet_tools.cli.main import main
from signet_tools.pi.local_socket import request
from signet_tools.runners.gateway_process import GatewayProcess, create_gateway_database
from signet_tools.runners.mosquitto import Mosquitto, free_port
from signet_tools.runners.waiting import wait_until

pytestmark = pytest.mark.timeout(120)

GATEWAY = "signet-gateway"


class Probe:
    """One MQTT v5 client on the secured broker: its CONNACK, the messages it receives, the
    reason codes of its PUBACKs."""

    def __init__(
        self,
        port: int,
        ca: Path,
        name: str,
        *,
        password: str | None = None,
        cert: tuple[Path, Path] | None = None,
        client_id: str | None = None,
    ) -> None:
        self.connack: Any = None
        self.messages: list[tuple[str, bytes]] = []
        self.subscribed: list[Any] = []
        self._lock = threading.Lock()
        c = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id or f"probe-{name}",
            protocol=mqtt.MQTTv5,
            # A connection the broker closes stays closed: a reconnecting probe would take
            # the account's connection back from the next one (a client's id is its account).
            reconnect_on_failure=False,
        )
        if password is not None:
            c.username_pw_set(name, password)
        c.tls_set(
            ca_certs=str(ca),
            certfile=None if cert is None else str(cert[0]),
            keyfile=None if cert is None else str(cert[1]),
        )
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.on_subscribe = lambda c, u, mid, codes, p: self.subscribed.append(codes)
        c.on_publish = lambda c, u, mid, code, p: self.pubacks.__setitem__(mid, code)
        self.pubacks: dict[int, Any] = {}
        self.client = c
        self.closed = threading.Event()
        c.on_disconnect = lambda *a: self.closed.set()
        c.connect("127.0.0.1", port)
        c.loop_start()
        wait_until(lambda: self.connack is not None or self.closed.is_set(), 10, f"{name} CONNACK")

    def _on_connect(self, c: Any, u: Any, flags: Any, rc: Any, props: Any) -> None:
        self.connack = rc

    def _on_message(self, c: Any, u: Any, msg: Any) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    @property
    def accepted(self) -> bool:
        return self.connack is not None and not self.connack.is_failure

    def topics(self) -> list[str]:
        with self._lock:
            return [t for t, _ in self.messages]

    def subscribe(self, *topics: str) -> None:
        """Subscribe one at a time, in order, each acknowledged before the next."""
        for topic in topics:
            before = len(self.subscribed)
            self.client.subscribe(topic, qos=1)
            wait_until(lambda b=before: len(self.subscribed) > b, 10, f"SUBACK of {topic}")

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> str:
        """QoS 1; the PUBACK's reason code (MQTT v5 says why a publish was refused)."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(10)
        return str(self.pubacks.get(info.mid, "no PUBACK"))

    def wait_for(self, topic: str, timeout: float = 10) -> None:
        wait_until(lambda: topic in self.topics(), timeout, f"a message on {topic}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Site:
    """A database with devices enrolled, the broker configured from it, and its clients."""

    tmp: Path
    db: Path
    out: Path
    port: int
    devs: list[Dev]
    broker: Mosquitto
    probes: list[Probe]
    certificates: bool = False

    @property
    def ca(self) -> Path:
        return self.out / "tls" / "ca.pem"

    def password(self, account: str) -> str:
        return (self.out / "credentials" / f"{account}.password").read_text().strip()

    def cert(self, account: str) -> tuple[Path, Path]:
        creds = self.out / "credentials"
        return creds / f"{account}.pem", creds / f"{account}.key"

    def connect(self, account: str, **kwargs: Any) -> Probe:
        if "password" not in kwargs and "cert" not in kwargs:
            if self.certificates:
                kwargs["cert"] = self.cert(account)
            else:
                kwargs["password"] = self.password(account)
        probe = Probe(self.port, self.ca, account, **kwargs)
        self.probes.append(probe)
        return probe

    def close_probes(self) -> None:
        while self.probes:
            self.probes.pop().close()

    def configure(self, *extra: str) -> None:
        """Run `signet broker config` (again) on the database."""
        args = ["broker", "config", "--db", str(self.db), "--out", str(self.out)]
        args += ["--port", str(self.port), "--bind", "127.0.0.1", "--host", "127.0.0.1"]
        if self.certificates:
            args.append("--certificates")
        assert main([*args, *extra]) == 0


def _site(tmp_path: Path, certificates: bool) -> Iterator[Site]:
    db = tmp_path / "gateway.db"
    create_gateway_database(db)
    devs = [Dev(1300 + i) for i in range(3)]
    with Store(db) as store:
        for d in devs:
            store.enroll(d.key, "software")
    out = tmp_path / "broker-config"
    site = Site(tmp_path, db, out, free_port(), devs, Mosquitto(tmp_path / "broker"), [])
    site.certificates = certificates
    site.configure()
    site.broker = Mosquitto(tmp_path / "broker", conf=out / "mosquitto.conf").start()
    yield site
    site.close_probes()
    site.broker.stop()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    yield from _site(tmp_path, certificates=False)


@pytest.fixture
def cert_site(tmp_path: Path) -> Iterator[Site]:
    yield from _site(tmp_path, certificates=True)


def _cannot_speak_for_another(site: Site) -> None:
    """Device A publishes on B's rec, status and ack: none of it reaches anyone."""
    a, b = site.devs[0], site.devs[1]
    gateway = site.connect(GATEWAY)
    gateway.subscribe("signet/v1/+/rec", "signet/v1/+/status")
    device_b = site.connect(b.kid)
    device_b.subscribe(ack_topic(b.kid))
    forgeries = [
        (b.topic, b.make("boot"), False),  # even B's own genuine record, replayed by A
        (f"signet/v1/{b.kid}/status", b"offline", True),
        (ack_topic(b.kid), ack_payload(999), True),  # an ack would make B delete its journal
    ]
    for i, (topic, payload, retain) in enumerate(forgeries):
        # Mosquitto refuses it in the PUBACK and (2.0) closes the connection: one each.
        forger = site.connect(a.kid, client_id=f"forger-{i}")
        assert forger.publish(topic, payload, retain) == "Not authorized", topic
    # The markers, published after the broker has decided on every forgery: A's own topics
    # get through, and the gateway publishes B's ack.
    device_a = site.connect(a.kid)
    assert device_a.publish(a.topic, a.make("boot")) == "Success"
    assert device_a.publish(f"signet/v1/{a.kid}/status", b"online", retain=True) == "Success"
    gateway.wait_for(a.topic)
    gateway.wait_for(f"signet/v1/{a.kid}/status")
    gateway.publish(ack_topic(b.kid), ack_payload(1), retain=True)
    device_b.wait_for(ack_topic(b.kid))

    assert b.topic not in gateway.topics()
    assert f"signet/v1/{b.kid}/status" not in gateway.topics()
    assert device_b.messages == [(ack_topic(b.kid), ack_payload(1))]  # the gateway's, not A's


def test_a_device_cannot_publish_on_another_devices_topics(site: Site) -> None:
    _cannot_speak_for_another(site)


def test_a_device_cannot_read_another_devices_ack(site: Site) -> None:
    a, b = site.devs[0], site.devs[1]
    gateway = site.connect(GATEWAY)
    gateway.publish(ack_topic(b.kid), ack_payload(7), retain=True)
    gateway.publish(ack_topic(a.kid), ack_payload(3), retain=True)
    device_a = site.connect(a.kid)
    # B's ack by name, then every ack, then A's own last: its retained ack is the marker.
    device_a.subscribe(ack_topic(b.kid), "signet/v1/#", ack_topic(a.kid))
    wait_until(lambda: device_a.topics().count(ack_topic(a.kid)) >= 2, 10, "A's own ack twice")
    assert set(device_a.topics()) == {ack_topic(a.kid)}
    # Nor can A read the devices' records or status, which only the gateway reads.
    device_b = site.connect(b.kid)
    device_a.subscribe("signet/v1/+/rec", "signet/v1/+/status")
    device_b.publish(b.topic, b.make("boot"))
    device_b.publish(f"signet/v1/{b.kid}/status", b"online", retain=True)
    gateway.publish(ack_topic(a.kid), ack_payload(4), retain=True)  # the marker
    wait_until(lambda: (ack_topic(a.kid), ack_payload(4)) in device_a.messages, 10, "ack 4")
    assert set(device_a.topics()) == {ack_topic(a.kid)}


def _no_takeover(site: Site) -> None:
    """A connects with the gateway's client id, then with B's: neither connection is taken
    over (Mosquitto would hand A the gateway's persistent session and its queued records)."""
    a, b = site.devs[0], site.devs[1]
    gateway = site.connect(GATEWAY, client_id="signet-gw")
    gateway.subscribe("signet/v1/+/rec")
    device_b = site.connect(b.kid, client_id=b.kid)
    for stolen in ("signet-gw", b.kid):
        assert site.connect(a.kid, client_id=stolen).accepted
    device_b.publish(b.topic, b.make("boot"))
    gateway.wait_for(b.topic)
    assert not gateway.closed.is_set() and not device_b.closed.is_set()


def test_a_device_cannot_take_over_another_clients_session(site: Site) -> None:
    _no_takeover(site)


def test_no_account_no_entry(site: Site) -> None:
    a, b = site.devs[0], site.devs[1]
    anonymous = Probe(site.port, site.ca, "anonymous")
    wrong = site.connect(a.kid, password="not-the-password")
    borrowed = site.connect(b.kid, password=site.password(a.kid))  # A's password as B
    for probe in (anonymous, wrong, borrowed):
        assert not probe.accepted, probe.connack
        assert probe.connack is None or probe.connack.getName() in (
            "Not authorized",
            "Bad user name or password",
        )
    anonymous.close()
    assert site.connect(a.kid).accepted


def _speaks_no_more(connected: Probe, dev: Dev, certificates: bool) -> None:
    """A connection the revoked device opened before the reload: Mosquitto closes it when
    its password account is gone; one made with a certificate (checked against the CRL only
    when a connection starts) stays open, but the ACL grants it nothing."""
    if certificates:  # published normally until the reload has been done, then refused
        wait_until(
            lambda: connected.publish(dev.topic, dev.make("hb")) == "Not authorized",
            10,
            "the open connection's publish refused",
        )
    else:
        wait_until(connected.closed.is_set, 10, "the revoked device's connection closed")


def test_a_revoked_device_is_refused_after_a_rerun_and_a_reload(site: Site) -> None:
    a, c = site.devs[0], site.devs[2]
    connected = site.connect(c.kid)
    other = site.connect(a.kid)
    assert connected.accepted and other.accepted
    a_password, gw_password = site.password(a.kid), site.password(GATEWAY)
    c_password = site.password(c.kid)  # the device keeps it
    assert main(["revoke", c.kid, "--db", str(site.db)]) == 0
    site.configure()
    site.broker.reload()  # what `systemctl reload mosquitto` does: SIGHUP

    def refused() -> bool:
        probe = Probe(site.port, site.ca, c.kid, password=c_password)
        probe.close()
        return not probe.accepted

    # First the open connection (a new one of the same account would take it over), which
    # also tells that the reload has been done.
    _speaks_no_more(connected, c, certificates=False)
    wait_until(refused, 10, "the revoked device refused")
    # The others keep their connections and their passwords: nothing to hand out again.
    assert not other.closed.is_set()
    assert other.publish(a.topic, a.make("boot")) == "No matching subscribers"  # accepted
    other.close()
    assert site.password(a.kid) == a_password and site.password(GATEWAY) == gw_password
    assert site.connect(a.kid).accepted and site.connect(GATEWAY).accepted


def test_a_client_certificate_names_its_machine(cert_site: Site) -> None:
    """With --certificates, the certificate's common name is the account: A's certificate
    gets A's topics and nothing of B's; no certificate, no connection."""
    _cannot_speak_for_another(cert_site)
    cert_site.close_probes()  # one connection per account: a client's id is its account
    _no_takeover(cert_site)
    no_cert = Probe(cert_site.port, cert_site.ca, "nobody", password="x")
    no_cert.close()
    assert not no_cert.accepted


def test_a_revoked_devices_certificate_is_refused_after_a_rerun_and_a_reload(
    cert_site: Site,
) -> None:
    a, c = cert_site.devs[0], cert_site.devs[2]
    c_cert = cert_site.cert(c.kid)
    kept = c_cert[0].read_bytes(), c_cert[1].read_bytes()
    connected = cert_site.connect(c.kid)
    assert connected.accepted
    assert main(["revoke", c.kid, "--db", str(cert_site.db)]) == 0
    cert_site.configure()
    cert_site.broker.reload()
    held = cert_site.tmp / "held"  # the device still has its certificate and key
    held.mkdir()
    (held / "c.pem").write_bytes(kept[0])
    (held / "c.key").write_bytes(kept[1])

    def refused() -> bool:
        probe = Probe(cert_site.port, cert_site.ca, c.kid, cert=(held / "c.pem", held / "c.key"))
        probe.close()
        return not probe.accepted

    _speaks_no_more(connected, c, certificates=True)  # first, as above
    wait_until(refused, 10, "the revoked device's certificate refused")
    assert cert_site.connect(a.kid).accepted


def _gateway(site: Site) -> GatewayProcess:
    """`signet gateway run` on its account, over TLS, as GATEWAY.md says to configure it."""
    cfg = write_config(
        site.tmp / "gateway.toml",
        site.port,
        site.db,
        mqtt={
            "username": GATEWAY,
            "password": site.password(GATEWAY),
            "tls_ca": str(site.ca),
        },
    )
    return GatewayProcess(cfg, site.tmp / "gw.log").start()


def test_the_gateway_works_through_the_secured_broker(site: Site) -> None:
    """A real gateway process; a device on its own account publishes signed records: stored,
    and their ack reaches the device."""
    a = site.devs[0]
    gateway = _gateway(site)
    try:
        device = Mqtt(site.port, a.kid, auth=(a.kid, site.password(a.kid)), tls_ca=site.ca)
        try:
            device.publish(a.topic, a.make("boot"))
            device.publish(a.topic, a.make("rev"))
            device.wait_acks({a.kid: 2})
        finally:
            device.close()
        with Store(site.db, readonly=True) as store:
            assert [r.n for r in store.records(a.kid)] == [1, 2]
        assert "refused the ack" not in gateway.text()
    finally:
        assert gateway.stop() == 0


def test_a_new_agent_enrolled_configured_and_reloaded(site: Site) -> None:
    """`signet agent run` with the account and CA DEVICE.md says, after its key is enrolled,
    the broker configured again and reloaded: its sale is stored and acknowledged (its will
    and status, its ack subscription and its records all within its ACL)."""
    agent = AgentProcess(site.tmp / "agent", site.port)
    enroll = ["enroll", "--pubkey", str(agent.pubkey), "--tier", "software"]
    assert main([*enroll, "--db", str(site.db)]) == 0
    site.configure()
    site.broker.reload()
    config = json.loads(agent.config.read_text())
    config["mqtt"].update(
        user=agent.kid, password=site.password(agent.kid), tls={"ca": str(site.ca)}
    )
    agent.config.write_text(json.dumps(config))
    gateway = _gateway(site)
    try:
        agent.start()
        sale = {"kind": "rev", "amount": 250, "currency": "EUR", "ref": "T-1"}
        n = request(agent.socket, sale, timeout=10)["n"]
        wait_until(lambda: agent.stats()["acked"] >= n, 30, f"the agent's record {n} acknowledged")
        with Store(site.db, readonly=True) as store:
            stored = store.record(agent.kid, n)
        assert stored is not None and stored.kind == "rev"
        assert agent.stats()["connected"]
    finally:
        agent.stop()
        assert gateway.stop() == 0
