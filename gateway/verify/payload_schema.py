"""The signed payload: decode it strictly and check it against the v1 schema.

The payload is a CBOR map with text keys, exactly these and no others::

    common   v: 1                      n: uint 1..2^53-1 (sequence)
             b: uint 0..2^32-1 (boot)  u: uint 0..2^53-1 (ms since boot)
             t: uint 0..2^53-1 | null  p: bstr .size 32 (SHA-256 of previous payload)
             k: "boot" | "hb" | "rev" | "meter" | "evt"
    boot     rc: token   fw: 1..32 printable ASCII (0x21-0x7e)   ls: uint 0..2^53-1
    hb       iv: uint 1..2^32-1   st: token
    rev      am: int -(2^53-1)..2^53-1   cur: 3 letters A-Z   src: token   ? ref: text 1..64 B
    meter    q: int -(2^53-1)..2^53-1    unit: 1..16 of [A-Za-z0-9_/%.^-]   ? src: token
    evt      ev: token   ? msg: text 1..64 B (UTF-8)

    token = 1..32 of [a-z0-9_.-]

Integers are never booleans (CBOR true/false are refused where a number is
expected) and money is never a float. The encoding must be strict CBOR (see
:mod:`.cbor_strict`): preferred serialization, definite lengths, no duplicate
keys, no tags, no floats. Any violation is ``bad_payload`` naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

from .cbor_strict import describe_problem, describe_value, loads_roundtrip
from .refusals import Refused

__all__ = ["KINDS", "PAYLOAD_VERSION", "STATEMENT_KINDS", "decode_payload", "validate_payload"]

PAYLOAD_VERSION: Final = 1
MAX_SAFE: Final = 2**53 - 1
MAX_U32: Final = 2**32 - 1

_TOKEN = re.compile(r"[a-z0-9_.\-]{1,32}")
_FW = re.compile(r"[\x21-\x7e]{1,32}")
_CUR = re.compile(r"[A-Z]{3}")
_UNIT = re.compile(r"[A-Za-z0-9_/%.^\-]{1,16}")

_Check = Callable[[str, Any], None]


class _Bad(Exception):
    """Schema violation; converted to Refused('bad_payload') after the CBOR re-check."""


def _uint(lo: int, hi: int) -> _Check:
    def check(key: str, value: Any) -> None:
        if type(value) is not int:
            raise _Bad(f"field {key!r} must be an unsigned integer, got {describe_value(value)}")
        if not lo <= value <= hi:
            raise _Bad(f"field {key!r} = {value} is out of range {lo}..{hi}")

    return check


def _sint(key: str, value: Any) -> None:
    if type(value) is not int:
        raise _Bad(f"field {key!r} must be an integer, got {describe_value(value)}")
    if not -MAX_SAFE <= value <= MAX_SAFE:
        raise _Bad(f"field {key!r} = {value} is out of range -(2^53-1)..2^53-1")


def _text(pattern: re.Pattern[str], rule: str) -> _Check:
    def check(key: str, value: Any) -> None:
        if type(value) is not str:
            raise _Bad(f"field {key!r} must be a text string, got {describe_value(value)}")
        if pattern.fullmatch(value) is None:
            raise _Bad(f"field {key!r} = {value[:40]!r} is not {rule}")

    return check


def _utf8_text(key: str, value: Any) -> None:
    if type(value) is not str:
        raise _Bad(f"field {key!r} must be a text string, got {describe_value(value)}")
    size = len(value.encode("utf-8"))
    if not 1 <= size <= 64:
        raise _Bad(f"field {key!r} is {size} bytes of UTF-8; it must be 1..64")


def _version(key: str, value: Any) -> None:
    if type(value) is not int:
        raise _Bad(f"field {key!r} must be the integer 1, got {describe_value(value)}")
    if value != PAYLOAD_VERSION:
        raise _Bad(f"field {key!r} = {value}: unsupported payload version (only 1)")


def _time(key: str, value: Any) -> None:
    if value is not None:
        _U53(key, value)


def _prev(key: str, value: Any) -> None:
    if type(value) is not bytes:
        raise _Bad(f"field {key!r} must be a byte string, got {describe_value(value)}")
    if len(value) != 32:
        raise _Bad(f"field {key!r} is {len(value)} bytes; it must be 32 (a SHA-256 digest)")


_U53 = _uint(0, MAX_SAFE)
_token = _text(_TOKEN, "a token (1..32 of a-z 0-9 _ . -)")

_COMMON_CHECKS: Final[dict[str, _Check]] = {
    "v": _version,
    "n": _uint(1, MAX_SAFE),
    "b": _uint(0, MAX_U32),
    "u": _U53,
    "t": _time,
    "p": _prev,
}

# kind -> (required field checks, optional field checks)
KINDS: Final[dict[str, tuple[dict[str, _Check], dict[str, _Check]]]] = {
    "boot": (
        {"rc": _token, "fw": _text(_FW, "1..32 printable ASCII characters"), "ls": _U53},
        {},
    ),
    "hb": ({"iv": _uint(1, MAX_U32), "st": _token}, {}),
    "rev": (
        {"am": _sint, "cur": _text(_CUR, "3 uppercase letters (ISO 4217)"), "src": _token},
        {"ref": _utf8_text},
    ),
    "meter": (
        {"q": _sint, "unit": _text(_UNIT, "1..16 of A-Z a-z 0-9 _ / % . ^ -")},
        {"src": _token},
    ),
    "evt": ({"ev": _token}, {"msg": _utf8_text}),
}

# Statements (gateway/trust/statements.py) share the envelope and the keys but are never
# records: refused here by name, so a signed statement cannot be replayed as a record.
STATEMENT_KINDS: Final = ("enroll", "line", "rotate")

# Precomputed per kind: all checks by field, the required and the allowed key sets, and
# the kind-specific fields (checked one by one after the common fields).
_PLANS: Final = {
    kind: (
        {**_COMMON_CHECKS, **required, **optional},
        frozenset(_COMMON_CHECKS) | {"k"} | frozenset(required),
        frozenset(_COMMON_CHECKS) | {"k"} | frozenset(required) | frozenset(optional),
        (*required, *optional),
    )
    for kind, (required, optional) in KINDS.items()
}
_COMMON_ORDER: Final = ("v", "n", "b", "u", "t", "p", "k")


def decode_payload(payload: bytes) -> dict[str, Any]:
    """Decode strict-CBOR payload bytes and validate them; return the map.

    Raises ``Refused('bad_payload', ...)`` with a detail naming the field or the
    CBOR problem (with its offset inside the payload).
    """
    value, exact = loads_roundtrip(payload)
    if not exact:
        problem = (
            describe_problem(payload, what="payload map") or "does not re-encode to the same bytes"
        )
        raise Refused("bad_payload", f"payload is not strict CBOR: {problem}")
    try:
        _validate(value)
    except _Bad as bad:
        # A tag, float or simple value can survive cbor2's round trip and be the real cause.
        problem = describe_problem(payload, what="payload map")
        if problem is not None:
            raise Refused("bad_payload", f"payload is not strict CBOR: {problem}") from None
        raise Refused("bad_payload", str(bad)) from None
    return value


def validate_payload(payload: Any) -> None:
    """Check an already-decoded payload map against the schema (``Refused('bad_payload')``)."""
    try:
        _validate(payload)
    except _Bad as bad:
        raise Refused("bad_payload", str(bad)) from None


def _validate(d: Any) -> None:
    # Fast path: one expression for the common fields (the common case is "all fine");
    # on any doubt fall through to the field-by-field checks that name the culprit.
    if type(d) is dict:
        get = d.get
        v, n, b, u, t, p = get("v"), get("n"), get("b"), get("u"), get("t"), get("p")
        kind = get("k")
        plan = _PLANS.get(kind) if type(kind) is str else None
        if (
            plan is not None
            and type(v) is int
            and v == 1
            and type(n) is int
            and 0 < n <= MAX_SAFE
            and type(b) is int
            and 0 <= b <= MAX_U32
            and type(u) is int
            and 0 <= u <= MAX_SAFE
            and (t is None or (type(t) is int and 0 <= t <= MAX_SAFE))
            and type(p) is bytes
            and len(p) == 32
            and "t" in d
        ):
            checks, required, allowed, specific = plan
            keys = d.keys()
            if required <= keys <= allowed:
                for key in specific:
                    if key in d:
                        checks[key](key, d[key])
                return
    _validate_slow(d)


def _validate_slow(d: Any) -> None:
    if type(d) is not dict:
        raise _Bad(f"payload must be a map, got {describe_value(d)}")
    kind = d.get("k")
    if kind in STATEMENT_KINDS:
        raise _Bad(f"field 'k' = {kind!r} is a statement, not a record")
    plan = _PLANS.get(kind) if type(kind) is str else None
    if plan is None:
        _explain_common(d)
        raise _Bad(f"field 'k' = {kind!r} is not a known kind ({', '.join(KINDS)})")
    checks, required, allowed, _ = plan
    keys = d.keys()
    if not (required <= keys <= allowed):
        _explain_keys(d, kind, required, allowed)
    for key, value in d.items():
        if key != "k":
            checks[key](key, value)


def _explain_common(d: dict[Any, Any]) -> None:
    for key in d:
        if type(key) is not str:
            raise _Bad(f"payload map key {key!r} is not a text string")
    for key in _COMMON_ORDER:
        if key not in d:
            raise _Bad(f"missing field {key!r}")
    kind = d["k"]
    if type(kind) is not str:
        raise _Bad(f"field 'k' must be a text string, got {describe_value(kind)}")


def _explain_keys(
    d: dict[Any, Any], kind: str, required: frozenset[str], allowed: frozenset[str]
) -> None:
    for key in d:
        if type(key) is not str:
            raise _Bad(f"payload map key {key!r} is not a text string")
    for key in (*_COMMON_ORDER, *KINDS[kind][0]):
        if key not in d:
            raise _Bad(f"missing field {key!r} (required for kind {kind!r})")
    unknown = sorted(str(k) for k in d if k not in allowed)
    raise _Bad(f"unknown field(s) {', '.join(map(repr, unknown))} for kind {kind!r}")
