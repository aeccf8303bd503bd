"""`signet bench agent`: the device agent on the MicroPython unix port.

One run measures: records/s through the agent's build+sign+journal path, and
the same build+sign without the journal as the reference (ratio printed);
flash bytes written per record byte (journal write amplification); and the
smallest heap the running agent fits in (found by running it at growing heap
sizes), next to the heap its code alone takes when loaded from .mpy.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from signet_tools.device import micropython

_SCRIPT = Path(__file__).with_name("mp_agent.py")
TARGET_HEAP = 48 * 1024
TARGET_AMPLIFICATION = 3.0
_HEAPS_K = range(64, 321, 8)


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
        for name in ("code_bytes", "at_rest_bytes", "us_per_record", "us_per_sign"):
            results[name] = micropython.field(out, name)
        flash = micropython.field(out, "flash_bytes")
        results["amplification"] = flash / micropython.field(out, "record_bytes")
        results["min_heap_bytes"] = -1
        for k in _HEAPS_K:
            probe = micropython.run(
                _SCRIPT, "40", str(lib), f"{tmp}/j{k}", heap=f"{k}k", exe=mp.path
            )
            if probe.returncode == 0:
                results["min_heap_bytes"] = k * 1024
                break
    return results


_SIZES = {
    64: "this port's 64-bit objects are larger than a board's (--micropython: a 32-bit build).",
    32: "32-bit objects, as on a board.",
}


def format_report(r: dict[str, Any]) -> str:
    rec_ms = r["us_per_record"] / 1000
    ref_ms = r["us_per_sign"] / 1000
    amp = r["amplification"]
    heap = r["min_heap_bytes"]
    data = r["at_rest_bytes"] - r["code_bytes"]
    heap_ok = 0 < heap <= TARGET_HEAP
    amp_ok = amp <= TARGET_AMPLIFICATION
    lines = [
        f"signet bench agent: {r['micropython']}, {r['count']} rev records",
        f"  agent build+sign+journal {rec_ms:6.3f} ms/record ({1000 / rec_ms:6.1f} records/s) | "
        f"build+sign alone {ref_ms:6.3f} ms | ratio {rec_ms / ref_ms:4.2f}",
        f"  flash bytes written per record byte: {amp:4.2f} "
        f"(target <= {TARGET_AMPLIFICATION:g}: {'met' if amp_ok else 'MISSED'})",
        f"  smallest heap the running agent fits in: {heap // 1024} KiB "
        f"(target <= {TARGET_HEAP // 1024} KiB: {'met' if heap_ok else 'MISSED'})",
        f"    of which code loaded from .mpy {r['code_bytes'] / 1024:.1f} KiB; agent data at rest "
        f"(key table, buffers, journal index) {data / 1024:.1f} KiB. Frozen into flash "
        f"(firmware/manifest.py) bytecode and names leave the heap; "
        + _SIZES.get(r["bits"], f"{r['bits']}-bit objects."),
    ]
    return "\n".join(lines)
