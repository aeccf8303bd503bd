"""The yield view's arithmetic: a machine's realized annualized revenue yield on a capital amount,
from its verified revenue in the MCR report (docs/GATEWAY.md, "The dashboard").

One function, used by the API (/api/v1/yield), hence by the dashboard's page, and by the tests,
so the page, the API and a check by hand give the same numbers. Its only input is one element of
the report's ``devices`` (the JSON of `signet report --format json`): nothing here reads the
store, so the yield is exactly as grounded as the report.

    yield     = revenue / capital × 365 / days
    range     = (mean_daily ∓ sd) × 365 / capital,  sd = volatility × mean_daily

``revenue`` is the currency's verified ``amount`` in the period, ``days`` its daily series'
length D (the report's ``days``: from the machine's first record in the period to the as-of
day, zero days included), so revenue / days is the report's ``mean_daily``; ``sd`` is the
population standard deviation of the daily series (the report gives it as ``volatility`` =
sd / mean_daily). The range is the annualized yield of a typical day, one standard deviation
below and above the mean day; it is not a confidence interval and says nothing of the future.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final

from signet_gateway.mcr.display import exponent

__all__ = ["LABEL", "RANGE_BASIS", "YieldError", "capital_minor", "realized_yield"]

DAYS_PER_YEAR: Final = 365
LABEL: Final = (
    "Signet's arithmetic on verified records: not a peaq figure, not a forecast, not advice"
)
RANGE_BASIS: Final = (
    "the annualized yield of a typical day: mean daily revenue minus and plus one (population)"
    " standard deviation of the daily revenue, × 365 / capital"
)
MAX_CAPITAL_DIGITS: Final = 18  # before the decimal point: larger is no capital, a typo


class YieldError(ValueError):
    """A capital amount or currency the arithmetic cannot take (a sentence for the client)."""


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()  # ASCII: str.isdigit takes "²" and "٣" too


def capital_minor(capital: str, currency: str) -> int:
    """A capital amount in major units ("5000", "5000.50") as the currency's minor units;
    YieldError if it is not a positive decimal with at most the currency's decimals."""
    exp = exponent(currency)
    whole, dot, frac = capital.partition(".")
    if not _digits(whole) or (dot and not _digits(frac)):
        raise YieldError(f"capital: expected an amount like 5000 or 5000.50, got {capital!r}")
    if len(whole.lstrip("0")) > MAX_CAPITAL_DIGITS:
        raise YieldError(f"capital: more than {MAX_CAPITAL_DIGITS} digits before the point")
    if len(frac) > exp:
        raise YieldError(f"capital: {currency} has {exp} decimals, got {capital!r}")
    minor = int(Decimal(capital).scaleb(exp))
    if minor <= 0:
        raise YieldError("capital: must be more than 0")
    return minor


def _annualized(daily_minor: float, capital: int) -> float:
    return daily_minor * DAYS_PER_YEAR / capital


def realized_yield(
    machine: Mapping[str, Any],
    *,
    capital: str | None,
    currency: str | None,
    advertised_percent: float | None,
) -> dict[str, Any]:
    """The yield view of one report element (``machine``) for ``capital`` major units of
    ``currency`` (default: the machine's primary currency). Fractions, not percentages:
    0.12 is 12 % a year. ``annualized_yield`` is None without a capital or without verified
    revenue in that currency; the range is None then too, and when the report has no
    volatility (the mean daily revenue is not positive)."""
    revenue = machine["revenue"]
    currency = currency or revenue["primary_currency"]
    capital_in_minor = None
    if capital is not None:
        if currency is None:
            raise YieldError("currency: the machine has no verified revenue in the period")
        capital_in_minor = capital_minor(capital, currency)
    figures = next((c for c in revenue["currencies"] if c["currency"] == currency), None)
    annual = low = high = None
    amount = days = mean_daily = volatility = None
    if figures is not None:
        amount, days = figures["amount"], figures["days"]
        mean_daily, volatility = figures["mean_daily"], figures["volatility"]
    if figures is not None and capital_in_minor is not None:
        annual = amount / capital_in_minor * DAYS_PER_YEAR / days
        if volatility is not None:
            sd = volatility * mean_daily
            low = _annualized(mean_daily - sd, capital_in_minor)
            high = _annualized(mean_daily + sd, capital_in_minor)
    return {
        "label": LABEL,
        "device": machine["device"],
        "name": machine["name"],
        "period": {"from": machine["period"]["from"], "to": machine["period"]["to"]},
        "currency": currency,
        "exponent": None if currency is None else exponent(currency),
        "capital": capital,
        "capital_minor": capital_in_minor,
        "revenue_minor": amount,
        "days": days,
        "mean_daily_minor": mean_daily,
        "volatility": volatility,
        "annualized_yield": annual,
        "range": None if low is None else {"low": low, "high": high, "basis": RANGE_BASIS},
        "uptime_ratio": machine["uptime"]["ratio"],
        "advertised_yield": None if advertised_percent is None else advertised_percent / 100,
        "currencies": [c["currency"] for c in revenue["currencies"]],
    }
