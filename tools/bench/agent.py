"""`signet bench agent`: the device agent on the MicroPython unix port.

One run measures: records/s through the agent's build+sign+journal path, and
the same build+sign without the journal as the reference (ratio printed);
flash bytes written per record byte (journal write amplification); and the
smallest heap the running agent fits in (found by running it at growing heap
sizes, in 4 KiB steps), next to the heap its code alone takes: loaded from .mpy
(as `mip` or `signet device flash` installs it), or, on a binary with the signet
package frozen in (detected, and said in the header), the module, class and
function objects its frozen code still makes in the heap. The code figure is then
split by module: each of the modules the agent loaded, imported in a fresh process after
the modules it imports, and the heap its import holds.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from signet_tools.device import manifest, micropython

_SCRIPT = Path(__file__).with_name("mp_agent.py")
_MODULES_SCRIPT = Path(__file__).with_name("mp_modules.py")
TARGET_HEAP = 48 * 1024  # code loaded from .mpy
TARGET_HEAP_FROZEN = 24 * 1024  # code frozen into the firmware
TARGET_AMPLIFICATION = 3.0
_HEAPS_K = range(16, 321, 4)  # a 32-bit build with signet frozen in fits in ~32 KiB


def smallest_heap_k(fits: Callable[[int], bool], heaps_k: range = _HEAPS_K) -> int:
    """The smallest of heaps_k (KiB) in which fits(k) holds, by bisection (a heap the agent
    fits in, any larger one fits too); -1 if it fits in none."""
    lo, hi = 0, len(heaps_k) - 1
    if not fits(heaps_k[hi]):
        return -1
    while lo < hi:
        mid = (lo + hi) // 2
        if fits(heaps_k[mid]):
            hi = mid
        else:
            lo = mid + 1
    return heaps_k[lo]


def import_order(modules: Iterable[str]) -> list[str]:
    """The firmware modules given, each after the ones among them it imports at its top
    (the package first), so that importing them in this order measures each one alone."""
    wanted = set(modules)
    ordered: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen or name not in wanted:
            return
        seen.add(name)
        parts = name.split(".")
        if len(parts) == 1:
            path = manifest.FIRMWARE_LIB / name / "__init__.py"
        else:
            path = manifest.FIRMWARE_LIB.joinpath(*parts).with_suffix(".py")
        for dep in sorted(manifest.imports(path).top):
            visit(dep)
        ordered.append(name)

    for name in sorted(wanted, key=lambda m: (m != manifest.PACKAGE, m)):
        visit(name)
    return ordered


def module_bytes(lib: Path, loaded: Iterable[str], mp: micropython.Binary) -> dict[str, int]:
    """The heap each of the loaded modules holds once imported (lib: the compiled firmware)."""
    order = import_order(loaded)
    out = micropython.run(_MODULES_SCRIPT, str(lib), *order, heap="512k", exe=mp.path)
    if out.returncode != 0:
        raise RuntimeError(f"MicroPython module measurement failed:\n{out.stdout}{out.stderr}")
    return {name: micropython.field(out.stdout, f"module_bytes {name}") for name in order}


def run(count: int = 300, binary: micropython.Binary | None = None) -> dict[str, Any]:
    """binary: the MicroPython to run (default: the installed unix port)."""
    mp = binary or micropython.binary()
    results: dict[str, Any] = {"micropython": mp.describe(), "bits": mp.bits, "count": count}
    with tempfile.TemporaryDirectory() as tmp:
        lib = Path(tmp) / "lib"
        micropython.compile_tree(micropython.FIRMWARE_LIB, lib)
        timed = micropython.run(
            _SCRIPT, str(count), str(lib), f"{tmp}/j0", heap="512k", exe=mp.path
        )
        if timed.returncode != 0:
            raise RuntimeError(f"MicroPython agent benchmark failed:\n{timed.stdout}{timed.stderr}")
        out = timed.stdout
        names = ("script_bytes", "code_bytes", "at_rest_bytes", "us_per_record", "us_per_sign")
        for name in names:
            results[name] = micropython.field(out, name)
        results["frozen"] = micropython.field(out, "frozen") == 1
        flash = micropython.field(out, "flash_bytes")
        results["amplification"] = flash / micropython.field(out, "record_bytes")
        loaded = re.search(r"^loaded=(.*)$", out, re.M)
        results["modules"] = module_bytes(lib, loaded.group(1).split(",") if loaded else [], mp)

        def fits(k: int) -> bool:
            probe = micropython.run(
                _SCRIPT, "40", str(lib), f"{tmp}/j{k}", heap=f"{k}k", exe=mp.path
            )
            return probe.returncode == 0

        k = smallest_heap_k(fits)
        results["min_heap_bytes"] = k * 1024 if k > 0 else -1
    return results


_SIZES = {
    64: "this port's 64-bit objects are larger than a board's (--micropython: a 32-bit build).",
    32: "32-bit objects, as on a board.",
}


_FREEZE_HINT = "Frozen into flash (signet device manifest) bytecode and names leave the heap; "


def format_report(r: dict[str, Any]) -> str:
    rec_ms = r["us_per_record"] / 1000
    ref_ms = r["us_per_sign"] / 1000
    amp = r["amplification"]
    heap = r["min_heap_bytes"]
    data = r["at_rest_bytes"] - r["code_bytes"]
    frozen = r.get("frozen", False)
    target = TARGET_HEAP_FROZEN if frozen else TARGET_HEAP
    heap_ok = 0 < heap <= target
    amp_ok = amp <= TARGET_AMPLIFICATION
    origin = "signet frozen into the binary" if frozen else "signet loaded from .mpy"
    code = (
        "of which code held in the heap though frozen (module, class and function objects) "
        if frozen
        else "of which code loaded from .mpy "
    )
    lines = [
        f"signet bench agent: {r['micropython']}, {origin}, {r['count']} rev records",
        f"  agent build+sign+journal {rec_ms:6.3f} ms/record ({1000 / rec_ms:6.1f} records/s) | "
        f"build+sign alone {ref_ms:6.3f} ms | ratio {rec_ms / ref_ms:4.2f}",
        f"  flash bytes written per record byte: {amp:4.2f} "
        f"(target <= {TARGET_AMPLIFICATION:g}: {'met' if amp_ok else 'MISSED'})",
        f"  smallest heap the running agent fits in (4 KiB steps): {heap // 1024} KiB "
        f"(target <= {target // 1024} KiB {'frozen' if frozen else 'from .mpy'}: "
        f"{'met' if heap_ok else 'MISSED'})",
        f"    {code}{r['code_bytes'] / 1024:.1f} KiB; agent data at rest "
        f"(key table, buffers, journal index) {data / 1024:.1f} KiB. "
        + ("" if frozen else _FREEZE_HINT)
        + _SIZES.get(r["bits"], f"{r['bits']}-bit objects."),
    ]
    if "script_bytes" in r:
        lines.append(
            "    the code figure includes the heap in use before signet is imported (this"
            f" benchmark's own script, the interpreter's start), {r['script_bytes'] / 1024:.1f}"
            " KiB; on a board main.py is two lines: the start-up is in the package"
        )
    return "\n".join(lines + _module_table(r.get("modules") or {}))


def _module_table(sizes: dict[str, int], columns: int = 4) -> list[str]:
    """Four modules a line, largest first: the heap each module's import holds."""
    if not sizes:
        return []
    short = {name: name.rsplit(".", 1)[-1] if "." in name else "(package)" for name in sizes}
    cells = [
        f"{short[name]:<11}{sizes[name] / 1024:5.1f} KiB"
        for name in sorted(sizes, key=lambda n: (-sizes[n], n))
    ]
    total = sum(sizes.values()) / 1024
    lines = [
        f"    code by module, each imported alone after what it imports ({total:.1f} KiB; "
        "the interned-name tables and the benchmark's own script not counted):"
    ]
    lines += ["      " + " | ".join(cells[i : i + columns]) for i in range(0, len(cells), columns)]
    return lines
