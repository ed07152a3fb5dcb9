"""Hand-encoded Fetch responses that carry records as opaque slices.

A Fetch response is mostly record bytes that already sit in segment files. This encoder
writes the response structure around them and leaves each record slice as a part of its
own, so the connection can hand it to os.sendfile without the bytes entering Python.
Supports Fetch v4-v18, checked byte-for-byte against kio, and the v0-3 that Kafka 4
removed (KIP-896; served with pybroker.legacy.protocol.enable): v0 has no throttle time,
v1-3 add it; their partitions carry only index, error, high watermark and records.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass, field
from typing import Protocol

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
_PART_V0 = struct.Struct(">ihq")  # partition, error, high watermark
_PART_V4 = struct.Struct(">ihqq")  # partition, error, high watermark, last stable offset
_PART_V5 = struct.Struct(">ihqqq")  # ... + log start offset
_TOP_V7 = struct.Struct(">ihi")  # throttle, error, session id


class RecordSlice(Protocol):
    """Anything the connection knows how to send: here only its length matters."""

    @property
    def length(self) -> int: ...


Part = bytes | RecordSlice


@dataclass(slots=True)
class EncodedResponse:
    """A response body as parts (bytes, or slices sent with sendfile) and its total size."""

    parts: list[Part]
    size: int


@dataclass(slots=True)
class FetchPartition:
    partition: int
    error_code: int = 0
    high_watermark: int = -1
    last_stable_offset: int = -1
    log_start_offset: int = -1
    aborted_transactions: list[tuple[int, int]] | None = None
    preferred_read_replica: int = -1
    records: list[RecordSlice | bytes] = field(default_factory=list)


@dataclass(slots=True)
class FetchTopic:
    name: str
    topic_id: uuid.UUID | None
    partitions: list[FetchPartition]


def uvarint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


class _Builder:
    """Accumulates bytes, cutting a new part wherever a record slice is inserted."""

    __slots__ = ("parts", "buf", "size")

    def __init__(self) -> None:
        self.parts: list[Part] = []
        self.buf = bytearray()
        self.size = 0

    def add_slice(self, part: Part) -> None:
        if isinstance(part, (bytes, bytearray, memoryview)):
            self.buf += part
            return
        if self.buf:
            self.parts.append(bytes(self.buf))
            self.size += len(self.buf)
            self.buf = bytearray()
        self.parts.append(part)
        self.size += part.length

    def finish(self) -> EncodedResponse:
        if self.buf:
            self.parts.append(bytes(self.buf))
            self.size += len(self.buf)
        return EncodedResponse(self.parts, self.size)


def encode_fetch_response(
    version: int,
    topics: list[FetchTopic],
    *,
    throttle_ms: int = 0,
    error_code: int = 0,
    session_id: int = 0,
) -> EncodedResponse:
    if not 0 <= version <= 18:
        raise ValueError(f"unsupported Fetch version {version}")
    if version < 4:
        return _encode_legacy(version, topics, throttle_ms)
    flexible = version >= 12
    b = _Builder()
    out = b.buf
    if version >= 7:
        out += _TOP_V7.pack(throttle_ms, error_code, session_id)
    else:
        out += _I32.pack(throttle_ms)
    out += uvarint(len(topics) + 1) if flexible else _I32.pack(len(topics))
    for topic in topics:
        out = b.buf
        if version >= 13:
            out += (topic.topic_id or uuid.UUID(int=0)).bytes
        else:
            name = topic.name.encode()
            out += uvarint(len(name) + 1) if flexible else _I16.pack(len(name))
            out += name
        parts = topic.partitions
        out += uvarint(len(parts) + 1) if flexible else _I32.pack(len(parts))
        for p in parts:
            out = b.buf
            if version >= 5:
                out += _PART_V5.pack(
                    p.partition,
                    p.error_code,
                    p.high_watermark,
                    p.last_stable_offset,
                    p.log_start_offset,
                )
            else:
                out += _PART_V4.pack(
                    p.partition, p.error_code, p.high_watermark, p.last_stable_offset
                )
            aborted = p.aborted_transactions
            if aborted is None:
                out += b"\x00" if flexible else _I32.pack(-1)
            else:
                out += uvarint(len(aborted) + 1) if flexible else _I32.pack(len(aborted))
                for producer_id, first_offset in aborted:
                    out += _I64.pack(producer_id) + _I64.pack(first_offset)
                    if flexible:
                        out += b"\x00"
            if version >= 11:
                out += _I32.pack(p.preferred_read_replica)
            length = sum(len(r) if isinstance(r, bytes) else r.length for r in p.records)
            out += uvarint(length + 1) if flexible else _I32.pack(length)
            for r in p.records:
                b.add_slice(r)
            if flexible:
                b.buf += b"\x00"  # partition tagged fields
        if flexible:
            b.buf += b"\x00"  # topic tagged fields
    if flexible:
        b.buf += b"\x00"  # response tagged fields (no node endpoints: leader is us)
    return b.finish()


def _encode_legacy(version: int, topics: list[FetchTopic], throttle_ms: int) -> EncodedResponse:
    b = _Builder()
    if version >= 1:
        b.buf += _I32.pack(throttle_ms)
    b.buf += _I32.pack(len(topics))
    for topic in topics:
        name = topic.name.encode()
        b.buf += _I16.pack(len(name)) + name + _I32.pack(len(topic.partitions))
        for p in topic.partitions:
            length = sum(len(r) if isinstance(r, bytes) else r.length for r in p.records)
            b.buf += _PART_V0.pack(p.partition, p.error_code, p.high_watermark)
            b.buf += _I32.pack(length)
            for r in p.records:
                b.add_slice(r)
    return b.finish()
