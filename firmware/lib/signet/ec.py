# Elliptic-curve arithmetic for NIST P-256 and secp256k1, pure Python.
#
# Runs unchanged on MicroPython and CPython. Only what a signer needs:
# fixed-base scalar multiplication k*G and SEC1 encoding. Verification is the
# gateway's job (it uses `cryptography` / `coincurve`).
#
# Speed on MicroPython is dominated by the number of bigint operations (each
# allocates), so points are kept in Jacobian coordinates, additions are mixed
# (Jacobian + affine) and k*G uses a signed-digit Lim-Lee comb (the recoding
# mbedTLS uses): every column digit is odd, so a table holds only odd
# combinations (negatives are free: -P = (x, -y)) and every column costs
# exactly one addition per table. Two shapes:
# - built at start (comb.py), once per curve, in the heap, where the precomputed
#   one is not there: 6 teeth, two tables of 32 points (4 KiB), 21 doublings + 44
#   additions per k*G;
# - precomputed (comb_p256.py, comb_secp256k1.py): 8 teeth, four tables of 128
#   points (32 KiB of constants), 8 doublings + 33 additions. Frozen into a
#   firmware they stay in flash and cost no heap; imported from a file they would
#   take 32 KiB of it, so a board installed from files (.mpy or .py) reads the same
#   points from the table's bytes in a file beside the modules (comb_p256.bin,
#   comb_secp256k1.bin), one point per lookup, into one 64-byte buffer.
#
# Python cannot be made constant-time. We avoid the gross leaks cheaply: the
# comb runs the same number of doublings and additions for every scalar, no
# digit is ever zero (no skipped additions), and nothing exits early on a
# secret value.

import sys
from os import urandom

from . import forget

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


# The comb built at start: 6 teeth, two tables of 2^5 = 32 points = 4 KiB per
# curve, 21 doublings + 44 additions per k*G (one table of 7 teeth, the same
# 64 points: 37 + 38, 9% more instructions per record). At most 8 teeth: a
# recoded digit is stored as its table index (7 bits) and its sign (bit 7).
COMB_TEETH = const(6)
COMB_TABLES = const(2)
_NEGATIVE = const(0x80)  # sign flag on a recoded digit
_FIELD_BYTES = const(32)


class Curve:
    """Short Weierstrass curve y^2 = x^3 + a*x + b over GF(p), a in {0, -3}."""

    def __init__(self, name, p, a, b, n, gx, gy):
        self.name = name
        self.p = p
        self.a = a
        self.b = b
        self.n = n
        self.gx = gx
        self.gy = gy
        self.half_n = n >> 1
        self._comb = None  # (table, teeth, tables), by comb_table()

    def on_curve(self, x, y):
        p = self.p
        if not (0 <= x < p and 0 <= y < p):
            return False
        return (y * y - (x * x * x + self.a * x + self.b)) % p == 0


# Built on first use and kept: a device signs with one curve, so a P-256 device
# never holds secp256k1's constants (they live in secp256k1.py) nor its table.
_CURVES = {}


def curve_by_name(name):
    curve = _CURVES.get(name)
    if curve is not None:
        return curve
    if name == "p256":
        curve = Curve(
            "p256",
            0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF,
            -3,
            0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B,
            0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
            0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
            0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5,
        )
    elif name == "secp256k1":
        from .secp256k1 import PARAMS

        curve = Curve(name, *PARAMS)
    else:
        raise ValueError("unknown curve %r (expected 'p256' or 'secp256k1')" % (name,))
    _CURVES[name] = curve
    return curve


def _double(X, Y, Z, p, a):
    # Jacobian doubling; a is -3 (P-256, dbl-2001-b) or 0 (secp256k1, dbl-2009-l).
    # Subtractions are left unreduced where the next step multiplies anyway.
    if a:
        d = Z * Z % p
        g = Y * Y % p
        be = X * g % p
        al = 3 * (X - d) * (X + d) % p
        X3 = (al * al - 8 * be) % p
        return X3, (al * (4 * be - X3) - 8 * g * g) % p, 2 * Y * Z % p
    aa = X * X % p
    bb = Y * Y % p
    cc = bb * bb % p
    t = X + bb
    dd = 2 * (t * t - aa - cc)
    e = 3 * aa
    X3 = (e * e - 2 * dd) % p
    return X3, (e * (dd - X3) - 8 * cc) % p, 2 * Y * Z % p


def _add_affine(X1, Y1, Z1, x2, y2, p, a):
    # Mixed addition (Jacobian + affine), madd-2004-hmv. Handles infinity and
    # equal or opposite inputs; in a comb over a random scalar those happen
    # with probability ~2^-250, but correctness must not rely on luck.
    if Z1 == 0:
        return x2, y2, 1
    t1 = Z1 * Z1 % p
    t2 = t1 * Z1 % p
    h = (t1 * x2 - X1) % p
    r = (t2 * y2 - Y1) % p
    if h == 0:
        if r == 0:
            return _double(X1, Y1, Z1, p, a)
        return 0, 1, 0  # P + (-P): point at infinity
    Z3 = Z1 * h % p
    h2 = h * h % p
    h3 = h2 * h % p
    v = X1 * h2 % p
    X3 = (r * r - h3 - v - v) % p
    return X3, (r * (v - X3) - Y1 * h3) % p, Z3


def inverse(x, m):
    """x^-1 mod m (m prime) by extended Euclid on a blinded input.

    Euclid is ~4x faster than Fermat's pow(x, m-2, m) on MicroPython, but its
    running time depends on its input, and x here is secret-derived (the nonce
    k, or the Z of k*G). Inverting x*b for a fresh random b instead makes that
    input uniformly random; multiplying by b afterwards gives x^-1. (Never
    pow(x, -1, m): MicroPython silently returns 0.)
    """
    b = int.from_bytes(urandom(32), "big") % m or 1
    y = x * b % m
    if y == 0:
        raise ValueError("0 has no inverse")
    x0, x1 = 1, 0
    r0, r1 = y, m
    while r1:
        q, r = divmod(r0, r1)  # one bigint division for both: 15% faster than // then *
        r0, r1 = r1, r
        x0, x1 = x1, x0 - q * x1
    return x0 * b % m


# A frozen module's __file__ is its path in the firmware ("signet/ec.py"); a file's
# starts at the file system's root.
_PRECOMPUTED = sys.implementation.name != "micropython" or __file__[:1] != "/"


def comb_table(curve):
    """The curve's comb: (table, teeth, tables, get), get(table, i) -> point i (x, y).

    Point j * 2^(teeth - 1) + i is 2^(j * e) (G + sum of 2^(spacing * t) G over the set
    bits t-1 of i), e the columns per table (comb.py). In order, the first there is:
    - the precomputed table imported, where that costs no heap: frozen into the
      firmware (its constants stay in flash), or on CPython;
    - the same table read from its file beside the modules (comb_<curve>.bin), where
      the modules are files: a board installed with `signet device flash` or mip;
    - one built now (6 teeth, two tables, 4 KiB).
    The last two by comb.py (comb.table), whose code is forgotten after it: a device
    signs with one curve, and opens or builds its table once, at start. A table in the
    heap is 1 KiB pieces of 16 points each (x then y, 32 bytes big-endian each): they
    still fit a fragmented MicroPython heap where one 4 KiB block may not.
    """
    if curve._comb is None:
        if _PRECOMPUTED:
            try:
                if curve.name == "p256":
                    from .comb_p256 import TABLE, TABLES, TEETH
                else:
                    from .comb_secp256k1 import TABLE, TABLES, TEETH
                curve._comb = (TABLE, TEETH, TABLES, _get)
                return curve._comb
            except ImportError:  # a firmware that froze only part of the package
                pass
        from . import comb

        try:
            curve._comb = comb.table(curve, __file__[: __file__.rfind("/") + 1])
        finally:
            forget("comb")
    return curve._comb


def _get(table, i):
    piece = table[i >> 4]
    off = (i & 15) << 6
    return (
        int.from_bytes(piece[off : off + _FIELD_BYTES], "big"),
        int.from_bytes(piece[off + _FIELD_BYTES : off + 2 * _FIELD_BYTES], "big"),
    )


def _read(table, i):
    # A point of the table's file: one seek and one read into the same buffer, whose
    # views give x and y (nothing allocated but the two ints).
    f, buf, x, y = table
    f.seek(i << 6)
    if f.readinto(buf) != 2 * _FIELD_BYTES:
        raise OSError("comb table: short read")  # never a wrong point
    return int.from_bytes(x, "big"), int.from_bytes(y, "big")


def _recode(k, digits, teeth, spacing):
    """Signed comb digits of an odd scalar k into digits[0..spacing] (mbedTLS's recoding).

    Plain comb digits first; then, column by column, an even digit borrows the
    previous column (which becomes negative: v*2^(i-1) = -v*2^(i-1) + v*2^i),
    so every digit is odd and points at a table entry. Carries run per tooth.
    A digit, once final, is stored as its table index (an odd digit d is entry d >> 1)
    with its sign in bit 7: a byte, for up to 8 teeth.
    """
    kb = k.to_bytes(_FIELD_BYTES + 1, "big")  # a comb spans up to 7 * 37 = 259 bits
    last = _FIELD_BYTES  # index of the least significant byte
    for col in range(spacing):
        x = 0
        pos = col + (teeth - 1) * spacing
        while pos >= 0:
            x = (x << 1) | ((kb[last - (pos >> 3)] >> (pos & 7)) & 1)
            pos -= spacing
        digits[col] = x
    digits[spacing] = 0
    carry = 0
    for i in range(1, spacing + 1):
        x = digits[i]
        cc = x & carry
        x ^= carry
        carry = cc
        adjust = 1 - (x & 1)
        prev = digits[i - 1] * adjust
        carry |= x & prev
        digits[i] = x ^ prev
        digits[i - 1] = (digits[i - 1] >> 1) | (adjust << 7)  # final: index and sign
    digits[spacing] >>= 1


def mul_base(curve, k):
    """k*G in Jacobian coordinates (X, Y, Z); Z == 0 means infinity.

    1 <= k < n is the caller's contract (ECDSA nonces and private keys).
    """
    table, teeth, tables, get = comb_table(curve)
    p = curve.p
    a = curve.a
    spacing = (255 + teeth) // teeth  # ceil(256 / teeth): 32 for 8 teeth
    cols = (spacing + tables) // tables  # columns per table: digits 0..spacing shared out
    size = 1 << (teeth - 1)  # points per table
    # The recoding needs an odd scalar: for even k use n - k (odd, as n is odd)
    # and negate the result, since (n - k) G = -kG.
    negate = not k & 1
    if negate:
        k = curve.n - k
    digits = bytearray(spacing + 1)
    _recode(k, digits, teeth, spacing)
    X = Y = Z = 0  # infinity: the first addition sets the point
    col = cols - 1
    while col >= 0:
        if col < cols - 1:
            X, Y, Z = _double(X, Y, Z, p, a)
        base = 0
        i = col
        while i <= spacing:  # the same positions for every scalar
            d = digits[i]
            tx, ty = get(table, base + (d & 0x7F))
            if d & _NEGATIVE:
                ty = p - ty
            X, Y, Z = _add_affine(X, Y, Z, tx, ty, p, a)
            base += size
            i += cols
        col -= 1
    if negate:
        Y = p - Y
    return X, Y, Z


def to_affine(curve, X, Y, Z):
    if Z == 0:
        raise ValueError("point at infinity has no affine form")
    p = curve.p
    zi = inverse(Z, p)
    zi2 = zi * zi % p
    return X * zi2 % p, Y * zi2 * zi % p


def public_point(curve, d):
    if not 0 < d < curve.n:
        raise ValueError("private scalar out of range [1, n-1]")
    X, Y, Z = mul_base(curve, d)
    return to_affine(curve, X, Y, Z)


def encode_point(x, y, compressed=True):
    """SEC1 encoding: 02/03 || x (33 bytes) or 04 || x || y (65 bytes)."""
    if compressed:
        return bytes((2 + (y & 1),)) + x.to_bytes(_FIELD_BYTES, "big")
    return b"\x04" + x.to_bytes(_FIELD_BYTES, "big") + y.to_bytes(_FIELD_BYTES, "big")


def release_table(curve=None):
    """Free a curve's comb table (4 KiB; a table read from its file: the file is
    closed), or every curve's (None). A device uses one curve; this is for tools and
    tests that use both in one small heap."""
    for c in (curve,) if curve is not None else _CURVES.values():
        if c._comb is not None and c._comb[3] is _read:
            c._comb[0][0].close()
        c._comb = None
