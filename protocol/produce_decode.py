"""Produce requests decoded without copying their records (issue 14).

kio's reader copies every partition's records into a new ``bytes``: a megabyte-sized
allocation and copy per request on the broker's hottest path. This reader builds the same
kio entities, but each ``records`` is a read-only memoryview of the request frame. It
takes only the common, well-formed shape (v3-v13, no tagged fields, valid UTF-8 names);
anything else returns None and the caller uses kio's reader, so odd requests are decoded
(or refused) exactly as before. The caller has already run the frame validator, so every
declared length fits in the frame.
"""

from __future__ import annotations

import datetime
import struct
import uuid
from typing import Any

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_ACKS_TIMEOUT = struct.Struct(">hi")


class _Unusual(Exception):
    """A shape this reader leaves to kio."""


def _uvarint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 28:
            raise _Unusual


def _no_tags(buf: memoryview, pos: int) -> int:
    if buf[pos] != 0:
        raise _Unusual  # tagged fields: kio's reader (and tag stripping) handles them
    return pos + 1


def _string(buf: memoryview, pos: int, flexible: bool) -> tuple[str | None, int]:
    if flexible:
        n, pos = _uvarint(buf, pos)
        n -= 1
    else:
        n = _I16.unpack_from(buf, pos)[0]
        pos += 2
    if n < 0:
        return None, pos
    end = pos + n
    if end > len(buf):
        raise _Unusual
    try:
        return str(buf[pos:end], "utf-8"), end
    except UnicodeDecodeError:
        raise _Unusual from None


def _count(buf: memoryview, pos: int, flexible: bool) -> tuple[int, int]:
    if flexible:
        n, pos = _uvarint(buf, pos)
        return n - 1, pos
    return _I32.unpack_from(buf, pos)[0], pos + 4


def decode_produce(cls: type, version: int, frame: memoryview, pos: int) -> Any | None:
    """The ProduceRequest ``cls`` (kio's, for ``version``) at ``pos``, or None: use kio."""
    if not 3 <= version <= 13:
        return None
    try:
        return _decode(cls, version, frame, pos)
    except (_Unusual, IndexError, struct.error):
        return None


def _decode(cls: type, version: int, buf: memoryview, pos: int) -> Any:
    flexible = version >= 9
    mod = _entities(cls)
    topic_cls, partition_cls = mod
    txn_id, pos = _string(buf, pos, flexible)
    acks, timeout_ms = _ACKS_TIMEOUT.unpack_from(buf, pos)
    pos += 6
    n_topics, pos = _count(buf, pos, flexible)
    if n_topics < 0:
        raise _Unusual  # a null array: kio's answer
    topics = []
    for _ in range(n_topics):
        if version >= 13:
            if pos + 16 > len(buf):
                raise _Unusual
            raw = bytes(buf[pos : pos + 16])
            pos += 16
            # kio reads the all-zero id as None
            topic: dict[str, Any] = {"topic_id": uuid.UUID(bytes=raw) if any(raw) else None}
        else:
            name, pos = _string(buf, pos, flexible)
            if name is None:
                raise _Unusual
            topic = {"name": name}
        n_parts, pos = _count(buf, pos, flexible)
        if n_parts < 0:
            raise _Unusual
        parts = []
        for _ in range(n_parts):
            index = _I32.unpack_from(buf, pos)[0]
            pos += 4
            if flexible:
                size, pos = _uvarint(buf, pos)
                size -= 1
            else:
                size = _I32.unpack_from(buf, pos)[0]
                pos += 4
            if size < 0:
                records = None
            else:
                end = pos + size
                if end > len(buf):
                    raise _Unusual
                records = buf[pos:end]
                pos = end
            if flexible:
                pos = _no_tags(buf, pos)
            parts.append(partition_cls(index=index, records=records))
        if flexible:
            pos = _no_tags(buf, pos)
        topics.append(topic_cls(**topic, partition_data=tuple(parts)))
    if flexible:
        _no_tags(buf, pos)
    return cls(
        transactional_id=txn_id,
        acks=acks,
        timeout=datetime.timedelta(milliseconds=timeout_ms),
        topic_data=tuple(topics),
    )


_ENTITY_CACHE: dict[type, tuple[type, type]] = {}


def _entities(cls: type) -> tuple[type, type]:
    """(TopicProduceData, PartitionProduceData) of the module that defines ``cls``."""
    found = _ENTITY_CACHE.get(cls)
    if found is None:
        import sys

        module = sys.modules[cls.__module__]
        found = (module.TopicProduceData, module.PartitionProduceData)
        _ENTITY_CACHE[cls] = found
    return found
