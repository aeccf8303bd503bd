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


def os_error_line(exc: OSError) -> str:
    """An OSError as the error line: the file first, then what is wrong with it."""
    if exc.filename is None:
        return str(exc)
    where = str(exc.filename) + (f" -> {exc.filename2}" if exc.filename2 is not None else "")
    return f"{where}: {exc.strerror or exc}"
