"""Exit statuses and the error line shared by every `signet` command."""

from __future__ import annotations

import sys

EXIT_OK = 0
EXIT_REFUSED = 1  # ran fine, but something was refused, left incomplete or a target missed
EXIT_USAGE = 2  # bad arguments, unreadable files, invalid keys or configs


def fail(message: str, code: int = EXIT_USAGE) -> int:
    """Print `signet: error: MESSAGE` on stderr; return the exit status to use."""
    print(f"signet: error: {message}", file=sys.stderr)
    return code
