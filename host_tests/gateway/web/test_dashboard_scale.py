"""The dashboard's fleet page with 1,000 machines in a real headless Chromium, against a real
gateway that verified their records: every machine gets its row, and the time the page takes
is printed (not asserted: it depends on the machine running the tests)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from kit.browser import chromium, console_errors, require_chromium, wait_page
from kit.console import console_gateway
from kit.gatewaykit import Dev, Mqtt
from signet_gateway.store.model import now_ms
from signet_tools.runners.mosquitto import Mosquitto

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]

MACHINES = 1000


def test_fleet_page_with_1000_machines(tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    require_chromium()
    broker = Mosquitto(tmp_path / "broker").start()
    devs = [Dev(i) for i in range(MACHINES)]
    _cfg, gateway, client = console_gateway(tmp_path, broker.port, devs)
    mqtt = Mqtt(broker.port)
    try:
        # Records of the last hour (the report's daily series is one day long).
        t = now_ms() - 3_600_000
        records = [(d.topic, d.make(kind, t=t)) for d in devs for kind in ("hb", "rev", "hb")]
        mqtt.publish_all(records)
        mqtt.wait_acks({d.kid: 3 for d in devs}, timeout=120)
        with chromium(tmp_path / "profile") as driver:
            driver.get(client.base + "/ui/")
            wait_page(driver, "login")
            driver.find_element(By.ID, "token").send_keys(client.token)
            started = time.monotonic()
            driver.find_element(By.CSS_SELECTOR, "#login button").click()
            wait_page(driver, "fleet", timeout=120)
            wall = time.monotonic() - started
            rows = driver.execute_script(
                "return document.querySelectorAll('#fleet tbody tr').length"
            )
            timings = driver.execute_script("return window.signetTimings")
            assert rows == MACHINES
            assert console_errors(driver) == []
        print(
            f"\nfleet page, {MACHINES} machines: {wall:.3f} s from the sign-in click to the"
            f" painted table: the API's answers (fleet, report summary)"
            f" {timings['fleetFetchMs'] / 1000:.3f} s, then in the browser"
            f" {timings['fleetPaintMs'] / 1000:.3f} s to build, lay out and paint the table"
            f" (building it: {timings['fleetBuildMs'] / 1000:.3f} s)"
        )
    finally:
        mqtt.close()
        client.close()
        gateway.kill()
        broker.stop()
