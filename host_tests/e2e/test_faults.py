"""Fault injection: faults never stop the service, and retries never count a sale twice.

Mosquitto, the gateway (`signet gateway run`) and an agent (`signet agent run`, with its
local socket) run as processes. A till (kit/till.py) sells through `signet agent record rev
--ref UNIQUE` every 100-200 ms and follows the exit-status contract of docs/AGENT.md (3:
retry; 4: retry with the same ref; 1: a refusal). Meanwhile kit/faults.py injects, in a
seeded random order at random moments, each of:

- the broker: SIGKILL and restart, SIGTERM and restart, SIGSTOP (hung, some hangs longer than
  2.5 keepalives) and SIGCONT;
- the gateway: kill -9 and restart; its store full (another writer takes the database's
  space up to `[store] max_size_mb`) until the space is freed or the cap raised in its
  config file;
- the agent: kill -9 and restart, at a random moment and aimed at a sale in flight (the
  moment its journal changes while `agent record` runs: the sale is journaled, its answer
  never sent, and the till's retry with the same ref must not count it twice).

Each fault outside the agent lasts until the agent has taken a sale meanwhile and the
gateway's readiness names the fault (`broker not connected`, `store full`; a hang only when
it outlasts the keepalives, which the agent must notice too); after each, the agent's ack
is at most the store's (nothing acknowledged that is not committed). At the end, the
gateway ready again, and from its database (payloads decoded, sales matched by ref):

- every sale the till saw accepted (exit 0) is stored exactly once, at the n it was told,
  including those whose first attempts had an unknown outcome; no refused sale is stored;
- no process exited on its own: only those the test killed, and the gateway and the agent
  stop with 0 on SIGTERM at the end;
- no sequence number was reused (no equivocation, no evidence, device not flagged), the
  chain is intact and nothing is missing;
- the device's retained ack on the broker equals the store's ack.

It asserts outcomes with deadlines, never timing. Settings (environment):

- SIGNET_FAULT_SECONDS: how long faults are injected (default 60; e.g. 900 for a soak);
- SIGNET_FAULT_SEED: replay a run's schedule (a fresh seed otherwise; printed at the start
  and in every failure);
- SIGNET_FAULTS: only these faults, comma-separated names of kit.faults.FAULTS (to chase
  one).
"""

from __future__ import annotations

import math
import os
import random
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kit.agentproc import AgentProcess
from kit.faults import FAULTS, Site, StoreCap, run_faults
from kit.gatewaykit import Mqtt, write_config
from kit.store_audit import integrity_problems, sale_problems, store_ack, stored_sales
from kit.till import SIGNET, Till
from signet_tools.runners.gateway_process import GatewayProcess
from signet_tools.runners.mosquitto import Mosquitto
from signet_tools.runners.waiting import wait_until

DURATION_S = float(os.environ.get("SIGNET_FAULT_SECONDS", "60"))
KEEPALIVE_S = 5  # the gateway's and the agent's (the smallest either accepts)
# The database grows ~0.3 MiB a minute here: a cap it never reaches by itself in the run.
STORE_CAP_MB = 2 + math.ceil(DURATION_S / 60)

pytestmark = pytest.mark.timeout(int(DURATION_S) + 420)


@pytest.fixture
def seed() -> int:
    value = int(os.environ.get("SIGNET_FAULT_SEED") or secrets.randbits(32))
    print(f"fault injection seed {value} (replay: SIGNET_FAULT_SEED={value})", flush=True)
    return value


@pytest.fixture
def site(
    tmp_path: Path, broker: Mosquitto, procs: tuple[list[GatewayProcess], list[Mqtt]], seed: int
) -> Iterator[Site]:
    """The three processes running, the agent enrolled, the till selling."""
    gateways, _clients = procs
    agent = AgentProcess(
        tmp_path / "agent",
        broker.port,
        mqtt={"keepalive_s": KEEPALIVE_S},
        # 256 KiB: a gateway outage with its reconnect backoff never fills it.
        journal={"segments": 64},
        intervals={"heartbeat_s": 2},
    )
    db = tmp_path / "gateway.db"
    config = write_config(
        tmp_path / "gateway.toml", broker.port, db,
        mqtt={"keepalive_s": KEEPALIVE_S}, store={"max_size_mb": STORE_CAP_MB},
    )  # fmt: skip
    enroll = subprocess.run(
        [SIGNET, "enroll", "--pubkey", str(agent.pubkey), "--tier", "software",
         "--name", "till-1", "--config", str(config)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert enroll.returncode == 0, enroll.stderr
    gateway = GatewayProcess(config, tmp_path / "gateway.log")
    gateways.append(gateway)
    gateway.start(timeout=60)
    agent.start()
    till = Till(agent.socket, random.Random(seed ^ 0x5A1E), prefix=f"s{seed}")
    try:
        store = StoreCap(config, db, STORE_CAP_MB)
        yield Site(broker, gateway, agent, till, store, broker_keepalive_s=KEEPALIVE_S)
    finally:
        till.abandon()
        agent.kill()


def test_faults_never_stop_the_service_and_retries_never_count_twice(
    site: Site, procs: tuple[list[GatewayProcess], list[Mqtt]], seed: int
) -> None:
    db = site.store.db
    kid = site.agent.kid
    chosen = {n for n in os.environ.get("SIGNET_FAULTS", "").split(",") if n}
    assert chosen <= set(FAULTS), f"SIGNET_FAULTS: unknown {sorted(chosen - set(FAULTS))}"
    faults = {n: f for n, f in FAULTS.items() if n in chosen or not chosen}
    site.till.start()
    counts = run_faults(site, faults, random.Random(seed), DURATION_S)
    site.note(f"faults injected: {counts}")

    # The till's last sale runs to its outcome; then every record the agent signed is acked.
    site.till.stop(timeout=180)
    site.check()
    sales = site.till.sales()

    def all_acked() -> bool:
        site.check()
        stats = site.agent.stats()
        return bool(stats["acked"] == stats["last_n"])

    wait_until(all_acked, 120, f"the agent's journal acknowledged in full (seed {seed})")
    assert site.agent.stop() == 0, site.agent.tail()
    site.down.add("agent")
    journal = site.agent.open_journal()
    last_n, _hash = journal.last()

    # The retained ack a device gets when it connects is the store's ack.
    watcher = Mqtt(site.broker.port, client_id="fault-audit")
    procs[1].append(watcher)
    wait_until(
        lambda: watcher.acks.get(kid) == store_ack(db, kid), 30,
        f"the retained ack {watcher.acks.get(kid)} to equal the store's {store_ack(db, kid)}",
    )  # fmt: skip
    wait_until(lambda: site.gateway_problems() == [], 60, "the gateway ready again")
    assert site.gateway.stop() == 0, site.gateway.tail()
    site.down.add("gateway")

    ack = store_ack(db, kid)
    # Nothing pruned that is not stored, nothing acknowledged that was not signed (a
    # heartbeat signed just before the stop may still be pending in the journal).
    assert journal.acked <= ack <= last_n, (journal.acked, ack, last_n)
    problems = sale_problems(sales, stored_sales(db, kid)) + integrity_problems(db, kid)
    summary = (
        f"seed {seed}: {len(sales)} sales, {sum(s.outcome == 'accepted' for s in sales)}"
        f" accepted, {sum(s.outcome == 'refused' for s in sales)} refused,"
        f" {sum(s.retried_after_unknown for s in sales)} retried after an unknown outcome"
        f" ({sum(s.repeated for s in sales)} of them found already recorded),"
        f" {sum(len(s.attempts) > 1 for s in sales)} retried; faults {counts}"
    )
    print(summary)
    assert problems == [], summary + "\n" + "\n".join(problems) + "\n" + "\n".join(site.history)
    assert all(counts.values()) and sales  # the run did what it says
