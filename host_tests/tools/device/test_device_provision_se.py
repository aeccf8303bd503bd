"""`signet device provision --se atecc608`: the provisioning script runs on the MicroPython unix
port as on a board, with machine.I2C reaching the emulated ATECC608 through the I2C bridge
(tools/runners/i2c_bridge.py), and the evidence the host writes from its answer verifies at
the gateway (gateway/trust) against the test roots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import signet_tools.runners
from kit.atecc608_emu import GENKEY_SLOT_CONFIG, device_certificate, make_test_pki
from signet import binding
from signet.signer import SoftwareSigner
from signet_gateway.trust import TrustPolicy, verify_evidence
from signet_gateway.verify.pubkeys import DevicePublicKey
from signet_tools.device import board as device_cmd
from signet_tools.device.micropython import FIRMWARE_LIB, run
from signet_tools.records import evidence
from signet_tools.runners.i2c_bridge import BridgeServer

RUNNERS = Path(signet_tools.runners.__file__).parent
CHALLENGE = bytes(range(32))
# machine.I2C on the "board" is the bridge to a chip the harness asks the emulator for.
BOARD = """import sys, os
sys.path.insert(0, {lib!r})
sys.path.insert(0, {runners!r})
os.chdir({flash!r})
from mp_i2c_bridge import BridgeI2C
_bus = BridgeI2C({port})
_bus.control("new", **{chip!r})
class _Pin:
    def __init__(self, p):
        self.id = p
class machine:
    Pin = _Pin
    @staticmethod
    def I2C(id, scl=None, sda=None, freq=400000):
        return _bus
sys.modules["machine"] = machine
"""


def on_board(tmp: Path, chip: dict[str, Any], script: str) -> str:
    flash = tmp / "flash"
    flash.mkdir(exist_ok=True)
    with BridgeServer() as bridge:
        wrapper = tmp / "wrapper.py"
        wrapper.write_text(
            BOARD.format(
                lib=str(FIRMWARE_LIB),
                runners=str(RUNNERS),
                flash=str(flash),
                port=bridge.port,
                chip=chip,
            )
            + script
        )
        result = run(wrapper, heap="128k", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def key_entry(address: int) -> dict[str, Any]:
    return device_cmd.se_key_entry("signet-se.json", address, 0, 0, 22, 21)


@pytest.mark.micropython
def test_a_trust_and_go_chip_answers_the_challenge_on_the_board(tmp_path: Path) -> None:
    script = device_cmd.provision_se_script(key_entry(0x35), CHALLENGE, "never")
    facts = device_cmd.parse_provision_se_output(on_board(tmp_path, {"kind": "tng"}, script))
    assert facts["state"] == "kept" and facts["chip"] == "ATECC608B"
    bound = binding.load(str(tmp_path / "flash" / "signet-se.json"))
    assert bound["public_key"].hex() == facts["public_key"]
    # The operator's chain (here the test PKI issues the device certificate for this chip).
    pki = make_test_pki()
    key = DevicePublicKey.from_sec1(bytes.fromhex(facts["public_key"]), "p256")
    cert = device_certificate(pki, key.to_cryptography(), bytes.fromhex(facts["serial"]))
    chain = [c.public_bytes(serialization.Encoding.DER) for c in (cert, pki.signer)]
    obj = evidence.for_chip(facts, chain)
    seen: list[bytes] = []
    verified = verify_evidence(
        json.dumps(obj).encode(), key, TrustPolicy(se_roots=(pki.root,)), seen.append
    )
    assert verified.kind == "se-chain" and seen == [CHALLENGE]
    # A chain for another key is caught on the host before anything is written.
    other = device_certificate(pki, ec.generate_private_key(ec.SECP256R1()).public_key(), b"9" * 9)
    with pytest.raises(evidence.EvidenceInputError, match="not this device's"):
        evidence.for_chip(facts, [other.public_bytes(serialization.Encoding.DER)])


@pytest.mark.micropython
def test_a_chip_configured_by_the_maker_gets_a_key_and_a_line_statement(tmp_path: Path) -> None:
    chip = {"kind": "tng", "slot_config": GENKEY_SLOT_CONFIG}  # locked, GenKey allowed
    script = device_cmd.provision_se_script(key_entry(0x35), None, "always")
    facts = device_cmd.parse_provision_se_output(on_board(tmp_path, chip, script))
    assert facts["state"] == "new" and facts["proof"] is None
    line = SoftwareSigner.generate("p256")
    obj = evidence.for_chip(facts, None, line, "line-7")
    key = DevicePublicKey.from_sec1(bytes.fromhex(facts["public_key"]), "p256")
    line_key = DevicePublicKey.from_sec1(line.public_key, "p256")
    verified = verify_evidence(
        json.dumps(obj).encode(), key, TrustPolicy(line_keys=(line_key,)), lambda c: None
    )
    assert verified.kind == "line-statement" and verified.summary["line"] == "line-7"


@pytest.mark.micropython
def test_an_unlocked_chip_is_refused_on_the_board(tmp_path: Path) -> None:
    script = device_cmd.provision_se_script(key_entry(0x35), CHALLENGE, "never")
    out = on_board(tmp_path, {"kind": "tng", "lock": False}, script)
    with pytest.raises(device_cmd.ChipRefused, match=r"^the chip is refused \(config_unlocked\)"):
        device_cmd.parse_provision_se_output(out)
    assert not (tmp_path / "flash" / "signet-se.json").exists()


@pytest.mark.micropython
def test_no_chip_at_the_address_is_one_clear_error(tmp_path: Path) -> None:
    script = device_cmd.provision_se_script(key_entry(0x60), CHALLENGE, "never")
    out = on_board(tmp_path, {"kind": "tng"}, script)  # the chip answers at 0x35 only
    with pytest.raises(device_cmd.DeviceError, match=r"ATECC608 at 0x60: no response"):
        device_cmd.parse_provision_se_output(out)
