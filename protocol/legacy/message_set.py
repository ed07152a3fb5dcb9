"""Message format v0/v1 ("message sets", magic 0 and 1) to and from v2 record batches.

Kafka 3.9 accepted magic 0/1 on Produce v0-2 and stored them as v2 batches (LogValidator
converts: one batch per partition, compressed with the wrapper's codec, magic-0 records
get no timestamp); Fetch v0-1 answered magic 0 and v2-3 magic 1 by down-converting the
stored batches (RecordsUtil.downConvert): control batches are dropped, uncompressed
batches become one message per record (records before the fetch offset dropped),
compressed batches become one wrapper message whose value holds the compressed inner
messages (inner offsets relative for magic 1, absolute for magic 0; the wrapper carries
the last offset). zstd cannot be down-converted (UNSUPPORTED_COMPRESSION_TYPE).

Each message: offset int64, size int32, then crc int32 (CRC32 — not CRC32C — of the rest),
magic int8, attributes int8 (bits 0-2 codec, bit 3 LogAppendTime), timestamp int64 (magic
1 only), key bytes, value bytes. Magic-0 LZ4 frames carry Kafka's historic wrong header
checksum (KAFKA-3160: computed over the magic number too); we accept both and write the
one each magic's readers expect.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from pybroker.protocol.compression import (
    DEFAULT_MAX_DECOMPRESSED_SIZE,
    GZIP,
    LZ4,
    NONE,
    SNAPPY,
    ZSTD,
    compress,
    decompress,
)
from pybroker.protocol.errors import CorruptRecordError, ErrorCode, KafkaError
from pybroker.protocol.records import (
    CREATE_TIME,
    NewRecord,
    Record,
    build_batch,
    decode_records,
    iter_batches,
)

__all__ = [
    "LegacyMessage",
    "decode_message_set",
    "to_v2_batch",
    "down_convert",
    "UnsupportedDownConversion",
]

_ENTRY = struct.Struct(">qi")  # offset, message size
_HEAD0 = struct.Struct(">IBb")  # crc, magic, attributes
_HEAD1 = struct.Struct(">IBbq")  # crc, magic, attributes, timestamp
_I32 = struct.Struct(">i")
_LOG_APPEND_TIME = 0x08
_CODEC_MASK = 0x07
NO_TIMESTAMP = -1


class UnsupportedDownConversion(KafkaError):
    """Kafka: "Down-conversion of zstandard-compressed batches is not supported"."""

    code = ErrorCode.unsupported_compression_type


@dataclass(frozen=True, slots=True)
class LegacyMessage:
    offset: int
    magic: int
    timestamp: int  # -1 for magic 0
    log_append_time: bool
    key: bytes | None
    value: bytes | None


# --------------------------------------------------------------------------- xxh32
# Only the LZ4 frame header checksum needs it (a few bytes), so pure Python is enough.

_P1, _P2, _P3, _P4, _P5 = 2654435761, 2246822519, 3266489917, 668265263, 374761393
_M32 = 0xFFFFFFFF


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & _M32


def xxh32(data: bytes, seed: int = 0) -> int:
    n = len(data)
    i = 0
    if n >= 16:
        v = [(seed + _P1 + _P2) & _M32, (seed + _P2) & _M32, seed & _M32, (seed - _P1) & _M32]
        while i + 16 <= n:
            for j in range(4):
                (lane,) = struct.unpack_from("<I", data, i + 4 * j)
                v[j] = (_rotl((v[j] + lane * _P2) & _M32, 13) * _P1) & _M32
            i += 16
        h = (_rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)) & _M32
    else:
        h = (seed + _P5) & _M32
    h = (h + n) & _M32
    while i + 4 <= n:
        (lane,) = struct.unpack_from("<I", data, i)
        h = (_rotl((h + lane * _P3) & _M32, 17) * _P4) & _M32
        i += 4
    while i < n:
        h = (_rotl((h + data[i] * _P5) & _M32, 11) * _P1) & _M32
        i += 1
    h ^= h >> 15
    h = (h * _P2) & _M32
    h ^= h >> 13
    h = (h * _P3) & _M32
    h ^= h >> 16
    return h


def _lz4_descriptor_end(frame: bytes) -> int:
    """Position of the header checksum byte of the LZ4 frame that starts ``frame``."""
    if len(frame) < 7:
        raise CorruptRecordError("lz4 frame header truncated")
    flg = frame[4]
    end = 6 + (8 if flg & 0x08 else 0) + (4 if flg & 0x01 else 0)
    if len(frame) <= end:
        raise CorruptRecordError("lz4 frame header truncated")
    return end


def _lz4_set_checksum(frame: bytes, broken: bool) -> bytes:
    """Rewrite the frame's header checksum: the standard one, or KAFKA-3160's."""
    end = _lz4_descriptor_end(frame)
    start = 0 if broken else 4
    hc = (xxh32(bytes(frame[start:end])) >> 8) & 0xFF
    return bytes(frame[:end]) + bytes([hc]) + bytes(frame[end + 1 :])


# --------------------------------------------------------------------------- decode


def _decompress(codec: int, data: bytes, magic: int, limit: int | None) -> bytes:
    if codec == LZ4 and magic == 0:
        data = _lz4_set_checksum(data, broken=False)
    if codec not in (GZIP, SNAPPY, LZ4):
        raise CorruptRecordError(f"compression codec {codec} is not valid for magic {magic}")
    return decompress(codec, data, limit)


def _parse(buf: bytes | memoryview, depth: int, limit: int | None, out: list[LegacyMessage]) -> int:
    """Append the messages of ``buf`` to ``out``; return the outer codec (0 if mixed)."""
    pos = 0
    n = len(buf)
    codec = NONE
    while pos < n:
        if n - pos < _ENTRY.size:
            raise CorruptRecordError("message set ends inside a message header")
        offset, size = _ENTRY.unpack_from(buf, pos)
        pos += _ENTRY.size
        if size < _HEAD0.size + 8 or size > n - pos:
            raise CorruptRecordError(f"message size {size} does not fit the message set")
        msg = bytes(buf[pos : pos + size])
        pos += size
        crc, magic, attrs = _HEAD0.unpack_from(msg, 0)
        if magic > 1:
            raise CorruptRecordError(f"message magic {magic} inside a message set")
        if zlib.crc32(msg[4:]) != crc:
            raise CorruptRecordError("message CRC32 does not match its contents")
        p = _HEAD0.size
        timestamp = NO_TIMESTAMP
        if magic == 1:
            if len(msg) < _HEAD1.size + 8:
                raise CorruptRecordError("magic 1 message too short")
            timestamp = _HEAD1.unpack_from(msg, 0)[3]
            p = _HEAD1.size
        key, p = _bytes(msg, p)
        value, p = _bytes(msg, p)
        if p != len(msg):
            raise CorruptRecordError("message has bytes after its value")
        msg_codec = attrs & _CODEC_MASK
        if msg_codec == NONE:
            out.append(
                LegacyMessage(offset, magic, timestamp, bool(attrs & _LOG_APPEND_TIME), key, value)
            )
            continue
        if depth > 0:
            raise CorruptRecordError("compressed message inside a compressed message")
        if value is None:
            raise CorruptRecordError("compressed wrapper message has a null value")
        inner: list[LegacyMessage] = []
        _parse(_decompress(msg_codec, value, magic, limit), depth + 1, limit, inner)
        if any(m.magic != magic for m in inner):
            raise CorruptRecordError("inner message magic differs from its wrapper's")
        if magic == 1:  # relative inner offsets: the wrapper holds the last absolute one
            shift = offset - inner[-1].offset
            inner = [
                LegacyMessage(m.offset + shift, 1, m.timestamp, m.log_append_time, m.key, m.value)
                for m in inner
            ]
        out.extend(inner)
        codec = msg_codec
    return codec


def _bytes(msg: bytes, p: int) -> tuple[bytes | None, int]:
    if len(msg) - p < 4:
        raise CorruptRecordError("message ends inside a length")
    (size,) = _I32.unpack_from(msg, p)
    p += 4
    if size == -1:
        return None, p
    if size < 0 or size > len(msg) - p:
        raise CorruptRecordError(f"message field length {size} does not fit")
    return msg[p : p + size], p + size


def decode_message_set(
    buf: bytes | memoryview, max_size: int | None = DEFAULT_MAX_DECOMPRESSED_SIZE
) -> tuple[int, list[LegacyMessage]]:
    """(codec of the wrapper messages, the messages flattened); CorruptRecordError if bad."""
    out: list[LegacyMessage] = []
    codec = _parse(buf, 0, max_size, out)
    if not out:
        raise CorruptRecordError("message set holds no message")
    return codec, out


def to_v2_batch(
    buf: bytes | memoryview, max_size: int | None = DEFAULT_MAX_DECOMPRESSED_SIZE
) -> bytes:
    """Kafka 3.9's LogValidator conversion of a produced message set: one v2 batch with
    the wrapper's codec; offsets are assigned by the log (base offset 0 here)."""
    codec, messages = decode_message_set(buf, max_size)
    records = [
        NewRecord(m.key, m.value, (), m.timestamp if m.magic == 1 else NO_TIMESTAMP)
        for m in messages
    ]
    return build_batch(records, compression=codec, timestamp_type=CREATE_TIME)


# --------------------------------------------------------------------------- encode


_BODY0 = struct.Struct(">Bb")
_BODY1 = struct.Struct(">Bbq")
_ENTRY_CRC = struct.Struct(">qiI")  # offset, size, crc
_NULL = b"\xff\xff\xff\xff"


def _entry(
    offset: int, magic: int, attrs: int, timestamp: int, key: bytes | None, value: bytes | None
) -> bytes:
    """One message set entry: offset, size, then the message with its CRC32."""
    head = _BODY1.pack(magic, attrs, timestamp) if magic == 1 else _BODY0.pack(magic, attrs)
    body = b"".join(
        (
            head,
            _NULL if key is None else _I32.pack(len(key)),
            key or b"",
            _NULL if value is None else _I32.pack(len(value)),
            value or b"",
        )
    )
    return _ENTRY_CRC.pack(offset, len(body) + 4, zlib.crc32(body)) + body


def encode_messages(
    magic: int,
    records: list[Record],
    *,
    codec: int = NONE,
    log_append_time: int | None = None,
) -> bytes:
    """Records as magic-``magic`` messages: one per record, or one compressed wrapper."""
    ts_attr = _LOG_APPEND_TIME if (magic == 1 and log_append_time is not None) else 0
    if codec == NONE:
        return b"".join(
            [_entry(r.offset, magic, ts_attr, r.timestamp, r.key, r.value) for r in records]
        )
    base = records[0].offset
    inner = b"".join(
        [
            _entry(
                r.offset - base if magic == 1 else r.offset,
                magic,
                ts_attr,
                r.timestamp,
                r.key,
                r.value,
            )
            for r in records
        ]
    )
    data = compress(codec, inner)
    if codec == LZ4 and magic == 0:
        data = _lz4_set_checksum(data, broken=True)
    wrapper_ts = (
        log_append_time if log_append_time is not None else max(r.timestamp for r in records)
    )
    return _entry(records[-1].offset, magic, codec | ts_attr, wrapper_ts, None, data)


def down_convert(buf: bytes | memoryview, to_magic: int, fetch_offset: int) -> bytes:
    """Kafka 3.9's RecordsUtil.downConvert of stored v2 batches to magic 0 or 1.

    A partial batch at the end (a read cut at max bytes) is dropped. Raises
    UnsupportedDownConversion for zstd batches.
    """
    out: list[bytes] = []
    for pos, header in iter_batches(buf):
        if header.is_control:
            continue
        if header.compression == ZSTD:
            raise UnsupportedDownConversion(
                "Down-conversion of zstandard-compressed batches is not supported"
            )
        records = decode_records(buf, pos, max_size=None)
        compressed = header.compression != NONE
        if not compressed:
            records = [r for r in records if r.offset >= fetch_offset]
        if not records:
            continue
        lat = header.max_timestamp if header.timestamp_type else None
        out.append(
            encode_messages(to_magic, records, codec=header.compression, log_append_time=lat)
        )
    return b"".join(out)
