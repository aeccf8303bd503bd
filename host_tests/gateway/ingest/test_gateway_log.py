"""The gateway feeds the transparency log: one leaf per stored record in commit order, its
key made on the first start, checkpoints at an interval and at a clean stop, and records
stored while the log was off appended when it is back on. A real gateway process behind a
real Mosquitto, on both stores (new_store)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from kit.gatewaykit import Dev, Mqtt, enrolled_gateway
from kit.merkle_reference import mth
from signet_gateway.log import key as log_key
from signet_gateway.log.checkpoint import open_checkpoint
from signet_gateway.log.verification import verify_consistency
from signet_gateway.store.record_log import RecordLog
from signet_gateway.store.sqlite import Store
from signet_tools.runners.gateway_process import GatewayProcess
from signet_tools.runners.mosquitto import Mosquitto
from signet_tools.runners.waiting import wait_until

ORIGIN = "gw.test/signet"


def _logged(db: Path | str) -> list[tuple[int | None, bytes, int]]:
    with Store(db, readonly=True) as store:
        rows = store.conn.execute(
            "SELECT log_index, raw, received_ms FROM records ORDER BY log_index, received_ms"
        ).fetchall()
        return [(index, bytes(raw), received) for index, raw, received in rows]


def _send(port: int, clients: list[Mqtt], devs: list[Dev], count: int, name: str) -> None:
    client = Mqtt(port, name)
    clients.append(client)
    recs = {d.kid: d.chain(count) for d in devs}
    client.publish_all([(d.topic, recs[d.kid][i]) for i in range(count) for d in devs])
    # One record twice: stored once, one leaf.
    client.publish_all([(devs[0].topic, recs[devs[0].kid][0])])
    client.wait_acks({d.kid: d.n for d in devs})


def _start(cfg: Path, log: Path, started: list[GatewayProcess]) -> GatewayProcess:
    gw = GatewayProcess(cfg, log).start()
    started.append(gw)  # killed after the test if it is still running
    return gw


@pytest.mark.timeout(120)
def test_every_stored_record_is_one_leaf_in_commit_order_and_the_stop_signs_it(
    new_store, tmp_path: Path, broker: Mosquitto, procs
) -> None:
    started, clients = procs
    devs = [Dev(i) for i in range(3)]
    db = new_store("gateway.db")
    cfg = enrolled_gateway(tmp_path, broker.port, devs, db=db, log={"origin": ORIGIN})
    key_path = tmp_path / "gateway-log.key"
    assert not key_path.exists()
    gw = _start(cfg, tmp_path / "gw.log", started)
    _send(broker.port, clients, devs, 40, "fleet")
    assert gw.stop() == 0
    # The key was made on the first start: private from its first byte, its vkey logged.
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    verifier = log_key.verifier(log_key.load(key_path), ORIGIN)
    assert f"its verifier key (give it to auditors): {verifier.vkey}" in gw.text()
    rows = _logged(db)
    assert [index for index, _, _ in rows] == list(range(120))
    # Commit order is receive order here: one connection published them in order.
    assert [received for _, _, received in rows] == sorted(received for _, _, received in rows)
    with Store(db, readonly=True) as store:
        log = RecordLog(store.conn)
        assert log.size == 120 and log.tree.root() == mth([raw for _, raw, _ in rows])
        last = log.latest_checkpoint()
    assert last is not None and last.size == 120
    cp = open_checkpoint(last.note, [verifier], origin=ORIGIN).checkpoint
    assert cp.root == mth([raw for _, raw, _ in rows])


@pytest.mark.timeout(120)
def test_a_checkpoint_is_signed_at_the_interval_while_records_arrive(
    new_store, tmp_path: Path, broker: Mosquitto, procs
) -> None:
    started, clients = procs
    devs = [Dev(i) for i in range(2)]
    db = new_store("gateway.db")
    cfg = enrolled_gateway(
        tmp_path, broker.port, devs, db=db, log={"origin": ORIGIN, "checkpoint_interval_s": 1}
    )
    gw = _start(cfg, tmp_path / "gw.log", started)

    def sizes() -> list[int]:
        with Store(db, readonly=True) as store:
            return [c.size for c in RecordLog(store.conn).checkpoints()]

    _send(broker.port, clients, devs, 10, "first")
    wait_until(lambda: sizes() == [20], 20, "a checkpoint of the first 20 records")
    _send(broker.port, clients, devs, 5, "second")
    wait_until(lambda: sizes() == [20, 30], 20, "a second checkpoint, of 30")
    with Store(db, readonly=True) as store:
        first, second = RecordLog(store.conn).checkpoints()
    # The consistency proof from 20 to 30, stored with the second.
    verify_consistency(20, 30, first.root, second.root, second.proof)
    assert gw.stop() == 0


@pytest.mark.timeout(120)
def test_records_stored_with_the_log_off_are_appended_when_it_is_on_again(
    new_store, tmp_path: Path, broker: Mosquitto, procs
) -> None:
    started, clients = procs
    devs = [Dev(i) for i in range(2)]
    db = new_store("gateway.db")
    cfg = enrolled_gateway(tmp_path, broker.port, devs, db=db, log={"enabled": False})
    gw = _start(cfg, tmp_path / "off.log", started)
    _send(broker.port, clients, devs, 6, "off")
    assert gw.stop() == 0
    assert {index for index, _, _ in _logged(db)} == {None}
    assert not (tmp_path / "gateway-log.key").exists()  # the log off reads no key
    cfg.write_text(cfg.read_text().replace("enabled = false", "enabled = true"))
    gw = _start(cfg, tmp_path / "on.log", started)
    _send(broker.port, clients, devs, 3, "on")
    assert gw.stop() == 0
    assert "appended 12 records stored while the log was off to the log" in gw.text()
    rows = _logged(db)
    assert [index for index, _, _ in rows] == list(range(18))
    assert [received for _, _, received in rows] == sorted(received for _, _, received in rows)
    with Store(db, readonly=True) as store:
        assert RecordLog(store.conn).tree.root() == mth([raw for _, raw, _ in rows])
