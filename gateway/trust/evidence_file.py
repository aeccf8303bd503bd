"""The evidence file (JSON, UTF-8) that provisioning writes and `signet enroll --evidence` reads.

Parsed strictly, because it is input from outside: exactly the documented fields for its
kind (no unknown ones, no duplicates), each of its type, hex as an even number of
lowercase hex digits, base64 as canonical padded base64, DER certificates that parse,
and a size cap. Any violation is ``evidence_malformed`` naming the field. Layout (docs/TRUST.md)::

    common           format: "signet-evidence/1"   kind: one of KINDS
                     curve: "p256"                  public_key: 66 hex (compressed point)
    se-chain         chain: [base64 DER, device certificate first]   proof: hex enroll statement
                     slot: 0..15 (optional, default 0: the key's ATECC608 slot)
    tpm2-certify     tpm_public: hex TPMT_PUBLIC   attest: hex TPMS_ATTEST
                     signature: 128 hex (r||s)     ak_chain: [base64 DER, AK certificate first]
    line-statement   statement: hex line statement
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import warnings
from dataclasses import dataclass
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from .refusals import EvidenceRefused

__all__ = [
    "FORMAT",
    "KINDS",
    "MAX_EVIDENCE_BYTES",
    "EvidenceFile",
    "LineEvidence",
    "SeChainEvidence",
    "TpmEvidence",
    "parse_evidence_file",
]

FORMAT: Final = "signet-evidence/1"
KINDS: Final = ("se-chain", "tpm2-certify", "line-statement")
# A Trust&GO chain is ~1.2 KB of base64, a TPM evidence with a 3-certificate AK chain ~4 KB;
# 64 KiB is generous and keeps a hostile file from costing the gateway anything.
MAX_EVIDENCE_BYTES: Final = 64 * 1024
MAX_CHAIN: Final = 8  # certificates given in one chain
MAX_BLOB: Final = 4096  # bytes of one hex field (TPM structures, statements)

_HEX = re.compile(r"(?:[0-9a-f]{2})*")  # lowercase: one spelling per value, as base64
_COMMON: Final = ("format", "kind", "curve", "public_key")
_FIELDS: Final = {
    "se-chain": (("chain", "proof"), ("slot",)),
    "tpm2-certify": (("tpm_public", "attest", "signature", "ak_chain"), ()),
    "line-statement": (("statement",), ()),
}


@dataclass(frozen=True)
class EvidenceFile:
    kind: str
    curve: str
    public_key: bytes  # 33-byte compressed point the file says it is about


@dataclass(frozen=True)
class SeChainEvidence(EvidenceFile):
    chain: tuple[x509.Certificate, ...]
    proof: bytes
    slot: int


@dataclass(frozen=True)
class TpmEvidence(EvidenceFile):
    tpm_public: bytes
    attest: bytes
    signature: bytes
    ak_chain: tuple[x509.Certificate, ...]


@dataclass(frozen=True)
class LineEvidence(EvidenceFile):
    statement: bytes


def _bad(sentence: str) -> EvidenceRefused:
    return EvidenceRefused("evidence_malformed", sentence)


def parse_evidence_file(raw: bytes) -> EvidenceFile:
    """Parse and type-check an evidence file; raise ``evidence_malformed`` naming the field."""
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise _bad(f"evidence must be bytes, got {type(raw).__name__}")
    raw = bytes(raw)
    if len(raw) > MAX_EVIDENCE_BYTES:
        raise _bad(f"evidence file is {len(raw)} bytes; the limit is {MAX_EVIDENCE_BYTES}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _bad(f"evidence file is not UTF-8 (byte {exc.start})") from None
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise _bad(
            f"evidence file is not valid JSON: {exc.msg} (line {exc.lineno} column {exc.colno})"
        ) from None
    except RecursionError:
        raise _bad("evidence file nests too deeply") from None
    if type(doc) is not dict:
        raise _bad(f"evidence file must be a JSON object, got {_json_type(doc)}")

    fmt = doc.get("format")
    if fmt != FORMAT:
        raise _bad(f"field 'format' must be {FORMAT!r}, got {_show(fmt)}")
    kind = doc.get("kind")
    if kind not in KINDS:
        raise _bad(f"field 'kind' must be one of {', '.join(KINDS)}; got {_show(kind)}")
    required, optional = _FIELDS[kind]
    for name in (*_COMMON, *required):
        if name not in doc:
            raise _bad(f"missing field {name!r} (required for kind {kind!r})")
    unknown = sorted(k for k in doc if k not in (*_COMMON, *required, *optional))
    if unknown:
        raise _bad(f"unknown field(s) {', '.join(map(repr, unknown))} for kind {kind!r}")
    if doc["curve"] != "p256":
        raise _bad(f"field 'curve' must be 'p256', got {_show(doc['curve'])}")
    public_key = _hex(doc, "public_key", exact=33)
    if public_key[0] not in (2, 3):
        raise _bad("field 'public_key' must be a compressed point (starting 02 or 03)")
    common = {"kind": kind, "curve": "p256", "public_key": public_key}

    if kind == "se-chain":
        slot = doc.get("slot", 0)
        if type(slot) is not int or not 0 <= slot <= 15:
            raise _bad(f"field 'slot' must be an integer 0..15, got {_show(slot)}")
        return SeChainEvidence(
            **common, chain=_chain(doc, "chain"), proof=_hex(doc, "proof"), slot=slot
        )
    if kind == "tpm2-certify":
        return TpmEvidence(
            **common,
            tpm_public=_hex(doc, "tpm_public"),
            attest=_hex(doc, "attest"),
            signature=_hex(doc, "signature", exact=64),
            ak_chain=_chain(doc, "ak_chain"),
        )
    return LineEvidence(**common, statement=_hex(doc, "statement"))


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _bad(f"evidence file has the field {key!r} twice")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise _bad(f"evidence file holds {name}, which is not JSON")


def _hex(doc: dict[str, Any], name: str, exact: int | None = None) -> bytes:
    value = doc[name]
    if type(value) is not str:
        raise _bad(f"field {name!r} must be a hex string, got {_json_type(value)}")
    if _HEX.fullmatch(value) is None:
        raise _bad(f"field {name!r} is not an even number of lowercase hex digits")
    data = bytes.fromhex(value)
    if exact is not None and len(data) != exact:
        raise _bad(f"field {name!r} is {len(data)} bytes; it must be {exact}")
    if not data:
        raise _bad(f"field {name!r} is empty")
    if len(data) > MAX_BLOB:
        raise _bad(f"field {name!r} is {len(data)} bytes; the limit is {MAX_BLOB}")
    return data


def _chain(doc: dict[str, Any], name: str) -> tuple[x509.Certificate, ...]:
    value = doc[name]
    if type(value) is not list or not value:
        raise _bad(f"field {name!r} must be a non-empty list of base64 DER certificates")
    if len(value) > MAX_CHAIN:
        raise _bad(f"field {name!r} has {len(value)} certificates; the limit is {MAX_CHAIN}")
    certs = []
    for i, item in enumerate(value):
        where = f"{name}[{i}]"
        if type(item) is not str:
            raise _bad(f"field {where} must be a base64 string, got {_json_type(item)}")
        try:
            der = base64.b64decode(item, validate=True)
        except (binascii.Error, ValueError):
            raise _bad(f"field {where} is not base64") from None
        if base64.b64encode(der).decode("ascii") != item:
            raise _bad(f"field {where} is not canonical base64")
        try:
            certs.append(_load_certificate(der))
        except (ValueError, UnsupportedAlgorithm, x509.InvalidVersion) as exc:
            raise _bad(f"field {where} is not a DER X.509 certificate ({exc})") from None
    return tuple(certs)


def _load_certificate(der: bytes) -> x509.Certificate:
    """Load and decode now what the chain check reads later: cryptography parses fields
    lazily, and a damaged name or key would otherwise surface as a ValueError in the middle
    of the checks."""
    with warnings.catch_warnings():
        # cryptography warns about odd but parseable input (a country name that is not 2
        # letters, a serial that is not positive): judged below or by the checks, not by
        # warnings printed in the middle of `signet enroll`.
        warnings.simplefilter("ignore")
        cert = x509.load_der_x509_certificate(der)
        _ = (cert.subject, cert.issuer, cert.tbs_certificate_bytes, cert.signature)
        _ = (cert.not_valid_before_utc, cert.not_valid_after_utc)
        cert.public_key()
        if cert.serial_number <= 0:
            raise ValueError("its serial number is not positive (RFC 5280 4.1.2.2)")
    return cert


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value[:40])
    return _json_type(value)
