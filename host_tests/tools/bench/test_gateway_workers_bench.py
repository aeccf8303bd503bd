"""`signet bench gateway --store postgres --workers 1,2`: one and several workers on one
PostgreSQL store drain the same backlog, SQLite's one worker beside them
(tools/bench/gateway_workers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from signet_tools.bench import gateway_workers as bench


@pytest.mark.timeout(240)
def test_a_small_run_drains_the_backlog_with_one_and_two_workers_and_sqlite(
    tmp_path: Path,
) -> None:
    result = bench.run(records=400, devices=4, workers=[1, 2], rounds=1, workdir=tmp_path)
    kinds = [d.kind for d in result.drains]
    assert kinds == ["sqlite", "postgres x1", "postgres x2"]
    for d in result.drains:
        assert d.records == 400 and d.exits == [0] * d.workers, d
        assert d.cpu_s["workers"] > 0 and d.cpu_s["broker"] >= 0  # 400 records: a tick or two
        assert d.cpu_s["postgres"] >= 0 and (d.store == "postgres" or d.cpu_s["postgres"] == 0)
        assert len(d.peak_kib) == d.workers and all(p > 0 for p in d.peak_kib)
        assert all(100 in points for points in d.rss)
    # The server's CPU is counted: 400 records are a tick or two of it (10 ms), so summed
    # over both PostgreSQL drains rather than asked of each.
    assert sum(d.cpu_s["postgres"] for d in result.drains if d.store == "postgres") > 0
    two = result.best("postgres x2")
    # Shared, not copied: each worker stored part of the backlog, together all of it.
    assert sum(two.shares) == 400 and all(two.shares), two.shares
    report = bench.format_report(result)
    for text in (
        "SQLite, 1 worker",
        "PostgreSQL, 1 worker(s)",
        "PostgreSQL, 2 worker(s)",
        "two workers / one worker:",
        "PostgreSQL / SQLite CPU per record, one worker:",
        "peak",
    ):
        assert text in report


def test_the_command_takes_store_and_worker_counts(monkeypatch, capsys) -> None:
    from signet_tools.cli.main import main

    seen: dict[str, object] = {}

    def run(**kwargs: object) -> bench.WorkersResult:
        seen.update(kwargs)
        raise bench.BenchError("stopped before any work")

    monkeypatch.setattr(bench, "run", run)
    assert main(["bench", "gateway", "--store", "postgres", "--workers", "2,1,3"]) == 1
    assert seen["workers"] == [1, 2, 3]
    assert capsys.readouterr().err.strip() == "signet: error: stopped before any work"
    assert main(["bench", "gateway", "--store", "postgres"]) == 1 and seen["workers"] == [1, 2]
    capsys.readouterr()
    assert main(["bench", "gateway", "--workers", "1,2"]) == 2
    assert "--workers: needs --store postgres" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "gateway", "--store", "postgres", "--workers", "1,x"])
    assert exit_.value.code == 2


def _drain(store: str, workers: int, rate: float, cpu_us: float) -> bench.WorkersDrain:
    records = 50_000
    drain_s = records / rate
    return bench.WorkersDrain(
        store, workers, 1, records, drain_s, {"workers": cpu_us * records / 1e6},
        [{100: 1}] * workers, [1] * workers, [0] * workers,
    )  # fmt: skip


def test_the_report_says_how_far_this_machine_s_cores_let_two_workers_go() -> None:
    """One worker at 7,400 records/s and 177 us per record keeps 1.31 cores busy; two at
    195 us per record fill 2 cores at 10,256 records/s: 1.39 x at most, below the target,
    and the report says so rather than leaving the miss unexplained."""
    drains = [
        _drain("sqlite", 1, 5_662, 152),
        _drain("postgres", 1, 7_400, 177),
        _drain("postgres", 2, 5_940, 195),
    ]
    result = bench.WorkersResult(50_000, 100, [1, 2], 1, drains, cores=2)
    report = bench.format_report(result)
    assert "1.31 cores busy" in report
    assert (
        "this machine's ceiling: 2 cores at the two-worker CPU per record drain at most"
        " 1.39 x one worker's rate (the 1.6 target needs more cores than this machine has)"
    ) in report
    roomy = bench.WorkersResult(50_000, 100, [1, 2], 1, drains, cores=8)
    assert "(room for the target)" in bench.format_report(roomy)
