"""firmware/main.py and signet/board.py on the MicroPython unix port, as on an ESP32.

The board-only modules (machine, network, ntptime) are stand-ins with the ESP32
port's API (fwtests/boardsim.py) and umqtt.simple is the scripted broker and
gateway: everything else is the firmware as flashed. This checks the device
glue that no other test reaches: config and key loading at boot, the reset
cause, the watchdog, Wi-Fi association, NTP, the status LED, and the pulse and
UART inputs wired from the config to records the gateway acknowledges.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from kit.paths import FIRMWARE_TESTS
from signet import FIRMWARE_VERSION, keyfile
from signet.signer import SoftwareSigner
from signet.uartline import frame
from signet_tools.device.micropython import FIRMWARE, run

HEAP = "256k"  # main.py is compiled on the "board" (it is not a .mpy on devices either)


def board_config(board: Path) -> dict:
    return {
        "wifi": {"ssid": "cafe", "password": "pw-123"},
        "mqtt": {
            "host": "broker.test",
            "keepalive_s": 10,
            "timeout_ms": 2000,
            "backoff_min_ms": 100,
            "backoff_max_ms": 200,
            "ack_wait_ms": 0,
        },
        "key": {"type": "file", "path": "signet.key"},
        "journal": {"dir": str(board / "journal")},
        "intervals": {"heartbeat_s": 60, "loop_ms": 1},
        "time": {"ntp_host": "ntp.test"},
        "watchdog_ms": 8000,
        "led": {"pin": 2, "active_low": True},
        "sources": [
            {
                "type": "pulse",
                "pin": 4,
                "value": 50,
                "currency": "EUR",
                "debounce_ms": 0,
                "flush_ms": 0,
            },
            {"type": "uart", "id": 2, "baud": 115200, "tx": 17, "rx": 16},
            {"type": "uart", "id": 7},  # no such UART on this board
        ],
    }


def flash(
    tmp_path: Path, change: dict | None = None, sources: list | None = None
) -> tuple[Path, SoftwareSigner]:
    """A board directory with config.json (board_config, with `change` per section, and
    `sources` instead of its three) and a key."""
    board = tmp_path / "board"
    board.mkdir()
    cfg = board_config(board)
    for section, values in (change or {}).items():
        cfg[section].update(values)
    if sources is not None:
        cfg["sources"] = sources
    (board / "config.json").write_text(json.dumps(cfg))
    signer = SoftwareSigner.generate("p256")
    (board / "signet.key").write_text(keyfile.dumps(signer))
    return board, signer


def boot(board: Path, mpy_tree: Path) -> dict[str, list[str]]:
    result = run(
        FIRMWARE_TESTS / "board_main.py",
        str(mpy_tree),
        str(board),
        str(FIRMWARE / "main.py"),
        heap=HEAP,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    # "log": what the firmware printed (the harness's own "R" lines left out)
    out: dict[str, list[str]] = {
        "log": [line for line in result.stdout.splitlines() if not line.startswith("R ")]
    }
    for name, value in re.findall(r"^R (\w+) (.*)$", result.stdout, re.M):
        out.setdefault(name, []).append(value)
    return out


@pytest.mark.micropython
@pytest.mark.timeout(150)
def test_main_on_a_simulated_esp32_records_pulses_and_uart_sales(
    mpy_tree: Path, tmp_path: Path
) -> None:
    board, signer = flash(tmp_path)
    out = boot(board, mpy_tree)
    log = "\n".join(out["log"])
    assert out["boot"] == [f"wdt/{FIRMWARE_VERSION}"]  # machine.WDT_RESET, mapped
    assert out["wdt_timeout"] == ["8000"] and int(out["feeds"][0]) > 20
    assert out["wifi"] == ["cafe/pw-123"]  # the Secret revealed to the radio only
    assert "pw-123" not in log  # and never printed
    host, calls = out["ntp"][0].split("/")
    assert host == "ntp.test" and int(calls) >= 1
    assert out["led"][0].endswith("0")  # active low: 0 = on once Wi-Fi is up
    assert out["coin"] == ["1/2/2"]  # Pin.IN, PULL_UP, IRQ_FALLING
    assert out["uart"] == ["115200/17/16"]
    revs = [r.split("/") for r in out["rev"]]
    assert [r[1:] for r in revs] == [
        ["150", "EUR", "pulse", "True"],  # 3 pulses x 50, with a synced time
        ["250", "EUR", "uart", "True"],
    ]
    ack = frame(b"ACK,%d" % int(revs[1][0])).decode()  # the terminal's sale, acknowledged
    assert [tx.rstrip("\r") for tx in out["uart_tx"]] == [ack.rstrip("\r\n")]
    assert out["evt"] == ["sensor_missing/sources[2] uart: UART(7) doesn't exist"]
    assert f"device {signer.device_id} running, boot 1" in log
    assert int(out["ack"][0]) >= int(revs[1][0])  # everything stored and acknowledged


@pytest.mark.micropython
@pytest.mark.timeout(150)
def test_main_with_a_bad_config_says_which_field_and_starts_nothing(
    mpy_tree: Path, tmp_path: Path
) -> None:
    board, _ = flash(tmp_path, {"mqtt": {"port": "1883"}})
    out = boot(board, mpy_tree)
    log = "\n".join(out["log"])
    assert "signet: config error: mqtt.port: must be an integer 1..65535, got '1883'" in log
    assert out["wdt_timeout"] == ["None"] and out["feeds"] == ["0"]  # no watchdog: no reset loop
    assert out["wifi"] == ["None"] and "ack" in out and out["ack"] == ["0"]


# What a P-256 key file, one pulse input and no sale window need, and nothing else:
# the heap a board leaves for the maker's code depends on it (docs/AGENT.md, "Memory").
PULSE_DEVICE_MODULES = {
    "signet",
    "signet.agent",
    "signet.board",
    "signet.builder",
    "signet.cbor",
    "signet.clock",
    "signet.cose",
    "signet.ec",
    "signet.ecdsa",
    "signet.fsio",
    "signet.journal",
    "signet.link",
    "signet.mqtt",
    "signet.pulse",
    "signet.record",
    "signet.recorder",
    "signet.rfc6979",
    "signet.run",  # main.py's body: the run loop (the start-up, signet.startup, is dropped)
    "signet.settings",
    "signet.signer",
    "signet.state",
}


@pytest.mark.micropython
@pytest.mark.timeout(150)
def test_a_p256_pulse_device_loads_only_what_its_config_uses(
    mpy_tree: Path, tmp_path: Path
) -> None:
    pulse = board_config(tmp_path)["sources"][0]
    board, _ = flash(tmp_path, {"journal": {"ref_window": 0}}, [pulse])
    out = boot(board, mpy_tree)
    revs = [r.split("/")[1:4] for r in out["rev"]]
    assert revs == [["150", "EUR", "pulse"]] and int(out["ack"][0]) >= 2
    # No uartline, secp256k1, refwindow, config validator, key file reader or chip driver.
    assert set(out["loaded"][0].split()) == PULSE_DEVICE_MODULES
    assert out["curves"] == ["p256"]  # secp256k1's constants are not in the heap either
    held = {name for line in out["held"] for name in line.split()}
    assert "signet.state.SeqState.next_n" in held  # what it needs, listed
    assert "signet.state.ChipCounter" not in held  # a key file: no chip counter's code
    # The comb table is built at start and kept, the code that built it is not.
    assert "signet.ec.comb_table" in held and "signet.comb" not in out["loaded"][0].split()
    assert not [h for h in held if h.endswith(("._to_affine_many", "comb.build"))], held
    # The journal's recovery ran at start; its code is not kept either.
    assert "signet.journal.Journal.append" in held
    assert not [h for h in held if h.endswith(("._scan", ".recover"))], held
    # The start-up ran (config, key, agent); its code is not kept: only the run loop is.
    assert "signet.run.main" in held and not [h for h in held if h.startswith("signet.startup")]
    # Nobody asks a board for the agent's counters: their code is not loaded.
    assert "signet.agent.Agent.run" in held and "signet.stats.collect" not in held
