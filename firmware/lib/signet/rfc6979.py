# Deterministic ECDSA nonces (RFC 6979, section 3.2) with HMAC-SHA256.
#
# A nonce that repeats or leaks a few bits reveals the private key, and a
# microcontroller's RNG can be weak right after boot; deriving k from the key
# and the message removes the RNG from the signing path altogether.

import hashlib

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_BLOCK = const(64)  # SHA-256 block size
# 0x36 and 0x5c repeated over the block, as integers: XOR of a whole padded key
# is then one bigint operation instead of 64 byte operations in the interpreter.
_IPAD = const(
    0x36363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636
)
_OPAD = const(
    0x5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C5C
)


def hmac_sha256(key, *parts):
    """HMAC-SHA256 (RFC 2104) over the concatenation of parts."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    k = int.from_bytes(key + bytes(_BLOCK - len(key)), "big")
    inner = hashlib.sha256((k ^ _IPAD).to_bytes(_BLOCK, "big"))
    for part in parts:
        inner.update(part)
    outer = hashlib.sha256((k ^ _OPAD).to_bytes(_BLOCK, "big"))
    outer.update(inner.digest())
    return outer.digest()


class NonceStream:
    """The RFC 6979 candidate sequence for one (key, digest) pair.

    Candidates are 256-bit integers; the caller rejects those outside
    [1, n-1] (or giving r == 0 or s == 0) and asks for the next.
    """

    def __init__(self, d, digest, n):
        x = d.to_bytes(32, "big")
        # bits2octets: the digest reduced mod n (qlen == hlen == 256 here).
        h = int.from_bytes(digest, "big")
        if h >= n:
            h -= n
        h1 = h.to_bytes(32, "big")
        v = b"\x01" * 32
        k = bytes(32)
        k = hmac_sha256(k, v, b"\x00", x, h1)
        v = hmac_sha256(k, v)
        k = hmac_sha256(k, v, b"\x01", x, h1)
        v = hmac_sha256(k, v)
        self._k = k
        self._v = v
        self._fresh = True

    def next(self):
        if not self._fresh:
            self._k = hmac_sha256(self._k, self._v, b"\x00")
            self._v = hmac_sha256(self._k, self._v)
        self._fresh = False
        self._v = hmac_sha256(self._k, self._v)
        return int.from_bytes(self._v, "big")
