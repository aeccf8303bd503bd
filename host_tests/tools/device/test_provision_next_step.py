"""What a maker is told to run after `signet device provision` (its last lines, and
docs/DEVICE.md sections 5 and 6) works as printed: it parses, and it enrolls the key in a
gateway that had no database yet."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from types import SimpleNamespace

import pytest

from kit.gatewaykit import Dev
from kit.paths import REPO
from signet_gateway.store.sqlite import Store
from signet_tools.cli import device as cli_device
from signet_tools.cli.main import build_parser, main
from signet_tools.device import board as device_cmd
from signet_tools.runners.gateway_process import write_gateway_config

PEM = Path("keys/coffee-01.pem")
BOARD = {
    "wifi": {"ssid": "workshop", "password": "hunter22"},
    "mqtt": {"host": "broker.local", "port": 1883},
    "key": {"type": "file", "path": "placeholder"},
}


@pytest.fixture
def gateway_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Dev:
    """A gateway's working directory with its gateway.toml but no database yet, and the
    provisioned public key where provision wrote it."""
    monkeypatch.chdir(tmp_path)
    dev = Dev(80)
    PEM.parent.mkdir()
    PEM.write_bytes(dev.pem())
    write_gateway_config(Path("gateway.toml"), 1883, Path("signet.db"), create_db=False)
    return dev


def _commands(text: str) -> list[list[str]]:
    """Every `signet ...` command in the text, as the argument lists a shell would pass."""
    found = []
    for line in text.splitlines():
        match = re.search(r"(?:^|[\s:`])signet (\S.*)$", line)
        if match is not None:
            command = match.group(1).split("  #")[0].rstrip(")` ")
            found.append(shlex.split(command))
    return found


def _run_as_printed(commands: list[list[str]], dev: Dev) -> None:
    assert [c[:2] for c in commands] == [["db", "init"], ["enroll", "--pubkey"]], commands
    for argv in commands:
        build_parser().parse_args(argv)  # a usage error would exit here (SystemExit 2)
        assert main(argv) == 0, argv
    with Store("signet.db", readonly=True) as store:
        device = store.resolve_device("coffee-01")
    assert device.kid == dev.kid and device.tier == "software" and device.active


def test_provision_prints_commands_that_enroll_the_key(
    gateway_host: Dev, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Only the board is stood in for (provisioning itself runs on the MicroPython unix port
    # in test_device_cmd.py); what is checked is what the command prints after it.
    monkeypatch.setattr(cli_device, "_board", lambda args: SimpleNamespace(port="/dev/fake"))
    monkeypatch.setattr(
        device_cmd,
        "provision",
        lambda *a, **k: SimpleNamespace(device_id=gateway_host.kid, curve="p256", state="new"),
    )
    template = Path("board.json")
    template.write_text(json.dumps(BOARD))
    argv = ["device", "provision", "--config-template", str(template), "--out-pubkey", str(PEM)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    next_step = out[out.index("next ") :]
    commands = _commands(next_step)
    _run_as_printed([commands[1], commands[0]], gateway_host)  # init first, as it says


def test_device_md_section_6_enrolls_the_key(gateway_host: Dev) -> None:
    text = (REPO / "docs" / "DEVICE.md").read_text()
    section = text[text.index("## 6. Enrolling") : text.index("## 7.")]
    block = section[section.index("```sh") : section.index("```", section.index("```sh") + 5)]
    _run_as_printed(_commands(block), gateway_host)


def test_device_md_shows_the_next_step_provision_prints() -> None:
    text = (REPO / "docs" / "DEVICE.md").read_text()
    assert "\n".join(cli_device.enroll_next_step(PEM)) + "\n```" in text
