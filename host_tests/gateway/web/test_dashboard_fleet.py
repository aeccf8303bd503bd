"""The dashboard's fleet page against a gateway fed by the virtual fleet (tools/fleet/simulate.py:
the real agent code, two devices whose keys are in an emulated ATECC608 and enroll as hardware
tier, a network outage on two devices, a reboot), in a real headless Chromium: its figures are
those of `signet report --format json`, and the tier filter finds the hardware devices.

While the fleet runs, the page shows every device online (their own word on their status
topics) and its screenshot is taken: the README's, saved with the test's artifacts and copied
to docs/img/dashboard-fleet.png when SIGNET_README_SCREENSHOT=1. After the run each says
offline, and the figures are compared with the report."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path
from typing import Any

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
from kit.console import ConsoleClient, console_gateway, signet
from kit.paths import REPO
from signet_tools.fleet import simulate
from signet_tools.runners.mosquitto import Mosquitto
from signet_tools.runners.waiting import wait_until

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

README_SHOT = REPO / "docs" / "img" / "dashboard-fleet.png"


def _while_running(
    driver: Any, client: ConsoleClient, tmp: Path, errors: list[BaseException]
) -> None:
    """Once the six devices are online and have sent records: the fleet page shows them
    online, and its screenshot (the README's) is taken."""
    try:

        def ready() -> bool:
            rows = client.json("/api/v1/fleet")["devices"]
            return len(rows) == 6 and all(r["online"] and r["stored"] >= 8 for r in rows)

        wait_until(ready, 30, "six devices online with records")
        sign_in(driver, client.base + "/ui/", client.token)
        wait_page(driver, "fleet")
        assert {r["cells"]["online"] for r in fleet_rows(driver)} == {"online"}
        # The window as tall as the page: no empty band below the table.
        chrome, height = driver.execute_script(
            "return [window.outerHeight - window.innerHeight,"
            " Math.ceil(document.body.getBoundingClientRect().height)]"
        )
        driver.set_window_size(1400, chrome + height + 16)
        shot = tmp / "fleet.png"
        driver.save_screenshot(str(shot))
        print(f"\nfleet page screenshots: {tmp}/fleet.png (running), fleet-after.png")
        if os.environ.get("SIGNET_README_SCREENSHOT") == "1":
            README_SHOT.parent.mkdir(exist_ok=True)
            shutil.copyfile(shot, README_SHOT)
    except BaseException as exc:  # reported by the test's thread
        errors.append(exc)


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
        with chromium(tmp_path / "profile") as driver:
            # While the fleet runs: every device says "online" on its status topic.
            running: list[BaseException] = []
            watcher = threading.Thread(
                target=_while_running, args=(driver, client, tmp_path, running), daemon=True
            )
            watcher.start()
            assert fleet.run()
            watcher.join(60)
            assert not watcher.is_alive() and running == [], running
            report = json.loads(signet("report", "--format", "json", "--config", str(cfg)).stdout)
            driver.execute_script("document.body.dataset.ready = '0'")
            driver.refresh()
            wait_page(driver, "fleet")
            rows = fleet_rows(driver)
            assert len(rows) == len(report["devices"]) == 6
            assert_fleet_equals_report(rows, report)
            # Stopped cleanly, each device said "offline" before it went.
            assert {r["cells"]["online"] for r in rows} == {"offline"}
            assert console_errors(driver) == []
            driver.save_screenshot(str(tmp_path / "fleet-after.png"))
            Select(driver.find_element(By.ID, "filter-tier")).select_by_value("hardware")
            hardware = {m["device"] for m in report["devices"] if m["tier"] == "hardware"}
            assert len(hardware) == 2
            assert {r["device"] for r in fleet_rows(driver)} == hardware
    finally:
        client.close()
        gateway.kill()
        broker.stop()
