"""Two gateway writers in two processes on one PostgreSQL database apply interleaved batches
of the same devices' records (in order, out of order, duplicates, reboots, an equivocation)
at the same time, and the database ends exactly as one writer applying the same batches in
the same commit order leaves it: records, sequence state, findings, evidence, aggregates
and the transparency log. No ack a commit returns covers a number that is neither stored
nor declared unused in the database at that commit (checked inside the committing
transaction). PostgreSQL only: a SQLite file takes one gateway process (instance_lock.py).
"""

from __future__ import annotations

import hashlib
import multiprocessing
import random
from pathlib import Path
from typing import Any

import pytest

from kit.gatewaykit import T0, Dev
from kit.merkle_reference import mth
from signet_gateway.ingest.intake import verify_message
from signet_gateway.ingest.writer import BatchWriter, Message
from signet_gateway.mcr.aggregate import AGG_TABLES, Aggregator
from signet_gateway.store.record_log import RecordLog
from signet_gateway.store.sqlite import Store
from signet_gateway.verify.verifier import Verifier
from signet_tools.runners.gateway_process import create_gateway_database
from signet_tools.runners.postgres import Postgres

Item = tuple[str, bytes, int]  # topic, raw record, receive time (ms)

TABLES = (
    "records",
    "seqstate",
    "unused",
    "findings",
    "evidence",
    "quarantine",
    "log_tiles",
    "log_tail",
    *AGG_TABLES,
)


def _items(seed: int) -> list[Item]:
    """Three devices' records with two reboots each, one lost, one equivocation, in a
    shuffled-but-mostly-forward order with duplicates, over two days of receive times."""
    rng = random.Random(seed)
    per_device: list[list[bytes]] = []
    for index in range(3):
        dev = Dev(200 + index)
        recs = dev.chain(25)
        link = dev.payloads[9]
        recs.append(dev.boot(n=30, ls=25))  # 26..29 never signed
        recs += dev.chain(15)
        recs.append(dev.boot(n=50, ls=45))  # 46..49
        recs += dev.chain(10)
        del recs[rng.randrange(len(recs))]  # lost on the way: a gap the ack stops at
        equivocating = dev.make(
            "rev", n=10, prev=hashlib.sha256(link).digest(), advance=False, fields={"am": 1}
        )
        recs.insert(rng.randrange(len(recs)), equivocating)
        per_device.append([(dev.topic, raw) for raw in recs])
    order: list[tuple[str, bytes]] = []
    while any(per_device):
        order.append(rng.choice([d for d in per_device if d]).pop(0))
    for _ in range(len(order)):  # out of order: local swaps
        i = rng.randrange(len(order) - 8)
        j = i + rng.randrange(1, 8)
        order[i], order[j] = order[j], order[i]
    for _ in range(20):  # duplicates, later than the original
        i = rng.randrange(len(order))
        order.insert(rng.randrange(i, len(order)), order[i])
    return [(topic, raw, T0 + 10_000_000 + k * 600_000) for k, (topic, raw) in enumerate(order)]


def _batches(items: list[Item], seed: int) -> list[list[Item]]:
    rng = random.Random(seed)
    out: list[list[Item]] = []
    k = 0
    while k < len(items):
        size = rng.randint(1, 12)
        out.append(items[k : k + size])
        k += size
    return out


class _AckCheckingConn:
    """The writer's connection, which at COMMIT (inside the transaction, under the write
    lock) checks every ack the commit will return against what the database holds."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.writer: BatchWriter | None = None
        self.violations: list[str] = []
        self.checked = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)

    def execute(self, sql: str, params: Any = ()) -> Any:
        if sql == "COMMIT" and self.writer is not None:
            for kid, ack in self.writer.seq._changed.items():
                self._check(kid, ack)
        return self.conn.execute(sql, params)

    def _check(self, kid: str, ack: int) -> None:
        conn = self.conn
        covered = {n for (n,) in conn.execute("SELECT n FROM records WHERE kid = ?", (kid,))}
        for lo, hi in conn.execute("SELECT lo, hi FROM unused WHERE kid = ?", (kid,)):
            covered |= set(range(lo, hi + 1))
        (stored_ack,) = conn.execute("SELECT ack FROM seqstate WHERE kid = ?", (kid,)).fetchone()
        self.checked += 1
        if not set(range(1, ack + 1)) <= covered or stored_ack != ack:
            self.violations.append(f"{kid}: ack {ack}, stored ack {stored_ack}")


def _writer(url: str, *, check: bool = False) -> tuple[Store, BatchWriter, Any]:
    store = Store(url)
    conn: Any = _AckCheckingConn(store.conn) if check else store.conn
    aggregator = Aggregator(store.conn)
    writer = BatchWriter(
        conn,
        max_future_skew_ms=300_000,
        quarantine_rows=100,
        quarantine_bytes=2048,
        on_stored_many=aggregator.on_stored_many,
        known_device=lambda kid: True,
        record_log=RecordLog(store.conn),
    )
    if check:
        conn.writer = writer
    return store, writer, conn


def _messages(batch: list[Item], verifier: Verifier) -> list[Message]:
    msgs = []
    for mid, (topic, raw, received_ms) in enumerate(batch, 1):
        m = Message(mid, 1, 1, topic.encode(), raw, received_ms)
        verify_message(m, verifier)
        msgs.append(m)
    return msgs


def _work(url: str, batches: list[tuple[int, list[Item]]], go: Any, out: Any) -> None:
    """One worker: commit its batches as fast as it can; report (generation, batch) per
    commit, the ack checks and how often it dropped its caches."""
    store, writer, conn = _writer(url, check=True)
    verifier = Verifier(store.active_keys())
    go.wait()
    commits = []
    for index, batch in batches:
        writer.commit(_messages(batch, verifier))
        commits.append((writer.generations.last, index))
    out.put((commits, conn.violations, conn.checked, writer.generations.reloads))
    store.close()


def _tables(url: str) -> dict[str, list[tuple[Any, ...]]]:
    with Store(url, readonly=True) as store:
        dump = {
            table: sorted(
                (
                    tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
                    for row in store.conn.execute(f"SELECT * FROM {table}")
                ),
                key=repr,
            )
            for table in TABLES
        }
        dump["devices"] = sorted(store.conn.execute("SELECT kid, flagged FROM devices"))
    return dump


def _enrolled(cluster: Postgres, name: str) -> str:
    url = cluster.new_database(name)
    create_gateway_database(url)
    with Store(url) as store:
        for index in range(3):
            store.enroll(Dev(200 + index).key, "software")
    return url


@pytest.mark.timeout(180)
def test_two_writers_end_as_one_writer_in_their_commit_order(
    pg_cluster: Postgres, tmp_path: Path
) -> None:
    items = _items(seed=14)
    batches = list(enumerate(_batches(items, seed=2)))
    shared = _enrolled(pg_cluster, "shared2w")
    context = multiprocessing.get_context("fork")
    go, out = context.Event(), context.Queue()
    workers = [
        context.Process(target=_work, args=(shared, batches[w::2], go, out)) for w in range(2)
    ]
    for p in workers:
        p.start()
    go.set()
    reports = [out.get(timeout=120) for _ in workers]
    for p in workers:
        p.join(30)
        assert p.exitcode == 0
    commits = sorted(c for report in reports for c in report[0])
    generations = [g for g, _ in commits]
    assert len(set(generations)) == len(batches)  # one commit order, every batch in it
    assert [v for report in reports for v in report[1]] == []
    assert sum(report[2] for report in reports) > 0  # acks were checked
    # Both wrote between the other's commits: each had to drop its caches, more than once.
    assert all(report[3] > 0 for report in reports)

    reference = _enrolled(pg_cluster, "one2w")
    store, writer, _ = _writer(reference)
    verifier = Verifier(store.active_keys())
    for _, index in commits:
        writer.commit(_messages(batches[index][1], verifier))
    assert writer.generations.reloads == 0  # one writer alone never reloads
    store.close()

    got, want = _tables(shared), _tables(reference)
    for table in want:
        assert got[table] == want[table], table
    records = got["records"]
    assert len(records) > 150 and got["evidence"]  # the scenario did what it says
    with Store(shared, readonly=True) as store:
        log = RecordLog(store.conn)
        rows = store.conn.execute("SELECT log_index, raw FROM records ORDER BY log_index")
        indexed = [(index, bytes(raw)) for index, raw in rows]
        assert [index for index, _ in indexed] == list(range(len(records))) == list(range(log.size))
        assert log.tree.root() == mth([raw for _, raw in indexed])
