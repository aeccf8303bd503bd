"""Every refusal reason, each produced by a crafted record (both curves where it matters)."""

from __future__ import annotations

from collections.abc import Callable

import cbor2
import pytest

from kit import independent_signer as signer
from signet_gateway.verify.verifier import REASONS, DevicePublicKey, Refused, Verifier

CURVES = ("p256", "secp256k1")
OTHER_CURVE = {"p256": "secp256k1", "secp256k1": "p256"}

Build = Callable[[signer.SignerKey], bytes]


def _rec(**knobs: object) -> Build:
    return lambda key: signer.make_record(key, **knobs)  # type: ignore[arg-type]


def _sig(transform: Callable[[int, int, int], bytes]) -> Build:
    return _rec(sig_transform=transform)


def _payload(kind: str = "rev", **overrides: object) -> Build:
    return lambda key: signer.make_record(key, signer.payload(kind, **overrides))


# (case id, builder, expected reason, substring expected in the detail)
CASES: list[tuple[str, Build, str, str]] = [
    (
        "oversized",
        lambda k: signer.make_record(k) + bytes(1025 - len(signer.make_record(k))),
        "too_large",
        "1025 bytes",
    ),
    ("empty", lambda k: b"", "malformed", "empty"),
    ("untagged", _rec(tag=None), "bad_tag", "untagged"),
    ("tag_98_sign", _rec(tag=98), "bad_tag", "tag 98"),
    ("tag_17_mac0", _rec(tag=17), "bad_tag", "tag 17"),
    ("tag_1_datetime", lambda k: b"\xc1" + signer.make_record(k, tag=None), "bad_tag", "tag 1"),
    (
        "tag_18_non_shortest",
        lambda k: b"\xd8\x12" + signer.make_record(k, tag=None),
        "malformed",
        "non-shortest",
    ),
    ("trailing_byte", _rec(trailing=b"\x00"), "malformed", "1 trailing byte"),
    ("trailing_bytes", _rec(trailing=b"\x01\x02\x03"), "malformed", "3 trailing bytes"),
    ("second_record", lambda k: signer.make_record(k) * 2, "malformed", "trailing"),
    (
        "array_of_3",
        lambda k: signer.make_record(k, array_items=[b"\x40", b"\xa0", b"\x40"]),
        "malformed",
        "array of 3",
    ),
    (
        "array_of_5",
        lambda k: signer.make_record(k, array_items=[b"\x40"] * 5),
        "malformed",
        "array of 5",
    ),
    ("map_instead_of_array", lambda k: b"\xd2\xa0", "malformed", "map"),
    (
        "detached_payload",
        lambda k: signer.make_record(
            k,
            array_items=[
                cbor2.dumps(signer.protected_for(k.alg)),
                cbor2.dumps({4: k.kid}),
                b"\xf6",
                cbor2.dumps(bytes(64)),
            ],
        ),
        "malformed",
        "detached",
    ),
    (
        "protected_as_map",
        lambda k: signer.make_record(
            k,
            array_items=[
                b"\xa1\x01\x26",
                cbor2.dumps({4: k.kid}),
                cbor2.dumps(b"\xa0"),
                cbor2.dumps(bytes(64)),
            ],
        ),
        "malformed",
        "protected header must be a byte string",
    ),
    ("unprotected_as_bstr", _rec(unprotected=b"\x40"), "malformed", "unprotected header must be"),
    (
        "signature_as_text",
        lambda k: signer.make_record(
            k,
            array_items=[
                cbor2.dumps(signer.protected_for(k.alg)),
                cbor2.dumps({4: k.kid}),
                cbor2.dumps(b"\xa0"),
                cbor2.dumps("sig"),
            ],
        ),
        "malformed",
        "signature must be a byte string",
    ),
    (
        "tagged_kid",
        _rec(unprotected=b"\xa1\x04\xd8\x64" + cbor2.dumps(bytes(16))),
        "malformed",
        "tag 100",
    ),
    (
        "float_in_header",
        _rec(unprotected=b"\xa2\x04" + cbor2.dumps(bytes(16)) + b"\x05\xf9\x3c\x00"),
        "malformed",
        "float",
    ),
    (
        "dup_key_unprotected",
        lambda k: signer.make_record(
            k, unprotected=b"\xa2\x04" + cbor2.dumps(k.kid) * 1 + b"\x04" + cbor2.dumps(k.kid)
        ),
        "malformed",
        "duplicate map key 4",
    ),
    ("empty_protected", _rec(protected=b""), "bad_header", "empty"),
    (
        "protected_extra_param",
        _rec(protected=cbor2.dumps({1: -7, 4: b"k"})),
        "bad_header",
        "besides alg",
    ),
    ("protected_crit", _rec(protected=cbor2.dumps({1: -7, 2: [4]})), "bad_header", "2"),
    ("protected_no_alg", _rec(protected=cbor2.dumps({4: b"k"})), "bad_header", "no alg"),
    ("protected_not_map", _rec(protected=cbor2.dumps([1, -7])), "bad_header", "must be a map"),
    ("protected_dup_key", _rec(protected=b"\xa2\x01\x26\x01\x26"), "bad_header", "duplicate"),
    ("protected_non_shortest", _rec(protected=b"\xa1\x01\x38\x06"), "bad_header", "non-shortest"),
    ("protected_indefinite", _rec(protected=b"\xbf\x01\x26\xff"), "bad_header", "indefinite"),
    ("protected_trailing", _rec(protected=b"\xa1\x01\x26\x00"), "bad_header", "trailing"),
    ("unprotected_empty", _rec(unprotected={}), "bad_header", "empty"),
    (
        "unprotected_extra",
        lambda k: signer.make_record(k, unprotected={4: k.kid, 1: -7}),
        "bad_header",
        "parameter(s) 1",
    ),
    ("unprotected_alg_only", _rec(unprotected={1: -7}), "bad_header", "only kid"),
    ("kid_15_bytes", _rec(kid=bytes(15)), "bad_header", "15 bytes"),
    ("kid_17_bytes", _rec(kid=bytes(17)), "bad_header", "17 bytes"),
    ("kid_text", _rec(kid="0" * 32), "bad_header", "kid must be a byte string"),
    ("alg_es384", _rec(alg=-35), "bad_alg", "-35"),
    ("alg_1", _rec(alg=1), "bad_alg", "alg 1 "),
    ("alg_text", _rec(alg="ES256"), "bad_alg", "'ES256'"),
    ("alg_eddsa", _rec(alg=-8), "bad_alg", "-8"),
    ("alg_bytes", _rec(alg=b"\x26"), "bad_alg", "must be an integer"),
    ("alg_null", _rec(protected=cbor2.dumps({1: None})), "bad_alg", "must be an integer"),
    ("unknown_kid", _rec(kid=b"\x01" * 16), "unknown_key", "0101"),
    (
        "sig_63",
        _sig(lambda r, s, n: signer.rs_bytes(r, s)[:63]),
        "bad_signature_encoding",
        "63 bytes",
    ),
    (
        "sig_65",
        _sig(lambda r, s, n: b"\x00" + signer.rs_bytes(r, s)),
        "bad_signature_encoding",
        "65 bytes",
    ),
    ("sig_empty", _rec(signature=b""), "bad_signature_encoding", "0 bytes"),
    ("sig_der", _sig(signer.der_signature), "bad_signature_encoding", "DER"),
    (
        "sig_r_zero",
        _sig(lambda r, s, n: signer.rs_bytes(0, s)),
        "bad_signature_encoding",
        "r is zero",
    ),
    (
        "sig_s_zero",
        _sig(lambda r, s, n: signer.rs_bytes(r, 0)),
        "bad_signature_encoding",
        "s is zero",
    ),
    (
        "sig_r_n",
        _sig(lambda r, s, n: signer.rs_bytes(n, s)),
        "bad_signature_encoding",
        "r is not below",
    ),
    (
        "sig_r_plus_n",
        _sig(
            lambda r, s, n: (
                signer.rs_bytes(r + n, s) if r + n < 2**256 else signer.rs_bytes(2**256 - 1, s)
            )
        ),
        "bad_signature_encoding",
        "r is not below",
    ),
    (
        "sig_s_n",
        _sig(lambda r, s, n: signer.rs_bytes(r, n)),
        "bad_signature_encoding",
        "s is not below",
    ),
    (
        "sig_s_max",
        _sig(lambda r, s, n: signer.rs_bytes(r, 2**256 - 1)),
        "bad_signature_encoding",
        "s is not below",
    ),
    ("sig_high_s_twin", _sig(lambda r, s, n: signer.rs_bytes(r, n - s)), "high_s", "n/2"),
    ("sig_s_half_n_plus_1", _sig(lambda r, s, n: signer.rs_bytes(r, n // 2 + 1)), "high_s", ""),
    ("sig_s_half_n", _sig(lambda r, s, n: signer.rs_bytes(r, n // 2)), "bad_signature", ""),
    (
        "sig_flipped_bit",
        _sig(lambda r, s, n: signer.rs_bytes(r ^ 1, s)),
        "bad_signature",
        "does not verify",
    ),
    (
        "sig_swapped",
        _sig(lambda r, s, n: signer.rs_bytes(s, r) if r <= n // 2 else signer.rs_bytes(s, n - r)),
        "bad_signature",
        "",
    ),
    ("sig_all_ones_low", _rec(signature=b"\x01" * 64), "bad_signature", ""),
    (
        "payload_changed_after_signing",
        lambda k: signer.make_record(k, signer.payload("rev")).replace(b"EUR", b"USD"),
        "bad_signature",
        "",
    ),
    (
        "protected_swapped_after_signing",
        lambda k: signer.make_record(k, sign_protected=signer.protected_for(-35)),
        "bad_signature",
        "",
    ),
    ("payload_float_amount", _payload(am=2.5), "bad_payload", "float"),
    ("payload_bool_amount", _payload(am=True), "bad_payload", "boolean"),
    ("payload_v2", _payload(v=2), "bad_payload", "version"),
    ("payload_unknown_kind", _payload("sale"), "bad_payload", "'sale'"),
    ("payload_unknown_field", _payload(extra=1), "bad_payload", "'extra'"),
    (
        "payload_not_map",
        lambda k: signer.make_record(k, cbor2.dumps([1, 2])),
        "bad_payload",
        "must be a map",
    ),
    ("payload_empty_bytes", lambda k: signer.make_record(k, b""), "bad_payload", "truncated"),
]


def test_every_reason_has_a_case() -> None:
    assert {reason for _, _, reason, _ in CASES} | {"kid_mismatch", "bad_key"} == set(REASONS)


@pytest.mark.parametrize("curve", CURVES)
@pytest.mark.parametrize(
    ("build", "reason", "fragment"),
    [pytest.param(b, r, f, id=i) for i, b, r, f in CASES],
)
def test_refusal(curve: str, build: Build, reason: str, fragment: str) -> None:
    key = signer.make_key(curve)
    verifier = Verifier({key.kid: DevicePublicKey.from_sec1(key.compressed, curve)})
    raw = build(key)
    with pytest.raises(Refused) as err:
        verifier.verify(raw)
    assert err.value.reason == reason, str(err.value)
    assert fragment in err.value.detail
    assert str(err.value).startswith(f"{reason}: ")


@pytest.mark.parametrize("curve", CURVES)
def test_kid_mismatch_with_expected_kid(curve: str) -> None:
    key = signer.make_key(curve)
    other = signer.make_key(curve, seed=2)
    keys = {k.kid: DevicePublicKey.from_sec1(k.compressed, curve) for k in (key, other)}
    verifier = Verifier(keys)
    raw = signer.make_record(key)
    assert verifier.verify(raw, expected_kid=key.kid).kid == key.kid
    assert verifier.verify(raw, expected_kid=key.kid.hex()).kid == key.kid
    assert verifier.verify(raw, expected_kid=key.kid.hex().upper()).kid == key.kid
    for wrong in (other.kid.hex(), "not hex", ""):
        with pytest.raises(Refused) as err:
            verifier.verify(raw, expected_kid=wrong)
        assert err.value.reason == "kid_mismatch"
    with pytest.raises(Refused) as err:
        verifier.verify(raw, expected_kid=other.kid)
    assert err.value.reason == "kid_mismatch"
    assert key.kid.hex() in err.value.detail and other.kid.hex() in err.value.detail


def test_kid_mismatch_when_enrolled_under_wrong_kid() -> None:
    key = signer.make_key("p256")
    other = DevicePublicKey.from_sec1(signer.make_key("p256", seed=5).compressed)
    verifier = Verifier({key.kid: other})
    with pytest.raises(Refused) as err:
        verifier.verify(signer.make_record(key))
    assert err.value.reason == "kid_mismatch"


@pytest.mark.parametrize("curve", CURVES)
def test_alg_must_match_enrolled_curve(curve: str) -> None:
    # Same kid, enrolled on one curve, record claims the other curve's alg.
    key = signer.make_key(curve)
    verifier = Verifier({key.kid: DevicePublicKey.from_sec1(key.compressed, curve)})
    wrong_alg = signer.CURVES[OTHER_CURVE[curve]][1]
    with pytest.raises(Refused) as err:
        verifier.verify(signer.make_record(key, alg=wrong_alg))
    assert err.value.reason == "bad_alg"
    assert "does not match" in err.value.detail


def test_unknown_kid_refused_before_signature_is_looked_at() -> None:
    key = signer.make_key("p256")
    with pytest.raises(Refused) as err:
        Verifier({}).verify(signer.make_record(key, signature=b"junk"))
    assert err.value.reason == "unknown_key"


def test_order_size_before_everything() -> None:
    with pytest.raises(Refused) as err:
        Verifier({}).verify(b"\xff" * 1025)
    assert err.value.reason == "too_large"


def test_1024_bytes_is_not_too_large() -> None:
    key = signer.make_key("p256")
    base = len(signer.make_record(key, signer.payload("evt", pad="")))
    # +2 bytes for the text head (>= 256 chars), +1 for the payload bstr head (>= 256 bytes).
    raw = signer.make_record(key, signer.payload("evt", pad="x" * (1024 - base - 3)))
    assert len(raw) == 1024
    assert len(raw + b"\x00") == 1025  # and one byte more would be too_large
    with pytest.raises(Refused) as err:
        Verifier({key.kid: DevicePublicKey.from_sec1(key.compressed)}).verify(raw)
    assert err.value.reason == "bad_payload"
    assert "'pad'" in err.value.detail


def test_refused_rejects_unknown_reason_and_is_readable() -> None:
    with pytest.raises(ValueError):
        Refused("nope", "x")
    err = Refused("high_s", "s too big")
    assert str(err) == "high_s: s too big"
    assert repr(err) == "Refused('high_s', 's too big')"
    assert err.reason == "high_s" and err.detail == "s too big"
    assert all(isinstance(v, str) and v.endswith(".") for v in REASONS.values())
