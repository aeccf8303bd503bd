"""End to end with several gateway workers: two and three `signet gateway run --worker NAME`
processes on one MQTT v5 shared subscription ([mqtt] shared_group) and one PostgreSQL
store, a virtual fleet running the real agent code (tools/fleet/simulate.py) with reboots,
network outages, duplicates, records delivered out of order and an equivocation; one worker
is killed with SIGKILL mid-run and restarted.

- the MCR report equals the simulator's ground truth exactly, every signed record stored
  once, nothing missing;
- no device's ack ever exceeded what was stored: every ack the broker carried during the
  run (a client follows the retained acks) covers records 1..ack that are stored or
  declared unused;
- each worker took a share of the records (the subscription was shared, not copied).

Every wait polls with a deadline.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kit.gatewaykit import Mqtt
from signet_gateway.store.sqlite import Store
from signet_tools.fleet import adversary, simulate
from signet_tools.runners.gateway_process import (
    SUBSCRIBED,
    GatewayProcess,
    create_gateway_database,
    write_gateway_config,
)
from signet_tools.runners.mosquitto import Mosquitto

SIGNET = str(Path(sys.executable).parent / "signet")


@pytest.fixture
def workers() -> Iterator[list[GatewayProcess]]:
    started: list[GatewayProcess] = []
    yield started
    for w in started:
        w.kill()


def _ack_overreach(db: str, observed: list[tuple[str, int]]) -> list[str]:
    """Observed acks (kid, n) that cover a record neither stored nor declared unused."""
    problems = []
    with Store(db, readonly=True) as store:
        for kid in sorted({k for k, _ in observed}):
            covered = {r.n for r in store.records(kid)}
            for lo, hi in store.unused_ranges(kid):
                covered.update(range(lo, hi + 1))
            top = max(n for k, n in observed if k == kid)
            gaps = set(range(1, top + 1)) - covered
            if gaps:
                problems.append(f"{kid}: ack {top} observed, records {sorted(gaps)[:5]} not stored")
    return problems


@pytest.mark.timeout(150)
@pytest.mark.parametrize("count", [2, 3], ids=["two-workers", "three-workers"])
def test_workers_on_one_store_report_the_ground_truth_through_a_worker_kill(
    tmp_path: Path, broker: Mosquitto, pg_url: str, workers: list[GatewayProcess], count: int
) -> None:
    create_gateway_database(pg_url)
    config = write_gateway_config(
        tmp_path / "gateway.toml",
        broker.port,
        pg_url,
        mqtt={"client_id": "signet-gw", "shared_group": "signet"},
        ingest={"batch_ms": 20, "ack_interval_ms": 50},
        aggregate={"hb_tolerance": 0.1},
    )
    params = simulate.FleetParams(
        devices=6,
        duration_s=10.0,
        broker=("127.0.0.1", broker.port),
        out=tmp_path / "fleet",
        db=pg_url,  # type: ignore[arg-type]  # the store opens a URL as well as a path
        rate_per_min=120.0,
        heartbeat_s=1,
        outages=[simulate.OutageSpec(2.0, 2.0, 3)],
        reboots=2,
        seed=14,
        drain_timeout_s=45.0,
    )
    fleet = simulate.Fleet(params)
    fleet.create()
    for i in range(1, count + 1):
        workers.append(GatewayProcess(config, tmp_path / f"worker-{i}.log", worker=str(i)))
        workers[-1].start()
    watcher = Mqtt(broker.port, client_id="ack-watcher")  # every retained ack, as it changes
    victim = fleet.devices[-1]  # not in the outage (the first three devices are)
    twin_of: list[simulate.VirtualDevice] = []  # the device that equivocated
    done: list[str] = []
    replayed: list[int] = []

    def kill() -> None:
        workers[0].kill()  # SIGKILL: no drain, no commit of what it holds
        done.append("killed")

    def restart() -> None:
        workers[0].start(wait=False)
        done.append("restarted")

    def replay_out_of_order() -> None:
        # The victim's acknowledged records again, newest first: duplicates for certain
        # (a record not yet acknowledged might be stored from the replay, and then never
        # sent by the device, which prunes what is acknowledged), in reverse order.
        acked = watcher.acks.get(victim.kid, 0)
        if replayed or acked < 4:  # done, or too little acknowledged yet (a loaded machine)
            return
        again = [r for r in victim.records if r.n <= acked][-8:]
        replay = [(adversary.rec_topic(victim.kid), r.raw) for r in reversed(again)]
        replayed.append(adversary.publish("127.0.0.1", broker.port, replay))
        done.append("replayed")

    def equivocate() -> None:
        # A second payload for an n the gateway stored (acknowledged, so stored), from the
        # first device with an ack: on a loaded machine a device in the outage or in the
        # killed worker's share may have none yet, hence several tries.
        if twin_of:
            return
        for dev in fleet.devices:
            acked = watcher.acks.get(dev.kid, 0)
            if dev is not victim and dev.signer is not None and acked:
                original = next(r for r in reversed(dev.records) if r.n <= acked)
                twin = adversary.equivocation(dev.signer, original)
                adversary.publish("127.0.0.1", broker.port, [(adversary.rec_topic(dev.kid), twin)])
                twin_of.append(dev)
                return

    hooks = [(3.5, kill), (5.0, restart)]
    hooks += [(at, replay_out_of_order) for at in (3.0, 4.5, 6.0, 7.0)]
    hooks += [(at, equivocate) for at in (6.5, 7.5, 8.5, 9.5)]
    try:
        assert fleet.run(hooks), "not every device was acknowledged up to its last record"
    finally:
        observed = list(watcher.history)
        watcher.close()
    assert sorted(done) == ["killed", "replayed", "restarted"], done
    assert done.index("killed") < done.index("restarted")
    assert twin_of, "no device had an ack to equivocate on"
    assert replayed[0] >= 4, replayed
    workers[0].wait_log(SUBSCRIBED, 30)
    assert "session present: yes" in workers[0].text()  # it came back to its own session
    for w in workers:
        assert w.stop() == 0, w.tail()

    truth = fleet.truth()
    assert truth["totals"]["reboots"] == 2
    assert sum(1 for d in truth["devices"] if d["outages"]) == 3
    assert simulate.stored_check(truth, pg_url) == []  # type: ignore[arg-type]
    rep = subprocess.run(
        [SIGNET, "report", "--config", str(config), "--format", "json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert rep.returncode == 0, rep.stderr
    report: dict[str, Any] = json.loads(rep.stdout)
    assert simulate.compare(truth, report) == []
    with Store(pg_url, readonly=True) as store:
        for dev in truth["devices"]:
            # Each signed record stored as new exactly once, whichever worker took it.
            assert store.findings(dev["kid"]).get("verified") == dev["records"], dev["name"]
        assert store.findings(victim.kid).get("duplicate", 0) >= replayed[0]
        assert store.findings(twin_of[0].kid).get("equivocation") == 1
        assert store.device(twin_of[0].kid).flagged  # type: ignore[union-attr]
    by_kid = {d["device"]: d for d in report["devices"]}
    assert by_kid[twin_of[0].kid]["integrity"]["equivocations"] == 1

    assert observed, "no ack seen during the run"
    assert _ack_overreach(pg_url, observed) == []
    last = max(dev["last_n"] for dev in truth["devices"] if dev["kid"] == victim.kid)
    assert _ack_overreach(pg_url, [(victim.kid, last + 1)])  # the check can see an overreach
    # Shared, not copied: every worker stored some of the records.
    for w in workers:
        log = w.log.read_text()
        assert "records shared by group 'signet'" in log
        stored = re.findall(r"stopped: \d+ messages received, (\d+) records stored", log)
        assert sum(map(int, stored)) > 0, w.log
