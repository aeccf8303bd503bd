# Record payloads (protocol v1): validated, then encoded as deterministic CBOR.
#
# Every rule here is mirrored by the gateway's payload schema; a record the
# device refuses to build is one the gateway would refuse to count. Refusing
# at the source gives the maker a clear error instead of a silent rejection.

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


VERSION = const(1)
MAX_SAFE_INT = const(9007199254740991)  # 2^53 - 1: exact in JSON/JavaScript too
_MAX_U32 = const(0xFFFFFFFF)
_TOKEN_MAX = const(32)
_TEXT_MAX = const(64)
_UNIT_MAX = const(16)
_HASH_BYTES = const(32)

KINDS = ("boot", "hb", "rev", "meter", "evt")
GENESIS_HASH = bytes(_HASH_BYTES)  # "p" of the first record a key signs


class RecordError(ValueError):
    """A record field is missing, of the wrong type or out of range."""


def _fail(field, why):
    raise RecordError("%s: %s" % (field, why))


def _is_int(value):
    # bool is an int subclass on CPython; True must never pass as 1 unit of money.
    return isinstance(value, int) and not (value is True or value is False)


def _check_uint(field, value, low, high):
    if not _is_int(value):
        _fail(field, "must be an integer, got %s" % type(value).__name__)
    if not low <= value <= high:
        _fail(field, "must be in %d..%d, got %d" % (low, high, value))


def _check_int53(field, value):
    _check_uint(field, value, -MAX_SAFE_INT, MAX_SAFE_INT)


def _check_chars(field, value, max_len, allowed, alphabet):
    if not isinstance(value, str):
        _fail(field, "must be a string, got %s" % type(value).__name__)
    if not 1 <= len(value) <= max_len:
        _fail(field, "must be 1..%d characters, got %d" % (max_len, len(value)))
    for ch in value:
        if not allowed(ch):
            _fail(field, "character %r not allowed (allowed: %s)" % (ch, alphabet))


def _token_char(ch):
    return "a" <= ch <= "z" or "0" <= ch <= "9" or ch in "_.-"


def _printable_ascii(ch):
    return "!" <= ch <= "~"


def _unit_char(ch):
    return "a" <= ch <= "z" or "A" <= ch <= "Z" or "0" <= ch <= "9" or ch in "_/%.^-"


# check_token, check_currency and check_unit are the ONE rule for these values:
# the config loader and the UART line protocol use them too.
def check_token(field, value):
    _check_chars(field, value, _TOKEN_MAX, _token_char, "a-z 0-9 _ . -")


def _check_version(field, value):
    _check_chars(field, value, _TOKEN_MAX, _printable_ascii, "printable ASCII")


def check_unit(field, value):
    _check_chars(field, value, _UNIT_MAX, _unit_char, "A-Z a-z 0-9 _ / % . ^ -")


def check_currency(field, value):
    # A loop, not all() over a generator: that is 160 bytes of heap a sale on a board.
    ok = isinstance(value, str) and len(value) == 3
    if ok:
        for c in value:
            if not "A" <= c <= "Z":
                ok = False
    if not ok:
        _fail(field, "must be a 3-letter ISO 4217 code such as 'EUR', got %r" % (value,))


def check_text(field, value):
    if not isinstance(value, str):
        _fail(field, "must be a string, got %s" % type(value).__name__)
    size = len(value.encode())
    if not 1 <= size <= _TEXT_MAX:
        _fail(field, "must be 1..%d bytes of UTF-8, got %d" % (_TEXT_MAX, size))


def _check_interval(field, value):
    _check_uint(field, value, 1, _MAX_U32)


def _check_seq(field, value):
    _check_uint(field, value, 0, MAX_SAFE_INT)


# kind -> ((field, validator, required), ...)
_FIELDS = {
    "boot": (("rc", check_token, True), ("fw", _check_version, True), ("ls", _check_seq, True)),
    "hb": (("iv", _check_interval, True), ("st", check_token, True)),
    "rev": (
        ("am", _check_int53, True),
        ("cur", check_currency, True),
        ("src", check_token, True),
        ("ref", check_text, False),
    ),
    "meter": (("q", _check_int53, True), ("unit", check_unit, True), ("src", check_token, False)),
    "evt": (("ev", check_token, True), ("msg", check_text, False)),
}


def validate_fields(kind, fields):
    """Check a kind and its fields (no header): what a caller can get wrong."""
    spec = _FIELDS.get(kind)
    if spec is None:
        _fail("k", "unknown kind %r (expected one of %s)" % (kind, ", ".join(KINDS)))
    known = 0
    for name, check, required in spec:
        if name in fields:
            try:
                check(name, fields[name])
            except RecordError as e:
                # The "kind.field" label is made only on failure: not one string
                # per field of every record signed.
                raise RecordError("%s.%s" % (kind, e)) from None
            known += 1
        elif required:
            _fail("%s.%s" % (kind, name), "is required")
    if known != len(fields):
        allowed = [name for name, _, _ in spec]
        for name in fields:
            if name not in allowed:
                _fail("%s.%s" % (kind, name), "unknown field (allowed: %s)" % ", ".join(allowed))


def _check_header(n, b, u, t, prev):
    _check_uint("n", n, 1, MAX_SAFE_INT)
    _check_uint("b", b, 0, _MAX_U32)
    _check_uint("u", u, 0, MAX_SAFE_INT)
    if t is not None:
        _check_uint("t", t, 0, MAX_SAFE_INT)
    if not isinstance(prev, (bytes, bytearray)) or len(prev) != _HASH_BYTES:
        _fail("p", "must be the 32-byte SHA-256 of the previous payload")


# Every field name of every kind but meter's "q", in deterministic CBOR key order
# (shorter first, then bytewise): encode_payload writes the map in this order, so
# signing a record builds no dict and sorts nothing. "q" goes between "p" and "t".
_FIELD_ORDER = ("am", "ev", "fw", "iv", "ls", "rc", "st", "cur", "msg", "ref", "src", "unit")


def encode_payload(enc, kind, n, b, u, t, prev, fields):
    """Validated, deterministic CBOR payload bytes. enc is a reusable cbor.Encoder.

    The same bytes as enc.value() of the payload map, written key by key: the header's
    one-letter keys first (b k n p [q] t u v), then the kind's fields in _FIELD_ORDER.
    """
    validate_fields(kind, fields)
    _check_header(n, b, u, t, prev)
    enc.reset()
    enc.map(7 + len(fields))
    enc.raw(b"\x61b")
    enc.int_(b)
    enc.raw(b"\x61k")
    enc.text(kind)
    enc.raw(b"\x61n")
    enc.int_(n)
    enc.raw(b"\x61p")
    enc.bytes_(prev)
    if "q" in fields:
        enc.raw(b"\x61q")
        enc.int_(fields["q"])
    enc.raw(b"\x61t")
    if t is None:
        enc.null()
    else:
        enc.int_(t)
    enc.raw(b"\x61u")
    enc.int_(u)
    enc.raw(b"\x61v")
    enc.int_(VERSION)
    for name in _FIELD_ORDER:
        if name in fields:
            enc.text(name)
            enc.value(fields[name])
    return enc.getvalue()
