"""The dashboard in a real headless Chromium (Debian's chromium and chromium-driver, through
Selenium) against a real gateway process and a real Mosquitto fed by a small virtual fleet:
five days of sales in two currencies, heartbeats, forgeries, an equivocation, a stranger and
a bad topic. Every page loads without a console error, the fleet table's figures are those of
`signet report --format json`, filtering and sorting work, the record explorer and the
refusals page say why a record was refused, the yield view's figures are the report's
arithmetic, and without a token the pages show no data. Screenshots are saved under the
test's tmp dir (the path is printed)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
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
from kit.gatewaykit import Dev, Mqtt
from signet_gateway.mcr.display import rounded
from signet_gateway.store.model import now_ms
from signet_gateway.store.sqlite import Store
from signet_gateway.verify.refusals import REASONS
from signet_gateway.web.yields import LABEL
from signet_tools.fleet import adversary
from signet_tools.runners.gateway_process import GatewayProcess
from signet_tools.runners.mosquitto import Mosquitto
from signet_tools.runners.waiting import wait_until

pytestmark = pytest.mark.timeout(300)

DAY_MS = 86_400_000
DAYS = 5
ADVERTISED = 12.5  # percent a year, for coffee-01
CAPITAL = "5000"


@dataclass
class Site:
    cfg: Path
    gateway: GatewayProcess
    client: ConsoleClient
    devs: list[Dev]
    stranger: Dev
    shots: Path

    @property
    def url(self) -> str:
        return self.client.base + "/ui/"

    def report(self, *args: str) -> dict[str, Any]:
        out = signet("report", "--format", "json", "--config", str(self.cfg), *args).stdout
        return json.loads(out)  # type: ignore[no-any-return]


def _days_of_sales(dev: Dev, now_ms: int, rng: random.Random) -> list[bytes]:
    """DAYS days of heartbeats and sales in EUR (and USD every other day), the last today."""
    records = []
    for day in range(DAYS):
        at = now_ms - (DAYS - 1 - day) * DAY_MS - 3_600_000
        for kind, fields in (
            ("hb", None),
            ("rev", {"am": rng.randrange(100, 900), "cur": "EUR"}),
            ("rev", {"am": rng.randrange(100, 900), "cur": "EUR"}),
            ("rev", {"am": rng.randrange(50, 400), "cur": "USD"} if day % 2 else None),
            ("hb", None),
        ):
            if kind == "rev" and fields is None:
                continue
            t = at - 1000 * (dev.n + 1)  # Dev.make adds 1000 * n: the record's t is `at`
            records.append(dev.make(kind, t=t, fields=fields))
            at += 60_000
    return records


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("dashboard")
    shots = tmp / "screenshots"
    shots.mkdir()
    print(f"\ndashboard screenshots: {shots}")
    broker = Mosquitto(tmp / "broker").start()
    devs = [Dev(i) for i in range(3)]
    stranger = Dev(99)  # never enrolled
    cfg, gateway, client = console_gateway(
        tmp, broker.port, devs, http={"advertised_yield": {"coffee-01": ADVERTISED}}
    )
    with Store(tmp / "gateway.db") as store:
        store.conn.execute("UPDATE devices SET name = 'coffee-01' WHERE kid = ?", (devs[0].kid,))
        store.conn.execute("UPDATE devices SET name = 'laundry-07' WHERE kid = ?", (devs[1].kid,))
    mqtt = Mqtt(broker.port)
    rng = random.Random(13)
    now = now_ms()
    try:
        for d in devs:
            mqtt.publish_all([(d.topic, r) for r in _days_of_sales(d, now, rng)])
        mqtt.wait_acks({d.kid: d.n for d in devs})
        a, b, _c = devs
        forged = adversary.forged(a.make("rev", advance=False))
        twin = b.make("rev", n=3, fields={"am": 999}, advance=False)  # equivocation: b flagged
        mqtt.publish_all(
            [
                (a.topic, forged),
                (b.topic, twin),
                (stranger.topic, stranger.make("hb")),
                ("signet/v1/not-a-device/rec", b"\xa0"),
            ]
        )
        _wait_refusals(client, 3)
        wait_until(
            lambda: any(d["flagged"] for d in client.json("/api/v1/fleet")["devices"]),
            30,
            "the equivocation flagged",
        )
        # Their own words on their status topics: a online, b offline (its last will), c none.
        mqtt.publish(f"signet/v1/{a.kid}/status", b"online")
        mqtt.publish(f"signet/v1/{b.kid}/status", b"offline")

        def words() -> dict[str, Any]:
            return {r["device"]: r["online"] for r in client.json("/api/v1/fleet")["devices"]}

        expected = {a.kid: True, b.kid: False, _c.kid: None}
        wait_until(lambda: words() == expected, 30, "the status words in the fleet")
        yield Site(cfg, gateway, client, devs, stranger, shots)
    finally:
        mqtt.close()
        client.close()
        gateway.kill()
        broker.stop()


def _wait_refusals(client: ConsoleClient, count: int) -> None:
    def refused() -> int:
        return sum(r["count"] for r in client.json("/api/v1/refusals")["by_reason"])

    wait_until(lambda: refused() >= count, 30, f"{count} refusals counted")


@pytest.fixture(scope="module")
def browser(site: Site, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    require_chromium()
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as driver:
        yield driver


def _sign_in(driver: Any, site: Site, token: str | None = None) -> None:
    sign_in(driver, site.url, token or site.client.token)


def _go(driver: Any, site: Site, hash_: str, page: str) -> None:
    """Show a page, signing in first if this browser is not (each test may run alone: xdist
    spreads a module's tests over workers)."""
    signed_in = driver.current_url.startswith(site.client.base) and driver.execute_script(
        "return sessionStorage.length > 0"
    )
    if not signed_in:
        _sign_in(driver, site)
        wait_page(driver, "fleet")
    driver.execute_script(
        "document.body.dataset.ready = '0';"
        " if (location.hash !== arguments[0]) location.hash = arguments[0];"
        " else window.dispatchEvent(new HashChangeEvent('hashchange'));",
        hash_,
    )
    wait_page(driver, page)


def _shot(driver: Any, site: Site, name: str) -> Path:
    path = site.shots / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def test_without_a_token_the_pages_show_no_data(site: Site, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get(site.url)
    browser.execute_script("sessionStorage.clear(); location.hash = '#/device/x';")
    browser.refresh()
    wait_page(browser, "login")
    source = browser.page_source
    assert all(d.kid not in source for d in site.devs)
    assert "coffee-01" not in source
    # The page's own origin, without the header: the API gives nothing either.
    status = browser.execute_async_script(
        "const done = arguments[0];"
        " fetch('/api/v1/fleet').then(r => done(r.status), e => done(String(e)));"
    )
    assert status == 401
    assert console_errors(browser)  # the 401 above is logged by the browser, as it should be
    # A token not in force: the login form again, with the reason, and still no data.
    _sign_in(browser, site, token="signet_not-a-token")
    wait_page(browser, "login")
    assert "refused the token" in browser.find_element(By.ID, "login-error").text
    assert all(d.kid not in browser.page_source for d in site.devs)
    assert browser.execute_script("return sessionStorage.length") == 0
    _shot(browser, site, "login")
    console_errors(browser)  # drain the expected 401s


def test_fleet_table_equals_the_report(site: Site, browser: Any) -> None:
    _sign_in(browser, site)
    wait_page(browser, "fleet")
    report = site.report()
    rows = {r["device"]: r for r in fleet_rows(browser)}
    assert set(rows) == {d.kid for d in site.devs}  # one row per machine; the stranger: none
    assert_fleet_equals_report(list(rows.values()), report)
    a, b, c = site.devs
    assert rows[a.kid]["cells"]["refused"] == "1"  # the forgery on its topic
    online = {kid: row["cells"]["online"] for kid, row in rows.items()}
    assert online == {a.kid: "online", b.kid: "offline", c.kid: "not heard"}
    assert "ago" in rows[a.kid]["cells"]["last"]
    assert console_errors(browser) == []
    _shot(browser, site, "fleet")


def test_fleet_table_filters_and_sorts(site: Site, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _go(browser, site, "#/", "fleet")
    a, b, c = site.devs

    def shown() -> list[str]:
        return [r["device"] for r in fleet_rows(browser)]

    box = browser.find_element(By.ID, "filter-text")
    box.send_keys("laundry")
    assert shown() == [b.kid]
    box.clear()
    box.send_keys(c.kid[:10])
    assert shown() == [c.kid]
    box.clear()
    box.send_keys("x")  # input event on clear needs a keystroke
    box.clear()
    browser.execute_script(
        "document.getElementById('filter-text').dispatchEvent(new Event('input'))"
    )
    assert sorted(shown()) == sorted(d.kid for d in site.devs)
    status = Select(browser.find_element(By.ID, "filter-status"))
    status.select_by_value("flagged")
    assert shown() == [b.kid]  # the equivocation flagged it
    for word, kid in (("online", a.kid), ("offline", b.kid), ("notheard", c.kid)):
        status.select_by_value(word)
        assert shown() == [kid], word
    status.select_by_value("")
    tier = Select(browser.find_element(By.ID, "filter-tier"))
    tier.select_by_value("hardware")
    assert shown() == []
    assert browser.find_element(By.ID, "fleet-count").text == "0 of 3 machines"
    tier.select_by_value("software")
    assert len(shown()) == 3
    # Sort by revenue (the first currency's amount), then descending.
    header = browser.find_element(By.CSS_SELECTOR, "#fleet th[data-col=revenue]")
    header.click()
    report = {m["device"]: m for m in site.report()["devices"]}

    def eur(kid: str) -> int:
        return int(report[kid]["revenue"]["currencies"][0]["amount"])

    assert shown() == sorted(report, key=eur)
    header.click()
    assert shown() == sorted(report, key=eur, reverse=True)
    assert console_errors(browser) == []


def test_fleet_and_device_pages_for_a_period(site: Site, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    _go(browser, site, "#/", "fleet")
    day = site.report()["devices"][0]["period"]["to"]  # the last day only
    box = browser.find_element(By.ID, "period-from")
    browser.execute_script("arguments[0].value = arguments[1]", box, day)  # a date input
    browser.execute_script("document.body.dataset.ready = '0'")
    browser.find_element(By.CSS_SELECTOR, "#period-form button").click()
    wait_page(browser, "fleet")
    assert browser.current_url.endswith(f"#/?from={day}")
    cut = site.report("--from", day)
    assert_fleet_equals_report(fleet_rows(browser), cut)
    assert f"{day} .. the as-of day" in browser.find_element(By.ID, "fleet-period").text
    # The device link keeps the period.
    b = site.devs[1]
    browser.execute_script("document.body.dataset.ready = '0'")
    browser.find_element(By.CSS_SELECTOR, f"tr[data-device='{b.kid}'] a").click()
    wait_page(browser, "device")
    machine = site.report("--device", b.kid, "--from", day)["devices"][0]
    assert browser.find_element(By.ID, "device-period").text.startswith(f"Period {day} .. ")
    assert browser.find_element(By.ID, "device-uptime").text == rounded(
        machine["uptime"]["ratio"], 2, percent=True
    )
    bars = browser.find_elements(By.CSS_SELECTOR, "svg[aria-label='daily revenue EUR'] rect.bar")
    assert len(bars) == 1
    assert console_errors(browser) == []


def test_device_page_charts_and_counters(site: Site, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    b = site.devs[1]
    _go(browser, site, f"#/device/{b.kid}", "device")
    machine = site.report("--device", b.kid)["devices"][0]
    assert browser.find_element(By.ID, "device-uptime").text == rounded(
        machine["uptime"]["ratio"], 2, percent=True
    )
    charts = browser.find_elements(By.CSS_SELECTOR, "svg.chart")
    # A revenue chart per currency (EUR, USD), the uptime chart, the outage timeline.
    assert len(charts) == len(machine["revenue"]["currencies"]) + 2 == 4
    eur = machine["revenue"]["currencies"][0]
    bars = browser.find_elements(By.CSS_SELECTOR, "svg[aria-label='daily revenue EUR'] rect.bar")
    assert len(bars) == len(eur["daily"]) == DAYS
    counters = dict(
        tuple(td.text for td in tr.find_elements(By.TAG_NAME, "td"))
        for tr in browser.find_elements(By.CSS_SELECTOR, "#integrity tr")
    )
    integrity = machine["integrity"]
    assert counters["verified"] == str(integrity["verified"])
    assert counters["equivocations"] == str(integrity["equivocations"]) == "1"
    assert "software" in browser.find_element(By.CSS_SELECTOR, "dl.kv").text
    assert console_errors(browser) == []
    _shot(browser, site, "device")


def test_record_explorer_says_why_a_record_was_refused(site: Site, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    a = site.devs[0]
    _go(browser, site, f"#/records/{a.kid}", "records")
    refused = browser.find_elements(By.CSS_SELECTOR, "#refused tr[data-reason=bad_signature]")
    assert len(refused) == 1
    assert refused[0].find_element(By.CLASS_NAME, "reason-text").text == REASONS["bad_signature"]
    stored = browser.find_elements(By.CSS_SELECTOR, "#stored tbody tr")
    assert len(stored) == a.n
    first = stored[0]
    assert "iv\n60000" in first.text  # the decoded signed fields (a heartbeat's interval)
    first.find_element(By.TAG_NAME, "summary").click()  # the raw bytes, in hex
    records = site.client.json(f"/api/v1/devices/{a.kid}/records")
    raw = records["stored"][0]["raw_hex"]
    shown = first.find_element(By.CSS_SELECTOR, "details pre").text
    assert shown.replace(" ", "").replace("\n", "") == raw
    assert console_errors(browser) == []
    _shot(browser, site, "records")


def test_refusals_by_reason_with_topic_and_time(site: Site, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    _go(browser, site, "#/refusals", "refusals")
    api = site.client.json("/api/v1/refusals")
    counts = {
        tr.get_attribute("data-reason"): tr.find_elements(By.TAG_NAME, "td")[2].text
        for tr in browser.find_elements(By.CSS_SELECTOR, "#by-reason tbody tr")
    }
    assert counts == {r["reason"]: str(r["count"]) for r in api["by_reason"]}
    assert {"bad_signature", "unknown_key", "bad_topic"} <= set(counts)
    items = browser.find_elements(By.CSS_SELECTOR, "#refusal-items tbody tr")
    texts = [i.text for i in items]
    assert any(site.stranger.topic in t and REASONS["unknown_key"] in t for t in texts)
    assert any("signet/v1/not-a-device/rec" in t for t in texts)
    assert all(i["received"] in t for i, t in zip(api["items"], texts, strict=True))
    # One reason only.
    _go(browser, site, "#/refusals/unknown_key", "refusals")
    rows = browser.find_elements(By.CSS_SELECTOR, "#refusal-items tbody tr")
    assert [r.get_attribute("data-reason") for r in rows] == ["unknown_key"]
    assert console_errors(browser) == []
    _shot(browser, site, "refusals")


def test_yield_view_is_the_reports_arithmetic(site: Site, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    a = site.devs[0]
    _go(browser, site, f"#/yield/{a.kid}?capital={CAPITAL}&currency=EUR", "yield")
    machine = site.report("--device", a.kid)["devices"][0]
    eur = next(c for c in machine["revenue"]["currencies"] if c["currency"] == "EUR")
    capital_minor = int(CAPITAL) * 100
    annual = eur["amount"] / capital_minor * 365 / eur["days"]
    sd = eur["volatility"] * eur["mean_daily"]
    low = (eur["mean_daily"] - sd) * 365 / capital_minor
    high = (eur["mean_daily"] + sd) * 365 / capital_minor
    pct = lambda x: rounded(x, 2, percent=True)  # noqa: E731
    assert browser.find_element(By.ID, "yield-annual").text == pct(annual)
    assert browser.find_element(By.ID, "yield-range").text == f"{pct(low)} .. {pct(high)}"
    assert browser.find_element(By.ID, "yield-uptime").text == pct(machine["uptime"]["ratio"])
    assert browser.find_element(By.ID, "yield-advertised").text == pct(ADVERTISED / 100)
    assert browser.find_element(By.ID, "yield-label").text == LABEL  # the API's label
    # The form: another capital, same machine.
    box = browser.find_element(By.ID, "yield-capital")
    box.clear()
    box.send_keys("2500")
    browser.execute_script("document.body.dataset.ready = '0'")
    browser.find_element(By.CSS_SELECTOR, "#yield-form button").click()
    wait_page(browser, "yield")
    assert browser.find_element(By.ID, "yield-annual").text == pct(2 * annual)
    # A period (its last day only): the report's figures for that period.
    since = machine["period"]["to"]
    cut = site.report("--device", a.kid, "--from", since)["devices"][0]
    cut_eur = next(c for c in cut["revenue"]["currencies"] if c["currency"] == "EUR")
    _go(browser, site, f"#/yield/{a.kid}?capital={CAPITAL}&currency=EUR&from={since}", "yield")
    assert browser.find_element(By.ID, "yield-from").get_attribute("value") == since
    expected = cut_eur["amount"] / capital_minor * 365 / cut_eur["days"]
    assert browser.find_element(By.ID, "yield-annual").text == pct(expected)
    assert console_errors(browser) == []
    _shot(browser, site, "yield")


def test_yield_api_answers_and_refusals(site: Site) -> None:
    a, b, _c = site.devs
    path = f"/api/v1/devices/{a.kid}/yield"
    machine = site.report("--device", a.kid)["devices"][0]
    usd = next(c for c in machine["revenue"]["currencies"] if c["currency"] == "USD")
    answer = site.client.json(path, capital="1234.56", currency="USD")
    assert answer["capital_minor"] == 123456
    assert answer["annualized_yield"] == usd["amount"] / 123456 * 365 / usd["days"]
    assert answer["advertised_yield"] == ADVERTISED / 100
    assert answer["uptime_ratio"] == machine["uptime"]["ratio"]
    # Without a capital: the figures, no yield; another machine: no advertised yield.
    bare = site.client.json(f"/api/v1/devices/{b.kid}/yield")
    assert bare["annualized_yield"] is None and bare["range"] is None
    assert bare["currency"] == "EUR" and bare["advertised_yield"] is None
    for params, status, words in (
        ({"capital": "12.345", "currency": "EUR"}, 400, "EUR has 2 decimals"),
        ({"capital": "0"}, 400, "more than 0"),
        ({"capital": "-5"}, 400, "expected an amount"),
        ({"capital": "1e9"}, 400, "expected an amount"),
        ({"capital": "5", "currency": "eur"}, 422, "pattern"),
    ):
        response = site.client.get(path, **params)
        assert response.status_code == status, (params, response.text)
        assert words in response.text, (params, response.text)
    assert site.client.get("/api/v1/devices/nobody/yield", capital="5").status_code == 404
    assert site.client.get(path, token=None, capital="5").status_code == 401


def test_pages_are_served_without_a_token_and_hold_no_data(site: Site) -> None:
    page = site.client.get("/ui/", token=None)
    assert page.status_code == 200
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert site.client.get("/", token=None).headers.get("location") == "/ui/"
    for asset in ("app.js", "app.css", "icon.svg"):
        response = site.client.get(f"/ui/assets/{asset}", token=None)
        assert response.status_code == 200, asset
        assert all(d.kid not in response.text for d in site.devs)
        text = response.text.replace("http://www.w3.org/2000/svg", "")  # a namespace name
        assert "http://" not in text and "https://" not in text, asset  # nothing from elsewhere


def test_report_summary_is_the_report_without_its_series(site: Site) -> None:
    full = site.report()
    for machine in full["devices"]:
        assert machine["uptime"].pop("daily") and machine["uptime"].pop("outages") is not None
        for currency in machine["revenue"]["currencies"]:
            assert currency.pop("daily")
    assert site.client.json("/api/v1/report/summary") == full
    day = full["devices"][0]["period"]["to"]
    cut = site.client.json("/api/v1/report/summary", **{"from": day})
    assert {m["period"]["from"] for m in cut["devices"]} == {day}
    later = site.client.get("/api/v1/report/summary", **{"from": day, "to": "2000-01-01"})
    assert later.status_code == 400 and "is after to" in later.text
    assert site.client.get("/api/v1/report/summary", token=None).status_code == 401


def test_a_name_with_markup_is_shown_as_text(site: Site, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    c = site.devs[2]
    name = '<img src="/x" id="injected" onerror="document.title=1">'
    with Store(site.cfg.parent / "gateway.db") as store:
        store.conn.execute("UPDATE devices SET name = ? WHERE kid = ?", (name, c.kid))
    try:
        _go(browser, site, "#/", "fleet")
        cell = browser.find_element(By.CSS_SELECTOR, f"tr[data-device='{c.kid}'] td[data-col=name]")
        assert cell.text == name
        _go(browser, site, f"#/device/{c.kid}", "device")
        assert browser.find_elements(By.ID, "injected") == []
        assert browser.title == "Signet gateway"
        assert console_errors(browser) == []  # no request for /x either
    finally:
        with Store(site.cfg.parent / "gateway.db") as store:
            store.conn.execute("UPDATE devices SET name = NULL WHERE kid = ?", (c.kid,))
