"""The console as the gateway process runs it: bind, start with the service, stop after it.

`signet gateway run` with ``[http] enabled``: :meth:`Console.bind` before the gateway starts
(a port in use stops everything there, exit 2), :meth:`start` once the gateway runs (the
metrics read its counters, /readyz its readiness), :meth:`stop` after the gateway drained and
stopped (so /readyz says "stopping" during the drain).
"""

from __future__ import annotations

import logging

from signet_gateway.config import GatewayConfig
from signet_gateway.ingest.service import Gateway

from .api import create_app
from .metrics import registry_for
from .reader import Reader
from .server import HttpServer, HttpServerError, bind

__all__ = ["Console", "HttpServerError"]

log = logging.getLogger("signet.gateway")


class Console:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.sock = bind(config.http.host, config.http.port)
        self.server: HttpServer | None = None
        self.reader: Reader | None = None

    @classmethod
    def bind(cls, config: GatewayConfig) -> Console:
        return cls(config)

    def start(self, gateway: Gateway) -> None:
        self.reader = Reader(self.config.store.location)
        app = create_app(
            self.reader,
            gateway.readiness,
            registry_for(gateway, self.reader),
            metrics_token=self.config.http.metrics_token,
            advertised_yield=self.config.http.advertised_yield,
            device_status=gateway.device_status.snapshot,
        )
        self.server = HttpServer(app, self.sock)
        self.server.start()
        host, port = self.server.address
        shown = f"[{host}]" if ":" in host else host
        log.info(
            "console on http://%s:%d: /api/v1 (bearer token), /metrics, /healthz, /readyz",
            shown,
            port,
        )

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        else:
            self.sock.close()
        if self.reader is not None:
            self.reader.close()
