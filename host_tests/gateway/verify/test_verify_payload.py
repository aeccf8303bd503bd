"""Payload schema: every field missing, mistyped and out of range is bad_payload, by name."""

from __future__ import annotations

from typing import Any

import pytest

from kit import independent_signer as signer
from signet_gateway.verify.payload_schema import KINDS, validate_payload
from signet_gateway.verify.verifier import DevicePublicKey, Refused, Verifier

D = signer.DELETE
MAX = 2**53 - 1
U32 = 2**32 - 1

# (kind, overrides, words expected in the detail)
VIOLATIONS: list[tuple[str, dict[str, Any], str]] = [
    # common fields: missing
    *[("hb", {f: D}, f"missing field '{f}'") for f in ("v", "n", "b", "u", "t", "p", "k")],
    # v
    ("hb", {"v": 2}, "unsupported payload version"),
    ("hb", {"v": 0}, "unsupported payload version"),
    ("hb", {"v": True}, "field 'v' must be the integer 1, got boolean true"),
    ("hb", {"v": "1"}, "field 'v' must be the integer 1"),
    # n
    ("hb", {"n": 0}, "field 'n' = 0 is out of range 1..9007199254740991"),
    ("hb", {"n": -1}, "field 'n' = -1 is out of range"),
    ("hb", {"n": MAX + 1}, "out of range"),
    ("hb", {"n": "1"}, "field 'n' must be an unsigned integer, got text string"),
    ("hb", {"n": None}, "field 'n' must be an unsigned integer, got null"),
    ("hb", {"n": True}, "got boolean true"),
    ("hb", {"n": 1.0}, "floats are not allowed (field 'n')"),
    # b
    ("hb", {"b": U32 + 1}, "field 'b' = 4294967296 is out of range 0..4294967295"),
    ("hb", {"b": -1}, "field 'b'"),
    ("hb", {"b": b"\x01"}, "got byte string"),
    # u
    ("hb", {"u": -5}, "field 'u' = -5 is out of range"),
    ("hb", {"u": MAX + 1}, "field 'u'"),
    ("hb", {"u": False}, "field 'u' must be an unsigned integer, got boolean false"),
    # t
    ("hb", {"t": -1}, "field 't' = -1 is out of range"),
    ("hb", {"t": MAX + 1}, "field 't'"),
    ("hb", {"t": "2024-01-01"}, "field 't' must be an unsigned integer"),
    ("hb", {"t": [1]}, "got array of 1 items"),
    # p
    ("hb", {"p": bytes(31)}, "field 'p' is 31 bytes; it must be 32"),
    ("hb", {"p": bytes(33)}, "field 'p' is 33 bytes"),
    ("hb", {"p": "00" * 32}, "field 'p' must be a byte string"),
    ("hb", {"p": None}, "field 'p' must be a byte string, got null"),
    # k
    ("zzz", {}, "field 'k' = 'zzz' is not a known kind"),
    ("HB", {}, "field 'k' = 'HB' is not a known kind"),
    ("hb", {"k": 1}, "field 'k' must be a text string, got integer 1"),
    ("hb", {"k": b"hb"}, "field 'k' must be a text string"),
    # unknown keys
    ("hb", {"x": 1}, "unknown field(s) 'x' for kind 'hb'"),
    ("hb", {"am": 1}, "unknown field(s) 'am' for kind 'hb'"),
    ("evt", {"src": "a"}, "unknown field(s) 'src' for kind 'evt'"),
    ("boot", {"V": 1}, "unknown field(s) 'V'"),
    # boot
    *[
        ("boot", {f: D}, f"missing field '{f}' (required for kind 'boot')")
        for f in ("rc", "fw", "ls")
    ],
    ("boot", {"rc": "Power_On"}, "field 'rc' = 'Power_On' is not a token"),
    ("boot", {"rc": ""}, "field 'rc' = '' is not a token"),
    ("boot", {"rc": "a" * 33}, "is not a token"),
    ("boot", {"rc": "a b"}, "is not a token"),
    ("boot", {"rc": "ok\n"}, "is not a token"),
    ("boot", {"rc": 3}, "field 'rc' must be a text string"),
    ("boot", {"fw": ""}, "field 'fw' = '' is not 1..32 printable ASCII"),
    ("boot", {"fw": "1.0 beta"}, "field 'fw'"),
    ("boot", {"fw": "x" * 33}, "field 'fw'"),
    ("boot", {"fw": "v1.0é"}, "field 'fw'"),
    ("boot", {"fw": "v1\x7f"}, "field 'fw'"),
    ("boot", {"ls": -1}, "field 'ls' = -1 is out of range"),
    ("boot", {"ls": MAX + 1}, "field 'ls'"),
    ("boot", {"ls": None}, "field 'ls' must be an unsigned integer, got null"),
    # hb
    *[("hb", {f: D}, f"missing field '{f}' (required for kind 'hb')") for f in ("iv", "st")],
    ("hb", {"iv": 0}, "field 'iv' = 0 is out of range 1..4294967295"),
    ("hb", {"iv": U32 + 1}, "field 'iv'"),
    ("hb", {"iv": 1.5}, "float at offset 72; floats are not allowed (field 'iv')"),
    ("hb", {"st": "OK"}, "field 'st' = 'OK' is not a token"),
    # rev
    *[
        ("rev", {f: D}, f"missing field '{f}' (required for kind 'rev')")
        for f in ("am", "cur", "src")
    ],
    (
        "rev",
        {"am": 2.5},
        "float at offset 73; floats are not allowed (field 'am')",
    ),
    ("rev", {"am": 250.0}, "floats are not allowed (field 'am')"),
    ("rev", {"am": True}, "field 'am' must be an integer, got boolean true"),
    ("rev", {"am": False}, "got boolean false"),
    ("rev", {"am": "250"}, "field 'am' must be an integer, got text string"),
    ("rev", {"am": None}, "got null"),
    ("rev", {"am": MAX + 1}, "field 'am' = 9007199254740992 is out of range"),
    ("rev", {"am": -MAX - 1}, "field 'am' = -9007199254740992 is out of range"),
    ("rev", {"cur": "eur"}, "field 'cur' = 'eur' is not 3 uppercase letters"),
    ("rev", {"cur": "EURO"}, "field 'cur'"),
    ("rev", {"cur": "EU"}, "field 'cur'"),
    ("rev", {"cur": "E1R"}, "field 'cur'"),
    ("rev", {"cur": ""}, "field 'cur'"),
    ("rev", {"cur": 978}, "field 'cur' must be a text string"),
    ("rev", {"src": "Coin"}, "field 'src' = 'Coin' is not a token"),
    ("rev", {"ref": ""}, "field 'ref' is 0 bytes of UTF-8; it must be 1..64"),
    ("rev", {"ref": "x" * 65}, "field 'ref' is 65 bytes"),
    ("rev", {"ref": "é" * 32 + "x"}, "field 'ref' is 65 bytes"),
    ("rev", {"ref": b"txn"}, "field 'ref' must be a text string, got byte string"),
    ("rev", {"ref": None}, "field 'ref' must be a text string, got null"),
    # meter
    *[("meter", {f: D}, f"missing field '{f}' (required for kind 'meter')") for f in ("q", "unit")],
    ("meter", {"q": 0.5}, "floats are not allowed (field 'q')"),
    ("meter", {"q": True}, "field 'q' must be an integer, got boolean"),
    ("meter", {"q": MAX + 1}, "field 'q'"),
    ("meter", {"unit": ""}, "field 'unit' = '' is not 1..16"),
    ("meter", {"unit": "x" * 17}, "field 'unit'"),
    ("meter", {"unit": "k W h"}, "field 'unit'"),
    ("meter", {"unit": "°C"}, "field 'unit'"),
    ("meter", {"src": "A"}, "field 'src' = 'A' is not a token"),
    # evt
    ("evt", {"ev": D}, "missing field 'ev' (required for kind 'evt')"),
    ("evt", {"ev": ""}, "field 'ev' = '' is not a token"),
    ("evt", {"ev": "Door"}, "field 'ev'"),
    ("evt", {"msg": ""}, "field 'msg' is 0 bytes"),
    ("evt", {"msg": "m" * 65}, "field 'msg' is 65 bytes"),
    ("evt", {"msg": 5}, "field 'msg' must be a text string"),
]


@pytest.mark.parametrize(("kind", "overrides", "words"), VIOLATIONS)
def test_schema_violation_is_refused_through_the_verifier(
    kind: str, overrides: dict[str, Any], words: str
) -> None:
    key = signer.make_key("p256")
    verifier = Verifier({key.kid: DevicePublicKey.from_sec1(key.compressed)})
    raw = signer.make_record(key, signer.payload(kind, **overrides))
    with pytest.raises(Refused) as err:
        verifier.verify(raw)
    assert err.value.reason == "bad_payload", str(err.value)
    assert words in err.value.detail, str(err.value)


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        ([1, 2], "payload must be a map, got array"),
        (b"\xa0", "payload must be a map, got byte string"),
        ({}, "missing field 'v'"),
        ({1: 1, **signer.payload("hb")}, "payload map key 1 is not a text string"),
        ({**signer.payload("hb"), b"x": 1}, "payload map key b'x' is not a text string"),
        ({**signer.payload("zzz"), 2: 1}, "payload map key 2 is not a text string"),
    ],
)
def test_validate_payload_directly(payload: Any, words: str) -> None:
    with pytest.raises(Refused) as err:
        validate_payload(payload)
    assert err.value.reason == "bad_payload"
    assert words in err.value.detail, err.value.detail


def test_every_sample_kind_validates() -> None:
    assert set(KINDS) == set(signer.SAMPLE_FIELDS)
    for kind in KINDS:
        validate_payload(signer.payload(kind))
