"""The gateway process against a broker that fails: killed (SIGKILL) and restarted while
the gateway drains a backlog, and hung (SIGSTOP) with its TCP connections left open. The
gateway never exits, stores every record exactly once, and the retained acks end equal to
the store's. On SQLite only: the faults are the broker's, whatever the store."""

from __future__ import annotations

import random
import re
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from kit.gatewaykit import Dev, Mqtt, enrolled_gateway, store_acks
from signet_gateway.ingest.wire import parse_ack
from signet_gateway.store.sqlite import Store
from signet_tools.runners.gateway_process import GatewayProcess
from signet_tools.runners.mosquitto import Mosquitto
from signet_tools.runners.waiting import wait_until


def _stored(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return int(conn.execute("SELECT count(*) FROM records").fetchone()[0])


def retained_acks(port: int, kids: list[str], timeout: float = 10) -> dict[str, int]:
    """What a device subscribing now reads on its ack topic: the broker's retained acks."""
    got: dict[str, int] = {}
    lock = threading.Lock()

    def on_message(c: Any, u: Any, msg: Any) -> None:
        if msg.retain:
            with lock:
                got[msg.topic.split("/")[2]] = parse_ack(msg.payload)

    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = on_message
    client.on_connect = lambda c, u, f, rc, p: c.subscribe("signet/v1/+/ack", qos=1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        wait_until(lambda: len(got) >= len(kids), timeout, f"retained acks of {len(kids)} devices")
        with lock:
            return dict(got)
    finally:
        client.disconnect()
        client.loop_stop()


def _until(gw: GatewayProcess, cond: Any, timeout: float, what: str) -> None:
    """wait_until, failing at once (with its log) if the gateway exits meanwhile."""

    def alive_and() -> Any:
        assert gw.proc is not None and gw.proc.poll() is None, f"gateway exited:\n{gw.tail(30)}"
        return cond()

    wait_until(alive_and, timeout, what)


def _subscribed(gw: GatewayProcess) -> int:
    return gw.text().count("subscribed to signet/v1/+/rec")


def _assert_clean(gw: GatewayProcess) -> None:
    text = gw.text()
    for wrong in ("CRITICAL", "Traceback", "thread died", "storage failure"):
        assert wrong not in text, gw.tail(30)


@pytest.mark.timeout(240)
def test_broker_killed_and_restarted_during_a_drain_never_stops_the_gateway(
    tmp_path: Path, broker: Mosquitto, procs
) -> None:
    started, clients = procs
    devs = [Dev(300 + i) for i in range(8)]
    per = 400
    cfg = enrolled_gateway(tmp_path, broker.port, devs, ingest={"batch_max": 100, "batch_ms": 5})
    db = tmp_path / "gateway.db"
    # The gateway's persistent session exists, the gateway is down: a backlog builds up.
    gw = GatewayProcess(cfg, tmp_path / "gw.log").start()
    assert gw.stop() == 0
    client = Mqtt(broker.port)
    clients.append(client)
    client.publish_all([(d.topic, r) for i in range(per) for d in devs for r in [d.chain(1)[0]]])
    client.close()
    clients.remove(client)
    broker.stop()  # a clean stop saves the backlog: every restart below starts from it again
    broker.start()

    gw = GatewayProcess(cfg, tmp_path / "gw.log").start()
    started.append(gw)
    rng = random.Random(16)
    kills = 0
    # Every restart restores the saved backlog (the broker was killed before its next
    # autosave), so each new connection redelivers it: every kill lands in a drain.
    while kills < 6:
        time.sleep(rng.uniform(0.02, 0.4))  # a random moment of the drain, not a wait
        before = _subscribed(gw)
        broker.kill()
        kills += 1
        broker.start()
        _until(gw, lambda b=before: _subscribed(gw) > b, 40, "the gateway back on the broker")
    expected = {d.kid: per for d in devs}
    _until(gw, lambda: store_acks(db) == expected, 120, "every record stored")
    kids = [d.kid for d in devs]
    _until(
        gw,
        lambda: retained_acks(broker.port, kids) == store_acks(db),
        30,
        "the retained acks equal to the store's",
    )
    assert gw.proc is not None and gw.proc.poll() is None, gw.tail(30)
    _assert_clean(gw)
    assert gw.stop() == 0
    with Store(db, readonly=True) as store:
        for d in devs:
            assert store.record_count(d.kid) == per
            assert store.missing(d.kid) == 0
            findings = store.findings(d.kid)
            assert findings["verified"] == per  # stored once; redeliveries are duplicates
            assert set(findings) <= {"verified", "duplicate"}


def _detected_after(gw: GatewayProcess, t0_wall: float) -> float | None:
    """Seconds from t0_wall to the gateway's log line saying the broker does not answer."""
    for line in gw.text().splitlines():
        if "broker not answering" in line:
            stamp = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})", line)
            assert stamp, line
            wall = time.mktime(time.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S"))
            return wall + int(stamp.group(2)) / 1000 - t0_wall
    return None


@pytest.mark.timeout(180)
def test_a_hung_broker_is_found_within_the_keepalive_and_the_gateway_rejoins_it(
    tmp_path: Path, broker: Mosquitto, procs
) -> None:
    started, clients = procs
    dev = Dev(330)
    keepalive = 5
    cfg = enrolled_gateway(tmp_path, broker.port, [dev], mqtt={"keepalive_s": keepalive})
    db = tmp_path / "gateway.db"
    gw = GatewayProcess(cfg, tmp_path / "gw.log").start()
    started.append(gw)
    client = Mqtt(broker.port)  # keepalive 60 s: it stays connected through the hang
    clients.append(client)
    client.publish_all([(dev.topic, r) for r in dev.chain(10)])
    client.wait_acks({dev.kid: 10})

    # Hung (SIGSTOP) just after traffic: the TCP connection stays open, nothing answers.
    t0 = time.time()
    broker.pause()
    gw.wait_log("broker not answering", 3 * keepalive)
    detected = _detected_after(gw, t0)
    # paho alone: up to two keepalives (a PINGREQ after one, its deadline one later).
    assert detected is not None and detected <= keepalive + 2.5, (detected, gw.tail())
    # A connection attempt to the hung broker (the kernel completes the TCP handshake) gets
    # no CONNACK: it fails within the keepalive too, and the next one waits its backoff.
    gw.wait_log("broker not answering: no CONNACK", 4 * keepalive)
    client.publish(dev.topic, dev.make("rev"), wait=False)  # sent into the hung broker
    broker.resume()
    _until(gw, lambda: _subscribed(gw) >= 2, 30 + keepalive, "the gateway back on the broker")
    client.publish_all([(dev.topic, r) for r in dev.chain(9)])
    client.wait_acks({dev.kid: 20}, 30)

    # Hung, then restarted instead of resumed.
    broker.pause()
    _until(gw, lambda: gw.text().count("broker not answering") >= 3, 3 * keepalive, "detected")
    broker.kill()
    broker.start()
    _until(gw, lambda: _subscribed(gw) >= 3, 40, "the gateway back on the restarted broker")
    client.close()
    clients.remove(client)
    client = Mqtt(broker.port)
    clients.append(client)
    client.publish_all([(dev.topic, r) for r in dev.chain(10)])
    client.wait_acks({dev.kid: 30}, 30)
    _until(gw, lambda: retained_acks(broker.port, [dev.kid]) == {dev.kid: 30}, 20, "retained")
    _assert_clean(gw)
    assert gw.stop() == 0
    with Store(db, readonly=True) as store:
        assert store.record_count(dev.kid) == 30
        findings = store.findings(dev.kid)
        assert findings["verified"] == 30
        assert set(findings) <= {"verified", "duplicate"}
