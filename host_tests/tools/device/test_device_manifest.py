"""`signet device manifest` (tools/device/manifest.py): the freeze manifest for one board
config. What main.py really loads for each kind of config is checked on the MicroPython
unix port in host_tests/firmware/test_board_manifest_micropython.py; here: the file it
writes (run with stand-ins for MicroPython's manifest functions), the modules a config
leaves out, and the command's errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from signet import config as config_mod
from signet_tools.cli.main import main
from signet_tools.device import manifest

BOARD = {
    "wifi": {"ssid": "workshop", "password": "hunter22"},
    "mqtt": {"host": "broker.local"},
    "key": {"type": "file", "path": "signet.key"},
    "sources": [{"type": "pulse", "pin": 27, "value": 50, "currency": "EUR"}],
}
CHIP_KEY = {"type": "atecc608", "path": "signet-se.json", "address": 0x35}
SOFTWARE_ECDSA = {"ec.py", "ecdsa.py", "rfc6979.py", "signer.py", "keyfile.py"}


def _cfg(**change: Any) -> config_mod.Config:
    return config_mod.parse({**BOARD, **change}, board=True)


def _execute(text: str) -> dict[str, list[Any]]:
    """The calls a manifest makes to MicroPython's manifest API (tools/manifestfile.py)."""
    calls: dict[str, list[Any]] = {"include": [], "require": [], "package": [], "module": []}
    api = {
        "include": lambda path, **kw: calls["include"].append(path),
        "require": lambda name, **kw: calls["require"].append(name),
        "package": lambda path, files=None, base_path=".", opt=None: calls["package"].append(
            (path, files, base_path)
        ),
        "module": lambda path, base_path=".", opt=None: calls["module"].append(path),
    }
    exec(compile(text, "manifest.py", "exec"), api)
    return calls


def test_the_manifest_freezes_the_needed_package_files_after_the_ports_own(
    tmp_path: Path,
) -> None:
    out = tmp_path / "manifest.py"
    calls = _execute(manifest.render(_cfg(), "esp32", out))
    assert calls["include"] == ["$(PORT_DIR)/boards/manifest.py"]
    assert calls["require"] == ["umqtt.simple", "ntptime"]
    [(package, files, base_path)] = calls["package"]
    assert package == "signet" and Path(base_path) == manifest.FIRMWARE_LIB
    assert files == list(manifest.needs(_cfg()).files)
    assert all((manifest.FIRMWARE_LIB / "signet" / f).is_file() for f in files)
    assert {"__init__.py", "config.py", "agent.py", "pulse.py", "refwindow.py"} <= set(files)
    assert set(files) >= SOFTWARE_ECDSA
    assert not {"uartline.py", "atecc608.py", "se_signer.py", "binding.py"} & set(files)
    assert not {"se_provision.py", "statement.py"} & set(files)  # provisioning only
    text = manifest.render(_cfg(), "rp2", out)
    assert _execute(text)["include"] == ["$(BOARD_DIR)/manifest.py"]
    assert f"ports/rp2 BOARD=RPI_PICO_W FROZEN_MANIFEST={out.resolve()}" in text


def test_what_a_config_leaves_out() -> None:
    chip = manifest.needs(_cfg(key=CHIP_KEY))
    assert {"atecc608.py", "se_signer.py", "binding.py"} <= set(chip.files)
    assert not SOFTWARE_ECDSA & set(chip.files)
    fallback = manifest.needs(_cfg(key={**CHIP_KEY, "fallback_path": "fallback.key"}))
    assert set(fallback.files) >= SOFTWARE_ECDSA
    uart = manifest.needs(_cfg(sources=[{"type": "uart", "id": 2}]))
    assert "uartline.py" in uart.files and "pulse.py" not in uart.files
    lean = manifest.needs(_cfg(journal={"ref_window": 0}, time={"ntp_host": None}))
    assert "refwindow.py" not in lean.files and lean.packages == ("umqtt.simple",)
    tls = manifest.needs(_cfg(mqtt={"host": "broker.local", "tls": {"ca": "ca.pem"}}))
    assert tls.packages == ("umqtt.simple", "ntptime", "ssl")


def test_imports_inside_functions_are_the_lazy_ones(tmp_path: Path) -> None:
    pkg = tmp_path / "signet"
    pkg.mkdir()
    for name in ("__init__", "a", "b", "c"):
        (pkg / f"{name}.py").write_text("")
    (pkg / "a.py").write_text(
        "import gc\nfrom . import b\nfrom .c import X\nfrom . import VERSION\n"
        "def f():\n    from umqtt.simple import MQTTClient\n    import ntptime\n"
    )
    found = manifest.imports(pkg / "a.py", tmp_path)
    assert found.top == {"gc", "signet", "signet.b", "signet.c"}
    assert found.lazy == {"umqtt.simple", "ntptime"}


def test_the_command_writes_the_file_or_prints_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    board = tmp_path / "board.json"
    board.write_text(json.dumps({**BOARD, "key": CHIP_KEY}))
    out = tmp_path / "manifest.py"
    assert main(["device", "manifest", "--config", str(board), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed
    assert f"make -C ports/esp32 BOARD=ESP32_GENERIC FROZEN_MANIFEST={out.resolve()}" in printed
    [(_, files, _)] = _execute(out.read_text())["package"]
    assert "atecc608.py" in files and "ecdsa.py" not in files
    assert main(["device", "manifest", "--config", str(board), "--port", "rp2"]) == 0
    assert _execute(capsys.readouterr().out)["include"] == ["$(BOARD_DIR)/manifest.py"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        ("{", "not valid JSON"),
        (json.dumps({**BOARD, "wifi": None}), "wifi: is required on a board"),
    ],
)
def test_a_bad_config_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str
) -> None:
    board = tmp_path / "board.json"
    if content is not None:
        board.write_text(content)
    assert main(["device", "manifest", "--config", str(board)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("signet: error: ") and message in err and err.count("\n") == 1


def test_an_unwritable_out_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    board = tmp_path / "board.json"
    board.write_text(json.dumps(BOARD))
    out = tmp_path / "missing" / "manifest.py"
    assert main(["device", "manifest", "--config", str(board), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == f"signet: error: cannot write {out}: No such file or directory\n"


def test_without_the_device_entry_point_it_says_so_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    board = tmp_path / "board.json"
    board.write_text(json.dumps(BOARD))
    monkeypatch.setattr(manifest, "MAIN", tmp_path / "main.py")  # an installed package
    assert main(["device", "manifest", "--config", str(board)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"signet: error: {tmp_path / 'main.py'} is missing: run this from a checkout of the "
        "repository, whose firmware/main.py is the device's entry point\n"
    )
