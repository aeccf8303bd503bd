# ECDSA signing (SHA-256 digests) with deterministic nonces and low-S output.
#
# Output is the raw 64-byte r || s that COSE requires (RFC 9053 section 2.1),
# with s normalised to s <= n/2 so a signature has exactly one valid encoding:
# the gateway refuses the high-S twin, which closes signature malleability.

import os

from . import ec
from .rfc6979 import NonceStream


def generate_scalar(curve):
    """A private scalar in [1, n-1] from the platform's true RNG (os.urandom)."""
    n = curve.n
    while True:
        # Rejection sampling, not "mod n": no bias toward small values.
        d = int.from_bytes(os.urandom(32), "big")
        if 0 < d < n:
            return d


def sign_digest(curve, d, digest):
    """Sign a 32-byte SHA-256 digest with private scalar d; returns r || s (64 bytes)."""
    if len(digest) != 32:
        raise ValueError("digest must be 32 bytes (SHA-256)")
    n = curve.n
    if not 0 < d < n:
        raise ValueError("private scalar out of range [1, n-1]")
    e = int.from_bytes(digest, "big")
    nonces = NonceStream(d, digest, n)
    while True:
        k = nonces.next()
        if not 0 < k < n:
            continue
        x, _ = ec.to_affine(curve, *ec.mul_base(curve, k))
        r = x % n
        if r == 0:
            continue
        s = ec.inverse(k, n) * (e + r * d) % n
        if s == 0:
            continue
        if s > curve.half_n:
            s = n - s
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
