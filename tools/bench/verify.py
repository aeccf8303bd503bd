"""Benchmark: host decode + verify throughput against bare ECDSA P-256 verification.

Generates N records (mixed kinds, several devices, hash-chained) with the
firmware's record builder, then,
single-threaded and interleaved in short slices so both see the same machine
state, measures:

* ``verify_per_s``: ``Verifier.verify(raw, expected_kid)`` over the rotating set:
  size check, strict CBOR, headers, key lookup, signature checks, ECDSA, payload
  schema: everything the gateway does per record before storage;
* ``raw_ecdsa_per_s``: ``cryptography`` ``public_key.verify(der, message,
  ECDSA(SHA256()))`` on the very same keys, Sig_structures and signatures
  (DER prepared in advance: the bare cost of OpenSSL's verify);
* ``ratio`` = verify_per_s / raw_ecdsa_per_s (target >= 0.8: decoding must be
  cheap next to the elliptic-curve arithmetic);
* ``secp256k1_verify_per_s``: the same full verify for ES256K records (coincurve).

Run: ``signet bench verify [--seconds S]``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from signet.builder import RecordBuilder
from signet.record import GENESIS_HASH
from signet.signer import SoftwareSigner
from signet_gateway.verify.cose_decode import PROTECTED_BY_ALG, sig_structure
from signet_gateway.verify.pubkeys import DevicePublicKey
from signet_gateway.verify.verifier import Verifier

from .samples import FIELDS_BY_KIND

__all__ = ["format_report", "run"]

_KINDS = ("hb", "rev", "meter", "evt", "boot")
_SLICE_S = 0.1


def _make_records(
    curve: str, count: int, devices: int
) -> tuple[list[tuple[bytes, bytes]], dict[bytes, DevicePublicKey]]:
    """Records as (raw, kid) signed by the firmware code, and the key map."""
    builders = [RecordBuilder(SoftwareSigner(curve, 1000 + i)) for i in range(devices)]
    key_map = {
        b.signer.kid: DevicePublicKey.from_sec1(b.signer.public_key, curve) for b in builders
    }
    records = []
    prev = [GENESIS_HASH] * devices
    for i in range(count):
        dev = i % devices
        kind = _KINDS[i % len(_KINDS)]
        payload, raw = builders[dev].build(
            kind,
            i // devices + 1,
            1,
            1000 * i,
            1_700_000_000_000 + i,
            prev[dev],
            FIELDS_BY_KIND[kind],
        )
        prev[dev] = hashlib.sha256(payload).digest()
        records.append((raw, builders[dev].signer.kid))
    return records, key_map


def _rate(step: Callable[[int], None], size: int, budget_s: float, sink: list[float]) -> None:
    """Run ``step(i)`` for one time slice; append (calls, seconds) to ``sink``."""
    calls = 0
    i = 0
    t0 = time.perf_counter()
    deadline = t0 + budget_s
    now = t0
    while now < deadline:
        for _ in range(50):
            step(i)
            i = i + 1 if i + 1 < size else 0
        calls += 50
        now = time.perf_counter()
    sink[0] += calls
    sink[1] += now - t0


def run(duration_s: float = 3.0, records: int = 200, devices: int = 8) -> dict[str, Any]:
    """Measure and return the figures (see module docstring); takes about ``duration_s``."""
    p256, p256_keys = _make_records("p256", records, devices)
    k1, k1_keys = _make_records("secp256k1", records, devices)
    verifier = Verifier(p256_keys)
    k1_verifier = Verifier(k1_keys)

    # The bare-ECDSA inputs: same keys, same signed bytes, same signatures, DER-encoded.
    algorithm = ec.ECDSA(hashes.SHA256())
    raw_inputs = []
    for raw, kid in p256:
        rec = verifier.verify(raw, kid)  # also proves every generated record is valid
        message = sig_structure(PROTECTED_BY_ALG[rec.alg], rec.payload_bytes)
        sig = rec.signature
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        public = p256_keys[kid].to_cryptography()
        public.verify(der, message, algorithm)  # sanity: the message is the Sig_structure
        raw_inputs.append((public, der, message))
    for raw, kid in k1:
        k1_verifier.verify(raw, kid)

    def host_step(i: int) -> None:
        raw, kid = p256[i]
        verifier.verify(raw, kid)

    def raw_step(i: int) -> None:
        public, der, message = raw_inputs[i]
        public.verify(der, message, algorithm)

    def k1_step(i: int) -> None:
        raw, kid = k1[i]
        k1_verifier.verify(raw, kid)

    host, bare, k1_sink = [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]
    # P-256 host and bare verify alternate in slices (fair against frequency scaling and
    # noisy neighbours); secp256k1 gets a fifth of the time.
    deadline = time.perf_counter() + duration_s * 0.8
    while True:
        _rate(host_step, len(p256), _SLICE_S, host)
        _rate(raw_step, len(raw_inputs), _SLICE_S, bare)
        if time.perf_counter() >= deadline:
            break
    _rate(k1_step, len(k1), max(duration_s * 0.2, _SLICE_S), k1_sink)

    verify_rate = host[0] / host[1]
    raw_rate = bare[0] / bare[1]
    return {
        "records": records,
        "devices": devices,
        "duration_s": round(host[1] + bare[1] + k1_sink[1], 3),
        "verify_per_s": verify_rate,
        "raw_ecdsa_per_s": raw_rate,
        "ratio": verify_rate / raw_rate,
        "overhead_us": (1 / verify_rate - 1 / raw_rate) * 1e6,
        "secp256k1_verify_per_s": k1_sink[0] / k1_sink[1],
        "mean_record_bytes": sum(len(r) for r, _ in p256) / len(p256),
    }


def format_report(result: dict[str, Any]) -> str:
    """Human-readable summary of :func:`run`'s result."""
    verdict = "meets" if result["ratio"] >= 0.8 else "BELOW"
    return "\n".join(
        (
            f"records: {result['records']} over {result['devices']} devices, "
            f"mean {result['mean_record_bytes']:.0f} bytes, single thread, "
            f"{result['duration_s']:.1f} s measured",
            f"  ES256 decode+verify      {result['verify_per_s']:>9,.0f} records/s",
            f"  bare OpenSSL P-256 verify {result['raw_ecdsa_per_s']:>8,.0f} verifies/s",
            f"  ratio                     {result['ratio']:>8.2f}  ({verdict} the 0.80 target; "
            f"{result['overhead_us']:.1f} us overhead per record)",
            f"  ES256K decode+verify     {result['secp256k1_verify_per_s']:>9,.0f} records/s",
        )
    )
