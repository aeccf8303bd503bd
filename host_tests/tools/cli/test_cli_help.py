"""`signet ... --help` says what each command does when an option is left out, and every
command that works on the gateway's database finds it by the same rule."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from cli_tree import commands, name, options, takes_value

from signet_tools.cli.main import main
from signet_tools.runners.gateway_process import create_gateway_database


def _in_required_group(parser: argparse.ArgumentParser, action: argparse.Action) -> bool:
    return any(g.required and action in g._group_actions for g in parser._mutually_exclusive_groups)


OPTIONAL = [
    (" ".join(path), action)
    for path, parser in commands()
    for action in options(parser)
    if takes_value(action)
    and action.option_strings
    and not action.required
    and not _in_required_group(parser, action)
]


@pytest.mark.parametrize(
    ("command", "action"), OPTIONAL, ids=[f"{c} {name(a)}" for c, a in OPTIONAL]
)
def test_every_option_states_its_default(command: str, action: argparse.Action) -> None:
    assert "default" in (action.help or ""), f"signet {command} {name(action)}: {action.help!r}"


def test_help_runs_for_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    for path, _parser in commands():
        with pytest.raises(SystemExit) as stop:
            main([*path, "--help"])
        assert stop.value.code == 0
        assert "usage: signet " + " ".join(path) in capsys.readouterr().out


# `db init` names the file it creates, always (tools/cli/db.py): no default to fall back on.
CREATES_THE_DATABASE = {"db init"}


def test_config_and_db_follow_one_rule_everywhere() -> None:
    rules = {}
    for path, parser in commands():
        by_dest = {a.dest: a for a in options(parser)}
        command = " ".join(path)
        if {"config", "db"} <= by_dest.keys() and command not in CREATES_THE_DATABASE:
            config, db = by_dest["config"], by_dest["db"]
            optional = not any(_in_required_group(parser, a) or a.required for a in (config, db))
            rules[command] = ("--config" in config.option_strings, config.help, db.help, optional)
    assert {"enroll", "devices", "revoke", "report", "export peaq", "simulate"} <= rules.keys()
    assert len(set(rules.values())) == 1, rules
    assert next(iter(rules.values()))[3], "--config/--db are optional: ./gateway.toml is used"


def test_report_and_export_use_the_default_gateway_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["report"]) == 2
    assert "./gateway.toml does not exist" in capsys.readouterr().err
    create_gateway_database(tmp_path / "signet.db")
    (tmp_path / "gateway.toml").write_text('[store]\npath = "signet.db"\n')
    assert main(["report", "--format", "json"]) == 0
    assert '"devices": []' in capsys.readouterr().out
    assert main(["export", "peaq"]) == 0
    assert capsys.readouterr().out.strip() == "[]"
