"""`signet agent rotate` with a real Mosquitto, a gateway process and `signet agent run`: refused
while the agent runs and while records are not acknowledged (the gateway's retained ack is
the authority), then the old key signs the statement, the old journal is kept aside, the
printed enroll command rotates the machine at the gateway, and the agent signs with the new
key from n = 1."""

from __future__ import annotations

import shlex
import sqlite3
from pathlib import Path

import pytest

from kit.agentproc import AgentProcess
from kit.gatewaykit import store_acks, write_config
from signet_gateway.store.sqlite import Store
from signet_gateway.verify.pubkeys import DevicePublicKey
from signet_tools.cli.main import main
from signet_tools.pi.local_socket import request
from signet_tools.runners.gateway_process import GatewayProcess
from signet_tools.runners.mosquitto import Mosquitto
from signet_tools.runners.waiting import wait_until

pytestmark = pytest.mark.timeout(120)


def sale(agent: AgentProcess, amount: int) -> int:
    return int(request(agent.socket, {"kind": "rev", "amount": amount, "currency": "EUR"})["n"])


def test_rotation_waits_for_the_journal_to_drain_then_hands_over(
    broker: Mosquitto,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    gw_dir = tmp_path / "gw"
    gw_dir.mkdir()
    db = gw_dir / "gateway.db"
    write_config(gw_dir / "gateway.toml", broker.port, db)
    agent = AgentProcess(tmp_path / "pi", broker.port)
    with Store(db) as store:
        store.enroll(DevicePublicKey.from_pem(agent.pubkey.read_bytes()), "software", name="m-1")
    old_kid = agent.kid
    rotate = ["agent", "rotate", "--config", str(agent.config)]

    # No gateway: the sale is journaled, never acknowledged.
    agent.start()
    n = sale(agent, 250)
    assert main(rotate) == 1  # the agent holds the journal
    assert "is in use by another running agent" in capsys.readouterr().err
    assert agent.stop() == 0
    assert main(rotate) == 1
    err = capsys.readouterr().err
    assert f"the journal holds {n} records the gateway has not acknowledged" in err
    assert "they must drain first" in err
    assert not list(tmp_path.glob("pi/*.rotate.cbor"))  # nothing made

    gw = GatewayProcess(gw_dir / "gateway.toml", gw_dir / "gw.log").start()
    try:
        agent.start()
        last = sale(agent, 300)
        wait_until(lambda: store_acks(db).get(old_kid, 0) >= last, 30, "the old key drained")
        assert agent.stop() == 0
        assert main(rotate) == 0, capsys.readouterr().err
        out = capsys.readouterr().out
        assert f"the old key signed up to n={last}" in out
        assert (tmp_path / "pi" / f"journal.rotated-{old_kid}").is_dir()  # kept
        line = next(x.strip() for x in out.splitlines() if x.strip().startswith("signet enroll"))
        assert f"--rotate-from {old_kid} --statement" in line
        monkeypatch.chdir(gw_dir)
        assert main(shlex.split(line)[1:]) == 0, capsys.readouterr().err
        said = capsys.readouterr().out
        assert "rotated: machine" in said
        new_kid = said.split()[1]
        agent.start()  # the rewritten config: the new key, a new journal
        n_new = sale(agent, 400)
        wait_until(lambda: store_acks(db).get(new_kid, 0) >= n_new, 30, "the new key's sale")
        assert agent.stop() == 0
    finally:
        gw.stop()
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT n, kind FROM records WHERE kid = ? ORDER BY n", (new_kid,))
    assert list(rows)[:1] == [(1, "boot")]  # its own sequence from 1
    conn.close()
