"""The secure-element test modules (fwtests/test_se_*.py) under the MicroPython unix port.

The unix port has no machine.I2C: the real driver talks to the emulated ATECC608 through
the I2C bridge (tools/runners/i2c_bridge.py serves it from this process on a loopback
port; tools/runners/mp_i2c_bridge.py is the bus on the MicroPython side). The same
modules run under CPython with the emulator in-process (pytest collects them directly).
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

import signet_tools.runners
from kit.paths import FIRMWARE_TESTS
from signet_tools.device.micropython import run
from signet_tools.runners.i2c_bridge import BridgeServer

MODULES = sorted(p.stem for p in FIRMWARE_TESTS.glob("test_se_*.py"))
RUNNERS = Path(signet_tools.runners.__file__).parent
HEAP = "64k"  # a board's heap: the driver, signer and test helpers fit in it


def test_secure_element_modules_exist() -> None:
    assert MODULES == ["test_se_atecc608", "test_se_signer"]


@pytest.mark.micropython
@pytest.mark.timeout(120)
@pytest.mark.parametrize("module", MODULES)
def test_se_module_passes_on_micropython(
    module: str, mpy_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = sorted(
        name
        for name in dir(importlib.import_module(f"fwtests.{module}"))
        if name.startswith("test_")
    )
    with BridgeServer() as bridge:
        monkeypatch.setenv("SIGNET_I2C_BRIDGE", str(bridge.port))
        result = run(FIRMWARE_TESTS / "mprun.py", module, str(RUNNERS), str(mpy_tree), heap=HEAP)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not re.findall(r"^FAIL .*$", result.stdout, re.M), result.stdout
    assert sorted(re.findall(r"^PASS (\w+)$", result.stdout, re.M)) == expected
