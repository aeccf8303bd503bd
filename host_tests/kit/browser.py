"""A real headless Chromium for the dashboard's tests, driven by Selenium through Debian's
chromedriver (given explicitly: Selenium Manager never looks for a driver online).

Each browser gets a fresh profile in the test's tmp dir, no network services of its own
(no sync, component updates or background fetches), and its console log collected
(goog:loggingPrefs) so a test can assert that a page logged no error.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)


def require_chromium() -> None:
    """Skip unless Chromium, its driver and selenium are installed (./run installs them)."""
    pytest.importorskip("selenium")
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists() and shutil.which(path.name) is None:
            pytest.skip(f"{path} is not installed (./run setup installs chromium chromium-driver)")


@contextmanager
def chromium(profile: Path) -> Iterator[Any]:
    """A headless Chromium with a fresh profile in ``profile``; quit on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM if CHROMIUM.exists() else shutil.which("chromium"))
    for flag in FLAGS:
        options.add_argument(flag)
    profile.mkdir(parents=True, exist_ok=True)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver_path = CHROMEDRIVER if CHROMEDRIVER.exists() else Path(str(shutil.which("chromedriver")))
    driver = webdriver.Chrome(service=Service(str(driver_path)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def console_errors(driver: Any) -> list[str]:
    """The browser console's SEVERE entries since the last call (the log is drained)."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def wait_page(driver: Any, page: str, timeout: float = 20) -> None:
    """Wait until the dashboard says ``page`` is rendered (body data-page, data-ready=1)."""
    from selenium.webdriver.support.ui import WebDriverWait

    def rendered(d: Any) -> bool:
        return bool(
            d.execute_script(
                "return document.body.dataset.ready === '1' && document.body.dataset.page"
                " === arguments[0]",
                page,
            )
        )

    try:
        WebDriverWait(driver, timeout, poll_frequency=0.05).until(rendered)
    except Exception:
        where = driver.execute_script("return [location.href, document.body.dataset.page]")
        error = driver.execute_script(
            "const e = document.getElementById('page-error'); return e && e.textContent"
        )
        raise AssertionError(
            f"page {page!r} not rendered in {timeout} s (at {where}; error {error!r};"
            f" console {console_errors(driver)})"
        ) from None


# -- the dashboard ----------------------------------------------------------------------------


def sign_in(driver: Any, url: str, token: str) -> None:
    """Open the dashboard at url with an empty sessionStorage and sign in with token."""
    from selenium.webdriver.common.by import By

    driver.get(url)
    driver.execute_script("sessionStorage.clear(); location.hash = '#/';")
    driver.refresh()
    wait_page(driver, "login")
    box = driver.find_element(By.ID, "token")
    box.clear()
    box.send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#login button").click()


def fleet_rows(driver: Any) -> list[dict[str, Any]]:
    """The fleet table as the page shows it: per row its machine, cell texts by column, and
    the revenue amounts [currency, minor units, text]."""
    return driver.execute_script(  # type: ignore[no-any-return]
        """return [...document.querySelectorAll('#fleet tbody tr')].map(tr => ({
            device: tr.dataset.device,
            cells: Object.fromEntries(
                [...tr.cells].map(td => [td.dataset.col, td.innerText.trim()])),
            amounts: [...tr.querySelectorAll('[data-currency]')].map(s =>
                [s.dataset.currency, Number(s.dataset.amount), s.textContent]),
        }))"""
    )


def assert_fleet_equals_report(rows: list[dict[str, Any]], report: dict[str, Any]) -> None:
    """Each machine of `signet report --format json` has its row, with the report's figures
    rounded as the report's table rounds them (gateway/mcr/display.py)."""
    from signet_gateway.mcr.display import money, rounded

    by_device = {r["device"]: r for r in rows}
    for machine in report["devices"]:
        row = by_device[machine["device"]]
        cells = row["cells"]
        assert cells["name"] == (machine["name"] or ""), machine["device"]
        assert cells["tier"] == machine["tier"], machine["device"]
        assert cells["uptime"] == rounded(machine["uptime"]["ratio"], 2, percent=True)
        assert cells["score"] == f"{machine['score']['score']} {machine['score']['letter']}"
        assert cells["refused"] == str(machine["integrity"]["refused_total"])
        assert row["amounts"] == [
            [c["currency"], c["amount"], money(c["amount"], c["currency"])]
            for c in machine["revenue"]["currencies"]
        ], machine["device"]
