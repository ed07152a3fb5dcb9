"""pybroker.http.listener: /metrics, /healthz, /readyz and the web console on the broker's
event loop.

/healthz answers 200 whenever the loop runs this code (the process is alive and not
stuck). /readyz answers 200 once logs are recovered, the broker is registered in the
cluster (ZooKeeper mode) and its listeners serve; 503 with the reason otherwise, and
again from the start of a shutdown. /metrics is the Prometheus text exposition of
``BrokerCollector`` plus the standard process metrics. These three never need a login.

The console (``/``, ``/static/<file>``, ``/login``, ``/logout``, ``/api/...``) is served
from broker/console: JSON views computed on request (console.api), login when SASL or an
authorizer is on (console.session). Routes live in two tables: ``routes`` (exact paths)
and ``prefixes`` (a path prefix whose rest is the handler's argument); ``add_api`` adds a
JSON view behind the login and the viewer's ACLs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, unquote

from prometheus_client import CollectorRegistry, ProcessCollector

from pybroker.broker.console import static
from pybroker.broker.console.api import ConsoleApi, ConsoleSources, NotFound, Viewer
from pybroker.broker.console.records import DEFAULT_RECORDS, MAX_RECORDS
from pybroker.broker.console.samplers import Samplers
from pybroker.broker.console.session import (
    COOKIE,
    SESSION_TTL_S,
    PasswordChecker,
    SessionStore,
    cookie_token,
    parse_form,
    plain_tables,
)
from pybroker.broker.http_server import HttpServer, Request, Response, parse_listener
from pybroker.broker.metrics import BrokerCollector, LoopMonitor, Readiness, render
from pybroker.broker.telemetry_view import ClientTelemetryCollector, clients_view

log = logging.getLogger(__name__)

SETTING = "pybroker.http.listener"
# What ``render`` writes: the classic text format every Prometheus version scrapes.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
JSON = "application/json"

Answer = Response | Awaitable[Response]
Handler = Callable[[Request], Answer]
PrefixHandler = Callable[[Request, str], Answer]
View = Callable[[Viewer, Request], dict[str, Any]]
PrefixView = Callable[[Viewer, Request, str], dict[str, Any]]

_INT = re.compile(r"-?[0-9]{1,18}")
MAX_NAME = 512  # topic names are <= 249, group and transactional ids are free strings


class BadRequest(Exception):
    """A 400 with this message."""


def json_response(status: int, body: Any) -> Response:
    return Response(
        status,
        json.dumps(body, separators=(",", ":")).encode(),
        JSON,
        (("X-Content-Type-Options", "nosniff"),),
    )


def error(status: int, message: str) -> Response:
    return json_response(status, {"error": message})


def redirect(location: str, *extra: tuple[str, str]) -> Response:
    return Response(303, b"", headers=(("Location", location), *extra))


def query_params(request: Request) -> dict[str, str]:
    """A query string's single-valued parameters (400 on repeats or too many)."""
    try:
        fields = parse_qs(request.query, keep_blank_values=True, max_num_fields=16)
    except ValueError as exc:
        raise BadRequest(f"bad query: {exc}") from None
    out = {}
    for key, values in fields.items():
        if len(values) != 1:
            raise BadRequest(f"parameter {key!r} given {len(values)} times")
        out[key] = values[0]
    return out


def int_param(params: dict[str, str], key: str, default: int | None = None) -> int:
    raw = params.get(key)
    if raw is None or raw == "":
        if default is None:
            raise BadRequest(f"parameter {key!r} is required")
        return default
    if not _INT.fullmatch(raw):
        raise BadRequest(f"parameter {key!r} must be an integer")
    value = int(raw)
    if value < 0:
        raise BadRequest(f"parameter {key!r} must not be negative")
    return value


class HttpEndpoint:
    def __init__(
        self,
        listener: str,
        readiness: Readiness,
        loop_monitor: LoopMonitor,
        console: ConsoleSources | None = None,
        **components: Any,
    ) -> None:
        """``components``: what BrokerCollector reads (see its signature); ``console``:
        what the web console shows (None: no console, as in unit tests)."""
        self.listener = listener
        self.readiness = readiness
        self.loop_monitor = loop_monitor
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.registry)
        self.registry.register(BrokerCollector(loop=loop_monitor, **components))
        host, port = parse_listener(listener)
        self.server = HttpServer(host, port, self.route)
        self.routes: dict[str, Handler] = {
            "/healthz": self._healthz,
            "/readyz": self._readyz,
            "/metrics": self._metrics,
        }
        self.prefixes: list[tuple[str, PrefixHandler]] = []
        self.post_paths: set[str] = set()  # the routes that take a POST
        self.api: ConsoleApi | None = None
        self.samplers: Samplers | None = None
        self.sessions = SessionStore()
        self.login_required = False
        if console is not None:
            self._add_console(console)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Bind; a failure is an OSError naming the setting (start-up stops on it)."""
        try:
            await self.server.start()
        except OSError as exc:
            raise OSError(exc.errno, f"{exc.strerror or exc} ({SETTING}={self.listener})") from exc
        self.loop_monitor.start()
        if self.samplers is not None:
            self.samplers.start()
        log.info("HTTP endpoint (/metrics, /healthz, /readyz, console) on %s", self.listener)

    async def stop(self) -> None:
        self.loop_monitor.stop()
        if self.samplers is not None:
            await self.samplers.stop()
        await self.server.stop()

    # ------------------------------------------------------------------ routing
    def route(self, request: Request) -> Answer:
        path = request.path
        if request.method == "POST" and path not in self.post_paths:
            return Response(405, b"only GET and HEAD here\n")
        handler = self.routes.get(path)
        if handler is not None:
            return handler(request)
        for prefix, prefix_handler in self.prefixes:
            if path.startswith(prefix):
                return prefix_handler(request, path[len(prefix) :])
        if path.startswith("/api/"):
            return error(404, f"no such API: {path}")
        return Response(404, b"not found: try /, /metrics, /healthz or /readyz\n")

    def add_api(self, path: str, view: View) -> None:
        """A GET JSON view at ``path`` behind the login; ``view(viewer, request)``."""
        self.routes[path] = lambda request: self._json(request, lambda v: view(v, request))

    def add_api_prefix(self, prefix: str, view: PrefixView) -> None:
        """A GET JSON view for every ``prefix<name>`` (name URL-decoded, non-empty)."""

        def handle(request: Request, rest: str) -> Response:
            try:
                name = unquote(rest, errors="strict") if "%" in rest else rest
            except UnicodeDecodeError:
                return error(400, "bad percent-encoding")
            if not name or len(name) > MAX_NAME:
                return error(404, f"no such resource: {request.path}")
            return self._json(request, lambda v: view(v, request, name))

        self.prefixes.append((prefix, handle))

    def _json(self, request: Request, compute: Callable[[Viewer], dict[str, Any]]) -> Response:
        viewer = self.viewer(request)
        if viewer is None:
            return error(401, "login required")
        try:
            return json_response(200, compute(viewer))
        except BadRequest as exc:
            return error(400, str(exc))
        except NotFound as exc:
            return error(404, str(exc))

    def viewer(self, request: Request) -> Viewer | None:
        """Who asks: Viewer(None) when no login is needed, None when one is missing."""
        if not self.login_required:
            return Viewer()
        session = self.sessions.lookup(cookie_token(request.headers.get("cookie")))
        if session is None:
            return None
        return Viewer(session.principal, request.peer)

    # ------------------------------------------------------------------ probes
    def _healthz(self, request: Request) -> Response:
        return Response(200, b"ok\n")

    def _readyz(self, request: Request) -> Response:
        reason = self.readiness.reason()
        if reason is None:
            return Response(200, b"ready\n")
        return Response(503, f"not ready: {reason}\n".encode())

    def _metrics(self, request: Request) -> Response:
        return Response(200, render(self.registry), CONTENT_TYPE)

    # ------------------------------------------------------------------ console
    def _add_console(self, sources: ConsoleSources) -> None:
        api = self.api = ConsoleApi(sources)
        self.samplers = Samplers(api.rates, api.lag)
        sasl = sources.sasl
        self.login_required = bool(sasl.listeners) or sources.authorizer is not None
        self.checker = PasswordChecker(plain_tables(sasl.listeners), sasl.scram_credential)
        self.failed_login_delay_s = max(0, sasl.delay_ms) / 1000
        self.routes.update(
            {
                "/": self._index,
                "/index.html": self._index,
                "/login": self._login,
                "/logout": self._logout,
            }
        )
        self.post_paths.update(("/login", "/logout"))
        self.prefixes.append(("/static/", self._static))
        self.add_api("/api/cluster", lambda v, r: api.cluster(v))
        self.add_api("/api/topics", lambda v, r: api.topics(v))
        self.add_api_prefix("/api/topics/", lambda v, r, name: api.topic(v, name))
        self.add_api("/api/groups", lambda v, r: api.groups(v))
        self.add_api_prefix("/api/groups/", lambda v, r, gid: api.group(v, gid))
        self.add_api("/api/transactions", lambda v, r: api.transactions(v))
        self.add_api("/api/records", self._records)
        self.add_api("/api/rates", lambda v, r: api.rates_view(v))
        # KIP-714 pushed client metrics (broker.telemetry_view).
        telemetry = sources.client_metrics
        self.registry.register(ClientTelemetryCollector(telemetry))
        self.add_api("/api/clients", lambda v, r: clients_view(telemetry(), sources.authorizer, v))

    def _records(self, viewer: Viewer, request: Request) -> dict[str, Any]:
        assert self.api is not None
        params = query_params(request)
        topic = params.get("topic", "")
        if not topic or len(topic) > MAX_NAME:
            raise BadRequest("parameter 'topic' is required")
        partition = int_param(params, "partition")
        offset = int_param(params, "offset", 0)
        limit = int_param(params, "max", DEFAULT_RECORDS)
        if limit < 1:
            raise BadRequest("parameter 'max' must be at least 1")
        return self.api.records(viewer, topic, partition, offset, min(limit, MAX_RECORDS))

    def _file(self, name: str, status: int = 200, *extra: tuple[str, str]) -> Response:
        found = static.read(name)
        if found is None:
            return Response(404, f"not found: {name}\n".encode())
        body, ctype = found
        return Response(status, body, ctype, static.SECURITY_HEADERS + extra)

    def _index(self, request: Request) -> Response:
        if self.viewer(request) is None:
            return redirect("/login")
        return self._file("index.html")

    def _static(self, request: Request, name: str) -> Response:
        return self._file(name)

    def _login(self, request: Request) -> Answer:
        if request.method != "POST":
            if not self.login_required:
                return redirect("/")
            return self._file("login.html")
        if not self.login_required:
            return redirect("/")
        if not self._same_origin(request):
            return Response(403, b"cross-origin login refused\n")
        return self._check_login(request)

    async def _check_login(self, request: Request) -> Response:
        form = parse_form(request.body)
        ok = form is not None and await self.checker.check(form["username"], form["password"])
        if not ok or form is None:
            log.info("Console login failed from %s", request.peer)
            await asyncio.sleep(self.failed_login_delay_s)
            return self._file("login.html", 401)
        token = self.sessions.create(f"User:{form['username']}")
        log.info("Console login of User:%s from %s", form["username"], request.peer)
        cookie = f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={SESSION_TTL_S}"
        return redirect("/", ("Set-Cookie", cookie))

    def _logout(self, request: Request) -> Response:
        if request.method != "POST":
            return Response(405, b"POST only\n")
        if not self._same_origin(request):
            return Response(403, b"cross-origin logout refused\n")
        self.sessions.end(cookie_token(request.headers.get("cookie")))
        cleared = f"{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"
        return redirect("/login", ("Set-Cookie", cleared))

    @staticmethod
    def _same_origin(request: Request) -> bool:
        """A browser's Origin (when sent) must name this very host: no cross-site posts."""
        origin = request.headers.get("origin")
        if origin is None or origin == "null":
            return origin is None
        return origin.split("://", 1)[-1] == request.headers.get("host", "")


async def start_endpoint(
    listener: str,
    readiness: Readiness,
    console: ConsoleSources | None = None,
    **components: Any,
) -> HttpEndpoint | None:
    """Serve pybroker.http.listener (None when it is empty: the endpoint is off)."""
    if not listener:
        return None
    endpoint = HttpEndpoint(listener, readiness, LoopMonitor(), console, **components)
    await endpoint.start()
    return endpoint
