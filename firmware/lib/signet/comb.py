# The comb table of ec.py's k*G, built once per curve (ec.comb_table).
#
# Apart from ec.py because it runs once: a device signs with one curve and builds
# its table at start, when the key is opened; ec.comb_table forgets this module
# after the build, so its code does not stay in the heap beside the table (about
# 1 KiB on a 32-bit board, from .mpy).
#
# Layout (ec._get reads it): bytearrays of 16 points, each point x then y,
# 32 bytes big-endian each. 1 KiB pieces still fit a fragmented MicroPython heap
# where one 4 KiB block may not. Built in small chunks, so the transient heap
# stays a few KiB. The precomputed tables (comb_p256.py, comb_secp256k1.py) are
# this build's output for 8 teeth and two tables (tools/device/comb_tables.py).

from .ec import _add_affine, _double, _get, inverse, to_affine

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_PIECE_POINTS = const(16)  # points per 1 KiB piece
_FIELD_BYTES = const(32)
_BUILD_POINTS = const(8)  # points normalised per field inversion


def build(curve, teeth, tables, table=None):
    """The comb table ec.mul_base reads: for each table j, 2^(teeth-1) points
    T[j * 2^(teeth-1) + i] = 2^(j * e) (G + sum of 2^(spacing * t) G over the set bits
    t-1 of i), spacing = ceil(256 / teeth), e = ceil((spacing + 1) / tables). Written
    into table (1 KiB pieces, as many as it needs) if given, else into new ones."""
    p = curve.p
    a = curve.a
    spacing = (255 + teeth) // teeth
    cols = (spacing + tables) // tables
    size = 1 << (teeth - 1)
    if table is None:
        table = [bytearray(_PIECE_POINTS * 2 * _FIELD_BYTES) for _ in range(size * tables >> 4)]
    gx, gy = curve.gx, curve.gy
    for j in range(tables):
        start = j * size
        if j:  # this table's base point: 2^e times the previous one's
            X, Y, Z = gx, gy, 1
            for _ in range(cols):
                X, Y, Z = _double(X, Y, Z, p, a)
            gx, gy = to_affine(curve, X, Y, Z)
        _put(table, start, gx, gy)
        X, Y, Z = gx, gy, 1
        for tooth in range(1, teeth):
            for _ in range(spacing):
                X, Y, Z = _double(X, Y, Z, p, a)
            bx, by = to_affine(curve, X, Y, Z)
            top = 1 << (tooth - 1)
            # T[top + i] = T[i] + 2^(spacing*tooth) G for i < top, all already in the table.
            i = 0
            while i < top:
                chunk = []
                first = i
                while i < top and len(chunk) < _BUILD_POINTS:
                    rx, ry = _get(table, start + i)
                    chunk.append(_add_affine(rx, ry, 1, bx, by, p, a))
                    i += 1
                for offset, (x, y) in enumerate(_to_affine_many(chunk, p)):
                    _put(table, start + top + first + offset, x, y)
    return table


def _put(table, i, x, y):
    piece = table[i >> 4]
    off = (i & 15) << 6
    piece[off : off + _FIELD_BYTES] = x.to_bytes(_FIELD_BYTES, "big")
    piece[off + _FIELD_BYTES : off + 2 * _FIELD_BYTES] = y.to_bytes(_FIELD_BYTES, "big")


def _to_affine_many(points, p):
    # Montgomery's trick: one field inversion for the whole list.
    count = len(points)
    prefix = [1] * (count + 1)
    acc = 1
    for i in range(count):
        acc = acc * points[i][2] % p
        prefix[i + 1] = acc
    inv = inverse(acc, p)
    out = [None] * count
    for i in range(count - 1, -1, -1):
        X, Y, Z = points[i]
        zi = inv * prefix[i] % p
        inv = inv * Z % p
        zi2 = zi * zi % p
        out[i] = (X * zi2 % p, Y * zi2 * zi % p)
    return out
