"""Benchmark: several gateway workers on one PostgreSQL store (`signet bench gateway --store
postgres --workers 1,2`): does the drain scale out, and what does PostgreSQL cost?

The machinery is gateway.py's: the same backlog (``records`` genuine signed records from
``devices`` keys, single-record QoS 1 messages published while the gateway is stopped, so
that all of them queue in its session), the same drain (`signet gateway run` processes,
timed from the first "connected" line until every device's retained ack equals its last n),
the same CPU and RSS readings from /proc. Each drain starts from scratch: a private
Mosquitto, a fresh database; one PostgreSQL cluster (tools/runners/postgres.py, fsync on)
serves every PostgreSQL drain, a new database each.

Kinds of drain, ``rounds`` of each in alternating order (the best of each counts: on a
shared machine a slower one was disturbed):

- ``sqlite``: one worker on a SQLite store, the single-machine reference;
- ``postgres xN`` for each N of ``workers``: N workers (``--worker 1..N``, [mqtt]
  shared_group) on one PostgreSQL database.

Every worker has one verifier process ([ingest] verify_threads = 1), so N workers are N
verifier processes: the comparison measures scale-out across processes, not threads. The
backlog is published after each worker subscribed once and stopped: Mosquitto hands each
member of the group its share while it is stopped (docs/GATEWAY.md, Several workers), so
every worker finds its share queued when the drain starts.

CPU per record: every process's CPU from the workers' connection to the drain's end
(workers with their verifier processes, the PostgreSQL server with its backends,
Mosquitto), over the records drained. RSS: each worker's at 10 %, 50 % and 100 % of the
records acknowledged, and its peak (VmHWM).
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from signet_gateway.store.sqlite import Store
from signet_tools.runners.gateway_process import create_gateway_database, write_gateway_config

from .gateway import (
    BenchError,
    _AckWatch,
    _device_records,
    _first_start,
    _GatewayProc,
    _publish,
    _secret,
    cpu_seconds,
    tree_cpu_seconds,
)

TARGET_SCALE: Final = 1.6  # two workers drain at least this many times as fast as one
TARGET_PG_CPU: Final = 1.5  # PostgreSQL's CPU per record at most this many times SQLite's
GROUP: Final = "bench"
_MILESTONES: Final = (10, 50, 100)  # % of the records acknowledged: RSS read there


@dataclass
class WorkersDrain:
    """One drain of the backlog by ``workers`` gateway processes on one store."""

    store: str  # "sqlite" or "postgres"
    workers: int
    round: int
    records: int
    drain_s: float
    cpu_s: dict[str, float]  # "workers", "postgres", "broker": CPU from connect to drained
    rss: list[dict[int, int]]  # per worker: % acknowledged -> RSS in KiB
    peak_kib: list[int]  # per worker: VmHWM
    exits: list[int]
    shares: list[int] = field(default_factory=list)  # records each worker stored

    @property
    def kind(self) -> str:
        return "sqlite" if self.store == "sqlite" else f"postgres x{self.workers}"

    @property
    def rate(self) -> float:
        return self.records / self.drain_s

    @property
    def cpu_us(self) -> float:
        """Every process's CPU per record: workers, PostgreSQL, Mosquitto."""
        return sum(self.cpu_s.values()) / self.records * 1e6

    @property
    def cores_busy(self) -> float:
        """Cores kept busy on average over the drain, by every process."""
        return sum(self.cpu_s.values()) / self.drain_s


@dataclass
class WorkersResult:
    records: int
    devices: int
    workers: list[int]
    rounds: int
    drains: list[WorkersDrain]
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)

    def best(self, kind: str) -> WorkersDrain:
        return max((d for d in self.drains if d.kind == kind), key=lambda d: d.rate)

    @property
    def scale(self) -> float | None:
        """The best two-worker drain rate over the best one-worker one (None without both)."""
        kinds = {d.kind for d in self.drains}
        if not {"postgres x1", "postgres x2"} <= kinds:
            return None
        return self.best("postgres x2").rate / self.best("postgres x1").rate

    @property
    def scale_ceiling(self) -> float | None:
        """The most two workers could drain over one worker's rate on this machine, whatever
        the design: every core busy at the two-worker drain's CPU per record."""
        if self.scale is None:
            return None
        return self.cores / (self.best("postgres x2").cpu_us / 1e6) / self.best("postgres x1").rate

    @property
    def pg_cpu_ratio(self) -> float | None:
        kinds = {d.kind for d in self.drains}
        if not {"postgres x1", "sqlite"} <= kinds:
            return None
        return self.best("postgres x1").cpu_us / self.best("sqlite").cpu_us

    @property
    def meets(self) -> bool:
        scale, cpu = self.scale, self.pg_cpu_ratio
        return (scale is None or scale >= TARGET_SCALE) and (cpu is None or cpu <= TARGET_PG_CPU)


def _rss_kib(pid: int) -> tuple[int, int]:
    from signet_gateway.ingest.service import rss_kib

    return rss_kib(pid)


def _postmaster_pid(data: Path) -> int:
    return int((data / "postmaster.pid").read_text().split()[0])


class _Drain:
    """A fresh broker and database, ``workers`` gateway processes with their sessions."""

    def __init__(self, workdir: Path, store: str, workers: int, round_: int, pg: Any) -> None:
        from signet_tools.runners.mosquitto import Mosquitto

        self.store, self.workers, self.round, self.pg = store, workers, round_, pg
        name = f"{store}-x{workers}-{round_}"
        self.dir = workdir / name
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.broker = Mosquitto(self.dir / "broker")
        self.db_name = name.replace("-", "_")
        self.where: Path | str = self.dir / "gateway.db"
        self.config = self.dir / "gateway.toml"

    def names(self) -> list[str | None]:
        return [None] if self.store == "sqlite" else [str(i + 1) for i in range(self.workers)]

    def prepare(self, keys: dict[int, Any]) -> None:
        """Broker, database with the devices enrolled, each worker's session (a run, stopped)."""
        self.broker.start()
        mqtt: dict[str, Any] = {"client_id": "signet-bench", "receive_maximum": 4000}
        if self.store == "postgres":
            self.where = self.pg.new_database(self.db_name)
            create_gateway_database(self.where)
            mqtt["shared_group"] = GROUP
        write_gateway_config(
            self.config,
            self.broker.port,
            self.where,
            mqtt=mqtt,
            ingest={"verify_threads": 1, "batch_max": 1000, "batch_ms": 50},
        )
        with Store(self.where) as store:
            for i, key in keys.items():
                store.enroll(key, "software", name=f"bench-{i:03d}")
        for name in self.names():
            _first_start(self.config, self.dir / f"first-{name}.log", worker=name)

    def drain(self, per_device: dict[int, list[bytes]], kids: dict[int, str]) -> WorkersDrain:
        records = sum(len(recs) for recs in per_device.values())
        _publish(self.broker.port, per_device, kids)
        last = {kids[i]: len(recs) for i, recs in per_device.items()}
        watch = _AckWatch(self.broker.port, last, records)
        watch.milestones = []  # RSS is read here, for every worker
        procs: list[_GatewayProc] = []
        rss: list[dict[int, int]] = []
        try:
            broker_pid = self.broker._proc.pid if self.broker._proc is not None else 0
            pg_pid = _postmaster_pid(self.pg.data) if self.store == "postgres" else 0
            cpu0 = {
                "broker": cpu_seconds(broker_pid),
                "postgres": tree_cpu_seconds(pg_pid) if pg_pid else 0.0,
            }
            for name in self.names():
                procs.append(
                    _GatewayProc(self.config, self.dir / f"gateway-{name}.log", worker=name)
                )
            rss = [{} for _ in procs]
            milestones = list(_MILESTONES)
            deadline = time.monotonic() + max(120.0, records / 500)
            while not watch.done.wait(0.2):
                for p in procs:
                    if p.proc.poll() is not None:
                        raise BenchError(f"gateway exited {p.proc.returncode}: {p.lines[-5:]}")
                while milestones and watch.acked * 100 >= milestones[0] * records:
                    pct = milestones.pop(0)
                    for i, p in enumerate(procs):
                        rss[i][pct] = _rss_kib(p.proc.pid)[0]
                if time.monotonic() > deadline:
                    raise BenchError(
                        f"drain incomplete: {watch.acked} of {records} acknowledged in time"
                    )
            assert watch.done_at is not None
            cpu_workers = sum(tree_cpu_seconds(p.proc.pid) - p.cpu_at_connect for p in procs)
            cpu = {
                "workers": cpu_workers,
                "postgres": (tree_cpu_seconds(pg_pid) - cpu0["postgres"]) if pg_pid else 0.0,
                "broker": cpu_seconds(broker_pid) - cpu0["broker"],
            }
            for i, p in enumerate(procs):
                rss[i].setdefault(100, _rss_kib(p.proc.pid)[0])
            peaks = [_rss_kib(p.proc.pid)[1] for p in procs]
            starts = [p.connected_at for p in procs]
            if any(s is None for s in starts):
                raise BenchError("a gateway never logged its connection")
            drain_s = watch.done_at - min(s for s in starts if s is not None)
            exits = [p.terminate() for p in procs]
            shares = [_stored_count(p.lines) for p in procs]
            procs = []
        finally:
            watch.close()
            for p in procs:
                p.terminate()
        with Store(self.where, readonly=True) as store:
            stored = store.record_count()
        if stored != records:
            raise BenchError(f"database holds {stored} records, expected {records}")
        return WorkersDrain(
            self.store, self.workers, self.round, records, drain_s, cpu, rss, peaks, exits, shares
        )

    def close(self) -> None:
        self.broker.stop()
        if self.store == "postgres" and self.pg.running:
            self.pg.drop_database(self.db_name)


def _stored_count(lines: list[str]) -> int:
    """Records a worker stored, from its "stopped: ..." line."""
    import re

    for line in reversed(lines):
        found = re.search(r"stopped: \d+ messages received, (\d+) records stored", line)
        if found:
            return int(found.group(1))
    return 0


def run(
    records: int = 50_000,
    devices: int = 100,
    workers: list[int] | None = None,
    rounds: int = 2,
    workdir: Path | None = None,
    log: Any = None,
) -> WorkersResult:
    from signet.signer import SoftwareSigner
    from signet_gateway.verify.pubkeys import DevicePublicKey
    from signet_tools.runners.postgres import Postgres, PostgresError

    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    counts = sorted(set(workers or [1, 2]))
    if devices < 1 or records < devices:
        raise BenchError("need at least one device and one record per device")
    if rounds < 1 or not counts or counts[0] < 1:
        raise BenchError("need at least one round and worker counts of 1 or more")
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="signet-bench-workers-")
        workdir = Path(tmp.name)
    workdir.mkdir(parents=True, exist_ok=True)
    kinds = [("sqlite", 1)] + [("postgres", n) for n in counts]
    pg = Postgres()
    try:
        say("bench: starting a PostgreSQL cluster (fsync on)...")
        try:
            pg.start()
        except PostgresError as exc:
            raise BenchError(f"cannot start PostgreSQL: {exc}") from exc
        keys = {
            i: DevicePublicKey.from_sec1(SoftwareSigner("p256", _secret(i)).public_key, "p256")
            for i in range(devices)
        }
        kids = {i: k.device_id for i, k in keys.items()}
        per = [records // devices + (1 if i < records % devices else 0) for i in range(devices)]
        say(f"bench: generating {records} records for {devices} devices (firmware builder)...")
        with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            per_device = dict(pool.map(_device_records, [(i, per[i]) for i in range(devices)]))
        drains: list[WorkersDrain] = []
        for r in range(rounds):
            for store, n in kinds if r % 2 == 0 else kinds[::-1]:
                site = _Drain(workdir, store, n, r + 1, pg)
                try:
                    say(f"bench: round {r + 1}: {n} worker(s) on {store}: preparing, publishing"
                        " the backlog while stopped, draining...")  # fmt: skip
                    site.prepare(keys)
                    drains.append(site.drain(per_device, kids))
                finally:
                    site.close()
        return WorkersResult(records, devices, counts, rounds, drains)
    finally:
        pg.stop()
        if tmp is not None:
            tmp.cleanup()


def _rss_line(d: WorkersDrain) -> str:
    parts = []
    for i, (points, peak) in enumerate(zip(d.rss, d.peak_kib, strict=True)):
        at = ", ".join(f"{points[p] / 1024:.0f}" for p in _MILESTONES if p in points)
        first, end = points.get(_MILESTONES[0]), points.get(100)
        flat = ""
        if first and end:
            grew = 100.0 * (end - first) / first
            flat = f", {'flat' if grew <= 10 else 'GROWS'} ({grew:+.0f} % from 10 to 100 %)"
        who = "worker" if d.store == "sqlite" else f"worker {i + 1}"
        parts.append(f"{who} {at} MiB at 10/50/100 %, peak {peak / 1024:.0f} MiB{flat}")
    return "; ".join(parts)


def format_report(r: WorkersResult) -> str:
    lines = [
        f"several workers: {r.records} single-record QoS 1 messages from {r.devices} devices,"
        f" each worker with 1 verifier process, {r.cores} cores; the best of {r.rounds}"
        f" drain(s) of each kind",
    ]
    order = ["sqlite"] + [f"postgres x{n}" for n in r.workers]
    for kind in order:
        d = r.best(kind)
        label = "SQLite, 1 worker" if kind == "sqlite" else f"PostgreSQL, {d.workers} worker(s)"
        cpu = ", ".join(f"{k} {v / d.records * 1e6:.0f}" for k, v in d.cpu_s.items() if v)
        shares = ""
        if d.store == "postgres" and d.workers > 1:
            shares = f"; records stored by each worker {', '.join(map(str, d.shares))}"
        lines.append(
            f"  {label:26} {d.rate:8,.0f} records/s ({d.drain_s:.2f} s)"
            f"  CPU {d.cpu_us:5.0f} us per record ({cpu}), {d.cores_busy:.2f} cores busy{shares}"
        )
        lines.append(f"  {'':26} RSS: {_rss_line(d)}")
    scale = r.scale
    if scale is not None:
        verdict = "meets" if scale >= TARGET_SCALE else "MISSES"
        lines.append(
            f"  two workers / one worker: {scale:.2f} x the drain rate"
            f" ({verdict} the {TARGET_SCALE} target)"
        )
        ceiling = r.scale_ceiling
        assert ceiling is not None
        room = (
            f"the {TARGET_SCALE} target needs more cores than this machine has"
            if ceiling < TARGET_SCALE
            else "room for the target"
        )
        lines.append(
            f"  this machine's ceiling: {r.cores} cores at the two-worker CPU per record drain"
            f" at most {ceiling:.2f} x one worker's rate ({room})"
        )
    cpu_ratio = r.pg_cpu_ratio
    if cpu_ratio is not None:
        verdict = "meets" if cpu_ratio <= TARGET_PG_CPU else "MISSES"
        lines.append(
            f"  PostgreSQL / SQLite CPU per record, one worker: {cpu_ratio:.2f} x"
            f" ({verdict} the {TARGET_PG_CPU} target)"
        )
    every = ", ".join(f"{d.kind} {d.rate:,.0f}" for d in r.drains)
    lines.append(f"  every drain, in the order run: {every} records/s")
    spread = {kind: [d.rate for d in r.drains if d.kind == kind] for kind in order}
    if r.rounds > 1:
        lines.append(
            "  spread between drains of one kind: "
            + ", ".join(
                f"{k} {100 * (max(v) - min(v)) / statistics.median(v):.0f} %"
                for k, v in spread.items()
            )
        )
    return "\n".join(lines)
