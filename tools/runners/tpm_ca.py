"""A test CA for TPM attestation keys: a root that certifies an AK's public key.

In production this is the operator's CA, which issues an AK certificate only after checking
that the AK lives in a genuine TPM (the EK certificate, then MakeCredential /
ActivateCredential on an enrollment station: docs/TRUST.md, "TPM 2.0 on a Raspberry Pi").
Here it certifies whatever AK it is shown, which is exactly what a test or the virtual fleet
(swtpm has no manufacturer EK certificate worth checking) needs. For tests (host_tests/kit/
tpm_ca.py names it there) and `signet simulate --hardware`; the tools cannot import the
test kit, hence this place.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

# tcg-kp-AIKCertificate (TCG "EK Credential Profile" / "TPM Keys for Platform Identity"):
# the extended key usage of a certificate for a TPM attestation key.
TCG_KP_AIK_CERTIFICATE = x509.ObjectIdentifier("2.23.133.8.3")


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, "Signet test TPM CA"),
            x509.NameAttribute(x509.NameOID.COMMON_NAME, cn),
        ]
    )


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


@dataclass(frozen=True)
class TpmTestCA:
    root_key: ec.EllipticCurvePrivateKey
    root: x509.Certificate

    def root_pem(self) -> bytes:
        """For gateway.toml [trust] tpm_roots."""
        return self.root.public_bytes(serialization.Encoding.PEM)

    def certify_ak(
        self,
        ak_public_key: ec.EllipticCurvePublicKey,
        name: str = "Signet test AK",
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
    ) -> x509.Certificate:
        """The AK certificate: the AK's public key, signed by the root, end entity."""
        now = dt.datetime.now(dt.timezone.utc)
        return (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(self.root.subject)
            .public_key(ak_public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - dt.timedelta(hours=1))
            .not_valid_after(not_after or now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([TCG_KP_AIK_CERTIFICATE]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.root_key.public_key()),
                critical=False,
            )
            .sign(self.root_key, hashes.SHA256())
        )

    def ak_chain_der(
        self, ak_public_key: ec.EllipticCurvePublicKey, name: str = "Signet test AK"
    ) -> list[bytes]:
        """The evidence's ak_chain: the AK certificate only (the gateway's roots complete it)."""
        return [self.certify_ak(ak_public_key, name).public_bytes(serialization.Encoding.DER)]


def make_tpm_ca(name: str = "Signet test TPM") -> TpmTestCA:
    """A fresh self-signed root; share one among a fleet's TPMs."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(f"{name} Root CA")
    now = dt.datetime.now(dt.timezone.utc)
    root = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return TpmTestCA(key, root)
