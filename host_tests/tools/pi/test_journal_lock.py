"""tools/pi/journal_lock.py: one `signet agent run` per journal directory, with real processes.

Two agents on one journal fork the chain (both sign from the same sequence state). The second
must refuse to start, naming the holder's pid, exit 2; a holder killed with SIGKILL must not
block the next start (the kernel drops the lock, the file left behind does not count).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from signet_tools.pi.journal_lock import LOCK_NAME
from signet_tools.pi.local_socket import LocalSocketError, request
from signet_tools.records import keygen
from signet_tools.runners.waiting import wait_until

pytestmark = pytest.mark.timeout(90)


def write_config(d: Path, name: str, socket_name: str) -> Path:
    cfg = {
        "mqtt": {"host": "127.0.0.1", "port": 1, "backoff_min_ms": 1000},  # no broker needed
        "key": {"path": "dev.key"},
        "journal": {"dir": "journal"},
        "intervals": {"loop_ms": 20},
        "sources": [{"type": "local", "path": socket_name}],
    }
    path = d / name
    path.write_text(json.dumps(cfg))
    return path


class AgentRun:
    """One `signet agent run` process."""

    def __init__(self, config: Path, socket: Path) -> None:
        self.socket = socket
        self.stderr = config.with_suffix(".log")
        with open(self.stderr, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "signet_tools", "agent", "run", "--config", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=err,
            )

    def serving(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"agent exited {self.proc.returncode}: {self.log()}")
        try:
            return bool(request(self.socket, {"kind": "stats"}, timeout=5)["ok"])
        except LocalSocketError:
            return False

    def stats(self) -> dict[str, Any]:
        return request(self.socket, {"kind": "stats"}, timeout=10)["stats"]

    def log(self) -> str:
        return self.stderr.read_text(errors="replace")


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[list[AgentRun]]:
    started: list[AgentRun] = []
    yield started
    for a in started:
        if a.proc.poll() is None:
            a.proc.kill()
        a.proc.wait()


def start(agents: list[AgentRun], config: Path, socket: Path) -> AgentRun:
    a = AgentRun(config, socket)
    agents.append(a)
    wait_until(a.serving, 30, f"agent on {socket.name} serving")
    return a


def run_to_exit(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "signet_tools", "agent", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,  # a refusal comes within a second; an agent that starts never exits
    )


def test_second_agent_on_a_journal_refuses_and_a_killed_holder_does_not_block(
    tmp_path: Path, agents: list[AgentRun]
) -> None:
    keygen.generate("p256", tmp_path / "dev.key")
    first_cfg = write_config(tmp_path, "a.json", "a.sock")
    second_cfg = write_config(tmp_path, "b.json", "b.sock")  # same journal, another socket
    journal = tmp_path / "journal"

    first = start(agents, first_cfg, tmp_path / "a.sock")
    before = first.stats()

    second = run_to_exit(second_cfg)
    assert second.returncode == 2, second.stderr
    assert second.stderr == (
        f"signet: error: journal.dir: {journal} is in use by another running agent "
        f"(pid {first.proc.pid}, lock {LOCK_NAME}); stop it first (one agent per journal)\n"
    )
    assert not (tmp_path / "b.sock").exists()  # it stopped before serving anything
    # The refused start touched nothing the holder owns: no record, no boot, same reset files.
    after = first.stats()
    assert (after["boot"], after["signed"], after["last_n"]) == (
        before["boot"],
        before["signed"],
        before["last_n"],
    )
    assert first.proc.poll() is None

    # SIGKILL: no clean stop, the lock file stays with the dead pid in it.
    first.proc.send_signal(signal.SIGKILL)
    assert first.proc.wait(20) == -signal.SIGKILL
    assert (journal / LOCK_NAME).read_text() == f"{first.proc.pid}\n"

    replacement = start(agents, second_cfg, tmp_path / "b.sock")
    stats = replacement.stats()
    assert stats["boot"] == before["boot"] + 1
    assert stats["last_n"] > after["last_n"]  # continues the chain (its boot record)
    assert (journal / LOCK_NAME).read_text() == f"{replacement.proc.pid}\n"
    replacement.proc.send_signal(signal.SIGTERM)
    assert replacement.proc.wait(20) == 0, replacement.log()
    # After a clean stop the directory is free again at once.
    again = start(agents, first_cfg, tmp_path / "a.sock")
    assert again.stats()["boot"] == before["boot"] + 2
