"""The demo's fleet audited: `signet demo` (shortened: a real broker, the gateway process,
the virtual fleet with its outages, reboots and attacks), then `signet audit export` and
`signet audit verify` for every device, the signed report equal to `signet report`."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from signet_gateway.audit import bundle as bundle_format
from signet_gateway.audit.signed_report import open_report
from signet_gateway.log.note import Verifier
from signet_tools.fleet import demo

SIGNET = str(Path(sys.executable).parent / "signet")


def _signet(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SIGNET, *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.timeout(240)
def test_every_device_of_the_demo_exports_and_verifies_with_signet_reports_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code = demo.run(Path("demo"), devices=3, duration_s=12.0, rate_per_min=60.0, seed=5)
    out = capsys.readouterr().out
    assert code == 0, out
    config = tmp_path / "demo" / "gateway.toml"
    done = _signet("gateway", "key", "--config", config)
    assert done.returncode == 0, done.stderr
    vkey = done.stdout.strip()
    with sqlite3.connect(f"file:{tmp_path / 'demo' / 'gateway.db'}?mode=ro", uri=True) as conn:
        machines = [m for (m,) in conn.execute("SELECT DISTINCT machine FROM devices")]
    assert len(machines) >= 3
    audited = 0
    for machine in machines:
        bundle = tmp_path / f"{machine}.bundle"
        done = _signet("audit", "export", "--config", config, "--device", machine,
                       "--out", bundle, "--consistency-all")  # fmt: skip
        assert done.returncode == 0, done.stderr
        done = _signet("audit", "verify", bundle, "--gateway-key", vkey, "--json")
        result = json.loads(done.stdout)
        assert done.returncode == 0 and result["ok"], (machine, result["failure"])
        signed = open_report(
            bundle_format.decode(bundle.read_bytes()).report, Verifier.from_vkey(vkey)
        )
        done = _signet("report", "--config", config, "--device", machine, "--format", "json")
        assert done.returncode == 0, done.stderr
        live = json.loads(done.stdout)
        assert signed["report"] == live
        audited += bool(live["devices"]) and result["records"] > 0
    assert audited >= 3
