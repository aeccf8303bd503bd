"""`signet bench sign`: firmware signing cost on MicroPython against a CPython reference.

One run measures both sides: ms per record (build + sign) with the firmware
code on the MicroPython unix port, and ms per signature of the `ecdsa` PyPI
package on CPython over the same bytes. The ratio is what the target is about;
absolute numbers depend on the machine.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from pathlib import Path
from typing import Any

import ecdsa

from signet.builder import RecordBuilder
from signet.signer import SoftwareSigner
from signet_tools.device import micropython

from .samples import FIELDS_BY_KIND

_SCRIPT = Path(__file__).with_name("mp_sign.py")
_D = 0xC9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721
_ECDSA_CURVES = {"p256": ecdsa.NIST256p, "secp256k1": ecdsa.SECP256k1}
TARGET_RATIO = 5.0
TARGET_HEAP = 24 * 1024


def _reference_ms(curve: str, seconds: float) -> float:
    """ecdsa (CPython) deterministic signing of a record-sized Sig_structure."""
    _, record = RecordBuilder(SoftwareSigner(curve, _D)).build(
        "rev",
        1,
        1,
        0,
        1767225600000,
        bytes(32),
        FIELDS_BY_KIND["rev"],
    )
    message = record  # same length class as the Sig_structure
    key = ecdsa.SigningKey.from_secret_exponent(
        _D, curve=_ECDSA_CURVES[curve], hashfunc=hashlib.sha256
    )
    key.sign_deterministic(message)  # precomputation, as the MicroPython side warms up
    count = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        key.sign_deterministic(message + count.to_bytes(4, "big"))
        count += 1
    return (time.perf_counter() - start) * 1000 / count


def run(
    count: int = 200,
    heap: str = micropython.DEFAULT_HEAP,
    binary: micropython.Binary | None = None,
) -> dict[str, Any]:
    """binary: the MicroPython to run (default: the installed unix port)."""
    mp = binary or micropython.binary()
    results: dict[str, Any] = {"heap": heap, "micropython": mp.describe(), "bits": mp.bits}
    with tempfile.TemporaryDirectory() as tmp:
        micropython.compile_tree(micropython.FIRMWARE_LIB, Path(tmp))
        for curve in ("p256", "secp256k1"):
            timed = micropython.run(_SCRIPT, "time", curve, str(count), tmp, heap=heap, exe=mp.path)
            if timed.returncode != 0:
                raise RuntimeError(f"MicroPython benchmark failed:\n{timed.stdout}{timed.stderr}")
            mp_ms = micropython.field(timed.stdout, "us_per_record") / 1000
            ref_ms = _reference_ms(curve, seconds=1.0)
            results[curve] = {
                "micropython_ms": mp_ms,
                "reference_ms": ref_ms,
                "ratio": mp_ms / ref_ms,
            }
        sized = micropython.run(_SCRIPT, "heap", "p256", "1", tmp, heap="256k", exe=mp.path)
        if sized.returncode != 0:
            raise RuntimeError(f"MicroPython heap probe failed:\n{sized.stdout}{sized.stderr}")
        results["signature_heap_bytes"] = micropython.field(sized.stdout, "signature_heap_bytes")
        results["table_bytes"] = micropython.field(sized.stdout, "table_bytes")
        results["at_rest_bytes"] = micropython.field(sized.stdout, "at_rest_bytes")
    return results


def format_report(r: dict[str, Any]) -> str:
    p, k = r["p256"], r["secp256k1"]
    heap = r["signature_heap_bytes"]
    lines = [
        f"signet bench sign: {r['micropython']}, heap {r['heap']}, "
        f"vs ecdsa {ecdsa.__version__} on CPython, same run",
        f"  ES256  record build+sign on MicroPython {p['micropython_ms']:7.3f} ms | "
        f"ecdsa sign on CPython {p['reference_ms']:6.3f} ms | ratio {p['ratio']:4.2f} "
        f"(target <= {TARGET_RATIO:g}: {'met' if p['ratio'] <= TARGET_RATIO else 'MISSED'})",
        f"  ES256K record build+sign on MicroPython {k['micropython_ms']:7.3f} ms | "
        f"ecdsa sign on CPython {k['reference_ms']:6.3f} ms | ratio {k['ratio']:4.2f}",
        f"  peak heap during one ES256 signature: {heap / 1024:.1f} KiB "
        f"(target <= {TARGET_HEAP // 1024} KiB: {'met' if 0 < heap <= TARGET_HEAP else 'MISSED'})",
        f"  held between signatures: comb table {r['table_bytes'] / 1024:.1f} KiB; "
        f"code + table + buffers {r['at_rest_bytes'] / 1024:.1f} KiB ({r['bits']}-bit sizes)",
    ]
    return "\n".join(lines)
