"""firmware/main.py on the MicroPython unix port with its key in an ATECC608: the real driver
talks to the emulated chip through the I2C bridge (tools/runners/i2c_bridge.py serves it from
this process), the board stand-ins are fwtests/boardsim.py and the broker is the scripted one.

main.py opens the key the config names: a board whose key is in the chip never loads the
software ECDSA (ec, ecdsa, rfc6979, signer, keyfile); a chip that fails its self-test hands
over to the fallback key (an evt names the failure) or, without one, signs that evt itself
when it still can and stops.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import signet_tools.runners
from kit.paths import FIRMWARE_TESTS
from signet_gateway.verify.pubkeys import DevicePublicKey
from signet_gateway.verify.verifier import Verifier
from signet_tools.device.micropython import FIRMWARE, run
from signet_tools.runners.i2c_bridge import BridgeServer

RUNNERS = Path(signet_tools.runners.__file__).parent
HEAP = "256k"
SOFTWARE_ECDSA = {"signet.ec", "signet.ecdsa", "signet.rfc6979", "signet.signer", "signet.keyfile"}


def boot(scenario: str, mpy_tree: Path, tmp_path: Path) -> dict[str, list[str]]:
    board = tmp_path / "board"
    board.mkdir()
    with BridgeServer() as bridge:
        result = run(
            FIRMWARE_TESTS / "board_chip.py",
            str(mpy_tree),
            str(RUNNERS),
            str(board),
            str(FIRMWARE / "main.py"),
            scenario,
            str(bridge.port),
            heap=HEAP,
            timeout=120,
        )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    out: dict[str, list[str]] = {
        "log": [line for line in result.stdout.splitlines() if not line.startswith("R ")]
    }
    for name, value in re.findall(r"^R (\w+) ?(.*)$", result.stdout, re.M):
        out.setdefault(name, []).append(value)
    return out


@pytest.mark.micropython
@pytest.mark.timeout(150)
def test_a_board_signs_with_the_chip_without_loading_the_software_ecdsa(
    mpy_tree: Path, tmp_path: Path
) -> None:
    out = boot("ok", mpy_tree, tmp_path)
    loaded = set(out["loaded"][0].split())
    assert "signet.agent" in loaded and not loaded & SOFTWARE_ECDSA, loaded
    assert out["i2c"] == ["0/22/21/100000"]  # machine.I2C(0, scl=Pin(22), sda=Pin(21), freq)
    assert out["counters"] == ["[0, 1]"]  # the sequence lease is bound to counter 1
    key = DevicePublicKey.from_sec1(bytes.fromhex(out["bound"][0]), "p256")
    assert out["kid"] == [key.device_id]
    verifier = Verifier({key.kid: key})
    records = [verifier.verify(bytes.fromhex(raw)) for raw in out["raw"]]
    assert [r.kind for r in records][:1] == ["boot"] and records[0].seq == 1
    assert f"device {key.device_id} running, boot 1" in "\n".join(out["log"])


@pytest.mark.micropython
@pytest.mark.timeout(150)
def test_a_swapped_chip_hands_over_to_the_fallback_key_and_says_so(
    mpy_tree: Path, tmp_path: Path
) -> None:
    out = boot("swapped_fallback", mpy_tree, tmp_path)
    bound = DevicePublicKey.from_sec1(bytes.fromhex(out["bound"][0]), "p256")
    assert out["kid"] != [bound.device_id]  # the fallback key signs
    evts = [r for r in out["rec"] if "/evt/" in r]
    assert len(evts) == 1 and evts[0].split("/")[2:4] == [
        "key_selftest_failed",
        "key_mismatch: ATECC608 at 0x35: the key in slot 0 is not the one "[:64],
    ]
    assert out["counters"] == ["[0, 0]"]  # nothing leased from a chip that failed
    assert (tmp_path / "board" / "journal" / "fallback").is_dir()


@pytest.mark.micropython
@pytest.mark.timeout(150)
def test_a_chip_failing_its_self_test_without_fallback_signs_the_evt_and_stops(
    mpy_tree: Path, tmp_path: Path
) -> None:
    out = boot("slot_config", mpy_tree, tmp_path)
    log = "\n".join(out["log"])
    bound = DevicePublicKey.from_sec1(bytes.fromhex(out["bound"][0]), "p256")
    assert out["kid"] == [bound.device_id]  # the chip itself signed it
    kinds = [r.split("/")[1:3] for r in out["rec"]]
    assert kinds == [["boot", "None"], ["evt", "key_selftest_failed"]]
    assert "slot_config: ATECC608 at 0x35: slot 0" in out["rec"][1]
    assert "the agent does not start" in log and "running" not in log


@pytest.mark.micropython
@pytest.mark.timeout(150)
def test_a_swapped_chip_without_fallback_starts_nothing(mpy_tree: Path, tmp_path: Path) -> None:
    out = boot("swapped", mpy_tree, tmp_path)
    log = "\n".join(out["log"])
    assert "signet: key error: the chip failed its self-test (key_mismatch: " in log
    assert "no key.fallback_path: the agent does not start" in log
    assert "rec" not in out and out["kid"] == ["None"]
