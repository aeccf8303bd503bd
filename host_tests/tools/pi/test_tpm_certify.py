"""TPM2_Certify evidence (tools/pi/tpm/attest.py) from a real swtpm, read back by a parser
written here by hand from TPM 2.0 Part 2 (not tpm2-pytss, not the gateway's), and the AK's
signature checked with the AK certificate of the test CA (kit/tpm_ca.py)."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec as crypto_ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from kit.tpm_ca import TCG_KP_AIK_CERTIFICATE, TpmTestCA, make_tpm_ca
from signet_tools.pi.tpm_key import (
    AttestationKey,
    TpmError,
    TpmSigner,
    certify_evidence,
    create_ak,
    create_tpm_key,
    open_ak,
)
from signet_tools.runners.swtpm import Swtpm

pytestmark = pytest.mark.timeout(60)

TPM_GENERATED_VALUE = 0xFF544347  # "\xffTCG", Part 2, 6.2
TPM_ST_ATTEST_CERTIFY = 0x8017  # Part 2, 6.9
TPM_ALG_SHA256 = 0x000B
TPM_ALG_ECC = 0x0023
TPM_ALG_ECDSA = 0x0018
TPM_ALG_NULL = 0x0010
TPM_ECC_NIST_P256 = 0x0003
# TPMA_OBJECT bits, Part 2, 8.3.2
FIXED_TPM, FIXED_PARENT, SDO, USER_AUTH = 1 << 1, 1 << 4, 1 << 5, 1 << 6
RESTRICTED, DECRYPT, SIGN = 1 << 16, 1 << 17, 1 << 18


class Reader:
    """Big-endian TPM marshalling, strictly: every read in bounds, everything consumed."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, n: int) -> bytes:
        assert self.at + n <= len(self.data), "truncated"
        out = self.data[self.at : self.at + n]
        self.at += n
        return out

    def u16(self) -> int:
        return struct.unpack(">H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack(">I", self.take(4))[0]

    def u64(self) -> int:
        return struct.unpack(">Q", self.take(8))[0]

    def tpm2b(self) -> bytes:
        return self.take(self.u16())

    def end(self) -> None:
        assert self.at == len(self.data), f"{len(self.data) - self.at} stray bytes"


@dataclass
class Attest:
    qualified_signer: bytes
    extra_data: bytes
    reset_count: int
    certified_name: bytes
    certified_qualified_name: bytes


def parse_attest(data: bytes) -> Attest:
    """TPMS_ATTEST (Part 2, 10.12.12) with TPMS_CERTIFY_INFO (10.12.3) as its attested."""
    r = Reader(data)
    assert r.u32() == TPM_GENERATED_VALUE, "magic"
    assert r.u16() == TPM_ST_ATTEST_CERTIFY, "type"
    signer = r.tpm2b()  # qualifiedSigner: TPM2B_NAME
    extra = r.tpm2b()  # extraData: TPM2B_DATA
    r.u64()  # clockInfo.clock
    reset_count = r.u32()  # clockInfo.resetCount
    r.u32()  # clockInfo.restartCount
    assert r.take(1) in (b"\x00", b"\x01")  # clockInfo.safe: TPMI_YES_NO
    r.u64()  # firmwareVersion
    name = r.tpm2b()  # attested.certify.name
    qualified = r.tpm2b()  # attested.certify.qualifiedName
    r.end()
    return Attest(signer, extra, reset_count, name, qualified)


@dataclass
class EccPublic:
    attributes: int
    x: bytes
    y: bytes


def parse_ecc_public(data: bytes) -> EccPublic:
    """TPMT_PUBLIC (Part 2, 12.2.4) of an ECDSA-SHA256 P-256 key, no symmetric, no KDF."""
    r = Reader(data)
    assert r.u16() == TPM_ALG_ECC
    assert r.u16() == TPM_ALG_SHA256
    attributes = r.u32()
    assert r.tpm2b() == b""  # authPolicy
    assert r.u16() == TPM_ALG_NULL  # symmetric
    assert r.u16() == TPM_ALG_ECDSA
    assert r.u16() == TPM_ALG_SHA256  # the scheme's hash
    assert r.u16() == TPM_ECC_NIST_P256
    assert r.u16() == TPM_ALG_NULL  # kdf
    x, y = r.tpm2b(), r.tpm2b()
    r.end()
    return EccPublic(attributes, x, y)


def _name(tpmt_public: bytes) -> bytes:
    """An object's TPM name (Part 1, 16): nameAlg || H_nameAlg(TPMT_PUBLIC)."""
    return TPM_ALG_SHA256.to_bytes(2, "big") + hashlib.sha256(tpmt_public).digest()


def _compressed(x: bytes, y: bytes) -> bytes:
    return bytes([2 + (y[-1] & 1)]) + x.rjust(32, b"\x00")


@pytest.fixture(scope="module")
def tpm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Swtpm]:
    with Swtpm(tmp_path_factory.mktemp("swtpm")) as swtpm:
        yield swtpm


@pytest.fixture(scope="module")
def keys(
    tpm: Swtpm, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TpmSigner, AttestationKey, TpmTestCA]]:
    d = tmp_path_factory.mktemp("keys")
    with create_tpm_key(tpm.tcti, d / "device.tpm") as signer:
        yield signer, create_ak(tpm.tcti, d / "ak.tpm"), make_tpm_ca()


def test_the_evidence_parses_and_the_ak_signature_verifies(
    tpm: Swtpm, keys: tuple[TpmSigner, AttestationKey, TpmTestCA]
) -> None:
    signer, ak, ca = keys
    challenge = bytes(range(32))
    evidence = certify_evidence(tpm.tcti, signer, ak, ca.ak_chain_der(ak.public_key), challenge)
    evidence = json.loads(json.dumps(evidence))  # it is what the evidence file holds
    assert evidence["format"] == "signet-evidence/1"
    assert evidence["kind"] == "tpm2-certify"
    assert evidence["curve"] == "p256"
    assert evidence["public_key"] == signer.public_key.hex()

    tpm_public = bytes.fromhex(evidence["tpm_public"])
    key = parse_ecc_public(tpm_public)
    assert _compressed(key.x, key.y) == signer.public_key
    for bit in (FIXED_TPM, FIXED_PARENT, SDO, USER_AUTH, SIGN):
        assert key.attributes & bit
    assert not key.attributes & (DECRYPT | RESTRICTED)

    attest_bytes = bytes.fromhex(evidence["attest"])
    attest = parse_attest(attest_bytes)
    assert attest.extra_data == challenge
    assert attest.certified_name == _name(tpm_public)
    # qualifiedSigner is the AK's Qualified Name (Part 1, 16.6: a hash over its ancestors'
    # names too, the primary's among them), not computable from the evidence alone.
    assert len(attest.qualified_signer) == 34 and attest.qualified_signer[:2] == b"\x00\x0b"

    ak_cert = x509.load_der_x509_certificate(base64.b64decode(evidence["ak_chain"][0]))
    assert len(evidence["ak_chain"]) == 1
    ca.root.public_key().verify(  # the AK certificate chains to the root
        ak_cert.signature,
        ak_cert.tbs_certificate_bytes,
        crypto_ec.ECDSA(ak_cert.signature_hash_algorithm),
    )
    eku = ak_cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert TCG_KP_AIK_CERTIFICATE in eku
    sig = bytes.fromhex(evidence["signature"])
    assert len(sig) == 64
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    ak_public = ak_cert.public_key()
    assert isinstance(ak_public, crypto_ec.EllipticCurvePublicKey)
    ak_public.verify(der, attest_bytes, crypto_ec.ECDSA(hashes.SHA256()))
    tampered = attest_bytes.replace(challenge, bytes(32))
    with pytest.raises(InvalidSignature):
        ak_public.verify(der, tampered, crypto_ec.ECDSA(hashes.SHA256()))


def test_the_ak_is_a_restricted_signing_key(
    keys: tuple[TpmSigner, AttestationKey, TpmTestCA],
) -> None:
    _, ak, _ = keys
    public = parse_ecc_public(ak.tpm_public)
    for bit in (FIXED_TPM, FIXED_PARENT, SDO, USER_AUTH, SIGN, RESTRICTED):
        assert public.attributes & bit
    assert not public.attributes & DECRYPT
    assert open_ak(ak.blob_path).tpm_public == ak.tpm_public
    assert ak.blob_path.stat().st_mode & 0o777 == 0o600


def test_each_challenge_is_in_its_own_attestation(
    tpm: Swtpm, keys: tuple[TpmSigner, AttestationKey, TpmTestCA]
) -> None:
    signer, ak, ca = keys
    chain = ca.ak_chain_der(ak.public_key)
    first = certify_evidence(tpm.tcti, signer, ak, chain, b"\x01" * 32)
    second = certify_evidence(tpm.tcti, signer, ak, chain, b"\x02" * 32)
    a, b = (parse_attest(bytes.fromhex(e["attest"])) for e in (first, second))
    assert (a.extra_data, b.extra_data) == (b"\x01" * 32, b"\x02" * 32)
    assert a.certified_name == b.certified_name
    with pytest.raises(ValueError, match="challenge is 33 bytes"):
        certify_evidence(tpm.tcti, signer, ak, chain, bytes(33))


def test_a_device_key_blob_is_not_an_ak(
    tpm: Swtpm, keys: tuple[TpmSigner, AttestationKey, TpmTestCA], tmp_path: Path
) -> None:
    signer, _, _ = keys
    with pytest.raises(TpmError, match="is not a signet-tpm2-ak/1 blob"):
        open_ak(signer.blob_path)
    # The device key's own bytes under the AK's format line: unrestricted, so refused.
    fake = tmp_path / "ak.tpm"
    fake.write_bytes(b"signet-tpm2-ak/1\n" + signer.blob_path.read_bytes().split(b"\n", 1)[1])
    with pytest.raises(TpmError, match=r"attestation key blob .*: refused, it is not restricted"):
        open_ak(fake)


def test_certify_after_a_tpm_restart_and_without_a_tpm(tmp_path: Path) -> None:
    with Swtpm(tmp_path / "swtpm") as tpm:
        signer = create_tpm_key(tpm.tcti, tmp_path / "device.tpm")
        ak = create_ak(tpm.tcti, tmp_path / "ak.tpm")
        chain = make_tpm_ca().ak_chain_der(ak.public_key)
        before = parse_attest(
            bytes.fromhex(certify_evidence(tpm.tcti, signer, ak, chain, b"a")["attest"])
        )
        tpm.restart()  # both keys reload from their blobs; the TPM counts the reset
        after = parse_attest(
            bytes.fromhex(certify_evidence(tpm.tcti, signer, ak, chain, b"b")["attest"])
        )
        assert after.certified_name == before.certified_name
        # An AK in the owner hierarchy sees resetCount plus a fixed secret offset (the TPM
        # obfuscates it for keys outside the endorsement and platform hierarchies): the
        # step of one survives, modulo 2^32.
        assert after.reset_count == (before.reset_count + 1) % 2**32
        tpm.stop()
        with pytest.raises(TpmError, match=rf"^TPM at {tpm.tcti}: not reachable"):
            certify_evidence(tpm.tcti, signer, ak, chain, b"c")
