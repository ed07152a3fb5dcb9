"""pybroker.http.listener: /metrics, /healthz and /readyz on the broker's event loop.

/healthz answers 200 whenever the loop runs this code (the process is alive and not
stuck). /readyz answers 200 once logs are recovered, the broker is registered in the
cluster (ZooKeeper mode) and its listeners serve; 503 with the reason otherwise, and
again from the start of a shutdown. /metrics is the Prometheus text exposition of
``BrokerCollector`` plus the standard process metrics.
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector

from pybroker.broker.http_server import HttpServer, Request, Response, parse_listener
from pybroker.broker.metrics import BrokerCollector, LoopMonitor, Readiness, render

log = logging.getLogger(__name__)

SETTING = "pybroker.http.listener"
# What ``render`` writes: the classic text format every Prometheus version scrapes.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class HttpEndpoint:
    def __init__(
        self, listener: str, readiness: Readiness, loop_monitor: LoopMonitor, **components: Any
    ) -> None:
        """``components``: what BrokerCollector reads (see its signature)."""
        self.listener = listener
        self.readiness = readiness
        self.loop_monitor = loop_monitor
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.registry)
        self.registry.register(BrokerCollector(loop=loop_monitor, **components))
        host, port = parse_listener(listener)
        self.server = HttpServer(host, port, self.route)

    async def start(self) -> None:
        """Bind; a failure is an OSError naming the setting (start-up stops on it)."""
        try:
            await self.server.start()
        except OSError as exc:
            raise OSError(exc.errno, f"{exc.strerror or exc} ({SETTING}={self.listener})") from exc
        self.loop_monitor.start()
        log.info("HTTP endpoint (/metrics, /healthz, /readyz) on %s", self.listener)

    async def stop(self) -> None:
        self.loop_monitor.stop()
        await self.server.stop()

    def route(self, request: Request) -> Response:
        path = request.path
        if path == "/healthz":
            return Response(200, b"ok\n")
        if path == "/readyz":
            reason = self.readiness.reason()
            if reason is None:
                return Response(200, b"ready\n")
            return Response(503, f"not ready: {reason}\n".encode())
        if path == "/metrics":
            return Response(200, render(self.registry), CONTENT_TYPE)
        return Response(404, b"not found: try /metrics, /healthz or /readyz\n")


async def start_endpoint(
    listener: str, readiness: Readiness, **components: Any
) -> HttpEndpoint | None:
    """Serve pybroker.http.listener (None when it is empty: the endpoint is off)."""
    if not listener:
        return None
    endpoint = HttpEndpoint(listener, readiness, LoopMonitor(), **components)
    await endpoint.start()
    return endpoint
