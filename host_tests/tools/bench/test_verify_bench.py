"""Smoke test for tools/bench/verify.py (the real figures come from running it directly)."""

from __future__ import annotations

from signet_tools.bench.verify import format_report, run


def test_bench_runs_and_reports() -> None:
    result = run(duration_s=0.3, records=10, devices=2)
    for field in ("verify_per_s", "raw_ecdsa_per_s", "ratio", "secp256k1_verify_per_s"):
        assert result[field] > 0
    assert result["ratio"] == result["verify_per_s"] / result["raw_ecdsa_per_s"]
    # No bound on the ratio here: timing belongs to `signet bench verify`, not to the suite.
    report = format_report(result)
    assert "records/s" in report and "ratio" in report
