"""Enrollment challenges: issued, answered once, expired, replayed, raced; and the schema's
CHECK that keeps the hardware tier for evidence that verified."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from kit.crafted_evidence import TpmPki, tpm_evidence, tpms_attest, tpmt_public
from kit.gatewaykit import Dev
from kit.independent_signer import make_key
from signet_gateway.store.admission import enroll
from signet_gateway.store.model import DatabaseError, StoreError, now_ms
from signet_gateway.store.sqlite import Store
from signet_gateway.trust import EvidenceRefused, TrustPolicy
from signet_gateway.verify.pubkeys import DevicePublicKey
from signet_tools.runners.gateway_process import create_gateway_database


@pytest.fixture
def db(store_at: Path | str) -> Path | str:
    """A new gateway store on each engine (SQLite, PostgreSQL)."""
    create_gateway_database(store_at)
    return store_at


def test_a_challenge_is_open_until_it_expires_or_is_used(db: Path | str) -> None:
    with Store(db) as store:
        nonce, expires = store.issue_challenge(60_000, issued_ms=1_000)
        assert len(nonce) == 32 and expires == 61_000
        assert store.check_challenge(nonce, 60_999) is None
        assert store.check_challenge(nonce, 61_000) == "challenge_expired"
        assert store.check_challenge(bytes(32), 2_000) == "challenge_unknown"
        other, _ = store.issue_challenge(60_000)
        assert other != nonce  # os.urandom, never a counter
        with store.transaction():
            store.add_device(Dev(700).key, "software", challenge=other)
        assert store.check_challenge(other) == "challenge_replayed"
        assert store.challenge(other)[3] == Dev(700).kid  # type: ignore[index]


DEVICE = make_key("p256", 4242)
KEY = DevicePublicKey.from_sec1(DEVICE.compressed, "p256")
PKI = TpmPki()


def tpm_answer(nonce: bytes) -> bytes:
    """TPM2_Certify evidence for DEVICE whose extraData is ``nonce``."""
    return tpm_evidence(DEVICE, PKI, attest=tpms_attest(tpmt_public(DEVICE), extra_data=nonce))


def policy() -> TrustPolicy:
    return TrustPolicy(tpm_roots=(PKI.root(),), now_ms=now_ms())


def test_evidence_answering_one_challenge_enrolls_once_even_when_raced(db: Path | str) -> None:
    with Store(db) as store:
        nonce, _ = store.issue_challenge(60_000)
    evidence = tpm_answer(nonce)
    # Two enrollments of the same evidence at once, each on its own connection: the write
    # transaction serialises them; exactly one passes, the other is refused, never both.
    outcomes: list[str] = []
    start = threading.Barrier(2)

    def attempt(name: str) -> None:
        with Store(db) as store:
            start.wait()
            try:
                enroll(store, KEY, "hardware", policy=policy(), evidence=evidence, name=name)
                outcomes.append("enrolled")
            except EvidenceRefused as refused:
                outcomes.append(refused.reason)
            except StoreError as exc:
                outcomes.append(str(exc))

    threads = [threading.Thread(target=attempt, args=(f"n{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == ["challenge_replayed", "enrolled"], outcomes
    with Store(db) as store:
        device = store.device(KEY.device_id)
        assert device is not None and device.tier == "hardware"
        assert device.evidence_kind == "tpm2-certify" and device.evidence == evidence
        assert device.evidence_summary  # what the verification found, for people
        assert store.challenge(nonce)[3] == KEY.device_id  # type: ignore[index]


def test_a_refused_enrollment_leaves_the_challenge_open(db: Path | str) -> None:
    with Store(db) as store:
        nonce, _ = store.issue_challenge(60_000)
        evidence = tpm_answer(nonce)
        no_root = TrustPolicy(now_ms=now_ms())
        with pytest.raises(EvidenceRefused) as refused:
            enroll(store, KEY, "hardware", policy=no_root, evidence=evidence)
        assert refused.value.reason == "no_roots"
        assert store.check_challenge(nonce) is None and store.device(KEY.device_id) is None
        assert enroll(store, KEY, "hardware", policy=policy(), evidence=evidence).tier == "hardware"


def test_an_expired_or_unknown_challenge_is_refused_with_its_reason(db: Path | str) -> None:
    with Store(db) as store:
        stale, _ = store.issue_challenge(1_000, issued_ms=now_ms() - 2_000)
        for nonce, reason in (
            (stale, "challenge_expired"),
            (bytes(range(32)), "challenge_unknown"),
        ):
            with pytest.raises(EvidenceRefused) as refused:
                enroll(store, KEY, "hardware", policy=policy(), evidence=tpm_answer(nonce))
            assert refused.value.reason == reason
        assert store.device(KEY.device_id) is None


def test_the_hardware_tier_cannot_be_written_without_verified_evidence(db: Path | str) -> None:
    dev = Dev(701)
    with Store(db) as store:
        with pytest.raises(StoreError, match="needs evidence that verified"):
            store.enroll(dev.key, "hardware")
        store.enroll(dev.key, "software")
        # Whatever writes the table: the CHECK refuses 'hardware' without an evidence kind.
        for sql, args in (
            ("UPDATE devices SET tier = 'hardware' WHERE kid = ?", (dev.kid,)),
            ("UPDATE devices SET tier = 'hardware', evidence = ? WHERE kid = ?", (b"\0", dev.kid)),
        ):
            with pytest.raises((sqlite3.IntegrityError, DatabaseError), match=r"(?i)check"):
                store.conn.execute(sql, args)
        verified = SimpleNamespace(kind="se-chain", summary={}, raw=b"chain")
        assert store.enroll(Dev(702).key, "hardware", evidence=verified).tier == "hardware"
