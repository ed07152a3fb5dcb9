"""The client side of the wire format: request frames out, response frames in (sans-IO).

Brokers talk to each other as Kafka clients do (follower Fetch, OffsetForLeaderEpoch,
WriteTxnMarkers to remote leaders): this builds a size-prefixed request frame with a
request header v1/v2 and decodes a response frame with response header v0/v1, using the
same kio schemas the server side uses.
"""

from __future__ import annotations

import struct
from typing import Any

from kio.serial import entity_reader
from kio.serial.errors import DecodeError

from pybroker.protocol.codec import (
    FrameError,
    _reader,
    encode_body,
    response_header_flexible,
    response_type,
)
from pybroker.protocol.codec import (
    is_flexible as request_is_flexible,
)

_SIZE = struct.Struct(">i")
_HEADER = struct.Struct(">hhih")


def encode_request(
    api_key: int, version: int, correlation_id: int, client_id: str | None, body: Any
) -> bytes:
    """A whole request frame: size, header (v2 when the version is flexible), body."""
    cid = client_id.encode() if client_id is not None else b""
    header = _HEADER.pack(api_key, version, correlation_id, len(cid) if client_id else -1) + cid
    if request_is_flexible(api_key, version):
        header += b"\x00"  # no tagged fields
    payload = header + encode_body(body)
    return _SIZE.pack(len(payload)) + payload


def decode_response(api_key: int, version: int, payload: bytes | memoryview) -> tuple[int, Any]:
    """(correlation id, body) of one response frame payload (without the size prefix)."""
    view = memoryview(payload).toreadonly()
    if len(view) < 4:
        raise FrameError("response header truncated")
    (correlation_id,) = _SIZE.unpack_from(view, 0)
    pos = 4
    cls = response_type(api_key, version)
    if response_header_flexible(api_key, version):
        header_cls = cls.__header_schema__
        try:
            _, pos = entity_reader(header_cls)(view, 0)
        except (DecodeError, ValueError, KeyError) as exc:
            raise FrameError(f"bad response header: {exc!r}") from None
    try:
        body, _ = _reader(cls)(view, pos)
    except (DecodeError, ValueError, KeyError, TypeError, OverflowError) as exc:
        raise FrameError(f"cannot decode {cls.__name__}: {exc!r}") from None
    return correlation_id, body


def peek_correlation_id(payload: bytes | memoryview) -> int:
    if len(payload) < 4:
        raise FrameError("response header truncated")
    return int(_SIZE.unpack_from(payload, 0)[0])
