"""The gateway's console in tests: a gateway process with [http] on, a token, an HTTP client.

The gateway runs as `signet gateway run` (tools/runners/gateway_process.py) with its console on
a free loopback port; :class:`ConsoleClient` speaks to it with httpx and polls with deadlines.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from kit.gatewaykit import Dev, enrolled_gateway
from signet_tools.runners.gateway_process import GatewayProcess
from signet_tools.runners.mosquitto import free_port

SIGNET = str(Path(sys.executable).parent / "signet")
CONSOLE_UP = "console on http://"


def signet(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The `signet` command in a child process (its stdout and stderr as text)."""
    done = subprocess.run([SIGNET, *argv], capture_output=True, text=True, timeout=60)
    if check and done.returncode != 0:
        raise AssertionError(f"signet {' '.join(argv)}: exit {done.returncode}: {done.stderr}")
    return done


class ConsoleClient:
    def __init__(self, port: int, token: str | None = None) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.token = token
        self.http = httpx.Client(base_url=self.base, timeout=10)

    def get(self, path: str, token: str | None = "default", **params: Any) -> httpx.Response:
        """GET with the client's token ("default"), another token, or none (None)."""
        token = self.token if token == "default" else token
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return self.http.get(path, headers=headers, params=params or None)

    def json(self, path: str, **params: Any) -> Any:
        response = self.get(path, **params)
        assert response.status_code == 200, (path, response.status_code, response.text)
        return response.json()

    def close(self) -> None:
        self.http.close()


def console_gateway(
    tmp_path: Path, broker_port: int, devs: list[Dev], **sections: Any
) -> tuple[Path, GatewayProcess, ConsoleClient]:
    """gateway.toml (devices enrolled, [http] on a free port), a token, the gateway started
    and its console up: (config, process, client with the token)."""
    port = free_port()
    http = {"enabled": True, "port": port, **sections.pop("http", {})}
    cfg = enrolled_gateway(tmp_path, broker_port, devs, http=http, **sections)
    token = signet("token", "create", "--name", "tests", "--config", str(cfg)).stdout.strip()
    process = GatewayProcess(cfg, tmp_path / "gateway.log").start()
    process.wait_log(CONSOLE_UP, 20)
    return cfg, process, ConsoleClient(port, token)
