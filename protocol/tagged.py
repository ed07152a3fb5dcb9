"""Drop unknown tagged fields from a flexible request body before kio decodes it.

KIP-482 says a receiver ignores tags it does not know; kio raises KeyError on them
instead. When that happens (rarely: a client newer than our schemas), this walks the body
by the kio schema, copies every positional field verbatim and keeps only the tags the
schema knows, so kio can decode the result. Slow but only used on that fallback path.
"""

from __future__ import annotations

import struct
import typing
from dataclasses import fields
from functools import cache

from pybroker.protocol.codec import FrameError, read_uvarint
from pybroker.protocol.fetch_encoder import uvarint

_FIXED = {
    "bool": 1,
    "int8": 1,
    "int16": 2,
    "uint16": 2,
    "error_code": 2,
    "int32": 4,
    "timedelta_i32": 4,
    "int64": 8,
    "timedelta_i64": 8,
    "datetime_i64": 8,
    "float64": 8,
    "uuid": 16,
}
_COMPACT = {"string", "bytes", "records"}


@cache
def _layout(cls: type) -> tuple[list[tuple[str, str | None, type | None, bool, bool]], set[int]]:
    """Positional fields as (name, kafka_type, nested entity, is_array, optional) + known tags."""
    hints = typing.get_type_hints(cls)
    positional = []
    tags: set[int] = set()
    for f in fields(cls):
        if "tag" in f.metadata:
            tags.add(int(f.metadata["tag"]))
            continue
        hint = hints[f.name]
        is_array = typing.get_origin(hint) is tuple
        inner = typing.get_args(hint)[0] if is_array else hint
        optional = False
        if typing.get_origin(inner) in (typing.Union, __import__("types").UnionType):
            args = [a for a in typing.get_args(inner) if a is not type(None)]
            optional = len(args) < len(typing.get_args(inner))
            inner = args[0]
        nested = inner if hasattr(inner, "__dataclass_fields__") else None
        positional.append((f.name, f.metadata.get("kafka_type"), nested, is_array, optional))
    return positional, tags


def _skip_value(buf: memoryview, pos: int, kafka_type: str | None) -> int:
    if kafka_type in _FIXED:
        return pos + _FIXED[kafka_type]
    if kafka_type in _COMPACT:
        n, pos = read_uvarint(buf, pos)
        return pos + max(n - 1, 0)
    raise FrameError(f"cannot walk field of type {kafka_type}")


def _strip_entity(cls: type, buf: memoryview, pos: int, out: bytearray) -> int:
    positional, known = _layout(cls)
    for _name, kafka_type, nested, is_array, optional in positional:
        start = pos
        if is_array:
            n, pos = read_uvarint(buf, pos)
            out += buf[start:pos]
            for _ in range(max(n - 1, 0)):
                if nested is not None:
                    pos = _strip_entity(nested, buf, pos, out)
                else:
                    item = pos
                    pos = _skip_value(buf, pos, kafka_type)
                    out += buf[item:pos]
            continue
        if nested is not None:
            if optional:
                (marker,) = struct.unpack_from(">b", buf, pos)
                out += buf[pos : pos + 1]
                pos += 1
                if marker < 0:
                    continue
            pos = _strip_entity(nested, buf, pos, out)
            continue
        pos = _skip_value(buf, pos, kafka_type)
        if pos > len(buf):
            raise FrameError("truncated body")
        out += buf[start:pos]
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
        if tag in known:
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
