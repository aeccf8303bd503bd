"""tools/bench/audit.py: the benchmark runs on a small bundle and splits --jobs 1's CPU time
into the raw verify, the figures' recomputation and the rest (no bound on any figure here:
timing belongs to `signet bench audit`, not to the suite)."""

from __future__ import annotations

import pytest

from signet_tools.bench.audit import AuditBench, format_report, run


def test_a_small_bundle_is_measured_and_its_time_split() -> None:
    result = run(records=1500, raw_seconds=0.2)
    assert result.records == 1500 and result.log_size == 1500 + 2 * 75
    assert result.replay_cpu_s > 0 and result.verify_cpu_rate > 0 and result.raw_cpu_rate > 0
    total, raw, replay, rest = result.split_us()
    assert total == pytest.approx(raw + replay + rest)
    report = format_report(result)
    assert "recomputing the figures" in report and "without the recomputation" in report


def test_the_split_adds_up_and_the_counterfactual_ratio_leaves_the_replay_out() -> None:
    # 100 us per record in all, 60 of them the raw verify, 25 the replay: 15 for the rest.
    bench = AuditBench(
        records=10_000, log_size=11_000, bundle_bytes=1, generate_s=0, store_s=0, export_s=0,
        raw_rate=1, raw_cpu_rate=1e6 / 60, verify_cpu_rate=1e6 / 100, replay_cpu_s=0.25,
    )  # fmt: skip
    assert bench.split_us() == pytest.approx((100, 60, 25, 15))
    assert bench.cpu_ratio == pytest.approx(0.6)
    report = format_report(bench)
    assert "100.0 us = raw verify 60.0 + recomputing the figures 25.0 + the rest 15.0" in report
    assert "without the recomputation the ratio would be 0.80" in report
    assert "ratio 0.60 (target >= 0.8): BELOW TARGET" in report
