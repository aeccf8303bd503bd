"""Operating the gateway process: one gateway per database, signals to its process group,
set-up errors, and what it logs about its broker connection."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import pytest

from kit.gatewaykit import Dev, Mqtt, write_config
from signet_gateway.config import load
from signet_gateway.ingest.instance_lock import InstanceLock, lock_path
from signet_gateway.ingest.service import Gateway
from signet_gateway.store.sqlite import Store
from signet_tools.runners.gateway_process import GatewayProcess
from signet_tools.runners.mosquitto import Mosquitto, free_port
from signet_tools.runners.waiting import wait_until


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


@pytest.mark.timeout(120)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "systemd-stop"])
def test_a_signal_to_the_process_group_stops_it_as_sigterm_does(
    tmp_path: Path, broker: Mosquitto, procs, signum: int
) -> None:
    """Ctrl-C in a terminal sends SIGINT, and systemd's stop SIGTERM, to every process of
    the gateway, verifier processes included, here in the middle of a backlog drain: the
    gateway stops as on its own SIGTERM (drain what was taken, exit 0, no traceback) and
    nothing is lost."""
    started, clients = procs
    devs = [Dev(72 + i) for i in range(4)]
    cfg = _enrolled(tmp_path, broker, devs, ingest={"batch_max": 50})
    gw = GatewayProcess(cfg, tmp_path / "gw.log", new_session=True).start()
    started.append(gw)
    assert gw.stop() == 0  # its persistent session now queues the backlog
    client = Mqtt(broker.port)
    clients.append(client)
    per = 400
    client.publish_all([(d.topic, r) for i in range(per) for d in devs for r in [d.make("hb")]])

    gw.start()
    wait_until(lambda: sum(client.acks.values()) > 0, 30, "the first acks of the drain")
    gw.signal_group(signum)
    acked_at_signal = sum(client.acks.values())
    assert gw.wait(30) == 0
    assert acked_at_signal < per * len(devs), "the drain ended before the signal: test nothing"
    log = gw.text()
    for wrong in ("Traceback", "KeyboardInterrupt", "verifier process failed", "ERROR"):
        assert wrong not in log, log
    assert "stopping: no new messages" in log and "stopped: " in log

    again = GatewayProcess(cfg, tmp_path / "gw2.log").start()
    started.append(again)
    client.wait_acks({d.kid: per for d in devs}, 60)
    assert again.stop() == 0
    with Store(tmp_path / "gateway.db", readonly=True) as store:
        for d in devs:
            assert store.record_count(d.kid) == per and store.findings(d.kid)["verified"] == per


@pytest.mark.timeout(60)
def test_a_stop_requested_while_starting_is_honoured(tmp_path: Path) -> None:
    """SIGTERM or Ctrl-C can arrive while start() is still opening the database: the signal
    handler's request_stop() must work then, and the gateway stops without taking anything."""
    db = tmp_path / "gateway.db"
    cfg = load(write_config(tmp_path / "gateway.toml", free_port(), db))
    gateway = Gateway(cfg)
    gateway.request_stop()  # the handler ran before start() had made the intake
    gateway.start()
    assert gateway.intake.closed
    assert gateway.run(threading.Event()) == 0
    InstanceLock.acquire(db).release()  # stop() released it
