"""`signet enroll / devices / revoke` and how the verifier sees enrolled, unknown and
revoked keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kit.gatewaykit import Dev, write_config
from signet_gateway.store.sqlite import Store
from signet_gateway.verify.refusals import Refused
from signet_gateway.verify.verifier import Verifier
from signet_tools.cli.main import main


@pytest.fixture
def pem(tmp_path: Path) -> tuple[Dev, Path]:
    dev = Dev(50)
    path = tmp_path / "dev.pub.pem"
    path.write_bytes(dev.pem())
    return dev, path


def test_enroll_list_revoke(tmp_path: Path, pem, capsys) -> None:
    dev, path = pem
    db = tmp_path / "g.db"
    assert main(["enroll", "--pubkey", str(path), "--tier", "software", "--name", "cafe-1",
                 "--db", str(db)]) == 0  # fmt: skip
    assert f"enrolled {dev.kid} (p256, tier software, name 'cafe-1')" in capsys.readouterr().out
    assert main(["devices", "--db", str(db), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["device"] == dev.kid and row["tier"] == "software" and row["status"] == "active"
    assert row["ack"] == 0 and row["missing"] == 0

    with Store(db) as store:
        verifier = Verifier(store.active_keys())
    assert verifier.verify(dev.make("hb"), dev.kid).seq == 1

    # Enrolling twice is refused (exit 1), revoking works once, a revoked key stays revoked.
    assert main(["enroll", "--pubkey", str(path), "--tier", "software", "--db", str(db)]) == 1
    assert "already enrolled" in capsys.readouterr().err
    assert main(["revoke", dev.kid[:10], "--db", str(db)]) == 0
    assert f"revoked {dev.kid}" in capsys.readouterr().out
    assert main(["revoke", dev.kid, "--db", str(db)]) == 1
    assert main(["enroll", "--pubkey", str(path), "--tier", "software", "--db", str(db)]) == 1
    assert "already revoked" in capsys.readouterr().err
    assert main(["devices", "--db", str(db)]) == 0
    assert "revoked" in capsys.readouterr().out
    with Store(db) as store:
        verifier = Verifier(store.active_keys())
        assert store.revoked_ids() == {dev.kid}
    with pytest.raises(Refused) as err:
        verifier.verify(dev.make("hb"), dev.kid)
    assert err.value.reason == "unknown_key"


def test_hardware_tier_needs_evidence_which_is_stored(tmp_path: Path, pem, capsys) -> None:
    dev, path = pem
    db = tmp_path / "g.db"
    assert main(["enroll", "--pubkey", str(path), "--tier", "hardware", "--db", str(db)]) == 2
    assert "--tier hardware needs --evidence FILE" in capsys.readouterr().err
    evidence = tmp_path / "chain.pem"
    evidence.write_bytes(b"-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n")
    assert main(["enroll", "--pubkey", str(path), "--tier", "hardware", "--evidence",
                 str(evidence), "--db", str(db)]) == 0  # fmt: skip
    with Store(db) as store:
        device = store.device(dev.kid)
    assert device is not None and device.tier == "hardware"
    assert device.evidence == evidence.read_bytes()


def test_bad_inputs(tmp_path: Path, pem, capsys) -> None:
    _dev, path = pem
    db = tmp_path / "g.db"
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key")
    assert main(["enroll", "--pubkey", str(junk), "--tier", "software", "--db", str(db)]) == 2
    assert "not a valid PEM public key" in capsys.readouterr().err
    assert main(["enroll", "--pubkey", str(tmp_path / "none.pem"), "--tier", "software",
                 "--db", str(db)]) == 2  # fmt: skip
    assert "cannot read public key" in capsys.readouterr().err
    assert main(["enroll", "--pubkey", str(path), "--tier", "software", "--evidence",
                 str(path), "--db", str(db)]) == 2  # fmt: skip
    assert main(["revoke", "0123456789abcdef", "--db", str(db)]) == 1
    assert main(["devices", "--db", str(tmp_path / "nothing.db")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_config_selects_the_database(tmp_path: Path, pem, capsys) -> None:
    dev, path = pem
    db = tmp_path / "from-config.db"
    cfg = write_config(tmp_path / "gateway.toml", 1883, db)
    assert main(["enroll", "--pubkey", str(path), "--tier", "software", "--config",
                 str(cfg)]) == 0  # fmt: skip
    with Store(db) as store:
        assert store.device(dev.kid) is not None
    bad = tmp_path / "bad.toml"
    bad.write_text("[mqtt]\nport = 'x'\n")
    assert main(["devices", "--config", str(bad)]) == 2
    assert "mqtt.port: must be an integer" in capsys.readouterr().err


def test_gateway_run_refuses_a_bad_config(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[ingest]\nbatch_max = 0\n")
    assert main(["gateway", "run", "--config", str(bad)]) == 2
    assert "ingest.batch_max: must be an integer 1..65535, got 0" in capsys.readouterr().err
