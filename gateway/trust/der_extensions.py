"""A certificate's extensions read from its DER by hand: the few this verifier needs.

Why not ``Certificate.extensions``: cryptography parses all extensions at once and
strictly, and a genuine Microchip Trust&GO (TNGTLS) device certificate does not pass:
its subjectAltName is a directoryName whose serialNumber "eui48_..." is encoded as a
PrintableString, where '_' is not allowed (X.680). cryptography then refuses every
extension of the certificate. Signet never uses the SAN, so this module walks the
TBSCertificate (RFC 5280 4.1) to list the extensions (OID, critical, value) and decodes
only basicConstraints and keyUsage; the other extensions are checked for criticality.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = [
    "BASIC_CONSTRAINTS",
    "KEY_USAGE",
    "BasicConstraints",
    "DerError",
    "Extension",
    "KeyUsage",
    "basic_constraints",
    "key_usage",
    "read_extensions",
]

BASIC_CONSTRAINTS: Final = "2.5.29.19"
KEY_USAGE: Final = "2.5.29.15"

_SEQUENCE: Final = 0x30
_BOOLEAN: Final = 0x01
_INTEGER: Final = 0x02
_BIT_STRING: Final = 0x03
_OCTET_STRING: Final = 0x04
_OID: Final = 0x06
_EXTENSIONS: Final = 0xA3  # [3] EXPLICIT, constructed


class DerError(ValueError):
    """The DER does not have the structure RFC 5280 gives it."""


@dataclass(frozen=True)
class Extension:
    oid: str
    critical: bool
    value: bytes  # the extnValue OCTET STRING's contents (the extension's own DER)


@dataclass(frozen=True)
class BasicConstraints:
    ca: bool
    path_length: int | None


@dataclass(frozen=True)
class KeyUsage:
    digital_signature: bool
    key_cert_sign: bool


def _read(data: bytes, pos: int) -> tuple[int, bytes, int]:
    """One TLV at ``pos``: (tag, contents, position after it). Definite lengths only."""
    if pos + 2 > len(data):
        raise DerError(f"truncated at offset {pos}")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise DerError(f"multi-byte tag at offset {pos}")
    first = data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise DerError(f"bad length at offset {pos - 1}")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + length > len(data):
        raise DerError(f"contents run past the end at offset {pos}")
    return tag, data[pos : pos + length], pos + length


def _items(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    pos = 0
    while pos < len(data):
        tag, contents, pos = _read(data, pos)
        out.append((tag, contents))
    return out


def _oid(contents: bytes) -> str:
    if not contents or contents[-1] & 0x80:
        raise DerError("bad object identifier")
    arcs: list[int] = []
    value = 0
    for byte in contents:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in (first, arcs[0] - 40 * first, *arcs[1:]))


def read_extensions(tbs: bytes) -> list[Extension]:
    """The extensions of a TBSCertificate (``Certificate.tbs_certificate_bytes``)."""
    tag, body, end = _read(tbs, 0)
    if tag != _SEQUENCE or end != len(tbs):
        raise DerError("TBSCertificate is not one SEQUENCE")
    found = [contents for tag, contents in _items(body) if tag == _EXTENSIONS]
    if not found:
        return []
    if len(found) > 1:
        raise DerError("more than one extensions field")
    (seq_tag, seq), *rest = _items(found[0])
    if seq_tag != _SEQUENCE or rest:
        raise DerError("extensions is not a SEQUENCE")
    extensions = []
    seen: set[str] = set()
    for tag, ext in _items(seq):
        parts = _items(ext) if tag == _SEQUENCE else []
        if not 2 <= len(parts) <= 3 or parts[0][0] != _OID or parts[-1][0] != _OCTET_STRING:
            raise DerError("an extension is not SEQUENCE { OID, [BOOLEAN], OCTET STRING }")
        critical = False
        if len(parts) == 3:
            if parts[1][0] != _BOOLEAN or parts[1][1] not in (b"\xff", b"\x00"):
                raise DerError("an extension's critical flag is not a DER BOOLEAN")
            critical = parts[1][1] == b"\xff"
        oid = _oid(parts[0][1])
        if oid in seen:
            raise DerError(f"extension {oid} appears twice")
        seen.add(oid)
        extensions.append(Extension(oid, critical, parts[-1][1]))
    return extensions


def basic_constraints(value: bytes) -> BasicConstraints:
    """BasicConstraints ::= SEQUENCE { cA BOOLEAN DEFAULT FALSE, pathLen INTEGER OPTIONAL }."""
    tag, body, end = _read(value, 0)
    if tag != _SEQUENCE or end != len(value):
        raise DerError("basicConstraints is not a SEQUENCE")
    ca, path_length = False, None
    for tag, contents in _items(body):
        if tag == _BOOLEAN and contents in (b"\xff", b"\x00") and path_length is None:
            ca = contents == b"\xff"
        elif tag == _INTEGER and contents and not contents[0] & 0x80 and path_length is None:
            path_length = int.from_bytes(contents, "big")
        else:
            raise DerError("basicConstraints holds something else than cA and pathLenConstraint")
    return BasicConstraints(ca, path_length)


def key_usage(value: bytes) -> KeyUsage:
    """KeyUsage ::= BIT STRING; bit 0 digitalSignature, bit 5 keyCertSign (RFC 5280 4.2.1.3)."""
    tag, body, end = _read(value, 0)
    if tag != _BIT_STRING or end != len(value) or not body or body[0] > 7:
        raise DerError("keyUsage is not a BIT STRING")
    bits = body[1:]

    def bit(n: int) -> bool:
        return len(bits) > n // 8 and bool(bits[n // 8] & (0x80 >> (n % 8)))

    return KeyUsage(digital_signature=bit(0), key_cert_sign=bit(5))
