# The comb tables of k*G: the precomputed table read from its file (a board installed
# from files), the comb built at start and, on CPython, the imported table give the same
# points and the same signatures; a missing or damaged file leaves the comb built.
# Runs under CPython (pytest) and the MicroPython unix port (mprun.py, 64 KiB heap).

import hashlib
import os

from signet import comb, ec, ecdsa

CURVES = ("p256", "secp256k1")
_KEY = 0xC9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721
_FILE_BYTES = 32768  # 512 points of 64 bytes
_PRECOMPUTED = ec._PRECOMPUTED
# Where the package's modules are, and the tables' files with them (as installed).
_FOLDER = ec.__file__[: ec.__file__.rfind("/") + 1]
_paths = []
_dirs = []


def teardown_function(function=None):
    ec.release_table()
    ec._PRECOMPUTED = _PRECOMPUTED
    while _paths:
        os.remove(_paths.pop())
    while _dirs:
        os.rmdir(_dirs.pop())


def _table_path(name):
    return _FOLDER + "comb_" + name + ".bin"


def _built(curve):
    # The comb a board builds at start without the table's file.
    return comb.build(curve, ec.COMB_TEETH, ec.COMB_TABLES), ec.COMB_TEETH, ec.COMB_TABLES, ec._get


def _folder():
    base = os.getenv("TMPDIR") or "/tmp"
    path = "%s/signet-comb-%s/" % (base.rstrip("/"), "".join("%02x" % b for b in os.urandom(6)))
    os.mkdir(path)
    _dirs.append(path)
    return path


def _scalars(n):
    out = [1, 2, 3, n - 1, n - 2, (1 << 255) % n, int("5" * 64, 16) % n]
    for i in range(6):
        out.append((0x9E3779B97F4A7C15 * (i + 1)) ** 4 % n)
    return out


def _points(curve, comb):
    ec.release_table(curve)
    curve._comb = comb
    return [ec.public_point(curve, k) for k in _scalars(curve.n)]


def _signatures(curve, comb):
    ec.release_table(curve)
    curve._comb = comb
    return [
        ecdsa.sign_digest(curve, _KEY, hashlib.sha256(b"record %d" % i).digest()) for i in range(3)
    ]


def _copy(src, size, flip=-1, name="comb_p256.bin"):
    # The first `size` bytes of the file at src in a new folder's file `name`, byte
    # `flip` inverted.
    dest = _folder() + name
    _paths.append(dest)
    done = 0
    with open(src, "rb") as f, open(dest, "wb") as g:
        while done < size:
            chunk = bytearray(f.read(min(1024, size - done)))
            if done <= flip < done + len(chunk):
                chunk[flip - done] ^= 0xFF
            g.write(chunk)
            done += len(chunk)
    return dest


def _without_the_imported_table():
    # As on a board that runs the package from files: the comb comes from the table's
    # file beside the modules or from the build.
    ec._PRECOMPUTED = False


def test_the_table_file_gives_the_points_of_the_built_comb():
    for name in CURVES:
        curve = ec.curve_by_name(name)
        read = comb.open_table(curve, _table_path(name))
        assert read is not None and read[1:] == (8, 4, ec._read)
        from_file = _points(curve, read)
        assert from_file == _points(curve, _built(curve))
        assert from_file[0] == (curve.gx, curve.gy)


def test_the_table_file_signs_as_the_built_comb():
    for name in CURVES:
        curve = ec.curve_by_name(name)
        from_file = _signatures(curve, comb.open_table(curve, _table_path(name)))
        assert from_file == _signatures(curve, _built(curve))


def test_from_files_the_comb_is_the_table_file():
    for name in CURVES:
        curve = ec.curve_by_name(name)
        ec.release_table(curve)
        if ec._PRECOMPUTED:  # CPython or frozen: the table imported, the same points
            assert ec.comb_table(curve)[1:] == (8, 4, ec._get)
            imported = _points(curve, ec.comb_table(curve))
            assert imported == _points(curve, comb.open_table(curve, _table_path(name)))
            ec.release_table(curve)
        _without_the_imported_table()
        assert ec.comb_table(curve)[1:] == (8, 4, ec._read)
        ec._PRECOMPUTED = _PRECOMPUTED


def test_without_the_file_the_comb_is_built():
    for name in CURVES:
        curve = ec.curve_by_name(name)
        built = comb.table(curve, _folder())  # a folder without the table's file
        assert built[1:] == (6, 2, ec._get)
        assert _points(curve, built) == _points(curve, comb.open_table(curve, _table_path(name)))


def test_a_truncated_table_file_is_refused_and_the_comb_built():
    curve = ec.curve_by_name("p256")
    for size in (0, 64, _FILE_BYTES - 64, _FILE_BYTES - 1):
        short = _copy(_table_path("p256"), size)
        assert comb.open_table(curve, short) is None
        ec.release_table(curve)
        curve._comb = comb.table(curve, short[: -len("comb_p256.bin")])
        assert curve._comb[1:] == (6, 2, ec._get)
        assert ec.public_point(curve, 1) == (curve.gx, curve.gy)


def test_a_damaged_table_file_is_refused():
    curve = ec.curve_by_name("p256")
    # a point's byte anywhere, the first point's (G) included; the size is right
    for flip in (0, 40, 64 * 100 + 7, _FILE_BYTES - 1):
        assert comb.open_table(curve, _copy(_table_path("p256"), _FILE_BYTES, flip)) is None
    whole = comb.open_table(curve, _copy(_table_path("p256"), _FILE_BYTES))
    assert whole is not None
    whole[0][0].close()


def test_the_other_curves_table_is_refused():
    p256 = ec.curve_by_name("p256")
    k1 = ec.curve_by_name("secp256k1")
    assert comb.open_table(p256, _table_path("secp256k1")) is None
    assert comb.open_table(k1, _table_path("p256")) is None
    # under the right name too
    assert comb.table(p256, _copy(_table_path("secp256k1"), _FILE_BYTES)[:-13])[1] == 6
