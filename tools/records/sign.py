"""`signet sign`: build and sign one record with the firmware code."""

from __future__ import annotations

import time
from pathlib import Path

from signet import keyfile
from signet.builder import RecordBuilder
from signet.record import GENESIS_HASH

from . import fields as kind_fields
from . import recordfile


class SignError(Exception):
    pass


def parse_fields(kind: str, items: list[str]) -> dict[str, int | str]:
    """NAME=VALUE items as the record's fields: integers where the kind's schema says so."""
    integers = {f.name for f in kind_fields.of(kind) if f.integer}
    fields: dict[str, int | str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SignError(f"--field {item!r}: expected NAME=VALUE")
        if name in fields:
            raise SignError(f"--field {name} given twice")
        if name in integers:
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


def previous_hash(prev: str) -> bytes:
    """--prev: 64 hex digits, or 'genesis'."""
    if prev == "genesis":
        return GENESIS_HASH
    try:
        value = bytes.fromhex(prev)
    except ValueError:
        value = b""
    if len(value) != 32:
        raise SignError("--prev must be 64 hex digits (SHA-256 of the previous payload)")
    return value


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
    """The signed record; appended to `out` (a record file) when given, which is checked
    first (recordfile.py) and left untouched if anything is refused.

    Without --prev the record chains to this key's last record in `out`, else to genesis.
    """
    try:
        signer = keyfile.load(str(key))
    except OSError as exc:
        raise SignError(f"cannot read key {key}: {exc.strerror}") from None
    except keyfile.KeyFileError as exc:
        raise SignError(f"{key}: {exc}") from None

    def build(p: bytes) -> bytes:
        try:
            _, record = RecordBuilder(signer).build(kind, seq, boot, uptime, unix_ms, p, fields)
        except ValueError as exc:  # RecordError and size limits, with the field named
            raise SignError(str(exc)) from None
        return record

    if out is None:
        return build(GENESIS_HASH if prev is None else previous_hash(prev))
    try:
        with recordfile.open_for_append(out) as target:
            p = target.last_hash(signer.kid) if prev is None else previous_hash(prev)
            record = build(p)
            target.append(signer.kid, seq, record)
    except recordfile.RecordFileError as exc:
        raise SignError(str(exc)) from None
    return record
