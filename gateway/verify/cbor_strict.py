"""Strict CBOR decoding: fast with cbor2, specific about what is wrong.

Signet accepts one CBOR profile on the wire (RFC 8949 "preferred serialization"
plus a few restrictions):

* definite lengths only (no indefinite-length strings, arrays or maps);
* integers and lengths in their shortest form (preferred serialization is
  *required*, so every value has exactly one encoding);
* no duplicate map keys;
* no tags, except the single outer COSE_Sign1 tag where the caller allows it;
* no floating-point values, no simple values other than false, true and null;
* text strings are valid UTF-8;
* nothing after the top-level item.

The fast path decodes with cbor2 (C extension) and re-encodes: if
``cbor2.dumps(cbor2.loads(data)) == data`` the input is exactly the preferred
encoding of plain values, which rules out indefinite lengths, duplicate keys,
non-shortest forms and trailing bytes in one comparison (cbor2 keeps map
insertion order, so no key order is imposed). Values cbor2 decodes *to* a tag,
float or simple value survive that round trip, so callers check the types they
get (the COSE and payload layers do; neither accepts those types).

Only when the fast path fails does :func:`describe_problem`, a small
pure-Python scanner, walk the bytes to say *what* is wrong and at which offset.
The scanner is also the reference for the profile: it reports the first
violation in byte order.
"""

from __future__ import annotations

from typing import Any

import cbor2

__all__ = ["describe_problem", "describe_value", "loads_roundtrip", "top_tag_number"]

_MAX_DEPTH = 16  # Signet's structures nest 2 deep; anything deeper is garbage.

_MAJOR_NAMES = (
    "unsigned integer",
    "negative integer",
    "byte string",
    "text string",
    "array",
    "map",
    "tag",
    "simple value/float",
)
_FLOAT_NAMES = {25: "half", 26: "single", 27: "double"}
_MIN_FOR_AI = {24: 24, 25: 0x100, 26: 0x10000, 27: 0x100000000}


def loads_roundtrip(data: bytes) -> tuple[Any, bool]:
    """Decode ``data`` with cbor2 and report whether it re-encodes byte for byte.

    Returns ``(value, True)`` when ``data`` is exactly the preferred encoding of
    ``value`` with nothing after it, ``(None, False)`` otherwise (including when
    cbor2 cannot decode it at all). Never raises.
    """
    try:
        value = cbor2.loads(data)
        return value, cbor2.dumps(value) == data
    except Exception:  # cbor2 raises several types on garbage; all mean "not strict CBOR"
        return None, False


def top_tag_number(data: bytes) -> int | None:
    """The number of the tag the data starts with, or None if it does not start with one."""
    if not data or data[0] >> 5 != 6:
        return None
    try:
        return _Scanner(data, allow_top_tag=True).argument(0)[0]
    except _Problem:
        return None


def describe_problem(data: bytes, *, allow_top_tag: bool = False, what: str = "item") -> str | None:
    """Return a sentence describing the first strict-profile violation, or None.

    ``allow_top_tag`` permits one tag (any number) wrapping the top-level item;
    the caller checks its number. Offsets in the message are byte offsets into
    ``data``; ``what`` names the top-level item in the trailing-bytes message.
    """
    scanner = _Scanner(data, allow_top_tag=allow_top_tag)
    try:
        end = scanner.item(0, 0)[1]
    except _Problem as problem:
        return str(problem)
    if end != len(data):
        extra = len(data) - end
        return f"{extra} trailing byte{'s' if extra != 1 else ''} after the {what}, at offset {end}"
    return None


class _Problem(Exception):
    pass


class _Scanner:
    """Recursive-descent checker for the strict profile; builds plain values for key checks."""

    __slots__ = ("allow_top_tag", "data", "n")

    def __init__(self, data: bytes, *, allow_top_tag: bool) -> None:
        self.data = data
        self.n = len(data)
        self.allow_top_tag = allow_top_tag

    def need(self, pos: int, count: int, what: str) -> None:
        if pos + count > self.n:
            have = max(self.n - pos, 0)
            raise _Problem(
                f"truncated: {what} needs {count} byte{'s' if count != 1 else ''} at offset {pos}, "
                f"only {have} left"
            )

    def argument(self, pos: int) -> tuple[int, int]:
        """Decode the head at ``pos``; returns (argument, position after the head)."""
        self.need(pos, 1, "a data item")
        ib = self.data[pos]
        major, ai = ib >> 5, ib & 0x1F
        name = _MAJOR_NAMES[major]
        if ai < 24:
            return ai, pos + 1
        if ai == 31:
            if major in (2, 3, 4, 5):
                raise _Problem(f"indefinite-length {name} at offset {pos}")
            if major == 7:
                raise _Problem(f"unexpected 'break' byte (0xff) at offset {pos}")
            raise _Problem(f"invalid additional information 31 for a {name} at offset {pos}")
        if ai > 27:
            raise _Problem(f"reserved additional information {ai} at offset {pos}")
        size = 1 << (ai - 24)
        self.need(pos + 1, size, f"the {name} head at offset {pos}")
        arg = int.from_bytes(self.data[pos + 1 : pos + 1 + size], "big")
        if major != 7 and arg < _MIN_FOR_AI[ai]:
            what = "integer" if major < 2 else ("tag number" if major == 6 else "length")
            raise _Problem(
                f"non-shortest encoding of {what} {arg} ({name} at offset {pos}, "
                f"{size + 1} bytes where fewer suffice)"
            )
        return arg, pos + 1 + size

    def item(self, pos: int, depth: int) -> tuple[Any, int]:
        """Check the item at ``pos``; returns (a hashable plain value, end position)."""
        if depth > _MAX_DEPTH:
            raise _Problem(f"nesting deeper than {_MAX_DEPTH} levels at offset {pos}")
        self.need(pos, 1, "a data item")
        ib = self.data[pos]
        major, ai = ib >> 5, ib & 0x1F
        if major == 7:
            return self.simple(pos, ai)
        arg, p = self.argument(pos)
        if major == 0:
            return arg, p
        if major == 1:
            return -1 - arg, p
        if major in (2, 3):
            self.need(p, arg, f"the {_MAJOR_NAMES[major]} at offset {pos}")
            raw = self.data[p : p + arg]
            if major == 2:
                return bytes(raw), p + arg
            try:
                return raw.decode("utf-8"), p + arg
            except UnicodeDecodeError:
                raise _Problem(f"invalid UTF-8 in the text string at offset {pos}") from None
        if major == 4:
            items = []
            for _ in range(arg):
                value, p = self.item(p, depth + 1)
                items.append(value)
            return ("array", tuple(items)), p
        if major == 5:
            seen: set[Any] = set()
            entries = []
            for _ in range(arg):
                key_pos = p
                key, p = self.item(p, depth + 1)
                if key in seen:
                    raise _Problem(f"duplicate map key {_show(key)} at offset {key_pos}")
                seen.add(key)
                try:
                    value, p = self.item(p, depth + 1)
                except _Problem as problem:
                    if depth == 0 and isinstance(key, str):  # name the payload field
                        raise _Problem(f"{problem} (field {key!r})") from None
                    raise
                entries.append((key, value))
            return ("map", tuple(entries)), p
        # major == 6: tag
        if not (self.allow_top_tag and pos == 0):
            raise _Problem(f"tag {arg} at offset {pos} is not allowed")
        value, p = self.item(p, depth + 1)
        return ("tag", arg, value), p

    def simple(self, pos: int, ai: int) -> tuple[Any, int]:
        if ai in (20, 21):
            # Tagged so that false/true never collide with 0/1 in the duplicate-key check.
            return ("bool", ai == 21), pos + 1
        if ai == 22:
            return None, pos + 1
        if ai == 23:
            raise _Problem(f"'undefined' at offset {pos} is not allowed")
        if ai in _FLOAT_NAMES:
            raise _Problem(
                f"{_FLOAT_NAMES[ai]}-precision float at offset {pos}; floats are not allowed"
            )
        number = self.argument(pos)[0]  # raises for 28..31 and for a truncated 0xf8 head
        raise _Problem(f"simple value {number} at offset {pos} is not allowed")


def _show(key: Any) -> str:
    if isinstance(key, tuple) and key[0] == "bool":
        return "true" if key[1] else "false"
    if isinstance(key, (str, int, bytes)) or key is None:
        return repr(key)
    return "of a composite type"


def describe_value(value: Any) -> str:
    """Short description of a decoded CBOR value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {'true' if value else 'false'}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"float {value!r}"
    if isinstance(value, str):
        return f"text string {value[:40]!r}"
    if isinstance(value, bytes):
        return f"byte string of {len(value)} bytes"
    if isinstance(value, (list, tuple)):
        return f"array of {len(value)} items"
    if isinstance(value, dict):
        return f"map of {len(value)} entries"
    if isinstance(value, cbor2.CBORTag):
        return f"tag {value.tag}"
    return f"a {type(value).__name__} value"
