"""`signet verify`: check every record in a file with the gateway's verifier."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import cbor2

from signet_gateway.mcr.display import counted
from signet_gateway.verify.cose_decode import decode_envelope
from signet_gateway.verify.pubkeys import DevicePublicKey
from signet_gateway.verify.refusals import Refused
from signet_gateway.verify.verifier import Verifier

from . import cborseq


@dataclass(frozen=True)
class Verdict:
    index: int
    valid: bool
    seq: int | None
    kind: str | None
    device_id: str | None
    reason: str | None = None
    detail: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "seq": self.seq,
            "kind": self.kind,
            "device_id": self.device_id,
            "verdict": "valid" if self.valid else "refused",
            "reason": self.reason,
            "detail": self.detail,
        }

    def as_line(self) -> str:
        seq = f"n={self.seq}" if self.seq is not None else "n=?"
        if self.valid:
            return f"#{self.index:<4} {seq:<10} valid    {self.kind} from {self.device_id}"
        return f"#{self.index:<4} {seq:<10} REFUSED  {self.reason}: {self.detail}"


def _best_effort_identity(item: bytes) -> tuple[int | None, str | None, str | None]:
    """Sequence, kind and device of a refused record, when its envelope can be read.

    Shown to help an operator find the record; never trusted for anything else.
    """
    try:
        env = decode_envelope(item)
        payload = cbor2.loads(env.payload)
    except (Refused, cbor2.CBORDecodeError, ValueError):
        return None, None, None
    if not isinstance(payload, dict):
        return None, None, env.kid.hex()
    seq = payload.get("n") if type(payload.get("n")) is int else None
    kind = payload.get("k") if isinstance(payload.get("k"), str) else None
    return seq, kind, env.kid.hex()


def verify_file(
    data: bytes,
    keys: Mapping[bytes, DevicePublicKey] | Callable[[bytes], DevicePublicKey | None],
    expected_kid: bytes | None = None,
) -> list[Verdict]:
    verifier = Verifier(keys)
    verdicts = []
    for index, item in enumerate(cborseq.split(data)):
        if isinstance(item, cborseq.UnreadableTail):
            verdicts.append(
                Verdict(
                    index,
                    False,
                    None,
                    None,
                    None,
                    "malformed",
                    f"{item.size} bytes at offset {item.offset} are not a complete CBOR "
                    f"item ({item.reason})",
                )
            )
            continue
        try:
            rec = verifier.verify(item, expected_kid=expected_kid)
        except Refused as exc:
            seq, kind, device = _best_effort_identity(item)
            verdicts.append(Verdict(index, False, seq, kind, device, exc.reason, exc.detail))
        else:
            verdicts.append(Verdict(index, True, rec.seq, rec.kind, rec.device_id))
    return verdicts


def summary(verdicts: list[Verdict]) -> str:
    refused = Counter(v.reason for v in verdicts if not v.valid)
    valid = len(verdicts) - sum(refused.values())
    text = f"{counted(len(verdicts), 'record')}: {valid} valid, {sum(refused.values())} refused"
    if refused:
        text += " (" + ", ".join(f"{r}: {c}" for r, c in sorted(refused.items())) + ")"
    return text


def render(verdicts: list[Verdict], as_json: bool) -> list[str]:
    if as_json:
        return [json.dumps(v.as_json()) for v in verdicts]
    return [v.as_line() for v in verdicts]
