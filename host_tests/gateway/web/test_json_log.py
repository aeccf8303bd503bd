"""[logging] format = "json": every line the gateway process writes is one JSON object with
time, level and message, and the device when the event names one."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from pathlib import Path

from kit.gatewaykit import Dev, Mqtt, enrolled_gateway
from signet_gateway.web.json_log import JsonFormatter, device_in
from signet_tools.fleet import adversary
from signet_tools.runners.gateway_process import GatewayProcess
from signet_tools.runners.mosquitto import Mosquitto


def test_device_ids_are_found_and_hashes_are_not() -> None:
    kid = "a468072bf83a2703085af2570d847c88"
    assert device_in(f"refused bad_signature on signet/v1/{kid}/rec: ...") == kid
    assert device_in(f"equivocation: device {kid} signed two payloads") == kid
    assert device_in("log checkpoint: 10 records, root " + "9c" * 32) is None
    assert device_in("nothing here") is None


def test_an_exception_is_kept_in_its_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("signet.gateway", logging.ERROR, "", 0, "failed", (), None)
        record.exc_info = sys.exc_info()
    line = JsonFormatter().format(record)
    assert "\n" not in line
    event = json.loads(line)
    assert event["level"] == "ERROR" and "ValueError: boom" in event["exception"]


def test_the_gateway_logs_json_lines(tmp_path: Path, broker: Mosquitto) -> None:
    dev = Dev(0)
    cfg = enrolled_gateway(tmp_path, broker.port, [dev], logging={"format": "json"})
    gateway = GatewayProcess(cfg, tmp_path / "gateway.log").start()
    mqtt = Mqtt(broker.port)
    try:
        mqtt.publish_all([(dev.topic, r) for r in dev.chain(2)])
        mqtt.publish(dev.topic, adversary.forged(dev.make("rev", advance=False)))
        gateway.wait_log("refused bad_signature", 20)
    finally:
        mqtt.close()
    assert gateway.stop() == 0
    events = [json.loads(line) for line in gateway.text().splitlines()]
    assert len(events) >= 5
    for event in events:
        assert {"time", "level", "logger", "message"} <= set(event)
        assert dt.datetime.fromisoformat(event["time"].replace("Z", "+00:00")).tzinfo
    refused = next(e for e in events if e["message"].startswith("refused bad_signature"))
    assert (refused["level"], refused["device"]) == ("WARNING", dev.kid)
    stopped = next(e for e in events if e["message"].startswith("stopped:"))
    assert stopped["level"] == "INFO" and "device" not in stopped
