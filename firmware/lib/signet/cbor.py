# Deterministic CBOR encoder (RFC 8949 section 4.2.1), only what records need.
#
# Integers and lengths take their shortest form, lengths are always definite,
# and map keys are sorted by their encoded bytes, so one value has exactly one
# encoding. Output goes into a buffer allocated once per Encoder and reused.

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_UINT = const(0)
_NINT = const(1)
_BSTR = const(2)
_TSTR = const(3)
_ARRAY = const(4)
_MAP = const(5)
_MAX_UINT = const(0xFFFFFFFFFFFFFFFF)


class Encoder:
    def __init__(self, capacity=1024, buf=None):
        # buf: a buffer of at least capacity bytes shared with another user (the
        # recorder's scratch buffer, also the journal's frame buffer).
        self.buf = bytearray(capacity) if buf is None else buf
        self.cap = capacity
        self.pos = 0

    def reset(self):
        self.pos = 0

    def _reserve(self, n):
        end = self.pos + n
        if end > self.cap:
            raise ValueError("CBOR output exceeds %d bytes" % self.cap)
        start = self.pos
        self.pos = end
        return start

    def head(self, major, value):
        """Major type + argument in its shortest form."""
        mt = major << 5
        buf = self.buf
        if value < 24:
            buf[self._reserve(1)] = mt | value
        elif value < 0x100:
            i = self._reserve(2)
            buf[i] = mt | 24
            buf[i + 1] = value
        elif value < 0x10000:
            i = self._reserve(3)
            buf[i] = mt | 25
            buf[i + 1 : i + 3] = value.to_bytes(2, "big")
        elif value < 0x100000000:
            i = self._reserve(5)
            buf[i] = mt | 26
            buf[i + 1 : i + 5] = value.to_bytes(4, "big")
        elif value <= _MAX_UINT:
            i = self._reserve(9)
            buf[i] = mt | 27
            buf[i + 1 : i + 9] = value.to_bytes(8, "big")
        else:
            raise ValueError("integer does not fit CBOR's 64-bit argument")

    def raw(self, data):
        i = self._reserve(len(data))
        self.buf[i : i + len(data)] = data

    def int_(self, value):
        if value >= 0:
            self.head(_UINT, value)
        else:
            self.head(_NINT, -1 - value)

    def bytes_(self, data):
        self.head(_BSTR, len(data))
        self.raw(data)

    def text(self, s):
        data = s.encode()
        self.head(_TSTR, len(data))
        self.raw(data)

    def array(self, count):
        self.head(_ARRAY, count)

    def map(self, count):
        self.head(_MAP, count)

    def null(self):
        self.buf[self._reserve(1)] = 0xF6

    def bool_(self, value):
        self.buf[self._reserve(1)] = 0xF5 if value else 0xF4

    def value(self, obj):
        """Encode None, bool, int, bytes, str, list/tuple or dict (recursively)."""
        if obj is None:
            self.null()
        elif obj is True or obj is False:
            self.bool_(obj)
        elif isinstance(obj, int):
            self.int_(obj)
        elif isinstance(obj, (bytes, bytearray)):
            self.bytes_(obj)
        elif isinstance(obj, str):
            self.text(obj)
        elif isinstance(obj, (list, tuple)):
            self.array(len(obj))
            for item in obj:
                self.value(item)
        elif isinstance(obj, dict):
            self.map(len(obj))
            for key in sorted(obj, key=_key_order):
                self.value(key)
                self.value(obj[key])
        else:
            raise TypeError("cannot encode %s as CBOR" % type(obj).__name__)

    def getvalue(self):
        # Through a memoryview: a bytearray slice would be one more copy.
        return bytes(memoryview(self.buf)[: self.pos])


def _key_order(key):
    # Bytewise order of the encoded key. For the keys records use (text, or
    # small non-negative ints) that is: major type, then length, then bytes.
    if isinstance(key, str):
        data = key.encode()
        return (_TSTR, len(data), data)
    if isinstance(key, int) and not (key is True or key is False) and 0 <= key < 24:
        return (_UINT, 0, bytes((key,)))
    raise TypeError("map keys must be text or small unsigned ints, got %r" % (key,))


def dumps(obj, capacity=1024):
    enc = Encoder(capacity)
    enc.value(obj)
    return enc.getvalue()
