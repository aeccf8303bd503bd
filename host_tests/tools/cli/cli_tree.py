"""The `signet` argparse tree, walked: every command a user can type, with its options.

Built from tools/cli/main.py build_parser, so a new command is covered by the tests that use
this without anyone listing it.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from signet_tools.cli.main import build_parser


def commands(
    parser: argparse.ArgumentParser | None = None, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """(("bench", "sign"), its parser), ... for every leaf command, in definition order."""
    parser = parser or build_parser()
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not groups:
        yield path, parser
        return
    for name, sub in groups[0].choices.items():
        yield from commands(sub, (*path, name))


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The arguments a user gives a command (not --help, not the subcommand choice)."""
    return [
        a
        for a in parser._actions
        if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))
    ]


def takes_value(action: argparse.Action) -> bool:
    return action.nargs != 0  # store_true/store_false/count take none


def name(action: argparse.Action) -> str:
    """--long-name, or the positional's dest."""
    return action.option_strings[-1] if action.option_strings else action.dest


def exclusive_with(parser: argparse.ArgumentParser, action: argparse.Action) -> list[str]:
    """Names of the options that cannot be given together with `action`."""
    out: list[str] = []
    for group in parser._mutually_exclusive_groups:
        if action in group._group_actions:
            out += [name(a) for a in group._group_actions if a is not action]
    return out
