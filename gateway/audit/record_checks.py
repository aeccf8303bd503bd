"""The per-record checks of `signet audit verify` that need no order: the signature and
strict encoding (gateway/verify's verifier, the gateway's own checks) and the inclusion
proof against the checkpoint. Pure functions over bytes, run in worker processes (or in the
caller's, for --jobs 1): ``start`` once per process, then ``check`` per chunk.
"""

from __future__ import annotations

import hashlib
from typing import Any

from signet_gateway.log.merkle import leaf_hash
from signet_gateway.log.verification import ProofError
from signet_gateway.verify.pubkeys import DevicePublicKey
from signet_gateway.verify.refusals import Refused
from signet_gateway.verify.verifier import Verifier

from .inclusion import InclusionChecker

__all__ = ["Checked", "check", "start"]

# (refusal or None, (kid hex, payload map, payload length, payload hash) or None,
#  proof error or None)
Checked = tuple[str | None, tuple[str, dict[str, Any], int, bytes] | None, str | None]

_state: dict[str, Any] = {}


def start(keys: dict[bytes, tuple[bytes, str]], size: int, root: bytes) -> None:
    """Set this process up: the keys (kid -> (SEC1 point, curve)) and the checkpoint."""
    _state["verifier"] = Verifier(
        {kid: DevicePublicKey.from_sec1(point, curve) for kid, (point, curve) in keys.items()}
    )
    _state["inclusion"] = InclusionChecker(size, root)


def check(items: list[tuple[int, bytes, bytes]]) -> list[Checked]:
    """(log index, raw record, proof) -> what ``Checked`` describes, for each item."""
    verify = _state["verifier"].verify
    inclusion = _state["inclusion"].check
    sha256 = hashlib.sha256
    out: list[Checked] = []
    for log_index, raw, proof in items:
        try:
            rec = verify(raw)
        except Refused as refused:
            out.append((f"{refused.reason}: {refused.detail}", None, None))
            continue
        problem = None
        try:
            inclusion(leaf_hash(raw), log_index, proof)
        except ProofError as exc:
            problem = f"inclusion proof: {exc}"
        pbytes = rec.payload_bytes
        out.append(
            (None, (rec.kid.hex(), rec.payload, len(pbytes), sha256(pbytes).digest()), problem)
        )
    return out
