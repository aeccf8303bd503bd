"""MCR arithmetic: revenue trend and volatility, the indicative score and its letter.

Pure functions over plain numbers, no database: the report feeds them the day
rows of a period, and an auditor can re-run them on figures taken from an
exported bundle. The score is Signet's own indicative score, not peaq's: peaq
does not publish its weights. docs/MCR.md explains every constant below.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from .display import rounded

SCORE_LABEL: Final = "Signet's own indicative score, not peaq's"

# (minimum integer score, letter), best first: peaq's published letter scale.
LETTERS: Final[tuple[tuple[int, str], ...]] = (
    (95, "AAA"),
    (85, "AA"),
    (75, "A"),
    (60, "BBB"),
    (45, "BB"),
    (30, "B"),
)
NOT_RATED: Final = "NR"

# Component weights; they add up to 100.
W_UPTIME: Final = 30.0
W_INTEGRITY: Final = 20.0
W_STABILITY: Final = 20.0
W_TREND: Final = 15.0
W_TRUST: Final = 10.0
W_HISTORY: Final = 5.0

TRUST_FRACTION: Final[dict[str, float]] = {"hardware": 1.0, "software": 0.4}
HISTORY_FULL_DAYS: Final = 90.0  # history at or beyond this earns the full history weight
TREND_ZERO_AT: Final = -0.10  # relative slope (per day) at which the trend component reaches 0
# Two signed versions of one sequence number, or a revoked key: the data cannot be
# trusted whatever it says, so the score is capped inside NR.
CAP_UNTRUSTED: Final = 29


@dataclass(frozen=True)
class SeriesStats:
    """Trend and volatility of one currency's daily revenue series."""

    days: int
    mean: float
    slope: float | None  # least-squares slope, minor units per day
    trend: float | None  # slope / mean: relative change per day
    volatility: float | None  # coefficient of variation: population stdev / mean


def series_stats(daily: Sequence[int]) -> SeriesStats:
    """Trend and volatility of a daily series (zero days included, oldest first).

    trend = least-squares slope over day index 0..D-1, divided by the mean;
    volatility = population standard deviation / mean. Both are None when the
    mean is not positive (no or net-negative revenue); the trend is None with
    fewer than two days (a slope needs two points).
    """
    d = len(daily)
    if d == 0:
        return SeriesStats(0, 0.0, None, None, None)
    mean = math.fsum(daily) / d
    slope: float | None = None
    if d >= 2:
        x_mean = (d - 1) / 2.0
        sxx = math.fsum((i - x_mean) ** 2 for i in range(d))
        sxy = math.fsum((i - x_mean) * (y - mean) for i, y in enumerate(daily))
        slope = sxy / sxx
    if mean <= 0:
        return SeriesStats(d, mean, slope, None, None)
    var = math.fsum((y - mean) ** 2 for y in daily) / d
    return SeriesStats(
        days=d,
        mean=mean,
        slope=slope,
        trend=None if slope is None else slope / mean,
        volatility=math.sqrt(var) / mean,
    )


def letter(score: int) -> str:
    """The letter for an integer 0..100 score (AAA >= 95 ... B >= 30, else NR)."""
    for minimum, name in LETTERS:
        if score >= minimum:
            return name
    return NOT_RATED


@dataclass(frozen=True)
class ScoreInputs:
    """What the score reads; each field is a figure shown in the report."""

    uptime_ratio: float | None
    integrity_ratio: float | None
    revenue: SeriesStats | None  # the primary currency's series; None without revenue
    tier: str
    history_days: float
    equivocations: int
    revoked: bool


@dataclass(frozen=True)
class Component:
    name: str
    weight: float
    fraction: float  # 0..1 of the weight earned
    points: float  # weight * fraction
    basis: str  # the figure it came from, for people


@dataclass(frozen=True)
class Score:
    score: int
    letter: str
    raw: float  # sum of the components before rounding and caps
    components: tuple[Component, ...]
    caps: tuple[str, ...]  # reasons a cap applied
    label: str = SCORE_LABEL


def _clamp01(x: float) -> float:
    return 0.0 if x < 0.0 else 1.0 if x > 1.0 else x


def _component(name: str, weight: float, fraction: float, basis: str) -> Component:
    fraction = _clamp01(fraction)
    return Component(name, weight, fraction, weight * fraction, basis)


def score(inputs: ScoreInputs) -> Score:
    """Signet's indicative score: six weighted components, rounded, then capped."""
    up = inputs.uptime_ratio
    integ = inputs.integrity_ratio
    rev = inputs.revenue
    parts = [
        _component("uptime", W_UPTIME, up or 0.0, f"uptime ratio {rounded(up, 4)}"),
        _component("integrity", W_INTEGRITY, integ or 0.0, f"integrity ratio {rounded(integ, 4)}"),
    ]
    if rev is None or rev.volatility is None:
        parts.append(_component("stability", W_STABILITY, 0.0, "no positive daily revenue"))
    elif rev.trend is None:
        # One day has no spread to measure: unknown, not perfectly stable.
        parts.append(_component("stability", W_STABILITY, 0.5, "one day of revenue: half weight"))
    else:
        parts.append(
            _component(
                "stability",
                W_STABILITY,
                1.0 - rev.volatility,
                f"1 - volatility {rounded(rev.volatility, 4)}",
            )
        )
    if rev is None or rev.mean <= 0:
        parts.append(_component("trend", W_TREND, 0.0, "no positive daily revenue"))
    elif rev.trend is None:
        parts.append(_component("trend", W_TREND, 0.5, "one day of revenue: half weight"))
    else:
        parts.append(
            _component(
                "trend",
                W_TREND,
                1.0 - rev.trend / TREND_ZERO_AT,
                f"relative slope {rounded(rev.trend, 4, sign=True)}/day"
                f" (0 at {rounded(TREND_ZERO_AT, 2, sign=True)}/day)",
            )
        )
    parts.append(
        _component(
            "trust",
            W_TRUST,
            TRUST_FRACTION.get(inputs.tier, 0.0),
            f"tier {inputs.tier}",
        )
    )
    parts.append(
        _component(
            "history",
            W_HISTORY,
            inputs.history_days / HISTORY_FULL_DAYS,
            f"{rounded(inputs.history_days, 2)} days of {rounded(HISTORY_FULL_DAYS, 0)}",
        )
    )
    raw = math.fsum(p.points for p in parts)
    value = min(100, max(0, math.floor(raw + 0.5)))
    caps: list[str] = []
    if inputs.equivocations > 0:
        caps.append(f"equivocation ({inputs.equivocations}): score capped at {CAP_UNTRUSTED}")
    if inputs.revoked:
        caps.append(f"key revoked: score capped at {CAP_UNTRUSTED}")
    if caps:
        value = min(value, CAP_UNTRUSTED)
    return Score(value, letter(value), raw, tuple(parts), tuple(caps))
