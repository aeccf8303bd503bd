"""se-chain evidence (Trust&GO-shaped): every reason code from a crafted input."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa

from kit.crafted_evidence import (
    CHALLENGE,
    DROP,
    NOW,
    NOW_MS,
    SERIAL,
    CertSpec,
    Challenges,
    TrustAndGo,
    config_zone,
    device_spec,
    ec_key,
    enroll_statement,
    issue,
    name,
    se_chain_evidence,
    signer_spec,
)
from kit.independent_signer import make_key, rs_bytes
from signet_gateway.trust import EvidenceRefused, TrustPolicy, verify_evidence, verify_stored
from signet_gateway.verify.pubkeys import DevicePublicKey

DEVICE = make_key("p256", 11)
KEY = DevicePublicKey.from_sec1(DEVICE.compressed)
PKI = TrustAndGo(DEVICE)


def policy(**changes: Any) -> TrustPolicy:
    return TrustPolicy(**{"se_roots": (PKI.root(),), "now_ms": NOW_MS, **changes})


def verify(raw: bytes, pol: TrustPolicy | None = None, challenges: Challenges | None = None):
    if challenges is None:
        challenges = Challenges()
        challenges.issue()
    return verify_evidence(raw, KEY, pol or policy(), challenges.check)


def refused(raw: bytes, reason: str, pol: TrustPolicy | None = None, **kw: Any) -> str:
    with pytest.raises(EvidenceRefused) as info:
        verify(raw, pol, **kw)
    assert info.value.reason == reason, info.value
    assert "\n" not in info.value.sentence
    return info.value.sentence


def test_a_trust_and_go_chain_verifies_and_its_summary_is_json():
    challenges = Challenges()
    challenges.issue()
    raw = se_chain_evidence(DEVICE, PKI)
    verified = verify(raw, challenges=challenges)
    assert challenges.calls == [CHALLENGE]
    assert verified.kind == "se-chain" and verified.raw == raw
    summary = json.loads(json.dumps(verified.summary))
    assert summary["chip"]["serial"] == SERIAL.hex()
    assert summary["chip"]["slot_config"] == "0x0085"
    assert summary["chain"][0]["subject"] == "CN=sn0123A1B2C3D4E5F601,O=Microchip Technology Inc"
    assert summary["chain"][0]["not_after"].startswith("9999-12-31")
    assert summary["chain"][-1]["subject"].startswith("CN=Crypto Authentication Root CA 002")
    assert summary["challenge"] == CHALLENGE.hex()


def test_the_chain_may_carry_the_root_itself():
    raw = se_chain_evidence(DEVICE, PKI, chain=[*PKI.chain(), PKI.root()])
    assert len(verify(raw).summary["chain"]) == 3


def test_a_device_cert_without_subject_alt_name_and_a_root_in_a_bundle_verify():
    other_root = TrustAndGo(DEVICE, root_key=ec_key(900)).root(subject=x509.Name([]))
    raw = se_chain_evidence(DEVICE, PKI, chain=[PKI.device_cert(san=None), PKI.signer()])
    assert verify(raw, policy(se_roots=(other_root, PKI.root()))).kind == "se-chain"


def test_an_rsa_root_verifies():
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pki = TrustAndGo(DEVICE, root_key=rsa_key)
    raw = se_chain_evidence(DEVICE, pki)
    assert verify(raw, policy(se_roots=(pki.root(),))).kind == "se-chain"


# -- chain_invalid ----------------------------------------------------------------------------


def test_device_cert_signed_by_another_key_is_chain_invalid():
    bad = PKI.device_cert(issuer_key=ec_key(555))
    sentence = refused(se_chain_evidence(DEVICE, PKI, chain=[bad, PKI.signer()]), "chain_invalid")
    assert "does not verify" in sentence and "device certificate" in sentence


def test_a_broken_name_link_is_chain_invalid():
    stranger = TrustAndGo(DEVICE, signer_key=PKI.signer_key).signer(
        subject=x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Someone Else")])
    )
    sentence = refused(
        se_chain_evidence(DEVICE, PKI, chain=[PKI.device_cert(), stranger]), "chain_invalid"
    )
    assert "is issued by" in sentence


def test_an_issuer_that_is_not_a_ca_is_chain_invalid():
    signer = PKI.signer(ca=False, path_length=None)
    sentence = refused(
        se_chain_evidence(DEVICE, PKI, chain=[PKI.device_cert(), signer]), "chain_invalid"
    )
    assert "not a CA" in sentence


def test_an_issuer_without_basic_constraints_is_chain_invalid():
    signer = PKI.signer(basic_constraints=False)
    refused(se_chain_evidence(DEVICE, PKI, chain=[PKI.device_cert(), signer]), "chain_invalid")


def test_path_length_zero_on_the_signer_allows_no_intermediate_below_it():
    # root -> signer (pathLen 0) -> extra CA -> device: the extra CA breaks the signer's limit.
    extra_key = ec_key(556)
    extra = issue(
        CertSpec(name("Extra CA"), extra_key, ca=True), PKI.signer().subject, PKI.signer_key
    )
    device = PKI.device_cert(issuer_key=extra_key)
    device = issue(CertSpec(device.subject, DEVICE.private), extra.subject, extra_key)
    sentence = refused(
        se_chain_evidence(DEVICE, PKI, chain=[device, extra, PKI.signer()]), "chain_invalid"
    )
    assert "pathLenConstraint" in sentence


def test_an_unknown_critical_extension_is_chain_invalid():
    ext = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00")
    device = PKI.device_cert(extra=[(ext, True)])
    sentence = refused(
        se_chain_evidence(DEVICE, PKI, chain=[device, PKI.signer()]), "chain_invalid"
    )
    assert "1.3.6.1.4.1.55555.1" in sentence


def test_a_signature_with_a_weak_hash_is_chain_invalid():
    device = PKI.device_cert(hash_alg=hashes.SHA224())
    sentence = refused(
        se_chain_evidence(DEVICE, PKI, chain=[device, PKI.signer()]), "chain_invalid"
    )
    assert "sha224" in sentence


# -- unknown_root / no_roots --------------------------------------------------------------------


def test_a_chain_to_a_root_the_gateway_was_not_given_is_unknown_root():
    other = TrustAndGo(DEVICE, root_key=ec_key(700), signer_key=ec_key(701))
    other_root = other.root(
        subject=x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Rogue Root")])
    )
    signer = issue(signer_spec(other.signer_key), other_root.subject, other.root_key)
    device = issue(device_spec(DEVICE.private), signer.subject, other.signer_key)
    sentence = refused(se_chain_evidence(DEVICE, chain=[device, signer]), "unknown_root")
    assert "Rogue Root" in sentence
    sentence = refused(
        se_chain_evidence(DEVICE, chain=[device, signer, other_root]), "unknown_root"
    )
    assert "Rogue Root" in sentence


def test_a_root_named_like_the_configured_one_but_another_key_is_unknown_root():
    impostor = TrustAndGo(DEVICE, root_key=ec_key(710))  # same names, different root key
    sentence = refused(se_chain_evidence(DEVICE, impostor), "unknown_root")
    assert "not signed by it" in sentence


def test_no_configured_se_roots_is_no_roots():
    sentence = refused(se_chain_evidence(DEVICE, PKI), "no_roots", policy(se_roots=()))
    assert "se_roots" in sentence


# -- validity -----------------------------------------------------------------------------------


def test_an_expired_signer_certificate_is_cert_expired():
    signer = PKI.signer(not_after=NOW - dt.timedelta(days=1))
    chain = [PKI.device_cert(), signer]
    sentence = refused(se_chain_evidence(DEVICE, PKI, chain=chain), "cert_expired")
    assert "Signer 2C10" in sentence


def test_an_expired_root_is_cert_expired():
    pki = TrustAndGo(DEVICE)
    root = pki.root(not_after=NOW - dt.timedelta(seconds=1))
    refused(se_chain_evidence(DEVICE, pki), "cert_expired", policy(se_roots=(root,)))


def test_a_device_cert_not_yet_valid_is_cert_not_yet_valid():
    device = PKI.device_cert(not_before=NOW + dt.timedelta(days=2))
    sentence = refused(
        se_chain_evidence(DEVICE, PKI, chain=[device, PKI.signer()]), "cert_not_yet_valid"
    )
    assert "device certificate" in sentence


def test_validity_is_judged_at_the_policy_time():
    device = PKI.device_cert(not_before=NOW + dt.timedelta(days=2))
    raw = se_chain_evidence(DEVICE, PKI, chain=[device, PKI.signer()])
    later = NOW_MS + 3 * 86_400_000
    challenges = Challenges()
    challenges.now_ms = later
    challenges.issue()
    assert verify(raw, policy(now_ms=later), challenges).kind == "se-chain"


# -- key_mismatch ---------------------------------------------------------------------------------


def test_a_certificate_for_another_key_is_key_mismatch():
    other = make_key("p256", 12)
    device = issue(device_spec(other.private), PKI.signer().subject, PKI.signer_key)
    sentence = refused(se_chain_evidence(DEVICE, PKI, chain=[device, PKI.signer()]), "key_mismatch")
    assert "certifies another key" in sentence


def test_evidence_naming_another_public_key_is_key_mismatch():
    other = make_key("p256", 12)
    raw = se_chain_evidence(DEVICE, PKI, public_key=other.compressed.hex())
    refused(raw, "key_mismatch")


# -- proof_invalid --------------------------------------------------------------------------------


def test_a_proof_signed_by_another_key_is_proof_invalid():
    proof = enroll_statement(make_key("p256", 13))
    sentence = refused(se_chain_evidence(DEVICE, PKI, proof=proof), "proof_invalid")
    assert "not by key" in sentence


def test_a_proof_with_a_bad_signature_is_proof_invalid():
    good = enroll_statement(DEVICE)
    bad = good[:-1] + bytes([good[-1] ^ 1])
    sentence = refused(se_chain_evidence(DEVICE, PKI, proof=bad), "proof_invalid")
    assert "does not verify" in sentence


def test_a_proof_with_a_high_s_signature_is_proof_invalid():
    from kit.independent_signer import make_record

    body = {"v": 1, "k": "enroll", "c": CHALLENGE}
    proof = make_record(DEVICE, body, sig_transform=lambda r, s, n: rs_bytes(r, n - s))
    sentence = refused(se_chain_evidence(DEVICE, PKI, proof=proof), "proof_invalid")
    assert "n/2" in sentence


def test_a_record_passed_as_the_proof_is_proof_invalid():
    from kit.independent_signer import make_record, payload

    record = make_record(DEVICE, payload("hb"))
    sentence = refused(se_chain_evidence(DEVICE, PKI, proof=record), "proof_invalid")
    assert "it is a record (k = 'hb')" in sentence


def test_a_proof_whose_serial_is_not_the_config_zones_is_proof_invalid():
    proof = enroll_statement(DEVICE, sn=bytes(9))
    refused(se_chain_evidence(DEVICE, PKI, proof=proof), "proof_invalid")


def test_a_proof_with_an_unknown_field_is_proof_invalid():
    proof = enroll_statement(DEVICE, extra=1)
    assert "unknown field" in refused(se_chain_evidence(DEVICE, PKI, proof=proof), "proof_invalid")


# -- challenges -----------------------------------------------------------------------------------


def test_a_proof_without_a_challenge_is_challenge_missing():
    proof = enroll_statement(DEVICE, c=DROP)
    refused(se_chain_evidence(DEVICE, PKI, proof=proof), "challenge_missing")


def test_a_challenge_never_issued_is_challenge_unknown():
    refused(se_chain_evidence(DEVICE, PKI), "challenge_unknown", challenges=Challenges())


def test_a_challenge_of_the_wrong_length_is_challenge_unknown_without_asking_the_table():
    challenges = Challenges()
    challenges.issue()
    proof = enroll_statement(DEVICE, c=b"short")
    refused(se_chain_evidence(DEVICE, PKI, proof=proof), "challenge_unknown", challenges=challenges)
    assert challenges.calls == []


def test_a_stale_challenge_is_challenge_expired():
    challenges = Challenges(ttl_ms=900_000)
    challenges.issue(at_ms=NOW_MS - 900_001)
    refused(se_chain_evidence(DEVICE, PKI), "challenge_expired", challenges=challenges)


def test_a_replayed_challenge_is_challenge_replayed():
    challenges = Challenges()
    challenges.issue()
    raw = se_chain_evidence(DEVICE, PKI)
    verify(raw, challenges=challenges)
    challenges.consume(CHALLENGE)
    refused(raw, "challenge_replayed", challenges=challenges)


def test_the_challenge_is_asked_last_never_for_evidence_that_fails_otherwise():
    challenges = Challenges()
    challenges.issue()
    bad = PKI.device_cert(issuer_key=ec_key(555))
    refused(
        se_chain_evidence(DEVICE, PKI, chain=[bad, PKI.signer()]),
        "chain_invalid",
        challenges=challenges,
    )
    refused(
        se_chain_evidence(
            DEVICE, PKI, proof=enroll_statement(DEVICE, cfg=config_zone(lock_value=0x55))
        ),
        "chip_unlocked",
        challenges=challenges,
    )
    assert challenges.calls == []


def test_verify_stored_skips_freshness_but_not_presence():
    raw = se_chain_evidence(DEVICE, PKI)
    assert verify_stored(raw, KEY, policy()).kind == "se-chain"  # no table at all
    with pytest.raises(EvidenceRefused) as info:
        verify_stored(
            se_chain_evidence(DEVICE, PKI, proof=enroll_statement(DEVICE, c=DROP)), KEY, policy()
        )
    assert info.value.reason == "challenge_missing"


# -- the chip's config zone ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "words"),
    [
        (config_zone(lock_config=0x55), "configuration zone is not locked"),
        (config_zone(lock_value=0x55), "data zone is not locked"),
    ],
)
def test_an_unlocked_chip_is_chip_unlocked(zone: bytes, words: str):
    proof = enroll_statement(DEVICE, cfg=zone)
    assert words in refused(se_chain_evidence(DEVICE, PKI, proof=proof), "chip_unlocked")


@pytest.mark.parametrize(
    ("slot_config", "key_config", "words"),
    [
        (0x0005, 0x0053, "not secret"),  # IsSecret clear: the key could be read
        (0x0084, 0x0053, "external signatures"),  # ReadKey bit 0 clear
        (0x4085, 0x0053, "PrivWrite"),  # WriteConfig bit 2: a key from outside could be written
        (0x0085, 0x0052, "not a private key slot"),  # KeyConfig.Private clear
        (0x0085, 0x0043, "not P-256"),  # KeyType 000
    ],
)
def test_a_wrong_slot_config_is_slot_config(slot_config: int, key_config: int, words: str):
    proof = enroll_statement(
        DEVICE, cfg=config_zone(slot_config=slot_config, key_config=key_config)
    )
    assert words in refused(se_chain_evidence(DEVICE, PKI, proof=proof), "slot_config")


def test_an_updatable_slot_genkey_allowed_passes():
    # Trust&GO slots 2..4: SlotConfig 0x2085, GenKey may replace the key with one made inside.
    proof = enroll_statement(DEVICE, cfg=config_zone(slot=2, slot_config=0x2085))
    assert verify(se_chain_evidence(DEVICE, PKI, proof=proof, slot=2)).summary["chip"]["slot"] == 2


def test_the_slot_checked_is_the_evidence_files_slot():
    proof = enroll_statement(DEVICE, cfg=config_zone(slot=2))
    refused(se_chain_evidence(DEVICE, PKI, proof=proof), "slot_config")  # slot 0 is data


def test_the_trust_and_go_san_quirk_is_read_past():
    # The TNGTLS device certificate's SAN is a directoryName whose serialNumber
    # "eui48_..." is a PrintableString holding '_': cryptography refuses the whole
    # extension list of such a certificate, so the gateway reads extensions from the DER.
    device = PKI.device_cert()
    with pytest.raises(ValueError):
        _ = device.extensions
    assert verify(se_chain_evidence(DEVICE, PKI)).kind == "se-chain"
