"""Find the structure in bytes kio's writers produced: where each length, count and tag is.

The walk mirrors kio's encoding rules (legacy int16/int32 lengths and counts, compact
varints in flexible versions, an int8 marker before a nullable struct, a tagged-field
section at the end of every flexible struct). It runs once per template, on bytes known to
be valid, and must consume them exactly; the slots it returns are what mutate.py aims at.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from tests.fuzz.schema import FIXED_WIDTH, layout

__all__ = ["Slot", "walk_body", "walk_header", "Kind"]


class Kind:
    FIXED = 0  # value = width
    LEN16 = 1  # legacy string length (int16)
    LEN32 = 2  # legacy bytes length (int32)
    ULEN = 3  # compact string/bytes length (uvarint, n + 1)
    CNT32 = 4  # legacy array count (int32)
    UCNT = 5  # compact array count (uvarint, n + 1)
    NULLMARK = 6  # int8 before a nullable struct
    TAGS = 7  # tagged-field count (uvarint)
    TAGSIZE = 8  # one tagged field's size (uvarint)
    STR = 9  # string payload
    BYTES = 10  # bytes payload
    RECORDS = 11  # a whole records field: length prefix + batches; value 1 = compact
    ELEMS = 12  # an array of structs: start = its count, value = count kind, extra = spans
    API_KEY = 13
    API_VERSION = 14

    LENGTHS = (LEN16, LEN32, ULEN, CNT32, UCNT, TAGS, TAGSIZE)
    VARINTS = (ULEN, UCNT, TAGS, TAGSIZE)


class Slot(NamedTuple):
    kind: int
    start: int
    end: int
    value: int = 0
    extra: tuple[tuple[int, int], ...] = ()


_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")


def _uvarint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _tags(buf: bytes, pos: int, slots: list[Slot]) -> int:
    count, end = _uvarint(buf, pos)
    slots.append(Slot(Kind.TAGS, pos, end, count))
    pos = end
    for _ in range(count):
        _tag, pos = _uvarint(buf, pos)
        size, end = _uvarint(buf, pos)
        slots.append(Slot(Kind.TAGSIZE, pos, end, size))
        pos = end + size
    return pos


def _length(buf: bytes, pos: int, flexible: bool, wide: bool, slots: list[Slot]) -> tuple[int, int]:
    """Read a string/bytes length; returns (payload length or -1, payload start)."""
    if flexible:
        n, end = _uvarint(buf, pos)
        slots.append(Slot(Kind.ULEN, pos, end, n))
        return n - 1, end
    if wide:
        (n,) = _I32.unpack_from(buf, pos)
        slots.append(Slot(Kind.LEN32, pos, pos + 4, n))
        return n, pos + 4
    (n,) = _I16.unpack_from(buf, pos)
    slots.append(Slot(Kind.LEN16, pos, pos + 2, n))
    return n, pos + 2


def _primitive(buf: bytes, pos: int, kafka_type: str, flexible: bool, slots: list[Slot]) -> int:
    width = FIXED_WIDTH.get(kafka_type)
    if width is not None:
        slots.append(Slot(Kind.FIXED, pos, pos + width, width))
        return pos + width
    if kafka_type == "records":
        start = pos
        n, pos = _length(buf, pos, flexible, True, [])
        end = pos + max(n, 0)
        slots.append(Slot(Kind.RECORDS, start, end, int(flexible)))
        return end
    n, pos = _length(buf, pos, flexible, kafka_type == "bytes", slots)
    if n > 0:
        slots.append(Slot(Kind.STR if kafka_type == "string" else Kind.BYTES, pos, pos + n))
    return pos + max(n, 0)


def _entity(cls: type, buf: bytes, pos: int, slots: list[Slot]) -> int:
    flexible = bool(cls.__flexible__)
    for spec in layout(cls):
        if spec.tag is not None:
            continue
        if spec.is_array:
            count_start = pos
            if flexible:
                n, end = _uvarint(buf, pos)
                slots.append(Slot(Kind.UCNT, pos, end, n))
                n -= 1
            else:
                (n,) = _I32.unpack_from(buf, pos)
                end = pos + 4
                slots.append(Slot(Kind.CNT32, pos, end, n))
            pos = end
            spans = []
            for _ in range(max(n, 0)):
                start = pos
                if spec.nested is not None:
                    pos = _entity(spec.nested, buf, pos, slots)
                else:
                    assert spec.kafka_type is not None
                    pos = _primitive(buf, pos, spec.kafka_type, flexible, slots)
                spans.append((start, pos))
            if spans and spec.nested is not None:
                kind = Kind.UCNT if flexible else Kind.CNT32
                slots.append(Slot(Kind.ELEMS, count_start, pos, kind, tuple(spans)))
            continue
        if spec.nested is not None:
            if spec.optional:
                slots.append(Slot(Kind.NULLMARK, pos, pos + 1, buf[pos]))
                pos += 1
                if buf[pos - 1] == 0xFF:
                    continue
            pos = _entity(spec.nested, buf, pos, slots)
            continue
        assert spec.kafka_type is not None, spec
        pos = _primitive(buf, pos, spec.kafka_type, flexible, slots)
    if flexible:
        pos = _tags(buf, pos, slots)
    return pos


def walk_body(cls: type, buf: bytes, pos: int) -> tuple[int, list[Slot]]:
    """Slots of a request body starting at ``pos``; returns (end position, slots)."""
    slots: list[Slot] = []
    end = _entity(cls, buf, pos, slots)
    return end, slots


def walk_header(buf: bytes, flexible: bool) -> tuple[int, list[Slot]]:
    """Slots of a request header v1/v2 (client id is always a legacy nullable string)."""
    slots = [
        Slot(Kind.API_KEY, 0, 2, 2),
        Slot(Kind.API_VERSION, 2, 4, 2),
        Slot(Kind.FIXED, 4, 8, 4),
    ]
    (n,) = _I16.unpack_from(buf, 8)
    slots.append(Slot(Kind.LEN16, 8, 10, n))
    pos = 10
    if n > 0:
        slots.append(Slot(Kind.STR, pos, pos + n))
        pos += n
    if flexible:
        pos = _tags(buf, pos, slots)
    return pos, slots
