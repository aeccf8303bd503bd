# The comb table of ec.py's k*G where the package runs from files (ec.comb_table): the
# precomputed table read from its file, checked first, or one built now.
#
# Apart from ec.py because it runs once: a device signs with one curve and opens or
# builds its table at start, when the key is opened; ec.comb_table forgets this module
# after that, so its code does not stay in the heap beside the table (about 1.5 KiB on
# a 32-bit board, from .mpy).
#
# Layout of a built table (ec._get reads it): bytearrays of 16 points, each point x
# then y, 32 bytes big-endian each. 1 KiB pieces still fit a fragmented MicroPython
# heap where one 4 KiB block may not. Built in small chunks, so the transient heap
# stays a few KiB. The precomputed tables (comb_p256.py, comb_secp256k1.py, and their
# bytes alone in comb_p256.bin, comb_secp256k1.bin) are this build's output for 8 teeth
# and four tables (tools/device/comb_tables.py); ec._read reads the .bin a point at a
# time.

from .ec import COMB_TABLES, COMB_TEETH, _add_affine, _double, _get, _read, inverse, to_affine

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_PIECE_POINTS = const(16)  # points per 1 KiB piece
_FIELD_BYTES = const(32)
_BUILD_POINTS = const(8)  # points normalised per field inversion
# The precomputed table's file (tools/device/comb_tables.py): 8 teeth, four tables,
# 512 points of 64 bytes, and the SHA-256 of those bytes.
FILE_TEETH = const(8)
FILE_TABLES = const(4)
_FILE_BYTES = const(32768)
_FILE_SHA256 = {
    "p256": b"\xb7\xa9\x30\xee\x53\x75\xc4\xd1\xf5\xdc\x31\xd7\x47\x28\x6f\x1e"
    b"\xa5\xc7\x4a\x3f\xb1\x6f\x4a\xf9\x9a\x78\xcc\x32\x86\x80\x20\xfd",
    "secp256k1": b"\xac\xfe\x67\x1b\xf8\x89\x8b\x1f\x44\x76\x6f\xbf\x54\x01\xc6\xfc"
    b"\xc3\x38\xb0\x41\x89\x45\x8e\x99\xb6\x00\xa2\xff\xb5\xf1\x8c\x7a",
}


def table(curve, folder):
    """ec.comb_table's table where the package runs from files: the precomputed one read
    from its file in folder (open_table), else one built now (6 teeth, two tables)."""
    comb = open_table(curve, folder + "comb_" + curve.name + ".bin")
    if comb is None:
        comb = build(curve, COMB_TEETH, COMB_TABLES), COMB_TEETH, COMB_TABLES, _get
    return comb


def open_table(curve, path):
    """The precomputed comb read from the file at path (table, teeth, tables, ec._read),
    or None: no such file, or one that is not the table. Its size, then the SHA-256 of
    its bytes are checked first (a wrong table would sign with wrong points); a file
    refused is said in one line. Made once and kept: the open file, one buffer for a
    point and views of its x and y, which every lookup uses (ec._read)."""
    import hashlib

    try:
        f = open(path, "rb")  # noqa: SIM115 (open for as long as the table is used)
    except OSError:
        return None
    buf = bytearray(2 * _FIELD_BYTES)
    try:
        if f.seek(0, 2) != _FILE_BYTES:
            raise ValueError("not %d bytes" % _FILE_BYTES)
        f.seek(0)
        h = hashlib.sha256()
        for _ in range(_FILE_BYTES // (2 * _FIELD_BYTES)):
            if f.readinto(buf) != 2 * _FIELD_BYTES:
                raise ValueError("short read")
            h.update(buf)
        if h.digest() != _FILE_SHA256[curve.name]:
            raise ValueError("not the %s table" % curve.name)
    except (OSError, ValueError) as e:
        f.close()
        print("signet: comb table %s refused (%s): building one" % (path, e))
        return None
    view = memoryview(buf)
    return (f, buf, view[:_FIELD_BYTES], view[_FIELD_BYTES:]), FILE_TEETH, FILE_TABLES, _read


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
