"""Several workers on an MQTT v5 shared subscription ([mqtt] shared_group, --worker NAME):
the configuration, the refusals that keep two workers off one client id, and what a real
Mosquitto does with the group's messages when a member stops or dies.

The broker tests give each worker a SQLite store of its own (one SQLite database takes one
gateway): what each store holds is then exactly what the broker gave that worker.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kit.gatewaykit import Dev, Mqtt, write_config
from signet_gateway.config import ConfigError, for_worker, parse
from signet_gateway.store.sqlite import Store
from signet_tools.runners.gateway_process import GatewayProcess
from signet_tools.runners.mosquitto import Mosquitto
from signet_tools.runners.waiting import wait_until

GROUP = {"shared_group": "signet"}


def test_shared_group_is_off_by_default_and_one_topic_level() -> None:
    assert parse({}).mqtt.shared_group is None
    assert parse({"mqtt": {"shared_group": "site-1"}}).mqtt.shared_group == "site-1"
    for bad in ("a/b", "+", "#", "", "a b", "x" * 65):
        with pytest.raises(ConfigError, match=r"^mqtt\.shared_group: must be"):
            parse({"mqtt": {"shared_group": bad}})


def test_each_worker_gets_a_client_id_of_its_own_and_a_nameless_one_is_refused() -> None:
    shared = parse({"mqtt": {"client_id": "gw", **GROUP}})
    assert for_worker(shared, "2").mqtt.client_id == "gw-2"
    assert for_worker(shared, "eu-1").mqtt.client_id == "gw-eu-1"
    with pytest.raises(ConfigError, match=r"^mqtt\.shared_group is set: name this worker"):
        for_worker(shared, None)
    with pytest.raises(ConfigError, match=r"^--worker: must be at most 128 bytes"):
        for_worker(shared, "a/b")
    alone = parse({"mqtt": {"client_id": "gw"}})
    assert for_worker(alone, None) is alone
    with pytest.raises(ConfigError, match=r"^--worker 2: mqtt\.shared_group is not set"):
        for_worker(alone, "2")


@pytest.mark.parametrize(
    ("mqtt", "worker", "said"),
    [
        (GROUP, None, "signet: error: mqtt.shared_group is set: name this worker"),
        ({}, "2", "signet: error: --worker 2: mqtt.shared_group is not set"),
    ],
    ids=["group-without-worker", "worker-without-group"],
)
def test_gateway_run_refuses_in_one_line_with_exit_2(
    tmp_path: Path, mqtt: dict[str, str], worker: str | None, said: str
) -> None:
    cfg = write_config(tmp_path / "gateway.toml", 1, tmp_path / "gateway.db", mqtt=mqtt)
    args = [sys.executable, "-m", "signet_tools", "gateway", "run", "--config", str(cfg)]
    if worker is not None:
        args += ["--worker", worker]
    result = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(said), result.stderr
    assert "Traceback" not in result.stderr


def _worker(tmp_path: Path, port: int, name: str, devs: list[Dev], procs) -> GatewayProcess:
    """A worker of group 'signet' with a SQLite store of its own, every device enrolled."""
    home = tmp_path / name
    home.mkdir()
    db = home / "gateway.db"
    cfg = write_config(home / "gateway.toml", port, db, mqtt={"client_id": "signet-gw", **GROUP})
    with Store(db) as store:
        for d in devs:
            store.enroll(d.key, "software")
    gw = GatewayProcess(cfg, home / "gw.log", worker=name)
    procs[0].append(gw)
    return gw.start()


def _stored(tmp_path: Path, name: str, devs: list[Dev]) -> set[tuple[str, int]]:
    with Store(tmp_path / name / "gateway.db", readonly=True) as store:
        return {(d.kid, r.n) for d in devs for r in store.records(d.kid)}


def _publish(client: Mqtt, devs: list[Dev], per_device: int) -> set[tuple[str, int]]:
    sent = set()
    items = []
    for d in devs:
        first = d.n + 1
        items += [(d.topic, payload) for payload in d.chain(per_device)]
        sent |= {(d.kid, n) for n in range(first, d.n + 1)}
    client.publish_all(items)
    return sent


@pytest.mark.timeout(120)
def test_workers_share_the_records_and_a_stopped_workers_share_waits_for_it(
    tmp_path: Path, broker: Mosquitto, procs
) -> None:
    """Each message to one worker; a worker stopped cleanly (SIGTERM: DISCONNECT, session
    kept, still subscribed) keeps receiving its share in its session, delivered when it is
    back, as a single gateway's backlog is. Were it to leave the group at a stop, stopping
    every worker at once would leave the group without a member and the broker would drop
    what is published meanwhile."""
    devs = [Dev(90 + i) for i in range(4)]
    a = _worker(tmp_path, broker.port, "a", devs, procs)
    b = _worker(tmp_path, broker.port, "b", devs, procs)
    assert "as signet-gw-a (" in a.text() and "as signet-gw-b (" in b.text()
    assert "records shared by group 'signet'" in a.text()
    client = Mqtt(broker.port)
    procs[1].append(client)

    sent = _publish(client, devs, 10)
    wait_until(
        lambda: _stored(tmp_path, "a", devs) | _stored(tmp_path, "b", devs) == sent,
        30,
        "every record stored by one of the workers",
    )
    at_a, at_b = _stored(tmp_path, "a", devs), _stored(tmp_path, "b", devs)
    assert at_a and at_b and not at_a & at_b  # each message went to one worker

    assert a.stop() == 0
    later = _publish(client, devs, 10)
    wait_until(lambda: len(later & _stored(tmp_path, "b", devs)) >= 20, 30, "b's half")
    assert _stored(tmp_path, "a", devs) == at_a
    a.start()
    wait_until(
        lambda: later <= _stored(tmp_path, "a", devs) | _stored(tmp_path, "b", devs),
        30,
        "a's share delivered to a when it came back",
    )
    assert len(later - _stored(tmp_path, "b", devs)) == 20  # round robin: every other one


@pytest.mark.timeout(120)
def test_a_killed_workers_share_waits_in_its_session_until_it_returns(
    tmp_path: Path, broker: Mosquitto, procs
) -> None:
    """What Mosquitto 2 does, asserted: a member that died (SIGKILL, no DISCONNECT) keeps
    its persistent session, and the broker goes on giving it its round-robin share of new
    messages, held in that session (not handed to the other members) until a worker with
    its client id connects again."""
    devs = [Dev(95 + i) for i in range(2)]
    a = _worker(tmp_path, broker.port, "a", devs, procs)
    _worker(tmp_path, broker.port, "b", devs, procs)
    client = Mqtt(broker.port)
    procs[1].append(client)
    first = _publish(client, devs, 4)
    wait_until(
        lambda: _stored(tmp_path, "a", devs) | _stored(tmp_path, "b", devs) == first,
        30,
        "the first records stored",
    )
    a.kill()
    at_a = _stored(tmp_path, "a", devs)
    later = _publish(client, devs, 10)  # the broker has them all (PUBACKed)
    # b gets its share only; a's waits for a.
    wait_until(lambda: len(later & _stored(tmp_path, "b", devs)) >= 10, 30, "b's half")
    assert _stored(tmp_path, "a", devs) == at_a
    a.start()
    assert "session present: yes" in a.text()
    wait_until(
        lambda: later <= _stored(tmp_path, "a", devs) | _stored(tmp_path, "b", devs),
        30,
        "a's held share delivered to a when it came back",
    )
    held = later - _stored(tmp_path, "b", devs)
    assert held and held <= _stored(tmp_path, "a", devs)
    assert len(held) == 10  # round robin: every other message was a's
