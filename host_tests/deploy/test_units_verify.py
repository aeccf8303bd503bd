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
    text = (DEPLOY / unit).read_text()
    (tmp_path / unit).write_text(re.sub(r"(?m)^ExecStart=\S+", "ExecStart=/bin/true", text))
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
