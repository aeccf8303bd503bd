from __future__ import annotations

from pathlib import Path

import pytest

from kit.paths import FIRMWARE_TESTS
from signet_tools.device.micropython import FIRMWARE_LIB, compile_tree


@pytest.fixture(scope="session")
def mpy_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The firmware package and the firmware test modules, compiled to .mpy.

    Loading .mpy (as a device does) keeps the compiler's own heap use out of
    the 64 KiB MicroPython runs.
    """
    root = tmp_path_factory.mktemp("mpy")
    compile_tree(FIRMWARE_LIB, root)
    compile_tree(FIRMWARE_TESTS, root)
    return root
