"""A hung broker (SIGSTOP on a real Mosquitto) under `signet agent run` with the paho transport.

The TCP connection stays open and nothing answers. The agent's link must see that within its
keepalive (nothing received for keepalive_s: dropped; paho's own keepalive alone takes up to
twice that), keep trying with backoff while new connections get no CONNACK, journal the sales
made meanwhile, and deliver them once the broker continues (SIGCONT). The agent never exits.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2
import pytest

from signet_tools.pi.local_socket import LocalSocketError, request
from signet_tools.pi.paho_transport import PahoTransport
from signet_tools.records import keygen
from signet_tools.runners.mosquitto import Mosquitto
from signet_tools.runners.waiting import wait_until

pytestmark = pytest.mark.timeout(120)

KEEPALIVE_S = 5  # the smallest the config allows
SLACK_S = 2.0  # the agent's loop period, process scheduling on a loaded machine


def _stats(sock: Path) -> dict[str, Any] | None:
    try:
        answer = request(sock, {"kind": "stats"}, timeout=2)
    except LocalSocketError:
        return None
    return answer["stats"] if answer.get("ok") else None


@pytest.fixture
def agent(tmp_path: Path, broker: Mosquitto) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    keygen.generate("p256", tmp_path / "dev.key")
    cfg = {
        "mqtt": {
            "host": "127.0.0.1",
            "port": broker.port,
            "keepalive_s": KEEPALIVE_S,
            "timeout_ms": 1000,
            "backoff_min_ms": 200,
            "backoff_max_ms": 1000,
            "ack_timeout_s": 3600,  # no gateway here: no resends to muddle the picture
        },
        "key": {"path": "dev.key"},
        "journal": {"dir": "journal"},
        "intervals": {"heartbeat_s": 3600},
        "sources": [{"type": "local", "path": "agent.sock"}],
    }
    (tmp_path / "agent.json").write_text(json.dumps(cfg))
    with (tmp_path / "agent.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "signet_tools", "agent", "run", "--config", "agent.json"],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        yield proc, tmp_path
    finally:
        broker.resume()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)


def _records(payload: bytes) -> list[int]:
    """The n of every record in a rec message (one record, or a batch array)."""
    items = [payload] if payload[0] == 0xD2 else cbor2.loads(payload)
    return [cbor2.loads(cbor2.loads(item).value[2])["n"] for item in items]


def test_a_hung_broker_is_dropped_within_the_keepalive_and_the_agent_comes_back(
    broker: Mosquitto, agent: tuple[subprocess.Popen[bytes], Path]
) -> None:
    proc, where = agent
    sock = where / "agent.sock"
    up = wait_until(lambda: (s := _stats(sock)) and s["connected"] and s, 30, "a connected agent")
    kid = json.loads((where / "dev.key").read_text())["kid"]
    watcher = PahoTransport("127.0.0.1", broker.port, "watcher", keepalive=60)
    seen: list[int] = []
    watcher.set_callback(lambda topic, payload: seen.extend(_records(payload)))
    watcher.connect("watcher/status", b"gone")
    watcher.subscribe(f"signet/v1/{kid}/rec")
    watcher.poll()

    broker.pause()
    hung = time.monotonic()
    wait_until(lambda: (s := _stats(sock)) and not s["connected"], KEEPALIVE_S + SLACK_S,
               "the drop")  # fmt: skip
    assert time.monotonic() - hung <= KEEPALIVE_S + SLACK_S
    log = (where / "agent.log").read_text()
    assert f"no packet from the broker for {KEEPALIVE_S} s" in log
    # While it hangs: sales are journaled, each connection attempt gets no CONNACK.
    sale = request(sock, {"kind": "rev", "amount": 250, "currency": "EUR", "ref": "H-1"})
    assert sale["ok"]
    wait_until(lambda: "no CONNACK within 1s" in (where / "agent.log").read_text(), 10,
               "a reconnect attempt that times out")  # fmt: skip
    assert (
        wait_until(lambda: _stats(sock), 10, "the agent's counters")["connects"] == up["connects"]
    )

    broker.resume()
    wait_until(lambda: (s := _stats(sock)) and s["connected"] and s["connects"] > up["connects"],
               30, "the agent back on the broker")  # fmt: skip

    def delivered() -> bool:
        watcher.poll()
        return sale["n"] in seen

    wait_until(delivered, 30, "the sale made during the hang published")
    watcher.disconnect()
    assert proc.poll() is None  # it never exited
