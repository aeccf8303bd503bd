# A device key inside an ATECC608: the "hardware-signed" tier's signer, and the
# self-test a chip passes before its key is trusted (at provisioning and at boot).
#
# Import-light on purpose: a device whose key is in the chip loads neither
# ec.py, ecdsa.py nor rfc6979.py (the chip does the curve arithmetic). The
# chip returns its public key as X || Y, so the compressed form and the kid
# need only hashlib, and low-S needs only the order n of P-256.

import binascii
import hashlib

from .atecc608 import LOCK_CONFIG, LOCK_VALUE, ATECCError

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_ALG_ES256 = const(-7)  # cose.ALG_ES256 (cose is not imported here: it pulls in ec)
_KID_BYTES = const(16)
_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_HALF_N = _N >> 1

# SlotConfig (config bytes 20 + 2*slot, LE), datasheet table "SlotConfig (Bytes 20 to 51)":
# bits 0..3 ReadKey (for a private key slot: bit 0 = external messages may be signed),
# bit 7 IsSecret, bits 12..15 WriteConfig.
_READKEY_EXTERNAL_SIGN = const(0x0001)
_IS_SECRET = const(0x0080)
# WriteConfig bit 2 (SlotConfig bit 14), datasheet table "WriteConfig Bits - PrivWrite
# Command": 1 = PrivWrite into this slot is permitted after the data lock, i.e. a private
# key chosen OUTSIDE the chip can be written in (encrypted, but known to whoever wrote it).
# 0 = PrivWrite returns an error. (Bit 1, SlotConfig bit 13, "WriteConfig Bits - GenKey
# Command", only lets GenKey replace the key with a new one born inside the chip: allowed.)
_PRIVWRITE_ALLOWED = const(0x4000)
# KeyConfig (config bytes 96 + 2*slot, LE), datasheet table "KeyConfig (Bytes 96 through
# 127)": bit 0 Private, bits 2..4 KeyType (0b100 = P-256 ECC key).
_PRIVATE = const(0x0001)
_KEYTYPE_MASK = const(0x001C)
_KEYTYPE_P256 = const(0x0010)


class _P256:
    # What the rest of the device needs of a curve: its name and order (no
    # arithmetic: that is the chip's).
    name = "p256"
    n = _N
    half_n = _HALF_N


class SelfTestError(Exception):
    """code: config_unlocked | data_unlocked | slot_config | key_mismatch | no_chip."""

    def __init__(self, code, sentence):
        super().__init__(sentence)
        self.code = code
        self.sentence = sentence


def compress(xy):
    """33-byte SEC1 compressed key from the chip's 64-byte X || Y."""
    return bytes((3 if xy[63] & 1 else 2,)) + bytes(xy[:32])


def low_s(signature):
    """r || s with s replaced by n - s when s > n/2 (the gateway refuses high-S)."""
    s = int.from_bytes(signature[32:64], "big")
    if s > _HALF_N:
        return bytes(signature[:32]) + (_N - s).to_bytes(32, "big")
    return bytes(signature)


class SecureElementSigner:
    """The signer interface of signer.SoftwareSigner, with the key in a chip slot."""

    def __init__(self, chip, slot, expected_public_key=None):
        self.chip = chip
        self.slot = slot
        self.curve = _P256
        self.alg = _ALG_ES256
        xy = chip.public_key(slot)
        self.public_key = compress(xy)
        self.public_key_uncompressed = b"\x04" + xy
        if expected_public_key is not None and _as_compressed(expected_public_key) != (
            self.public_key
        ):
            raise SelfTestError("key_mismatch", _mismatch(chip, slot))
        self.kid = hashlib.sha256(self.public_key).digest()[:_KID_BYTES]
        self.device_id = binascii.hexlify(self.kid).decode()

    def sign_digest(self, digest):
        self.chip.nonce_passthrough(digest)
        return low_s(self.chip.sign_external(self.slot))

    def __repr__(self):
        return "SecureElementSigner(ATECC608 at 0x%02x slot %d, device_id=%s)" % (
            self.chip.address,
            self.slot,
            self.device_id,
        )


def config_problem(config, slot):
    """(code, sentence) for the first rule a 128-byte config zone breaks for a
    signing key in `slot`, or None. The gateway re-checks the same rules on the
    config zone sent with the evidence (gateway/trust)."""
    if config[LOCK_CONFIG] != 0x00:
        return (
            "config_unlocked",
            "configuration zone not locked (LockConfig, byte 87, is 0x%02x): "
            "anyone on the bus can still change the slot rules" % config[LOCK_CONFIG],
        )
    if config[LOCK_VALUE] != 0x00:
        return (
            "data_unlocked",
            "data zone not locked (LockValue, byte 86, is 0x%02x): "
            "a key can still be written into the slot from outside" % config[LOCK_VALUE],
        )
    sc = config[20 + 2 * slot] | config[21 + 2 * slot] << 8
    kc = config[96 + 2 * slot] | config[97 + 2 * slot] << 8
    why = None
    if kc & _PRIVATE == 0 or kc & _KEYTYPE_MASK != _KEYTYPE_P256:
        why = "KeyConfig 0x%04x is not a P-256 private key (Private bit 0, KeyType 0b100)" % kc
    elif sc & _IS_SECRET == 0:
        why = "SlotConfig 0x%04x has IsSecret (bit 7) clear" % sc
    elif sc & _READKEY_EXTERNAL_SIGN == 0:
        why = "SlotConfig 0x%04x does not allow signing external messages (ReadKey bit 0)" % sc
    elif sc & _PRIVWRITE_ALLOWED:
        why = (
            "SlotConfig 0x%04x lets PrivWrite put a key chosen outside the chip into "
            "the slot (WriteConfig bit 2, SlotConfig bit 14)" % sc
        )
    if why:
        return "slot_config", "slot %d: %s" % (slot, why)
    return None


def self_test(chip, slot, expected_public_key):
    """Raise SelfTestError unless the chip answers, both zones are locked, the
    slot holds a P-256 private key that signs external messages and cannot be
    read or replaced from outside, and its public key is the expected one
    (33-byte compressed or 65-byte uncompressed SEC1, or the chip's 64-byte X || Y)."""
    expected = _as_compressed(expected_public_key)  # a malformed binding: ValueError first
    where = "ATECC608 at 0x%02x: " % chip.address
    try:
        config = chip.read_config()
    except ATECCError as e:
        raise SelfTestError("no_chip", str(e)) from None
    problem = config_problem(config, slot)
    if problem:
        raise SelfTestError(problem[0], where + problem[1])
    try:
        xy = chip.public_key(slot)
    except ATECCError as e:
        raise SelfTestError(
            "key_mismatch", "%s (slot %d holds no usable key)" % (e, slot)
        ) from None
    if compress(xy) != expected:
        raise SelfTestError("key_mismatch", _mismatch(chip, slot))


def _mismatch(chip, slot):
    return (
        "ATECC608 at 0x%02x: the key in slot %d is not the one the binding file names "
        "(another chip, or the slot was re-keyed)" % (chip.address, slot)
    )


def _as_compressed(key):
    key = bytes(key)
    if len(key) == 65 and key[0] == 4:
        key = key[1:]
    if len(key) == 64:
        return compress(key)
    if len(key) == 33 and key[0] in (2, 3):
        return key
    raise ValueError("expected public key: 33, 64 or 65 bytes, got %d" % len(key))
