"""`signet gateway run` that SIGKILLs itself at a chosen SQL statement: a kill -9 aimed inside
a transaction (the middle of the log's catch-up, of a checkpoint, between a batch's leaves and
its records) that a kill from outside at a random time would almost never hit.

Run as a script, through GatewayProcess(launcher=killpoint.launcher(prefix, nth)):

    python killpoint.py PREFIX NTH gateway run --config FILE

Every SQLite connection the gateway opens gets a trace callback (SQLite calls it as each
statement starts running, once per row of an executemany); when the NTH statement starting
with PREFIX starts, the process writes one line saying so and sends itself SIGKILL: the
statement and everything after it in its transaction never happen, nothing is cleaned up.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
from typing import Any

MARK = "killpoint: SIGKILL at"


def launcher(prefix: str, nth: int) -> tuple[str, ...]:
    """The GatewayProcess launcher that kills the gateway at the nth statement ``prefix``."""
    return (os.path.abspath(__file__), prefix, str(nth))


def install(prefix: str, nth: int) -> None:
    seen = 0
    connect = sqlite3.connect

    def trace(sql: str) -> None:
        nonlocal seen
        if sql.startswith(prefix):
            seen += 1
            if seen == nth:
                os.write(2, f"{MARK} {prefix!r} #{nth}\n".encode())
                os.kill(os.getpid(), signal.SIGKILL)

    def traced_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = connect(*args, **kwargs)
        conn.set_trace_callback(trace)
        return conn

    sqlite3.connect = traced_connect  # type: ignore[assignment]


def main() -> int:
    # Run as a script, this folder is sys.path[0]: drop it so that the test kit's modules
    # cannot shadow anything the gateway imports.
    sys.path.pop(0)
    prefix, nth, *args = sys.argv[1:]
    install(prefix, int(nth))
    from signet_tools.cli.main import main as signet_main

    return signet_main(args)


if __name__ == "__main__":
    sys.exit(main())
