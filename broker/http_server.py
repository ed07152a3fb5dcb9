"""A minimal HTTP/1.1 server on the broker's event loop, for /metrics, /healthz, /readyz
and the web console.

Why our own and not a library: the endpoint serves a handful of GET routes whose answers
are computed synchronously from broker state on the loop. aiohttp would bring a dozen
dependencies and its own server machinery for that; h11 is sans-IO but still needs the
connection, limits and timeouts written around it. An HTTP/1.1 subset (GET, HEAD and a
small POST for the console's login; a handler may answer later with an awaitable) is ~300
lines over asyncio.Protocol, runs unchanged on uvloop, and every bound an exposed port
needs is explicit here:

- the request line plus headers must fit in MAX_HEAD_BYTES and arrive within
  HEAD_TIMEOUT_S of their first byte (slowloris; a new connection must start its first
  request that soon too), an idle keep-alive connection closes after IDLE_TIMEOUT_S, at
  most MAX_CONNECTIONS are open at once;
- a client that pipelines requests without reading the answers stops being read once
  WRITE_HIGH_WATER bytes wait to be sent, and a connection whose timer fires is aborted
  (not flushed), so unread responses cannot pile up;
- GET and HEAD without a body, POST with a Content-Length body of at most MAX_BODY_BYTES
  (the console's login form; it must arrive within HEAD_TIMEOUT_S too); anything
  malformed gets a 400 (or 405/413/414/431/505) with ``Connection: close`` and
  closes that one connection; nothing a client sends
  reaches the rest of the broker.

``parse_head`` is pure (bytes in, ``Request`` or ``HttpError`` out) and unit tested.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import formatdate

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 8192
MAX_HEADERS = 64
HEAD_TIMEOUT_S = 10.0
IDLE_TIMEOUT_S = 60.0
MAX_CONNECTIONS = 64
WRITE_HIGH_WATER = 256 * 1024  # stop reading requests while this much response is unsent
MAX_BODY_BYTES = 4096  # POST bodies (a login form); larger ones get 413

REASONS = {
    200: "OK",
    303: "See Other",
    401: "Unauthorized",
    403: "Forbidden",
    400: "Bad Request",
    411: "Length Required",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET = re.compile(rb"/[\x21-\x7e]*")
_FIELD_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")


class HttpError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    query: str
    version: str  # "HTTP/1.1" or "HTTP/1.0"
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    body: bytes = b""  # POST only
    peer: str = ""  # the client's address (set by the connection)

    @property
    def keep_alive(self) -> bool:
        conn = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return conn == "keep-alive"
        return conn != "close"


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()  # extra fields (Set-Cookie, Location, ...)


def find_head_end(buf: bytes | bytearray) -> int:
    """Index just past the blank line ending the head, or -1 if it has not arrived."""
    end = buf.find(b"\r\n\r\n")
    return -1 if end < 0 else end + 4


def parse_head(head: bytes) -> Request:
    """Parse a request line and headers (RFC 9112) ending in CRLF CRLF; raise HttpError."""
    if len(head) > MAX_HEAD_BYTES:
        raise HttpError(431, "request head too large")
    lines = head.split(b"\r\n")
    if len(lines) < 3 or lines[-1] or lines[-2]:
        raise HttpError(400, "request head does not end with an empty line")
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        raise HttpError(400, "malformed request line")
    method, target, version = parts
    if not _TOKEN.fullmatch(method):
        raise HttpError(400, "malformed method")
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        if version.startswith(b"HTTP/"):
            raise HttpError(505, "only HTTP/1.0 and HTTP/1.1")
        raise HttpError(400, "malformed HTTP version")
    if len(target) > 2048:
        raise HttpError(414, "request target too long")
    if not _TARGET.fullmatch(target):
        raise HttpError(400, "request target must be an absolute path")
    headers: dict[str, str] = {}
    fields = lines[1:-2]
    if len(fields) > MAX_HEADERS:
        raise HttpError(431, "too many header fields")
    for line in fields:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):  # also refuses obs-fold and "name :"
            raise HttpError(400, "malformed header field")
        value = value.strip(b" \t")
        if not _FIELD_VALUE.fullmatch(value):
            raise HttpError(400, "invalid character in a header value")
        headers[name.decode("ascii").lower()] = value.decode("latin-1")
    if version == b"HTTP/1.1" and "host" not in headers:
        raise HttpError(400, "HTTP/1.1 request without Host")
    if "transfer-encoding" in headers:
        raise HttpError(413, "request bodies are not accepted")
    if method == b"POST":
        length = headers.setdefault("content-length", "0")  # none: no body (RFC 9112 6.3)
        if not length.isdigit() or len(length) > 9:
            raise HttpError(400, "malformed Content-Length")
        if int(length) > MAX_BODY_BYTES:
            raise HttpError(413, f"request bodies are limited to {MAX_BODY_BYTES} bytes")
    elif headers.get("content-length", "0").strip() != "0":
        raise HttpError(413, "request bodies are not accepted")
    path, _, query = target.decode("ascii").partition("?")
    return Request(method.decode("ascii"), path, query, version.decode("ascii"), headers)


def render(response: Response, *, head_only: bool, keep_alive: bool) -> bytes:
    status = response.status
    lines = [
        f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}",
        f"Date: {formatdate(usegmt=True)}",
        "Server: pybroker",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
    ]
    extra = response.headers
    if not any(name.lower() == "cache-control" for name, _ in extra):
        lines.append("Cache-Control: no-store")
    lines.extend(f"{name}: {value}" for name, value in extra)
    if not keep_alive:
        lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + response.body


# A handler answers at once, or (rarely: a login) with an awaitable; the connection reads
# no further request until that answer is written.
Handler = Callable[[Request], Response | Awaitable[Response]]


class HttpConnection(asyncio.Protocol):
    """One client: read a head, answer it, repeat while keep-alive; close on any error."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.timer: asyncio.TimerHandle | None = None
        self.closing = False
        self.write_paused = False
        self.peer = ""
        self.pending: Request | None = None  # a POST head whose body is still arriving
        self.waiting = False  # an async answer is being computed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peername = transport.get_extra_info("peername")
        self.peer = str(peername[0]) if peername else ""
        self.server.connections.add(self)
        if len(self.server.connections) > MAX_CONNECTIONS:
            log.warning("HTTP endpoint: more than %d connections; closing one", MAX_CONNECTIONS)
            self.close()
            return
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)  # type: ignore[attr-defined]
        self._arm(HEAD_TIMEOUT_S)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.server.connections.discard(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.transport is not None and not self.closing:
            self.transport.resume_reading()
            self._serve_buffered()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        if not self.buf:
            self._arm(HEAD_TIMEOUT_S)  # a new request's first bytes: the head must follow
        self.buf += data
        self._serve_buffered()

    def _serve_buffered(self) -> None:
        while not self.closing and not self.write_paused and not self.waiting:
            if self.pending is not None:
                need = int(self.pending.headers["content-length"])
                if len(self.buf) < need:
                    return
                request = dataclasses.replace(self.pending, body=bytes(self.buf[:need]))
                del self.buf[:need]
                self.pending = None
                self._answer(request)
                self._rearm()
                continue
            end = find_head_end(self.buf)
            if end < 0:
                if len(self.buf) > MAX_HEAD_BYTES:
                    self._fail(HttpError(431, "request head too large"))
                return
            head = bytes(self.buf[:end])
            del self.buf[:end]
            try:
                request = parse_head(head)
            except HttpError as exc:
                self._fail(exc)
                return
            request = dataclasses.replace(request, peer=self.peer)
            if request.method == "POST":
                self.pending = request
                self._arm(HEAD_TIMEOUT_S)  # the body must follow as quickly as the head
                continue
            self._answer(request)
            self._rearm()

    def _rearm(self) -> None:
        if self.closing or self.waiting:
            return
        self._arm(HEAD_TIMEOUT_S if self.buf else IDLE_TIMEOUT_S)

    def _answer(self, request: Request) -> None:
        if request.method not in ("GET", "HEAD", "POST"):
            self._send(request, Response(405, b"only GET, HEAD and POST\n"))
            return
        try:
            outcome = self.server.handler(request)
        except Exception:
            log.exception("HTTP endpoint: %s failed", request.path)
            outcome = Response(500, b"internal error\n")
        if isinstance(outcome, Response):
            self._send(request, outcome)
            return
        self.waiting = True
        if self.timer is not None:  # the handler bounds its own time
            self.timer.cancel()
            self.timer = None
        if self.transport is not None:
            self.transport.pause_reading()  # nothing piles up behind the awaited answer
        task = asyncio.ensure_future(outcome)
        self.server.tasks.add(task)
        task.add_done_callback(lambda t: self._answered(request, t))

    def _answered(self, request: Request, task: asyncio.Future[Response]) -> None:
        self.server.tasks.discard(task)
        self.waiting = False
        if task.cancelled():
            self.close()
            return
        exc = task.exception()
        if exc is not None:
            log.error("HTTP endpoint: %s failed", request.path, exc_info=exc)
            response = Response(500, b"internal error\n")
        else:
            response = task.result()
        if self.closing:
            return
        if self.transport is not None and not self.write_paused:
            self.transport.resume_reading()
        self._send(request, response)
        self._rearm()
        if not self.closing:
            self._serve_buffered()

    def _send(self, request: Request, response: Response) -> None:
        keep_alive = request.keep_alive and response.status != 500
        assert self.transport is not None
        self.transport.write(
            render(response, head_only=request.method == "HEAD", keep_alive=keep_alive)
        )
        if not keep_alive:
            self.close()

    def _fail(self, exc: HttpError) -> None:
        log.debug("HTTP endpoint: closing a connection: %s (%d)", exc, exc.status)
        if self.transport is not None:
            body = f"{exc}\n".encode()
            self.transport.write(
                render(Response(exc.status, body), head_only=False, keep_alive=False)
            )
        self.close()

    def _arm(self, seconds: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = asyncio.get_running_loop().call_later(seconds, self._timed_out)

    def _timed_out(self) -> None:
        self.timer = None
        if (self.buf or self.pending is not None) and not self.write_paused:
            self._fail(HttpError(408, "request not received in time"))
            return
        self.closing = True
        if self.transport is not None:
            self.transport.abort()  # whatever is unsent stays unsent

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        if self.transport is not None:
            self.transport.close()


class HttpServer:
    """Listens on host:port and answers with ``handler`` (runs on the loop, must be quick)."""

    def __init__(self, host: str, port: int, handler: Handler) -> None:
        self.host = host
        self.port = port
        self.handler = handler
        self.connections: set[HttpConnection] = set()
        self.tasks: set[asyncio.Future[Response]] = set()
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: HttpConnection(self),
            self.host or None,
            self.port,
            family=socket.AF_UNSPEC,
            reuse_address=True,
        )
        if self._server.sockets:
            self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for conn in list(self.connections):
                conn.close()
            for task in list(self.tasks):
                task.cancel()
            await self._server.wait_closed()
            self._server = None


def parse_listener(value: str) -> tuple[str, int]:
    """``http://host:port`` (config-validated) -> (host, port); [v6] brackets removed."""
    rest = value.split("://", 1)[1]
    host, _, port = rest.rpartition(":")
    return host.strip("[]"), int(port)
