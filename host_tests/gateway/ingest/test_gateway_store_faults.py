"""The gateway process when its store fills up, is locked by someone else, or breaks.

Full or unwritable: it stops acknowledging (devices keep their records), keeps its broker
session, says it is not ready, and goes on by itself once it can write again, with
nothing acknowledged that was not committed. Unusable (a table gone): exit 3.

SQLite only: the faults are made in a SQLite file (its size cap, its permissions, a lock
held on it); PostgreSQL's SQLSTATEs map to the same faults (store/faults.py, its tests).
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from kit.gatewaykit import Dev, Mqtt, enrolled_gateway, store_acks
from signet_gateway.ingest.instance_lock import read_status
from signet_gateway.ingest.store_outage import LOG_EVERY_S, StoreOutage
from signet_gateway.store.faults import FULL, UNUSABLE, UNWRITABLE, fault_of
from signet_gateway.store.sqlite import Store
from signet_tools.runners.gateway_process import GatewayProcess, create_gateway_database
from signet_tools.runners.mosquitto import Mosquitto
from signet_tools.runners.waiting import wait_until


def _stored_ns(db: Path, kid: str) -> set[int]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return {n for (n,) in conn.execute("SELECT n FROM records WHERE kid = ?", (kid,))}


def _until(gw: GatewayProcess, cond: Any, timeout: float, what: str) -> Any:
    """wait_until, failing at once (with its log) if the gateway exits meanwhile."""

    def alive_and() -> Any:
        assert gw.proc is not None and gw.proc.poll() is None, f"gateway exited:\n{gw.tail(30)}"
        return cond()

    return wait_until(alive_and, timeout, what)


class AckAudit:
    """Checks, the instant each ack arrives, that every record it covers is committed."""

    def __init__(self, client: Mqtt, db: Path) -> None:
        self.db = db
        self.violations: list[str] = []
        self.seen = 0
        client.on_ack = self.on_ack

    def on_ack(self, kid: str, n: int) -> None:
        self.seen += 1
        missing = set(range(1, n + 1)) - _stored_ns(self.db, kid)
        if missing:
            self.violations.append(f"{kid} ack {n} but {sorted(missing)[:5]} not committed")


@pytest.mark.timeout(180)
def test_a_full_store_stops_the_acks_until_the_cap_is_raised_then_everything_is_stored(
    tmp_path: Path, broker: Mosquitto, procs
) -> None:
    started, clients = procs
    devs = [Dev(400 + i) for i in range(4)]
    per = 700
    cfg = enrolled_gateway(
        tmp_path,
        broker.port,
        devs,
        store={"max_size_mb": 1},
        ingest={"summary_s": 1, "batch_max": 100},
    )
    db = tmp_path / "gateway.db"
    gw = GatewayProcess(cfg, tmp_path / "gw.log").start()
    started.append(gw)
    client = Mqtt(broker.port)
    clients.append(client)
    audit = AckAudit(client, db)
    recs = {d.kid: d.chain(per) for d in devs}
    publisher = threading.Thread(
        target=client.publish_all,
        args=([(d.topic, recs[d.kid][i]) for i in range(per) for d in devs],),
    )
    publisher.start()

    gw.wait_log("store full, not acknowledging until it can be written", 60)
    said = gw.text().split("store full, not acknowledging", 1)[1].splitlines()[0]
    assert said.endswith(" MiB free on its filesystem)"), said
    # The write that failed needed more pages than were left: the file stops just under the cap.
    size = re.search(r": database or disk is full \(the database is ([\d.]+) MiB, "
                     r"store.max_size_mb = 1; ", said)  # fmt: skip
    assert size is not None and 0.8 <= float(size.group(1)) <= 1.0, said
    status = _until(gw, lambda: read_status(db), 10, "the readiness beside the database")
    assert status["pid"] == gw.pid
    _until(gw, lambda: not read_status(db)["ready"], 10, "not ready")  # type: ignore[index]
    problems = read_status(db)["problems"]  # type: ignore[index]
    assert problems and problems[0].startswith("store full: database or disk is full ("), problems
    _until(gw, lambda: "; not ready (store full: " in gw.text(), 10, "a summary saying so")
    publisher.join(60)  # the broker took every record; the gateway holds or queues them
    stored_while_full = sum(len(_stored_ns(db, d.kid)) for d in devs)
    assert 0 < stored_while_full < per * len(devs), "the cap never bit"
    # Nothing more is acknowledged than is committed, and the broker session stays.
    acks_while_full = store_acks(db)
    _until(gw, lambda: client.acks == acks_while_full, 10, "the acks of what was committed")
    assert all(n < per for n in acks_while_full.values())
    assert "disconnected from the broker" not in gw.text()

    # The operator raises the cap: the gateway reads it again and goes on by itself.
    text = cfg.read_text().replace("max_size_mb = 1", "max_size_mb = 64")
    assert text != cfg.read_text()
    cfg.write_text(text)
    gw.wait_log("store.max_size_mb is now 64 (was 1)", 30)
    gw.wait_log("store writable again after", 30)
    client.wait_acks({d.kid: per for d in devs}, 90)
    _until(gw, lambda: read_status(db)["ready"], 10, "ready again")  # type: ignore[index]
    assert not audit.violations, audit.violations[:5]
    assert audit.seen > 0
    assert gw.stop() == 0
    log = gw.text()
    assert "Traceback" not in log and "CRITICAL" not in log
    with Store(db, readonly=True) as store:
        for d in devs:
            assert store.record_count(d.kid) == per
            assert store.ack(d.kid) == per and store.missing(d.kid) == 0
            findings = store.findings(d.kid)
            assert findings["verified"] == per
            assert set(findings) <= {"verified", "duplicate"}


@pytest.mark.timeout(120)
def test_sigterm_while_the_store_is_full_stops_at_once_and_loses_nothing(
    tmp_path: Path, broker: Mosquitto, procs
) -> None:
    started, clients = procs
    dev = Dev(410)
    per = 2500
    cfg = enrolled_gateway(tmp_path, broker.port, [dev], store={"max_size_mb": 1})
    db = tmp_path / "gateway.db"
    gw = GatewayProcess(cfg, tmp_path / "gw.log").start()
    started.append(gw)
    client = Mqtt(broker.port)
    clients.append(client)
    client.publish_all([(dev.topic, r) for r in dev.chain(per)])
    gw.wait_log("store full, not acknowledging", 60)
    assert gw.stop(timeout=20) == 0
    assert "messages not stored (store full): not acknowledged" in gw.text()
    stored = len(_stored_ns(db, dev.kid))
    assert 0 < stored < per

    cfg.write_text(cfg.read_text().replace("max_size_mb = 1", "max_size_mb = 64"))
    gw = GatewayProcess(cfg, tmp_path / "gw.log").start()
    started.append(gw)
    client.wait_acks({dev.kid: per}, 60)
    assert gw.stop() == 0
    with Store(db, readonly=True) as store:
        assert store.record_count(dev.kid) == per
        assert store.findings(dev.kid)["verified"] == per


@pytest.mark.timeout(120)
def test_a_store_locked_by_another_process_is_waited_out(
    tmp_path: Path, broker: Mosquitto, procs
) -> None:
    started, clients = procs
    dev = Dev(420)
    cfg = enrolled_gateway(tmp_path, broker.port, [dev])
    db = tmp_path / "gateway.db"
    gw = GatewayProcess(cfg, tmp_path / "gw.log").start()
    started.append(gw)
    client = Mqtt(broker.port)
    clients.append(client)
    client.publish_all([(dev.topic, r) for r in dev.chain(5)])
    client.wait_acks({dev.kid: 5})
    # Someone holds the write lock (an sqlite3 shell in a transaction, say) longer than the
    # gateway's busy timeout.
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        client.publish_all([(dev.topic, r) for r in dev.chain(5)])
        gw.wait_log("store unwritable, not acknowledging until it can be written", 40)
        assert "database is locked" in gw.text()
        assert client.acks[dev.kid] == 5
    finally:
        other.execute("ROLLBACK")
        other.close()
    gw.wait_log("store writable again after", 30)
    client.wait_acks({dev.kid: 10}, 30)
    assert gw.stop() == 0
    with Store(db, readonly=True) as store:
        assert store.record_count(dev.kid) == 10


@pytest.mark.timeout(90)
def test_an_unusable_store_stops_the_gateway_with_exit_3(
    tmp_path: Path, broker: Mosquitto, procs
) -> None:
    started, clients = procs
    dev = Dev(430)
    cfg = enrolled_gateway(tmp_path, broker.port, [dev])
    db = tmp_path / "gateway.db"
    gw = GatewayProcess(cfg, tmp_path / "gw.log").start()
    started.append(gw)
    client = Mqtt(broker.port)
    clients.append(client)
    client.publish_all([(dev.topic, r) for r in dev.chain(3)])
    client.wait_acks({dev.kid: 3})
    with sqlite3.connect(db, isolation_level=None) as conn:
        conn.execute("DROP TABLE records")  # not the database this gateway writes any more
    client.publish_all([(dev.topic, r) for r in dev.chain(3)])
    assert gw.wait(30) == 3
    log = gw.text()
    assert "CRITICAL storage failure (the database is unusable), stopping without" in log
    assert "no such table: records" in log
    assert client.acks[dev.kid] == 3


# -- the parts ------------------------------------------------------------------------------


def _error(conn: sqlite3.Connection, sql: str) -> sqlite3.Error:
    with pytest.raises(sqlite3.Error) as err:
        conn.execute(sql)
    return err.value


def test_sqlite_errors_are_sorted_into_wait_and_stop(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    create_gateway_database(db)
    with Store(db) as store:
        store.limit_size(1)
        conn = store.conn
        full = _error(conn, "INSERT INTO meta (key, value) VALUES ('x', zeroblob(2000000))")
        assert fault_of(full) == FULL
        store.limit_size(None)
        conn.execute("INSERT INTO meta (key, value) VALUES ('x', zeroblob(2000000))")
        assert store.size_bytes() > 2_000_000
    with Store(db, readonly=True) as store:
        assert fault_of(_error(store.conn, "DELETE FROM meta")) == UNWRITABLE  # READONLY
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    waiter = sqlite3.connect(db, isolation_level=None, timeout=0)
    assert fault_of(_error(waiter, "BEGIN IMMEDIATE")) == UNWRITABLE  # BUSY
    holder.execute("ROLLBACK")
    assert fault_of(_error(waiter, "SELECT * FROM no_such_table")) == UNUSABLE
    holder.close()
    waiter.close()
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database at all" * 500)
    with sqlite3.connect(garbage) as conn:
        assert fault_of(_error(conn, "SELECT * FROM sqlite_master")) == UNUSABLE  # NOTADB


def test_an_outage_is_logged_when_it_starts_once_a_minute_and_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [1000.0]
    outage = StoreOutage(clock=lambda: now[0])
    delays = []
    with caplog.at_level(logging.INFO, logger="signet.gateway"):
        for _ in range(200):  # 200 tries over several minutes
            delays.append(outage.failed("full", "database or disk is full", 42))
            now[0] += delays[-1]
        assert outage.problem == "store full: database or disk is full"
        outage.recovered()
        assert outage.problem is None
    lines = [r.getMessage() for r in caplog.records]
    assert delays[:5] == [0.5, 1.0, 2.0, 4.0, 5.0] and max(delays) == 5.0
    minutes = int((now[0] - 1000.0) // LOG_EVERY_S)
    assert lines[0].startswith("store full, not acknowledging until it can be written")
    still = [line for line in lines if line.startswith("store still full after ")]
    assert minutes - 1 <= len(still) <= minutes
    assert "(42 messages waiting): database or disk is full" in still[0]
    assert lines[-1].startswith("store writable again after ")
    assert len(lines) == 2 + len(still)
