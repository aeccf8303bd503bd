"""The precomputed comb tables (firmware/lib/signet/comb_<curve>.py and .bin): what
tools/device/comb_tables.py writes today, and the same k*G as the table a board builds
at start. The modules are used frozen into a firmware, or on CPython, the .bin files on
a board installed from files (fwtests/test_fw_comb.py runs that path under both)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from signet import comb, ec
from signet_tools.device import comb_tables


@pytest.mark.parametrize("curve", comb_tables.CURVES)
def test_the_committed_table_is_the_generated_one(curve: str) -> None:
    assert comb_tables.path(curve).read_text() == comb_tables.render(curve), (
        f"regenerate with: python -m signet_tools.device.comb_tables ({curve})"
    )


@pytest.mark.parametrize("curve", comb_tables.CURVES)
def test_the_committed_table_file_is_the_generated_table(curve: str) -> None:
    data = comb_tables.bin_path(curve).read_bytes()
    assert data == comb_tables.table(curve), (
        f"regenerate with: python -m signet_tools.device.comb_tables ({curve})"
    )
    module = __import__(f"signet.comb_{curve}", fromlist=["TABLE"])
    assert data == b"".join(module.TABLE)
    # what the firmware checks a table file against before it reads a point from it
    assert comb._FILE_SHA256[curve] == hashlib.sha256(data).digest(), (
        "update comb._FILE_SHA256 to the digests python -m signet_tools.device.comb_tables prints"
    )
    assert len(data) == comb._FILE_BYTES
    assert (module.TEETH, module.TABLES) == (comb.FILE_TEETH, comb.FILE_TABLES)


def test_a_refused_table_file_is_said(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    damaged = tmp_path / "comb_p256.bin"
    damaged.write_bytes(comb_tables.bin_path("p256").read_bytes()[:-64])
    assert comb.open_table(ec.curve_by_name("p256"), str(damaged)) is None
    assert capsys.readouterr().out == (
        f"signet: comb table {damaged} refused (not 32768 bytes): building one\n"
    )


def test_a_table_file_cut_short_while_in_use_stops_the_signature(tmp_path: Path) -> None:
    # Never a wrong point: a read that comes back short raises instead.
    copy = tmp_path / "comb_p256.bin"
    shutil.copyfile(comb_tables.bin_path("p256"), copy)
    c = ec.curve_by_name("p256")
    try:
        ec.release_table(c)
        c._comb = comb.open_table(c, str(copy))
        assert ec.public_point(c, 12345) == ec.public_point(ec.Curve("p256", *_params(c)), 12345)
        with copy.open("r+b") as f:
            f.truncate(4096)
        with pytest.raises(OSError, match="short read"):
            ec.public_point(c, (1 << 255) + 12345)
    finally:
        ec.release_table(c)


def _params(c: ec.Curve) -> tuple[int, ...]:
    return (c.p, c.a, c.b, c.n, c.gx, c.gy)


@pytest.mark.parametrize("curve", comb_tables.CURVES)
def test_both_shapes_give_the_same_points(curve: str) -> None:
    c = ec.curve_by_name(curve)
    n = c.n
    scalars = [1, 2, 3, n - 1, n - 2, (1 << 255) % n, int("5" * 64, 16) % n]
    scalars += [(0x9E3779B97F4A7C15 * (i + 1)) ** 4 % n for i in range(20)]
    try:
        ec.release_table(c)
        assert ec.comb_table(c)[1:] == (8, 4, ec._get)  # CPython: the precomputed one
        precomputed = [ec.public_point(c, k) for k in scalars]
        shape = (ec.COMB_TEETH, ec.COMB_TABLES)
        c._comb = (comb.build(c, *shape), *shape, ec._get)  # what a board builds at start
        built = [ec.public_point(c, k) for k in scalars]
    finally:
        ec.release_table(c)
    assert precomputed == built
