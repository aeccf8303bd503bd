"""`signet agent run` with its key in a TPM (swtpm) or an ATECC608 (the emulator), against a
real Mosquitto and a real gateway process: what the key signs is stored; a key that fails
its start self-test signs an evt with the software fallback key, or stops the agent (exit 2)
when there is none. tools/pi/keys.py, tools/pi/run.py, firmware signet/devkey.py."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2
import pytest

from kit.agentproc import FAST_MQTT, AgentProcess
from kit.atecc608_emu import TNG_SLOT0_CONFIG, ProvisionedChip, trust_and_go
from kit.gatewaykit import store_acks, write_config
from signet import binding
from signet_gateway.store.sqlite import Store
from signet_gateway.verify.pubkeys import DevicePublicKey
from signet_tools.pi.local_socket import request
from signet_tools.pi.run import Runtime, StartError, build, load_config, report_key_failure
from signet_tools.records import keygen
from signet_tools.runners.gateway_process import GatewayProcess
from signet_tools.runners.mosquitto import Mosquitto
from signet_tools.runners.waiting import wait_until

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def gateway(broker: Mosquitto, tmp_path: Path) -> Iterator[tuple[Path, GatewayProcess]]:
    db = tmp_path / "gw" / "gateway.db"
    db.parent.mkdir()
    cfg = write_config(tmp_path / "gw" / "gateway.toml", broker.port, db)
    gw = GatewayProcess(cfg, tmp_path / "gw" / "gw.log").start()
    yield db, gw
    gw.stop()


def enroll(db: Path, public_key: bytes) -> str:
    key = DevicePublicKey.from_sec1(public_key, "p256")
    with Store(db) as store:
        store.enroll(key, "software")
    return key.device_id


def stored(db: Path, kid: str) -> list[dict[str, Any]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT payload FROM records WHERE kid = ? ORDER BY n", (kid,))
        return [cbor2.loads(p) for (p,) in rows]
    finally:
        conn.close()


def agent_with_key(workdir: Path, port: int, key: dict[str, Any]) -> AgentProcess:
    """An AgentProcess whose config's key section is `key` (paths relative to workdir)."""
    agent = AgentProcess(workdir, port)
    config = json.loads(agent.config.read_text())
    config["key"] = key
    agent.config.write_text(json.dumps(config, indent=1))
    return agent


def run_once(config: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`signet agent run` expected to end by itself (it does not start)."""
    return subprocess.run(
        [sys.executable, "-m", "signet_tools", "agent", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# -- TPM 2.0 (swtpm) ------------------------------------------------------------------------

tpm_key = pytest.importorskip("signet_tools.pi.tpm_key", reason="the tpm extra is not installed")
from signet_tools.runners.swtpm import Swtpm  # noqa: E402


@pytest.fixture
def tpm(tmp_path: Path) -> Iterator[Swtpm]:
    with Swtpm(tmp_path / "swtpm") as swtpm:
        yield swtpm


def test_agent_signs_with_a_tpm_key_and_the_gateway_stores_it(
    broker: Mosquitto, gateway: tuple[Path, GatewayProcess], tpm: Swtpm, tmp_path: Path
) -> None:
    db, _ = gateway
    work = tmp_path / "pi"
    work.mkdir()
    with tpm_key.create_tpm_key(tpm.tcti, work / "device.tpm") as signer:
        kid = enroll(db, signer.public_key)
    agent = agent_with_key(
        work, broker.port, {"type": "tpm2", "path": "device.tpm", "tcti": tpm.tcti}
    )
    agent.start()
    try:
        n = request(agent.socket, {"kind": "rev", "amount": 250, "currency": "EUR"})["n"]
        wait_until(lambda: store_acks(db).get(kid, 0) >= n, 30, "the gateway storing the sale")
    finally:
        assert agent.stop() == 0
    kinds = [(r["n"], r["k"]) for r in stored(db, kid)]
    assert kinds[0] == (1, "boot") and (n, "rev") in kinds
    assert "key self-test" not in agent.log.read_text()


def test_a_tpm_that_fails_at_start_signs_with_the_fallback_key_and_says_so(
    broker: Mosquitto, gateway: tuple[Path, GatewayProcess], tpm: Swtpm, tmp_path: Path
) -> None:
    db, _ = gateway
    work = tmp_path / "pi"
    work.mkdir()
    with tpm_key.create_tpm_key(tpm.tcti, work / "device.tpm") as signer:
        enroll(db, signer.public_key)
    fallback = keygen.generate("p256", work / "fallback.key")
    fallback_kid = enroll(db, fallback.public_key)
    tpm.stop()  # the TPM does not answer at the agent's start
    agent = agent_with_key(
        work,
        broker.port,
        {"type": "tpm2", "path": "device.tpm", "tcti": tpm.tcti, "fallback_path": "fallback.key"},
    )
    agent.start()
    try:

        def evt_stored() -> bool:
            return any(r["k"] == "evt" for r in stored(db, fallback_kid))

        wait_until(evt_stored, 30, "the fallback key's evt at the gateway")
    finally:
        assert agent.stop() == 0
    evt = next(r for r in stored(db, fallback_kid) if r["k"] == "evt")
    assert evt["ev"] == "key_selftest_failed" and evt["msg"].startswith("tpm_error: TPM at swtpm:")
    assert (work / "journal" / "fallback").is_dir()  # its own journal: its own chain
    assert "signing with the software key" in agent.log.read_text()


def test_a_tpm_that_fails_at_start_without_fallback_stops_the_agent(
    broker: Mosquitto, tpm: Swtpm, tmp_path: Path
) -> None:
    work = tmp_path / "pi"
    work.mkdir()
    tpm_key.create_tpm_key(tpm.tcti, work / "device.tpm").close()
    tpm.stop()
    agent = agent_with_key(
        work, broker.port, {"type": "tpm2", "path": "device.tpm", "tcti": tpm.tcti}
    )
    result = run_once(agent.config)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("signet: error: key: the TPM failed its start self-test (")
    assert "key.fallback_path is not set: the agent does not start" in result.stderr
    assert "Traceback" not in result.stderr


# -- ATECC608 (the emulator as the bus) ------------------------------------------------------


def chip_binding(made: ProvisionedChip, path: Path, public_key: bytes | None = None) -> bytes:
    """Write the chip's binding file as provisioning does; returns the bound public key."""
    xy = made.chip.public_key_bytes(made.slot)
    pub = public_key or bytes([2 + (xy[63] & 1)]) + xy[:32]
    path.write_text(binding.dumps(made.chip.chip, made.chip.serial, made.slot, pub))
    return pub


def chip_config(work: Path, port: int, made: ProvisionedChip, **key: Any) -> Any:
    config = {
        "mqtt": {"host": "127.0.0.1", "port": port, **FAST_MQTT},
        "key": {"type": "atecc608", "path": "chip.json", "address": made.chip.address, **key},
        "journal": {"dir": "journal"},
        "intervals": {"heartbeat_s": 1, "loop_ms": 20},
    }
    (work / "agent.json").write_text(json.dumps(config))
    return load_config(work / "agent.json")


def run_until_acked(rt: Runtime, deadline_s: float = 30) -> None:
    rec = rt.agent.recorder

    def acked() -> bool:
        rt.agent.step()
        return rec.journal.acked >= rec.last_n

    wait_until(acked, deadline_s, "the gateway acknowledging every record")


def test_agent_signs_with_the_chip_and_binds_its_sequence_to_the_counter(
    broker: Mosquitto, gateway: tuple[Path, GatewayProcess], tmp_path: Path
) -> None:
    db, _ = gateway
    made = trust_and_go()
    kid = enroll(db, chip_binding(made, tmp_path / "chip.json"))
    rt = build(chip_config(tmp_path, broker.port, made), i2c=made.chip)
    try:
        assert rt.key.tier == "hardware" and rt.key.selftest_error is None
        assert rt.agent.signer.device_id == kid
        rt.agent.start()
        report_key_failure(rt)  # nothing to report
        n = rt.agent.record_revenue(250, "EUR", "till")
        run_until_acked(rt)
        rt.agent.stop()
    finally:
        rt.close()
    assert [(r["n"], r["k"]) for r in stored(db, kid)] == [(1, "boot"), (n, "rev")]
    assert made.chip.counters[1] == 1  # the first lease came from the chip's counter 1


@pytest.mark.parametrize("fault", ["unlocked", "swapped"])
def test_a_chip_that_fails_its_self_test_hands_over_to_the_fallback_key(
    broker: Mosquitto, gateway: tuple[Path, GatewayProcess], tmp_path: Path, fault: str
) -> None:
    db, _ = gateway
    made = trust_and_go(lock=fault != "unlocked")
    other = None if fault != "swapped" else chip_binding(trust_and_go(), tmp_path / "other.json")
    enroll(db, chip_binding(made, tmp_path / "chip.json", other))
    fallback = keygen.generate("p256", tmp_path / "fallback.key")
    fallback_kid = enroll(db, fallback.public_key)
    cfg = chip_config(tmp_path, broker.port, made, fallback_path="fallback.key")
    rt = build(cfg, i2c=made.chip)
    try:
        assert rt.key.tier == "software" and rt.agent.signer.device_id == fallback_kid
        rt.agent.start()
        report_key_failure(rt)
        run_until_acked(rt)
        rt.agent.stop()
    finally:
        rt.close()
    evt = next(r for r in stored(db, fallback_kid) if r["k"] == "evt")
    code = "config_unlocked" if fault == "unlocked" else "key_mismatch"
    assert evt["ev"] == "key_selftest_failed" and evt["msg"].startswith(code + ": ")
    assert made.chip.counters[1] == 0  # the fallback key's lease is not the chip's


def test_a_chip_with_a_wrong_slot_config_and_no_fallback_signs_the_evt_itself_then_stops(
    broker: Mosquitto, gateway: tuple[Path, GatewayProcess], tmp_path: Path
) -> None:
    db, _ = gateway
    # Locked, but slot 0 lets PrivWrite replace its key from outside: the chip still signs
    # with the enrolled key, so it can say what is wrong before the agent stops.
    made = trust_and_go(slot_config=TNG_SLOT0_CONFIG | 1 << 14)
    kid = enroll(db, chip_binding(made, tmp_path / "chip.json"))
    rt = build(chip_config(tmp_path, broker.port, made), i2c=made.chip)
    try:
        assert rt.key.refused and rt.agent.signer.device_id == kid
        rt.agent.start()
        with pytest.raises(StartError) as info:
            report_key_failure(rt)  # delivers the evt, then refuses to go on
    finally:
        rt.close()
    assert str(info.value).startswith("key: the ATECC608 failed its start self-test (slot_config: ")
    assert "key.fallback_path is not set: the agent does not start" in str(info.value)
    kinds = [(r["k"], r.get("ev")) for r in stored(db, kid)]
    assert kinds == [("boot", None), ("evt", "key_selftest_failed")]


def test_a_swapped_chip_without_fallback_does_not_start(broker: Mosquitto, tmp_path: Path) -> None:
    made = trust_and_go()
    other = chip_binding(trust_and_go(), tmp_path / "other.json")
    chip_binding(made, tmp_path / "chip.json", other)
    with pytest.raises(
        StartError, match=r"^key: the ATECC608 failed its start self-test \(key_mismatch: "
    ):
        build(chip_config(tmp_path, broker.port, made), i2c=made.chip)
    assert not (tmp_path / "journal").exists()  # nothing signed: the chip's key is not this one


def test_a_missing_binding_file_is_a_set_up_error(broker: Mosquitto, tmp_path: Path) -> None:
    made = trust_and_go()
    with pytest.raises(StartError, match=r"^key.path: cannot read the binding file .*chip.json"):
        build(chip_config(tmp_path, broker.port, made), i2c=made.chip)
