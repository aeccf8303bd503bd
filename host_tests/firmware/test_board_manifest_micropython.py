"""The freeze manifest `signet device manifest` writes for a config holds every module that
config loads: firmware/main.py runs on the MicroPython unix port as on an ESP32
(fwtests/board_loads.py; with the key in the emulated ATECC608, fwtests/board_chip.py),
the harness records every signet module it loaded (those main.py drops after boot too),
and the manifest generated from the same config.json must freeze each of them. What the
config does not use stays out of both.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_board_chip_micropython import boot as boot_chip

from kit.paths import FIRMWARE_TESTS
from signet import config as config_mod
from signet import keyfile
from signet.signer import SoftwareSigner
from signet.uartline import frame
from signet_tools.device import manifest
from signet_tools.device.micropython import FIRMWARE, run

HEAP = "256k"
SOFTWARE_ECDSA = {"signet.ec", "signet.ecdsa", "signet.rfc6979", "signet.signer", "signet.keyfile"}
CHIP = {"signet.atecc608", "signet.se_signer", "signet.binding"}


def _board(tmp_path: Path, cfg: dict) -> Path:
    board = tmp_path / "board"
    board.mkdir()
    cfg = {**cfg, "journal": {**cfg.get("journal", {}), "dir": str(board / "journal")}}
    (board / "config.json").write_text(json.dumps(cfg))
    (board / "signet.key").write_text(keyfile.dumps(SoftwareSigner.generate("p256")))
    return board


def _loaded(board: Path, mpy_tree: Path) -> tuple[set[str], int]:
    result = run(
        FIRMWARE_TESTS / "board_loads.py",
        str(mpy_tree),
        str(board),
        str(FIRMWARE / "main.py"),
        frame(b"REV,250,EUR,T-1").decode(),
        heap=HEAP,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    names = re.search(r"^R loaded (.*)$", result.stdout, re.M)
    revs = re.search(r"^R revs (\d+)$", result.stdout, re.M)
    assert names and revs, result.stdout[-3000:]
    return set(names.group(1).split()), int(revs.group(1))


def _needs(board: Path) -> manifest.Needs:
    obj = json.loads((board / "config.json").read_text())
    return manifest.needs(config_mod.parse(obj, board=True))


BASE = {
    "wifi": {"ssid": "cafe", "password": "pw-123"},
    "mqtt": {"host": "broker.test", "timeout_ms": 2000, "ack_wait_ms": 0},
    "key": {"type": "file", "path": "signet.key"},
    "intervals": {"heartbeat_s": 60, "loop_ms": 1},
    "watchdog_ms": 8000,
}
PULSE = {"type": "pulse", "pin": 4, "value": 50, "currency": "EUR", "debounce_ms": 0,
         "flush_ms": 0}  # fmt: skip
UART = {"type": "uart", "id": 2, "tx": 17, "rx": 16}


@pytest.mark.micropython
@pytest.mark.timeout(150)
def test_a_key_file_board_with_every_option_loads_only_frozen_modules(
    mpy_tree: Path, tmp_path: Path
) -> None:
    cfg = {**BASE, "sources": [PULSE, UART], "time": {"ntp_host": "ntp.test"},
           "led": {"pin": 2}}  # fmt: skip
    board = _board(tmp_path, cfg)
    loaded, revs = _loaded(board, mpy_tree)
    need = _needs(board)
    assert revs == 2  # the coin and the terminal were both signed and acknowledged
    assert {"signet.config", "signet.devkey", "signet.keyfile", "signet.agent"} <= loaded
    assert loaded <= need.modules, sorted(loaded - need.modules)
    assert {"signet.pulse", "signet.uartline", "signet.refwindow"} <= need.modules
    assert not need.modules & CHIP
    assert need.packages == ("umqtt.simple", "ntptime")


@pytest.mark.micropython
@pytest.mark.timeout(150)
def test_a_pulse_board_without_refs_or_ntp_freezes_no_uart_parser_window_or_ntptime(
    mpy_tree: Path, tmp_path: Path
) -> None:
    cfg = {**BASE, "sources": [PULSE], "time": {"ntp_host": None},
           "journal": {"ref_window": 0}}  # fmt: skip
    board = _board(tmp_path, cfg)
    loaded, revs = _loaded(board, mpy_tree)
    need = _needs(board)
    assert revs == 1
    assert loaded <= need.modules, sorted(loaded - need.modules)
    assert not need.modules & {"signet.uartline", "signet.refwindow", *CHIP}
    assert need.packages == ("umqtt.simple",)


@pytest.mark.micropython
@pytest.mark.timeout(150)
def test_a_board_whose_key_is_in_the_chip_freezes_no_software_ecdsa(
    mpy_tree: Path, tmp_path: Path
) -> None:
    out = boot_chip("ok", mpy_tree, tmp_path)
    loaded = set(out["loaded"][0].split())
    need = _needs(tmp_path / "board")
    assert loaded >= CHIP
    assert loaded <= need.modules, sorted(loaded - need.modules)
    assert not need.modules & SOFTWARE_ECDSA


@pytest.mark.micropython
@pytest.mark.timeout(150)
def test_a_chip_with_a_fallback_key_freezes_the_software_signer_too(
    mpy_tree: Path, tmp_path: Path
) -> None:
    out = boot_chip("swapped_fallback", mpy_tree, tmp_path)  # the fallback key signs
    loaded = set(out["loaded"][0].split())
    need = _needs(tmp_path / "board")
    assert loaded >= SOFTWARE_ECDSA
    assert loaded <= need.modules, sorted(loaded - need.modules)
