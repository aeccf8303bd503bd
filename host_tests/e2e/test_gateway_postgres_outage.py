"""End to end: PostgreSQL restarted or stopped under a running `signet gateway run`, and a
gateway started while PostgreSQL is down (docs/GATEWAY.md, Faults).

Each test runs a PostgreSQL cluster of its own (its server is stopped and restarted), a real
Mosquitto and the real gateway process:

- restarted (`pg_ctl restart`) or stopped and started again while a virtual fleet running the
  real agent code sends records to one gateway (or, restarted, to two workers on a shared
  subscription): each rides it out as a store it cannot write, with one outage line and one
  recovery line and no traceback, /readyz says why meanwhile, and at
  the end every device is acknowledged up to its last record, the report equals the
  simulator's ground truth and every signed record is stored exactly once; nothing it logged
  or served holds the database's password;
- started while the server is down: it waits with the same outage line instead of exiting,
  and takes, stores and acknowledges records once the server is up; asked to stop while
  still waiting, it exits 0.

Every wait polls with a deadline.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from kit.gatewaykit import Dev, Mqtt, enrolled_gateway
from signet_gateway.store.sqlite import Store
from signet_tools.fleet import simulate
from signet_tools.runners.gateway_process import (
    SUBSCRIBED,
    GatewayProcess,
    create_gateway_database,
    write_gateway_config,
)
from signet_tools.runners.mosquitto import Mosquitto, free_port
from signet_tools.runners.postgres import Postgres
from signet_tools.runners.waiting import wait_until

SIGNET = str(Path(sys.executable).parent / "signet")
OUTAGE = "store unwritable, not acknowledging until it can be written"
RECOVERED = "store writable again after"


@pytest.fixture
def pg() -> Iterator[Postgres]:
    """A cluster of this test's own: its server goes down, which the session's must not."""
    cluster = Postgres().start()
    yield cluster
    cluster.stop()


@pytest.fixture
def gateways() -> Iterator[list[GatewayProcess]]:
    started: list[GatewayProcess] = []
    yield started
    for g in started:
        g.kill()


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


@pytest.mark.timeout(150)
@pytest.mark.parametrize(
    ("outage", "count"),
    [("restart", 1), ("stop-start", 1), ("restart", 2)],
    ids=["restart", "stop-start", "restart-two-workers"],
)
def test_postgresql_going_away_under_a_running_gateway_loses_and_doubles_nothing(
    tmp_path: Path,
    broker: Mosquitto,
    pg: Postgres,
    gateways: list[GatewayProcess],
    outage: str,
    count: int,
) -> None:
    create_gateway_database(pg.url, {"hb_tolerance": 0.1})
    http = free_port()  # the first worker's console
    shared = {"client_id": "signet-gw", "shared_group": "signet"} if count > 1 else {}
    for i in range(1, count + 1):
        config = write_gateway_config(
            tmp_path / f"gateway-{i}.toml",
            broker.port,
            pg.url,
            mqtt=shared,
            ingest={"batch_ms": 20, "ack_interval_ms": 50},
            aggregate={"hb_tolerance": 0.1},
            http={"enabled": i == 1, "port": http, "metrics_token": False},
        )
        worker = str(i) if count > 1 else None
        gateways.append(GatewayProcess(config, tmp_path / f"gateway-{i}.log", worker=worker))
        gateways[-1].start()
    gw = gateways[0]
    params = simulate.FleetParams(
        devices=4,
        duration_s=6.0,
        broker=("127.0.0.1", broker.port),
        out=tmp_path / "fleet",
        db=pg.url,  # type: ignore[arg-type]  # the store opens a URL as well as a path
        rate_per_min=120.0,
        heartbeat_s=1,
        seed=21,
        drain_timeout_s=45.0,
    )
    fleet = simulate.Fleet(params)
    fleet.create()
    served: list[tuple[str, int, str]] = []
    done: list[str] = []

    def go_away() -> None:
        if outage == "restart":
            pg.restart()  # every session ended; back when it returns
            done.append("restarted")
        else:
            pg.stop_server()
            done.append("stopped")

    def come_back() -> None:
        if outage == "restart":
            return
        # Down for a while: the gateway noticed (a commit or its key refresh, every second)
        # and says so, in its log and on /readyz, while it waits.
        gw.wait_log(OUTAGE, 20)
        for path in ("/readyz", "/metrics", "/api/v1/fleet"):
            served.append((path, *_get(http, path)))
        pg.start_server()
        done.append("started")

    assert fleet.run([(2.0, go_away), (3.5, come_back)]), (
        "not every device was acknowledged up to its last record:\n" + gw.tail(30)
    )
    assert done == (["restarted"] if outage == "restart" else ["stopped", "started"])
    for g in gateways:
        g.wait_log(RECOVERED, 20)
    # The console's own sessions were ended too: it reads the database again (a request
    # that finds its session lost is answered 503, the next one opens a new session).
    wait_until(lambda: _get(http, "/metrics")[0] == 200, 20, "the console reading again")
    if served:
        status, body = served[0][1:]
        assert status == 503 and "store unwritable" in json.loads(body)["problems"][0], body
        assert served[1][1] == 503  # the database's gauges cannot be read now
    for g in gateways:
        assert g.stop() == 0, g.tail(30)
        log = g.log.read_text()
        assert "Traceback" not in log and "CRITICAL" not in log, log
        assert log.count(OUTAGE) == 1, log  # said once, when it began
        assert log.count(RECOVERED) == 1, log
        assert pg.password not in log
    assert all(pg.password not in body for _, _, body in served)
    truth = fleet.truth()
    assert simulate.stored_check(truth, pg.url) == []  # type: ignore[arg-type]
    rep = subprocess.run(
        [SIGNET, "report", "--config", str(gw.config), "--format", "json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert rep.returncode == 0, rep.stderr
    assert simulate.compare(truth, json.loads(rep.stdout)) == []
    with Store(pg.url, readonly=True) as store:
        for dev in truth["devices"]:
            # Each signed record stored as new exactly once.
            assert store.findings(dev["kid"]).get("verified") == dev["records"], dev["name"]
        logged = store.conn.execute("SELECT count(*) FROM records WHERE log_index IS NULL")
        assert logged.fetchone()[0] == 0  # and each one in the transparency log


@pytest.mark.timeout(120)
def test_a_gateway_started_while_postgresql_is_down_waits_for_it(
    tmp_path: Path, broker: Mosquitto, pg: Postgres, gateways: list[GatewayProcess]
) -> None:
    dev = Dev(71)
    config = enrolled_gateway(tmp_path, broker.port, [dev], db=pg.url)
    pg.stop_server()
    gw = GatewayProcess(config, tmp_path / "gateway.log")
    gateways.append(gw)
    gw.start(wait=False)
    gw.wait_log(OUTAGE, 20)
    said = gw.text()
    assert "cannot open database postgresql://signet:***@127.0.0.1" in said
    assert SUBSCRIBED not in said  # nothing taken before the store is open
    pg.start_server()
    gw.wait_log(SUBSCRIBED, 30)
    client = Mqtt(broker.port, client_id="started-while-down")
    try:
        client.publish_all([(dev.topic, raw) for raw in dev.chain(5)])
        client.wait_acks({dev.kid: 5})
    finally:
        client.close()
    assert gw.stop() == 0
    log = gw.text()
    assert log.count(OUTAGE) == 1 and RECOVERED in log, log
    assert "Traceback" not in log and pg.password not in log
    with Store(pg.url, readonly=True) as store:
        assert [r.n for r in store.records(dev.kid)] == [1, 2, 3, 4, 5]

    # Asked to stop while still waiting: nothing was taken, exit 0.
    pg.stop_server()
    gw.start(wait=False)
    gw.wait_log(OUTAGE, 20)
    assert gw.stop() == 0
    assert "stopped while waiting for the database" in gw.text()
