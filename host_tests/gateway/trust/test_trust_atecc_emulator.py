"""The gateway's ATECC608 rules against the emulated chip, driven by the device's own driver.

A Trust&GO-shaped emulated chip (kit/atecc608_emu.py) signs the enroll statement through
the firmware driver and signer (signet.atecc608, signet.se_signer); its config zone, read
by the driver, goes into the proof. The gateway (gateway/trust, written separately from
the datasheet) must accept the chip as Microchip ships it and refuse a wrongly configured
or unlocked one, as the device's self-test does.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kit.atecc608_emu import trust_and_go
from kit.crafted_evidence import CHALLENGE, Challenges
from kit.independent_signer import make_key, make_record, sig_structure
from signet.atecc608 import ATECC608
from signet.se_signer import SecureElementSigner
from signet_gateway.trust import EvidenceRefused, TrustPolicy, VerifiedEvidence, verify_evidence
from signet_gateway.verify.pubkeys import DevicePublicKey

_ANY = make_key("p256", 91)  # only lends make_record its alg; the chip signs


def _b64(cert: x509.Certificate) -> str:
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def evidence_from_chip(
    **trust_and_go_options: object,
) -> tuple[bytes, DevicePublicKey, x509.Certificate]:
    provisioned = trust_and_go(**trust_and_go_options)
    emu = provisioned.chip
    chip = ATECC608(emu, emu.address, sleep_us=emu.sleep_us)
    signer = SecureElementSigner(chip, provisioned.slot)
    body = {"v": 1, "k": "enroll", "c": CHALLENGE, "sn": chip.serial(), "cfg": chip.read_config()}
    protected = bytes.fromhex("a10126")
    digest = hashlib.sha256(sig_structure(protected, cbor2.dumps(body))).digest()
    proof = make_record(_ANY, body, kid=signer.kid, signature=signer.sign_digest(digest))
    doc = {
        "format": "signet-evidence/1",
        "kind": "se-chain",
        "curve": "p256",
        "public_key": signer.public_key.hex(),
        "chain": [
            base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode()
            for c in provisioned.chain[:2]
        ],
        "proof": proof.hex(),
        "slot": provisioned.slot,
    }
    return (
        json.dumps(doc).encode(),
        DevicePublicKey.from_sec1(signer.public_key),
        provisioned.pki.root,
    )


def check(raw: bytes, key: DevicePublicKey, root: x509.Certificate) -> VerifiedEvidence:
    # The emulator's test PKI is valid from an hour ago: judge it now.
    challenges = Challenges()
    challenges.now_ms = int(time.time() * 1000)
    challenges.issue()
    policy = TrustPolicy(se_roots=(root,), now_ms=challenges.now_ms)
    return verify_evidence(raw, key, policy, challenges.check)


def test_a_trust_and_go_chip_as_shipped_is_accepted():
    verified = check(*evidence_from_chip())
    assert verified.summary["chip"]["slot_config"] == "0x0085"


def test_an_updatable_slot_is_accepted():
    verified = check(*evidence_from_chip(slot=2, slot_config=0x2085))
    assert verified.summary["chip"]["slot"] == 2


def test_a_chip_that_allows_privwrite_is_refused():
    # The chip signs, but a key made outside it could have been written into the slot.
    # (An unlocked or non-secret chip does not even sign, so it yields no evidence to check.)
    with pytest.raises(EvidenceRefused) as info:
        check(*evidence_from_chip(slot_config=0x4085))
    assert info.value.reason == "slot_config"
