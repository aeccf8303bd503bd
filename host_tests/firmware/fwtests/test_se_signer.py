# SecureElementSigner and the self-test against the emulated ATECC608, under
# CPython and MicroPython (fwtests/chipkit.py gives the bus).

import sys

from signet.se_signer import SecureElementSigner, SelfTestError, compress, low_s, self_test

try:
    from . import chipkit
    from .fwassert import raises
except ImportError:  # MicroPython runner: flat import path
    import chipkit
    from fwassert import raises

_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def _code(fn, *args):
    try:
        fn(*args)
    except SelfTestError as e:
        return e.code, e.sentence
    raise AssertionError("no SelfTestError")


_loaded_before = [m for m in ("signet.ec", "signet.ecdsa", "signet.rfc6979") if m in sys.modules]


def test_the_signer_does_not_load_the_software_curve_code():
    # A device whose key is in the chip loads neither ec, ecdsa nor rfc6979. Telling on
    # MicroPython, where this module runs in a fresh interpreter (under pytest other
    # tests may have loaded them: host_tests/firmware/test_se_host.py checks in a
    # fresh CPython).
    for name in ("signet.ec", "signet.ecdsa", "signet.rfc6979"):
        assert name not in sys.modules or name in _loaded_before, name


def test_signer_attributes_come_from_the_chip():
    drv, _, facts = chipkit.chip()
    xy = chipkit.unhex(facts["public_key"])
    s = SecureElementSigner(drv, 0)
    assert s.public_key == compress(xy) and len(s.public_key) == 33
    assert s.public_key_uncompressed == b"\x04" + xy
    assert len(s.kid) == 16 and s.device_id == chipkit.hexlify(s.kid)
    assert s.alg == -7 and s.curve.name == "p256" and s.curve.n == _N
    assert "0x35" in repr(s)


def test_signatures_verify_and_are_low_s():
    drv, bus, _ = chipkit.chip()
    s = SecureElementSigner(drv, 0)
    bus.control("fault", high_s=True)  # the chip answers with s > n/2 ...
    for i in range(3):
        digest = bytes([i]) * 32
        sig = s.sign_digest(digest)
        assert int.from_bytes(sig[32:], "big") <= _N >> 1  # ... the signer normalises
        hexsig = chipkit.hexlify(sig)
        assert bus.control("verify", slot=0, digest=chipkit.hexlify(digest), sig=hexsig)


def test_low_s_keeps_low_and_flips_high():
    r = (1).to_bytes(32, "big")
    low = r + (5).to_bytes(32, "big")
    assert low_s(low) == low
    assert low_s(r + (_N - 5).to_bytes(32, "big")) == low


def test_expected_key_mismatch_is_refused():
    drv, _, _ = chipkit.chip()
    other = b"\x02" + bytes(32)
    code, sentence = _code(SecureElementSigner, drv, 0, other)
    assert code == "key_mismatch" and sentence.startswith("ATECC608 at 0x35: the key in slot 0")


def test_self_test_passes_on_a_trust_and_go_chip():
    drv, _, facts = chipkit.chip()
    xy = chipkit.unhex(facts["public_key"])
    self_test(drv, 0, compress(xy))
    self_test(drv, 0, b"\x04" + xy)


def test_self_test_codes():
    drv, _, facts = chipkit.chip(lock=False)
    key = compress(chipkit.unhex(facts["public_key"]))
    code, sentence = _code(self_test, drv, 0, key)
    assert code == "config_unlocked", sentence
    assert sentence.startswith("ATECC608 at 0x35: configuration zone not locked"), sentence
    cases = (
        (0x0005, "IsSecret"),  # IsSecret clear
        (0x0084, "external messages"),  # ReadKey bit 0 clear
        (0x4085, "PrivWrite"),  # WriteConfig bit 2: PrivWrite of an outside key
    )
    for slot_config, words in cases:
        drv, _, facts = chipkit.chip(slot_config=slot_config)
        key = compress(chipkit.unhex(facts["public_key"]))
        code, sentence = _code(self_test, drv, 0, key)
        assert code == "slot_config" and words in sentence, (slot_config, sentence)
    drv, _, facts = chipkit.chip(key_config=0x0013 & ~0x1C)  # not a P-256 key type
    code, sentence = _code(self_test, drv, 0, b"\x02" + bytes(32))
    assert code == "slot_config" and "KeyConfig" in sentence, sentence
    drv, _, _ = chipkit.chip()
    code, sentence = _code(self_test, drv, 0, b"\x03" + bytes(32))
    assert code == "key_mismatch", sentence


def test_self_test_without_a_chip():
    drv, bus, _ = chipkit.chip()
    bus.control("fault", missing=True)
    code, sentence = _code(self_test, drv, 0, b"\x02" + bytes(32))
    assert code == "no_chip" and "no response" in sentence, sentence


def test_data_unlocked_chip():
    drv, _, _ = chipkit.chip("blank", address=0x60)
    # A blank chip's config locked by hand, its data zone not: data_unlocked.
    config = bytearray(drv.read_config())
    config[87] = 0
    from signet.se_signer import config_problem

    code, sentence = config_problem(config, 0)
    assert code == "data_unlocked" and "LockValue, byte 86" in sentence
    assert raises(ValueError, self_test, drv, 0, b"\x02" * 5)
