"""`signet enroll / devices / revoke` and how the verifier sees enrolled, unknown and
revoked keys."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kit.gatewaykit import Dev, write_config
from signet_gateway.store.model import StoreError, StoreOpenError
from signet_gateway.store.sqlite import Store
from signet_gateway.verify.refusals import Refused
from signet_gateway.verify.verifier import Verifier
from signet_tools.cli.main import main

SIGNET = str(Path(sys.executable).parent / "signet")


@pytest.fixture
def pem(tmp_path: Path) -> tuple[Dev, Path]:
    dev = Dev(50)
    path = tmp_path / "dev.pub.pem"
    path.write_bytes(dev.pem())
    return dev, path


def _init(db: Path | str) -> Path | str:
    """`signet db init --db db`: the only way a database comes to exist."""
    assert main(["db", "init", "--db", str(db)]) == 0
    return db


def test_enroll_list_revoke(tmp_path: Path, store_at: Path | str, pem, capsys) -> None:
    dev, path = pem
    db = _init(store_at)  # on each engine
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


def test_hardware_tier_needs_evidence_that_verifies(
    tmp_path: Path, store_at: Path | str, pem, capsys
) -> None:
    dev, path = pem
    db = _init(store_at)  # on each engine
    assert main(["enroll", "--pubkey", str(path), "--tier", "hardware", "--db", str(db)]) == 2
    assert "--tier hardware needs --evidence FILE" in capsys.readouterr().err
    # Evidence nobody can check (what version 1 accepted) is refused: exit 1, one line.
    evidence = tmp_path / "chain.pem"
    evidence.write_bytes(b"-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n")
    assert main(["enroll", "--pubkey", str(path), "--tier", "hardware", "--evidence",
                 str(evidence), "--db", str(db)]) == 1  # fmt: skip
    err = capsys.readouterr().err
    assert err.startswith("signet: error: enrollment refused (evidence_malformed): ")
    assert err.count("\n") == 1
    with Store(db) as store:
        assert store.device(dev.kid) is None


def test_bad_inputs(tmp_path: Path, store_at: Path | str, pem, capsys) -> None:
    _dev, path = pem
    db = _init(store_at)  # on each engine
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key")
    assert main(["enroll", "--pubkey", str(junk), "--tier", "software", "--db", str(db)]) == 2
    assert "not a valid PEM public key" in capsys.readouterr().err
    assert main(["enroll", "--pubkey", str(tmp_path / "none.pem"), "--tier", "software",
                 "--db", str(db)]) == 2  # fmt: skip
    assert "cannot read public key" in capsys.readouterr().err
    assert main(["enroll", "--pubkey", str(path), "--tier", "software", "--evidence",
                 str(path), "--db", str(db)]) == 2  # fmt: skip
    assert main(["revoke", "0123456789abcdef", "--db", str(db)]) == 2  # names no device
    assert main(["devices", "--db", str(tmp_path / "nothing.db")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_config_selects_the_database(tmp_path: Path, pem, capsys) -> None:
    dev, path = pem
    db = tmp_path / "from-config.db"
    cfg = write_config(tmp_path / "gateway.toml", 1883, db, create_db=False)
    assert main(["db", "init", "--config", str(cfg)]) == 0
    assert f"created gateway database {db}" in capsys.readouterr().out
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


# -- only `signet db init` creates a database ------------------------------------------------


def test_db_init_creates_a_database_once(tmp_path: Path, capsys) -> None:
    db = tmp_path / "g.db"
    assert main(["db", "init", "--db", str(db)]) == 0
    assert f"created gateway database {db}" in capsys.readouterr().out
    with Store(db, readonly=True) as store:
        assert store.devices() == []
    # Every reading command accepts the new database before the gateway ever ran on it.
    assert main(["report", "--db", str(db), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["devices"] == []
    before = db.read_bytes()
    assert main(["db", "init", "--db", str(db)]) == 2  # never over an existing one
    assert "already exists" in capsys.readouterr().err
    assert db.read_bytes() == before
    missing_dir = tmp_path / "typo" / "g.db"
    assert main(["db", "init", "--db", str(missing_dir)]) == 2
    assert f"directory {missing_dir.parent} does not exist" in capsys.readouterr().err
    assert not missing_dir.parent.exists()
    with pytest.raises(SystemExit) as usage:  # the file to create is always named
        main(["db", "init"])
    assert usage.value.code == 2


def test_store_opens_only_an_existing_signet_database(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "g.db"
    for readonly in (False, True):
        with pytest.raises(StoreOpenError, match="signet db init"):
            Store(missing, readonly=readonly)
    assert not missing.parent.exists()
    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(StoreOpenError, match="not a Signet gateway database"):
        Store(empty)
    junk = tmp_path / "junk.db"
    junk.write_text("not sqlite at all, long enough to have a header" * 4)
    with pytest.raises(StoreOpenError):
        Store(junk)
    with pytest.raises(StoreError, match="already exists"):
        Store.create(empty)
    assert empty.read_bytes() == b""


def _signet(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SIGNET, *args], capture_output=True, text=True, timeout=60, cwd=cwd
    )  # fmt: skip


def test_every_command_refuses_a_missing_database(tmp_path: Path, pem) -> None:
    """One line naming the file and how to create it, exit 2, nothing created: a typo in
    --db or [store] path must not become a second, empty registry."""
    _dev, path = pem
    db = tmp_path / "typo" / "g.db"
    cfg = write_config(tmp_path / "gateway.toml", 1, db, create_db=False)
    commands = [
        ["enroll", "--pubkey", str(path), "--tier", "software", "--db", str(db)],
        ["enroll", "--pubkey", str(path), "--tier", "software", "--config", str(cfg)],
        ["devices", "--db", str(db)],
        ["revoke", "0123456789abcdef", "--db", str(db)],
        ["report", "--db", str(db)],
        ["export", "peaq", "--config", str(cfg)],
        ["simulate", "--devices", "1", "--duration", "5", "--broker", "127.0.0.1:1",
         "--db", str(db), "--out", str(tmp_path / "sim")],
        ["gateway", "run", "--config", str(cfg)],
    ]  # fmt: skip
    for command in commands:
        result = _signet(*command, cwd=tmp_path)
        assert result.returncode == 2, (command, result.stderr)
        lines = result.stderr.splitlines()
        assert lines[-1].startswith("signet: error: "), (command, result.stderr)
        assert f"database {db} does not exist" in lines[-1], (command, lines)
        assert f"signet db init --db {db}" in lines[-1], (command, lines)
        assert "Traceback" not in result.stderr, command
    assert not db.parent.exists()
    assert not (tmp_path / "sim").exists()


# -- names and device ids: one resolver -------------------------------------------------------


def _enroll(db: Path, pem_path: Path, *extra: str) -> int:
    return main(["enroll", "--pubkey", str(pem_path), "--tier", "software", *extra,
                 "--db", str(db)])  # fmt: skip


def _pems(tmp_path: Path, count: int) -> list[tuple[Dev, Path]]:
    out = []
    for i in range(count):
        dev = Dev(60 + i)
        path = tmp_path / f"d{i}.pem"
        path.write_bytes(dev.pem())
        out.append((dev, path))
    return out


def test_names_are_unique_among_active_devices(tmp_path: Path, capsys) -> None:
    db = _init(tmp_path / "g.db")
    (old, old_pem), (new, new_pem), (third, third_pem) = _pems(tmp_path, 3)
    assert _enroll(db, old_pem, "--name", "sim-01") == 0
    assert _enroll(db, new_pem, "--name", "sim-01") == 1
    err = capsys.readouterr().err
    assert f"the name 'sim-01' is taken by active device {old.kid}" in err
    with pytest.raises(SystemExit) as usage:
        main(["enroll", "--pubkey", str(new_pem), "--tier", "software", "--name", " ",
              "--db", str(db)])  # fmt: skip
    assert usage.value.code == 2
    with Store(db, readonly=True) as store:
        assert [d.kid for d in store.devices()] == [old.kid]

    # The replacement takes the name once the old device is revoked (by its name).
    assert main(["revoke", "sim-01", "--db", str(db)]) == 0
    assert f"revoked {old.kid}" in capsys.readouterr().out
    assert _enroll(db, new_pem, "--name", "sim-01") == 0
    capsys.readouterr()
    # The name now means the active device: report, export and revoke agree.
    assert main(["report", "--db", str(db), "--device", "sim-01", "--format", "json"]) == 0
    capsys.readouterr()
    with Store(db, readonly=True) as store:
        assert store.resolve_device("sim-01").kid == new.kid
        assert store.resolve_device(old.kid).kid == old.kid  # the old one by its id
    # A second revoked holder: with no active device left, the name is ambiguous.
    assert main(["revoke", "sim-01", "--db", str(db)]) == 0
    assert _enroll(db, third_pem, "--name", "sim-01") == 0
    assert main(["revoke", "sim-01", "--db", str(db)]) == 0
    capsys.readouterr()
    assert main(["revoke", "sim-01", "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert "'sim-01' matches 3 devices" in err
    assert all(d.kid in err for d in (old, new, third)) and "give the full device id" in err


def test_old_duplicate_names_are_refused_where_a_device_is_looked_up(
    tmp_path: Path, capsys
) -> None:
    """A database enrolled before names were unique: nothing crashes, nothing picks one."""
    db = _init(tmp_path / "g.db")
    devs = _pems(tmp_path, 3)
    for i, (_dev, pem_path) in enumerate(devs):
        assert _enroll(db, pem_path, "--name", f"tmp-{i}") == 0
    with Store(db) as store, store.transaction() as conn:  # what an old gateway allowed
        conn.execute("UPDATE devices SET name = 'sim-01'")
    capsys.readouterr()
    cfg = write_config(tmp_path / "gateway.toml", 1883, db)
    for command in (
        ["report", "--db", str(db), "--device", "sim-01"],
        ["export", "peaq", "--config", str(cfg), "--device", "sim-01"],
        ["revoke", "sim-01", "--db", str(db)],
    ):
        assert main(command) == 2, command
        err = capsys.readouterr().err
        assert err.startswith("signet: error: 'sim-01' matches 3 devices: "), err
        assert all(f"{d.kid} ('sim-01', active)" in err for d, _ in devs), err
    with Store(db, readonly=True) as store:
        assert all(d.active for d in store.devices())  # the refused revoke changed nothing
    assert main(["devices", "--db", str(db)]) == 0  # listing is not a lookup
    assert main(["report", "--db", str(db), "--format", "json"]) == 0  # nor is all devices
    assert main(["report", "--db", str(db), "--device", devs[1][0].kid[:8]]) == 0


def test_one_prefix_rule_and_one_error_text_for_every_command(tmp_path: Path, pem, capsys) -> None:
    dev, path = pem
    db = _init(tmp_path / "g.db")
    assert _enroll(db, path, "--name", "cafe-1") == 0
    cfg = write_config(tmp_path / "gateway.toml", 1883, db)
    unknown = "0123456789abcdef0123456789abcdef"
    takers = {
        "revoke": lambda d: ["revoke", d, "--db", str(db)],
        "report": lambda d: ["report", "--db", str(db), "--device", d],
        "export": lambda d: ["export", "peaq", "--config", str(cfg), "--device", d],
    }
    for name, argv in takers.items():
        for wanted in (unknown, dev.kid[:7], "nobody"):
            capsys.readouterr()
            assert main(argv(wanted)) == 2, (name, wanted)
            err = capsys.readouterr().err
            assert err == (
                f"signet: error: no device {wanted!r} is enrolled: give a device id, a unique"
                " prefix of at least 8 hex digits, or a device name (`signet devices` lists"
                " them)\n"
            ), (name, err)
    for wanted in (dev.kid[:8], dev.kid.upper(), "cafe-1"):
        assert main(takers["report"](wanted)) == 0, wanted
        assert main(takers["export"](wanted)) == 0, wanted
    assert main(takers["revoke"](dev.kid[:8])) == 0
    capsys.readouterr()
    assert main(takers["revoke"](dev.kid)) == 1  # found, but refused: already revoked
    assert "already revoked" in capsys.readouterr().err
