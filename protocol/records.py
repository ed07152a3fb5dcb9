"""RecordBatch v2 (magic 2): header view, produce validation, record codec, batch builder.

Sans-IO and ours, not ``kio.records`` (which drops millisecond timestamps, cannot
decompress and breaks CRCs on rewrite). Layout of one batch (big-endian)::

    0  base_offset int64          21 attributes int16          43 producer_id int64
    8  batch_length int32         23 last_offset_delta int32   51 producer_epoch int16
    12 partition_leader_epoch i32 27 base_timestamp int64      53 base_sequence int32
    16 magic int8                 35 max_timestamp int64       57 records_count int32
    17 crc uint32 (CRC-32C of bytes 21..end)                   61 records...

``batch_length`` counts from byte 12 to the end, so a batch occupies
``batch_length + 12`` bytes. Base offset and partition leader epoch lie outside the
CRC, which is why the broker can stamp them in place without recomputing it.

Each record: length varint, attributes int8, timestampDelta varlong, offsetDelta
varint, key (varint length, -1 = null), value (same), header count varint, then per
header a key (varint length + UTF-8) and a value (varint length, -1 = null). Varints
are zigzag-encoded LEB128, like protobuf's sint32/sint64.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from crc32c import crc32c

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
from pybroker.protocol.errors import (
    CorruptRecordError,
    InvalidRecordError,
    MessageTooLargeError,
)

__all__ = [
    "HEADER",
    "HEADER_SIZE",
    "LOG_OVERHEAD",
    "MAGIC",
    "MIN_BATCH_LENGTH",
    "CREATE_TIME",
    "LOG_APPEND_TIME",
    "NO_PRODUCER_ID",
    "NO_SEQUENCE",
    "NO_PARTITION_LEADER_EPOCH",
    "NONE",
    "GZIP",
    "SNAPPY",
    "LZ4",
    "ZSTD",
    "CONTROL_ABORT",
    "CONTROL_COMMIT",
    "BatchHeader",
    "Record",
    "NewRecord",
    "read_header",
    "iter_batches",
    "valid_prefix_end",
    "validate_batches",
    "batch_crc",
    "set_base_offset",
    "set_partition_leader_epoch",
    "set_max_timestamp",
    "set_log_append_time",
    "decode_records",
    "build_batch",
    "build_empty_batch",
    "build_control_batch",
    "encode_varint",
    "read_varint",
    "read_varlong",
]

HEADER = struct.Struct(">qiibIhiqqqhii")
HEADER_SIZE = 61
LOG_OVERHEAD = 12  # base_offset + batch_length: the bytes batch_length does not count
MAGIC = 2
MIN_BATCH_LENGTH = HEADER_SIZE - LOG_OVERHEAD  # 49: a v2 batch with no records
_LEGACY_MIN_RECORD_SIZE = 14  # Kafka's first sanity check, before it knows the magic

CREATE_TIME, LOG_APPEND_TIME = 0, 1
NO_PRODUCER_ID = -1
NO_SEQUENCE = -1
NO_PARTITION_LEADER_EPOCH = -1
CONTROL_ABORT, CONTROL_COMMIT = 0, 1

# Field offsets inside a batch.
_LENGTH_OFFSET = 8
_PLE_OFFSET = 12
_MAGIC_OFFSET = 16
_CRC_OFFSET = 17
_ATTRIBUTES_OFFSET = 21
_MAX_TIMESTAMP_OFFSET = 35

_COMPRESSION_MASK = 0x07
_TIMESTAMP_TYPE_BIT = 0x08
_TRANSACTIONAL_BIT = 0x10
_CONTROL_BIT = 0x20
_DELETE_HORIZON_BIT = 0x40

_INT32_MAX = 0x7FFFFFFF

_Q = struct.Struct(">q")
_I = struct.Struct(">i")
_H = struct.Struct(">h")
_U32 = struct.Struct(">I")
_CONTROL_KEY = struct.Struct(">hh")
_CONTROL_VALUE = struct.Struct(">hi")


class BatchHeader(NamedTuple):
    """The 61-byte v2 batch header, field for field, plus derived views."""

    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records_count: int

    @property
    def compression(self) -> int:
        return self.attributes & _COMPRESSION_MASK

    @property
    def timestamp_type(self) -> int:
        """0 = CreateTime, 1 = LogAppendTime (attribute bit 3)."""
        return (self.attributes >> 3) & 1

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & _TRANSACTIONAL_BIT)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & _CONTROL_BIT)

    @property
    def has_delete_horizon(self) -> bool:
        """KIP-534: the cleaner stored a delete horizon in base_timestamp."""
        return bool(self.attributes & _DELETE_HORIZON_BIT)

    @property
    def delete_horizon_ms(self) -> int | None:
        return self.base_timestamp if self.attributes & _DELETE_HORIZON_BIT else None

    @property
    def has_producer_id(self) -> bool:
        return self.producer_id > NO_PRODUCER_ID

    @property
    def last_sequence(self) -> int:
        """Sequence of the last record; sequences wrap at int32 max like Kafka's."""
        if self.base_sequence == NO_SEQUENCE:
            return NO_SEQUENCE
        base, delta = self.base_sequence, self.last_offset_delta
        if base > _INT32_MAX - delta:
            return delta - (_INT32_MAX - base) - 1
        return base + delta

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1

    @property
    def size(self) -> int:
        """Bytes the batch occupies in a buffer or on disk."""
        return self.batch_length + LOG_OVERHEAD


_make_header = BatchHeader._make
_unpack_header = HEADER.unpack_from


def read_header(buf: bytes | bytearray | memoryview, pos: int = 0) -> BatchHeader:
    """Parse the batch header at ``pos`` (no CRC or magic check)."""
    if pos < 0 or len(buf) - pos < HEADER_SIZE:
        raise CorruptRecordError(
            f"record batch header at position {pos} needs {HEADER_SIZE} bytes, "
            f"{max(0, len(buf) - pos)} available"
        )
    return _make_header(_unpack_header(buf, pos))


def iter_batches(
    buf: bytes | bytearray | memoryview, pos: int = 0, end: int | None = None
) -> Iterator[tuple[int, BatchHeader]]:
    """Yield ``(position, header)`` of each complete batch in ``buf[pos:end]``.

    Stops silently at an incomplete tail (a torn write, or a fetch cut at max_bytes).
    Raises CorruptRecordError at a header that cannot be a v2 batch (length below 49
    or magic other than 2), since nothing after it can be located. CRCs are not
    checked: see :func:`batch_crc` and :func:`valid_prefix_end`.
    """
    limit = len(buf) if end is None else min(end, len(buf))
    while limit - pos >= HEADER_SIZE:
        header = _make_header(_unpack_header(buf, pos))
        if header.batch_length < MIN_BATCH_LENGTH:
            raise CorruptRecordError(
                f"record batch at position {pos} has length {header.batch_length}, "
                f"below the minimum {MIN_BATCH_LENGTH}"
            )
        if header.magic != MAGIC:
            raise CorruptRecordError(
                f"record batch at position {pos} has magic {header.magic}, expected {MAGIC}"
            )
        size = header.batch_length + LOG_OVERHEAD
        if pos + size > limit:
            return
        yield pos, header
        pos += size


def valid_prefix_end(
    buf: bytes | bytearray | memoryview,
    pos: int = 0,
    end: int | None = None,
    *,
    check_crc: bool = True,
) -> int:
    """Position just past the last complete, well-formed (and CRC-valid) batch from ``pos``.

    What log recovery truncates to: everything from the first torn, corrupt or
    unparseable batch onwards is discarded, as Kafka's LogSegment.recover does.
    """
    view = memoryview(buf)
    good = pos
    try:
        for batch_pos, header in iter_batches(view, pos, end):
            if check_crc and header.crc != crc32c(
                view[batch_pos + _ATTRIBUTES_OFFSET : batch_pos + header.size]
            ):
                break
            good = batch_pos + header.size
    except CorruptRecordError:
        pass
    return good


def batch_crc(buf: bytes | bytearray | memoryview, pos: int, header: BatchHeader) -> int:
    """CRC-32C of the batch at ``pos`` as it should be stored in its header."""
    return crc32c(memoryview(buf)[pos + _ATTRIBUTES_OFFSET : pos + header.size])


def validate_batches(
    buf: bytes | bytearray | memoryview,
    max_batch_bytes: int | None = None,
    *,
    client: bool = True,
) -> list[BatchHeader]:
    """Validate a Produce partition payload the way a Kafka broker does, without decompressing.

    Header parsing and one CRC-32C per batch, no per-record work (the produce hot path).
    ``max_batch_bytes`` is the topic's ``max.message.bytes``, compared with the batch
    size including its 12-byte log overhead, as Kafka does.

    ``client=True`` (a Produce request, Kafka's AppendOrigin.CLIENT) applies Kafka's
    ProduceRequest.validateRecords, UnifiedLog.analyzeAndValidateRecords and
    LogValidator.validateBatch rules, with Kafka's error codes:

    - CORRUPT_MESSAGE (CorruptRecordError): a length below Kafka's minimum, a magic
      outside 0..2, a batch shorter than its 61-byte header, a CRC mismatch, an unknown
      compression codec, or bytes after the last complete batch (Kafka silently trims a
      partial trailing batch; we refuse it).
    - INVALID_RECORD (InvalidRecordError): no complete batch, magic 0 or 1 (Produce v3+
      carries only magic 2), more than one batch, a base offset other than 0, a record
      count that is not positive or disagrees with last_offset_delta + 1, a control
      batch, or a producer id without a base sequence.
    - MESSAGE_TOO_LARGE (MessageTooLargeError): a batch above ``max_batch_bytes``.

    ``client=False`` (replication, internal appends) accepts any number of batches
    (none for an empty buffer) at any base offset and only checks structure, magic 2,
    size, CRC, codec and 0 <= records_count <= last_offset_delta + 1 (a compacted
    batch may have gaps or no records at all).
    """
    view = memoryview(buf)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    n = len(view)

    # 1. Locate complete batches (Kafka's ByteBufferLogInputStream).
    positions: list[int] = []
    pos = 0
    while n - pos >= LOG_OVERHEAD:
        (batch_length,) = _I.unpack_from(view, pos + _LENGTH_OFFSET)
        if batch_length < _LEGACY_MIN_RECORD_SIZE:
            raise CorruptRecordError(
                f"Record size {batch_length} is less than the minimum record overhead "
                f"({_LEGACY_MIN_RECORD_SIZE})"
            )
        if n - pos <= _MAGIC_OFFSET:
            break
        magic = view[pos + _MAGIC_OFFSET]
        if magic > MAGIC:  # unsigned byte: also catches negative magics
            raise CorruptRecordError(f"Invalid magic found in record: {_signed8(magic)}")
        size = batch_length + LOG_OVERHEAD
        if n - pos < size:
            break
        positions.append(pos)
        pos += size

    if not positions:
        if n == 0 and not client:
            return []
        if client:
            raise InvalidRecordError(
                "Produce requests with version 3 or later must have at least one complete "
                "record batch per partition"
            )
        raise CorruptRecordError(f"no complete record batch in {n} bytes")
    if client:
        if view[_MAGIC_OFFSET] != MAGIC:
            raise InvalidRecordError(
                "Produce requests with version 3 or later are only allowed to contain "
                "record batches with magic version 2"
            )
        if len(positions) > 1:
            raise InvalidRecordError(
                "Produce requests with version 3 or later are only allowed to contain "
                "exactly one record batch per partition"
            )
    if pos != n:
        raise CorruptRecordError(
            f"{n - pos} trailing bytes after the last complete record batch at position {pos}"
        )

    # 2. Per batch (analyzeAndValidateRecords, then LogValidator.validateBatch).
    headers: list[BatchHeader] = []
    for pos in positions:
        if view[pos + _MAGIC_OFFSET] != MAGIC:
            raise CorruptRecordError(
                f"record batch at position {pos} has magic {view[pos + _MAGIC_OFFSET]}, "
                f"only magic {MAGIC} is supported"
            )
        if client:
            (base_offset,) = _Q.unpack_from(view, pos)
            if base_offset != 0:
                raise InvalidRecordError(
                    f"The baseOffset of the record batch in the append should be 0, "
                    f"but it is {base_offset}"
                )
        (batch_length,) = _I.unpack_from(view, pos + _LENGTH_OFFSET)
        size = batch_length + LOG_OVERHEAD
        if max_batch_bytes is not None and size > max_batch_bytes:
            raise MessageTooLargeError(
                f"The record batch size in the append is {size} bytes which exceeds the "
                f"maximum configured value of {max_batch_bytes}."
            )
        if batch_length < MIN_BATCH_LENGTH:
            raise CorruptRecordError(
                f"Record batch is corrupt (the size {size} is smaller than the minimum "
                f"allowed overhead {HEADER_SIZE})"
            )
        header = _make_header(_unpack_header(view, pos))
        computed = crc32c(view[pos + _ATTRIBUTES_OFFSET : pos + size])
        if computed != header.crc:
            raise CorruptRecordError(
                f"Record is corrupt (stored crc = {header.crc}, computed crc = {computed})"
            )
        if header.attributes & _COMPRESSION_MASK > ZSTD:
            raise CorruptRecordError(
                f"Unknown compression type id: {header.attributes & _COMPRESSION_MASK}"
            )
        count = header.records_count
        count_from_offsets = header.last_offset_delta + 1
        if client:
            if count_from_offsets <= 0:
                raise InvalidRecordError(
                    f"Batch has an invalid offset range: [{header.base_offset}, "
                    f"{header.base_offset + header.last_offset_delta}]"
                )
            if count <= 0:
                raise InvalidRecordError(f"Invalid reported count for record batch: {count}")
            if count != count_from_offsets:
                raise InvalidRecordError(
                    f"Inconsistent batch offset range [{header.base_offset}, "
                    f"{header.base_offset + header.last_offset_delta}] and count of records "
                    f"{count}"
                )
            if header.attributes & _CONTROL_BIT:
                raise InvalidRecordError("Clients are not allowed to write control records")
            if header.producer_id > NO_PRODUCER_ID and header.base_sequence < 0:
                raise InvalidRecordError(
                    f"Invalid sequence number {header.base_sequence} in record batch with "
                    f"producerId {header.producer_id}"
                )
        elif count < 0 or count > count_from_offsets:
            raise CorruptRecordError(
                f"record batch at position {pos} declares {count} records for "
                f"last_offset_delta {header.last_offset_delta}"
            )
        headers.append(header)
    return headers


def _signed8(b: int) -> int:
    return b - 256 if b > 127 else b


# ---------------------------------------------------------------------------
# In-place header rewrites.


def set_base_offset(buf: bytearray | memoryview, pos: int, base_offset: int) -> None:
    """Stamp the batch's base offset; outside the CRC, so the CRC stays valid."""
    _Q.pack_into(buf, pos, base_offset)


def set_partition_leader_epoch(buf: bytearray | memoryview, pos: int, epoch: int) -> None:
    """Stamp the partition leader epoch; outside the CRC, so the CRC stays valid."""
    _I.pack_into(buf, pos + _PLE_OFFSET, epoch)


def set_max_timestamp(
    buf: bytearray | memoryview, pos: int, timestamp_type: int, max_timestamp: int
) -> None:
    """Set the timestamp-type bit and max_timestamp, recomputing the CRC if either changed.

    Kafka's DefaultRecordBatch.setMaxTimestamp: the broker uses it to stamp the append
    time on LogAppendTime topics and to correct a client's max timestamp.
    """
    (attributes,) = _H.unpack_from(buf, pos + _ATTRIBUTES_OFFSET)
    (current,) = _Q.unpack_from(buf, pos + _MAX_TIMESTAMP_OFFSET)
    if timestamp_type:
        new_attributes = attributes | _TIMESTAMP_TYPE_BIT
    else:
        new_attributes = attributes & ~_TIMESTAMP_TYPE_BIT
    if new_attributes == attributes and current == max_timestamp:
        return
    _H.pack_into(buf, pos + _ATTRIBUTES_OFFSET, new_attributes)
    _Q.pack_into(buf, pos + _MAX_TIMESTAMP_OFFSET, max_timestamp)
    (batch_length,) = _I.unpack_from(buf, pos + _LENGTH_OFFSET)
    view = memoryview(buf)
    crc = crc32c(view[pos + _ATTRIBUTES_OFFSET : pos + batch_length + LOG_OVERHEAD])
    _U32.pack_into(buf, pos + _CRC_OFFSET, crc)


def set_log_append_time(buf: bytearray | memoryview, pos: int, timestamp_ms: int) -> None:
    """Mark the batch LogAppendTime with ``timestamp_ms`` as max_timestamp, as Kafka does.

    Records keep their stored timestamps; readers report max_timestamp for every record
    of a LogAppendTime batch.
    """
    set_max_timestamp(buf, pos, LOG_APPEND_TIME, timestamp_ms)


# ---------------------------------------------------------------------------
# Varints (zigzag LEB128), as Kafka's ByteUtils writes and reads them.

_ONE_BYTE = tuple(bytes((i,)) for i in range(128))


def encode_varint(value: int) -> bytes:
    """Zigzag-encode a signed int32/int64 as a varint."""
    z = (value << 1) ^ (value >> 63)
    if z < 0x80:
        return _ONE_BYTE[z]
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def read_varint(buf: bytes | bytearray | memoryview, pos: int) -> tuple[int, int]:
    """Read a zigzag varint (int32, at most 5 bytes); return ``(value, next_pos)``.

    Raises IndexError past the end of ``buf`` and CorruptRecordError on a varint longer
    than 5 bytes; bits beyond 32 are dropped exactly as Java's ByteUtils.readVarint does.
    """
    b = buf[pos]
    if b < 0x80:
        return (b >> 1) ^ -(b & 1), pos + 1
    value = b & 0x7F
    shift = 7
    while True:
        pos += 1
        b = buf[pos]
        if b < 0x80:
            value = (value | (b << shift)) & 0xFFFFFFFF
            return (value >> 1) ^ -(value & 1), pos + 1
        value |= (b & 0x7F) << shift
        shift += 7
        if shift > 28:
            raise CorruptRecordError(
                "Varint is too long, the most significant bit in the 5th byte is set"
            )


def read_varlong(buf: bytes | bytearray | memoryview, pos: int) -> tuple[int, int]:
    """Read a zigzag varlong (int64, at most 10 bytes); return ``(value, next_pos)``."""
    b = buf[pos]
    if b < 0x80:
        return (b >> 1) ^ -(b & 1), pos + 1
    value = b & 0x7F
    shift = 7
    while True:
        pos += 1
        b = buf[pos]
        if b < 0x80:
            value = (value | (b << shift)) & 0xFFFFFFFFFFFFFFFF
            return (value >> 1) ^ -(value & 1), pos + 1
        value |= (b & 0x7F) << shift
        shift += 7
        if shift > 63:
            raise CorruptRecordError(
                "Varlong is too long, the most significant bit in the 10th byte is set"
            )


# ---------------------------------------------------------------------------
# Records.


@dataclass(frozen=True, slots=True)
class Record:
    """One decoded record with absolute offset and timestamp."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    attributes: int = 0


@dataclass(frozen=True, slots=True)
class NewRecord:
    """A record to build into a batch; ``timestamp=None`` means now."""

    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    timestamp: int | None = None


def decode_records(
    buf: bytes | bytearray | memoryview,
    pos: int = 0,
    *,
    max_size: int | None = DEFAULT_MAX_DECOMPRESSED_SIZE,
) -> list[Record]:
    """Decode every record of the batch at ``pos``, decompressing as needed.

    Offsets and timestamps are absolute; in a LogAppendTime batch every record carries
    the batch's max_timestamp, as Kafka reports it. ``max_size`` bounds the decompressed
    size. Raises CorruptRecordError on any malformed length, varint, overrun, record
    count mismatch or trailing bytes. Does not check the CRC.
    """
    header = read_header(buf, pos)
    if header.magic != MAGIC:
        raise CorruptRecordError(f"record batch has magic {header.magic}, expected {MAGIC}")
    if header.batch_length < MIN_BATCH_LENGTH:
        raise CorruptRecordError(f"record batch length {header.batch_length} is below 49")
    end = pos + header.batch_length + LOG_OVERHEAD
    if end > len(buf):
        raise CorruptRecordError(
            f"record batch needs {header.size} bytes, {len(buf) - pos} available"
        )
    if header.records_count < 0:
        raise CorruptRecordError(f"record batch declares {header.records_count} records")
    body = memoryview(buf)[pos + HEADER_SIZE : end]
    codec = header.attributes & _COMPRESSION_MASK
    data = bytes(body) if codec == NONE else decompress(codec, body, max_size)
    log_append_time = header.max_timestamp if header.attributes & _TIMESTAMP_TYPE_BIT else None
    try:
        return _parse_records(
            data, header.records_count, header.base_offset, header.base_timestamp, log_append_time
        )
    except IndexError as exc:
        raise CorruptRecordError("record data ends inside a record") from exc


def _parse_records(
    data: bytes,
    count: int,
    base_offset: int,
    base_timestamp: int,
    log_append_time: int | None,
) -> list[Record]:
    """Parse ``count`` records that must exactly fill ``data`` (Kafka's DefaultRecord.readFrom)."""
    varint = read_varint
    varlong = read_varlong
    records: list[Record] = []
    append = records.append
    end = len(data)
    pos = 0
    for _ in range(count):
        length, pos = varint(data, pos)
        record_end = pos + length
        if length <= 0 or record_end > end:
            raise CorruptRecordError(
                f"Invalid record size {length} at byte {pos} of {end} in the records section"
            )
        attributes = data[pos]
        if attributes > 127:
            attributes -= 256
        timestamp_delta, pos = varlong(data, pos + 1)
        offset_delta, pos = varint(data, pos)
        key_len, pos = varint(data, pos)
        if key_len >= 0:
            if key_len > record_end - pos:
                raise CorruptRecordError(f"record key of {key_len} bytes overruns the record")
            key: bytes | None = data[pos : pos + key_len]
            pos += key_len
        else:
            key = None
        value_len, pos = varint(data, pos)
        if value_len >= 0:
            if value_len > record_end - pos:
                raise CorruptRecordError(f"record value of {value_len} bytes overruns the record")
            value: bytes | None = data[pos : pos + value_len]
            pos += value_len
        else:
            value = None
        header_count, pos = varint(data, pos)
        if header_count < 0:
            raise CorruptRecordError(f"Found invalid number of record headers {header_count}")
        if header_count:
            if header_count > (record_end - pos) // 2:
                raise CorruptRecordError(f"{header_count} record headers overrun the record")
            hdrs: list[tuple[str, bytes | None]] = []
            for _h in range(header_count):
                hk_len, pos = varint(data, pos)
                if hk_len < 0:
                    raise CorruptRecordError(f"Invalid negative header key size {hk_len}")
                if hk_len > record_end - pos:
                    raise CorruptRecordError(f"header key of {hk_len} bytes overruns the record")
                # surrogateescape: keep undecodable bytes so a rebuilt batch is identical
                hk = data[pos : pos + hk_len].decode("utf-8", "surrogateescape")
                pos += hk_len
                hv_len, pos = varint(data, pos)
                if hv_len >= 0:
                    if hv_len > record_end - pos:
                        raise CorruptRecordError(
                            f"header value of {hv_len} bytes overruns the record"
                        )
                    hdrs.append((hk, data[pos : pos + hv_len]))
                    pos += hv_len
                else:
                    hdrs.append((hk, None))
            headers: tuple[tuple[str, bytes | None], ...] = tuple(hdrs)
        else:
            headers = ()
        if pos != record_end:
            raise CorruptRecordError(
                f"Invalid record size: expected to read {length} bytes in record payload, "
                f"but instead read {length + pos - record_end}"
            )
        append(
            Record(
                base_offset + offset_delta,
                log_append_time
                if log_append_time is not None
                else base_timestamp + timestamp_delta,
                key,
                value,
                headers,
                attributes,
            )
        )
    if pos != end:
        raise CorruptRecordError(f"{end - pos} bytes left after the {count} declared records")
    return records


# ---------------------------------------------------------------------------
# Building batches.

_NULL = b"\x01"  # varint(-1)
_ZERO = b"\x00"  # varint(0), also record attributes 0


def _encode_records(
    records: Sequence[NewRecord],
    offset_deltas: Sequence[int],
    timestamps: Sequence[int],
    base_ts: int,
) -> bytes:
    varint = encode_varint
    parts: list[bytes] = []
    add = parts.append
    for record, offset_delta, ts in zip(records, offset_deltas, timestamps, strict=True):
        body = [_ZERO, varint(ts - base_ts), varint(offset_delta)]
        key, value = record.key, record.value
        if key is None:
            body.append(_NULL)
        else:
            body.append(varint(len(key)))
            body.append(bytes(key))
        if value is None:
            body.append(_NULL)
        else:
            body.append(varint(len(value)))
            body.append(bytes(value))
        hdrs = record.headers
        body.append(varint(len(hdrs)))
        for hk, hv in hdrs:
            hk_bytes = hk.encode("utf-8", "surrogateescape")
            body.append(varint(len(hk_bytes)))
            body.append(hk_bytes)
            if hv is None:
                body.append(_NULL)
            else:
                body.append(varint(len(hv)))
                body.append(bytes(hv))
        encoded = b"".join(body)
        add(varint(len(encoded)))
        add(encoded)
    return b"".join(parts)


def _assemble(
    *,
    base_offset: int,
    partition_leader_epoch: int,
    attributes: int,
    last_offset_delta: int,
    base_timestamp: int,
    max_timestamp: int,
    producer_id: int,
    producer_epoch: int,
    base_sequence: int,
    records_count: int,
    body: bytes,
) -> bytes:
    header = HEADER.pack(
        base_offset,
        MIN_BATCH_LENGTH + len(body),
        partition_leader_epoch,
        MAGIC,
        0,
        attributes,
        last_offset_delta,
        base_timestamp,
        max_timestamp,
        producer_id,
        producer_epoch,
        base_sequence,
        records_count,
    )
    crc = crc32c(body, crc32c(memoryview(header)[_ATTRIBUTES_OFFSET:]))
    return b"".join((header[:_CRC_OFFSET], _U32.pack(crc), header[_ATTRIBUTES_OFFSET:], body))


def _attributes(
    compression: int, timestamp_type: int, transactional: bool, control: bool, delete_horizon: bool
) -> int:
    if not NONE <= compression <= ZSTD:
        raise ValueError(f"unknown compression codec {compression}")
    return (
        compression
        | (_TIMESTAMP_TYPE_BIT if timestamp_type else 0)
        | (_TRANSACTIONAL_BIT if transactional else 0)
        | (_CONTROL_BIT if control else 0)
        | (_DELETE_HORIZON_BIT if delete_horizon else 0)
    )


def build_batch(
    records: Sequence[NewRecord],
    *,
    base_offset: int = 0,
    compression: int = NONE,
    producer_id: int = NO_PRODUCER_ID,
    producer_epoch: int = -1,
    base_sequence: int = NO_SEQUENCE,
    transactional: bool = False,
    partition_leader_epoch: int = NO_PARTITION_LEADER_EPOCH,
    timestamp_type: int = CREATE_TIME,
    offset_deltas: Sequence[int] | None = None,
    delete_horizon_ms: int | None = None,
    last_offset_delta: int | None = None,
    control: bool = False,
) -> bytes:
    """Build one v2 batch, as Kafka's MemoryRecordsBuilder would, with a valid CRC.

    ``offset_deltas`` (strictly increasing, >= 0) lets compaction keep original offsets
    with gaps; last_offset_delta is then the last delta unless ``last_offset_delta``
    overrides it (Kafka's overrideLastOffset: a cleaned batch keeps its original offset
    range so the producer's last sequence survives). base_timestamp is the first
    record's timestamp, or ``delete_horizon_ms`` when given (the cleaner's KIP-534
    marker, attribute bit 6). ``control`` rebuilds a transaction marker batch. The
    records section is compressed whenever ``compression`` asks for it, even if that
    does not shrink it (the Java client does the same).
    """
    n = len(records)
    if n == 0:
        raise ValueError("a batch needs at least one record; see build_empty_batch")
    if offset_deltas is None:
        deltas: Sequence[int] = range(n)
    else:
        deltas = offset_deltas
        if len(deltas) != n:
            raise ValueError(f"{len(deltas)} offset deltas for {n} records")
        previous = -1
        for d in deltas:
            if d <= previous:
                raise ValueError("offset deltas must be >= 0 and strictly increasing")
            previous = d
        if previous > _INT32_MAX:
            raise ValueError(f"offset delta {previous} does not fit an int32")
    last_delta = deltas[-1]
    if last_offset_delta is not None:
        if not last_delta <= last_offset_delta <= _INT32_MAX:
            raise ValueError(f"last offset delta {last_offset_delta} is below the last record's")
        last_delta = last_offset_delta
    now: int | None = None
    timestamps: list[int] = []
    for record in records:
        ts = record.timestamp
        if ts is None:
            if now is None:
                now = int(time.time() * 1000)
            ts = now
        timestamps.append(ts)
    base_ts = timestamps[0] if delete_horizon_ms is None else delete_horizon_ms
    body = _encode_records(records, deltas, timestamps, base_ts)
    if compression != NONE:
        body = compress(compression, body)
    return _assemble(
        base_offset=base_offset,
        partition_leader_epoch=partition_leader_epoch,
        attributes=_attributes(
            compression, timestamp_type, transactional, control, delete_horizon_ms is not None
        ),
        last_offset_delta=last_delta,
        base_timestamp=base_ts,
        max_timestamp=max(timestamps),
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        records_count=n,
        body=body,
    )


def build_empty_batch(
    *,
    base_offset: int,
    last_offset_delta: int,
    timestamp: int,
    producer_id: int,
    producer_epoch: int,
    base_sequence: int,
    transactional: bool = False,
    control: bool = False,
    partition_leader_epoch: int = NO_PARTITION_LEADER_EPOCH,
    timestamp_type: int = CREATE_TIME,
    delete_horizon_ms: int | None = None,
) -> bytes:
    """A batch with no records that keeps its offset range and producer state.

    Kafka's DefaultRecordBatch.writeEmptyHeader: the cleaner writes one when it removes
    every record of a batch whose producer state must survive (idempotence, txns).
    """
    if last_offset_delta < 0:
        raise ValueError("last_offset_delta must be >= 0")
    base_ts = timestamp if delete_horizon_ms is None else delete_horizon_ms
    return _assemble(
        base_offset=base_offset,
        partition_leader_epoch=partition_leader_epoch,
        attributes=_attributes(
            NONE, timestamp_type, transactional, control, delete_horizon_ms is not None
        ),
        last_offset_delta=last_offset_delta,
        base_timestamp=base_ts,
        max_timestamp=timestamp,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        records_count=0,
        body=b"",
    )


def build_control_batch(
    commit: bool,
    *,
    base_offset: int,
    producer_id: int,
    producer_epoch: int,
    coordinator_epoch: int,
    timestamp: int,
    partition_leader_epoch: int = NO_PARTITION_LEADER_EPOCH,
) -> bytes:
    """A transaction marker batch (COMMIT or ABORT), as Kafka's withEndTransactionMarker builds it.

    One record: key = version int16 0 + type int16 (0 abort, 1 commit); value = version
    int16 0 + coordinator_epoch int32. Attributes transactional | control, no sequence.
    """
    record = NewRecord(
        key=_CONTROL_KEY.pack(0, CONTROL_COMMIT if commit else CONTROL_ABORT),
        value=_CONTROL_VALUE.pack(0, coordinator_epoch),
        timestamp=timestamp,
    )
    body = _encode_records((record,), (0,), (timestamp,), timestamp)
    return _assemble(
        base_offset=base_offset,
        partition_leader_epoch=partition_leader_epoch,
        attributes=_TRANSACTIONAL_BIT | _CONTROL_BIT,
        last_offset_delta=0,
        base_timestamp=timestamp,
        max_timestamp=timestamp,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=NO_SEQUENCE,
        records_count=1,
        body=body,
    )
