"""A Kafka-aware TCP proxy on 127.0.0.1 that loses Produce responses on purpose.

It relays whole frames (INT32 size + payload) both ways. Requests are read far enough to
learn their api key and correlation id; when the response to a chosen Produce request
comes back from the broker, the proxy drops that client's connection instead of
relaying it. The broker has appended the batch, the client never hears so: it reconnects
and sends the same batch again, exactly the retry an idempotent producer must survive.

Start the broker with ``advertised.listeners`` naming the proxy's port so that clients
reach the broker through the proxy after bootstrap too. Everything is bounded: at most
``max_connections`` clients, frames up to ``max_frame`` bytes, socket timeouts, and
``stop()`` closes every socket and joins every thread.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable

from tests.support.broker import free_port

_SIZE = struct.Struct(">i")
_REQUEST_HEAD = struct.Struct(">hhi")  # api key, api version, correlation id
PRODUCE = 0


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    chunks = []
    while n:
        try:
            chunk = sock.recv(min(n, 1 << 20))
        except OSError:
            return None
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _recv_frame(sock: socket.socket, max_frame: int) -> bytes | None:
    head = _recv_exact(sock, 4)
    if head is None:
        return None
    (size,) = _SIZE.unpack(head)
    if not 0 <= size <= max_frame:
        return None
    body = _recv_exact(sock, size)
    return None if body is None else head + body


class _Link:
    """One client connection and its upstream connection to the broker."""

    def __init__(self, proxy: FaultProxy, client: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream = socket.create_connection(("127.0.0.1", proxy.upstream_port), timeout=10)
        for s in (self.client, self.upstream):
            s.settimeout(proxy.idle_timeout)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.produce_ids: set[int] = set()
        self.lock = threading.Lock()
        self.closed = False
        self.threads = [
            threading.Thread(target=self._requests, daemon=True),
            threading.Thread(target=self._responses, daemon=True),
        ]
        for t in self.threads:
            t.start()

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
        for s in (self.client, self.upstream):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _requests(self) -> None:
        try:
            while True:
                frame = _recv_frame(self.client, self.proxy.max_frame)
                if frame is None or len(frame) < 4 + _REQUEST_HEAD.size:
                    return
                api_key, _, correlation_id = _REQUEST_HEAD.unpack_from(frame, 4)
                if api_key == PRODUCE:
                    with self.lock:
                        self.produce_ids.add(correlation_id)
                self.upstream.sendall(frame)
                if api_key == PRODUCE:
                    self.proxy._count_produce()
        except OSError:
            return
        finally:
            self.close()

    def _responses(self) -> None:
        try:
            while True:
                frame = _recv_frame(self.upstream, self.proxy.max_frame)
                if frame is None or len(frame) < 8:
                    return
                (correlation_id,) = _SIZE.unpack_from(frame, 4)
                with self.lock:
                    is_produce = correlation_id in self.produce_ids
                    self.produce_ids.discard(correlation_id)
                if is_produce and self.proxy._should_drop():
                    return  # the broker answered; the client never hears it
                self.client.sendall(frame)
        except OSError:
            return
        finally:
            self.close()


class FaultProxy:
    """Relay 127.0.0.1:``port`` to the broker, dropping chosen Produce responses.

    ``drop(n)`` says whether the n-th Produce response (counting from 1) is lost.
    """

    def __init__(
        self,
        upstream_port: int,
        drop: Callable[[int], bool],
        *,
        port: int | None = None,
        max_connections: int = 64,
        max_frame: int = 128 << 20,
        idle_timeout: float = 60.0,
    ) -> None:
        self.upstream_port = upstream_port
        self.port = port or free_port()
        self.drop = drop
        self.max_connections = max_connections
        self.max_frame = max_frame
        self.idle_timeout = idle_timeout
        self.produce_requests = 0
        self.produce_responses = 0
        self.dropped = 0
        self.connections = 0
        self._links: list[_Link] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", self.port))
        self._server.listen(16)
        self._server.settimeout(0.2)
        self._acceptor = threading.Thread(target=self._accept, daemon=True)

    def start(self) -> FaultProxy:
        self._acceptor.start()
        return self

    def _count_produce(self) -> None:
        with self._lock:
            self.produce_requests += 1

    def _should_drop(self) -> bool:
        with self._lock:
            self.produce_responses += 1
            if self.drop(self.produce_responses):
                self.dropped += 1
                return True
            return False

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._links = [link for link in self._links if not link.closed]
                if len(self._links) >= self.max_connections:
                    client.close()
                    continue
                self.connections += 1
            try:
                link = _Link(self, client)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._links.append(link)

    def stop(self) -> None:
        self._stopping.set()
        self._server.close()
        self._acceptor.join(5)
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            link.close()
        for link in links:
            for t in link.threads:
                t.join(5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
