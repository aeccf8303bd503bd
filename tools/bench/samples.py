"""Typical field values for each record kind, shared by the benchmarks."""

from __future__ import annotations

from typing import Final

FIELDS_BY_KIND: Final[dict[str, dict[str, int | str]]] = {
    "boot": {"rc": "power_on", "fw": "0.1.0", "ls": 0},
    "hb": {"iv": 60000, "st": "ok"},
    "rev": {"am": 250, "cur": "EUR", "src": "pulse", "ref": "bench-0001"},
    "meter": {"q": 1234, "unit": "Wh", "src": "uart"},
    "evt": {"ev": "door_open"},
}
