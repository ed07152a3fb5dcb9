"""Kafka's size-prefixed framing, both directions, with no I/O.

Every request and response is an INT32 size followed by that many bytes. A response's
bytes start with the response header: the correlation id, then (header v1, flexible
versions) an empty tagged-field section. The connection writes what these build; Fetch
sends its records after the prefix with os.sendfile, so the prefix must be buildable from
the body's size alone.
"""

from __future__ import annotations

import struct

SIZE_PREFIX = 4
_INT32 = struct.Struct(">i")
_PREFIX_AND_ID = struct.Struct(">ii")
_EMPTY_TAGS = b"\x00"


def response_prefix(correlation_id: int, flexible_header: bool, body_size: int) -> bytes:
    """Size prefix + response header for a body of ``body_size`` bytes that follows."""
    if flexible_header:
        return _PREFIX_AND_ID.pack(5 + body_size, correlation_id) + _EMPTY_TAGS
    return _PREFIX_AND_ID.pack(4 + body_size, correlation_id)


def frame_response(correlation_id: int, flexible_header: bool, body: bytes | bytearray) -> bytes:
    """A whole response frame: size prefix, response header, body."""
    return response_prefix(correlation_id, flexible_header, len(body)) + body


def peek_frame_size(
    buf: bytes | bytearray | memoryview, pos: int = 0, end: int | None = None
) -> int | None:
    """The declared size of the frame starting at ``pos``, or None if the prefix is incomplete
    (the buffer's bytes end at ``end``, by default at its length).

    The value is as sent (it may be negative or huge): the caller enforces
    socket.request.max.bytes before buffering anything for it.
    """
    if (len(buf) if end is None else end) - pos < SIZE_PREFIX:
        return None
    return int(_INT32.unpack_from(buf, pos)[0])
