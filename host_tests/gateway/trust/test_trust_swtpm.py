"""The gateway's TPM checks against a real TPM: swtpm creates, certifies; gateway/trust verifies.

The evidence comes from tools/pi/tpm (tpm2-pytss) and the AK certificate from the test CA
(kit/tpm_ca.py); the gateway parses it with its own unmarshalling (gateway/trust), so a
disagreement about the TPM 2.0 layout between the two shows here.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import pytest

from kit.crafted_evidence import Challenges
from kit.tpm_ca import make_tpm_ca
from signet_gateway.trust import EvidenceRefused, TrustPolicy, verify_evidence
from signet_gateway.verify.pubkeys import DevicePublicKey
from signet_tools.pi.tpm_key import TpmSigner, certify_evidence, create_ak, create_tpm_key
from signet_tools.runners.swtpm import Swtpm

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def certified(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TpmSigner, dict, bytes]]:
    folder = tmp_path_factory.mktemp("swtpm-trust")
    challenge = os.urandom(32)
    with Swtpm(folder / "state") as tpm, create_tpm_key(tpm.tcti, folder / "device.tpm") as signer:
        ak = create_ak(tpm.tcti, folder / "ak.tpm")
        ca = make_tpm_ca()
        evidence = certify_evidence(tpm.tcti, signer, ak, ca.ak_chain_der(ak.public_key), challenge)
        yield signer, {"evidence": evidence, "root": ca.root}, challenge


def test_swtpm_evidence_verifies_at_the_gateway(certified: tuple[TpmSigner, dict, bytes]) -> None:
    signer, made, challenge = certified
    raw = json.dumps(made["evidence"]).encode()
    key = DevicePublicKey.from_sec1(signer.public_key)
    challenges = Challenges()
    challenges.now_ms = int(time.time() * 1000)
    challenges.issue(challenge)
    policy = TrustPolicy(tpm_roots=(made["root"],), now_ms=challenges.now_ms)
    verified = verify_evidence(raw, key, policy, challenges.check)
    assert verified.kind == "tpm2-certify"
    assert challenges.calls == [challenge]
    assert (
        verified.summary["tpm"]["attributes"] == "0x00040472"
    )  # fixedTPM|fixedParent|SDO|uwa|sign


def test_swtpm_evidence_for_another_key_or_root_is_refused(
    certified: tuple[TpmSigner, dict, bytes],
) -> None:
    signer, made, challenge = certified
    raw = json.dumps(made["evidence"]).encode()
    challenges = Challenges()
    challenges.now_ms = int(time.time() * 1000)
    challenges.issue(challenge)
    policy = TrustPolicy(tpm_roots=(make_tpm_ca().root,), now_ms=challenges.now_ms)
    with pytest.raises(EvidenceRefused) as info:
        verify_evidence(raw, DevicePublicKey.from_sec1(signer.public_key), policy, challenges.check)
    assert info.value.reason == "unknown_root"
