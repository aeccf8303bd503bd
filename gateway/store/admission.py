"""Admission: what must hold before a key is enrolled, and the enrollment that follows.

`signet enroll` comes here. A hardware-tier key is enrolled only on evidence that
gateway/trust verified, in the same write transaction that checks the evidence's challenge
and marks it used (Store.add_device): of two enrollments racing on one challenge, one
commits and the other is refused ``challenge_replayed``. A rotation is admitted on a
'rotate' statement signed by the old key (docs/TRUST.md, Rotation). Refusals are
``EvidenceRefused`` (reason code and one sentence, docs/TRUST.md) or StoreError (the
registry refuses: already enrolled, name taken...).
"""

from __future__ import annotations

from signet_gateway.trust import EvidenceRefused, TrustPolicy, verify_evidence, verify_rotation
from signet_gateway.verify.pubkeys import DevicePublicKey

from .model import Device, StoreError, now_ms
from .sqlite import Store

__all__ = ["challenge_refusal", "enroll"]


def challenge_refusal(store: Store, nonce: bytes, at_ms: int) -> EvidenceRefused | None:
    """Why ``nonce`` cannot be answered now (None if it can): the challenge_ok of
    verify_evidence, with a sentence an operator can act on."""
    problem = store.check_challenge(nonce, at_ms)
    if problem is None:
        return None
    short = bytes(nonce).hex()[:16]
    if problem == "challenge_unknown":
        sentence = (
            f"the evidence answers challenge {short}..., which this gateway never issued"
            " (`signet challenge` issues one)"
        )
    elif problem == "challenge_expired":
        sentence = (
            f"challenge {short}... has expired ([trust] challenge_ttl_s): ask for a new one"
            " with `signet challenge` and answer it"
        )
    else:
        used = store.challenge(nonce)
        by = "" if used is None else f" by device {used[3]}"
        sentence = (
            f"challenge {short}... was already used{by}: each challenge serves one enrollment"
        )
    return EvidenceRefused(problem, sentence)


def enroll(
    store: Store,
    key: DevicePublicKey,
    tier: str,
    *,
    policy: TrustPolicy,
    evidence: bytes | None = None,
    name: str | None = None,
    rotate_from: str | None = None,
    statement: bytes | None = None,
) -> Device:
    """Enroll ``key``: software on the operator's word, hardware only on ``evidence`` that
    verifies against ``policy``; with ``rotate_from`` (a device id) as the next key of that
    device's machine, on the old key's rotation ``statement``.

    Raises EvidenceRefused (the evidence or statement does not hold) or StoreError.
    """
    if tier == "hardware" and not evidence:
        raise StoreError("--tier hardware needs --evidence FILE (from the device's provisioning)")
    if tier != "hardware" and evidence is not None:
        raise StoreError("--evidence is for --tier hardware only")
    last_n = None
    if rotate_from is not None:
        old = store.device(rotate_from)
        if old is None:
            raise StoreError(f"no device {rotate_from} is enrolled")
        if not statement:
            raise StoreError("a rotation needs --statement FILE (signed by the old key)")
        rotation = verify_rotation(statement, old.key())
        if rotation.new_key != key:
            raise EvidenceRefused(
                "rotation_invalid",
                f"the rotation statement hands over to key {rotation.new_key.device_id},"
                f" not to the --pubkey given ({key.device_id})",
            )
        last_n = rotation.last_n
    with store.transaction():  # the write lock from here: checks and writes are one step
        answered: list[bytes] = []
        verified = None
        if tier == "hardware":
            assert evidence is not None

            def challenge_ok(nonce: bytes) -> None:
                refusal = challenge_refusal(store, nonce, now_ms())
                if refusal is not None:
                    raise refusal
                answered.append(bytes(nonce))

            verified = verify_evidence(evidence, key, policy, challenge_ok)
        store.add_device(
            key,
            tier,
            name=name,
            evidence=verified,
            challenge=answered[-1] if answered else None,
            rotate_from=rotate_from,
            last_n=last_n,
        )
    device = store.device(key.device_id)
    assert device is not None
    return device
