"""A tiny raw Kafka client for tests: frames built and decoded with kio, nothing hidden.

Stock clients retry, reconnect and validate before sending, which is exactly what a test
of the broker's error paths must not do. This client writes whatever bytes it is given,
reads one size-prefixed response frame at a time and decodes it with kio, so a test sees
the broker's answer (or its closing of the connection) exactly as it went over the wire.

Framing (https://kafka.apache.org/protocol.html#protocol_common): every request and
response is an INT32 size followed by that many bytes. A request is a request header
(v1, or v2 for the flexible versions of an API) and a body; a response is a response
header (v0, or v1 for flexible versions; ApiVersions responses always use v0, KIP-511)
and a body. kio's generated classes carry the right header class as
``__header_schema__``.
"""

from __future__ import annotations

import io
import socket
import struct
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from kio.index import load_payload_module, load_response_schema
from kio.schema.api_versions.v0.response import ApiVersionsResponse as ApiVersionsResponseV0
from kio.schema.request_header.v1.header import RequestHeader as RequestHeaderV1
from kio.schema.request_header.v2.header import RequestHeader as RequestHeaderV2
from kio.schema.response_header.v0.header import ResponseHeader as ResponseHeaderV0
from kio.serial import entity_reader, entity_writer
from kio.static.constants import EntityType
from kio.static.primitive import i16, i32

__all__ = [
    "ConnectionClosed",
    "KafkaWire",
    "Response",
    "decode_api_versions_v0",
    "decode_response",
    "encode",
    "encode_header",
    "frame",
    "request_module",
    "response_module",
]

_SIZE = struct.Struct(">i")
API_VERSIONS_KEY = 18


class ConnectionClosed(Exception):
    """The broker closed (or reset) the connection; ``partial`` holds bytes read before."""

    def __init__(self, message: str, partial: bytes = b"") -> None:
        super().__init__(message)
        self.partial = partial


def request_module(api_key: int, version: int) -> ModuleType:
    """The kio module of request classes for one (api_key, version)."""
    return load_payload_module(api_key, version, EntityType.request)


def response_module(api_key: int, version: int) -> ModuleType:
    """The kio module of response classes for one (api_key, version)."""
    return load_payload_module(api_key, version, EntityType.response)


def encode(entity: Any) -> bytes:
    """One kio entity (header or body) as bytes."""
    buf = io.BytesIO()
    entity_writer(type(entity))(buf, entity)
    return buf.getvalue()


def encode_header(
    api_key: int,
    api_version: int,
    correlation_id: int,
    *,
    flexible: bool,
    client_id: str | None = "pybroker-tests",
) -> bytes:
    """A request header v2 (flexible) or v1 for any api key and version, known or not."""
    cls = RequestHeaderV2 if flexible else RequestHeaderV1
    return encode(
        cls(
            request_api_key=i16(api_key),
            request_api_version=i16(api_version),
            correlation_id=i32(correlation_id),
            client_id=client_id,
        )
    )


def frame(payload: bytes) -> bytes:
    """A size-prefixed frame around ``payload``."""
    return _SIZE.pack(len(payload)) + payload


@dataclass(frozen=True)
class Response:
    correlation_id: int
    body: Any
    raw: bytes  # the frame payload (header + body), without the size prefix


class KafkaWire:
    """One blocking TCP connection to a broker; every read is bounded by ``timeout``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 9092,
        *,
        timeout: float = 15.0,
        client_id: str | None = "pybroker-tests",
        source: str | None = None,
    ) -> None:
        self.timeout = timeout
        self.client_id = client_id
        # ``source``: connect from this local address (127.0.0.2: another ACL host).
        bind = (source, 0) if source else None
        self.sock = socket.create_connection((host, port), timeout=timeout, source_address=bind)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._next_correlation_id = 1
        self._api_versions: dict[int, tuple[int, int]] | None = None

    # -- context manager ------------------------------------------------------------
    def __enter__(self) -> KafkaWire:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    # -- building requests -----------------------------------------------------------
    def next_correlation_id(self) -> int:
        cid = self._next_correlation_id
        self._next_correlation_id += 1
        return cid

    def encode_request(self, request: Any, correlation_id: int) -> bytes:
        """The full frame (size prefix, header, body) for a kio request object."""
        header_cls = type(request).__header_schema__
        header = header_cls(
            request_api_key=i16(type(request).__api_key__),
            request_api_version=i16(type(request).__version__),
            correlation_id=i32(correlation_id),
            client_id=self.client_id,
        )
        return frame(encode(header) + encode(request))

    # -- sending ------------------------------------------------------------------------
    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, request: Any) -> int:
        """Send one request; returns its correlation id."""
        cid = self.next_correlation_id()
        self.send_raw(self.encode_request(request, cid))
        return cid

    # -- receiving ------------------------------------------------------------------------
    def _recv_exact(self, n: int) -> bytes:
        chunks: list[bytes] = []
        got = 0
        deadline = time.monotonic() + self.timeout
        while got < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"read {got} of {n} bytes within {self.timeout}s")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(min(n - got, 1 << 20))
            except (ConnectionResetError, BrokenPipeError) as exc:
                raise ConnectionClosed(f"connection reset: {exc}", b"".join(chunks)) from exc
            except TimeoutError:
                raise TimeoutError(f"read {got} of {n} bytes within {self.timeout}s") from None
            if not chunk:
                raise ConnectionClosed(f"EOF after {got} of {n} bytes", b"".join(chunks))
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def recv_frame(self) -> bytes:
        """One response frame's payload (without the size prefix)."""
        (size,) = _SIZE.unpack(self._recv_exact(4))
        if size < 0:
            raise AssertionError(f"broker sent a negative frame size {size}")
        return self._recv_exact(size)

    def recv(self, response_cls: type, expected_correlation_id: int | None = None) -> Response:
        """Read one frame and decode it as ``response_cls`` (header class from kio)."""
        payload = self.recv_frame()
        return decode_response(payload, response_cls, expected_correlation_id)

    def request(self, request: Any) -> Any:
        """Send a request, read its response, check the correlation id; returns the body."""
        cid = self.send(request)
        response_cls = load_response_schema(type(request).__api_key__, type(request).__version__)
        return self.recv(response_cls, cid).body

    def read_until_closed(self, timeout: float | None = None) -> bytes:
        """Wait for the broker to close the connection; returns any bytes sent before.

        Raises ``TimeoutError`` when the connection is still open after ``timeout``.
        A reset (RST, which a close with unread input produces) counts as closed.
        """
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        received = bytearray()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"connection still open after {limit}s (received {bytes(received)!r:.200})"
                )
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                return bytes(received)
            except TimeoutError:
                continue
            if not chunk:
                return bytes(received)
            received += chunk

    # -- version negotiation ------------------------------------------------------------
    def api_versions(self) -> dict[int, tuple[int, int]]:
        """The broker's advertised {api_key: (min, max)} via ApiVersions v3 (cached)."""
        if self._api_versions is None:
            mod = request_module(API_VERSIONS_KEY, 3)
            body = self.request(
                mod.ApiVersionsRequest(
                    client_software_name="pybroker-tests", client_software_version="0.1"
                )
            )
            if body.error_code != 0:
                raise AssertionError(f"ApiVersions v3 failed: {body.error_code!r}")
            self._api_versions = {
                int(k.api_key): (int(k.min_version), int(k.max_version)) for k in body.api_keys
            }
        return self._api_versions

    def pick_version(self, api_key: int, lo: int, hi: int) -> int:
        """The highest version in [lo, hi] that the broker advertises for ``api_key``."""
        versions = self.api_versions()
        if api_key not in versions:
            raise AssertionError(f"broker does not advertise api key {api_key}: {versions}")
        bmin, bmax = versions[api_key]
        best = min(bmax, hi)
        if best < max(bmin, lo):
            raise AssertionError(
                f"api key {api_key}: broker supports v{bmin}-v{bmax}, test needs v{lo}-v{hi}"
            )
        return best


def decode_response(
    payload: bytes, response_cls: type, expected_correlation_id: int | None = None
) -> Response:
    """Decode header + body of one frame payload; the body must consume it exactly."""
    view = memoryview(payload)
    header_cls = response_cls.__header_schema__
    header, used = entity_reader(header_cls)(view, 0)
    body, used_body = entity_reader(response_cls)(view, used)
    if used + used_body != len(payload):
        raise AssertionError(
            f"{response_cls.__name__}: decoded {used + used_body} of {len(payload)} bytes"
        )
    if expected_correlation_id is not None and header.correlation_id != expected_correlation_id:
        raise AssertionError(
            f"correlation id {header.correlation_id}, expected {expected_correlation_id}"
        )
    return Response(int(header.correlation_id), body, payload)


def decode_api_versions_v0(payload: bytes) -> Response:
    """An ApiVersions answer in the v0 format (header v0), as sent for unsupported versions."""
    view = memoryview(payload)
    header, used = entity_reader(ResponseHeaderV0)(view, 0)
    body, used_body = entity_reader(ApiVersionsResponseV0)(view, used)
    if used + used_body != len(payload):
        raise AssertionError(f"ApiVersions v0: decoded {used + used_body} of {len(payload)}")
    return Response(int(header.correlation_id), body, payload)
