"""Enrollment evidence crafted for tests, from docs/TRUST.md alone (``cryptography`` + ``cbor2``).

Builds what provisioning would write, with every part replaceable so a test can break
exactly one thing: a Trust&GO-shaped certificate chain (root -> signer -> device, P-256,
the extensions and quirks of Microchip's TNGTLS templates), an ATECC608 config zone, the
"enroll" / "line" / "rotate" statements (COSE_Sign1 through kit.independent_signer), a
TPM2_Certify attestation marshalled by hand from the TPM 2.0 Part 2 layout and signed by
an AK whose certificate chains to a test root, and the JSON evidence file around them.
It shares no code with the gateway's verifier or the firmware.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import struct
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from kit.independent_signer import SignerKey, make_key, make_record

UTC = dt.UTC
NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
NO_EXPIRY = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)  # RFC 5280 4.1.2.5
MICROCHIP = "Microchip Technology Inc"
SERIAL = bytes.fromhex("0123a1b2c3d4e5f601")  # 9-byte ATECC608 serial (SN[0:2] = 01 23)
CHALLENGE = hashlib.sha256(b"the gateway's challenge").digest()


def ec_key(seed: int) -> ec.EllipticCurvePrivateKey:
    return make_key("p256", seed).private


def name(cn: str, org: str = MICROCHIP) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _usage(sign: bool, agree: bool, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(sign, False, False, False, agree, cert_sign, cert_sign, False, False)


@dataclass
class CertSpec:
    """One certificate to issue; the defaults are the TNGTLS shape for its role."""

    subject: x509.Name
    key: Any  # the subject's private key (EC or RSA)
    not_before: dt.datetime = dt.datetime(2018, 11, 8, 4, tzinfo=UTC)
    not_after: dt.datetime = NO_EXPIRY
    ca: bool = False
    path_length: int | None = None
    basic_constraints: bool = True
    key_usage: x509.KeyUsage | None = None
    san: x509.SubjectAlternativeName | None = None
    serial: int = 0x55CE2E8FF61C6250B7E1680354141C94  # 16 bytes, as Microchip's
    extra: list[tuple[x509.ExtensionType, bool]] = field(default_factory=list)
    hash_alg: hashes.HashAlgorithm = field(default_factory=hashes.SHA256)


def issue(
    spec: CertSpec, issuer: x509.Name | None = None, issuer_key: Any = None
) -> x509.Certificate:
    """Sign ``spec`` with ``issuer_key`` (itself when None: a self-signed root)."""
    issuer_key = issuer_key if issuer_key is not None else spec.key
    builder = (
        x509.CertificateBuilder()
        .subject_name(spec.subject)
        .issuer_name(issuer if issuer is not None else spec.subject)
        .public_key(spec.key.public_key())
        .serial_number(spec.serial)
        .not_valid_before(spec.not_before)
        .not_valid_after(spec.not_after)
    )
    if spec.san is not None:
        builder = builder.add_extension(spec.san, critical=False)
    if spec.basic_constraints:
        builder = builder.add_extension(
            x509.BasicConstraints(spec.ca, spec.path_length), critical=True
        )
    if spec.key_usage is not None:
        builder = builder.add_extension(spec.key_usage, critical=True)
    builder = builder.add_extension(
        x509.SubjectKeyIdentifier.from_public_key(spec.key.public_key()), critical=False
    ).add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
    )
    for ext, critical in spec.extra:
        builder = builder.add_extension(ext, critical=critical)
    return builder.sign(issuer_key, spec.hash_alg)


def root_spec(key: Any, cn: str = "Crypto Authentication Root CA 002") -> CertSpec:
    # Like Microchip's root: basicConstraints cA (critical), SKI, AKI, and NO keyUsage.
    return CertSpec(
        name(cn),
        key,
        not_before=dt.datetime(2018, 11, 8, 19, 12, 19, tzinfo=UTC),
        not_after=dt.datetime(2058, 11, 8, 19, 12, 19, tzinfo=UTC),
        ca=True,
        serial=0x77D36D956EC8AE6205E58E3ACB985A81,
    )


def signer_spec(key: Any, cn: str = "Crypto Authentication Signer 2C10") -> CertSpec:
    return CertSpec(
        name(cn),
        key,
        not_after=dt.datetime(2049, 11, 8, 4, tzinfo=UTC),
        ca=True,
        path_length=0,
        key_usage=_usage(True, False, True),
        serial=0x440EE4170CB545CE59698E3056990A5D,
    )


def device_spec(key: Any, serial: bytes = SERIAL) -> CertSpec:
    # TNGTLS device template: CN "sn" + serial, a directoryName SAN (no DNS name), not a
    # CA, keyUsage digitalSignature + keyAgreement, valid to 9999 (no expiry).
    san = x509.SubjectAlternativeName(
        [
            x509.DirectoryName(
                x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, "eui48_682719000000")])
            )
        ]
    )
    return CertSpec(
        name("sn" + serial.hex().upper()),
        key,
        not_before=dt.datetime(2019, 3, 1, tzinfo=UTC),
        key_usage=_usage(True, True, False),
        san=san,
    )


@dataclass
class TrustAndGo:
    """A Trust&GO-shaped PKI: root key, signer key, and the certificates made from specs."""

    device: SignerKey
    root_key: Any = field(default_factory=lambda: ec_key(101))
    signer_key: Any = field(default_factory=lambda: ec_key(102))

    def root(self, **changes: Any) -> x509.Certificate:
        return issue(_with(root_spec(self.root_key), changes))

    def signer(self, **changes: Any) -> x509.Certificate:
        return issue(
            _with(signer_spec(self.signer_key), changes), self.root().subject, self.root_key
        )

    def device_cert(self, issuer_key: Any = None, **changes: Any) -> x509.Certificate:
        spec = _with(device_spec(self.device.private), changes)
        return issue(spec, self.signer().subject, issuer_key or self.signer_key)

    def chain(self) -> list[x509.Certificate]:
        return [self.device_cert(), self.signer()]


def _with(spec: CertSpec, changes: dict[str, Any]) -> CertSpec:
    for key, value in changes.items():
        setattr(spec, key, value)
    return spec


def b64(cert: x509.Certificate) -> str:
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode("ascii")


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


# -- ATECC608 config zone ------------------------------------------------------------------


def config_zone(
    serial: bytes = SERIAL,
    slot: int = 0,
    slot_config: int = 0x0085,  # Trust&GO slot 0: IsSecret, ExtSig + ECDH, no writes
    key_config: int = 0x0053,  # Private, PubInfo, P-256, ReqRandom
    lock_config: int = 0x00,
    lock_value: int = 0x00,
) -> bytes:
    zone = bytearray(128)
    zone[0:4] = serial[0:4]
    zone[4:8] = bytes.fromhex("00006003")  # RevNum of an ATECC608B
    zone[8:13] = serial[4:9]
    zone[16] = 0x6A  # I2C address 0x35 << 1
    for s in range(16):  # other slots: clear-text data, so only `slot` makes the key pass
        zone[20 + 2 * s : 22 + 2 * s] = (0x0000).to_bytes(2, "little")
        zone[96 + 2 * s : 98 + 2 * s] = (0x003C).to_bytes(2, "little")
    zone[20 + 2 * slot : 22 + 2 * slot] = slot_config.to_bytes(2, "little")
    zone[96 + 2 * slot : 98 + 2 * slot] = key_config.to_bytes(2, "little")
    zone[86] = lock_value
    zone[87] = lock_config
    return bytes(zone)


# -- statements ----------------------------------------------------------------------------


def enroll_statement(device: SignerKey, **fields: Any) -> bytes:
    body: dict[str, Any] = {
        "v": 1,
        "k": "enroll",
        "c": CHALLENGE,
        "sn": SERIAL,
        "cfg": config_zone(),
    }
    return make_record(device, _apply(body, fields))


def line_statement(line_key: SignerKey, device: SignerKey, **fields: Any) -> bytes:
    body: dict[str, Any] = {
        "v": 1,
        "k": "line",
        "pk": device.compressed,
        "crv": "p256",
        "sn": SERIAL,
        "t": NOW_MS - 86_400_000,
        "line": "line-1",
        "cfg": config_zone(),
    }
    return make_record(line_key, _apply(body, fields))


def rotate_statement(old_key: SignerKey, new_key: SignerKey, **fields: Any) -> bytes:
    body: dict[str, Any] = {
        "v": 1,
        "k": "rotate",
        "old": old_key.kid,
        "pk": new_key.compressed,
        "crv": new_key.curve,
        "last": 41,
        "t": NOW_MS,
    }
    return make_record(old_key, _apply(body, fields))


DROP = object()


def _apply(body: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    for key, value in fields.items():
        if value is DROP:
            body.pop(key, None)
        else:
            body[key] = value
    return body


# -- TPM 2.0 structures (Part 2), marshalled by hand -----------------------------------------

FIXED_TPM, FIXED_PARENT, SENSITIVE_DATA_ORIGIN, USER_WITH_AUTH = 1 << 1, 1 << 4, 1 << 5, 1 << 6
RESTRICTED, DECRYPT, SIGN = 1 << 16, 1 << 17, 1 << 18
KEY_ATTRIBUTES = FIXED_TPM | FIXED_PARENT | SENSITIVE_DATA_ORIGIN | USER_WITH_AUTH | SIGN


def tpm2b(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data


def tpmt_public(
    device: SignerKey,
    attributes: int = KEY_ATTRIBUTES,
    alg_type: int = 0x0023,
    name_alg: int = 0x000B,
    curve: int = 0x0003,
) -> bytes:
    """TPMT_PUBLIC of an ECC key: ECDSA-SHA256 scheme, no symmetric, KDF NULL (12.2.4)."""
    point = device.uncompressed
    return (
        struct.pack(">HHI", alg_type, name_alg, attributes)
        + tpm2b(b"")  # authPolicy
        + struct.pack(">H", 0x0010)  # symmetric: TPM_ALG_NULL
        + struct.pack(">HH", 0x0018, 0x000B)  # scheme: ECDSA with SHA-256
        + struct.pack(">H", curve)
        + struct.pack(">H", 0x0010)  # kdf: TPM_ALG_NULL
        + tpm2b(point[1:33])
        + tpm2b(point[33:65])
    )


def tpm_name(public: bytes) -> bytes:
    return struct.pack(">H", 0x000B) + hashlib.sha256(public).digest()


def tpms_attest(
    public: bytes,
    extra_data: bytes = CHALLENGE,
    magic: int = 0xFF544347,
    st: int = 0x8017,
    certified_name: bytes | None = None,
) -> bytes:
    """TPMS_ATTEST of TPM2_Certify (10.12.12) certifying ``public``."""
    signer_name = tpm_name(b"the AK's public area")
    return (
        struct.pack(">IH", magic, st)
        + tpm2b(signer_name)  # qualifiedSigner
        + tpm2b(extra_data)
        + struct.pack(">QIIB", 123_456_789, 3, 0, 1)  # clockInfo: clock, resets, restarts, safe
        + struct.pack(">Q", 0x2000_0001_0016_0000)  # firmwareVersion
        + tpm2b(tpm_name(public) if certified_name is None else certified_name)
        + tpm2b(tpm_name(b"qualified " + public))
    )


def tpm_signature(
    ak: ec.EllipticCurvePrivateKey, attest: bytes, high_s: bool | None = None
) -> bytes:
    """r||s as a TPM returns it: NOT normalised (``high_s`` forces one form or the other)."""
    n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    r, s = decode_dss_signature(ak.sign(attest, ec.ECDSA(hashes.SHA256())))
    if high_s is not None and (s > n // 2) != high_s:
        s = n - s
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


@dataclass
class TpmPki:
    """A TPM maker's CA: root -> AK certificate."""

    root_key: Any = field(default_factory=lambda: ec_key(201))
    ak: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec_key(202))

    def root(self, **changes: Any) -> x509.Certificate:
        spec = _with(
            CertSpec(
                name("Test TPM EK/AK Root", "Signet Tests"),
                self.root_key,
                ca=True,
                key_usage=_usage(False, False, True),
                not_after=NO_EXPIRY,
            ),
            changes,
        )
        return issue(spec)

    def ak_cert(self, **changes: Any) -> x509.Certificate:
        spec = _with(
            CertSpec(
                name("AK of test TPM 1", "Signet Tests"),
                self.ak,
                key_usage=_usage(True, False, False),
                not_after=NO_EXPIRY,
                serial=7,
            ),
            changes,
        )
        return issue(spec, self.root().subject, self.root_key)


# -- the evidence file -----------------------------------------------------------------------


def evidence_file(kind: str, device: SignerKey, **fields: Any) -> bytes:
    doc: dict[str, Any] = {
        "format": "signet-evidence/1",
        "kind": kind,
        "curve": "p256",
        "public_key": device.compressed.hex(),
    }
    for key, value in fields.items():
        if value is DROP:
            doc.pop(key, None)
        else:
            doc[key] = value
    return json.dumps(doc, indent=1).encode()


def se_chain_evidence(
    device: SignerKey,
    pki: TrustAndGo | None = None,
    chain: list[x509.Certificate] | None = None,
    proof: bytes | None = None,
    **fields: Any,
) -> bytes:
    pki = pki or TrustAndGo(device)
    certs = pki.chain() if chain is None else chain
    return evidence_file(
        "se-chain",
        device,
        chain=[b64(c) for c in certs],
        proof=(enroll_statement(device) if proof is None else proof).hex(),
        **fields,
    )


def tpm_evidence(
    device: SignerKey,
    pki: TpmPki | None = None,
    public: bytes | None = None,
    attest: bytes | None = None,
    signature: bytes | None = None,
    ak_chain: list[x509.Certificate] | None = None,
    **fields: Any,
) -> bytes:
    pki = pki or TpmPki()
    public = tpmt_public(device) if public is None else public
    attest = tpms_attest(public) if attest is None else attest
    signature = tpm_signature(pki.ak, attest) if signature is None else signature
    return evidence_file(
        "tpm2-certify",
        device,
        tpm_public=public.hex(),
        attest=attest.hex(),
        signature=signature.hex(),
        ak_chain=[b64(c) for c in (ak_chain if ak_chain is not None else [pki.ak_cert()])],
        **fields,
    )


def line_evidence(
    line_key: SignerKey, device: SignerKey, statement: bytes | None = None, **fields: Any
) -> bytes:
    statement = line_statement(line_key, device) if statement is None else statement
    return evidence_file("line-statement", device, statement=statement.hex(), **fields)


class Challenges:
    """The gateway's challenge table as docs/TRUST.md describes it (the callback's contract)."""

    def __init__(self, ttl_ms: int = 900_000) -> None:
        self.ttl_ms = ttl_ms
        self.issued: dict[bytes, int] = {}
        self.used: set[bytes] = set()
        self.now_ms = NOW_MS
        self.calls: list[bytes] = []

    def issue(self, nonce: bytes = CHALLENGE, at_ms: int | None = None) -> bytes:
        self.issued[nonce] = self.now_ms if at_ms is None else at_ms
        return nonce

    def check(self, nonce: bytes) -> None:
        from signet_gateway.trust import EvidenceRefused

        self.calls.append(nonce)
        if nonce not in self.issued:
            raise EvidenceRefused("challenge_unknown", "this gateway never issued that challenge")
        if nonce in self.used:
            raise EvidenceRefused("challenge_replayed", "that challenge was already used")
        if self.now_ms > self.issued[nonce] + self.ttl_ms:
            raise EvidenceRefused("challenge_expired", "that challenge expired")

    def consume(self, nonce: bytes) -> None:
        self.used.add(nonce)
