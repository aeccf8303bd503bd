"""The precomputed comb tables (firmware/lib/signet/comb_<curve>.py): what
tools/device/comb_tables.py writes today, and the same k*G as the table a board builds
at start. The firmware uses them only frozen into a firmware, or on CPython, so the
ECDSA tests under CPython run on them and the MicroPython ones on the built table."""

from __future__ import annotations

import pytest

from signet import comb, ec
from signet_tools.device import comb_tables


@pytest.mark.parametrize("curve", comb_tables.CURVES)
def test_the_committed_table_is_the_generated_one(curve: str) -> None:
    assert comb_tables.path(curve).read_text() == comb_tables.render(curve), (
        f"regenerate with: python -m signet_tools.device.comb_tables ({curve})"
    )


@pytest.mark.parametrize("curve", comb_tables.CURVES)
def test_both_shapes_give_the_same_points(curve: str) -> None:
    c = ec.curve_by_name(curve)
    n = c.n
    scalars = [1, 2, 3, n - 1, n - 2, (1 << 255) % n, int("5" * 64, 16) % n]
    scalars += [(0x9E3779B97F4A7C15 * (i + 1)) ** 4 % n for i in range(20)]
    try:
        ec.release_table(c)
        assert ec.comb_table(c)[1:] == (7, 4)  # CPython: the precomputed one
        precomputed = [ec.public_point(c, k) for k in scalars]
        shape = (ec.COMB_TEETH, ec.COMB_TABLES)
        c._comb = (comb.build(c, *shape), *shape)  # what a board builds at start
        built = [ec.public_point(c, k) for k in scalars]
    finally:
        ec.release_table(c)
    assert precomputed == built
