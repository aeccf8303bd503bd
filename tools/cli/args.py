"""argparse types shared by the `signet` commands: a bad number is a usage error (exit 2)
naming the option, never a traceback from deep inside the command."""

from __future__ import annotations

import argparse
import math

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


def positive_int(text: str) -> int:
    """A count: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value
