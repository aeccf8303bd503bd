"""End to end on PostgreSQL: `signet gateway run` with `[store] url`, a real Mosquitto, a
virtual fleet running the real agent code (tools/fleet/simulate.py: devices enrolled while
the gateway runs, a reboot, two outages), then `signet report` against the simulator's
ground truth: equal, every signed record stored once, nothing missing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from signet_gateway.store.sqlite import Store
from signet_tools.fleet import simulate
from signet_tools.runners.gateway_process import (
    GatewayProcess,
    create_gateway_database,
    write_gateway_config,
)
from signet_tools.runners.mosquitto import Mosquitto
from signet_tools.runners.postgres import Postgres

SIGNET = str(Path(sys.executable).parent / "signet")


@pytest.mark.timeout(150)
def test_gateway_on_postgresql_reports_the_ground_truth(
    tmp_path: Path, broker: Mosquitto, pg_url: str, pg_cluster: Postgres
) -> None:
    create_gateway_database(pg_url, {"hb_tolerance": 0.1})  # `signet db init`
    config = write_gateway_config(
        tmp_path / "gateway.toml", broker.port, pg_url, aggregate={"hb_tolerance": 0.1}
    )
    gateway = GatewayProcess(config, tmp_path / "gateway.log")
    try:
        gateway.start()
        out = tmp_path / "fleet"
        sim = subprocess.run(
            [SIGNET, "simulate", "--devices", "4", "--duration", "10", "--rate", "60",
             "--outage", "3+3:2", "--reboots", "1", "--heartbeat", "1", "--seed", "11",
             "--broker", f"127.0.0.1:{broker.port}", "--gateway-config", str(config),
             "--out", str(out)],
            capture_output=True, text=True, timeout=100,
        )  # fmt: skip
        assert sim.returncode == 0, sim.stdout + sim.stderr + gateway.tail()
        assert "every device's journal is acknowledged" in sim.stdout
        assert gateway.stop() == 0
    finally:
        gateway.kill()
    log = gateway.log.read_text()
    assert pg_cluster.password not in log
    assert "database postgresql://" in log  # the URL it ran on, its password redacted
    truth = json.loads((out / "truth.json").read_text())
    rep = subprocess.run(
        [SIGNET, "report", "--config", str(config), "--format", "json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert rep.returncode == 0, rep.stderr
    assert simulate.compare(truth, json.loads(rep.stdout)) == []
    assert simulate.stored_check(truth, pg_url) == []
    with Store(pg_url, readonly=True) as store:
        for dev in truth["devices"]:
            # Each signed record stored as new exactly once.
            assert store.findings(dev["kid"]).get("verified") == dev["records"], dev["name"]
    # The run was not trivial: a reboot, two devices that lost their link.
    assert truth["totals"]["reboots"] == 1
    assert sum(1 for d in truth["devices"] if d["outages"]) == 2
