"""The listening sockets and the accept loop (Kafka's Acceptor), with its connection quotas.

asyncio's ``create_server`` accepts everything it can, so we run the accept loop
ourselves: at ``max.connections`` the acceptor stops watching its sockets and new
connections wait in the kernel's listen backlog until one closes, which is what Kafka's
acceptor does (it blocks in ``ConnectionQuotas.waitForConnectionSlot``). A connection over
``max.connections.per.ip`` is accepted and closed at once, logged at INFO as Kafka does.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pybroker.broker.connection_limits import (
    ConnectionQuotas,
    IPAddress,
    NetworkStats,
    normalize_ip,
)
from pybroker.broker.tls import HANDSHAKE_TIMEOUT_S, ListenerTls

log = logging.getLogger(__name__)

ACCEPT_BATCH = 64  # accepts per readiness callback, so a connection storm cannot starve the loop
OUT_OF_RESOURCES_BACKOFF = 1.0
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

# Builds the protocol for a connection accepted on the named listener; the callable it is
# given must be called exactly once, when that connection is gone (it frees its quota).
ProtocolFactory = Callable[[str, Callable[[], None]], asyncio.Protocol]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One listener to open: its name (PLAINTEXT, INTERNAL, ...) and bind address; ``tls``
    for an SSL or SASL_SSL listener (its context is read per connection: reloadable)."""

    name: str
    host: str | None
    port: int
    tls: ListenerTls | None = None


class Acceptor:
    """Every listener's sockets, sharing one max.connections quota (as Kafka's do)."""

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        backlog: int,
        quotas: ConnectionQuotas,
        stats: NetworkStats,
        factory: ProtocolFactory,
    ) -> None:
        self.endpoints = tuple(endpoints)
        self.backlog = backlog
        self.quotas = quotas
        self.stats = stats
        self.factory = factory
        self.sockets: list[socket.socket] = []
        self._listener_of: dict[int, str] = {}  # listening socket's fd -> listener name
        self._tls_of: dict[str, ListenerTls] = {e.name: e.tls for e in endpoints if e.tls}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._accepting = False
        self._closed = False

    def start(self) -> None:
        """Bind and listen (OSError with the bind's errno on failure), then accept."""
        self._loop = asyncio.get_running_loop()
        for ep in self.endpoints:
            try:
                opened = _listen(ep.host, ep.port, self.backlog)
            except OSError as exc:
                self.close()
                where = f"{ep.name}://{ep.host or ''}:{ep.port}"
                raise OSError(exc.errno, f"{exc.strerror} (listener {where})") from exc
            for sock in opened:
                self.sockets.append(sock)
                self._listener_of[sock.fileno()] = ep.name
        self.quotas.on_slot_freed = self._resume
        self._resume()

    def close(self) -> None:
        self._pause()
        self._closed = True
        for sock in self.sockets:
            sock.close()
        self.sockets = []
        self._listener_of = {}

    # ------------------------------------------------------------ accepting
    def _resume(self) -> None:
        if self._accepting or self._closed or self._loop is None:
            return
        self._accepting = True
        for sock in self.sockets:
            self._loop.add_reader(sock.fileno(), self._on_acceptable, sock)

    def _pause(self) -> None:
        if not self._accepting or self._loop is None:
            return
        self._accepting = False
        for sock in self.sockets:
            self._loop.remove_reader(sock.fileno())

    def _on_acceptable(self, listener: socket.socket) -> None:
        for _ in range(ACCEPT_BATCH):
            if not self.quotas.slot_available():
                log.debug(
                    "max.connections=%d reached: not accepting until a connection closes",
                    self.quotas.max_connections,
                )
                self._pause()
                return
            try:
                conn, addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _OUT_OF_RESOURCES:
                    log.error(
                        "Cannot accept connections: %s; trying again in %.0f s",
                        exc,
                        OUT_OF_RESOURCES_BACKOFF,
                    )
                    self._pause()
                    assert self._loop is not None
                    self._loop.call_later(OUT_OF_RESOURCES_BACKOFF, self._resume)
                    return
                continue  # e.g. ECONNABORTED: that client gave up before we got to it
            self._admit(conn, addr[0], self._listener_of[listener.fileno()])

    def _admit(self, conn: socket.socket, host: str, listener_name: str) -> None:
        ip = normalize_ip(host)
        limit = self.quotas.try_inc(ip)
        if limit is not None:
            self.stats.connections_refused_per_ip += 1
            log.info(
                "Rejected connection from %s, address already has the configured maximum "
                "of %d connections.",
                host,
                limit,
            )
            conn.close()
            return
        conn.setblocking(False)
        assert self._loop is not None
        self._loop.create_task(self._serve(conn, ip, listener_name))

    async def _serve(self, conn: socket.socket, ip: IPAddress | str, listener_name: str) -> None:
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.quotas.dec(ip)

        assert self._loop is not None
        tls = self._tls_of.get(listener_name)
        peer = _peer(conn)
        try:
            if tls is None:
                await self._loop.connect_accepted_socket(
                    lambda: self.factory(listener_name, release), sock=conn
                )
            else:
                # connection_made comes once the handshake is done (the principal known).
                await self._loop.connect_accepted_socket(
                    lambda: self.factory(listener_name, release),
                    sock=conn,
                    ssl=tls.context,
                    ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S,
                )
        except Exception as exc:  # a failed handshake, or the peer vanished during set-up
            if tls is not None and not _peer_went_away(exc):
                # Kafka logs a failed handshake once, at INFO, and keeps serving.
                log.info(
                    "Failed authentication with /%s (listener %s: SSL handshake failed: %s)",
                    peer,
                    listener_name,
                    _reason(exc),
                )
            else:  # Kafka's Selector: "Connection with ... disconnected", at DEBUG
                log.debug("Connection from %s closed during set-up: %s", peer, _reason(exc))
            conn.close()
            release()


def _peer(conn: socket.socket) -> str:
    try:
        host, port = conn.getpeername()[:2]
    except OSError:
        return "?"
    return f"{host}:{port}"


def _peer_went_away(exc: BaseException) -> bool:
    """A reset or EOF in the middle of a TLS handshake is the peer leaving (a client or
    broker giving up on a slow connect), not a failed authentication: Kafka's
    SslTransportLayer lets such IOExceptions through as plain disconnects. (asyncio's
    handshake timeout is a ConnectionAbortedError: that one is ours and stays logged.)"""
    return isinstance(exc, (ConnectionResetError, BrokenPipeError, ssl.SSLEOFError))


def _reason(exc: BaseException) -> str:
    """One line for a failed handshake: OpenSSL's reason, or the exception's text."""
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    return str(exc) or type(exc).__name__


def _listen(host: str | None, port: int, backlog: int) -> list[socket.socket]:
    """One listening socket per address of ``host`` (None: every interface), as asyncio does."""
    infos = socket.getaddrinfo(
        host, port, family=socket.AF_UNSPEC, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    sockets: list[socket.socket] = []
    seen: set[tuple[int, object]] = set()
    try:
        for family, type_, proto, _name, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            try:
                sock = socket.socket(family, type_, proto)
            except OSError:
                continue  # a family this host cannot open (no IPv6): skipped, as asyncio does
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    if not sockets:
        raise OSError(f"cannot open a listening socket for {host or '*'}:{port}")
    return sockets
