"""`signet bench gateway`: the drain with the transparency log on and off, the log's cost (its
work timed in the gateway, against the gateway's CPU) and its storage per record
(tools/bench/gateway.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from signet_tools.bench import gateway as bench


def _drain(log: bool, drain_s: float, db: dict[str, int], rows: int) -> bench.Drain:
    return bench.Drain(
        log=log,
        publish_s=9.5,
        drain_s=drain_s,
        rss_points=[(10, 70_000, 71_000, 90_000)],
        stored=50_000,
        gateway_exit=0,
        summary_line="",
        gateway_cpu_s=9.0 if log else 8.7,
        broker_cpu_s=0.2,
        load_avg=1.5,
        db_bytes=db,
        record_row_bytes=rows,
        log_cpu_s=0.13 if log else 0.0,  # 2.6 us a record: 1.4 % of the 180 us with the log
    )


def _result(on: bench.Drain, off: bench.Drain) -> bench.BenchResult:
    return bench.BenchResult(
        records=50_000,
        devices=100,
        threads=2,
        gen_s=13.0,
        publish_s=on.publish_s,
        drain_s=on.drain_s,
        drain_rate=on.drain_rate,
        raw_rate=12_000.0,
        ratio=on.drain_rate / 12_000.0,
        rss_points=on.rss_points,
        stored=on.stored,
        gateway_exit=0,
        gateway_cpu_s=on.gateway_cpu_s,
        log_off=off,
        log_bytes=bench.log_storage(on.db_bytes, off.db_bytes),
        log_row_bytes=on.record_row_bytes - off.record_row_bytes,
        rounds=2,
        drains=[on, off],
        drain_rates=[
            ("on", on.drain_rate),
            ("off", off.drain_rate),
            ("off", 9_000.0),
            ("on", 9_500.0),
        ],
    )


def test_log_storage_is_every_table_s_growth_but_the_index_of_records_not_logged_yet() -> None:
    on = {"records": 20_000_000, "log_tiles": 1_720_320, "log_tail": 4096, "records_unlogged": 4096}
    off = {"records": 19_877_120, "log_tail": 4096, "records_unlogged": 2_691_072}
    assert bench.log_storage(on, off) == {"records": 122_880, "log_tiles": 1_720_320, "log_tail": 0}


def test_the_report_keeps_its_lines_and_adds_the_log_s_cost_and_storage() -> None:
    on = _drain(True, 5.0, {"records": 20_000_000, "log_tiles": 1_720_320}, 17_400_000)
    off = _drain(False, 4.9, {"records": 19_877_120}, 17_300_000)
    text = bench.format_report(_result(on, off))
    lines = text.splitlines()
    assert lines[0].startswith("backlog: 50000 single-record QoS 1 messages from 100 devices")
    assert "gateway drain (verified, stored, acked)      10,000 records/s  (5.00 s" in lines[1]
    assert "ratio                                          0.83  (meets the 0.75 target)" in text
    assert "  records in the database: 50000; gateway exit on SIGTERM: 0" in lines
    assert "  gateway drain with the log off               10,204 records/s  (4.90 s;" in text
    # 0.13 s of the writer's CPU for 50,000 records: 2.6 us of the gateway's 180 us a record.
    cost = "the log's cost                                  1.4 % of the drain  (meets the 5 %"
    assert cost in text
    assert "the log's work takes 2.6 us of the writer's CPU per record (1 drain;" in text
    assert "in the same drain (every thread and verifier process; 180 us); one round: not" in text
    # 1 - 10,000 / 10,204: 2.0 % slower with the log, in wall drain rate.
    assert "in wall drain rate                              2.0 %  (round by round +2.0 %" in text
    assert "CPU per record 180 us on, 174 us off (the best drains)" in text
    # (1,720,320 + 122,880) / 50,000 = 36.9; the rows 2.0 bytes longer.
    assert "the log's storage                              36.9 bytes per record beyond the" in text
    assert "(meets the 40 target): log_tiles 34.4, records 2.5 (pages in use" in text
    assert "each record's row 2.0 bytes longer)" in text
    assert (
        "  every drain, in the order run: on 10,000, off 10,204, off 9,000, on 9,500 records/s"
        in (lines)
    )
    assert "the best of 2 drains each, alternating):" in text
    slow = _drain(True, 5.5, {"records": 20_000_000, "log_tiles": 2_100_000}, 17_400_000)
    text = bench.format_report(_result(slow, off))
    slow.log_cpu_s = 0.6  # 12 us of 180
    text = bench.format_report(_result(slow, off))
    assert "6.7 % of the drain  (MISSES the 5 % target)" in text
    assert "in wall drain rate                             10.9 %" in text
    assert "44.5 bytes per record beyond the record  (MISSES the 40 target)" in text


def test_the_log_s_cost_is_its_work_timed_in_the_gateway_and_says_when_it_is_established() -> None:
    """The cost: the writer's CPU in the log's work per record (timed in the gateway) over
    the gateway's whole CPU per record in the same drain; the median of the rounds, each
    round's figure beside it, established when every round is on one side of the target.
    Beside it the wall drain rate, round by round against the same round's drain without
    the log, which the load swings either way (here -40 % to +10 %)."""
    on = [_kind(5.0, 9.0, 1), _kind(6.2, 9.3, 2), _kind(5.5, 10.0, 3)]  # 180, 186, 200 us
    for d, log_cpu_s in zip(on, (0.13, 0.15, 0.14), strict=True):  # 2.6, 3.0, 2.8 us
        d.log_cpu_s = log_cpu_s
    off = [_drain(False, 5.5, {}, 0), _drain(False, 5.6, {}, 0), _drain(False, 5.0, {}, 0)]
    for r, d in enumerate(off, 1):
        d.round = r
    result = _result(on[0], off[0])
    result.rounds, result.drains = 3, [on[0], off[0], off[1], on[1], on[2], off[2]]
    assert result.log_costs_pct == pytest.approx([100 * 0.13 / 9.0, 100 * 0.15 / 9.3, 1.4])
    text = bench.format_report(result)
    # 1.44, 1.61, 1.40 %: the median 1.4.
    assert (
        "the log's cost                                  1.4 % of the drain  (meets the 5 %" in text
    )
    assert "2.8 us of the writer's CPU per record (median of 3: 2.6 to 3.0 us;" in text
    assert "(every thread and verifier process; 186 us)" in text
    assert "round by round 1.4, 1.6, 1.4 %: every round within the target: established" in text
    # 1 - 10,000/9,091, 1 - 8,065/8,929, 1 - 9,091/10,000; the log-on drains 21 % apart.
    wall = (
        "in wall drain rate                              9.1 %  (round by round -10.0, +9.7, +9.1"
    )
    assert wall in text
    assert (
        "%, the log on against the same round's drain with it off; across rounds drains of" in text
    )
    assert "one kind differ by up to 21 %); CPU per record 180 us on, 174 us off" in text
    on[1].drain_s = 4.0  # a disturbed round: its wall rate swings, the log's cost does not
    text = bench.format_report(result)
    assert (
        "in wall drain rate                            -10.0 %  (round by round -10.0, -40.0, +9.1"
        in text
    )
    assert "round by round 1.4, 1.6, 1.4 %: every round within the target: established" in text
    on[1].log_cpu_s = 0.5  # 5.4 % of 9.3 s
    text = bench.format_report(result)
    assert "1.4 % of the drain  (meets the 5 % target)" in text
    assert "round by round 1.4, 5.4, 1.4 %: rounds on both sides of the target: not" in text
    for d in on:
        d.log_cpu_s = 1.0
    assert "every round beyond the target: established" in bench.format_report(result)


def _kind(drain_s: float, cpu_s: float, round_: int, console: bool = False) -> bench.Drain:
    d = _drain(True, drain_s, {"records": 20_000_000}, 17_400_000)
    d.gateway_cpu_s, d.round, d.console = cpu_s, round_, console
    if console:
        d.polls, d.page_cpu_s, d.poller_cpu_s = 5, 0.025, 0.02
    return d


def test_the_console_s_cost_is_its_cpu_per_page_and_says_when_it_is_established() -> None:
    """The cost: the gateway's CPU for a fleet page (read from it idle), at one a second,
    as a share of the machine's cores; the median of the rounds, each round's figure beside
    it, established when every round is on one side of the target. Beside it the noisy
    measures: the pages' share of the drain's CPU, the whole CPU per record and the wall
    drain rate, round by round (the load drifts over a run: every drain of the third round
    costs more CPU), with the spread between drains of one kind; the client's CPU."""
    on = [_kind(5.0, 9.0, 1), _kind(5.5, 9.1, 2), _kind(7.0, 11.0, 3)]  # 180, 182, 220 us
    consoles = [_kind(5.1, 9.4, 1, True), _kind(6.0, 9.5, 2, True), _kind(7.1, 11.5, 3, True)]
    consoles[1].page_cpu_s = 0.027
    off = _drain(False, 4.9, {"records": 19_877_120}, 17_300_000)
    result = _result(on[0], off)
    result.console, result.cores = consoles[0], 2
    result.drains = [on[0], off, consoles[0], consoles[1], off, on[1], on[2], off, consoles[2]]
    text = bench.format_report(result)
    assert "against the drain with the log on without it; medians of 3 rounds):" in text
    # Medians 8,333 (9,804, 8,333, 7,042) and 9,091 (10,000, 9,091, 7,143) records/s.
    assert "with the console polled         8,333 records/s  (median of 3: 7,042 to 9,804;" in text
    assert "15 fleet pages served)" in text
    assert "without it (the log on)         9,091 records/s  (median of 3: 7,143 to 10,000)" in text
    # 25 ms of CPU a second of 2 cores: 1.25 %; the rounds 1.2, 1.4 (27 ms), 1.2.
    assert (
        "the console's cost                              1.2 % of the drain  (meets the 5 %" in text
    )
    assert "a fleet page takes 25.0 ms of the gateway's CPU (median of 3: 25.0 to 27.0 ms;" in text
    assert "round by round 1.2, 1.4, 1.2 %: every round within the target: established" in text
    # 25 ms x 5 pages of 9.4 s: 1.3 %; 27 ms x 5 of 9.5 s: 1.4 %; 25 x 5 of 11.5 s: 1.1 %.
    assert "in the drains on this machine                   1.3 % of the gateway's CPU" in text
    assert "round by round 1.3, 1.4, 1.1 %" in text
    # 1 - 180/188, 1 - 182/190, 1 - 220/230; drains of one kind 188 to 230 us: 22 % apart.
    assert "CPU per record                    190 us with the console, 182 us without" in text
    assert (
        "(round by round +4.3, +4.2, +4.3 %; across rounds drains of one kind differ by up" in text
    )
    assert "to 22 %: a cost beyond the pages' shows only if larger than that)" in text
    assert (
        "in wall drain rate                              2.0 %  (round by round +2.0, +8.3" in text
    )
    assert "the polling client                              4.0 ms of CPU per page" in text
    assert "the gateway's CPU per record, in the same order: on 180, off 174, console 188" in text
    # One round beyond the target: the median meets it, but that is not established.
    consoles[1].page_cpu_s = 0.2  # 10 % of 2 cores
    text = bench.format_report(result)
    assert "1.2 % of the drain  (meets the 5 % target)" in text
    assert "round by round 1.2, 10.0, 1.2 %: rounds on both sides of the target: not" in text
    for d in consoles:
        d.page_cpu_s = 0.2
    text = bench.format_report(result)
    assert "MISSES the 5 % target" in text and "every round beyond the target: established" in text
    consoles[0].poll_errors = ["timed out"]
    assert "15 fleet pages served, 1 failed)" in bench.format_report(result)


@pytest.mark.timeout(180)
def test_a_small_run_drains_the_same_records_with_the_log_on_and_off(tmp_path: Path) -> None:
    result = bench.run(records=300, devices=3, workdir=tmp_path, raw_seconds=0.2, log=print)
    assert result.log_off is not None and result.stored == result.log_off.stored == 300
    for name, logged in (("log-on", 300), ("log-off", 0)):
        with sqlite3.connect(tmp_path / name / "gateway.db") as conn:
            count = conn.execute("SELECT count(log_index) FROM records").fetchone()[0]
            unlogged_index = conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE name = 'records_unlogged'"
            ).fetchone()[0]
        assert count == logged, name
        # The baseline is a gateway without the log: no index of the records not logged yet.
        assert unlogged_index == (1 if logged else 0), name
    # 300 leaf hashes at least (9,600 bytes), in whole pages; the log_index column's bytes.
    assert result.log_bytes["log_tiles"] >= 3 * 4096
    assert 300 <= result.log_row_bytes <= 3 * 300
    report = bench.format_report(result)
    assert "gateway drain with the log off" in report and "the log's storage" in report
    # The log's cost: its work timed in each log-on drain's gateway (its summary line at the
    # stop), as a share of the gateway's CPU in that drain; the median is what is printed.
    ons = result.of_kind("on")
    assert len(ons) == 2
    for d in ons:
        assert f", log {d.log_cpu_s:.4f} s CPU;" in d.summary_line
        assert 0 < d.log_cpu_s < d.stored * 1e-3  # under a millisecond a record
    # (A drain this short can read 0 of the gateway's CPU: /proc counts in 10 ms ticks.)
    shares = [100 * d.log_cpu_s / d.gateway_cpu_s for d in ons if d.gateway_cpu_s]
    assert result.log_costs_pct == shares and all(0 < share < 100 for share in shares)
    cost = f"  the log's cost                           {result.log_cost_pct:10.1f} % of the drain"
    assert cost in report and "us of the writer's CPU per record (median of 2:" in report
    assert "in wall drain rate" in report.split("the log's storage")[0]
    # The console's drains: the same records, the API server up and answering the poller.
    assert result.console is not None and result.console.stored == 300
    assert result.console.poll_errors == []
    assert "the console's cost" in report
    # The console's own work, read from each console drain's gateway once it is idle.
    consoles = result.of_kind("console")
    assert len(consoles) == 2 and all(d.page_cpu_s > 0 for d in consoles)
    assert "a fleet page takes" in report and "in wall drain rate" in report
    with sqlite3.connect(tmp_path / "console" / "gateway.db") as conn:
        assert conn.execute("SELECT count(log_index) FROM records").fetchone()[0] == 300


def test_the_command_passes_its_rounds_to_the_benchmark(monkeypatch, capsys) -> None:
    from signet_tools.cli.main import main

    seen: dict[str, object] = {}

    def run(**kwargs: object) -> bench.BenchResult:
        seen.update(kwargs)
        raise bench.BenchError("stopped before any work")

    monkeypatch.setattr(bench, "run", run)
    assert main(["bench", "gateway", "--rounds", "1"]) == 1
    assert seen["rounds"] == 1
    assert capsys.readouterr().err.strip() == "signet: error: stopped before any work"
    assert main(["bench", "gateway"]) == 1 and seen["rounds"] == 2
