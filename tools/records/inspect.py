"""`signet inspect`: what is in a record file, one JSON line per record.

Shows structure only: nothing here checks a signature (that is `verify`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import cbor2

from signet_gateway.verify.cose_decode import decode_envelope
from signet_gateway.verify.pubkeys import CURVE_BY_ALG
from signet_gateway.verify.refusals import Refused

from . import cborseq


def _jsonable(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, cbor2.CBORTag):
        return {"tag": value.tag, "value": _jsonable(value.value)}
    if isinstance(value, float):
        return repr(value)
    return value


def describe(index: int, item: bytes) -> dict[str, Any]:
    try:
        env = decode_envelope(item)
    except Refused as exc:
        return {"index": index, "size": len(item), "error": exc.reason, "detail": exc.detail}
    out: dict[str, Any] = {
        "index": index,
        "size": len(item),
        "device_id": env.kid.hex(),
        "alg": CURVE_BY_ALG[env.alg].alg_name,
        "headers": {"protected": {"1": env.alg}, "unprotected": {"4": env.kid.hex()}},
    }
    try:
        out["payload"] = _jsonable(cbor2.loads(env.payload))
    except (cbor2.CBORDecodeError, ValueError) as exc:
        out["payload_error"] = str(exc)
    out["payload_hex"] = env.payload.hex()
    out["signature"] = env.signature.hex()
    return out


def describe_all(data: bytes) -> Iterator[dict[str, Any]]:
    """One dict per item; a malformed one has an "error" (or a "payload_error") key."""
    for index, item in enumerate(cborseq.split(data)):
        if isinstance(item, cborseq.UnreadableTail):
            yield {
                "index": index,
                "offset": item.offset,
                "size": item.size,
                "error": "malformed",
                "detail": f"not a complete CBOR item: {item.reason}",
            }
        else:
            yield describe(index, item)
