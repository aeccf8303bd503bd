"""argparse types shared by the `signet` commands: a bad number is a usage error (exit 2)
naming the option, never a traceback from deep inside the command."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

# Longer than any wait a command needs, and far below what socket timeouts and time_t take
# (socket.settimeout(1e10) raises OverflowError).
MAX_SECONDS = 7 * 86400


def positive_seconds(text: str) -> float:
    """A duration in seconds: a finite number > 0 and <= MAX_SECONDS (a week).

    Zero is refused too: as a socket timeout it means "do not wait at all"."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or not 0 < value <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(
            f"must be a number of seconds above 0 and at most {MAX_SECONDS}, got {text!r}"
        )
    return value


def non_negative_number(text: str) -> float:
    """A finite number >= 0 (a rate: 0 means none; nan and inf mean nothing)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """A count: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


def refuse_empty_values(parser: argparse.ArgumentParser) -> None:
    """Make an empty or blank value a usage error for every argument of every command.

    No `signet` argument means anything when empty, and some would silently mean something
    else (`--out ""` is the current directory, `--port ""` picks the first USB port, `--device
    ""` is a prefix of every device). Applied once to the whole tree by build_parser, so a new
    command gets it too; each argument's own type still runs on non-empty values.
    """
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):  # a parser with aliases is listed twice
                refuse_empty_values(sub)
        elif action.nargs != 0 and not getattr(action.type, "refuses_empty", False):
            action.type = _not_empty(action.type)


def _not_empty(convert: Callable[[str], Any] | None) -> Callable[[str], Any]:
    def check(text: str) -> Any:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"must not be empty, got {text!r}")
        return text if convert is None else convert(text)

    # argparse names the type in "invalid <name> value" when convert raises ValueError
    check.__name__ = getattr(convert, "__name__", "str")
    check.refuses_empty = True  # type: ignore[attr-defined]
    return check
