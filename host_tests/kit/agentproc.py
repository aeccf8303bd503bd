"""`signet agent run` as a child process, with its own key, journal and local socket.

For end-to-end tests that kill and restart the agent: start() returns once the socket
answers, kill() is SIGKILL (a crash), stop() is SIGTERM (a clean stop). Its stderr goes to a
log file that survives restarts, so a failure can show what it said.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from signet import config as config_mod
from signet.fsio import Files
from signet.journal import Journal
from signet_tools.pi.local_socket import LocalSocketError, request
from signet_tools.records import keygen
from signet_tools.runners.waiting import wait_until

# Short enough that a test sees reconnects and resends within seconds (DEVICE.md has the keys).
FAST_MQTT = {
    "keepalive_s": 5,
    "timeout_ms": 2000,
    "backoff_min_ms": 100,
    "backoff_max_ms": 1000,
    "ack_timeout_s": 3,
    "ack_wait_ms": 300,
}


class AgentProcessError(AssertionError):
    """The agent exited, or did not answer on its socket in time."""


class AgentProcess:
    """An agent in workdir (key dev.key, config agent.json, journal/, agent.sock)."""

    def __init__(
        self,
        workdir: Path,
        broker_port: int,
        *,
        mqtt: dict[str, Any] | None = None,
        journal: dict[str, Any] | None = None,
        intervals: dict[str, Any] | None = None,
        curve: str = "p256",
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.key = self.workdir / "dev.key"
        self.kid = keygen.generate(curve, self.key).device_id
        self.pubkey = keygen.pub_path(self.key)
        self.socket = self.workdir / "agent.sock"
        self.journal = self.workdir / "journal"
        self.log = self.workdir / "agent.log"
        self.config = self.workdir / "agent.json"
        config = {
            "mqtt": {"host": "127.0.0.1", "port": broker_port, **FAST_MQTT, **(mqtt or {})},
            "key": {"type": "file", "path": "dev.key"},
            "journal": {"dir": "journal", **(journal or {})},
            "intervals": {"heartbeat_s": 1, "loop_ms": 20, **(intervals or {})},
            "sources": [{"type": "local", "path": "agent.sock"}],
        }
        self.config.write_text(json.dumps(config, indent=1))
        self.journal_settings = config_mod.loads(json.dumps(config)).journal
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None

    def start(self, timeout: float = 30.0) -> AgentProcess:
        with open(self.log, "ab") as err:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "signet_tools", "agent", "run", "--config",
                 str(self.config)],
                stdout=subprocess.DEVNULL,
                stderr=err,
            )  # fmt: skip
        wait_until(self._answers, timeout, "the agent serving its socket")
        return self

    def _answers(self) -> bool:
        if not self.running:
            raise AgentProcessError(f"the agent exited ({self.returncode}):\n{self.tail()}")
        try:
            return bool(request(self.socket, {"kind": "stats"}, timeout=5)["ok"])
        except LocalSocketError:
            return False

    def stats(self) -> dict[str, Any]:
        answer = request(self.socket, {"kind": "stats"}, timeout=10)
        return answer["stats"]  # type: ignore[no-any-return]

    def kill(self) -> None:
        """SIGKILL: a crash (or a power cut, as far as the journal's fsyncs go)."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM: "offline", clean disconnect, clean-stop marker; its exit status."""
        proc, self.proc = self.proc, None
        if proc is None:
            return 0
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AgentProcessError(f"the agent did not stop on SIGTERM in {timeout:g}s") from None

    def open_journal(self) -> Journal:
        """The agent's journal as it left it (the agent stopped: one writer per journal)."""
        j = self.journal_settings
        journal = Journal(
            Files(str(self.journal)), j["segment_bytes"], j["segments"], j["reserve_segments"]
        )
        journal.open()
        return journal

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
