# COSE_Sign1 (RFC 9052) for Signet records: tag 18, protected {1: alg},
# unprotected {4: kid}, payload embedded, signature r || s.

import hashlib

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


ALG_ES256 = const(-7)  # ECDSA P-256 with SHA-256
ALG_ES256K = const(-47)  # ECDSA secp256k1 with SHA-256 (RFC 8812)
KID_BYTES = const(16)
SIGNATURE_BYTES = const(64)
MAX_RECORD_BYTES = const(1024)

# Protected header bstr contents, in deterministic CBOR: {1: -7} and {1: -47}.
_PROTECTED = {ALG_ES256: b"\xa1\x01\x26", ALG_ES256K: b"\xa1\x01\x38\x2e"}
# CBOR of the array head and the "Signature1" context string of Sig_structure.
_SIG_STRUCTURE_HEAD = b"\x84\x6aSignature1"
# Group orders (SEC 2), for low-S only: kept here rather than taken from ec.py so a
# device whose key is in a secure element never loads the curve arithmetic.
_ORDER = {
    ALG_ES256: 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    ALG_ES256K: 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141,
}


def protected_header(alg):
    try:
        return _PROTECTED[alg]
    except KeyError:
        raise ValueError("unsupported COSE alg %r (expected -7 or -47)" % (alg,)) from None


def kid_for(compressed_public_key):
    """Key id: first 16 bytes of SHA-256 over the 33-byte compressed SEC1 key."""
    if len(compressed_public_key) != 33 or compressed_public_key[0] not in (2, 3):
        raise ValueError("kid needs a 33-byte compressed SEC1 public key")
    return hashlib.sha256(compressed_public_key).digest()[:KID_BYTES]


def _bstr_head(length):
    if length < 24:
        return bytes((0x40 | length,))
    if length < 0x100:
        return bytes((0x58, length))
    return bytes((0x59, length >> 8, length & 0xFF))


def to_be_signed_digest(alg, payload):
    """SHA-256 of Sig_structure ["Signature1", protected, h'', payload].

    Hashed piece by piece so the payload is never copied.
    """
    protected = protected_header(alg)
    h = hashlib.sha256(_SIG_STRUCTURE_HEAD)
    h.update(_bstr_head(len(protected)))
    h.update(protected)
    h.update(b"\x40")
    h.update(_bstr_head(len(payload)))
    h.update(payload)
    return h.digest()


def _low_s(alg, signature):
    # Verifiers refuse s > n/2. Software signing already normalises, but a
    # secure element may not, so every signer's output is normalised here.
    if len(signature) != SIGNATURE_BYTES:
        raise ValueError("signer returned %d bytes, expected r || s" % len(signature))
    n = _ORDER[alg]
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    if not (0 < r < n and 0 < s < n):
        raise ValueError("signer returned r or s out of range")
    if s > n >> 1:
        return signature[:32] + (n - s).to_bytes(32, "big")
    return signature


def sign1(signer, payload, enc):
    """Sign payload bytes; returns the tagged COSE_Sign1 bytes.

    signer provides .alg, .kid and .sign_digest(digest32) -> 64-byte r || s
    (software key or secure element alike). enc is a reusable cbor.Encoder.
    """
    signature = _low_s(signer.alg, signer.sign_digest(to_be_signed_digest(signer.alg, payload)))
    protected = protected_header(signer.alg)
    enc.reset()
    enc.raw(b"\xd2\x84")  # tag 18, array of 4
    enc.bytes_(protected)
    enc.raw(b"\xa1\x04\x50")  # {4: bstr .size 16}
    enc.raw(signer.kid)
    enc.bytes_(payload)
    enc.bytes_(signature)
    if enc.pos > MAX_RECORD_BYTES:
        raise ValueError("signed record is %d bytes, limit is %d" % (enc.pos, MAX_RECORD_BYTES))
    return enc.getvalue()


def payload_of(record):
    """The payload bytes inside a firmware-built COSE_Sign1 (a memoryview, no copy).

    Slices by the fixed v1 layout (docs/PROTOCOL.md section 2.5): the journal
    uses it to recover the chain hash of its newest record without a CBOR
    decoder. Anything that does not match the layout exactly is refused.
    """
    size = len(record)
    if size < 9 or record[0] != 0xD2 or record[1] != 0x84:
        raise ValueError("not a tagged COSE_Sign1 array")
    prot = record[2] & 0x1F
    if record[2] & 0xE0 != 0x40 or bytes(record[3 : 3 + prot]) not in _PROTECTED.values():
        raise ValueError("unexpected protected header")
    at = 3 + prot
    if size < at + 23 + SIGNATURE_BYTES:
        raise ValueError("record too short for the fixed layout")
    if bytes(record[at : at + 3]) != b"\xa1\x04\x50" or record[at + 19] != 0x58:
        raise ValueError("unexpected unprotected header or payload head")
    start = at + 21
    end = start + record[at + 20]
    if end + 2 + SIGNATURE_BYTES != size or record[end] != 0x58 or record[end + 1] != 0x40:
        raise ValueError("record length does not match its fixed layout")
    return memoryview(record)[start:end]
