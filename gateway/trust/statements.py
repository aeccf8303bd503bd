"""Statements: COSE_Sign1 envelopes like records, whose payload says what is being claimed.

Three kinds (docs/TRUST.md, "Statements"), each a strict CBOR map with text keys,
``"v": 1`` and ``"k"`` naming it:

    enroll   v, k, ? c: bstr (the gateway's challenge), ? sn: bstr, ? cfg: bstr .size 128
    line     v, k, pk: bstr .size 33, crv: "p256", sn: bstr, t: uint, line: text 1..64 B,
             ? cfg: bstr .size 128
    rotate   v, k, old: bstr .size 16, pk: bstr .size 33, crv: "p256" / "secp256k1",
             last: uint, t: uint / null

The envelope goes through the record verifier's own decoder (gateway/verify), the
signature through its low-S check, and the payload is parsed only after the signature
verified, as for records. Record kinds are refused here and statement kinds by the record
verifier, so neither can be passed off as the other. Each caller names the refusal
reason its failures map to (``proof_invalid``, ``rotation_invalid``, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from ..verify.cbor_strict import describe_problem, describe_value, loads_roundtrip
from ..verify.cose_decode import CoseSign1, decode_envelope, sig_structure
from ..verify.payload_schema import KINDS as RECORD_KINDS
from ..verify.pubkeys import DevicePublicKey, check_signature
from ..verify.refusals import Refused
from .refusals import EvidenceRefused

__all__ = ["MAX_SAFE", "STATEMENT_KINDS", "check_signed_by", "open_envelope", "read_payload"]

MAX_SAFE: Final = 2**53 - 1

_Check = Callable[[str, Any], None]


class _Bad(Exception):
    pass


def _bstr(lo: int, hi: int) -> _Check:
    def check(key: str, value: Any) -> None:
        if type(value) is not bytes:
            raise _Bad(f"field {key!r} must be a byte string, got {describe_value(value)}")
        if not lo <= len(value) <= hi:
            size = f"{lo}" if lo == hi else f"{lo}..{hi}"
            raise _Bad(f"field {key!r} is {len(value)} bytes; it must be {size}")

    return check


def _uint(key: str, value: Any) -> None:
    if type(value) is not int:
        raise _Bad(f"field {key!r} must be an unsigned integer, got {describe_value(value)}")
    if not 0 <= value <= MAX_SAFE:
        raise _Bad(f"field {key!r} = {value} is out of range 0..2^53-1")


def _uint_or_null(key: str, value: Any) -> None:
    if value is not None:
        _uint(key, value)


def _one_of(*choices: str) -> _Check:
    def check(key: str, value: Any) -> None:
        if type(value) is not str or value not in choices:
            raise _Bad(f"field {key!r} must be one of {', '.join(choices)}; got {value!r}")

    return check


def _line_name(key: str, value: Any) -> None:
    if type(value) is not str:
        raise _Bad(f"field {key!r} must be a text string, got {describe_value(value)}")
    if not 1 <= len(value.encode("utf-8")) <= 64 or any(ord(c) < 0x20 for c in value):
        raise _Bad(f"field {key!r} must be 1..64 bytes of UTF-8 without control characters")


def _version(key: str, value: Any) -> None:
    if type(value) is not int or value != 1:
        raise _Bad(f"field {key!r} must be the integer 1, got {describe_value(value)}")


_CFG = _bstr(128, 128)
_SN = _bstr(1, 32)

# kind -> (required field checks, optional field checks); "v" and "k" are common.
STATEMENT_KINDS: Final[dict[str, tuple[dict[str, _Check], dict[str, _Check]]]] = {
    "enroll": ({}, {"c": _bstr(1, 64), "sn": _SN, "cfg": _CFG}),
    "line": (
        {
            "pk": _bstr(33, 33),
            "crv": _one_of("p256"),
            "sn": _SN,
            "t": _uint,
            "line": _line_name,
        },
        {"cfg": _CFG},
    ),
    "rotate": (
        {
            "old": _bstr(16, 16),
            "pk": _bstr(33, 33),
            "crv": _one_of("p256", "secp256k1"),
            "last": _uint,
            "t": _uint_or_null,
        },
        {},
    ),
}


def open_envelope(raw: bytes, what: str, reason: str) -> CoseSign1:
    """Decode the COSE_Sign1 envelope strictly; refuse with ``reason`` naming ``what``."""
    try:
        return decode_envelope(raw)
    except Refused as refusal:
        raise EvidenceRefused(
            reason, f"{what} is not a valid COSE_Sign1: {refusal.detail}"
        ) from None


def check_signed_by(env: CoseSign1, key: DevicePublicKey, what: str, reason: str) -> None:
    """The envelope's kid, alg and low-S signature are those of ``key``; else ``reason``."""
    if env.kid != key.kid:
        raise EvidenceRefused(
            reason, f"{what} is signed under kid {env.kid.hex()}, not by key {key.device_id}"
        )
    if env.alg != key.alg:
        raise EvidenceRefused(
            reason, f"{what} has alg {env.alg}; key {key.device_id} signs with alg {key.alg}"
        )
    try:
        check_signature(key, sig_structure(env.protected, env.payload), env.signature)
    except Refused as refusal:
        raise EvidenceRefused(reason, f"{what}: {refusal.detail}") from None


def read_payload(env: CoseSign1, kind: str, what: str, reason: str) -> dict[str, Any]:
    """Decode the (already verified) payload and check it is a ``kind`` statement."""
    value, exact = loads_roundtrip(env.payload)
    try:
        if not exact:
            problem = describe_problem(env.payload, what="payload map")
            raise _Bad(f"payload is not strict CBOR: {problem or 'it does not re-encode'}")
        _validate(value, kind)
    except _Bad as bad:
        problem = describe_problem(env.payload, what="payload map")
        # A tag or float can survive cbor2's round trip and be the real cause: say that.
        said = f"payload is not strict CBOR: {problem}" if problem is not None else str(bad)
        raise EvidenceRefused(reason, f"{what}: {said}") from None
    return value


def _validate(d: Any, kind: str) -> None:
    if type(d) is not dict:
        raise _Bad(f"payload must be a map, got {describe_value(d)}")
    for key in d:
        if type(key) is not str:
            raise _Bad(f"payload map key {key!r} is not a text string")
    if "v" not in d:
        raise _Bad("missing field 'v'")
    _version("v", d["v"])
    got = d.get("k")
    if got != kind:
        if got in RECORD_KINDS:
            raise _Bad(f"it is a record (k = {got!r}), not a {kind!r} statement")
        raise _Bad(f"field 'k' must be {kind!r}, got {got!r}")
    required, optional = STATEMENT_KINDS[kind]
    for key in required:
        if key not in d:
            raise _Bad(f"missing field {key!r} (required for a {kind!r} statement)")
    unknown = sorted(k for k in d if k not in ("v", "k", *required, *optional))
    if unknown:
        raise _Bad(f"unknown field(s) {', '.join(map(repr, unknown))} for a {kind!r} statement")
    for key, value in d.items():
        if key not in ("v", "k"):
            (required.get(key) or optional[key])(key, value)
