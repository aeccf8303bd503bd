"""Hostile MQTT traffic for the demo and the end-to-end tests.

Each :class:`Attack` is one message on one topic, with what must become of it: a refusal
by the gateway (``refused:<reason>`` in the findings table), a finding about a validly
signed record (``duplicate``, ``equivocation``), or, on a broker configured by `signet
broker config`, a refusal by the broker's ACL (``broker:not_authorized``: the PUBACK says
"Not authorized" and the gateway never sees it). Built from genuine records a virtual
device signed (tools/fleet/simulate.py captures them), so a forgery is a real record with one
change, exactly what an attacker on the broker could produce.

On a secured broker the attacker is realistic: with no account (anonymous, a wrong
password, a device nobody enrolled) it is refused at CONNECT (:class:`Intrusion`); with a
device's stolen account (:func:`stolen_account_attacks`) the ACL keeps it off every other
device's topics, and on the stolen device's own topics only the gateway can judge a record.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from signet import ec
from signet.builder import RecordBuilder
from signet.record import GENESIS_HASH
from signet.signer import SoftwareSigner
from signet_gateway.ingest.wire import ack_payload, ack_topic, rec_topic

ORDER = {"p256": ec.curve_by_name("p256").n, "secp256k1": ec.curve_by_name("secp256k1").n}
# What a secured broker makes of hostile input (expected outcomes beside the gateway's findings).
BROKER_ACL = "broker:not_authorized"  # a publish outside the account's ACL: PUBACK 0x87
BROKER_CONNECT = "broker:connect_refused"  # no account, or a wrong password: CONNACK refused


@dataclass(frozen=True)
class Attack:
    label: str  # what it is, for people
    topic: str
    payload: bytes
    expect: str  # the finding it must produce: "refused:<reason>", "duplicate", ...
    attributed: bool = True  # counted for the topic's device (else fleet-wide, kid '')
    retain: bool = False  # a status or an ack is published retained, as the real ones are

    @property
    def at_broker(self) -> bool:
        """Refused by the broker (never reaches the gateway)."""
        return self.expect.startswith("broker:")


@dataclass(frozen=True)
class Intrusion:
    """A CONNECT the broker must refuse: anonymous (username None) or a bad password."""

    label: str
    username: str | None
    password: str | None
    expect: str = BROKER_CONNECT


@dataclass(frozen=True)
class Broker:
    """Where the attacker connects: plain MQTT, or TLS checked against the broker's CA."""

    host: str
    port: int
    ca: Path | None = None


def _parts(raw: bytes) -> tuple[bytes, dict, bytes, bytes]:
    tag = cbor2.loads(raw)
    protected, unprotected, payload, sig = tag.value
    return protected, dict(unprotected), payload, sig


def _envelope(protected: bytes, unprotected: dict, payload: bytes, sig: bytes) -> bytes:
    return cbor2.dumps(cbor2.CBORTag(18, [protected, unprotected, payload, sig]))


def forged(raw: bytes) -> bytes:
    """The genuine record with its amount (or heartbeat interval) changed after signing."""
    protected, unprotected, payload, sig = _parts(raw)
    body = cbor2.loads(payload)
    if "am" in body:
        body["am"] = body["am"] * 100 + 99  # a 2.50 sale becomes 250.99
    elif "iv" in body:
        body["iv"] = body["iv"] * 30  # claim a much longer up interval
    else:
        body["u"] = body["u"] + 1
    return _envelope(protected, unprotected, cbor2.dumps(body, canonical=True), sig)


def high_s_twin(raw: bytes, curve: str) -> bytes:
    """Same record, signature s replaced by n - s: valid maths, refused by the low-S rule."""
    protected, unprotected, payload, sig = _parts(raw)
    n = ORDER[curve]
    s = int.from_bytes(sig[32:], "big")
    return _envelope(protected, unprotected, payload, sig[:32] + (n - s).to_bytes(32, "big"))


def equivocation(signer: SoftwareSigner, original: Any) -> bytes:
    """A second, different payload signed with the device's own key for an n it already used
    (what a cloned key or a restored flash image produces). ``original``: a simulate.Signed."""
    kind, fields = original.kind, dict(original.fields)
    if "am" in fields:
        fields["am"] += 1000
    elif "iv" in fields:
        fields["iv"] += 1
    else:
        kind, fields = "evt", {"ev": "cloned", "msg": "second payload for one n"}
    builder = RecordBuilder(signer)
    rec = builder.build(kind, original.n, original.b, original.u, original.t, GENESIS_HASH, fields)
    return bytes(rec[1])


def stranger_records(count: int) -> tuple[str, list[bytes]]:
    """Records signed by a key nobody enrolled: (its device id, records n = 1..count)."""
    signer = SoftwareSigner.generate("p256")
    builder = RecordBuilder(signer)
    now = time.time_ns() // 1_000_000
    out = []
    for n in range(1, count + 1):
        fields = {"am": 100 * n, "cur": "EUR", "src": "flood"}
        out.append(bytes(builder.build("rev", n, 1, n * 10, now, GENESIS_HASH, fields)[1]))
    return signer.device_id, out


def standard_attacks(
    victim: str,
    victim_curve: str,
    victim_records: Sequence[Any],
    other: str,
    flood: int = 20,
) -> list[Attack]:
    """The demo's set: one of each kind of hostile input, against `victim`.

    victim_records: records the victim signed (simulate.Signed), at least one ``rev``
    already acknowledged (so the replay is a duplicate, not the first copy).
    """
    rev = next(r for r in victim_records if r.kind == "rev")
    hb = next(r for r in victim_records if r.kind == "hb")
    stranger, flood_records = stranger_records(flood)
    attacks = [
        Attack("forged: sale amount raised after signing", rec_topic(victim), forged(rev.raw),
               "refused:bad_signature"),
        Attack("forged: heartbeat interval stretched", rec_topic(victim), forged(hb.raw),
               "refused:bad_signature"),
        Attack("high-S twin of a genuine signature", rec_topic(victim),
               high_s_twin(rev.raw, victim_curve), "refused:high_s"),
        Attack("replay of a genuine, stored record", rec_topic(victim), rev.raw, "duplicate"),
        Attack("genuine record moved to another device's topic", rec_topic(other), rev.raw,
               "refused:kid_mismatch"),
        Attack("garbage bytes", rec_topic(victim), b"\x00not a record" + os.urandom(16),
               "refused:malformed"),
        Attack("truncated record", rec_topic(victim), rev.raw[:-9], "refused:malformed"),
        Attack("oversized record (2 KiB)", rec_topic(victim), b"\xd2" + os.urandom(2047),
               "refused:too_large"),
        Attack("oversized batch (70 KiB)", rec_topic(victim), b"\x99\x01\x00" + bytes(70_000),
               "refused:too_large"),
        Attack("topic that names no device", "signet/v1/not-a-device/rec", rev.raw,
               "refused:bad_topic", attributed=False),
    ]  # fmt: skip
    attacks += [
        Attack(f"unknown device flooding ({flood} signed records)", rec_topic(stranger), raw,
               "refused:unknown_key", attributed=False)
        for raw in flood_records
    ]  # fmt: skip
    return attacks


def stolen_account_attacks(
    victim: str,
    victim_records: Sequence[Any],
    thief: str,
    thief_curve: str,
    thief_records: Sequence[Any],
) -> list[Attack]:
    """What an attacker holding device `thief`'s broker account (a compromised or cloned
    board, a leaked password) publishes, in that order: first `victim`'s attacks on the
    victim's topics, which the broker's ACL refuses; then, on the thief's own topics, the
    record-level attacks the broker cannot judge and the gateway refuses.

    victim_records, thief_records: records each device signed (simulate.Signed), with a
    ``rev`` and an ``hb``; the thief's ``rev`` already acknowledged (its replay is a
    duplicate, not the first copy).
    """
    v_rev = next(r for r in victim_records if r.kind == "rev")
    rev = next(r for r in thief_records if r.kind == "rev")
    hb = next(r for r in thief_records if r.kind == "hb")
    v_topic, v_status, topic = rec_topic(victim), f"signet/v1/{victim}/status", rec_topic(thief)
    return [
        # Speaking for the victim: the ACL grants the account its own topics only.
        Attack("forged sale on the victim's topic", v_topic, forged(v_rev.raw), BROKER_ACL),
        Attack("replay of the victim's record", v_topic, v_rev.raw, BROKER_ACL),
        Attack("the thief's own record on the victim's topic", v_topic, rev.raw, BROKER_ACL),
        Attack("garbage on the victim's topic", v_topic, b"\x00junk" + os.urandom(16), BROKER_ACL),
        Attack("'offline' on the victim's status", v_status, b"offline", BROKER_ACL, retain=True),
        # An ack would make the victim delete records from its journal before they are stored.
        Attack("forged ack for the victim", ack_topic(victim), ack_payload(10**6), BROKER_ACL,
               retain=True),
        Attack("a record on a topic that names no device", "signet/v1/not-a-device/rec",
               rev.raw, BROKER_ACL, attributed=False),
        # On its own topic: only the gateway can tell a record from a forgery.
        Attack("forged: sale amount raised after signing", topic, forged(rev.raw),
               "refused:bad_signature"),
        Attack("forged: heartbeat interval stretched", topic, forged(hb.raw),
               "refused:bad_signature"),
        Attack("high-S twin of a genuine signature", topic, high_s_twin(rev.raw, thief_curve),
               "refused:high_s"),
        Attack("replay of a genuine, stored record", topic, rev.raw, "duplicate"),
        Attack("the victim's record moved onto the thief's topic", topic, v_rev.raw,
               "refused:kid_mismatch"),
        Attack("garbage bytes", topic, b"\x00not a record" + os.urandom(16), "refused:malformed"),
        Attack("truncated record", topic, rev.raw[:-9], "refused:malformed"),
        Attack("oversized record (2 KiB)", topic, b"\xd2" + os.urandom(2047), "refused:too_large"),
        Attack("oversized batch (70 KiB)", topic, b"\x99\x01\x00" + bytes(70_000),
               "refused:too_large"),
    ]  # fmt: skip


def intrusions(thief: str) -> list[Intrusion]:
    """CONNECTs without a valid account: refused by the broker before any PUBLISH."""
    stranger = SoftwareSigner.generate("p256").device_id  # a key nobody enrolled
    return [
        Intrusion("anonymous client", None, None),
        Intrusion("the thief's account, wrong password", thief, "not-the-password"),
        Intrusion("a device nobody enrolled (no account)", stranger, "any-password"),
    ]


class _Session:
    """One MQTT v5 connection of the attacker: its CONNACK, its PUBACKs' reason codes.

    Mosquitto 2.0 may close a connection after refusing one of its publishes, so every
    message gets a connection of its own (sequential: the next one starts when the last
    has its answer, and on a broker where a client's id is its account each takes the
    account over from the one before, and from the real device)."""

    def __init__(
        self, broker: Broker, username: str | None, password: str | None, timeout: float
    ) -> None:
        self.connack: Any = None
        self.pubacks: dict[int, Any] = {}
        self.closed = threading.Event()
        self._changed = threading.Condition()
        self.timeout = timeout
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"attacker-{os.getpid()}-{os.urandom(3).hex()}",
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,  # a refused client stays out
        )
        if username is not None:
            c.username_pw_set(username, password)
        if broker.ca is not None:
            c.tls_set(ca_certs=str(broker.ca))
        c.on_connect = self._on_connect
        c.on_publish = self._on_publish
        c.on_disconnect = self._on_disconnect
        self.client = c
        try:
            c.connect(broker.host, broker.port, keepalive=10)
        except OSError:  # refused before MQTT (TLS): no CONNACK at all
            self.closed.set()
            return
        c.loop_start()
        self._wait(lambda: self.connack is not None or self.closed.is_set())

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def _on_connect(self, c: Any, u: Any, flags: Any, rc: Any, props: Any) -> None:
        self.connack = rc
        self._notify()

    def _on_publish(self, c: Any, u: Any, mid: int, rc: Any, props: Any) -> None:
        self.pubacks[mid] = rc
        self._notify()

    def _on_disconnect(self, *args: Any) -> None:
        self.closed.set()
        self._notify()

    def _wait(self, done: Any) -> None:
        with self._changed:
            self._changed.wait_for(done, self.timeout)

    @property
    def accepted(self) -> bool:
        return self.connack is not None and not self.connack.is_failure

    def answer(self) -> str:
        """The CONNACK's reason in words, or why there was none."""
        if self.connack is None:
            return "closed before CONNACK" if self.closed.is_set() else "no CONNACK"
        return str(self.connack)

    def publish(self, attack: Attack) -> str:
        """QoS 1; the PUBACK's reason in words (MQTT v5 says why a publish was refused)."""
        info = self.client.publish(attack.topic, attack.payload, qos=1, retain=attack.retain)
        self._wait(lambda: info.mid in self.pubacks or self.closed.is_set())
        code = self.pubacks.get(info.mid)
        return "closed without a PUBACK" if code is None else str(code)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def refused_answer(answer: str) -> bool:
    """Is a broker's answer (a CONNACK's or PUBACK's reason in words) a refusal?"""
    return answer not in ("Success", "No matching subscribers")


def try_intrusion(broker: Broker, intrusion: Intrusion, timeout: float = 10.0) -> str:
    """Attempt the CONNECT; the broker's answer in words ("Not authorized", ...)."""
    session = _Session(broker, intrusion.username, intrusion.password, timeout)
    session.close()
    return session.answer()


def publish_as(
    broker: Broker, username: str, password: str, attacks: Iterable[Attack], timeout: float = 10.0
) -> list[str]:
    """Publish each attack with an account's credentials, each on a connection of its own;
    the broker's answer to each in words: "Success" (passed on to the gateway), "Not
    authorized" (refused by the ACL), or why there was no answer."""
    answers = []
    for attack in attacks:
        session = _Session(broker, username, password, timeout)
        try:
            if session.accepted:
                answers.append(session.publish(attack))
            else:
                answers.append(f"CONNECT refused: {session.answer()}")
        finally:
            session.close()
    return answers


def publish(
    host: str, port: int, messages: Iterable[tuple[str, bytes]], timeout: float = 10.0
) -> int:
    """Publish (topic, payload) pairs at QoS 1 from a throw-away client; returns how many the
    broker acknowledged within the timeout."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"attacker-{os.getpid()}")
    client.connect(host, port, keepalive=10)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        deadline = time.monotonic() + timeout
        done = 0
        for info in infos:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            info.wait_for_publish(remaining)
            done += info.is_published()
        return done
    finally:
        client.disconnect()
        client.loop_stop()


def expected_counts(attacks: Iterable[Attack]) -> dict[str, int]:
    out: dict[str, int] = {}
    for a in attacks:
        out[a.expect] = out.get(a.expect, 0) + 1
    return out
