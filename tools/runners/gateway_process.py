"""`signet gateway run` as a child process: for the demo, the benchmark and the tests.

One way to write a local gateway.toml and to start, wait for, stop and kill a
gateway process. Its log (stdout and stderr) goes to a file, so a test or the
demo can show what it said when something went wrong.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SUBSCRIBED = "subscribed to signet/v1/+/rec"


class GatewayProcessError(RuntimeError):
    """The gateway exited or did not say what was awaited in time."""


def create_gateway_database(db: Path | str, aggregate: dict[str, Any] | None = None) -> None:
    """A new, empty gateway database at db (a path, or a PostgreSQL URL): what `signet db
    init` does.

    The store's tables (Store.create, which refuses an existing file) and the aggregation's,
    set up for the [aggregate] settings given (the gateway checks them again at every start),
    so that `signet report` reads a database the gateway has not run on yet. Raises
    StoreError, or ConfigError for a bad [aggregate] table.
    """
    from signet_gateway.mcr.aggregate import Aggregator, settings_from_config
    from signet_gateway.store.sqlite import Store

    hb_tolerance = settings_from_config(aggregate or {})  # checked before anything is made
    with Store.create(db) as store:
        Aggregator(store.conn, hb_tolerance=hb_tolerance)


def write_gateway_config(
    path: Path, port: int, db: Path | str, *, create_db: bool = True, **sections: dict[str, Any]
) -> Path:
    """A gateway.toml for a broker on 127.0.0.1:port and a database at db (a SQLite file's
    path, or a PostgreSQL URL: [store] url).

    Each keyword is a TOML section whose keys override or extend the defaults. With
    create_db, a SQLite file that does not exist yet is created (create_gateway_database), as
    an operator's `signet db init` would: the gateway never creates one itself. A PostgreSQL
    database is the caller's to create.
    """
    from signet_gateway.store.sqlite import is_url

    url = is_url(db)
    if create_db and not url and not Path(db).exists():
        create_gateway_database(Path(db), sections.get("aggregate"))
    config: dict[str, dict[str, Any]] = {
        "mqtt": {"host": "127.0.0.1", "port": port, "client_id": f"signet-gw-{path.parent.name}"},
        # Absolute: the gateway resolves a relative path against the config file's folder.
        "store": {"url": str(db)} if url else {"path": str(Path(db).resolve())},
        "ingest": {"summary_s": 0},
    }
    for name, values in sections.items():
        config.setdefault(name, {}).update(values)
    lines = []
    for name, values in config.items():
        lines.append(f"[{name}]")
        for key, value in values.items():
            if isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, dict):  # an inline table of numbers ([http] advertised_yield)
                text = "{" + ", ".join(f'"{k}" = {v!r}' for k, v in value.items()) + "}"
            else:
                text = f'"{value}"' if isinstance(value, str) else repr(value)
            lines.append(f"{key} = {text}")
    path.write_text("\n".join(lines) + "\n")
    return path


class GatewayProcess:
    """start() waits until the gateway has subscribed; stop() is SIGTERM, kill() is SIGKILL.

    With new_session, the gateway leads a process group of its own (with its verifier
    processes): signal_group() then signals the whole group, as a terminal's Ctrl-C or
    systemd's stop do.

    launcher: what the Python interpreter runs, followed by ``gateway run --config FILE``
    (default ``-m signet_tools``, the `signet` command; a test may run a wrapper script that
    instruments the gateway, host_tests/kit/killpoint.py).

    worker: the worker's name (``--worker``), for a configuration with [mqtt] shared_group.
    """

    def __init__(
        self,
        config: Path,
        log: Path,
        *,
        new_session: bool = False,
        launcher: Sequence[str] = ("-m", "signet_tools"),
        worker: str | None = None,
    ) -> None:
        self.config = Path(config)
        self.log = Path(log)
        self.new_session = new_session
        self.launcher = tuple(launcher)
        self.worker = worker
        self.proc: subprocess.Popen[bytes] | None = None
        self._offset = 0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self, wait: bool = True, timeout: float = 30.0) -> GatewayProcess:
        self._offset = self.log.stat().st_size if self.log.exists() else 0
        worker = () if self.worker is None else ("--worker", self.worker)
        with open(self.log, "ab") as out:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [sys.executable, *self.launcher, "gateway", "run", "--config",
                 str(self.config), *worker],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(os.environ, PYTHONUNBUFFERED="1"),
                start_new_session=self.new_session,
            )  # fmt: skip
        if wait:
            self.wait_log(SUBSCRIBED, timeout)
        return self

    def text(self) -> str:
        """What the gateway logged since the last start()."""
        try:
            with open(self.log, "rb") as f:
                f.seek(self._offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.text().splitlines()[-lines:])

    def wait_log(self, needle: str, timeout: float) -> None:
        """Poll the log (with a deadline) until needle appears; error if the gateway exits."""
        deadline = time.monotonic() + timeout
        while True:
            if needle in self.text():
                return
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                raise GatewayProcessError(f"the gateway exited ({code}):\n{self.tail()}")
            if time.monotonic() > deadline:
                raise GatewayProcessError(
                    f"no {needle!r} from the gateway within {timeout:g}s:\n{self.tail()}"
                )
            time.sleep(0.02)  # polling interval of a file, not synchronisation

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (drain, commit, acknowledge, disconnect); its exit code.

        A gateway that does not stop in time is killed and GatewayProcessError raised.
        """
        proc, self.proc = self.proc, None
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise GatewayProcessError(
                f"the gateway did not stop on SIGTERM in {timeout:g}s"
            ) from None

    def signal_group(self, signum: int) -> None:
        """Send signum to the gateway's whole process group (needs new_session)."""
        if not self.new_session:
            raise GatewayProcessError("signal_group() needs GatewayProcess(new_session=True)")
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signum)

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for the gateway to exit by itself; its exit code (GatewayProcessError if not)."""
        proc = self.proc
        if proc is None:
            raise GatewayProcessError("the gateway was not started")
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise GatewayProcessError(
                f"the gateway did not exit in {timeout:g}s:\n{self.tail()}"
            ) from None
        self.proc = None
        return code

    def kill(self) -> None:
        """SIGKILL: a crash at an arbitrary moment."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
