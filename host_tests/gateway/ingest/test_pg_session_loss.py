"""The writer when PostgreSQL ends its session in the middle of a batch (a restart, a failed
network): the batch is not committed and the error is an outage to wait out
(StorageUnavailable), never a crash; once the session is made again every cache kept over the
old one is dropped (generation.py: as after another process's write), and the same batch then
commits once, with the log's tree following the records. A checkpoint that finds its session
lost is tried again later, as one that finds the store busy. The gateway process around it:
host_tests/e2e/test_gateway_postgres_outage.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kit.gatewaykit import T0, Dev
from signet_gateway.config import LogConfig
from signet_gateway.ingest.log_keeper import LogKeeper
from signet_gateway.ingest.writer import StorageUnavailable
from signet_gateway.store.faults import UNWRITABLE
from signet_gateway.store.sqlite import Store
from signet_tools.runners.gateway_process import create_gateway_database
from signet_tools.runners.offline_gateway import OfflineGateway
from signet_tools.runners.postgres import Postgres


def _end_session(cluster: Postgres, conn: Any) -> None:
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    with cluster.admin() as admin:
        admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))


def test_a_session_lost_mid_batch_is_waited_out_and_the_batch_stored_once(
    pg_url: str, pg_cluster: Postgres
) -> None:
    create_gateway_database(pg_url)
    gw = OfflineGateway(pg_url)
    devs = [Dev(61), Dev(62)]
    for dev in devs:
        gw.enroll(dev.key)
    recs = {dev.kid: dev.chain(10) for dev in devs}

    def batch(lo: int, hi: int) -> list[tuple[str, bytes, int]]:
        return [(kid, raw, T0 + n) for kid, rs in recs.items() for n, raw in enumerate(rs[lo:hi])]

    gw.deliver(batch(0, 5))
    conn = gw.store.conn
    stored_hook = gw.writer.seq.on_stored_many
    assert stored_hook is not None
    ended: list[int] = []

    def end_then_store(records: list[Any]) -> None:  # inside the batch's transaction
        if not ended:
            ended.append(len(records))
            _end_session(pg_cluster, conn)
        stored_hook(records)

    gw.writer.seq.on_stored_many = end_then_store
    with pytest.raises(StorageUnavailable) as lost:
        gw.deliver(batch(5, 10))
    assert ended and lost.value.fault == UNWRITABLE
    assert conn.lost and not conn.in_transaction
    reloads = gw.generations.reloads

    conn.reconnect()
    gw.generations.reconnected()
    assert gw.generations.reloads == reloads + 1  # every cache over the old session dropped
    assert gw.writer.seq._devs == {}
    result = gw.deliver(batch(5, 10))  # the same batch again, on the new session
    assert result.stored == 10 and result.duplicates == 0
    assert gw.generations.reloads == reloads + 1  # the reconnect's own look was taken as mine

    with Store(pg_url, readonly=True) as store:
        for dev in devs:
            assert [r.n for r in store.records(dev.kid)] == list(range(1, 11))
            assert store.ack(dev.kid) == 10
            assert store.findings(dev.kid).get("verified") == 10  # counted once
        logged = store.conn.execute("SELECT count(*) FROM records WHERE log_index IS NOT NULL")
        assert logged.fetchone()[0] == 20
    assert gw.record_log is not None and gw.record_log.size == 20
    gw.close()


def test_a_checkpoint_over_a_lost_session_is_tried_again_later(
    pg_url: str, pg_cluster: Postgres, tmp_path: Path
) -> None:
    create_gateway_database(pg_url)
    gw = OfflineGateway(pg_url)
    dev = Dev(63)
    gw.enroll(dev.key)
    gw.deliver([(dev.kid, raw, T0 + n) for n, raw in enumerate(dev.chain(4))])
    conn = gw.store.conn
    keeper = LogKeeper(LogConfig(key=tmp_path / "log.key"), conn, gw.generations)
    _end_session(pg_cluster, conn)
    assert keeper.checkpoint() is None  # not signed now; no error out of it
    assert conn.lost
    conn.reconnect()
    gw.generations.reconnected()
    signed = keeper.checkpoint()
    assert signed is not None and signed.size == 4
    gw.close()
