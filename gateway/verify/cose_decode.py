"""Decode and check a Signet COSE_Sign1 envelope (RFC 9052), without verifying it.

Accepted shape, and nothing else::

    18([ h'a10126' / h'a101382e',   ; protected: exactly {1: -7} or {1: -47}
         {4: h'<16-byte kid>'},     ; unprotected: exactly the kid
         h'<payload>',              ; payload (embedded, not detached)
         h'<64-byte r||s>' ])       ; signature

Checks run in this order, each with its own refusal reason: size (``too_large``),
strict CBOR and array shape (``malformed``, see :mod:`.cbor_strict`), tag
(``bad_tag``), headers (``bad_header``), algorithm (``bad_alg``). The
signature's *content* is checked later, by the verifier, against the key.
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

import cbor2

from .cbor_strict import describe_problem, describe_value, loads_roundtrip, top_tag_number
from .pubkeys import ALG_ES256, ALG_ES256K
from .refusals import Refused

__all__ = [
    "COSE_SIGN1_TAG",
    "MAX_RECORD_BYTES",
    "PROTECTED_BY_ALG",
    "CoseSign1",
    "decode_envelope",
    "sig_structure",
]

MAX_RECORD_BYTES: Final = 1024
COSE_SIGN1_TAG: Final = 18
KID_LEN: Final = 16

# The only two protected headers there are: the preferred encoding of {1: alg}.
PROTECTED_BY_ALG: Final = {ALG_ES256: b"\xa1\x01\x26", ALG_ES256K: b"\xa1\x01\x38\x2e"}
_PROTECTED_P256: Final = PROTECTED_BY_ALG[ALG_ES256]
_PROTECTED_K1: Final = PROTECTED_BY_ALG[ALG_ES256K]
_ALG_BY_PROTECTED: Final = {v: k for k, v in PROTECTED_BY_ALG.items()}
_ALG_NAMES: Final = {ALG_ES256: "ES256", ALG_ES256K: "ES256K"}

_HEADER_KID: Final = 4
_HEADER_ALG: Final = 1

# Sig_structure = ["Signature1", protected, h'' (external_aad), payload]:
# 0x84 array(4), 0x6a text(10) "Signature1".
_SIG1_PREFIX: Final = b"\x84\x6aSignature1"


class CoseSign1(NamedTuple):
    """A structurally valid COSE_Sign1 whose signature has not been checked yet."""

    protected: bytes
    alg: int
    kid: bytes
    payload: bytes
    signature: bytes


def _bstr_head(length: int) -> bytes:
    if length < 24:
        return bytes((0x40 | length,))
    if length < 0x100:
        return bytes((0x58, length))
    if length < 0x10000:
        return b"\x59" + length.to_bytes(2, "big")
    return b"\x5a" + length.to_bytes(4, "big")


def sig_structure(protected: bytes, payload: bytes) -> bytes:
    """The bytes that are signed: CBOR ``["Signature1", protected, h'', payload]``."""
    return b"".join(
        (
            _SIG1_PREFIX,
            _bstr_head(len(protected)),
            protected,
            b"\x40",
            _bstr_head(len(payload)),
            payload,
        )
    )


def decode_envelope(raw: bytes) -> CoseSign1:
    """Check size, strict CBOR, tag, array shape, headers and alg; return the parts.

    Raises :class:`Refused` with ``too_large``, ``malformed``, ``bad_tag``,
    ``bad_header`` or ``bad_alg``.
    """
    if type(raw) is not bytes:
        if not isinstance(raw, (bytearray, memoryview)):
            raise Refused("malformed", f"record must be bytes, got {type(raw).__name__}")
        raw = bytes(raw)
    if len(raw) > MAX_RECORD_BYTES:
        raise Refused("too_large", f"record is {len(raw)} bytes; the limit is {MAX_RECORD_BYTES}")
    if not raw:
        raise Refused("malformed", "record is empty")

    fast = _fast_path(raw)
    if fast is not None:
        return fast
    if raw[0] == 0xD2:  # tag 18, the only accepted start
        # Decode what is inside the tag on its own: cbor2 decodes the contents of a tag as
        # immutable types (tuple, frozendict), and we want plain lists and dicts.
        body, exact = loads_roundtrip(raw[1:])
        if not exact:
            _raise_not_strict(raw)
        try:
            return _check_body(body)
        except Refused as refusal:
            # Tags, floats and simple values can survive cbor2's round trip; if one is the
            # cause, say so (it is a CBOR-profile violation, checked before anything else).
            if refusal.reason != "bad_alg":
                problem = describe_problem(raw, allow_top_tag=True, what="record")
                if problem is not None:
                    raise Refused("malformed", f"record is not strict CBOR: {problem}") from None
            raise
    obj, exact = loads_roundtrip(raw)
    if not exact:
        _raise_not_strict(raw)
    if type(obj) is cbor2.CBORTag:
        raise Refused("bad_tag", f"record has tag {obj.tag}; COSE_Sign1 needs tag 18")
    if type(obj) is list:
        raise Refused("bad_tag", "record is an untagged array; COSE_Sign1 needs tag 18")
    raise Refused("malformed", f"record is {describe_value(obj)}, not a tagged COSE_Sign1")


# d2 (tag 18) 84 (array of 4) <bstr: protected> a1 04 50 (map {4: <bstr of 16 bytes>})
_FAST_P256: Final = b"\xd2\x84\x43\xa1\x01\x26\xa1\x04\x50"
_FAST_K1: Final = b"\xd2\x84\x44\xa1\x01\x38\x2e\xa1\x04\x50"


def _fast_path(raw: bytes) -> CoseSign1 | None:
    """Slice a record laid out exactly as Signet encodes it; None if it is laid out otherwise.

    A record matching this byte pattern *is* the strict encoding (every head is the
    shortest, every length definite, nothing trails), so nothing more needs checking
    here; anything else takes the general path, which says precisely what is wrong.
    """
    if raw[:9] == _FAST_P256:
        alg, protected, pos = ALG_ES256, _PROTECTED_P256, 9
    elif raw[:10] == _FAST_K1:
        alg, protected, pos = ALG_ES256K, _PROTECTED_K1, 10
    else:
        return None
    kid = raw[pos : pos + 16]
    pos += 16
    head = raw[pos] if pos < len(raw) else 0
    if 0x40 <= head <= 0x57:
        length = head - 0x40
        pos += 1
    elif head == 0x58 and pos + 1 < len(raw) and raw[pos + 1] >= 24:
        length = raw[pos + 1]
        pos += 2
    elif head == 0x59 and pos + 2 < len(raw):
        length = (raw[pos + 1] << 8) | raw[pos + 2]
        if length < 0x100:
            return None
        pos += 3
    else:
        return None
    end = pos + length
    if len(raw) != end + 66 or raw[end : end + 2] != b"\x58\x40":
        return None
    return CoseSign1(protected, alg, kid, raw[pos:end], raw[end + 2 :])


def _check_body(body: Any) -> CoseSign1:
    if type(body) is not list or len(body) != 4:
        raise Refused(
            "malformed", f"COSE_Sign1 must be an array of 4 items, got {describe_value(body)}"
        )
    protected, unprotected, payload, signature = body
    if type(protected) is not bytes:
        raise Refused(
            "malformed", f"protected header must be a byte string, got {describe_value(protected)}"
        )
    if type(unprotected) is not dict:
        raise Refused(
            "malformed", f"unprotected header must be a map, got {describe_value(unprotected)}"
        )
    if type(payload) is not bytes:
        extra = " (detached payloads are not supported)" if payload is None else ""
        raise Refused(
            "malformed", f"payload must be a byte string, got {describe_value(payload)}{extra}"
        )
    if type(signature) is not bytes:
        raise Refused(
            "malformed", f"signature must be a byte string, got {describe_value(signature)}"
        )

    # Headers, then alg.
    alg = _ALG_BY_PROTECTED.get(protected)
    if alg is None:
        alg = _explain_protected(protected)
    kid = unprotected.get(_HEADER_KID) if len(unprotected) == 1 else None
    if type(kid) is not bytes or len(kid) != KID_LEN:
        _explain_unprotected(unprotected)
    return CoseSign1(protected, alg, kid, payload, signature)


def _raise_not_strict(raw: bytes) -> None:
    problem = describe_problem(raw, allow_top_tag=True, what="record")
    if problem is not None:
        raise Refused("malformed", f"record is not strict CBOR: {problem}")
    # Well-formed and strict by the scanner, yet cbor2 did not reproduce it: cbor2 gave
    # the top-level tag a meaning (e.g. tag 2 bignum, tag 1 date), so it is not tag 18.
    tag = top_tag_number(raw)
    if tag is not None and tag != COSE_SIGN1_TAG:
        raise Refused("bad_tag", f"record has tag {tag}; COSE_Sign1 needs tag 18")
    raise Refused("malformed", "record does not re-encode to the same bytes (not strict CBOR)")


def _explain_protected(protected: bytes) -> int:
    """Raise the specific refusal for a protected header that is not one of the two allowed."""
    if not protected:
        raise Refused("bad_header", "protected header is empty; it must be {1: alg}")
    value, exact = loads_roundtrip(protected)
    if not exact:
        problem = describe_problem(protected) or "does not re-encode to the same bytes"
        raise Refused("bad_header", f"protected header is not strict CBOR: {problem}")
    if type(value) is not dict:
        raise Refused("bad_header", f"protected header must be a map, got {describe_value(value)}")
    if _HEADER_ALG not in value:
        raise Refused("bad_header", "protected header has no alg (label 1)")
    extra = [k for k in value if k != _HEADER_ALG]
    if extra:
        raise Refused(
            "bad_header",
            f"protected header has parameter(s) {_labels(extra)} besides alg; only {{1: alg}} "
            "is allowed",
        )
    alg = value[_HEADER_ALG]
    raise Refused(
        "bad_alg",
        f"alg {alg!r} is not supported; use ES256 (-7) or ES256K (-47)"
        if type(alg) in (int, str)
        else f"alg must be an integer, got {describe_value(alg)}",
    )


def _explain_unprotected(unprotected: dict[Any, Any]) -> None:
    if not unprotected:
        raise Refused("bad_header", "unprotected header is empty; it must be {4: kid}")
    extra = [k for k in unprotected if k != _HEADER_KID]
    if extra:
        raise Refused(
            "bad_header",
            f"unprotected header has parameter(s) {_labels(extra)}; only kid (4) is allowed",
        )
    kid = unprotected[_HEADER_KID]
    if type(kid) is not bytes:
        raise Refused("bad_header", f"kid must be a byte string, got {describe_value(kid)}")
    raise Refused("bad_header", f"kid is {len(kid)} bytes; it must be exactly {KID_LEN}")


def _labels(keys: list[Any]) -> str:
    return ", ".join(repr(k) for k in keys)
