"""The firmware test modules, run again under the MicroPython unix port.

Same source as the CPython run (host_tests/firmware/fwtests), compiled with mpy-cross
and executed with a 64 KiB heap: catches CPython-only syntax, modules and
behaviour, and code that does not fit a small heap.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from kit.paths import FIRMWARE_TESTS
from signet_tools.device.micropython import DEFAULT_HEAP, FIRMWARE, compile_tree, run

MODULES = sorted(p.stem for p in FIRMWARE_TESTS.glob("test_fw_*.py"))
# A module whose test code is itself large gets room for it: test_fw_records holds an
# independent EC implementation (reference_ec, the verifier of the firmware's signatures)
# next to the firmware's own, and at 64 KiB it ran out depending on the length of the
# temporary directory's path (module paths are strings in the same heap).
HEAPS = {"test_fw_records": "72k"}


def test_firmware_test_modules_exist() -> None:
    assert len(MODULES) >= 2


def test_every_firmware_file_compiles_for_devices(tmp_path: Path) -> None:
    compiled = compile_tree(FIRMWARE, tmp_path)
    sources = sorted(FIRMWARE.rglob("*.py"))
    assert len([p for p in compiled if p.suffix == ".mpy"]) == len(sources) > 0
    # the package's data files beside the modules, as on a board: the comb tables' bytes
    tables = sorted(p.relative_to(tmp_path) for p in compiled if p.suffix == ".bin")
    assert tables == sorted(p.relative_to(FIRMWARE) for p in FIRMWARE.rglob("*.bin"))
    assert tables == [Path("lib/signet/comb_p256.bin"), Path("lib/signet/comb_secp256k1.bin")]
    for table in tables:
        assert (tmp_path / table).read_bytes() == (FIRMWARE / table).read_bytes()


@pytest.mark.micropython
@pytest.mark.parametrize("module", MODULES)
def test_module_passes_on_micropython(module: str, mpy_tree: Path) -> None:
    expected = sorted(
        name
        for name in dir(importlib.import_module(f"fwtests.{module}"))
        if name.startswith("test_")
    )
    result = run(
        FIRMWARE_TESTS / "mprun.py", module, str(mpy_tree), heap=HEAPS.get(module, DEFAULT_HEAP)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    passed = re.findall(r"^PASS (\w+)$", result.stdout, re.M)
    failed = re.findall(r"^FAIL .*$", result.stdout, re.M)
    assert not failed, result.stdout
    # Every test the CPython run has, the MicroPython run passed: none skipped.
    assert sorted(passed) == expected
    assert re.search(r"^DONE passed=\d+ failed=0", result.stdout, re.M)
