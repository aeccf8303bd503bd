"""The install steps in the docs and deploy/ agree on the system users: every `useradd` of a
name gives it the same home, so following GATEWAY.md and DEVICE.md on one Pi works (a second
`useradd` of an existing name fails), and each systemd unit runs as the user its guide
creates, with that user's home as its state directory."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from kit.paths import REPO

GUIDES = {"gateway": REPO / "docs" / "GATEWAY.md", "agent": REPO / "docs" / "DEVICE.md"}
UNITS = {
    "gateway": REPO / "deploy" / "signet-gateway.service",
    "agent": REPO / "deploy" / "signet-agent.service",
}


def _useradds(path: Path) -> list[tuple[str, str]]:
    """(user, home) of every `useradd` line in a file (a doc's shell block, a unit comment)."""
    found = []
    for line in path.read_text().splitlines():
        if not re.search(r"\buseradd -", line):  # a command, not prose about one
            continue
        words = shlex.split(line.lstrip("# ").split("  #")[0])
        args = words[words.index("useradd") + 1 :]
        home = next(
            args[i + 1] for i, word in enumerate(args) if word in ("--home-dir", "--home", "-d")
        )
        found.append((args[-1], home))
    return found


def _unit(path: Path) -> dict[str, str]:
    return dict(
        line.split("=", 1) for line in path.read_text().splitlines() if re.match(r"^\w+=", line)
    )


def test_one_home_per_user_name_everywhere() -> None:
    homes: dict[str, set[str]] = {}
    for path in [*GUIDES.values(), *UNITS.values()]:
        for user, home in _useradds(path):
            homes.setdefault(user, set()).add(home)
    assert homes, "no useradd found"
    assert all(len(h) == 1 for h in homes.values()), homes


def test_each_unit_runs_as_the_user_its_guide_creates() -> None:
    users = {}
    for role, guide in GUIDES.items():
        (created,) = set(_useradds(guide))  # one user per guide
        unit = _unit(UNITS[role])
        user, home = created
        assert unit["User"] == user and unit["Group"] == user, (role, unit["User"], user)
        assert home == f"/var/lib/{unit['StateDirectory']}", (role, home)
        assert set(_useradds(UNITS[role])) == {created}  # the unit's install comment agrees
        users[role] = user
    # Two users: on a Pi running both, the gateway cannot read the device's private key.
    assert users["gateway"] != users["agent"]


def test_the_gateway_install_creates_the_database_before_the_first_start() -> None:
    text = GUIDES["gateway"].read_text()
    steps = text[text.index("## Running it on a Pi") :]
    steps = steps[: steps.index("```", steps.index("```sh") + 5)]
    init = steps.index("signet db init --config /etc/signet/gateway.toml")
    assert init < steps.index("systemctl daemon-reload && sudo systemctl enable --now")
    assert "sudo -u signet-gateway" in steps[steps.rindex("\n", 0, init) : init]
    assert "ExecStartPre" not in _unit(UNITS["gateway"])  # creating is an install step


def test_no_unit_restarts_a_process_that_could_not_start() -> None:
    # Exit 2 means the config, key or state is wrong (or held by another process): a
    # restart loop would only hide that, every few seconds, in the journal.
    for role, path in UNITS.items():
        assert _unit(path).get("RestartPreventExitStatus") == "2", role
