"""The yield view's arithmetic (gateway/web/yields.py) on a report element made by hand, the
capital's parsing, the operator's [http.advertised_yield] table, and the dashboard's assets:
the JavaScript's table of currency exponents is the report's, and the package ships the
static files."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import tomllib

from kit.paths import REPO
from signet_gateway.config import ConfigError, parse
from signet_gateway.mcr import display
from signet_gateway.web.dashboard import STATIC
from signet_gateway.web.yields import LABEL, YieldError, capital_minor, realized_yield


def _machine(daily: list[int], currency: str = "EUR") -> dict[str, Any]:
    amount, days = sum(daily), len(daily)
    mean = amount / days
    sd = (sum((x - mean) ** 2 for x in daily) / days) ** 0.5
    return {
        "device": "ab" * 16,
        "name": "coffee-01",
        "period": {"from": "2026-01-01", "to": "2026-01-04"},
        "uptime": {"ratio": 0.5},
        "revenue": {
            "primary_currency": currency,
            "currencies": [
                {
                    "currency": currency,
                    "amount": amount,
                    "days": days,
                    "mean_daily": mean,
                    "volatility": sd / mean if mean > 0 else None,
                }
            ],
        },
    }


def test_yield_is_revenue_over_capital_annualized_and_the_range_a_typical_day() -> None:
    # 4 days: 10, 30, 10, 30 EUR -> mean 20 EUR/day, sd 10 EUR/day. On 7300 EUR:
    # 80 EUR / 7300 EUR * 365 / 4 = 1.0 a year; a typical day 10..30 EUR -> 0.5 .. 1.5.
    machine = _machine([1000, 3000, 1000, 3000])
    y = realized_yield(machine, capital="7300", currency="EUR", advertised_percent=12.5)
    assert y["capital_minor"] == 730000
    assert y["annualized_yield"] == pytest.approx(1.0, rel=1e-12)
    assert y["range"]["low"] == pytest.approx(0.5, rel=1e-12)
    assert y["range"]["high"] == pytest.approx(1.5, rel=1e-12)
    assert y["advertised_yield"] == 0.125
    assert y["uptime_ratio"] == 0.5
    assert y["label"] == LABEL and "not a peaq figure" in LABEL and "not advice" in LABEL


def test_a_currency_without_revenue_or_a_flat_series() -> None:
    machine = _machine([500, 500])
    y = realized_yield(machine, capital="100", currency=None, advertised_percent=None)
    assert y["currency"] == "EUR"
    assert y["range"]["low"] == y["range"]["high"] == y["annualized_yield"]  # sd 0
    other = realized_yield(machine, capital="100", currency="USD", advertised_percent=None)
    assert other["annualized_yield"] is None and other["revenue_minor"] is None
    refunds = realized_yield(_machine([-200, 100]), capital="1", currency="EUR",
                             advertised_percent=None)  # fmt: skip
    assert refunds["annualized_yield"] < 0 and refunds["range"] is None


@pytest.mark.parametrize(
    ("capital", "currency", "minor"),
    [("5000", "EUR", 500000), ("5000.5", "EUR", 500050), ("5000", "JPY", 5000),
     ("0.001", "KWD", 1), ("007", "USD", 700)],
)  # fmt: skip
def test_capital_in_minor_units(capital: str, currency: str, minor: int) -> None:
    assert capital_minor(capital, currency) == minor


@pytest.mark.parametrize(
    "capital", ["", "0", "0.00", "-1", "1e3", "1.", ".5", "1.234", "٣", "1" * 19]
)
def test_capital_refused_in_one_sentence(capital: str) -> None:
    with pytest.raises(YieldError, match=r"^capital: "):
        capital_minor(capital, "EUR")


def test_advertised_yield_table_in_the_config() -> None:
    text = '[http.advertised_yield]\n"coffee-01" = 12.5\n"abcdef01" = 7\n'
    config = parse(tomllib.loads(text))
    assert dict(config.http.advertised_yield) == {"coffee-01": 12.5, "abcdef01": 7.0}
    assert dict(parse({}).http.advertised_yield) == {}
    for bad, words in (
        ({"advertised_yield": {"x": "12%"}}, "http.advertised_yield.x: must be a percent"),
        ({"advertised_yield": {"x": -1}}, "http.advertised_yield.x: must be a percent"),
        ({"advertised_yield": {"x": True}}, "http.advertised_yield.x: must be a percent"),
        ({"advertised_yield": 12}, "[http.advertised_yield]: must be a table"),
    ):
        with pytest.raises(ConfigError) as caught:
            parse({"http": bad})
        assert str(caught.value).startswith(words)


def test_the_pages_currency_exponents_are_the_reports() -> None:
    script = (STATIC / "app.js").read_text()
    table = re.search(r"const EXPONENTS = \{(.*?)\};", script, re.S)
    assert table is not None
    found = {k: int(v) for k, v in re.findall(r"([A-Z]{3}): (\d)", table.group(1))}
    assert found == display._EXPONENTS


def test_the_package_ships_every_static_file() -> None:
    with open(REPO / "pyproject.toml", "rb") as f:
        patterns = tomllib.load(f)["tool"]["setuptools"]["package-data"]["signet_gateway.web"]
    shipped = {p for pattern in patterns for p in STATIC.glob(pattern.removeprefix("static/"))}
    assert shipped == set(STATIC.iterdir())
    index = (STATIC / "index.html").read_text()
    assert set(re.findall(r'"/ui/assets/([^"]+)"', index)) == {"app.js", "app.css", "icon.svg"}
    assert json.dumps(index).count("http") == 0  # nothing from another origin
