"""`signet agent provision` on a Pi, then the `signet enroll` command it prints, run as printed
against a gateway database whose [trust] roots are the test ones: a Trust&GO chip (se-chain
evidence), a chip the maker configured and locked (line-statement evidence), a TPM (swtpm,
tpm2-certify evidence), and the refusals. The ATECC608 is the emulator, handed to the
provisioning code in place of /dev/i2c-1 (the only part replaced)."""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from kit.atecc608_emu import GENKEY_SLOT_CONFIG, TNG_SLOT0_KEY_CONFIG, blank_chip, trust_and_go
from signet import binding
from signet_tools.cli.main import main
from signet_tools.pi import provision
from signet_tools.runners.gateway_process import write_gateway_config

pytestmark = pytest.mark.timeout(60)


def pem(certs: list[Any]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A working directory with the gateway's config (its [trust] filled in by the test)."""
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def gateway(site: Path, **trust: list[str]) -> None:
    write_gateway_config(site / "gateway.toml", 1883, site / "gateway.db", trust=trust)


def agent_config(site: Path, key: dict[str, Any]) -> Path:
    path = site / "pi" / "agent.json"
    path.parent.mkdir(exist_ok=True)
    config = {"mqtt": {"host": "127.0.0.1"}, "key": key, "journal": {"dir": "journal"}}
    path.write_text(json.dumps(config))
    return path


def challenge(capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["challenge", "--config", "gateway.toml"]) == 0
    return capsys.readouterr().out.strip()


def enroll_as_printed(out: str, capsys: pytest.CaptureFixture[str]) -> str:
    """Run the `signet enroll ...` line provisioning printed, exactly as printed."""
    line = next(x.strip() for x in out.splitlines() if x.strip().startswith("signet enroll "))
    assert main(shlex.split(line)[1:]) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def devices(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    assert main(["devices", "--json", "--config", "gateway.toml"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def use_chip(monkeypatch: pytest.MonkeyPatch, chip: Any) -> None:
    monkeypatch.setattr(provision, "open_i2c", lambda key_cfg: chip)


def test_trust_and_go_chip_answers_the_challenge_and_enrolls_as_hardware(
    site: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    made = trust_and_go()
    (site / "se-root.pem").write_bytes(made.root_pem())
    (site / "chain.pem").write_bytes(pem(made.chain[:2]))  # device, then signer
    gateway(site, se_roots=["se-root.pem"])
    nonce = challenge(capsys)
    use_chip(monkeypatch, made.chip)
    config = agent_config(site, {"type": "atecc608", "path": "chip.json", "address": 0x35})
    argv = ["agent", "provision", "--config", str(config), "--backend", "atecc608",
            "--challenge", nonce, "--chain", "chain.pem"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    bound = binding.load(str(site / "pi" / "chip.json"))
    assert bound["serial"] == made.chip.serial and bound["slot"] == 0
    evidence = json.loads((site / "pi" / "chip.evidence.json").read_text())
    assert evidence["kind"] == "se-chain" and evidence["public_key"] == bound["public_key"].hex()
    assert f"--tier hardware --evidence {site}/pi/chip.evidence.json" in out
    said = enroll_as_printed(out, capsys)
    assert "tier hardware, evidence se-chain" in said
    (row,) = devices(capsys)
    assert row["tier"] == "hardware" and row["device"] == bound["kid"]
    # The challenge was used up: provisioning again with it is refused at enrollment.
    assert main(argv) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "signet enroll" in x)
    assert main(shlex.split(line.strip())[1:]) == 1
    assert "challenge_replayed" in capsys.readouterr().err


def test_a_chip_the_maker_locked_gets_a_new_key_and_a_line_statement(
    site: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["line", "keygen", "--out", "line/line.key"]) == 0
    assert 'line_keys = ["line/line.key.pub.pem"]' in capsys.readouterr().out
    gateway(site, line_keys=["line/line.key.pub.pem"])
    chip = blank_chip(slots={0: (GENKEY_SLOT_CONFIG, TNG_SLOT0_KEY_CONFIG)})
    chip.lock_config()
    chip.lock_data()  # locked by the maker, slot 0 still empty
    use_chip(monkeypatch, chip)
    config = agent_config(site, {"type": "atecc608", "path": "chip.json"})
    argv = ["agent", "provision", "--config", str(config), "--line-key", "line/line.key",
            "--line-name", "line-7"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "made by GenKey in the chip" in out and "kind       line-statement" in out
    bound = binding.load(str(site / "pi" / "chip.json"))
    assert chip.public_key_bytes(0)[:32] == bound["public_key"][1:]
    assert "tier hardware, evidence line-statement" in enroll_as_printed(out, capsys)
    (row,) = devices(capsys)
    assert row["evidence_summary"]["line"] == "line-7"
    # Again: the key is kept (the same identity), unless --new-key.
    assert main(argv) == 0 and "already in the chip (kept)" in capsys.readouterr().out
    assert binding.load(str(site / "pi" / "chip.json"))["kid"] == bound["kid"]


def test_an_unlocked_chip_is_refused_with_its_reason(
    site: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    made = trust_and_go(lock=False)
    (site / "chain.pem").write_bytes(pem(made.chain[:2]))
    use_chip(monkeypatch, made.chip)
    config = agent_config(site, {"type": "atecc608", "path": "chip.json", "address": 0x35})
    argv = ["agent", "provision", "--config", str(config), "--challenge", "00" * 32,
            "--chain", "chain.pem"]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("signet: error: the chip is refused (config_unlocked): ATECC608 at 0x35")
    assert not (site / "pi" / "chip.json").exists()


def test_a_chain_for_another_chip_is_refused_before_anything_is_written(
    site: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    made, other = trust_and_go(), trust_and_go()
    (site / "chain.pem").write_bytes(pem(other.chain[:2]))
    use_chip(monkeypatch, made.chip)
    config = agent_config(site, {"type": "atecc608", "path": "chip.json", "address": 0x35})
    argv = ["agent", "provision", "--config", str(config), "--challenge", "00" * 32,
            "--chain", "chain.pem"]  # fmt: skip
    assert main(argv) == 2
    assert "--chain: the first certificate is not this device's" in capsys.readouterr().err
    assert not (site / "pi" / "chip.evidence.json").exists()


def test_usage_errors_name_what_is_missing(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = agent_config(site, {"type": "atecc608", "path": "chip.json"})
    assert main(["agent", "provision", "--config", str(config)]) == 2
    assert "needs either --challenge HEX and --chain" in capsys.readouterr().err
    assert main(["agent", "provision", "--config", str(config), "--backend", "tpm2"]) == 2
    assert "the config's key.type is 'atecc608'" in capsys.readouterr().err


def test_a_file_key_is_made_once_and_enrolls_as_software(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway(site)
    config = agent_config(site, {"type": "file", "path": "dev.key"})
    assert main(["agent", "provision", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert os.stat(site / "pi" / "dev.key").st_mode & 0o077 == 0
    assert "--tier software" in out and "tier software" in enroll_as_printed(out, capsys)


# -- TPM (swtpm) ----------------------------------------------------------------------------

tpm_key = pytest.importorskip("signet_tools.pi.tpm_key", reason="the tpm extra is not installed")
from kit.tpm_ca import make_tpm_ca  # noqa: E402
from signet_tools.runners.swtpm import Swtpm  # noqa: E402


def test_a_tpm_key_is_certified_by_its_ak_and_enrolls_as_hardware(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca = make_tpm_ca()
    (site / "tpm-root.pem").write_bytes(ca.root_pem())
    gateway(site, tpm_roots=["tpm-root.pem"])
    with Swtpm(site / "swtpm") as tpm:
        config = agent_config(site, {"type": "tpm2", "path": "device.tpm", "tcti": tpm.tcti})
        argv = ["agent", "provision", "--config", str(config)]
        # First run: the attestation key is made; its certificate comes from the CA.
        assert main(argv) == 1
        out = capsys.readouterr().out
        assert "have your TPM CA certify that AK" in out
        ak_pub = serialization.load_pem_public_key(
            (site / "pi" / "device.tpm.ak.pub.pem").read_bytes()
        )
        (site / "ak.pem").write_bytes(pem([ca.certify_ak(ak_pub)]))  # type: ignore[arg-type]
        nonce = challenge(capsys)
        assert main([*argv, "--ak-chain", "ak.pem", "--challenge", nonce]) == 0, (
            capsys.readouterr().err
        )
        out = capsys.readouterr().out
    assert "kind       tpm2-certify" in out
    assert "tier hardware, evidence tpm2-certify" in enroll_as_printed(out, capsys)


def test_rotating_to_another_slot_of_the_chip(
    site: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`signet agent rotate` for a chip key: the new key is made by GenKey in another slot
    (the old one must still sign), then the old key signs the hand-over; the printed enroll
    command rotates the machine at the gateway on the new key's line statement."""
    from signet_tools.pi import keys

    assert main(["line", "keygen", "--out", "line/line.key"]) == 0
    gateway(site, line_keys=["line/line.key.pub.pem"])
    slots = {s: (GENKEY_SLOT_CONFIG, TNG_SLOT0_KEY_CONFIG) for s in (0, 2)}
    chip = blank_chip(slots=slots)
    chip.lock_config()
    chip.lock_data()
    use_chip(monkeypatch, chip)
    monkeypatch.setattr(keys, "open_i2c", lambda key_cfg: chip)
    config = agent_config(site, {"type": "atecc608", "path": "chip.json"})
    line_key = ["--line-key", "line/line.key"]
    assert main(["agent", "provision", "--config", str(config), *line_key]) == 0
    enroll_as_printed(capsys.readouterr().out, capsys)
    old = binding.load(str(site / "pi" / "chip.json"))
    argv = ["agent", "rotate", "--config", str(config), *line_key]
    assert main(argv) == 2
    assert "give the new key another slot" in capsys.readouterr().err
    assert main([*argv, "--new-slot", "2"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert f"rotated    {old['kid']} -> " in out and "up to n=0" in out
    new = binding.load(str(site / "pi" / "chip-2.json"))
    assert new["slot"] == 2 and chip.public_key_bytes(2)[:32] == new["public_key"][1:]
    assert chip.public_key_bytes(0)[:32] == old["public_key"][1:]  # the old key untouched
    assert json.loads(config.read_text())["key"]["slot"] == 2  # the config names the new key
    said = enroll_as_printed(out, capsys)
    assert "rotated: machine" in said and "evidence line-statement" in said
