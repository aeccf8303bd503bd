"""The shipped systemd units and the agent's drop-ins (deploy/) load in systemd without an
unknown key or a bad value: `systemd-analyze verify` on each, with the drop-ins found
where systemd looks for them (<unit>.d/ beside the unit). ExecStart is pointed at a binary
that exists here (the installed path, /opt/signet, does not)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from kit.paths import REPO

DEPLOY = REPO / "deploy"
ANALYZE = shutil.which("systemd-analyze")


def _verify(tmp_path: Path, unit: str, dropins: list[Path]) -> str:
    """systemd-analyze verify's output for unit (a template's instance, signet-gateway@1,
    from the template file signet-gateway@.service)."""
    instance = re.sub(r"@[^.]+\.", "@.", unit)
    text = (DEPLOY / instance).read_text()
    (tmp_path / instance).write_text(re.sub(r"(?m)^ExecStart=\S+", "ExecStart=/bin/true", text))
    if dropins:
        d = tmp_path / f"{unit}.d"
        d.mkdir()
        for path in dropins:
            shutil.copy(path, d / path.name)
    env = dict(os.environ, SYSTEMD_UNIT_PATH=f"{tmp_path}:", SYSTEMD_LOG_LEVEL="info")
    result = subprocess.run(
        [str(ANALYZE), "verify", unit], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    return result.stdout + result.stderr


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize(
    ("unit", "dropin"),
    [
        ("signet-gateway.service", None),
        ("signet-gateway@1.service", None),
        ("signet-agent.service", None),
        ("signet-agent.service", "tpm2.conf"),
        ("signet-agent.service", "atecc608.conf"),
    ],
)
def test_units_and_dropins_load_cleanly(tmp_path: Path, unit: str, dropin: str | None) -> None:
    dropins = [] if dropin is None else [DEPLOY / f"{unit}.d" / dropin]
    out = _verify(tmp_path, unit, dropins)
    problems = [
        line
        for line in out.splitlines()
        if re.search(r"Unknown|[Ii]nvalid|Failed to parse|ignoring|bad-setting", line)
        and "not executable" not in line
    ]
    assert not problems, out


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")
def test_a_wrong_key_in_a_dropin_is_caught(tmp_path: Path) -> None:
    bad = tmp_path / "src" / "bad.conf"
    bad.parent.mkdir()
    bad.write_text("[Service]\nDeviceAlow=/dev/tpmrm0 rw\n")  # the check this file relies on
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    assert "Unknown key" in _verify(unit_dir, "signet-agent.service", [bad])


def _service_section(unit: str) -> dict[str, str]:
    lines = (DEPLOY / unit).read_text().split("[Service]")[1].split("\n[")[0].splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def test_the_template_runs_its_instance_as_a_named_worker_like_the_single_unit() -> None:
    """signet-gateway@NAME.service is signet-gateway.service plus --worker NAME: the same
    user, sandbox, stop and restart policy (a killed worker is restarted: its share of the
    records waits in its broker session until it is back)."""
    single = _service_section("signet-gateway.service")
    worker = _service_section("signet-gateway@.service")
    assert worker.pop("ExecStart") == single.pop("ExecStart") + " --worker %i"
    assert worker == single
    assert worker["Restart"] == "on-failure" and worker["RestartPreventExitStatus"] == "2"
