"""End to end through a real Mosquitto and a `signet gateway run` process: a key rotated
mid-run (the old key's records signed before the rotation and delivered after it are
counted once, those above its last n refused 'rotated'; the new key's sequence starts at 1)
and a revocation at a stated moment (records received before it counted, from it on
refused 'revoked'), then the report: one machine with the sums of both keys."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kit.crafted_evidence import rotate_statement
from kit.gatewaykit import Dev, Mqtt, write_config
from signet_gateway.store.model import iso_ms, now_ms
from signet_gateway.store.sqlite import Store
from signet_tools.cli.main import main
from signet_tools.runners.gateway_process import GatewayProcess
from signet_tools.runners.mosquitto import Mosquitto
from signet_tools.runners.waiting import wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def site(tmp_path: Path, broker: Mosquitto) -> Iterator[tuple[Path, GatewayProcess, Mqtt]]:
    cfg = write_config(tmp_path / "gateway.toml", broker.port, tmp_path / "gateway.db")
    gw = GatewayProcess(cfg, tmp_path / "gw.log").start()
    client = Mqtt(broker.port)
    yield cfg, gw, client
    client.close()
    gw.kill()


def _enroll(cfg: Path, dev: Dev, *extra: str) -> None:
    pem = cfg.parent / f"{dev.kid}.pem"
    pem.write_bytes(dev.pem())
    assert main(["enroll", "--pubkey", str(pem), "--config", str(cfg), *extra]) == 0


def _findings(db: Path, kid: str) -> dict[str, int]:
    with Store(db, readonly=True) as store:
        return store.findings(kid)


def test_rotation_and_revocation_mid_run(
    site: tuple[Path, GatewayProcess, Mqtt], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, gw, client = site
    db = cfg.parent / "gateway.db"
    old, new, till = Dev(950), Dev(951), Dev(952)
    _enroll(cfg, old, "--tier", "software", "--name", "kiosk")
    _enroll(cfg, till, "--tier", "software")
    client.publish_all([(old.topic, old.make("boot"))] + [(old.topic, r) for r in old.chain(5)])
    client.publish(till.topic, till.make("boot"))
    client.wait_acks({old.kid: 6, till.kid: 1})

    # The old key signs n=7, 8 (a sale and a heartbeat) before the rotation; they are still
    # in the device's journal when the new key is enrolled, and delivered after it.
    in_flight = [old.make("rev"), old.make("hb")]
    statement = cfg.parent / "rotate.cbor"
    statement.write_bytes(rotate_statement(old.independent_key(), new.independent_key(), last=8))
    _enroll(cfg, new, "--rotate-from", "kiosk", "--statement", str(statement))
    gw.wait_log(f"device {old.kid} rotated to a new key: its records above n=8 are refused", 20)
    beyond = old.make("rev")  # n=9 under the old key: after its last n
    client.publish_all([(new.topic, new.make("boot"))] + [(new.topic, r) for r in new.chain(4)])
    client.publish_all([(old.topic, r) for r in (*in_flight, beyond, in_flight[0])])
    client.wait_acks({old.kid: 8, new.kid: 5})
    wait_until(lambda: _findings(db, old.kid).get("refused:rotated") == 1, 30, "n=9 refused")

    # A revocation at a stated moment a few seconds ahead: before it, counted; from it on,
    # refused. (Waiting for a wall-clock moment is the thing under test, with a deadline.)
    moment = now_ms() + 5_000
    assert main(["revoke", till.kid, "--at", iso_ms(moment) or "", "--config", str(cfg)]) == 0
    client.publish(till.topic, till.make("hb"))
    client.wait_acks({till.kid: 2})
    wait_until(lambda: now_ms() > moment, 10, "the revocation moment")
    client.publish(till.topic, till.make("rev"))
    wait_until(lambda: _findings(db, till.kid).get("refused:revoked") == 1, 30, "revoked")
    assert gw.stop() == 0

    with Store(db, readonly=True) as store:
        assert [r.n for r in store.records(old.kid)] == list(range(1, 9))
        assert [r.n for r in store.records(new.kid)] == list(range(1, 6))
        assert [r.n for r in store.records(till.kid)] == [1, 2]
        assert store.chain_break_ns(old.kid) == store.chain_break_ns(new.kid) == []
        assert {q.reason for q in store.quarantine()} == {"rotated", "revoked"}
    assert _findings(db, old.kid) == {"verified": 8, "duplicate": 1, "refused:rotated": 1}
    capsys.readouterr()
    assert main(["report", "--config", str(cfg), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    machines = {d["device"]: d for d in report["devices"]}
    assert set(machines) == {old.kid, till.kid}  # the rotated device is one machine
    kiosk = machines[old.kid]
    assert [k["device"] for k in kiosk["keys"]] == [old.kid, new.kid]
    assert kiosk["name"] == "kiosk" and kiosk["integrity"]["verified"] == 13
    assert kiosk["integrity"]["refused"] == {"rotated": 1} and kiosk["integrity"]["missing"] == 0
    eur = kiosk["revenue"]["currencies"][0]
    # Sales: n=3 and the in-flight n=7 of the old key, n=3 of the new; n=9 refused.
    assert (eur["currency"], eur["count"], eur["amount"]) == ("EUR", 3, 750)
    assert machines[till.kid]["integrity"]["refused"] == {"revoked": 1}
    assert machines[till.kid]["revoked_ms"] == moment
