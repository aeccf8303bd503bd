"""tools/pi/tpm_key.py against a real software TPM (swtpm, started by tools/runners/swtpm.py):
the device key is generated in the TPM, its blob reloads after a TPM restart, and what it
signs verifies with the gateway's verifier and with `cryptography`, independently of the
firmware and of tpm2-pytss."""

from __future__ import annotations

import hashlib
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec as crypto_ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

from signet.builder import RecordBuilder
from signet.record import GENESIS_HASH
from signet_gateway.verify.pubkeys import DevicePublicKey
from signet_gateway.verify.verifier import Verifier
from signet_tools.pi.tpm.session import storage_primary_template
from signet_tools.pi.tpm_key import (
    TpmError,
    TpmSigner,
    create_tpm_key,
    open_tpm_signer,
)
from signet_tools.runners.swtpm import Swtpm

pytestmark = pytest.mark.timeout(60)

P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
KEY_FORMAT_LINE = b"signet-tpm2-key/1\n"  # written here by hand, not imported


@pytest.fixture(scope="module")
def tpm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Swtpm]:
    """One swtpm for the tests that neither stop nor restart it."""
    with Swtpm(tmp_path_factory.mktemp("swtpm")) as swtpm:
        yield swtpm


@pytest.fixture(scope="module")
def signer(tpm: Swtpm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TpmSigner]:
    with create_tpm_key(tpm.tcti, tmp_path_factory.mktemp("key") / "device.tpm") as s:
        yield s


def _crypto_key(signer: TpmSigner) -> crypto_ec.EllipticCurvePublicKey:
    return crypto_ec.EllipticCurvePublicKey.from_encoded_point(
        crypto_ec.SECP256R1(), signer.public_key
    )


def _verify_raw(key: crypto_ec.EllipticCurvePublicKey, digest: bytes, sig: bytes) -> None:
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    key.verify(encode_dss_signature(r, s), digest, crypto_ec.ECDSA(Prehashed(hashes.SHA256())))


def test_the_signer_interface_of_the_software_key(signer: TpmSigner) -> None:
    assert signer.curve.name == "p256"
    assert signer.alg == -7  # ES256
    assert len(signer.public_key) == 33 and signer.public_key[0] in (2, 3)
    assert len(signer.public_key_uncompressed) == 65
    assert signer.public_key_uncompressed[1:33] == signer.public_key[1:]
    # kid = the first 16 bytes of SHA-256 over the compressed key (PROTOCOL.md), computed
    # here by hand; the gateway's DevicePublicKey agrees.
    assert signer.kid == hashlib.sha256(signer.public_key).digest()[:16]
    assert signer.device_id == signer.kid.hex()
    assert DevicePublicKey.from_sec1(signer.public_key, "p256").device_id == signer.device_id


def test_records_signed_in_the_tpm_verify_with_the_gateway_and_cryptography(
    signer: TpmSigner,
) -> None:
    builder = RecordBuilder(signer)
    verifier = Verifier({signer.kid: DevicePublicKey.from_sec1(signer.public_key, "p256")})
    prev = GENESIS_HASH
    for n, (kind, fields) in enumerate(
        (
            ("boot", {"rc": "power_on", "fw": "0.1.0", "ls": 0}),
            ("hb", {"iv": 60000, "st": "ok"}),
            ("rev", {"am": 250, "cur": "EUR", "src": "pulse", "ref": "t-1"}),
        ),
        start=1,
    ):
        payload, record = builder.build(kind, n, 1, n * 10, 1700000000000 + n, prev, fields)
        verified = verifier.verify(record)
        assert verified.payload["n"] == n
        prev = hashlib.sha256(payload).digest()


def test_signatures_are_low_s_and_verify_with_cryptography(signer: TpmSigner) -> None:
    # A TPM returns s > n/2 half of the time; 40 in a row all low-S happens by chance with
    # probability 2^-40, so this fails if the signer stops normalising.
    key = _crypto_key(signer)
    sigs = set()
    for i in range(40):
        digest = hashlib.sha256(b"record %d" % i).digest()
        sig = signer.sign_digest(digest)
        assert len(sig) == 64
        assert 0 < int.from_bytes(sig[32:], "big") <= P256_N // 2
        _verify_raw(key, digest, sig)
        sigs.add(sig)
    assert len(sigs) == 40
    with pytest.raises(InvalidSignature):
        _verify_raw(key, hashlib.sha256(b"another").digest(), sig)


def test_the_blob_is_private_and_never_overwritten(tpm: Swtpm, tmp_path: Path) -> None:
    blob = tmp_path / "device.tpm"
    with create_tpm_key(tpm.tcti, blob) as s:
        assert stat.S_IMODE(blob.stat().st_mode) == 0o600
        assert blob.read_bytes().startswith(KEY_FORMAT_LINE)
        first = blob.read_bytes()
        with pytest.raises(TpmError, match="exists; refusing to overwrite"):
            create_tpm_key(tpm.tcti, blob)
        assert blob.read_bytes() == first
        with open_tpm_signer(tpm.tcti, blob) as again:
            assert again.kid == s.kid
    assert not list(tmp_path.glob(".device.tpm.*"))  # no temporary file left behind


def test_the_storage_primary_is_the_tcg_ecc_srk_template() -> None:
    # TCG "TPM v2.0 Provisioning Guidance", ECC NIST P-256 SRK template, as marshalled bytes:
    # type ECC, nameAlg SHA-256, fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth|noDA|
    # restricted|decrypt, empty authPolicy, AES-128-CFB, scheme NULL, curve P-256, KDF NULL,
    # empty unique (x and y of size 0).
    expected = "".join(
        ["0023000b", "00030472", "0000", "000600800043", "0010", "0003", "0010", "0000", "0000"]
    )
    assert storage_primary_template().publicArea.marshal().hex() == expected


def test_the_key_survives_a_tpm_restart(tmp_path: Path) -> None:
    blob = tmp_path / "device.tpm"
    with Swtpm(tmp_path / "swtpm") as tpm:
        signer = create_tpm_key(tpm.tcti, blob)
        kid = signer.kid
        tpm.restart()  # a reboot: the TPM's objects are gone, its seeds are not
        with open_tpm_signer(tpm.tcti, blob) as reopened:
            assert reopened.kid == kid
            digest = hashlib.sha256(b"after restart").digest()
            _verify_raw(_crypto_key(signer), digest, reopened.sign_digest(digest))
        tpm.restart()
        # A signer opened before the restart reloads its key from the blob by itself.
        digest = hashlib.sha256(b"same process").digest()
        _verify_raw(_crypto_key(signer), digest, signer.sign_digest(digest))
        signer.close()


def test_a_blob_from_another_tpm_is_refused(tmp_path: Path) -> None:
    blob = tmp_path / "device.tpm"
    with Swtpm(tmp_path / "a") as first:
        create_tpm_key(first.tcti, blob).close()
    with Swtpm(tmp_path / "b") as other, pytest.raises(TpmError) as refused:
        open_tpm_signer(other.tcti, blob)
    assert str(refused.value) == (
        f"TPM at {other.tcti}: refuses the key blob {blob} (integrity check failed): it was "
        "created by another TPM, this TPM was cleared since, or the file was altered"
    )


# --- blobs created wrong, straight through tpm2-pytss (not through the module under test) --


def _raw_key_blob(tcti: str, path: Path, attributes: int, scheme: str) -> None:
    from tpm2_pytss import ESAPI
    from tpm2_pytss.constants import ESYS_TR
    from tpm2_pytss.types import TPM2B_PUBLIC, TPM2B_SENSITIVE_CREATE

    srk = TPM2B_PUBLIC.parse(
        "ecc256:aes128cfb", objectAttributes=0x00030472, nameAlg="sha256"
    )  # the TCG SRK template, attributes as in the test above
    with ESAPI(tcti) as esapi:
        primary, *_ = esapi.create_primary(TPM2B_SENSITIVE_CREATE(), srk, ESYS_TR.OWNER)
        template = TPM2B_PUBLIC.parse(scheme, objectAttributes=attributes, nameAlg="sha256")
        private, public, *_ = esapi.create(primary, TPM2B_SENSITIVE_CREATE(), template)
        esapi.flush_context(primary)
    path.write_bytes(KEY_FORMAT_LINE + public.marshal() + private.marshal())


# TPMA_OBJECT bits (TPM 2.0 Part 2, 8.3.2): fixedTPM 1, fixedParent 4, sensitiveDataOrigin 5,
# userWithAuth 6, restricted 16, decrypt 17, sign 18.
FIXED_TPM, FIXED_PARENT, SDO, USER_AUTH = 1 << 1, 1 << 4, 1 << 5, 1 << 6
DECRYPT, SIGN = 1 << 17, 1 << 18


@pytest.mark.parametrize(
    ("attributes", "scheme", "says"),
    [
        (FIXED_TPM | FIXED_PARENT | SDO | USER_AUTH | SIGN | DECRYPT, "ecc256", "decrypt key too"),
        (SDO | USER_AUTH | SIGN, "ecc256:ecdsa-sha256", "lacks fixedTPM; it lacks fixedParent"),
    ],
    ids=["decrypt", "duplicable"],
)
def test_a_blob_with_the_wrong_attributes_is_refused(
    tpm: Swtpm, tmp_path: Path, attributes: int, scheme: str, says: str
) -> None:
    blob = tmp_path / "bad.tpm"
    _raw_key_blob(tpm.tcti, blob, attributes, scheme)
    with pytest.raises(TpmError) as refused:
        open_tpm_signer(tpm.tcti, blob)
    message = str(refused.value)
    assert message.startswith(f"TPM key blob {blob}: refused, "), message
    assert says in message, message


def test_attributes_edited_into_a_blob_are_refused_by_the_tpm(tpm: Swtpm, tmp_path: Path) -> None:
    # A duplicable key whose public area is edited to claim fixedTPM|fixedParent passes the
    # file check but not the TPM: the private part is bound to the original public area.
    blob = tmp_path / "forged.tpm"
    _raw_key_blob(tpm.tcti, blob, SDO | USER_AUTH | SIGN, "ecc256:ecdsa-sha256")
    data = bytearray(blob.read_bytes())
    # TPM2B_PUBLIC: size (2), type (2), nameAlg (2), then objectAttributes (4, big-endian)
    at = len(KEY_FORMAT_LINE) + 6
    attrs = int.from_bytes(data[at : at + 4], "big") | FIXED_TPM | FIXED_PARENT
    data[at : at + 4] = attrs.to_bytes(4, "big")
    blob.write_bytes(bytes(data))
    with pytest.raises(TpmError, match=r"refuses the key blob .*or the file was altered$"):
        open_tpm_signer(tpm.tcti, blob)


def test_a_missing_or_foreign_blob_is_one_sentence(tpm: Swtpm, tmp_path: Path) -> None:
    with pytest.raises(TpmError, match=r"^no TPM key blob at .*nothing\.tpm$"):
        open_tpm_signer(tpm.tcti, tmp_path / "nothing.tpm")
    pem = tmp_path / "dev.key"
    pem.write_text("-----BEGIN EC PRIVATE KEY-----\n")
    with pytest.raises(TpmError, match=r"is not a signet-tpm2-key/1 blob"):
        open_tpm_signer(tpm.tcti, pem)
    cut = tmp_path / "cut.tpm"
    cut.write_bytes(KEY_FORMAT_LINE + b"\x00\x58\x00\x23")
    with pytest.raises(TpmError, match=r"truncated or corrupt"):
        open_tpm_signer(tpm.tcti, cut)


def test_no_tpm_is_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    blob = tmp_path / "device.tpm"
    swtpm = Swtpm(tmp_path / "swtpm").start()
    signer = create_tpm_key(swtpm.tcti, blob)
    swtpm.stop()
    expected = rf"^TPM at {swtpm.tcti}: not reachable .*\(is it running\?\)$"
    with pytest.raises(TpmError, match=expected):
        signer.sign_digest(bytes(32))
    with pytest.raises(TpmError, match=expected):
        open_tpm_signer(swtpm.tcti, blob)
    with pytest.raises(TpmError, match=expected):
        create_tpm_key(swtpm.tcti, tmp_path / "other.tpm")
    missing = tmp_path / "tpmrm0"
    with pytest.raises(TpmError, match=rf"^no TPM at {missing}: enable it .*dtoverlay=tpm-"):
        open_tpm_signer(f"device:{missing}", blob)
    not_a_tcti = "tpmrm0"
    with pytest.raises(TpmError, match="not a TCTI string"):
        open_tpm_signer(not_a_tcti, blob)
