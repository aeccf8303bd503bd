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
