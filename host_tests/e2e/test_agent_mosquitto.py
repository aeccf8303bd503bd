"""End to end on CPython: several `signet agent run` processes, a real Mosquitto that is
stopped and restarted mid-run, one agent SIGKILLed and restarted, and a test subscriber
standing in for the gateway (verifies with the gateway's Verifier, stores, publishes
the retained ack). Every signed record must arrive, in order per device, with no sequence
reused and the hash chain intact across every restart.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cbor2
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from kit.agentproc import AgentProcess
from signet.fsio import Files
from signet.journal import Journal
from signet_gateway.verify.refusals import Refused
from signet_gateway.verify.verifier import VerifiedRecord, Verifier
from signet_tools.pi.local_socket import request
from signet_tools.records import keystore
from signet_tools.runners.mosquitto import Mosquitto
from signet_tools.runners.waiting import wait_until

pytestmark = pytest.mark.timeout(120)

DEVICES = 3
DEADLINE_S = 25.0
ZERO = bytes(32)


def wait_for(cond: Callable[[], bool], what: str, deadline_s: float = DEADLINE_S) -> None:
    wait_until(cond, deadline_s, what)


@dataclass
class DeviceLog:
    stored: dict[int, VerifiedRecord] = field(default_factory=dict)
    first_arrival: list[int] = field(default_factory=list)  # n, in order of first arrival
    equivocations: list[int] = field(default_factory=list)
    ack: int = 0


class FakeGateway:
    """Subscribes to signet/v1/+/rec, verifies every record, stores it in memory, acks."""

    def __init__(self, port: int, keys: dict[bytes, Any]) -> None:
        self.verifier = Verifier(keys)
        self.devices: dict[str, DeviceLog] = {kid.hex(): DeviceLog() for kid in keys}
        self.refused: list[str] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="fake-gateway", clean_session=False
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.05, 0.5)
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, *args: Any) -> None:
        client.subscribe("signet/v1/+/rec", qos=1)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        kid = msg.topic.split("/")[2]
        data = bytes(msg.payload)
        elements = [data] if data[:1] == b"\xd2" else [bytes(x) for x in cbor2.loads(data)]
        with self.lock:
            log = self.devices[kid]
            for raw in elements:
                try:
                    rec = self.verifier.verify(raw, expected_kid=kid)
                except Refused as exc:
                    self.refused.append(f"{kid}: {exc.reason}: {exc.detail}")
                    continue
                old = log.stored.get(rec.seq)
                if old is None:
                    log.stored[rec.seq] = rec
                    log.first_arrival.append(rec.seq)
                elif old.payload_bytes != rec.payload_bytes:
                    log.equivocations.append(rec.seq)
            ack = self._ack(log)
            if ack > log.ack:
                log.ack = ack
                client.publish(f"signet/v1/{kid}/ack", cbor2.dumps({"n": ack}), qos=1, retain=True)

    @staticmethod
    def _ack(log: DeviceLog) -> int:
        """PROTOCOL 6.5: every n in 1..A stored or declared unused by a stored boot record."""
        a = log.ack
        boots = [r for r in log.stored.values() if r.kind == "boot"]
        while True:
            if a + 1 in log.stored:
                a += 1
                continue
            skip = [b.seq - 1 for b in boots if b.payload["ls"] < a + 1 < b.seq]
            if not skip:
                return a
            a = skip[0]

    def snapshot(self, kid: str) -> DeviceLog:
        with self.lock:
            log = self.devices[kid]
            return DeviceLog(
                dict(log.stored), list(log.first_arrival), list(log.equivocations), log.ack
            )


class AgentProc(AgentProcess):
    """An agent process that remembers what it was asked to record (n -> (amount, ref))."""

    def __init__(self, name: str, workdir: Path, broker_port: int, curve: str) -> None:
        super().__init__(workdir, broker_port, mqtt={"backoff_max_ms": 800, "ack_timeout_s": 2},
                         curve=curve)  # fmt: skip
        self.name = name
        self.recorded: dict[int, tuple[int, str]] = {}

    def record(self, amount: int) -> int:
        ref = f"{self.name}-{amount}"
        answer = request(
            self.socket,
            {"kind": "rev", "amount": amount, "currency": "EUR", "ref": ref},
            timeout=10,
        )
        assert answer["ok"], answer
        self.recorded[answer["n"]] = (amount, ref)
        return answer["n"]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[Mosquitto, FakeGateway, list[AgentProc]]]:
    broker = Mosquitto(tmp_path / "mosq").start()
    agents: list[AgentProc] = []
    keys = {}
    for i in range(DEVICES):
        agent = AgentProc(
            f"dev{i}", tmp_path / f"dev{i}", broker.port, "p256" if i % 2 == 0 else "secp256k1"
        )
        key = keystore.load_pem(agent.pubkey)
        keys[key.kid] = key
        agents.append(agent)
    gateway = FakeGateway(broker.port, keys)
    try:
        yield broker, gateway, agents
    finally:
        for a in agents:
            a.kill()
        gateway.close()
        broker.stop()


def feed(agents: list[AgentProc], count: int, start: int) -> None:
    for k in range(count):
        for a in agents:
            a.record(start + k)


def all_recorded_stored(gateway: FakeGateway, agents: list[AgentProc]) -> bool:
    return all(set(a.recorded) <= set(gateway.snapshot(a.kid).stored) for a in agents)


def test_agents_through_broker_restart_and_kill(
    rig: tuple[Mosquitto, FakeGateway, list[AgentProc]],
) -> None:
    broker, gateway, agents = rig
    for a in agents:
        a.start()

    # 1. live traffic
    feed(agents, 5, 100)
    wait_for(lambda: all_recorded_stored(gateway, agents), "live records stored")

    # 2. the broker goes away: records are journaled, not lost
    broker.stop()
    wait_for(lambda: not any(a.stats()["connected"] for a in agents), "agents see the outage")
    feed(agents, 5, 200)
    assert not any(
        n in gateway.snapshot(a.kid).stored
        for a in agents
        for n in a.recorded
        if a.recorded[n][0] >= 200
    )
    broker.start()
    wait_for(lambda: all(a.stats()["connects"] >= 2 for a in agents), "agents reconnect")
    wait_for(lambda: all_recorded_stored(gateway, agents), "outage backlog caught up")

    # 3. one agent is killed (no clean stop) while it has unsent records, and restarted
    victim = agents[0]
    broker.stop()
    feed([victim], 3, 300)
    killed_at = victim.stats()["last_n"]
    victim.kill()
    broker.start()
    victim.start()
    feed(agents, 3, 400)
    wait_for(lambda: all_recorded_stored(gateway, agents), "records from before the kill")

    # 4. quiesce: everything signed so far is acked, then stop cleanly
    targets = {a.kid: a.stats()["last_n"] for a in agents}
    wait_for(
        lambda: all(a.stats()["acked"] >= targets[a.kid] for a in agents),
        "agents see acks for all they signed",
    )
    for a in agents:
        assert a.stop() == 0, a.tail(50)

    assert gateway.refused == []
    for a in agents:
        log = gateway.snapshot(a.kid)
        recs = [log.stored[n] for n in sorted(log.stored)]
        # every revenue record the socket confirmed arrived, intact
        for n, (amount, ref) in a.recorded.items():
            assert log.stored[n].kind == "rev"
            assert (log.stored[n].payload["am"], log.stored[n].payload["ref"]) == (amount, ref)
        # in order per device, no sequence reused with different content
        assert log.first_arrival == sorted(log.first_arrival), a.name
        assert log.equivocations == []
        # the chain: p links, skips only at boot records (declared by ls), boots count up
        assert recs[0].seq == 1 and recs[0].kind == "boot" and recs[0].prev_hash == ZERO
        boots = [recs[0]]
        for prev, rec in itertools.pairwise(recs):
            assert rec.prev_hash == prev.payload_hash, f"{a.name}: chain broken at n={rec.seq}"
            if rec.kind == "boot":
                assert rec.payload["ls"] == prev.seq
                assert rec.payload["b"] > prev.payload["b"]
                boots.append(rec)
            else:
                assert rec.seq == prev.seq + 1, f"{a.name}: gap before n={rec.seq}"
                assert rec.payload["b"] == prev.payload["b"]
        # compare with the agent's own journal: nothing journaled is missing at the gateway
        journal = Journal(Files(str(a.journal)))
        journal.open()
        last_n, last_hash = journal.last()
        pending = {n for n, _ in journal.pending()}
        assert journal.acked <= log.ack
        stored = set(log.stored)
        unused = {m for b in boots for m in range(b.payload["ls"] + 1, b.seq)}
        for m in range(1, last_n + 1):
            assert m in stored or m in unused or m in pending, f"{a.name}: n={m} lost"
        if last_n in log.stored:
            assert log.stored[last_n].payload_hash == last_hash
        expected_rc = ["power_on"] + (["unknown"] if a is victim else [])
        assert [b.payload["rc"] for b in boots] == expected_rc
        if a is victim:
            assert boots[1].payload["ls"] >= killed_at  # nothing signed before the kill reused
        # the clean stop left its marker: the next start will report rc=soft
        assert (a.journal / "clean-stop").exists()
        assert "stopped cleanly" in a.tail(50)
    assert os.path.exists(broker.log)
