"""How report figures are written for people, and for CSV, with one rounding rule.

The JSON report carries the exact figures (integer ms and minor units, floats at full
precision). The CSV writes the same numbers without rounding (durations converted to
seconds exactly). The table rounds for reading: a figure shown with d digits is the JSON
value, as JSON prints it, rounded half away from zero to d digits, so anyone rounding
the JSON by hand gets the table. docs/MCR.md section 7 states the rule per field.
"""

from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal
from typing import Final

# Minor-unit exponents that are not 2, for display only (amounts stay integers).
_EXPONENTS: Final[dict[str, int]] = {
    **dict.fromkeys(("JPY", "KRW", "VND", "CLP", "ISK", "PYG", "UGX", "XAF", "XOF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
}

NOT_AVAILABLE: Final = "n/a"


def _decimal(x: float) -> Decimal:
    # repr is the shortest text that reads back as x: the digits JSON shows. Rounding
    # those (not the binary value) is what a person checking the JSON by hand does.
    return Decimal(repr(float(x)))


def rounded(x: float | None, places: int, *, sign: bool = False, percent: bool = False) -> str:
    """x with `places` decimals, half away from zero; "n/a" for None.

    percent: x is a fraction shown as a percentage (0.98125 -> "98.13%" with 2 places).
    sign: a leading "+" on positives (a trend).
    """
    if x is None:
        return NOT_AVAILABLE
    value = _decimal(x).scaleb(2) if percent else _decimal(x)
    text = format(value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP), "f")
    if text.startswith("-") and Decimal(text) == 0:
        text = text[1:]  # -0.00 would look like a fall
    if sign and not text.startswith("-"):
        text = "+" + text
    return text + ("%" if percent else "")


def exact_percent(x: float | None) -> str:
    """A setting given as a fraction, as a percentage with every digit it has (0.125 -> 12.5%)."""
    if x is None:
        return NOT_AVAILABLE
    return format(_decimal(x).scaleb(2).normalize(), "f") + "%"


def _half_up(ms: int, unit: int) -> int:
    """ms in whole `unit`s, ties up (durations are never negative)."""
    return (2 * ms + unit) // (2 * unit)


def duration(ms: int) -> str:
    """A duration for people: 48.7s, 4m 9s, 2h 0m 0s, 3d 4h 5m; rounded half up to the last
    unit shown (which is chosen after rounding: 59.96 s is 1m 0s)."""
    tenths = _half_up(ms, 100)
    if tenths < 600:
        return f"{tenths // 10}.{tenths % 10}s"
    s = _half_up(ms, 1000)
    if s < 86_400:
        h, rest = divmod(s, 3600)
        m, s = divmod(rest, 60)
        return f"{h}h {m}m {s}s" if h else f"{m}m {s}s"
    d, rest = divmod(_half_up(ms, 60_000), 1440)
    h, m = divmod(rest, 60)
    return f"{d}d {h}h {m}m"


def seconds(ms: int) -> str:
    """ms as seconds, exactly: 48700 -> "48.7", 7200000 -> "7200" (CSV: nothing lost)."""
    sign = "-" if ms < 0 else ""
    whole, frac = divmod(abs(ms), 1000)
    return f"{sign}{whole}" + (f".{frac:03d}".rstrip("0") if frac else "")


def number(x: float | None) -> str:
    """A number exactly as the JSON report writes it (a float in its shortest round-trip
    text); "" for None (an empty CSV cell)."""
    return "" if x is None else json.dumps(x)


def exponent(cur: str) -> int:
    """The currency's minor-unit exponent (2 unless the table above says otherwise): 1250
    minor units of EUR are 12.50 EUR, of JPY 1250 JPY."""
    return _EXPONENTS.get(cur, 2)


def money(amount: int, cur: str) -> str:
    """'12.50 EUR' from 1250 minor units (display only)."""
    exp = exponent(cur)
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), 10**exp)
    return f"{sign}{whole}.{frac:0{exp}d} {cur}" if exp else f"{sign}{whole} {cur}"


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """'1 outage', '2 outages', '0 outages': a whole count with its noun in the right number."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"
