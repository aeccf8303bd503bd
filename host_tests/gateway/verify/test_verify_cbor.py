"""Strict CBOR: truncation, trailing data, indefinite lengths, duplicates, tags, floats."""

from __future__ import annotations

import cbor2
import pytest

from kit import independent_signer as signer
from signet_gateway.verify.cbor_strict import describe_problem, loads_roundtrip, top_tag_number
from signet_gateway.verify.cose_decode import _check_body, decode_envelope, sig_structure
from signet_gateway.verify.verifier import DevicePublicKey, Refused, Verifier

CURVES = ("p256", "secp256k1")


def setup(curve: str = "p256") -> tuple[signer.SignerKey, Verifier]:
    key = signer.make_key(curve)
    return key, Verifier({key.kid: DevicePublicKey.from_sec1(key.compressed, curve)})


def refusal(verifier: Verifier, raw: bytes) -> Refused:
    with pytest.raises(Refused) as err:
        verifier.verify(raw)
    return err.value


# -- the envelope ------------------------------------------------------------------------


@pytest.mark.parametrize("curve", CURVES)
def test_every_truncation_is_refused(curve: str) -> None:
    key, verifier = setup(curve)
    for kind in ("hb", "rev"):
        raw = signer.make_record(key, signer.payload(kind))
        verifier.verify(raw)
        for cut in range(len(raw)):
            err = refusal(verifier, raw[:cut])
            assert err.reason in ("malformed", "bad_tag"), (cut, str(err))
            if cut > 1:
                assert err.reason == "malformed" and "truncated" in err.detail, (cut, str(err))


@pytest.mark.parametrize("curve", CURVES)
def test_truncated_or_extended_payload_inside_valid_envelope(curve: str) -> None:
    # The envelope stays well formed; the signed payload bytes are cut short.
    key, verifier = setup(curve)
    body = cbor2.dumps(signer.payload("rev"))
    for cut in range(len(body)):
        err = refusal(verifier, signer.make_record(key, body[:cut]))
        assert err.reason == "bad_payload", (cut, str(err))
        assert "truncated" in err.detail
    err = refusal(verifier, signer.make_record(key, body + b"\x00"))
    assert err.reason == "bad_payload" and "1 trailing byte after the payload map" in err.detail


def test_indefinite_length_envelope_array() -> None:
    key, verifier = setup()
    raw = signer.make_record(key)
    indefinite = b"\xd2\x9f" + raw[2:] + b"\xff"
    err = refusal(verifier, indefinite)
    assert err.reason == "malformed"
    assert err.detail.endswith("indefinite-length array at offset 1")


def test_indefinite_length_unprotected_map_and_strings() -> None:
    key, verifier = setup()
    err = refusal(
        verifier, signer.make_record(key, unprotected=b"\xbf\x04" + cbor2.dumps(key.kid) + b"\xff")
    )
    assert err.reason == "malformed" and "indefinite-length map" in err.detail
    kid_chunks = b"\x5f\x48" + key.kid[:8] + b"\x48" + key.kid[8:] + b"\xff"
    err = refusal(verifier, signer.make_record(key, unprotected=b"\xa1\x04" + kid_chunks))
    assert err.reason == "malformed" and "indefinite-length byte string" in err.detail


def test_non_shortest_heads_in_envelope() -> None:
    key, verifier = setup()
    raw = signer.make_record(key)
    # array(4) as 0x98 0x04
    err = refusal(verifier, b"\xd2\x98\x04" + raw[2:])
    assert err.reason == "malformed" and "non-shortest encoding of length 4" in err.detail
    # kid bstr length 16 as 0x58 0x10
    err = refusal(verifier, signer.make_record(key, unprotected=b"\xa1\x04\x58\x10" + key.kid))
    assert err.reason == "malformed" and "non-shortest" in err.detail
    # map key 4 as 0x18 0x04
    err = refusal(
        verifier, signer.make_record(key, unprotected=b"\xa1\x18\x04" + cbor2.dumps(key.kid))
    )
    assert err.reason == "malformed" and "non-shortest encoding of integer 4" in err.detail


def test_signature_with_non_shortest_length_head() -> None:
    key, verifier = setup()
    raw = signer.make_record(key)
    # 0x58 0x40 -> 0x59 0x00 0x40
    err = refusal(verifier, raw[:-66] + b"\x59\x00\x40" + raw[-64:])
    assert err.reason == "malformed" and "non-shortest encoding of length 64" in err.detail


def test_simple_values_and_undefined_in_envelope() -> None:
    key, verifier = setup()
    for bad, words in ((b"\xf7", "'undefined'"), (b"\xf0", "simple value 16"), (b"\xf8\x20", "32")):
        raw = signer.make_record(
            key, unprotected=b"\xa2\x04" + cbor2.dumps(key.kid) + b"\x05" + bad
        )
        err = refusal(verifier, raw)
        assert err.reason == "malformed" and words in err.detail, str(err)


def test_reserved_and_break_bytes() -> None:
    _, verifier = setup()
    for raw, words in (
        (b"\xd2\x1c", "reserved additional information 28"),
        (b"\xd2\xff", "unexpected 'break'"),
        (b"\xd2\x3f", "invalid additional information 31"),
        (b"\xd2\xdf\x00", "invalid additional information 31"),
        (b"\xd2\x61\xff", "invalid UTF-8"),
    ):
        err = refusal(verifier, raw)
        assert err.reason == "malformed" and words in err.detail, str(err)


def test_not_an_array_at_all() -> None:
    _, verifier = setup()
    for raw in (b"\x01", b"\x40", b"\xa0", b"\xf6", b"\x60"):
        err = refusal(verifier, raw)
        assert err.reason == "malformed" and "not a tagged COSE_Sign1" in err.detail


def test_deep_nesting_refused_without_recursion_error() -> None:
    _, verifier = setup()
    for raw in (b"\xd2" + b"\x81" * 1000 + b"\x00", b"\x81" * 1020 + b"\x00"):
        err = refusal(verifier, raw)
        assert err.reason == "malformed" and "nesting deeper" in err.detail


def test_huge_declared_lengths() -> None:
    _, verifier = setup()
    for raw in (
        b"\xd2\x5b\xff\xff\xff\xff\xff\xff\xff\xff",
        b"\xd2\x9b\xff\xff\xff\xff\xff\xff\xff\xff",
        b"\xd2\xbb\x00\x00\x00\x01\x00\x00\x00\x00",
    ):
        err = refusal(verifier, raw)
        assert err.reason == "malformed" and "truncated" in err.detail


def test_non_bytes_input() -> None:
    _, verifier = setup()
    with pytest.raises(Refused) as err:
        verifier.verify("d284")  # type: ignore[arg-type]
    assert err.value.reason == "malformed"


# -- the payload -------------------------------------------------------------------------


def _payload_variants() -> list[tuple[str, bytes, str]]:
    body = signer.payload("rev")
    enc = cbor2.dumps(body)
    n_items = len(body)
    assert enc[0] == 0xA0 | n_items
    items = enc[1:]
    am_at = enc.index(b"\x62am") + 3  # the amount value follows its key
    return [
        ("indefinite map", b"\xbf" + items + b"\xff", "indefinite-length map at offset 0"),
        (
            "duplicate key n",
            bytes((0xA0 | (n_items + 1),)) + items + b"\x61n\x02",
            "duplicate map key 'n'",
        ),
        (
            "duplicate key with same value",
            bytes((0xA0 | (n_items + 1),)) + items + b"\x61v\x01",
            "duplicate map key 'v'",
        ),
        (
            "non-shortest amount",
            enc[:am_at] + b"\x19\x00\xfa" + enc[am_at + 3 :],
            "non-shortest encoding of integer 250",
        ),
        ("non-shortest map head", b"\xb8" + bytes((n_items,)) + items, "non-shortest"),
        (
            "half float amount",
            enc[:am_at] + b"\xf9\x3c\x00" + enc[am_at + 3 :],
            "half-precision float",
        ),
        (
            "double amount",
            cbor2.dumps(signer.payload("rev", am=250.0)),
            "double-precision float",
        ),
        (
            "bignum amount",
            enc[:am_at] + b"\xc2\x41\xfa" + enc[am_at + 3 :],
            "tag 2 at offset",
        ),
        (
            "huge canonical bignum n",
            cbor2.dumps(signer.payload("rev", n=2**70)),
            "tag 2 at offset",
        ),
        ("self-describe tag", b"\xd9\xd9\xf7" + enc, "tag 55799 at offset 0"),
        (
            "tag around currency",
            enc.replace(b"\x63EUR", b"\xd8\x20\x63EUR"),
            "tag 32 at offset",
        ),
        (
            "set",
            cbor2.dumps(signer.payload("rev", src=frozenset({1}))),
            "tag 258",
        ),
        ("undefined", cbor2.dumps(signer.payload("rev", t=cbor2.undefined)), "'undefined'"),
        ("invalid UTF-8", enc.replace(b"\x63EUR", b"\x63E\xffR"), "invalid UTF-8"),
        ("trailing", enc + b"\xf6", "1 trailing byte"),
        ("indefinite text", enc.replace(b"\x63EUR", b"\x7f\x63EUR\xff"), "indefinite-length text"),
    ]


@pytest.mark.parametrize(
    ("label", "payload_bytes", "words"), _payload_variants(), ids=lambda v: str(v)[:30]
)
def test_strict_payload_encoding(label: str, payload_bytes: bytes, words: str) -> None:
    key, verifier = setup()
    err = refusal(verifier, signer.make_record(key, payload_bytes))
    assert err.reason == "bad_payload", str(err)
    assert words in err.detail, str(err)
    assert err.detail.startswith("payload is not strict CBOR: ")


def test_stringref_cannot_shorten_a_payload() -> None:
    # cbor2 resolves stringref (tags 256/25) transparently; the result must still be refused.
    key, verifier = setup()
    body = signer.payload("rev", src="abcdefgh", ref="abcdefgh")
    enc = cbor2.dumps(body, string_referencing=True)
    assert cbor2.loads(enc) == body
    err = refusal(verifier, signer.make_record(key, enc))
    assert err.reason == "bad_payload" and "tag 256" in err.detail


def test_value_sharing_is_refused() -> None:
    key, verifier = setup()
    body = signer.payload("rev")
    enc = cbor2.dumps(body, value_sharing=True)
    err = refusal(verifier, signer.make_record(key, enc))
    assert err.reason == "bad_payload" and "tag 28" in err.detail


# -- the scanner and helpers directly ----------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\x01", None),
        (b"\xa2\x01\x02\x03\x04", None),
        (b"\xa2\xf4\x01\x00\x02", None),  # false and 0 are different keys
        (b"\xa2\x00\x01\x00\x02", "duplicate map key 0 at offset 3"),
        (b"\xa2\xf5\x01\xf5\x02", "duplicate map key true at offset 3"),
        (b"\xa2\x81\x01\x01\x81\x01\x02", "duplicate map key of a composite type at offset 4"),
        (b"\x18\x17", "non-shortest encoding of integer 23 (unsigned integer at offset 0"),
        (b"\x38\x00", "non-shortest encoding of integer 0"),
        (b"\x1a\x00\x00\xff\xff", "non-shortest"),
        (b"\x1b\x00\x00\x00\x00\xff\xff\xff\xff", "non-shortest"),
        (b"\x1b\x00\x00\x00\x01\x00\x00\x00\x00", None),
        (b"\x82\x01", "truncated: a data item needs 1 byte at offset 2, only 0 left"),
        (b"\x19\x01", "truncated: the unsigned integer head at offset 0 needs 2 bytes"),
        (b"\x43ab", "truncated: the byte string at offset 0 needs 3 bytes at offset 1"),
        (b"\xc1\x00", "tag 1 at offset 0 is not allowed"),
        (b"\xfa\x00\x00\x00\x00", "single-precision float at offset 0"),
        (b"\xfb" + bytes(8), "double-precision float at offset 0"),
        (b"\xf8", "truncated"),
        (b"\x01\x02\x03", "2 trailing bytes after the item, at offset 1"),
    ],
)
def test_describe_problem(data: bytes, expected: str | None) -> None:
    problem = describe_problem(data)
    if expected is None:
        assert problem is None
    else:
        assert problem is not None and problem.startswith(expected), problem


def test_top_tag_allowed_only_when_asked() -> None:
    assert describe_problem(b"\xd2\x80") == "tag 18 at offset 0 is not allowed"
    assert describe_problem(b"\xd2\x80", allow_top_tag=True) is None
    assert (
        describe_problem(b"\xd2\xd2\x80", allow_top_tag=True) == "tag 18 at offset 1 is not allowed"
    )
    assert top_tag_number(b"\xd2\x80") == 18
    assert top_tag_number(b"\xd9\xd9\xf7\x80") == 55799
    assert top_tag_number(b"\x80") is None
    assert top_tag_number(b"\xd9\xd9") is None


def test_loads_roundtrip_never_raises() -> None:
    assert loads_roundtrip(b"\x82\x01\x02") == ([1, 2], True)
    assert loads_roundtrip(b"\x9f\x01\xff")[1] is False
    assert loads_roundtrip(b"\xff") == (None, False)
    assert loads_roundtrip(b"\x01\x02")[1] is False  # cbor2 ignores trailing data; we do not


def test_sig_structure_matches_cbor2() -> None:
    for size in (0, 1, 23, 24, 255, 256, 1000):
        payload = bytes(size)
        for protected in (b"\xa1\x01\x26", b"\xa1\x01\x38\x2e"):
            assert sig_structure(protected, payload) == cbor2.dumps(
                ["Signature1", protected, b"", payload]
            )


@pytest.mark.parametrize("curve", CURVES)
def test_fast_and_general_paths_agree(curve: str) -> None:
    # A payload >= 256 bytes (invalid, but well-formed) takes the 0x59 branch of the fast path.
    key, _ = setup(curve)
    for pad in ("", "x" * 20, "x" * 200):
        raw = signer.make_record(key, signer.payload("evt", pad=pad))
        env = decode_envelope(raw)
        assert env == _check_body(cbor2.loads(raw[1:]))
        assert env.payload == cbor2.dumps(signer.payload("evt", pad=pad))
        assert env.kid == key.kid and env.alg == key.alg and len(env.signature) == 64
