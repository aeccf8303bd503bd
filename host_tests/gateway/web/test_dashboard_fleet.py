"""The dashboard's fleet page against a gateway fed by the virtual fleet (tools/fleet/simulate.py:
the real agent code, two devices whose keys are in an emulated ATECC608 and enroll as hardware
tier, a network outage on two devices, a reboot), in a real headless Chromium: its figures are
those of `signet report --format json`, and the tier filter finds the hardware devices.

This test also takes the README's screenshot of the fleet page: it is saved with the test's
artifacts, and copied to docs/img/dashboard-fleet.png when SIGNET_README_SCREENSHOT=1."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from kit.browser import (
    assert_fleet_equals_report,
    chromium,
    console_errors,
    fleet_rows,
    require_chromium,
    sign_in,
    wait_page,
)
from kit.console import console_gateway, signet
from kit.paths import REPO
from signet_tools.fleet import simulate
from signet_tools.runners.mosquitto import Mosquitto

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

README_SHOT = REPO / "docs" / "img" / "dashboard-fleet.png"


def test_fleet_page_of_a_simulated_fleet(tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    require_chromium()
    broker = Mosquitto(tmp_path / "broker").start()
    cfg, gateway, client = console_gateway(tmp_path, broker.port, [])
    try:
        params = simulate.FleetParams(
            devices=6,
            duration_s=15.0,
            broker=("127.0.0.1", broker.port),
            out=tmp_path / "fleet",
            db=tmp_path / "gateway.db",
            rate_per_min=90.0,
            heartbeat_s=1,
            hardware=2,
            outages=(simulate.OutageSpec(5.0, 3.0, 2),),
            reboots=1,
            seed=13,
            name_prefix="kiosk",
        )
        fleet = simulate.Fleet(params)
        fleet.create()
        assert fleet.run()
        report = json.loads(signet("report", "--format", "json", "--config", str(cfg)).stdout)
        with chromium(tmp_path / "profile") as driver:
            sign_in(driver, client.base + "/ui/", client.token)
            wait_page(driver, "fleet")
            rows = fleet_rows(driver)
            assert len(rows) == len(report["devices"]) == 6
            assert_fleet_equals_report(rows, report)
            assert console_errors(driver) == []
            # The window as tall as the page: no empty band below the table.
            chrome, height = driver.execute_script(
                "return [window.outerHeight - window.innerHeight,"
                " Math.ceil(document.body.getBoundingClientRect().height)]"
            )
            driver.set_window_size(1400, chrome + height + 16)
            shot = tmp_path / "fleet.png"
            driver.save_screenshot(str(shot))
            print(f"\nfleet page screenshot: {shot}")
            if os.environ.get("SIGNET_README_SCREENSHOT") == "1":
                README_SHOT.parent.mkdir(exist_ok=True)
                shutil.copyfile(shot, README_SHOT)
            Select(driver.find_element(By.ID, "filter-tier")).select_by_value("hardware")
            hardware = {m["device"] for m in report["devices"] if m["tier"] == "hardware"}
            assert len(hardware) == 2
            assert {r["device"] for r in fleet_rows(driver)} == hardware
    finally:
        client.close()
        gateway.kill()
        broker.stop()
