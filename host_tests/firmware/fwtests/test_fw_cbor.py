# Firmware deterministic CBOR encoder.
# Runs under CPython (pytest) and the MicroPython unix port (mprun.py).

from signet import cbor

try:
    from . import vectors_cbor
    from .fwassert import hexlify, raises
except ImportError:  # MicroPython runner: flat import path
    import vectors_cbor
    from fwassert import hexlify, raises


def test_cbor_rfc8949_examples():
    for value, expected in vectors_cbor.CBOR_EXAMPLES:
        assert hexlify(cbor.dumps(value)) == expected, (value, expected)


def test_cbor_map_keys_sorted_by_encoding():
    # Deterministic: shorter text keys first, then bytewise; same bytes whatever
    # the insertion order.
    a = cbor.dumps({"ref": 1, "k": 2, "am": 3, "b": 4})
    b = cbor.dumps({"b": 4, "am": 3, "k": 2, "ref": 1})
    assert a == b
    assert hexlify(a) == "a461620461" + "6b02" + "62616d03" + "6372656601"


def test_cbor_limits():
    enc = cbor.Encoder(8)
    assert "exceeds" in raises(ValueError, enc.value, b"x" * 8)
    raises(ValueError, cbor.dumps, 1 << 64)
    raises(ValueError, cbor.dumps, -(1 << 64) - 1)
    raises(TypeError, cbor.dumps, 1.5)
    raises(TypeError, cbor.dumps, {1.5: 1})
    # The encoder is reusable after an error.
    enc.reset()
    enc.value(7)
    assert enc.getvalue() == b"\x07"
