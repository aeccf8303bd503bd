"""The whole agent loses power at every write boundary of a short run.

A run: start (boot record), fourteen sales with a ref, heartbeats, publishing to
the scripted broker whose gateway stores and acks (so the journal is pruned and
the lease renewed). It is repeated with power cut at each write boundary (and
torn inside each write, see powercut.py); then the device reboots on the same
directory, the till retries every sale with its ref (it cannot know which ones
the cut left unanswered) and the agent runs until the gateway has caught up.
Checked each time: every record whose journal append returned before the cut
reached the gateway, each sale is stored exactly once and a retry of a journaled
sale was answered with its original n (the window of recent refs, refwindow.py,
is as crash-safe as the journal), no sequence number carries two different
payloads, the ack covers everything up to the last record (numbers skipped only
where a boot record declares them unused), every stored record verifies with
the gateway's Verifier, and the p chain links.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fwtests import fakeumqtt
from fwtests.agentkit import FakePlatform, make_config, signer
from kit.powercut import CutFiles, PowerCut, cut_points, record_boundaries
from signet.agent import Agent
from signet.fsio import Files
from signet.mqtt import UmqttTransport
from signet_gateway.verify.pubkeys import DevicePublicKey
from signet_gateway.verify.verifier import Verifier

VERIFIER = Verifier({signer().kid: DevicePublicKey.from_sec1(signer().public_key)})
CFG = make_config(
    journal={"segment_bytes": 2048, "segments": 4, "reserve_segments": 1},
    intervals={"heartbeat_s": 1, "loop_ms": 100},
    mqtt={"ack_wait_ms": 0},
)


SALES = 14


class TrackedAgent(Agent):
    """Remembers every n whose journal append returned (durable from then on), and the
    ref of each sale among them."""

    journaled: list[int]
    sold: dict[str, int]

    def __init__(self, *args):
        super().__init__(*args)
        make = self.recorder._make  # every record is signed and journaled here

        def tracked(kind, fields, reserve, keep, key=None):
            n = make(kind, fields, reserve, keep, key)
            if n:
                self.journaled.append(n)
                if "ref" in fields:
                    self.sold[fields["ref"]] = n
            return n

        self.recorder._make = tracked


class World:
    def __init__(self) -> None:
        self.platform = FakePlatform()
        self.gateway: fakeumqtt.Gateway | None = None
        self.retained: dict[str, bytes] = {}
        self.journaled: list[int] = []
        self.sold: dict[str, int] = {}  # ref -> n of every sale journaled

    def broker(self) -> fakeumqtt.Broker:
        # A new broker per boot (the old TCP connection died with the power);
        # the gateway's store and the retained ack outlive it.
        broker = fakeumqtt.Broker(self.platform)
        if self.gateway is None:
            self.gateway = broker.gateway
        broker.gateway = self.gateway
        self.gateway.broker = broker
        broker.retained = self.retained
        fakeumqtt.broker = broker
        return broker

    def agent(self, files: Files) -> TrackedAgent:
        self.broker()
        transport = UmqttTransport.from_config(CFG.mqtt, signer().device_id, fakeumqtt.MQTTClient)
        agent = TrackedAgent(CFG, self.platform, signer(), transport, files)
        agent.journaled = self.journaled
        agent.sold = self.sold
        return agent


def _step(world: World, agent: Agent, ms: int) -> None:
    end = world.platform.true_ms + ms
    while world.platform.true_ms < end:
        wait = agent.step()
        world.platform.advance(wait if wait > 0 else 1)


def _run(world: World, files: Files) -> None:
    agent = world.agent(files)
    agent.start()
    _step(world, agent, 600)
    for i in range(SALES):  # ~20 records: a second segment, so an ack prunes the first
        agent.record_revenue(100 + i, "EUR", "pulse", f"r{i}")
        _step(world, agent, 300)


def _recover(world: World, root: str) -> TrackedAgent:
    agent = world.agent(Files(root, sync=False))
    agent.start()
    before = dict(world.sold)
    for i in range(SALES):  # the till retries every sale: any answer may have been lost
        n = agent.record_revenue(100 + i, "EUR", "pulse", f"r{i}")
        if f"r{i}" in before:
            assert n == before[f"r{i}"], f"retry of r{i}: n={n}, journaled as {before[f'r{i}']}"
            assert agent.recorder.repeated
    end = world.platform.true_ms + 60000
    while (
        world.gateway.ack < agent.stats["last_n"]
        or agent.recorder.journal.acked < world.gateway.ack
    ):
        assert world.platform.true_ms < end, "recovery did not catch up"
        wait = agent.step()
        world.platform.advance(wait if wait > 0 else 1)
    return agent


def _check(world: World, agent: Agent) -> None:
    gw = world.gateway
    assert gw.equivocations == 0, "a sequence number was signed twice"
    for n in world.journaled:
        assert n in gw.records, f"journaled record {n} lost"
    assert gw.ack == agent.stats["last_n"]
    assert gw.check_chain() == len(gw.records)
    for n, raw in gw.raw.items():
        assert VERIFIER.verify(raw, signer().kid).seq == n
    refs = sorted(gw.fields(n)["ref"] for n in gw.records if gw.kinds[n] == "rev")
    assert refs == sorted(f"r{i}" for i in range(SALES)), "a sale lost or counted twice"


@pytest.mark.timeout(120)
def test_agent_survives_power_cut_at_every_write_boundary(tmp_path: Path) -> None:
    root = str(tmp_path / "dry")
    log = record_boundaries(lambda files: _run(World(), files), root)
    kinds = {b.kind for b in log}
    # records, lease and journal meta (atomic), pruned segments
    assert {"append", "tmp", "rename", "remove"} <= kinds, kinds
    points = list(cut_points(log))
    assert len(points) >= len(log) > 20
    print(f"{len(log)} write boundaries, {len(points)} cuts")
    for i, (cut_at, torn) in enumerate(points):
        root = str(tmp_path / f"cut{i}")
        world = World()
        with pytest.raises(PowerCut):
            _run(world, CutFiles(root, cut_at, torn))
        agent = _recover(world, root)
        try:
            _check(world, agent)
        except AssertionError as e:
            where = f"cut at boundary {cut_at} ({log[cut_at - 1]}), torn={torn}"
            raise AssertionError(f"{where}: {e}") from e
        shutil.rmtree(root)
