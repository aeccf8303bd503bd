"""CBOR sequence files (RFC 8742): records stored back to back, nothing between.

The format `signet sign --out` appends to and `signet inspect` / `signet
verify` read. Splitting only finds item boundaries; every item still goes
through the strict verifier, so nothing here decides validity.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cbor2


@dataclass(frozen=True)
class UnreadableTail:
    """Bytes from `offset` on that are not a complete CBOR item."""

    offset: int
    size: int
    reason: str


def split(data: bytes) -> Iterator[bytes | UnreadableTail]:
    """Yield each item's exact bytes; an undecodable remainder ends the sequence."""
    stream = io.BytesIO(data)
    # Tags are kept as CBORTag: no semantic decoding that could fail on a valid item.
    decoder = cbor2.CBORDecoder(stream, tag_hook=lambda _decoder, tag: tag)
    offset = 0
    while offset < len(data):
        try:
            decoder.decode()
        except (cbor2.CBORDecodeError, ValueError, RecursionError) as exc:
            yield UnreadableTail(offset, len(data) - offset, str(exc) or type(exc).__name__)
            return
        end = stream.tell()
        yield data[offset:end]
        offset = end


def append(path: Path, record: bytes) -> None:
    """Append one record and make it durable before returning."""
    with open(path, "ab") as f:
        f.write(record)
        f.flush()
        os.fsync(f.fileno())
