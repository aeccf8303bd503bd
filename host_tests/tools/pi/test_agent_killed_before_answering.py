"""A sale the agent journaled and never answered: the caller's retry must not count it twice.

Real processes: `signet agent run` and `signet agent record`. The race is made deterministic
by a hook in the first agent process (set up by this test, not in the product): right after
the local socket's dispatch returned, with the sale signed and journaled (fsync'ed), and
before the answer is written, the agent kills itself with SIGKILL. The till sees exit 4
(outcome unknown), the agent is started again (unhooked), the till retries with the same
--ref: exit 0 with the original n, and the journal holds the sale exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import cbor2
import pytest

from signet.fsio import Files
from signet.journal import Journal
from signet_tools.pi.local_socket import LocalSocketError, request
from signet_tools.records import keygen
from signet_tools.runners.waiting import wait_until

pytestmark = pytest.mark.timeout(120)

SIGNET = [sys.executable, "-m", "signet_tools"]
# The agent, with dispatch wrapped: SIGKILL once the sale with ref KILL-ME is journaled.
HOOKED = """
import os, signal, sys
from signet_tools.cli.main import main
from signet_tools.pi import local_socket
dispatch = local_socket.dispatch
def hooked(agent, req, default_src="local"):
    answer = dispatch(agent, req, default_src)
    if req.get("ref") == "KILL-ME":
        os.kill(os.getpid(), signal.SIGKILL)  # journaled, not answered
    return answer
local_socket.dispatch = hooked
sys.exit(main(["agent", "run", "--config", sys.argv[1]]))
"""


@pytest.fixture
def agent_dir(tmp_path: Path) -> Path:
    keygen.generate("p256", tmp_path / "dev.key")
    cfg = {
        "mqtt": {"host": "127.0.0.1", "port": 1, "backoff_min_ms": 1000},  # no broker: fine
        "key": {"path": "dev.key"},
        "journal": {"dir": "journal"},
        "sources": [{"type": "local", "path": "agent.sock", "src": "till"}],
    }
    (tmp_path / "agent.json").write_text(json.dumps(cfg))
    return tmp_path


def _ready(sock: Path) -> bool:
    try:
        return bool(request(sock, {"kind": "stats"}, timeout=2)["ok"])
    except LocalSocketError:
        return False


Start = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def start(agent_dir: Path) -> Iterator[Start]:
    """start(*argv): run argv + the config path, return once its socket answers."""
    procs: list[subprocess.Popen[bytes]] = []

    def _start(*argv: str) -> subprocess.Popen[bytes]:
        log = agent_dir / f"agent{len(procs)}.log"
        with log.open("wb") as err:
            proc = subprocess.Popen(
                [*argv, str(agent_dir / "agent.json")], stdout=subprocess.DEVNULL, stderr=err
            )
        procs.append(proc)
        sock = agent_dir / "agent.sock"
        wait_until(lambda: proc.poll() is not None or _ready(sock), 30, "the agent's socket")
        assert proc.poll() is None, log.read_text()
        return proc

    yield _start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)


def _record(agent_dir: Path, ref: str) -> subprocess.CompletedProcess[str]:
    argv = ["agent", "record", "rev", "--amount", "250", "--currency", "EUR", "--ref", ref]
    return subprocess.run(
        [*SIGNET, *argv, "--socket", str(agent_dir / "agent.sock"), "--timeout", "10"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _sales(journal_dir: Path) -> list[tuple[int, str]]:
    """(n, ref) of every rev record in the journal."""
    journal = Journal(Files(str(journal_dir), sync=False))
    journal.open()
    out = []
    for n, rec in journal.pending(0):
        payload = cbor2.loads(cbor2.loads(rec).value[2])
        if payload["k"] == "rev":
            out.append((n, payload["ref"]))
    return out


def test_a_sale_journaled_but_not_answered_is_recorded_once_after_a_retry(
    agent_dir: Path, start: Start
) -> None:
    hooked = start(sys.executable, "-c", HOOKED)
    assert _record(agent_dir, "R-0").returncode == 0  # an ordinary sale first
    lost = _record(agent_dir, "KILL-ME")
    assert hooked.wait(30) == -signal.SIGKILL
    assert lost.returncode == 4, lost.stderr
    assert lost.stderr.endswith("; it may have been recorded: retry with the same --ref\n")
    # The agent is down: a retry now is not delivered (3) and records nothing.
    down = _record(agent_dir, "KILL-ME")
    assert down.returncode == 3, down.stderr
    assert down.stderr.endswith("; not recorded, safe to retry\n")
    [n] = [n for n, ref in _sales(agent_dir / "journal") if ref == "KILL-ME"]  # journaled
    agent = start(*SIGNET, "agent", "run", "--config")
    retry = _record(agent_dir, "KILL-ME")
    assert retry.returncode == 0, retry.stderr
    assert retry.stdout == f"already recorded rev n={n} (ref KILL-ME)\n"
    assert _record(agent_dir, "R-1").returncode == 0
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(30) == 0
    refs = [ref for _, ref in _sales(agent_dir / "journal")]
    assert refs == ["R-0", "KILL-ME", "R-1"]
    assert os.path.exists(agent_dir / "journal" / "refs.log")
