"""TPMT_PUBLIC and TPMS_ATTEST, unmarshalled by hand (TPM 2.0 Library, Part 2: Structures).

Big-endian throughout; every size field is checked against the bytes left, and bytes
after the structure are refused. A structure that does not parse is ``tpm_attributes``
(the key's public area) or ``attest_invalid`` (the attestation); what it says is checked
by :func:`check_signing_key` and :func:`check_certify`.

    TPMT_PUBLIC (12.2.4)   type u16 | nameAlg u16 | objectAttributes u32 |
                           authPolicy TPM2B_DIGEST | parameters TPMU_PUBLIC_PARMS |
                           unique TPMU_PUBLIC_ID
      for ECC:  TPMS_ECC_PARMS (12.2.3.6) = symmetric TPMT_SYM_DEF_OBJECT |
                scheme TPMT_ECC_SCHEME | curveID u16 | kdf TPMT_KDF_SCHEME;
                unique = TPMS_ECC_POINT (11.2.5.2) = x TPM2B | y TPM2B
    TPMS_ATTEST (10.12.12) magic u32 | type u16 | qualifiedSigner TPM2B_NAME |
                           extraData TPM2B_DATA | clockInfo (u64 u32 u32 u8) |
                           firmwareVersion u64 | attested TPMU_ATTEST
      for TPM_ST_ATTEST_CERTIFY: TPMS_CERTIFY_INFO (10.12.3) = name TPM2B_NAME |
                qualifiedName TPM2B_NAME
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Final

from .refusals import EvidenceRefused

__all__ = [
    "TpmAttest",
    "TpmPublic",
    "check_certify",
    "check_signing_key",
    "parse_tpms_attest",
    "parse_tpmt_public",
    "tpm_name",
]

TPM_ALG_ECC: Final = 0x0023
TPM_ALG_SHA256: Final = 0x000B
TPM_ALG_NULL: Final = 0x0010
TPM_ALG_ECDSA: Final = 0x0018
TPM_ALG_ECDAA: Final = 0x001A
TPM_ECC_NIST_P256: Final = 0x0003
TPM_GENERATED_VALUE: Final = 0xFF544347
TPM_ST_ATTEST_CERTIFY: Final = 0x8017

# TPMA_OBJECT bits (Part 2, 8.3.2).
FIXED_TPM: Final = 1 << 1
FIXED_PARENT: Final = 1 << 4
SENSITIVE_DATA_ORIGIN: Final = 1 << 5
RESTRICTED: Final = 1 << 16
DECRYPT: Final = 1 << 17
SIGN: Final = 1 << 18
_MUST_SET: Final = (
    (FIXED_TPM, "fixedTPM"),
    (FIXED_PARENT, "fixedParent"),
    (SENSITIVE_DATA_ORIGIN, "sensitiveDataOrigin"),
    (SIGN, "sign"),
)
_MUST_CLEAR: Final = ((DECRYPT, "decrypt"), (RESTRICTED, "restricted"))


class _Short(Exception):
    pass


class _Reader:
    """Big-endian reads that never run past the end (raise _Short naming the field)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, count: int, field: str) -> bytes:
        if self.pos + count > len(self.data):
            raise _Short(
                f"{field} needs {count} bytes at offset {self.pos}, "
                f"{len(self.data) - self.pos} left"
            )
        out = self.data[self.pos : self.pos + count]
        self.pos += count
        return out

    def u8(self, field: str) -> int:
        return self.take(1, field)[0]

    def u16(self, field: str) -> int:
        return int(struct.unpack(">H", self.take(2, field))[0])

    def u32(self, field: str) -> int:
        return int(struct.unpack(">I", self.take(4, field))[0])

    def u64(self, field: str) -> int:
        return int(struct.unpack(">Q", self.take(8, field))[0])

    def tpm2b(self, field: str, limit: int) -> bytes:
        size = self.u16(f"{field}.size")
        if size > limit:
            raise _Short(f"{field}.size = {size} is more than the {limit} bytes it can hold")
        return self.take(size, field)

    def end(self, what: str) -> None:
        if self.pos != len(self.data):
            extra = len(self.data) - self.pos
            raise _Short(f"{extra} trailing byte(s) after the {what}, at offset {self.pos}")


@dataclass(frozen=True)
class TpmPublic:
    raw: bytes
    type: int
    name_alg: int
    attributes: int
    auth_policy: bytes
    curve: int
    x: bytes
    y: bytes


@dataclass(frozen=True)
class TpmAttest:
    magic: int
    type: int
    qualified_signer: bytes
    extra_data: bytes
    firmware_version: int
    certified_name: bytes
    certified_qualified_name: bytes


def _refuse_public(problem: str) -> EvidenceRefused:
    return EvidenceRefused("tpm_attributes", f"tpm_public is not a TPMT_PUBLIC: {problem}")


def parse_tpmt_public(data: bytes) -> TpmPublic:
    """Unmarshal an ECC TPMT_PUBLIC; a non-ECC type or a bad layout is ``tpm_attributes``."""
    r = _Reader(data)
    try:
        alg_type = r.u16("type")
        if alg_type != TPM_ALG_ECC:
            raise EvidenceRefused(
                "tpm_attributes", f"the TPM key's type is 0x{alg_type:04x}, not ECC (0x0023)"
            )
        name_alg = r.u16("nameAlg")
        attributes = r.u32("objectAttributes")
        auth_policy = r.tpm2b("authPolicy", 64)
        symmetric = r.u16("parameters.symmetric.algorithm")
        if symmetric != TPM_ALG_NULL:
            r.u16("parameters.symmetric.keyBits")
            r.u16("parameters.symmetric.mode")
        scheme = r.u16("parameters.scheme.scheme")
        if scheme != TPM_ALG_NULL:
            r.u16("parameters.scheme.details.hashAlg")
            if scheme == TPM_ALG_ECDAA:
                r.u16("parameters.scheme.details.count")
        curve = r.u16("parameters.curveID")
        kdf = r.u16("parameters.kdf.scheme")
        if kdf != TPM_ALG_NULL:
            r.u16("parameters.kdf.details.hashAlg")
        x = r.tpm2b("unique.x", 128)
        y = r.tpm2b("unique.y", 128)
        r.end("TPMT_PUBLIC")
    except _Short as short:
        raise _refuse_public(str(short)) from None
    return TpmPublic(bytes(data), alg_type, name_alg, attributes, auth_policy, curve, x, y)


def tpm_name(public: TpmPublic) -> bytes:
    """The object's Name: nameAlg (SHA-256) || SHA-256(marshalled TPMT_PUBLIC) (Part 1, 16)."""
    return struct.pack(">H", TPM_ALG_SHA256) + hashlib.sha256(public.raw).digest()


def check_signing_key(public: TpmPublic) -> bytes:
    """The key must be a non-exportable P-256 signing key; returns its 65-byte SEC1 point."""
    if public.name_alg != TPM_ALG_SHA256:
        raise EvidenceRefused(
            "tpm_attributes",
            f"the TPM key's nameAlg is 0x{public.name_alg:04x}, not SHA-256 (0x000b)",
        )
    for bit, name in _MUST_SET:
        if not public.attributes & bit:
            raise EvidenceRefused(
                "tpm_attributes",
                f"the TPM key's attributes (0x{public.attributes:08x}) lack {name}",
            )
    for bit, name in _MUST_CLEAR:
        if public.attributes & bit:
            raise EvidenceRefused(
                "tpm_attributes",
                f"the TPM key's attributes (0x{public.attributes:08x}) set {name}; a device "
                "signing key must not",
            )
    if public.curve != TPM_ECC_NIST_P256:
        raise EvidenceRefused(
            "tpm_attributes",
            f"the TPM key's curve is 0x{public.curve:04x}, not NIST P-256 (0x0003)",
        )
    if len(public.x) > 32 or len(public.y) > 32:
        raise EvidenceRefused(
            "tpm_attributes", "the TPM key's point is longer than P-256's 32 bytes"
        )
    # TPM2B coordinates may drop leading zero bytes; SEC1 needs them back.
    return b"\x04" + public.x.rjust(32, b"\x00") + public.y.rjust(32, b"\x00")


def _refuse_attest(problem: str) -> EvidenceRefused:
    return EvidenceRefused("attest_invalid", f"attest is not a TPMS_ATTEST: {problem}")


def parse_tpms_attest(data: bytes) -> TpmAttest:
    """Unmarshal a TPMS_ATTEST of type certify; a bad layout or other type is ``attest_invalid``."""
    r = _Reader(data)
    try:
        magic = r.u32("magic")
        if magic != TPM_GENERATED_VALUE:
            hint = ""
            if len(data) >= 6 and int.from_bytes(data[:2], "big") == len(data) - 2:
                hint = " (it looks like a TPM2B_ATTEST: give the TPMS_ATTEST without its size)"
            raise EvidenceRefused(
                "attest_invalid",
                f"the attestation's magic is 0x{magic:08x}, not TPM_GENERATED_VALUE "
                f"(0xff544347): not produced by a TPM{hint}",
            )
        st = r.u16("type")
        if st != TPM_ST_ATTEST_CERTIFY:
            raise EvidenceRefused(
                "attest_invalid",
                f"the attestation's type is 0x{st:04x}, not TPM_ST_ATTEST_CERTIFY (0x8017)",
            )
        qualified_signer = r.tpm2b("qualifiedSigner", 68)
        extra_data = r.tpm2b("extraData", 64)
        r.u64("clockInfo.clock")
        r.u32("clockInfo.resetCount")
        r.u32("clockInfo.restartCount")
        r.u8("clockInfo.safe")
        firmware = r.u64("firmwareVersion")
        name = r.tpm2b("attested.name", 68)
        qualified_name = r.tpm2b("attested.qualifiedName", 68)
        r.end("TPMS_ATTEST")
    except _Short as short:
        raise _refuse_attest(str(short)) from None
    return TpmAttest(magic, st, qualified_signer, extra_data, firmware, name, qualified_name)


def check_certify(attest: TpmAttest, public: TpmPublic) -> None:
    """The attestation certifies exactly this public area (its Name)."""
    expected = tpm_name(public)
    if attest.certified_name != expected:
        raise EvidenceRefused(
            "attest_invalid",
            f"the attestation certifies the object named {attest.certified_name.hex()}, not the "
            f"enrolled key's public area (name {expected.hex()})",
        )
