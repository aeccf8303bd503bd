"""The write generation (gateway/store/generation.py): a gateway's own writes (batches,
checkpoints) never make it drop its caches; on PostgreSQL another process's write does,
once, and what it wrote is then taken into account (a record of the same device, an
enrollment). On SQLite no generation is counted: one gateway process holds the file."""

from __future__ import annotations

from pathlib import Path

from kit.gatewaykit import T0, Dev
from signet_gateway.log import key as log_key
from signet_gateway.store.generation import read
from signet_gateway.store.sqlite import Store, is_url
from signet_tools.runners.gateway_process import create_gateway_database
from signet_tools.runners.offline_gateway import OfflineGateway


def _deliver(gw: OfflineGateway, dev: Dev, recs: list[bytes], at: int) -> None:
    gw.deliver([(dev.kid, raw, T0 + at + i) for i, raw in enumerate(recs)])


def test_own_writes_never_reload_and_another_writer_is_seen_once(store_at: Path | str) -> None:
    create_gateway_database(store_at)
    postgres = is_url(store_at)
    dev, late = Dev(1), Dev(2)
    gw = OfflineGateway(store_at)
    gw.enroll(dev.key)  # `signet enroll`: another connection, before the gateway's first batch
    recs = dev.chain(40)
    signer = log_key.signer(log_key.generate(), "gen.test/signet")
    _deliver(gw, dev, recs[:10], 0)
    start = gw.generations.reloads
    for k in range(10, 30, 5):  # batches and checkpoints of its own
        _deliver(gw, dev, recs[k : k + 5], k)
        gw.checkpoint(signer)
    assert gw.generations.reloads == start
    with Store(store_at) as store:
        generation = read(store.conn)
    if not postgres:
        assert generation == 0  # not counted
        return
    assert generation > 0 and gw.generations.mine == generation

    key_reloads = gw.enrollment.reloads  # 1: the first key, enrolled after the gateway started
    other = OfflineGateway(store_at)  # a second worker stores n = 31..35 of the same device
    _deliver(other, dev, recs[30:35], 30)
    # The acks a reconnect republishes: the database's where it is ahead of this one's cache.
    assert gw.writer.all_acks()[dev.kid] == 35
    _deliver(gw, dev, recs[35:37], 35)  # in order after what the other stored
    assert gw.generations.reloads == start + 1
    assert gw.enrollment.reloads == key_reloads  # the other's records changed no key
    gw.enroll(late.key)
    _deliver(gw, dev, recs[37:40], 37)
    _deliver(gw, late, late.chain(3), 40)  # enrolled by the command: the keys reloaded
    assert gw.generations.reloads == start + 2  # the command's write is another's too
    assert gw.enrollment.reloads == key_reloads + 1
    with Store(store_at) as store:
        assert store.ack(dev.kid) == 40 and store.missing(dev.kid) == 0
        assert store.ack(late.kid) == 3
        assert store.findings(dev.kid) == {"verified": 40}
        assert store.chain_break_ns(dev.kid) == []
    other.close()
    gw.close()
