"""`signet sign`: build and sign one record with the firmware code."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from signet import keyfile
from signet.builder import RecordBuilder
from signet.record import GENESIS_HASH
from signet_gateway.verify.cose_decode import decode_envelope
from signet_gateway.verify.refusals import Refused

from . import cborseq

# Fields whose CBOR type is an integer; every other field is text.
INTEGER_FIELDS = frozenset({"am", "q", "iv", "ls"})


class SignError(Exception):
    pass


def parse_fields(items: list[str]) -> dict[str, int | str]:
    fields: dict[str, int | str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SignError(f"--field {item!r}: expected NAME=VALUE")
        if name in fields:
            raise SignError(f"--field {name} given twice")
        if name in INTEGER_FIELDS:
            try:
                fields[name] = int(value, 10)
            except ValueError:
                raise SignError(
                    f"--field {name}={value}: must be a whole number"
                    + (" of minor currency units (e.g. 250 for 2.50)" if name == "am" else "")
                ) from None
        else:
            fields[name] = value
    return fields


def parse_time(value: str) -> int | None:
    if value == "now":
        return time.time_ns() // 1_000_000
    if value == "null":
        return None
    try:
        return int(value, 10)
    except ValueError:
        raise SignError(f"--time {value!r}: expected unix milliseconds, 'now' or 'null'") from None


def previous_hash(prev: str | None, out: Path | None, kid: bytes) -> bytes:
    """--prev HEX, or the payload hash of this key's last record in the --out file."""
    if prev is not None:
        if prev == "genesis":
            return GENESIS_HASH
        try:
            value = bytes.fromhex(prev)
        except ValueError:
            value = b""
        if len(value) != 32:
            raise SignError("--prev must be 64 hex digits (SHA-256 of the previous payload)")
        return value
    if out is None or not out.exists():
        return GENESIS_HASH
    last = GENESIS_HASH
    for item in cborseq.split(out.read_bytes()):
        if isinstance(item, bytes):
            try:
                envelope = decode_envelope(item)
            except Refused:
                continue
            if envelope.kid == kid:
                last = hashlib.sha256(envelope.payload).digest()
    return last


def sign(
    key: Path,
    seq: int,
    kind: str,
    fields: dict[str, int | str],
    boot: int = 1,
    uptime: int = 0,
    unix_ms: int | None = None,
    prev: str | None = None,
    out: Path | None = None,
) -> bytes:
    try:
        signer = keyfile.load(str(key))
    except OSError as exc:
        raise SignError(f"cannot read key {key}: {exc.strerror}") from None
    except keyfile.KeyFileError as exc:
        raise SignError(f"{key}: {exc}") from None
    p = previous_hash(prev, out, signer.kid)
    try:
        _, record = RecordBuilder(signer).build(kind, seq, boot, uptime, unix_ms, p, fields)
    except ValueError as exc:  # RecordError and size limits, with the field named
        raise SignError(str(exc)) from None
    if out is not None:
        cborseq.append(out, record)
    return record
