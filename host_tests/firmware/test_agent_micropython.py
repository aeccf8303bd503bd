"""The agent under the MicroPython unix port: its test modules, and a 10,000-record soak.

Heaps: on the 64-bit unix port every object and every loaded .mpy costs more
than on a 32-bit board (8-byte words, 32-byte GC blocks; about 1.4x, measured
against a 32-bit build). The firmware code alone (crypto, CBOR, journal, agent,
umqtt wrapper, loaded from .mpy into the heap) takes ~64 KiB there, plus the
scripted broker/gateway stand-in and the test helpers, so these runs use larger
heaps than a board's: AGENT_TEST_HEAP for the test modules, SOAK_HEAP for the
soak. SOAK_HEAP is the smallest heap the soak passes in on the 64-bit port in
8 KiB steps (120k: the comb table is read from its file, not built in the heap; 128k
before, 144k before the modules were loaded one by one and the recorder's buffer was
cut to its largest record; 116k passed 3 runs of 3 and 112k failed, so 120k keeps a
step for the temporary paths of another checkout, which are in the heap too), so a
change that needs more heap fails here; what it asserts does not depend on the heap
size: no MemoryError (not even one the agent survived), every record acknowledged, and
heap in use after gc.collect() not growing from the first 1,000 records to the last.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from kit.paths import FIRMWARE_TESTS
from signet_tools.device.micropython import run

MODULES = sorted(p.stem for p in FIRMWARE_TESTS.glob("test_agent_*.py"))
# The agent modules' tests run the scripted broker and gateway in the same heap as the agent,
# and the stand-in gateway keeps every record it stores. At 256k the low-memory test's heap,
# cut up by its locked-heap phases, left the stand-in no 2 KiB block about once in 30 runs
# (a MemoryError in the test's broker, not in the agent), and the catch-up crawled past its
# deadline. The agent's own edge is tested with the heap locked, not with a small heap.
AGENT_TEST_HEAP = "320k"
SOAK_HEAP = "120k"
SOAK_RECORDS = 10_000
# Bytes the heap may differ between the first and the last 1,000 records: the
# platform's bounded log ring (16 lines) and small-int/str churn in the fakes.
SOAK_TOLERANCE = 1024


@pytest.mark.micropython
@pytest.mark.timeout(120)
@pytest.mark.parametrize("module", MODULES)
def test_agent_module_passes_on_micropython(module: str, mpy_tree: Path) -> None:
    expected = sorted(
        name
        for name in dir(importlib.import_module(f"fwtests.{module}"))
        if name.startswith("test_")
    )
    result = run(FIRMWARE_TESTS / "mprun.py", module, str(mpy_tree), heap=AGENT_TEST_HEAP)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not re.findall(r"^FAIL .*$", result.stdout, re.M), result.stdout
    assert sorted(re.findall(r"^PASS (\w+)$", result.stdout, re.M)) == expected


@pytest.mark.micropython
@pytest.mark.timeout(250)
def test_soak_10000_records_heap_does_not_grow(mpy_tree: Path, tmp_path: Path) -> None:
    result = run(
        FIRMWARE_TESTS / "soak_agent.py",
        str(SOAK_RECORDS),
        str(mpy_tree),
        str(tmp_path / "journal"),
        heap=SOAK_HEAP,
        timeout=240,  # ~40 s alone; a tight heap collects often, and CI machines are shared
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    assert "MemoryError" not in result.stdout + result.stderr
    samples = {int(i): int(b) for i, b in re.findall(r"^heap (\d+) (\d+)$", result.stdout, re.M)}
    assert len(samples) == SOAK_RECORDS // 100
    first = [b for i, b in samples.items() if i <= 1000]
    last = [b for i, b in samples.items() if i > SOAK_RECORDS - 1000]
    print(f"soak heap: first 1000 max {max(first)} B, last 1000 max {max(last)} B")
    assert max(last) <= max(first) + SOAK_TOLERANCE, (first, last)
    done = re.search(
        r"^DONE signed=(\d+) acked=(\d+) outages=(\d+) batches=(\d+) memory_errors=(\d+)",
        result.stdout,
        re.M,
    )
    assert done, result.stdout[-500:]
    signed, acked, outages, batches, memory_errors = map(int, done.groups())
    # Not one MemoryError, even survived: SOAK_HEAP is the smallest heap the agent
    # needs, so a change that needs more fails here rather than limping through.
    assert memory_errors == 0
    assert signed >= SOAK_RECORDS and acked == signed  # boot + heartbeats + revenue, all acked
    assert outages == SOAK_RECORDS // 1000 and batches >= outages  # catch-up used batches
