"""[trust] in gateway.toml and load_policy: paths against the config folder; errors name the key."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from kit.crafted_evidence import TpmPki, TrustAndGo, pem
from kit.independent_signer import make_key
from signet_gateway.config import ConfigError, TrustConfig, load, parse
from signet_gateway.trust import load_policy

DEVICE = make_key("p256", 81)
LINE = make_key("p256", 82)


def write_pki(folder: Path) -> None:
    (folder / "roots").mkdir()
    (folder / "line").mkdir()
    (folder / "roots" / "se.pem").write_bytes(pem(TrustAndGo(DEVICE).root(), TpmPki().root()))
    (folder / "roots" / "tpm.pem").write_bytes(pem(TpmPki().root()))
    (folder / "line" / "line-1.pub.pem").write_bytes(LINE.pem)


def test_trust_section_paths_are_relative_to_the_config_file(tmp_path: Path):
    write_pki(tmp_path)
    cfg_file = tmp_path / "gateway.toml"
    cfg_file.write_text(
        '[trust]\nse_roots = ["roots/se.pem"]\ntpm_roots = ["roots/tpm.pem"]\n'
        'line_keys = ["line/line-1.pub.pem"]\nchallenge_ttl_s = 120\n'
    )
    trust = load(cfg_file).trust
    assert trust.se_roots == (tmp_path / "roots" / "se.pem",)
    assert trust.challenge_ttl_s == 120
    policy = load_policy(trust, now_ms=5)
    assert len(policy.se_roots) == 2  # one file may hold a bundle
    assert len(policy.tpm_roots) == 1
    assert [k.device_id for k in policy.line_keys] == [LINE.kid.hex()]
    assert (policy.now_ms, policy.challenge_ttl) == (5, 120)


def test_the_defaults_trust_nothing():
    trust = parse({}).trust
    assert trust == TrustConfig()
    policy = load_policy(trust)
    assert policy.se_roots == policy.tpm_roots == policy.line_keys == ()
    assert policy.challenge_ttl == 900
    assert abs(policy.now_ms - time.time() * 1000) < 60_000


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"se_roots": "roots/se.pem"}, "trust.se_roots: must be a list of path strings"),
        ({"tpm_roots": [1]}, "trust.tpm_roots[0]: must be a non-empty path string"),
        ({"line_keys": [""]}, "trust.line_keys[0]: must be a non-empty path string"),
        ({"challenge_ttl_s": 0}, "trust.challenge_ttl_s: must be an integer 1..604800"),
        ({"challenge_ttl_s": "900"}, "trust.challenge_ttl_s: must be an integer"),
        ({"roots": []}, "trust.roots: unknown key"),
        ({"se_roots": ["missing.pem"]}, "trust.se_roots[0]: cannot read"),
    ],
)
def test_each_wrong_field_is_named(tmp_path: Path, section: dict, message: str):
    with pytest.raises(ConfigError) as info:
        parse({"trust": section}, base_dir=tmp_path)
    assert message in str(info.value)


def test_trust_must_be_a_table():
    with pytest.raises(ConfigError, match=r"\[trust\]: must be a table"):
        parse({"trust": 3})


def test_a_roots_file_that_is_not_pem_names_field_and_file(tmp_path: Path):
    bad = tmp_path / "se.pem"
    bad.write_text("not a certificate")
    trust = parse({"trust": {"se_roots": ["se.pem"]}}, base_dir=tmp_path).trust
    with pytest.raises(ConfigError) as info:
        load_policy(trust)
    assert f"trust.se_roots[0]: {bad} is not a PEM certificate file" in str(info.value)


def test_a_line_key_that_is_not_a_public_key_names_field_and_file(tmp_path: Path):
    write_pki(tmp_path)
    trust = parse({"trust": {"line_keys": ["roots/se.pem"]}}, base_dir=tmp_path).trust
    with pytest.raises(ConfigError) as info:
        load_policy(trust)
    assert f"trust.line_keys[0]: {tmp_path / 'roots' / 'se.pem'} is not a line key" in str(
        info.value
    )


def test_a_roots_file_removed_after_loading_the_config_names_field_and_file(tmp_path: Path):
    write_pki(tmp_path)
    trust = parse({"trust": {"tpm_roots": ["roots/tpm.pem"]}}, base_dir=tmp_path).trust
    (tmp_path / "roots" / "tpm.pem").unlink()
    with pytest.raises(ConfigError, match=r"trust.tpm_roots\[0\]: cannot read .*tpm.pem"):
        load_policy(trust)


def test_a_policy_without_a_time_judges_certificates_now():
    import datetime as dt

    from kit.crafted_evidence import Challenges, se_chain_evidence
    from signet_gateway.trust import EvidenceRefused, TrustPolicy, verify_evidence
    from signet_gateway.verify.pubkeys import DevicePublicKey

    pki = TrustAndGo(DEVICE)
    expired_yesterday = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    raw = se_chain_evidence(
        DEVICE, pki, chain=[pki.device_cert(not_after=expired_yesterday), pki.signer()]
    )
    challenges = Challenges()
    challenges.now_ms = int(time.time() * 1000)
    challenges.issue()
    key = DevicePublicKey.from_sec1(DEVICE.compressed)
    with pytest.raises(EvidenceRefused) as info:
        verify_evidence(raw, key, TrustPolicy(se_roots=(pki.root(),)), challenges.check)
    assert info.value.reason == "cert_expired"
    good = se_chain_evidence(DEVICE, pki)
    assert verify_evidence(good, key, TrustPolicy(se_roots=(pki.root(),)), challenges.check).kind


def test_the_gateway_md_example_loads(tmp_path: Path):
    from kit.paths import REPO

    text = (REPO / "docs" / "GATEWAY.md").read_text()
    example = text.split("```toml\n[trust]\n", 1)[1].split("```", 1)[0]
    pems = {
        "roots/microchip-root-ca-002.pem": pem(TrustAndGo(DEVICE).root()),
        "roots/our-tpm-ak-ca.pem": pem(TpmPki().root()),
        "line/line-1.pub.pem": LINE.pem,
    }
    for rel, data in pems.items():
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        (tmp_path / rel).write_bytes(data)
    (tmp_path / "gateway.toml").write_text("[trust]\n" + example)
    policy = load_policy(load(tmp_path / "gateway.toml").trust)
    assert (len(policy.se_roots), len(policy.tpm_roots), len(policy.line_keys)) == (1, 1, 1)
