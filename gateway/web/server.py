"""uvicorn in a thread of the gateway process, on a socket bound before the gateway starts.

Binding first makes a port in use (or an address this host does not have) a set-up error said
in one line before anything else starts (exit 2), not a failure inside a thread later. The
server runs its own event loop in a daemon thread; uvicorn installs signal handlers only in
the main thread, so the gateway's SIGTERM handling is untouched.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

import uvicorn

__all__ = ["HttpServer", "HttpServerError", "bind"]

START_S = 10.0


class HttpServerError(RuntimeError):
    """The console cannot listen (port in use, no such address) or did not start."""


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port; HttpServerError naming both otherwise."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.create_server((host, port), family=family, backlog=128)
    except socket.gaierror as exc:
        raise HttpServerError(f"http: cannot listen on {where}: {exc.strerror}") from None
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        hint = " (is another gateway or program using http.port?)" if exc.errno == 98 else ""
        raise HttpServerError(f"http: cannot listen on {where}: {reason}{hint}") from None
    return sock


class HttpServer:
    def __init__(self, app: Any, sock: socket.socket) -> None:
        self.sock = sock
        config = uvicorn.Config(
            app,
            log_config=None,  # the gateway's logging; access lines off
            access_log=False,
            lifespan="off",
            server_header=False,
            timeout_graceful_shutdown=5,
        )
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        logging.getLogger("uvicorn").setLevel(logging.WARNING)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, name="signet-http",
            daemon=True,
        )  # fmt: skip
        self._thread.start()
        deadline = time.monotonic() + START_S
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise HttpServerError("http: the server did not start")
            time.sleep(0.01)  # polling uvicorn's started flag, no event to wait on

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.sock.close()
