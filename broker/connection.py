"""One client connection: framing, ordered request processing, response writing.

Requests on a connection are handled one at a time in arrival order, as Kafka does (it
mutes a channel until its response is sent), so responses leave in request order without
any reordering buffer. Record slices in Fetch responses go out with os.sendfile once the
transport's own buffer has drained, so the bytes never enter Python.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
from collections import deque
from typing import TYPE_CHECKING, Any

from pybroker.broker.context import RequestContext
from pybroker.broker.handlers.api_versions import invalid_request_body, unsupported_version_body
from pybroker.broker.handlers.registry import REGISTRY
from pybroker.protocol.codec import (
    FrameError,
    decode_request_body,
    encode_body,
    parse_request_header,
    response_header_flexible,
)
from pybroker.protocol.fetch_encoder import EncodedResponse

if TYPE_CHECKING:
    from pybroker.broker.server import Broker

log = logging.getLogger(__name__)

_SIZE = struct.Struct(">i")
MAX_QUEUED_FRAMES = 64
WRITE_BUFFER_PAUSE = 4 * 1024 * 1024
COPY_CHUNK = 1024 * 1024


class CloseConnection(Exception):
    """Raised by a handler to drop this connection after logging why."""


class KafkaConnection(asyncio.Protocol):
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.max_request = broker.config.socket_request_max_bytes
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self._buf = bytearray()
        self._frames: deque[bytearray | None] = deque()
        self._wakeup = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._closing = False
        self._paused_reading = False
        self._task: asyncio.Task[None] | None = None
        self._in_flight = False
        self.sock_fd = -1

    # ------------------------------------------------------------ transport events
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
            self.sock_fd = sock.fileno()
        # Pause as soon as anything is buffered, so "drained" means the buffer is empty:
        # os.sendfile must never overtake bytes still queued in the transport.
        transport.set_write_buffer_limits(high=0, low=0)
        self.broker.connections.add(self)
        self._task = asyncio.get_running_loop().create_task(self._process())

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._drained.set()
        self._wakeup.set()
        self.broker.connections.discard(self)

    def pause_writing(self) -> None:
        self._drained.clear()

    def resume_writing(self) -> None:
        self._drained.set()

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos = 0
        n = len(buf)
        frames = self._frames
        while n - pos >= 4:
            size = _SIZE.unpack_from(buf, pos)[0]
            if size < 0 or size > self.max_request:
                log.warning(
                    "Closing connection from %s: request size %d is outside [0, %d] "
                    "(socket.request.max.bytes)",
                    self.peer,
                    size,
                    self.max_request,
                )
                self.close()
                return
            end = pos + 4 + size
            if end > n:
                break
            frames.append(buf[pos + 4 : end])
            pos = end
        if pos:
            del buf[:pos]
            self._wakeup.set()
            if len(frames) >= MAX_QUEUED_FRAMES and not self._paused_reading and self.transport:
                self._paused_reading = True
                self.transport.pause_reading()

    def eof_received(self) -> bool | None:
        # The client half-closed: finish queued requests, then close.
        self._frames.append(None)
        self._wakeup.set()
        return True

    @property
    def busy(self) -> bool:
        """A request is being handled or waits in the queue (shutdown lets these finish)."""
        return self._in_flight or bool(self._frames)

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._wakeup.set()
        if self.transport is not None:
            self.transport.close()

    # ------------------------------------------------------------ processing
    async def _process(self) -> None:
        frames = self._frames
        try:
            while not self._closing:
                if not frames:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                frame = frames.popleft()
                if self._paused_reading and len(frames) < MAX_QUEUED_FRAMES // 2:
                    self._paused_reading = False
                    if self.transport is not None:
                        self.transport.resume_reading()
                if frame is None:  # the client half-closed and everything before is done
                    self.close()
                    return
                self._in_flight = True
                try:
                    await self._handle(frame)
                finally:
                    self._in_flight = False
                if self.transport is not None and (
                    self.transport.get_write_buffer_size() > WRITE_BUFFER_PAUSE
                ):
                    await self._drained.wait()
        except CloseConnection as exc:
            log.warning("Closing connection from %s: %s", self.peer, exc)
            self.close()
        except asyncio.CancelledError:
            self.close()
            raise
        except Exception:
            log.exception("Closing connection from %s after an unexpected error", self.peer)
            self.close()

    async def _handle(self, frame: bytearray) -> None:
        view = memoryview(frame).toreadonly()  # kio refuses writable buffers
        try:
            header = parse_request_header(view)
        except FrameError as exc:
            raise CloseConnection(f"malformed request header: {exc}") from None
        spec = REGISTRY.get(header.api_key)
        if spec is None:
            raise CloseConnection(f"unknown API key {header.api_key}")
        ctx = RequestContext(header, self.peer, self.broker)
        if not spec.min_version <= header.api_version <= spec.max_version:
            if header.api_key == 18:  # ApiVersions answers any version (KIP-511)
                self._write_body(header.correlation_id, False, unsupported_version_body())
                return
            raise CloseConnection(
                f"unsupported version {header.api_version} of {spec.name} "
                f"(supported {spec.min_version}-{spec.max_version})"
            )
        try:
            body = decode_request_body(header.api_key, header.api_version, view, header.size)
        except FrameError as exc:
            if header.api_key == 18:
                log.warning("Malformed ApiVersions from %s: %s", self.peer, exc)
                self._write_body(
                    header.correlation_id, False, invalid_request_body(header.api_version)
                )
                return
            raise CloseConnection(f"malformed {spec.name} v{header.api_version}: {exc}") from None
        del view
        result = await spec.handler(ctx, body)
        if result is None or self._closing:
            return
        flexible = response_header_flexible(header.api_key, header.api_version)
        if isinstance(result, EncodedResponse):
            await self._write_parts(header.correlation_id, flexible, result)
        elif isinstance(result, (bytes, bytearray)):
            self._write_body(header.correlation_id, flexible, result)
        else:
            self._write_body(header.correlation_id, flexible, encode_body(result))

    # ------------------------------------------------------------ writing
    def _header(self, correlation_id: int, flexible: bool, body_size: int) -> bytes:
        head_len = 5 if flexible else 4
        out = _SIZE.pack(head_len + body_size) + _SIZE.pack(correlation_id)
        return out + b"\x00" if flexible else out

    def _write_body(self, correlation_id: int, flexible: bool, body: bytes | bytearray) -> None:
        if self.transport is None or self._closing:
            return
        self.transport.write(self._header(correlation_id, flexible, len(body)) + body)

    async def _write_parts(
        self, correlation_id: int, flexible: bool, resp: EncodedResponse
    ) -> None:
        transport = self.transport
        if transport is None:
            return
        pending = bytearray(self._header(correlation_id, flexible, resp.size))
        for part in resp.parts:
            if isinstance(part, (bytes, bytearray)):
                pending += part
                continue
            if pending:
                transport.write(bytes(pending))
                pending.clear()
            await self._sendfile(part)
            if self._closing:
                return
        if pending:
            transport.write(bytes(pending))

    async def _sendfile(self, part: Any) -> None:
        """Send a FileSlice: sendfile while the socket takes it, copy a chunk when full."""
        transport = self.transport
        assert transport is not None
        fd = part.file.fileno()
        pos = part.position
        remaining = part.length
        while remaining > 0:
            if transport.get_write_buffer_size():
                await self._drained.wait()
            if self._closing:
                return
            try:
                sent = os.sendfile(self.sock_fd, fd, pos, remaining)
            except BlockingIOError:
                sent = -1
            except OSError as exc:
                raise CloseConnection(f"sendfile failed: {exc}") from None
            if sent == 0:
                raise CloseConnection("file slice shorter than announced")
            if sent < 0:
                # Socket buffer full: hand one chunk to the transport, which sends it when
                # writable and tells us (resume_writing) when it has drained.
                chunk = os.pread(fd, min(remaining, COPY_CHUNK), pos)
                if not chunk:
                    raise CloseConnection("file slice shorter than announced")
                transport.write(chunk)
                sent = len(chunk)
            pos += sent
            remaining -= sent
