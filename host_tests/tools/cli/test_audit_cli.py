"""`signet audit export | verify | records` as an operator and an auditor run them: exit
statuses, one-line errors, --json, the key as a line, a file or a PEM, and the records
command's output read back by `signet verify`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kit.audit_site import Site, make_site
from signet_gateway.audit import bundle as bundle_format
from signet_gateway.log import key as log_key
from signet_tools.runners.offline_gateway import OfflineGateway

SIGNET = str(Path(sys.executable).parent / "signet")


def _run(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SIGNET, *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return make_site(tmp_path_factory.mktemp("site"), devices=2, hours=30)


@pytest.fixture(scope="module")
def exported(site: Site) -> Path:
    out = site.root / "till-0.bundle"
    done = _run("audit", "export", "--config", site.config, "--device", "till-0",
                "--out", out, "--consistency-all")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"wrote {out}:" in done.stderr and "of device " + site.devices[0].kid in done.stderr
    assert out.stat().st_mode & 0o777 == 0o666 & ~_umask()  # a file to hand over
    return out


def test_export_then_verify_with_the_vkey_line_a_vkey_file_or_the_pem(
    site: Site, exported: Path, tmp_path: Path
) -> None:
    done = _run("audit", "verify", exported, "--gateway-key", site.vkey)
    assert done.returncode == 0, done.stderr
    assert "every check passed" in done.stdout and "figures     every figure" in done.stdout
    vkey_file = tmp_path / "log.vkey"
    vkey_file.write_text(site.vkey + "\n")
    pem = log_key.save_public(site.key_path, log_key.load(site.key_path))
    for key in (vkey_file, pem):
        done = _run("audit", "verify", exported, "--gateway-key", key, "--jobs", "1")
        assert done.returncode == 0, (key, done.stderr)


def test_a_bundle_exported_from_either_store_verifies(store_at: Path | str, tmp_path: Path) -> None:
    """`audit export` reads a PostgreSQL store as it reads a SQLite file: its bundle passes
    every check, the figures recomputed from its records equal the signed report's."""
    site = make_site(tmp_path / "site", devices=1, hours=8, db=store_at)
    out = tmp_path / "till-0.bundle"
    done = _run("audit", "export", "--config", site.config, "--device", "till-0", "--out", out)
    assert done.returncode == 0, done.stderr
    done = _run("audit", "verify", out, "--gateway-key", site.vkey, "--json")
    assert done.returncode == 0, done.stderr
    verdict = json.loads(done.stdout)
    assert verdict["ok"] is True and "figures" in verdict["passed"], verdict
    assert verdict["records"] > 5, verdict


def test_verify_json_and_a_tampered_record(site: Site, exported: Path, tmp_path: Path) -> None:
    done = _run("audit", "verify", exported, "--gateway-key", site.vkey, "--json")
    result = json.loads(done.stdout)
    assert done.returncode == 0 and result["ok"] and result["failure"] is None
    assert result["device"] == site.devices[0].kid and result["records"] > 30
    bundle = bundle_format.decode(exported.read_bytes())
    raw = bundle.records[9].raw
    bundle.records[9] = bundle.records[9]._replace(raw=raw[:-1] + bytes([raw[-1] ^ 1]))
    bad = tmp_path / "bad.bundle"
    bad.write_bytes(bundle_format.encode(bundle))
    done = _run("audit", "verify", bad, "--gateway-key", site.vkey)
    assert done.returncode == 1 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"signet: {bad}: record #9 (log index ")
    assert "bad_signature" in lines[0]
    done = _run("audit", "verify", bad, "--gateway-key", site.vkey, "--json")
    result = json.loads(done.stdout)
    assert done.returncode == 1 and not result["ok"]
    assert result["failure"]["record"]["number"] == 9
    assert result["failure"]["record"]["reason"].startswith("bad_signature")


def test_records_are_a_cbor_sequence_signet_verify_reads(site: Site, tmp_path: Path) -> None:
    out = tmp_path / "till-1.cbor"
    done = _run("audit", "records", "--config", site.config, "--device", "till-1", "--out", out)
    assert done.returncode == 0, done.stderr
    pem = tmp_path / "till-1.pem"
    pem.write_bytes(site.devices[1].key.to_pem())
    done = _run("verify", out, "--pubkey", pem)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count('"valid"') + done.stdout.count("valid") >= site.devices[1].n
    to_stdout = subprocess.run(
        [SIGNET, "audit", "records", "--db", site.db, "--device", site.devices[1].kid],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert to_stdout.returncode == 0 and to_stdout.stdout == out.read_bytes()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--device", "nobody"], "nobody"),
        (["--device", "till-0", "--from", "2023-13-01"], "--from: expected YYYY-MM-DD"),
        (["--device", "till-0", "--consistency-from", "3"], "--consistency-from 3: no stored"),
    ],
)
def test_export_refusals_are_one_line_exit_2(
    site: Site, tmp_path: Path, args: list[str], message: str
) -> None:
    done = _run("audit", "export", "--config", site.config, "--out", tmp_path / "b", *args)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("signet: error: ") and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "b").exists()


def test_export_needs_the_log_key_and_logged_records(tmp_path: Path) -> None:
    site = make_site(tmp_path / "a", devices=1, hours=3)
    site.key_path.unlink()
    done = _run("audit", "export", "--config", site.config, "--device", "till-0",
                "--out", tmp_path / "b")  # fmt: skip
    assert done.returncode == 2 and "gateway-log.key" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    # A record stored while [log] enabled = false: not in the log yet.
    site = make_site(tmp_path / "c", devices=1, hours=3)
    gw = OfflineGateway(site.db, log=False)
    dev = site.devices[0]
    gw.deliver([(dev.kid, dev.sign("hb", 99 * 3_600_000, None, iv=3_600_000, st="ok"), 1)])
    gw.close()
    done = _run("audit", "export", "--config", site.config, "--device", "till-0",
                "--out", tmp_path / "b")  # fmt: skip
    assert done.returncode == 2
    assert "is not in the log yet" in done.stderr and "log on" in done.stderr


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("nonsense", "--gateway-key: verifier key"),
        ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "not a PEM public key"),
    ],
)
def test_verify_usage_errors_exit_2(exported: Path, key: str, message: str) -> None:
    done = _run("audit", "verify", exported, "--gateway-key", key)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_verify_a_file_that_is_not_there_or_not_a_bundle(site: Site, tmp_path: Path) -> None:
    done = _run("audit", "verify", tmp_path / "none", "--gateway-key", site.vkey)
    assert done.returncode == 2 and "cannot read" in done.stderr
    (tmp_path / "junk").write_bytes(b"\xff\x00junk")
    done = _run("audit", "verify", tmp_path / "junk", "--gateway-key", site.vkey)
    assert done.returncode == 1 and "bundle: not a CBOR item" in done.stderr


def test_records_refuses_an_unknown_device(site: Site) -> None:
    done = _run("audit", "records", "--db", site.db, "--device", "nobody")
    assert done.returncode == 2 and done.stderr.startswith("signet: error: ")
    assert "nobody" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_the_progress_bar_draws_one_line_for_large_bundles(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from signet_tools.cli.audit import PROGRESS_MIN, _ProgressBar

    bar = _ProgressBar()
    bar(10, PROGRESS_MIN - 1)  # a small bundle: no bar
    bar.close()
    assert capsys.readouterr().err == ""
    bar = _ProgressBar()
    for done in (0, PROGRESS_MIN // 2, PROGRESS_MIN):
        bar(done, PROGRESS_MIN)
    bar.close()
    err = capsys.readouterr().err
    assert err.count("\r") == 3 and err.endswith("\n") and err.count("\n") == 1
    assert f"{PROGRESS_MIN:,}/{PROGRESS_MIN:,} (100%)" in err and "(50%)" in err
