"""One client connection: framing, ordered request processing, response writing.

Requests on a connection are handled one at a time in arrival order, as Kafka does (it
mutes a channel until its response is sent), so responses leave in request order without
any reordering buffer. Record slices in Fetch responses go out with os.sendfile once the
transport's own buffer has drained, so the bytes never enter Python.

Reading is bounded three ways, Kafka's way: a request takes memory from the shared pool
(queued.max.request.bytes) when its size prefix arrives and a slot in the shared request
queue (queued.max.requests) when it is complete; each connection also reads ahead at most
MAX_QUEUED_FRAMES requests and socket.request.max.bytes of them. When any bound is hit
the connection stops reading (TCP pushes back on the client) and resumes when there is
room again; nothing is dropped.

Receiving (issue 14) uses asyncio's BufferedProtocol: the transport reads into buffers we
hand it. Small requests land in a per-connection read buffer and are copied out whole;
a request of DIRECT_FRAME bytes or more gets a buffer of its own (reused across requests,
receive_buffers.BufferPool) and the rest of it is read straight into it. Produce records
are then decoded as writable views of that buffer (protocol/produce_decode): the log
stamps offsets and epochs into it and writes the segment from it, so a request's bytes
are copied by the kernel on the way in and on the way to the file, and by nothing else.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from pybroker.broker.connection_limits import NetworkContext
from pybroker.broker.context import RequestContext
from pybroker.broker.handlers.api_versions import (
    invalid_request_body,
    served_min_version,
    unsupported_version_body,
)
from pybroker.broker.handlers.registry import REGISTRY, ApiSpec
from pybroker.broker.purgatory import SentResponse
from pybroker.broker.receive_buffers import BufferPool
from pybroker.protocol.codec import (
    FrameError,
    RequestHeader,
    decode_request_body,
    encode_body,
    parse_request_header,
    response_header_flexible,
)
from pybroker.protocol.fetch_encoder import EncodedResponse
from pybroker.protocol.frames import SIZE_PREFIX, peek_frame_size, response_prefix

if TYPE_CHECKING:
    from pybroker.broker.sasl_authenticator import SaslAuthenticator
    from pybroker.broker.server import Broker

log = logging.getLogger(__name__)

MAX_QUEUED_FRAMES = 64
WRITE_BUFFER_PAUSE = 4 * 1024 * 1024
COPY_CHUNK = 1024 * 1024
# A response this small goes out as one write with its file slices read inline: one
# syscall and one TCP segment instead of a header write plus a sendfile per slice (a tail
# fetch of a few records is mostly per-call cost, not copying).
INLINE_RESPONSE_BYTES = 64 * 1024
READ_BUFFER = 16 * 1024  # each connection's read buffer for small requests
DIRECT_FRAME = 8 * 1024  # a request this big is read into a buffer of its own
MIN_READ = 2048  # compact the read buffer when less room than this is left at its end

# A queued request: a copy (small requests) or a view of a pooled buffer (large ones).
Frame = bytearray | memoryview


class CloseConnection(Exception):
    """Raised by a handler to drop this connection after logging why."""


def _read_slice(part: Any) -> bytes:
    """A file slice's bytes, for a response small enough to send in one write."""
    data = part.read()
    if len(data) != part.length:
        raise CloseConnection("file slice shorter than announced")
    return data


class KafkaConnection(asyncio.BufferedProtocol):
    def __init__(
        self,
        broker: Broker,
        network: NetworkContext,
        *,
        registry: Mapping[int, ApiSpec] | None = None,
        on_close: Callable[[], None] | None = None,
        listener: str = "PLAINTEXT",
    ) -> None:
        self.broker = broker
        self.listener = listener
        self.principal = "User:ANONYMOUS"  # set by TLS client auth or SASL (issue 12)
        sasl = getattr(broker, "sasl", None)  # SASL_* listeners authenticate first
        self.sasl: SaslAuthenticator | None = sasl.authenticator(listener) if sasl else None
        self.network = network
        self.budget = network.budget
        self.max_request = network.max_request_bytes
        self.registry = REGISTRY if registry is None else registry
        self._on_close = on_close
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self._rbuf = bytearray(READ_BUFFER)
        self._rview = memoryview(self._rbuf)
        self._start = 0  # the unparsed bytes are _rbuf[_start:_end]
        self._end = 0
        self._pool: BufferPool = network.buffers
        self._direct: bytearray | None = None  # the large request being read into its own
        self._direct_size = 0  # buffer: its size, and how much of it has arrived
        self._direct_filled = 0
        self._frames: deque[Frame] = deque()
        self._queued_bytes = 0  # bytes of the frames in _frames
        self._reserved: int | None = None  # pool bytes taken for the frame being received
        self._blocked = False  # the next frame waits for room; reading is paused
        self._eof = False
        self._wakeup = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._closing = False
        self._lost = False
        self._paused_reading = False
        self._task: asyncio.Task[None] | None = None
        self._in_flight = False
        self._current: tuple[str, int, int] | None = None  # (API name, version, correlation id)
        self.last_active = time.monotonic()
        self.sock_fd = -1
        self.tls = False  # os.sendfile cannot write into a TLS stream
        self.client_software = ("unknown", "unknown")  # KIP-511, from ApiVersions v3+
        self._throttled = False  # muted after a throttled response (client quotas)

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
        self.network.connections.add(self)
        if not self._tls_handshake_done(transport):
            return
        self._task = asyncio.get_running_loop().create_task(self._process())

    def _tls_handshake_done(self, transport: asyncio.BaseTransport) -> bool:
        """On TLS the handshake is over: the SSL listener's principal comes from the client
        certificate (False: no ssl.principal.mapping.rules rule applies, connection closed)."""
        ssl_object = transport.get_extra_info("ssl_object")
        self.tls = ssl_object is not None
        tls = self.broker.tls_listeners.get(self.listener) if self.tls else None
        if tls is None or tls.protocol != "SSL":
            return True
        principal = tls.principal(ssl_object)
        if principal is None:
            self.close()
            return False
        self.principal = principal
        log.debug("TLS connection from %s on %s: principal %s", self.peer, self.listener, principal)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._drained.set()
        self._wakeup.set()
        if self._lost:
            return
        self._lost = True
        self.network.connections.discard(self)
        # Give back what the unhandled requests held; the one in flight returns its own.
        self.budget.cancel(self)
        queued, held = len(self._frames), self._queued_bytes + (self._reserved or 0)
        self._frames.clear()
        self._start = self._end = 0
        self._direct = None
        self._queued_bytes = 0
        self._reserved = None
        self.budget.dequeue(queued)
        self.budget.release(held)
        telemetry = getattr(self.broker, "client_metrics", None)
        if telemetry is not None:  # KIP-714: the connection's client instance goes
            telemetry.on_disconnect(f"{self.listener}/{self.peer}")
        if self._on_close is not None:
            self._on_close()

    def pause_writing(self) -> None:
        self._drained.clear()

    def resume_writing(self) -> None:
        self._drained.set()

    # ------------------------------------------------------------ receiving
    def get_buffer(self, sizehint: int) -> memoryview:
        """Where the transport reads next: the rest of a large request, else the read buffer."""
        direct = self._direct
        if direct is not None and self._direct_filled < self._direct_size:
            return memoryview(direct)[self._direct_filled : self._direct_size]
        if len(self._rbuf) - self._end < MIN_READ:
            self._compact()
        return self._rview[self._end :]

    def buffer_updated(self, nbytes: int) -> None:
        self.last_active = time.monotonic()
        if self._direct is not None and self._direct_filled < self._direct_size:
            self._direct_filled += nbytes
            if self._direct_filled < self._direct_size:
                return  # nothing to admit until the request is complete
        else:
            self._end += nbytes
        self._admit()

    def data_received(self, data: bytes) -> None:
        """Bytes handed over whole (tests, transports without buffered reads): the same path."""
        view = memoryview(data)
        while view and not self._closing:
            buf = self.get_buffer(len(view))
            n = min(len(buf), len(view))
            buf[:n] = view[:n]
            del buf
            view = view[n:]
            self.buffer_updated(n)

    def _compact(self) -> None:
        """Move the unparsed bytes to the front of the read buffer; grow it when they fill
        it (only while reading is paused, or bytes are handed over whole)."""
        start, end = self._start, self._end
        n = end - start
        if n + MIN_READ > len(self._rbuf):
            grown = bytearray(max(2 * len(self._rbuf), n + MIN_READ))
            grown[:n] = self._rview[start:end]
            self._rbuf, self._rview = grown, memoryview(grown)
        elif start:
            self._rview[:n] = self._rview[start:end]  # memoryview assignment is a memmove
        self._start, self._end = 0, n

    def eof_received(self) -> bool | None:
        # The client half-closed: finish the requests it sent, then close.
        self._eof = True
        self._wakeup.set()
        return None if self.tls else True  # TLS has no half-close: the transport closes

    # ------------------------------------------------------------ admission
    def _admit(self) -> None:
        """Queue complete requests while every bound allows; pause reading when one does not."""
        if self._closing:
            return
        blocked = queued = False
        direct = self._direct
        if direct is not None and self._direct_filled == self._direct_size:
            if self.budget.try_queue():
                self._queue(memoryview(direct)[: self._direct_size])
                self._direct = direct = None
                queued = True
            else:
                blocked = True
                self.budget.wait(self, self._admit)
        if direct is None and not blocked:
            blocked, moved = self._admit_buffered()
            queued = queued or moved
        if queued or (self._blocked and not blocked):
            self._wakeup.set()
        self._blocked = blocked
        self._set_reading(not blocked)

    def _queue(self, frame: Frame) -> None:
        self._frames.append(frame)
        self._queued_bytes += len(frame)
        self._reserved = None

    def _admit_buffered(self) -> tuple[bool, bool]:
        """Admit the requests in the read buffer: (blocked, any queued). A large request
        that is still arriving moves to a buffer of its own."""
        buf = self._rbuf
        pos, end = self._start, self._end
        frames = self._frames
        blocked = queued = False
        while (size := peek_frame_size(buf, pos, end)) is not None:
            if self._reserved is None:
                if self.sasl is not None and size > self.sasl.max_receive:
                    log.warning(  # Kafka: "invalid receive size" fails SASL authentication
                        "Closing connection from %s: %d-byte request before SASL "
                        "authentication is over sasl.server.max.receive.size (%d)",
                        self.peer,
                        size,
                        self.sasl.max_receive,
                    )
                    self.close()
                    return False, queued
                if size < 0 or size > self.max_request:
                    log.warning(
                        "Closing connection from %s: request size %d is outside [0, %d] "
                        "(socket.request.max.bytes)",
                        self.peer,
                        size,
                        self.max_request,
                    )
                    self.close()
                    return False, queued
                if len(frames) >= MAX_QUEUED_FRAMES or (
                    frames and self._queued_bytes + size > self.max_request
                ):
                    blocked = True  # this connection's own read-ahead: _process makes room
                    break
                if not self.budget.try_allocate(size):
                    blocked = True
                    self.budget.wait(self, self._admit)
                    break
                self._reserved = size
            body = pos + SIZE_PREFIX
            if body + size > end:
                if size >= DIRECT_FRAME:  # read the rest straight into a buffer of its own
                    direct = self._pool.take(size)
                    have = end - body
                    direct[:have] = self._rview[body:end]
                    self._direct, self._direct_size, self._direct_filled = direct, size, have
                    pos = end
                break  # the body is still on its way: keep reading into reserved memory
            if not self.budget.try_queue():
                blocked = True
                self.budget.wait(self, self._admit)
                break
            self._queue(buf[body : body + size])
            queued = True
            pos = body + size
        if pos == end:
            self._start = self._end = 0
            if len(buf) > READ_BUFFER:  # grown while paused: back to the usual size
                self._rbuf = bytearray(READ_BUFFER)
                self._rview = memoryview(self._rbuf)
        else:
            self._start = pos
        return blocked, queued

    def _set_reading(self, on: bool) -> None:
        transport = self.transport
        if transport is None or self._closing or on != self._paused_reading:
            return
        if on and self._throttled:
            return  # muted for a quota (_mute resumes)
        self._paused_reading = not on
        if on:
            transport.resume_reading()
        else:
            transport.pause_reading()

    # ------------------------------------------------------------ state
    @property
    def busy(self) -> bool:
        """A request is being handled or waits in the queue (shutdown lets these finish)."""
        return self._in_flight or bool(self._frames)

    def idle_ms(self, now: float) -> float:
        """How long nothing has happened here; 0 while a request is queued or in flight."""
        if self._in_flight or self._frames or self._blocked:
            return 0.0
        return (now - self.last_active) * 1000

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
                    if self._eof and not self._blocked:  # everything the client sent is done
                        self.close()
                        return
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                frame = frames.popleft()
                size = len(frame)
                self._queued_bytes -= size
                self.budget.dequeue()
                self._admit()  # room in this connection's read-ahead
                self._in_flight = True
                self._current = None
                try:
                    await self._handle(frame)
                finally:
                    self._in_flight = False
                    self.last_active = time.monotonic()
                    self.budget.release(size)
                    if type(frame) is memoryview:  # a large request's buffer: reuse it
                        owner = frame.obj
                        try:
                            frame.release()
                        except BufferError:
                            pass  # still viewed: give() will not keep it
                        del frame
                        self._pool.give(owner)
                    else:
                        del frame
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
        except Exception as exc:
            self._dispatch_failed(exc)

    def _dispatch_failed(self, exc: Exception) -> None:
        """The dispatch guard: a bug met by one request costs that connection, nothing more."""
        self.network.stats.handler_errors += 1
        if self._current is not None:
            name, version, correlation_id = self._current
            what = f"{name} v{version} (correlation id {correlation_id})"
        else:
            what = "no request"
        log.error(
            "Closing connection from %s after an unexpected error in %s: %s: %s",
            self.peer,
            what,
            type(exc).__name__,
            exc,
        )
        log.debug("Traceback of the error above (connection from %s)", self.peer, exc_info=exc)
        self.close()

    async def _handle(self, frame: Frame) -> None:
        if self.sasl is not None and await self.sasl.intercept(self, frame):
            return
        view = memoryview(frame).toreadonly()  # kio refuses writable buffers
        try:
            header = parse_request_header(view)
        except FrameError as exc:
            raise CloseConnection(f"malformed request header: {exc}") from None
        spec = self.registry.get(header.api_key)
        if spec is None:
            raise CloseConnection(f"unknown API key {header.api_key}")
        self._current = (spec.name, header.api_version, header.correlation_id)
        ctx = RequestContext(
            header,
            self.peer,
            self.broker,
            self.listener,
            self.principal,
            self.sasl is not None and self.sasl.token_authenticated,
            self.client_software,
            partial(self._respond_now, header) if header.api_key == 1 else None,
        )
        if not served_min_version(spec, self.broker) <= header.api_version <= spec.max_version:
            if header.api_key == 18:  # ApiVersions answers any version (KIP-511)
                self._write_body(header.correlation_id, False, unsupported_version_body())
                return
            raise CloseConnection(
                f"unsupported version {header.api_version} of {spec.name} "
                f"(supported {spec.min_version}-{spec.max_version})"
            )
        try:
            body = decode_request_body(
                header.api_key,
                header.api_version,
                view,
                header.size,
                memoryview(frame) if header.api_key == 0 else None,  # Produce: see codec
            )
        except FrameError as exc:
            if header.api_key == 18:
                log.warning("Malformed ApiVersions from %s: %s", self.peer, exc)
                self._write_body(
                    header.correlation_id, False, invalid_request_body(header.api_version)
                )
                return
            raise CloseConnection(
                f"malformed {spec.name} (key {header.api_key}) v{header.api_version}: {exc}"
            ) from None
        del view
        if header.api_key == 18 and header.api_version >= 3:  # KIP-511 client software
            self.client_software = (
                body.client_software_name or "unknown",
                body.client_software_version or "unknown",
            )
        timing = self.network.requests.begin(ctx, SIZE_PREFIX + len(frame), self.last_active)
        result = await spec.handler(ctx, body)
        if type(result) is SentResponse:  # a woken fetch, answered by _respond_now
            timing.handled(None)  # its errors were counted by record_fetch
            flexible = response_header_flexible(header.api_key, header.api_version)
            timing.done(SIZE_PREFIX + 4 + flexible + result.size)
            return
        timing.handled(result)
        throttle_ms = 0
        quotas = getattr(self.broker, "client_quotas", None)
        if quotas is not None and quotas.active:  # KIP-219: answer now, then mute
            local_s = max(0.0, timing.handled_at - timing.start - timing.remote)
            throttle_ms, result = quotas.on_response(ctx, body, len(frame), result, local_s)
            timing.throttle_ms = throttle_ms
        if result is None or self._closing:
            timing.done(0)
            await self._mute(throttle_ms)
            return
        flexible = response_header_flexible(header.api_key, header.api_version)
        if isinstance(result, EncodedResponse):
            await self._write_parts(header.correlation_id, flexible, result)
            size = result.size
        elif isinstance(result, (bytes, bytearray)):
            self._write_body(header.correlation_id, flexible, result)
            size = len(result)
        else:
            encoded = encode_body(result)
            self._write_body(header.correlation_id, flexible, encoded)
            size = len(encoded)
        timing.done(SIZE_PREFIX + 4 + flexible + size)  # size, correlation id, tagged fields
        await self._mute(throttle_ms)

    async def _mute(self, throttle_ms: int) -> None:
        """KIP-219: after a throttled response, read nothing from this client for
        ``throttle_ms`` (Kafka's ThrottledChannel); its queued requests wait too."""
        if throttle_ms <= 0 or self._closing:
            return
        self._throttled = True
        self._set_reading(False)
        try:
            await asyncio.sleep(throttle_ms / 1000)
        finally:
            self._throttled = False
            self._admit()

    # ------------------------------------------------------------ writing
    def _write_body(self, correlation_id: int, flexible: bool, body: bytes | bytearray) -> None:
        if self.transport is None or self._closing:
            return
        self.transport.write(response_prefix(correlation_id, flexible, len(body)) + body)

    def _write_raw(self, payload: bytes) -> None:
        """A size-prefixed frame without a Kafka header (SASL tokens after a v0 handshake)."""
        if self.transport is not None and not self._closing:
            self.transport.write(len(payload).to_bytes(4, "big") + payload)

    async def _write_parts(
        self, correlation_id: int, flexible: bool, resp: EncodedResponse
    ) -> None:
        transport = self.transport
        if transport is None:
            return
        if resp.size <= INLINE_RESPONSE_BYTES:
            self._write_inline(correlation_id, flexible, resp)
            return
        pending = bytearray(response_prefix(correlation_id, flexible, resp.size))
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

    def _write_inline(self, correlation_id: int, flexible: bool, resp: EncodedResponse) -> None:
        """A small response as one write, its file slices read into it."""
        pieces = [response_prefix(correlation_id, flexible, resp.size)]
        for part in resp.parts:
            pieces.append(part if isinstance(part, (bytes, bytearray)) else _read_slice(part))
        self.transport.write(b"".join(pieces))  # type: ignore[union-attr]

    def _respond_now(self, header: RequestHeader, resp: EncodedResponse) -> Any:
        """A parked Fetch completed by an append on another request (the purgatory's
        try_complete): send it from there, a loop turn before its own task would. Only a
        small response with nothing left to change it: a large one needs sendfile's
        awaits, and a client quota may throttle or trim the response."""
        quotas = getattr(self.broker, "client_quotas", None)
        if (
            self.transport is None
            or self._closing
            or resp.size > INLINE_RESPONSE_BYTES
            or (quotas is not None and quotas.active)
        ):
            return resp
        flexible = response_header_flexible(header.api_key, header.api_version)
        self._write_inline(header.correlation_id, flexible, resp)
        return SentResponse(resp.size)

    async def _sendfile(self, part: Any) -> None:
        """Send a FileSlice: sendfile while the socket takes it, copy a chunk when full."""
        transport = self.transport
        assert transport is not None
        fd = part.file.fileno()
        pos = part.position
        remaining = part.length
        if self.tls:
            await self._copy_slice(fd, pos, remaining)
            return
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

    async def _copy_slice(self, fd: int, pos: int, remaining: int) -> None:
        """TLS: read the slice in chunks and write them through the TLS transport, one
        chunk at a time once the previous one has been handed to the socket."""
        transport = self.transport
        assert transport is not None
        while remaining > 0:
            if transport.get_write_buffer_size():
                await self._drained.wait()
            if self._closing:
                return
            chunk = os.pread(fd, min(remaining, COPY_CHUNK), pos)
            if not chunk:
                raise CloseConnection("file slice shorter than announced")
            transport.write(chunk)
            pos += len(chunk)
            remaining -= len(chunk)
