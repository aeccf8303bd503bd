"""Property tests: random bytes and mutated records are refused cleanly, never crash.

Whatever the input, ``Verifier.verify`` either returns a record or raises
``Refused`` with a reason from the table; any other exception is a bug. A
mutated record that still verifies must be byte-identical to the original (the
signature covers everything that matters, and the encoding is canonical).
"""

from __future__ import annotations

import os

import cbor2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kit import independent_signer as signer
from signet_gateway.verify.cbor_strict import describe_problem
from signet_gateway.verify.verifier import REASONS, DevicePublicKey, Refused, Verifier

KEYS = {curve: signer.make_key(curve) for curve in ("p256", "secp256k1")}
VERIFIER = Verifier(
    {k.kid: DevicePublicKey.from_sec1(k.compressed, k.curve) for k in KEYS.values()}
)
RECORDS = [
    signer.make_record(key, signer.payload(kind, n=i + 1))
    for i, (key, kind) in enumerate(
        (key, kind) for key in KEYS.values() for kind in signer.SAMPLE_FIELDS
    )
]
# SIGNET_FUZZ_EXAMPLES=20000 for a long local run; the default keeps the suite fast.
EXAMPLES = int(os.environ.get("SIGNET_FUZZ_EXAMPLES", "1500"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(raw: bytes) -> None:
    try:
        rec = VERIFIER.verify(raw)
    except Refused as err:
        assert err.reason in REASONS
        assert err.detail
    else:
        assert raw in RECORDS, "a modified record verified"
        assert rec.raw == raw


@FUZZ
@given(st.binary(max_size=1100))
def test_random_bytes(raw: bytes) -> None:
    check(raw)


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes_behind_a_tag(raw: bytes) -> None:
    check(b"\xd2" + raw)
    check(b"\xd2\x84" + raw)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    raw = bytearray(draw(st.sampled_from(RECORDS)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(("flip", "set", "insert", "delete", "splice", "truncate")))
        pos = draw(st.integers(0, max(len(raw) - 1, 0)))
        if op == "flip" and raw:
            raw[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and raw:
            raw[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            raw[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and raw:
            raw[pos : pos + draw(st.integers(1, 8))] = b""
        elif op == "splice":
            other = draw(st.sampled_from(RECORDS))
            start = draw(st.integers(0, len(other) - 1))
            raw[pos:] = other[start:]
        elif op == "truncate":
            raw = raw[:pos]
    return bytes(raw)


@FUZZ
@given(mutated())
def test_mutated_records(raw: bytes) -> None:
    check(raw)


@FUZZ
@given(st.binary(max_size=300))
def test_scanner_never_raises(data: bytes) -> None:
    problem = describe_problem(data)
    assert problem is None or isinstance(problem, str)
    if problem is None:
        # what the scanner accepts, cbor2 decodes and re-encodes identically
        assert cbor2.dumps(cbor2.loads(data)) == data


@settings(max_examples=max(EXAMPLES // 2, 50), deadline=None)
@given(
    kind=st.sampled_from(tuple(signer.SAMPLE_FIELDS)),
    field=st.sampled_from(("v", "n", "b", "u", "t", "p", "am", "q", "iv", "st", "ev")),
    value=st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=True),
        st.text(max_size=40),
        st.binary(max_size=40),
        st.lists(st.integers(), max_size=3),
    ),
)
def test_signed_payload_field_values(kind: str, field: str, value: object) -> None:
    """Correctly signed records with arbitrary field values: accepted only if in schema."""
    key = KEYS["p256"]
    body = signer.payload(kind, **{field: value})
    raw = signer.make_record(key, body)
    try:
        rec = VERIFIER.verify(raw)
    except Refused as err:
        assert err.reason == "bad_payload", str(err)
    else:
        assert rec.payload == body
        assert type(rec.payload[field]) is type(value)
