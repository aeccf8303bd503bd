"""Enrollment and revocation take effect for the first record that follows the command:
no client waits for the running gateway to notice them. On both stores (new_store: on
PostgreSQL the gateway notices through the write generation)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kit.gatewaykit import Dev, Mqtt, write_config
from signet_gateway.store.sqlite import Store
from signet_tools.cli.main import main
from signet_tools.runners.gateway_process import GatewayProcess, create_gateway_database
from signet_tools.runners.mosquitto import Mosquitto
from signet_tools.runners.waiting import wait_until


@pytest.fixture
def running(new_store, tmp_path: Path, broker: Mosquitto):
    """A gateway with an empty registry, its database, and a client."""
    db = new_store("gateway.db")
    if isinstance(db, str):  # PostgreSQL: write_config makes no database there
        create_gateway_database(db)
    cfg = write_config(tmp_path / "gateway.toml", broker.port, db)
    gw = GatewayProcess(cfg, tmp_path / "gw.log").start()
    client = Mqtt(broker.port)
    yield cfg, gw, client, db
    client.close()
    gw.kill()


def _enroll(cfg: Path, dev: Dev, tmp_path: Path) -> None:
    pem = tmp_path / f"{dev.kid}.pem"
    pem.write_bytes(dev.pem())
    assert main(["enroll", "--pubkey", str(pem), "--tier", "software", "--config", str(cfg)]) == 0


@pytest.mark.timeout(120)
def test_first_record_right_after_enroll_is_accepted_and_unknown_keys_still_refused(
    tmp_path: Path, running
) -> None:
    cfg, gw, client, db = running
    devs = [Dev(100 + i) for i in range(20)]
    strangers = [Dev(200 + i) for i in range(3)]  # never enrolled
    flood = [(s.topic, s.make("hb")) for _ in range(40) for s in strangers]
    for i, dev in enumerate(devs):
        _enroll(cfg, dev, tmp_path)
        # At once: no sleep, no waiting for the gateway's "enrolled" line.
        client.publish(dev.topic, dev.make("boot"), wait=False)
        client.publish_all(flood[6 * i : 6 * i + 6])  # unknown keys in between

    client.wait_acks({d.kid: 1 for d in devs}, 30)

    def refused_unknown() -> int:
        with Store(db, readonly=True) as store:
            return store.findings("").get("refused:unknown_key", 0)

    wait_until(lambda: refused_unknown() == len(flood), 30, f"{len(flood)} unknown_key refusals")
    assert gw.stop() == 0
    with Store(db, readonly=True) as store:
        for d in devs:
            assert store.findings(d.kid) == {"verified": 1}, d.kid
        for s in strangers:
            assert store.device(s.kid) is None and store.record_count(s.kid) == 0
        reasons = {q.reason for q in store.quarantine(1000)}
        assert reasons == {"unknown_key"}
        assert store.findings("") == {"refused:unknown_key": len(flood)}
    assert "refused unknown_key on signet/v1/" + devs[0].kid not in gw.text()


@pytest.mark.timeout(90)
def test_a_record_right_after_revoke_is_refused(tmp_path: Path, running) -> None:
    cfg, gw, client, db = running
    devs = [Dev(120 + i) for i in range(5)]
    for dev in devs:
        _enroll(cfg, dev, tmp_path)
    for dev in devs:  # (this test is about revocation only)
        gw.wait_log(f"device {dev.kid} enrolled", 10)
    client.publish_all([(d.topic, d.make("boot")) for d in devs])
    client.wait_acks({d.kid: 1 for d in devs})
    for dev in devs:
        assert main(["revoke", dev.kid, "--config", str(cfg)]) == 0
        client.publish(dev.topic, dev.make("hb"), wait=False)  # at once, after revoke returned

    def refused() -> list[int]:
        with Store(db, readonly=True) as store:
            return [store.findings(d.kid).get("refused:revoked", 0) for d in devs]

    wait_until(lambda: refused() == [1] * len(devs), 30, "every record after revoke refused")
    assert gw.stop() == 0
    with Store(db, readonly=True) as store:
        for d in devs:
            assert store.record_count(d.kid) == 1 and store.ack(d.kid) == 1
