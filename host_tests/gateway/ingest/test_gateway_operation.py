"""Operating the gateway process: one gateway per database, signals to its process group,
set-up errors, and what it logs about its broker connection."""

from __future__ import annotations

from pathlib import Path

import pytest

from kit.gatewaykit import Dev, Mqtt, write_config
from signet_gateway.ingest.instance_lock import lock_path
from signet_gateway.store.sqlite import Store
from signet_tools.runners.gateway_process import GatewayProcess
from signet_tools.runners.mosquitto import Mosquitto


@pytest.fixture
def broker(tmp_path: Path):
    b = Mosquitto(tmp_path / "broker").start()
    yield b
    b.stop()


@pytest.fixture
def procs():
    started: list[GatewayProcess] = []
    clients: list[Mqtt] = []
    yield started, clients
    for c in clients:
        c.close()
    for g in started:
        g.kill()


def _enrolled(tmp_path: Path, broker: Mosquitto, devs: list[Dev], **sections) -> Path:
    db = tmp_path / "gateway.db"
    cfg = write_config(tmp_path / "gateway.toml", broker.port, db, **sections)
    with Store(db) as store:
        for d in devs:
            store.enroll(d.key, "software")
    return cfg


@pytest.mark.timeout(90)
def test_second_gateway_on_a_database_refuses_and_a_killed_holder_blocks_nothing(
    tmp_path: Path, broker: Mosquitto, procs
) -> None:
    started, clients = procs
    dev = Dev(70)
    cfg = _enrolled(tmp_path, broker, [dev])
    first = GatewayProcess(cfg, tmp_path / "gw1.log").start()
    started.append(first)

    second = GatewayProcess(cfg, tmp_path / "gw2.log")
    started.append(second)
    second.start(wait=False)
    assert second.wait(30) == 2, second.tail()
    said = second.text()
    assert f"is in use by another gateway (pid {first.pid}; lock " in said
    assert "Traceback" not in said and "subscribed" not in said

    # The first one never noticed: no session takeover, it still stores and acks.
    client = Mqtt(broker.port)
    clients.append(client)
    client.publish_all([(dev.topic, r) for r in dev.chain(3)])
    client.wait_acks({dev.kid: 3})
    assert "disconnected from the broker" not in first.text()

    first.kill()  # SIGKILL: the lock file stays, the kernel released the lock
    assert lock_path(tmp_path / "gateway.db").exists()
    third = GatewayProcess(cfg, tmp_path / "gw3.log").start()
    started.append(third)
    client.publish_all([(dev.topic, r) for r in dev.chain(2)])
    client.wait_acks({dev.kid: 5})
    assert third.stop() == 0
