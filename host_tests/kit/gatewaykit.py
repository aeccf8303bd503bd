"""Helpers for the gateway tests: devices that sign genuine records, a gateway process,
an MQTT publisher and an ack watcher. Everything polls with deadlines, nothing sleeps
to synchronise."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from signet.builder import RecordBuilder
from signet.record import GENESIS_HASH
from signet.signer import SoftwareSigner
from signet_gateway.ingest.wire import parse_ack
from signet_gateway.store.sqlite import Store
from signet_gateway.verify.pubkeys import DevicePublicKey
from signet_tools.runners.gateway_process import create_gateway_database, write_gateway_config
from signet_tools.runners.waiting import wait_until

T0 = 1_700_000_000_000
FIELDS = {
    "boot": {"rc": "power_on", "fw": "0.1.0", "ls": 0},
    "hb": {"iv": 60000, "st": "ok"},
    "rev": {"am": 250, "cur": "EUR", "src": "pulse"},
    "meter": {"q": 12, "unit": "Wh"},
    "evt": {"ev": "door_open"},
}


class Dev:
    """A device key and its chain state; builds genuine signed records with the firmware."""

    def __init__(self, index: int, curve: str = "p256") -> None:
        self.signer = SoftwareSigner(curve, 0xC0FFEE + 7919 * index)
        self.builder = RecordBuilder(self.signer)
        self.key = DevicePublicKey.from_sec1(self.signer.public_key, curve)
        self.kid = self.key.device_id
        self.n = 0
        self.b = 1
        self.prev = GENESIS_HASH
        self.payloads: dict[int, bytes] = {}

    @property
    def topic(self) -> str:
        return f"signet/v1/{self.kid}/rec"

    def pem(self) -> bytes:
        return self.key.to_pem()

    def independent_key(self) -> Any:
        """The same private key as kit.independent_signer's SignerKey: statements (rotation,
        enrollment) signed without the firmware's code."""
        from cryptography.hazmat.primitives.asymmetric import ec

        from kit.independent_signer import CURVES, SignerKey

        d = int.from_bytes(self.signer.private_bytes(), "big")
        return SignerKey(self.key.curve, ec.derive_private_key(d, CURVES[self.key.curve][0]))

    def make(
        self,
        kind: str = "hb",
        *,
        n: int | None = None,
        prev: bytes | None = None,
        t: int | None = T0,
        b: int | None = None,
        fields: dict[str, Any] | None = None,
        advance: bool = True,
    ) -> bytes:
        """Sign a record; by default the next in the chain (n + 1, p = hash of the last)."""
        n = self.n + 1 if n is None else n
        f = dict(FIELDS[kind])
        if fields:
            f.update(fields)
        payload, raw = self.builder.build(
            kind,
            n,
            self.b if b is None else b,
            1000 * n,
            None if t is None else t + 1000 * n,
            self.prev if prev is None else prev,
            f,
        )
        if advance:
            self.n = n
            self.prev = hashlib.sha256(payload).digest()
            self.payloads[n] = bytes(payload)
        return bytes(raw)

    def boot(self, n: int, ls: int) -> bytes:
        """A restart: boot record n declaring ls + 1 .. n - 1 unused (p chains to record ls)."""
        self.b += 1
        prev = hashlib.sha256(self.payloads[ls]).digest() if ls in self.payloads else GENESIS_HASH
        return self.make("boot", n=n, prev=prev, fields={"ls": ls})

    def chain(
        self, count: int, kinds: tuple[str, ...] = ("hb", "rev", "meter", "evt")
    ) -> list[bytes]:
        return [self.make(kinds[i % len(kinds)]) for i in range(count)]


def write_config(
    path: Path, port: int, db: Path, *, create_db: bool = True, **sections: dict[str, Any]
) -> Path:
    """A gateway.toml tuned for tests: short batches and ack intervals (and the database,
    unless create_db is false or it exists: see write_gateway_config)."""
    ingest = {"batch_ms": 20, "ack_interval_ms": 50, **sections.pop("ingest", {})}
    return write_gateway_config(path, port, db, create_db=create_db, ingest=ingest, **sections)


def enrolled_gateway(
    tmp_path: Path, port: int, devs: list[Dev], *, db: Path | str | None = None, **sections: Any
) -> Path:
    """gateway.toml in tmp_path and its database (tmp_path/gateway.db, or ``db``: a path or
    an empty PostgreSQL database's URL), with every device enrolled (software tier)."""
    db = tmp_path / "gateway.db" if db is None else db
    if isinstance(db, str):  # PostgreSQL: write_config makes no database there
        create_gateway_database(db, sections.get("aggregate"))
    cfg = write_config(tmp_path / "gateway.toml", port, db, **sections)
    with Store(db) as store:
        for d in devs:
            store.enroll(d.key, "software")
    return cfg


def store_acks(db: Path) -> dict[str, int]:
    """Each device's ack as the store computes it."""
    with Store(db, readonly=True) as store:
        return store.acks()


class Mqtt:
    """A test client: publishes QoS 1 and follows every retained ack."""

    def __init__(
        self,
        port: int,
        client_id: str = "test-fleet",
        *,
        auth: tuple[str, str] | None = None,
        tls_ca: Path | None = None,
    ) -> None:
        self.acks: dict[str, int] = {}
        self.history: list[tuple[str, int]] = []
        self.on_ack: Callable[[str, int], None] | None = None
        self._lock = threading.Lock()
        self.connected = threading.Event()
        c = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
        )
        c.max_inflight_messages_set(1000)
        c.max_queued_messages_set(0)
        c.reconnect_delay_set(0.2, 1)
        c.on_connect = self._connect
        c.on_message = self._message
        if auth is not None:  # an account on a broker configured by `signet broker config`
            c.username_pw_set(*auth)
        if tls_ca is not None:
            c.tls_set(ca_certs=str(tls_ca))
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.client = c
        wait_until(self.connected.is_set, 10, "test client connection")

    def _connect(self, c: Any, u: Any, f: Any, rc: Any, p: Any) -> None:
        c.subscribe("signet/v1/+/ack", qos=1)
        self.connected.set()

    def _message(self, c: Any, u: Any, msg: Any) -> None:
        kid = msg.topic.split("/")[2]
        n = parse_ack(msg.payload)
        assert n is not None, f"ack payload not canonical: {msg.payload.hex()}"
        if self.on_ack is not None:
            self.on_ack(kid, n)
        with self._lock:
            self.history.append((kid, n))
            self.acks[kid] = max(n, self.acks.get(kid, 0))

    def publish(self, topic: str, payload: bytes, wait: bool = True) -> Any:
        info = self.client.publish(topic, payload, qos=1)
        if wait:
            info.wait_for_publish(10)
        return info

    def publish_all(self, items: list[tuple[str, bytes]]) -> None:
        infos = [self.client.publish(t, p, qos=1) for t, p in items]
        for info in infos:
            info.wait_for_publish(30)
            assert info.is_published()

    def wait_acks(self, expected: dict[str, int], timeout: float = 30) -> None:
        def done() -> bool:
            with self._lock:
                return all(self.acks.get(k, 0) >= v for k, v in expected.items())

        wait_until(done, timeout, f"acks {expected} (have {self.acks})")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
