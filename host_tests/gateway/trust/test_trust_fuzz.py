"""Property: a good evidence file with random damage is refused with a reason, never a traceback.

Whatever the damage (a flipped bit, a replaced byte, a cut, an insertion), verify_evidence
either raises EvidenceRefused with a code from the table and a one-line sentence, or the
damage did not change what the file says (JSON whitespace): anything else is a bug.
"""

from __future__ import annotations

import json
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kit.crafted_evidence import (
    NOW_MS,
    Challenges,
    TpmPki,
    TrustAndGo,
    line_evidence,
    se_chain_evidence,
    tpm_evidence,
)
from kit.independent_signer import make_key
from signet_gateway.trust import REASONS, EvidenceRefused, TrustPolicy, verify_evidence
from signet_gateway.verify.pubkeys import DevicePublicKey

DEVICE = make_key("p256", 51)
KEY = DevicePublicKey.from_sec1(DEVICE.compressed)
LINE = make_key("p256", 52)
SE, TPM = TrustAndGo(DEVICE), TpmPki()
POLICY = TrustPolicy(
    se_roots=(SE.root(),),
    tpm_roots=(TPM.root(),),
    line_keys=(DevicePublicKey.from_sec1(LINE.compressed),),
    now_ms=NOW_MS,
)
GOOD = [se_chain_evidence(DEVICE, SE), tpm_evidence(DEVICE, TPM), line_evidence(LINE, DEVICE)]
EXAMPLES = int(os.environ.get("SIGNET_FUZZ_EXAMPLES", "600"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(raw: bytes, original: bytes) -> None:
    challenges = Challenges()
    challenges.issue()
    try:
        verify_evidence(raw, KEY, POLICY, challenges.check)
    except EvidenceRefused as refusal:
        assert refusal.reason in REASONS
        assert refusal.sentence and "\n" not in refusal.sentence
    else:
        assert json.loads(raw) == json.loads(original), "damaged evidence verified"


def test_the_undamaged_files_verify():
    for raw in GOOD:
        challenges = Challenges()
        challenges.issue()
        verify_evidence(raw, KEY, POLICY, challenges.check)


@FUZZ
@given(st.sampled_from(GOOD), st.data())
def test_a_flipped_bit(original: bytes, data: st.DataObject) -> None:
    pos = data.draw(st.integers(0, len(original) - 1))
    bit = data.draw(st.integers(0, 7))
    raw = bytearray(original)
    raw[pos] ^= 1 << bit
    check(bytes(raw), original)


@FUZZ
@given(st.sampled_from(GOOD), st.data())
def test_replaced_cut_or_inserted_bytes(original: bytes, data: st.DataObject) -> None:
    pos = data.draw(st.integers(0, len(original)))
    cut = data.draw(st.integers(0, 8))
    insert = data.draw(st.binary(max_size=8))
    check(original[:pos] + insert + original[pos + cut :], original)
