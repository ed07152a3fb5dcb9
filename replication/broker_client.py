"""One outgoing connection to another broker, spoken as a Kafka client (Kafka's
NetworkClient / BlockingSend as the replica fetcher uses it).

Requests are pipelined with correlation ids and answered in order; any error closes
the connection and fails every outstanding request with ``BrokerUnavailable``, and the
next request reconnects. Every wait is bounded by the caller's timeout.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import ssl as ssl_module
import struct
from collections import deque
from typing import Any

from pybroker.config.jaas import SaslClientCredentials
from pybroker.protocol.client_codec import decode_response, encode_request
from pybroker.protocol.codec import FrameError
from pybroker.replication.sasl_client import SaslClientError, authenticate

log = logging.getLogger(__name__)

_SIZE = struct.Struct(">i")
MAX_RESPONSE_BYTES = 256 * 1024 * 1024


class BrokerUnavailable(Exception):
    """The peer could not be reached or dropped the connection."""


class BrokerClient:
    def __init__(
        self,
        host: str,
        port: int,
        client_id: str,
        *,
        connect_timeout: float = 10.0,
        ssl: ssl_module.SSLContext | None = None,
        sasl: SaslClientCredentials | None = None,
    ) -> None:
        self.host = host
        self.ssl = ssl  # TLS to a peer's SSL/SASL_SSL inter-broker listener
        self.sasl = sasl  # SASL to a peer's SASL_* inter-broker listener
        self.port = port
        self.client_id = client_id
        self.connect_timeout = connect_timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: deque[tuple[int, int, int, asyncio.Future[Any]]] = deque()
        self._ids = itertools.count(1)
        self._read_task: asyncio.Task[None] | None = None
        self._connect_lock = asyncio.Lock()
        self.closed = False

    def __repr__(self) -> str:
        return f"BrokerClient({self.host}:{self.port})"

    async def _connect(self) -> None:
        async with self._connect_lock:
            if self._writer is not None:
                return
            if self.closed:
                raise BrokerUnavailable("client closed")
            try:
                self._reader, self._writer = await asyncio.wait_for(
                    asyncio.open_connection(
                        self.host,
                        self.port,
                        ssl=self.ssl,
                        server_hostname=self.host if self.ssl is not None else None,
                    ),
                    self.connect_timeout,
                )
            except (OSError, TimeoutError) as exc:
                raise BrokerUnavailable(
                    f"cannot connect to {self.host}:{self.port}: {exc}"
                ) from None
            if self.sasl is not None:
                await self._authenticate(self.sasl)
            self._read_task = asyncio.get_running_loop().create_task(self._read_loop())

    async def _authenticate(self, creds: SaslClientCredentials) -> None:
        assert self._reader is not None and self._writer is not None
        try:
            await asyncio.wait_for(
                authenticate(self._reader, self._writer, creds, self.client_id),
                self.connect_timeout,
            )
        except (OSError, TimeoutError, asyncio.IncompleteReadError, SaslClientError) as exc:
            self._writer.close()
            self._reader = self._writer = None
            log.warning("SASL authentication to broker %s:%d failed: %s", self.host, self.port, exc)
            raise BrokerUnavailable(f"SASL authentication failed: {exc}") from None

    async def request(self, api_key: int, version: int, body: Any, timeout: float) -> Any:
        """Send one request and wait (at most ``timeout`` s) for its decoded response body."""
        await self._connect()
        writer = self._writer
        if writer is None:
            raise BrokerUnavailable("not connected")
        cid = next(self._ids) & 0x7FFFFFFF
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(_consume_exception)
        self._pending.append((cid, api_key, version, fut))
        try:
            writer.write(encode_request(api_key, version, cid, self.client_id, body))
        except (OSError, RuntimeError) as exc:
            self._reset(f"write failed: {exc}")
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            # A late answer would desynchronise nothing (ids are checked), but an overdue
            # peer is treated as gone: start afresh.
            self._reset(f"request {api_key} v{version} timed out after {timeout}s")
            raise BrokerUnavailable(f"{self}: request timed out") from None

    async def _read_loop(self) -> None:
        reader = self._reader
        assert reader is not None
        try:
            while True:
                head = await reader.readexactly(4)
                (size,) = _SIZE.unpack(head)
                if size < 4 or size > MAX_RESPONSE_BYTES:
                    raise FrameError(f"response size {size}")
                payload = await reader.readexactly(size)
                if not self._pending:
                    raise FrameError("response without a request")
                cid, api_key, version, fut = self._pending.popleft()
                got, body = decode_response(api_key, version, payload)
                if got != cid:
                    raise FrameError(f"correlation id {got}, expected {cid}")
                if not fut.done():
                    fut.set_result(body)
        except asyncio.CancelledError:
            raise
        except (OSError, asyncio.IncompleteReadError, FrameError) as exc:
            self._reset(str(exc) or type(exc).__name__)

    def _reset(self, why: str) -> None:
        if self._writer is not None:
            log.debug("Connection to broker %s:%d closed: %s", self.host, self.port, why)
            self._writer.close()
        self._writer = None
        self._reader = None
        task, self._read_task = self._read_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        while self._pending:
            *_, fut = self._pending.popleft()
            if not fut.done():
                fut.set_exception(BrokerUnavailable(why))

    async def close(self) -> None:
        self.closed = True
        task = self._read_task
        self._reset("closed")
        if task is not None:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass


def _consume_exception(fut: asyncio.Future[Any]) -> None:
    """A request abandoned after its timeout must not log 'exception never retrieved'."""
    if not fut.cancelled():
        fut.exception()
