# Elliptic-curve arithmetic for NIST P-256 and secp256k1, pure Python.
#
# Runs unchanged on MicroPython and CPython. Only what a signer needs:
# fixed-base scalar multiplication k*G and SEC1 encoding. Verification is the
# gateway's job (it uses `cryptography` / `coincurve`).
#
# Speed on MicroPython is dominated by the number of bigint operations (each
# allocates), so points are kept in Jacobian coordinates, additions are mixed
# (Jacobian + affine) and k*G uses a Lim-Lee comb over a table of affine
# points packed into one bytearray (built once per curve, on first use).
#
# Python cannot be made constant-time. We avoid the gross leaks cheaply: the
# comb always runs the same number of doublings and additions whatever the
# scalar (a zero digit does a dummy addition), and nothing exits early on a
# secret value.

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


# 6 teeth: 63 table points = 4 KiB per curve, 42 doublings + 43 additions per
# k*G. 7 teeth saves ~15% of a signature for twice the RAM; 64 KiB heaps win.
_COMB_TEETH = const(6)
_COMB_SPACING = const(43)  # ceil(256 / 6)
_FIELD_BYTES = const(32)
_PIECE_POINTS = const(16)  # points per 1 KiB table piece
_BUILD_POINTS = const(8)  # points normalised per field inversion while building


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
        self._comb = None  # packed affine table, built lazily by comb_table()

    def on_curve(self, x, y):
        p = self.p
        if not (0 <= x < p and 0 <= y < p):
            return False
        return (y * y - (x * x * x + self.a * x + self.b)) % p == 0


P256 = Curve(
    "p256",
    0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF,
    -3,
    0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B,
    0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
    0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5,
)

SECP256K1 = Curve(
    "secp256k1",
    0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F,
    0,
    7,
    0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141,
    0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798,
    0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8,
)


def curve_by_name(name):
    if name == "p256":
        return P256
    if name == "secp256k1":
        return SECP256K1
    raise ValueError("unknown curve %r (expected 'p256' or 'secp256k1')" % (name,))


def _double(X, Y, Z, p, a):
    # Jacobian doubling; a is -3 (P-256, dbl-2001-b) or 0 (secp256k1, dbl-2009-l).
    # Subtractions are left unreduced where the next step multiplies anyway.
    if a:
        d = Z * Z % p
        g = Y * Y % p
        be = X * g % p
        al = 3 * (X - d) * (X + d) % p
        X3 = (al * al - 8 * be) % p
        Z3 = ((Y + Z) * (Y + Z) - g - d) % p
        return X3, (al * (4 * be - X3) - 8 * g * g) % p, Z3
    aa = X * X % p
    bb = Y * Y % p
    cc = bb * bb % p
    t = X + bb
    dd = 2 * (t * t - aa - cc)
    e = 3 * aa
    X3 = (e * e - 2 * dd) % p
    return X3, (e * (dd - X3) - 8 * cc) % p, 2 * Y * Z % p


def _add_affine(X1, Y1, Z1, x2, y2, p, a):
    # Mixed addition (Jacobian + affine), madd-2004-hmv. Falls back to doubling
    # when both inputs are the same point; in a comb over a random scalar that
    # happens with probability ~2^-250, but correctness must not rely on luck.
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


def _inverse(x, m):
    # Fermat inversion (m prime). Never pow(x, -1, m): MicroPython returns 0.
    return pow(x, m - 2, m)


def _to_affine_many(points, p):
    # Montgomery's trick: one field inversion for the whole list.
    count = len(points)
    prefix = [1] * (count + 1)
    acc = 1
    for i in range(count):
        acc = acc * points[i][2] % p
        prefix[i + 1] = acc
    inv = _inverse(acc, p)
    out = [None] * count
    for i in range(count - 1, -1, -1):
        X, Y, Z = points[i]
        zi = inv * prefix[i] % p
        inv = inv * Z % p
        zi2 = zi * zi % p
        out[i] = (X * zi2 % p, Y * zi2 * zi % p)
    return out


def comb_table(curve):
    """Affine table T[j] = sum of 2^(i*43) G over the set bits i of j, j in 1..63.

    Packed as 4 bytearrays of 16 points (x then y, 32 bytes big-endian each):
    1 KiB pieces still fit a fragmented MicroPython heap where one 8 KiB block
    would not. Built once per curve, in chunks, so the transient heap stays small.
    """
    if curve._comb is not None:
        return curve._comb
    p = curve.p
    a = curve.a
    size = (1 << _COMB_TEETH) - 1
    table = [bytearray(_PIECE_POINTS * 2 * _FIELD_BYTES) for _ in range((size + 15) >> 4)]
    X, Y, Z = curve.gx, curve.gy, 1
    for top in range(_COMB_TEETH):
        if top:
            for _ in range(_COMB_SPACING):
                X, Y, Z = _double(X, Y, Z, p, a)
        bx, by = to_affine(curve, X, Y, Z)
        _put(table, 1 << top, bx, by)
        # T[2^top + rest] = T[rest] + B_top for rest < 2^top, all already in the table.
        rest = 1
        while rest < (1 << top):
            chunk = []
            first = rest
            while rest < (1 << top) and len(chunk) < _BUILD_POINTS:
                rx, ry = _get(table, rest)
                chunk.append(_add_affine(rx, ry, 1, bx, by, p, a))
                rest += 1
            for i, (x, y) in enumerate(_to_affine_many(chunk, p)):
                _put(table, (1 << top) + first + i, x, y)
    curve._comb = table
    return table


def _put(table, j, x, y):
    piece = table[(j - 1) >> 4]
    off = ((j - 1) & 15) << 6
    piece[off : off + _FIELD_BYTES] = x.to_bytes(_FIELD_BYTES, "big")
    piece[off + _FIELD_BYTES : off + 2 * _FIELD_BYTES] = y.to_bytes(_FIELD_BYTES, "big")


def _get(table, j):
    piece = table[(j - 1) >> 4]
    off = ((j - 1) & 15) << 6
    return (
        int.from_bytes(piece[off : off + _FIELD_BYTES], "big"),
        int.from_bytes(piece[off + _FIELD_BYTES : off + 2 * _FIELD_BYTES], "big"),
    )


def mul_base(curve, k):
    """k*G in Jacobian coordinates (X, Y, Z); Z == 0 means infinity.

    1 <= k < n is the caller's contract (ECDSA nonces and private keys).
    """
    table = comb_table(curve)
    p = curve.p
    a = curve.a
    kb = k.to_bytes(_FIELD_BYTES + 1, "big")  # 33 bytes: comb spans 6*43 = 258 bits
    last = _FIELD_BYTES  # index of the least significant byte in kb
    X = Y = Z = 0
    started = False
    dX = dY = dZ = 0  # dummy accumulator: keeps the work per column constant
    for col in range(_COMB_SPACING - 1, -1, -1):
        if started:
            X, Y, Z = _double(X, Y, Z, p, a)
        else:
            dX, dY, dZ = _double(curve.gx, curve.gy, 1, p, a)
        j = 0
        pos = col + (_COMB_TEETH - 1) * _COMB_SPACING
        while pos >= 0:
            j = (j << 1) | ((kb[last - (pos >> 3)] >> (pos & 7)) & 1)
            pos -= _COMB_SPACING
        tx, ty = _get(table, j if j else 1)
        if j and started:
            X, Y, Z = _add_affine(X, Y, Z, tx, ty, p, a)
        elif j:
            X, Y, Z = tx, ty, 1
            started = True
            dX, dY, dZ = _add_affine(dX, dY, dZ, tx, ty, p, a)
        else:
            dX, dY, dZ = _add_affine(dX, dY, dZ, tx, ty, p, a)
    return X, Y, Z


def to_affine(curve, X, Y, Z):
    if Z == 0:
        raise ValueError("point at infinity has no affine form")
    p = curve.p
    zi = _inverse(Z, p)
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


def release_table(curve):
    """Free a curve's comb table (8 KiB). A device uses one curve; this is for
    tools and tests that use both in one small heap."""
    curve._comb = None
