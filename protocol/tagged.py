"""Drop unknown tagged fields from a flexible request body before kio decodes it.

KIP-482 says a receiver ignores tags it does not know; kio raises KeyError on them
instead. When that happens (rarely: a client newer than our schemas), this walks the body
by the kio schema (``validate.layout``), copies every positional field verbatim and keeps
only the tags the schema knows, so kio can decode the result. Slow but only used on that
fallback path, after ``validate`` has checked the body.
"""

from __future__ import annotations

import struct

from pybroker.protocol.codec import FrameError, read_uvarint
from pybroker.protocol.fetch_encoder import uvarint
from pybroker.protocol.validate import FIXED_SIZES, LENGTH_PREFIXED, FieldLayout, layout


def _skip_value(buf: memoryview, pos: int, kafka_type: str | None) -> int:
    if kafka_type in FIXED_SIZES:
        return pos + FIXED_SIZES[kafka_type]
    if kafka_type in LENGTH_PREFIXED:
        n, pos = read_uvarint(buf, pos)
        return pos + max(n - 1, 0)
    raise FrameError(f"cannot walk field of type {kafka_type}")


def _strip_field(f: FieldLayout, buf: memoryview, pos: int, out: bytearray) -> int:
    start = pos
    if f.is_array:
        n, pos = read_uvarint(buf, pos)
        out += buf[start:pos]
        for _ in range(max(n - 1, 0)):
            if f.entity is not None:
                pos = _strip_entity(f.entity, buf, pos, out)
            else:
                item = pos
                pos = _skip_value(buf, pos, f.kafka_type)
                out += buf[item:pos]
        return pos
    if f.entity is not None:
        if f.nullable:
            (marker,) = struct.unpack_from(">b", buf, pos)
            out += buf[pos : pos + 1]
            pos += 1
            if marker < 0:
                return pos
        return _strip_entity(f.entity, buf, pos, out)
    pos = _skip_value(buf, pos, f.kafka_type)
    if pos > len(buf):
        raise FrameError("truncated body")
    out += buf[start:pos]
    return pos


def _strip_entity(cls: type, buf: memoryview, pos: int, out: bytearray) -> int:
    lay = layout(cls)
    for f in lay.positional:
        pos = _strip_field(f, buf, pos, out)
    count, pos = read_uvarint(buf, pos)
    kept = bytearray()
    kept_count = 0
    for _ in range(count):
        tag_start = pos
        tag, pos = read_uvarint(buf, pos)
        size, pos = read_uvarint(buf, pos)
        pos += size
        if pos > len(buf):
            raise FrameError("truncated tagged field")
        if tag in lay.tagged:
            kept += buf[tag_start:pos]
            kept_count += 1
    out += uvarint(kept_count)
    out += kept
    return pos


def strip_unknown_tags(cls: type, body: memoryview) -> bytes:
    """The body with every tag unknown to ``cls`` (at any depth) removed."""
    out = bytearray()
    try:
        _strip_entity(cls, body, 0, out)
    except (IndexError, struct.error):
        raise FrameError("truncated body") from None
    return bytes(out)
