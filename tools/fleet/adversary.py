"""Hostile MQTT traffic for the demo and the end-to-end tests.

Each :class:`Attack` is one message on one topic, with what the gateway must make of it:
a refusal reason (``refused:<reason>`` in the findings table) or a finding about a validly
signed record (``duplicate``, ``equivocation``). Built from genuine records a virtual
device signed (tools/fleet/simulate.py captures them), so a forgery is a real record with one
change, exactly what an attacker on the broker could produce.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import cbor2
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from signet import ec
from signet.builder import RecordBuilder
from signet.record import GENESIS_HASH
from signet.signer import SoftwareSigner
from signet_gateway.ingest.wire import rec_topic

ORDER = {"p256": ec.curve_by_name("p256").n, "secp256k1": ec.curve_by_name("secp256k1").n}


@dataclass(frozen=True)
class Attack:
    label: str  # what it is, for people
    topic: str
    payload: bytes
    expect: str  # the finding it must produce: "refused:<reason>", "duplicate", ...
    attributed: bool = True  # counted for the topic's device (else fleet-wide, kid '')


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
