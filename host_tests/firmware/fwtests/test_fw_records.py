# Firmware record builder, COSE_Sign1 builder and key file.
# Runs under CPython (pytest) and the MicroPython unix port (mprun.py).

import hashlib

from signet import cbor, cose, ec, keyfile, record
from signet.builder import RecordBuilder
from signet.signer import SoftwareSigner

try:
    from . import reference_ec
    from .fwassert import hexlify, raises
except ImportError:  # MicroPython runner: flat import path
    import reference_ec
    from fwassert import hexlify, raises

# RFC 6979 A.2.5's key: any valid scalar would do; a published one is recognisable.
PRIVATE = 0xC9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721

ZERO = bytes(32)


def teardown_function(function=None):
    # A device holds one curve's comb table; tests use both, so free them
    # between tests to stay inside the 64 KiB heap the MicroPython run uses.
    ec.release_table()


def _fields(kind):
    return {
        "boot": {"rc": "power_on", "fw": "0.1.0", "ls": 0},
        "hb": {"iv": 60000, "st": "ok"},
        "rev": {"am": 250, "cur": "EUR", "src": "pulse", "ref": "order-17"},
        "meter": {"q": 1234, "unit": "Wh", "src": "uart"},
        "evt": {"ev": "sensor_missing", "msg": "coin acceptor not responding"},
    }[kind]


def test_record_every_kind_encodes():
    enc = cbor.Encoder()
    for kind in record.KINDS:
        data = record.encode_payload(enc, kind, 5, 2, 1000, 1700000000000, ZERO, _fields(kind))
        expected = {"v": 1, "n": 5, "b": 2, "u": 1000, "t": 1700000000000, "p": ZERO, "k": kind}
        expected.update(_fields(kind))
        assert data == cbor.dumps(expected)


def test_record_keys_in_cbor_order_without_optional_fields():
    # encode_payload writes keys in a fixed order (no dict, no sort): the same bytes
    # as the generic encoder's sorted map, with optional fields absent too.
    enc = cbor.Encoder()
    for kind, fields in (
        ("rev", {"am": -250, "cur": "EUR", "src": "pulse"}),
        ("meter", {"q": -7, "unit": "Wh"}),
        ("evt", {"ev": "door_open"}),
    ):
        data = record.encode_payload(enc, kind, 2**40, 0, 2**33, None, ZERO, fields)
        expected = {"v": 1, "n": 2**40, "b": 0, "u": 2**33, "t": None, "p": ZERO, "k": kind}
        expected.update(fields)
        assert data == cbor.dumps(expected)


def test_record_time_may_be_null():
    enc = cbor.Encoder()
    data = record.encode_payload(enc, "hb", 1, 1, 5, None, ZERO, {"iv": 1000, "st": "ok"})
    assert b"\x61t\xf6" in data  # "t": null


def test_record_validation_errors_are_specific():
    enc = cbor.Encoder()
    base = (1, 1, 0, None, ZERO)
    cases = (
        ("rev", {"am": 2.5, "cur": "EUR", "src": "pulse"}, "rev.am: must be an integer"),
        ("rev", {"am": True, "cur": "EUR", "src": "pulse"}, "rev.am: must be an integer"),
        ("rev", {"am": 2**53, "cur": "EUR", "src": "pulse"}, "rev.am: must be in"),
        ("rev", {"am": 1, "cur": "eur", "src": "pulse"}, "rev.cur"),
        ("rev", {"am": 1, "cur": "EURO", "src": "pulse"}, "rev.cur"),
        ("rev", {"am": 1, "src": "pulse"}, "rev.cur: is required"),
        ("rev", {"am": 1, "cur": "EUR", "src": "pulse", "ref": "x" * 65}, "rev.ref"),
        ("rev", {"am": 1, "cur": "EUR", "src": "pulse", "tip": 1}, "rev.tip: unknown field"),
        ("hb", {"iv": 0, "st": "ok"}, "hb.iv: must be in"),
        ("hb", {"iv": 10, "st": "OK"}, "hb.st: character"),
        ("hb", {"iv": 10, "st": ""}, "hb.st: must be 1..32"),
        ("boot", {"rc": "wdt", "fw": "1 0", "ls": 0}, "boot.fw: character"),
        ("boot", {"rc": "wdt", "fw": "1.0", "ls": -1}, "boot.ls"),
        ("meter", {"q": 1, "unit": "kW h"}, "meter.unit"),
        ("evt", {"ev": "x" * 33}, "evt.ev: must be 1..32"),
        ("pay", {}, "k: unknown kind"),
    )
    for kind, fields, expected in cases:
        msg = raises(record.RecordError, record.encode_payload, enc, kind, *base, fields)
        assert expected in msg, (msg, expected)
    common = (
        ((0, 1, 0, None, ZERO), "n: must be in 1.."),
        ((1, -1, 0, None, ZERO), "b: must be in"),
        ((1, 1, -5, None, ZERO), "u: must be in"),
        ((1, 1, 0, 1.5, ZERO), "t: must be an integer"),
        ((1, 1, 0, None, bytes(31)), "p: must be the 32-byte"),
    )
    for args, expected in common:
        msg = raises(
            record.RecordError, record.encode_payload, enc, "hb", *args, {"iv": 1, "st": "ok"}
        )
        assert expected in msg, (msg, expected)


def test_kid_is_sha256_prefix_of_compressed_key():
    signer = SoftwareSigner("p256", PRIVATE)
    assert signer.kid == hashlib.sha256(signer.public_key).digest()[:16]
    assert len(signer.device_id) == 32
    assert signer.device_id == hexlify(signer.kid)
    raises(ValueError, cose.kid_for, signer.public_key_uncompressed)


def _parse_sign1(data):
    # Fixed-layout parse of what the firmware emits (the strict general
    # decoder is the gateway's; this only checks the bytes we promise).
    assert data[:2] == b"\xd2\x84", "tag 18 + array(4)"
    i = 2
    plen = data[i] & 0x1F
    protected = data[i + 1 : i + 1 + plen]
    i += 1 + plen
    assert data[i : i + 3] == b"\xa1\x04\x50"
    kid = data[i + 3 : i + 19]
    i += 19
    head = data[i]
    if head == 0x58:
        n = data[i + 1]
        i += 2
    elif head == 0x59:
        n = (data[i + 1] << 8) | data[i + 2]
        i += 3
    else:
        n = head & 0x1F
        i += 1
    payload = data[i : i + n]
    i += n
    assert data[i : i + 2] == b"\x58\x40"
    sig = data[i + 2 : i + 66]
    assert i + 66 == len(data), "no trailing bytes"
    return protected, kid, payload, sig


def test_sign1_layout_and_signature():
    for curve_name, protected_hex in (("p256", "a10126"), ("secp256k1", "a101382e")):
        signer = SoftwareSigner(curve_name, PRIVATE)
        builder = RecordBuilder(signer)
        payload, rec = builder.build("rev", 1, 1, 10, None, ZERO, _fields("rev"))
        protected, kid, body, sig = _parse_sign1(rec)
        assert hexlify(protected) == protected_hex
        assert kid == signer.kid
        assert body == payload
        digest = cose.to_be_signed_digest(signer.alg, payload)
        # Sig_structure built independently with the generic encoder.
        tbs = cbor.dumps(["Signature1", protected, b"", payload], 256)
        assert hashlib.sha256(tbs).digest() == digest
        curve = signer.curve
        public = ec.public_point(curve, PRIVATE)
        r = int.from_bytes(sig[:32], "big")
        s = int.from_bytes(sig[32:], "big")
        assert s <= curve.n // 2
        assert reference_ec.verify(curve, public, digest, r, s)
        builder = signer = None
        teardown_function()


class _HighSSigner:
    # Stands in for a secure element that does not normalise s.
    def __init__(self, inner):
        self.alg = inner.alg
        self.kid = inner.kid
        self._inner = inner

    def sign_digest(self, digest):
        sig = self._inner.sign_digest(digest)
        n = self._inner.curve.n
        return sig[:32] + (n - int.from_bytes(sig[32:], "big")).to_bytes(32, "big")


def test_sign1_normalises_high_s_from_any_signer():
    signer = SoftwareSigner("p256", PRIVATE)
    enc = cbor.Encoder()
    payload = record.encode_payload(enc, "hb", 1, 1, 0, None, ZERO, {"iv": 1, "st": "ok"})
    high = cose.sign1(_HighSSigner(signer), payload, enc)
    assert high == cose.sign1(signer, payload, enc)


def test_chain_of_records():
    signer = SoftwareSigner("p256", PRIVATE)
    builder = RecordBuilder(signer)
    prev = record.GENESIS_HASH
    seen = []
    for n in range(1, 6):
        payload, rec = builder.build("hb", n, 1, n * 1000, None, prev, {"iv": 1000, "st": "ok"})
        assert payload[:1] == b"\xa9"  # map of 9 entries
        assert hashlib.sha256(prev).digest() != prev
        assert prev in payload
        prev = hashlib.sha256(payload).digest()
        seen.append(rec)
    assert len(set(seen)) == 5


def test_oversized_record_refused_at_source():
    signer = SoftwareSigner("p256", PRIVATE)
    builder = RecordBuilder(signer, capacity=160)
    msg = raises(
        ValueError, builder.build, "evt", 1, 1, 0, None, ZERO, {"ev": "x", "msg": "y" * 64}
    )
    assert "exceeds" in msg or "limit" in msg


def test_keyfile_round_trip_and_tamper():
    signer = SoftwareSigner("secp256k1", 12345)
    text = keyfile.dumps(signer)
    again = keyfile.loads(text)
    assert again.kid == signer.kid and again.alg == cose.ALG_ES256K
    assert "d" not in repr(again) or "12345" not in repr(again)
    tampered = text.replace(signer.device_id, "0" * 32)
    assert "does not match" in raises(keyfile.KeyFileError, keyfile.loads, tampered)
    raises(keyfile.KeyFileError, keyfile.loads, "{}")
    raises(keyfile.KeyFileError, keyfile.loads, "not json")
    zero = text.replace(hexlify(signer.private_bytes()), "0" * 64)
    raises(keyfile.KeyFileError, keyfile.loads, zero)
