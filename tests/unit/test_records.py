"""RecordBatch v2: kafka-python as byte-level oracle, hand-made batches, validation, fuzzing."""

from __future__ import annotations

import struct
import time

import pytest
from crc32c import crc32c
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka.record.default_records import (
    ControlRecord,
    DefaultRecordBatch,
    DefaultRecordBatchBuilder,
)
from kafka.record.util import decode_varint as kp_decode_varint
from kafka.record.util import encode_varint as kp_encode_varint

from pybroker.protocol.compression import CODEC_NAMES, GZIP, LZ4, NONE, SNAPPY, ZSTD
from pybroker.protocol.errors import (
    CorruptRecordError,
    ErrorCode,
    InvalidRecordError,
    KafkaError,
    MessageTooLargeError,
)
from pybroker.protocol.records import (
    HEADER,
    HEADER_SIZE,
    LOG_OVERHEAD,
    BatchHeader,
    NewRecord,
    Record,
    batch_crc,
    build_batch,
    build_control_batch,
    build_empty_batch,
    decode_records,
    encode_varint,
    iter_batches,
    read_header,
    read_varint,
    read_varlong,
    set_base_offset,
    set_log_append_time,
    set_max_timestamp,
    set_partition_leader_epoch,
    valid_prefix_end,
    validate_batches,
)

CODECS = [NONE, GZIP, SNAPPY, LZ4, ZSTD]
TS = 1_700_000_000_000

RECORDS = [
    NewRecord(b"key-0", b"value-0", (), TS),
    NewRecord(None, b"no key", (("trace", b"abc"), ("empty", b""), ("null", None)), TS + 5),
    NewRecord(b"k2", None, (), TS - 3),  # negative timestamp delta
    NewRecord(b"", b"", (("ключ", b"\x00\xff"),), TS + 1000),  # non-ASCII header key
    NewRecord(b"big", b"x" * 300, (), TS + 70_000),  # multi-byte varints
]


def kp_build(
    records: list[NewRecord],
    *,
    compression: int = NONE,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    transactional: bool = False,
) -> bytes:
    """The same batch through kafka-python's DefaultRecordBatchBuilder."""
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=compression,
        is_transactional=transactional,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        batch_size=1 << 30,
    )
    for delta, r in enumerate(records):
        meta = builder.append(
            delta, timestamp=r.timestamp, key=r.key, value=r.value, headers=list(r.headers)
        )
        assert meta is not None
    return bytes(builder.build())


def kp_records(batch: bytes) -> list:
    parsed = DefaultRecordBatch(batch)
    assert parsed.validate_crc()
    return list(parsed)


def expected(records: list[NewRecord], base_offset: int = 0) -> list[Record]:
    return [
        Record(base_offset + i, r.timestamp, r.key, r.value, r.headers)
        for i, r in enumerate(records)
    ]


def wrap(
    body: bytes,
    count: int,
    *,
    last_offset_delta: int | None = None,
    attributes: int = 0,
    base_offset: int = 0,
    magic: int = 2,
    producer_id: int = -1,
    base_sequence: int = -1,
    base_timestamp: int = TS,
    max_timestamp: int = TS,
) -> bytes:
    """A batch around a hand-made records section, with a correct CRC."""
    header = bytearray(
        HEADER.pack(
            base_offset,
            49 + len(body),
            0,
            magic,
            0,
            attributes,
            count - 1 if last_offset_delta is None else last_offset_delta,
            base_timestamp,
            max_timestamp,
            producer_id,
            0 if producer_id >= 0 else -1,
            base_sequence,
            count,
        )
    )
    batch = header + body
    struct.pack_into(">I", batch, 17, crc32c(bytes(batch[21:])))
    return bytes(batch)


def raw_record(
    *,
    attributes: int = 0,
    ts_delta: int = 0,
    offset_delta: int = 0,
    key: bytes | None = b"k",
    value: bytes | None = b"v",
    headers: bytes = b"\x00",
    length_adjust: int = 0,
) -> bytes:
    """One record's bytes; ``headers`` is the raw header section incl. its count."""
    body = bytes([attributes & 0xFF]) + encode_varint(ts_delta) + encode_varint(offset_delta)
    body += encode_varint(-1) if key is None else encode_varint(len(key)) + key
    body += encode_varint(-1) if value is None else encode_varint(len(value)) + value
    body += headers
    return encode_varint(len(body) + length_adjust) + body


# --- Header ----------------------------------------------------------------------


def test_header_layout() -> None:
    assert HEADER.size == HEADER_SIZE == 61
    assert LOG_OVERHEAD == 12
    assert HEADER.format == ">qiibIhiqqqhii"


def test_read_header_and_properties() -> None:
    batch = build_batch(
        RECORDS,
        base_offset=1000,
        compression=LZ4,
        producer_id=77,
        producer_epoch=3,
        base_sequence=40,
        transactional=True,
        partition_leader_epoch=9,
    )
    h = read_header(batch)
    assert isinstance(h, BatchHeader)
    assert (h.base_offset, h.partition_leader_epoch, h.magic) == (1000, 9, 2)
    assert h.batch_length == len(batch) - 12 and h.size == len(batch)
    assert h.compression == LZ4 and h.timestamp_type == 0
    assert h.is_transactional and not h.is_control and not h.has_delete_horizon
    assert h.attributes == LZ4 | 0x10
    assert (h.last_offset_delta, h.last_offset, h.next_offset) == (4, 1004, 1005)
    assert (h.base_timestamp, h.max_timestamp) == (TS, TS + 70_000)
    assert (h.producer_id, h.producer_epoch, h.base_sequence) == (77, 3, 40)
    assert h.has_producer_id and h.last_sequence == 44
    assert h.records_count == 5
    assert h.crc == batch_crc(batch, 0, h)
    assert read_header(b"\x00" * 7 + batch, 7) == h


def test_read_header_short_buffer() -> None:
    batch = build_batch(RECORDS[:1])
    for cut in (0, 1, 60):
        with pytest.raises(CorruptRecordError):
            read_header(batch[:cut])
    with pytest.raises(CorruptRecordError):
        read_header(batch, len(batch) - 60)


def test_last_sequence_wraps_like_kafka() -> None:
    h = read_header(build_batch(RECORDS, producer_id=1, producer_epoch=0, base_sequence=2**31 - 2))
    assert h.last_sequence == 2  # 2**31-2, 2**31-1, 0, 1, 2
    assert read_header(build_batch(RECORDS)).last_sequence == -1


# --- build_batch against kafka-python, byte for byte ---------------------------


def test_build_matches_kafka_python_uncompressed() -> None:
    assert build_batch(RECORDS, partition_leader_epoch=0) == kp_build(RECORDS)


def test_build_matches_kafka_python_idempotent_transactional() -> None:
    ours = build_batch(
        RECORDS,
        producer_id=123456789,
        producer_epoch=7,
        base_sequence=99,
        transactional=True,
        partition_leader_epoch=0,
    )
    theirs = kp_build(
        RECORDS, producer_id=123456789, producer_epoch=7, base_sequence=99, transactional=True
    )
    assert ours == theirs


record_strategy = st.builds(
    NewRecord,
    key=st.none() | st.binary(max_size=200),
    value=st.none() | st.binary(max_size=400),
    headers=st.lists(
        st.tuples(st.text(max_size=20), st.none() | st.binary(max_size=50)), max_size=4
    ).map(tuple),
    timestamp=st.integers(0, 2**42),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=st.lists(record_strategy, min_size=1, max_size=12))
def test_build_matches_kafka_python_any_records(records: list[NewRecord]) -> None:
    ours = build_batch(records, partition_leader_epoch=0)
    assert ours == kp_build(records)
    assert decode_records(ours) == expected(records)
    assert validate_batches(ours) == [read_header(ours)]


# --- Compressed batches in both directions -------------------------------------

COMPRESSIBLE = [
    NewRecord(b"key-%d" % i, b"compressible payload " * 40, (("h", b"v" * 10),), TS + i)
    for i in range(30)
]


@pytest.mark.parametrize("codec", CODECS, ids=CODEC_NAMES.get)
def test_decode_kafka_python_batches(codec: int) -> None:
    batch = kp_build(COMPRESSIBLE, compression=codec)
    h = read_header(batch)
    assert h.compression == codec  # kafka-python kept the codec (it compressed well)
    assert len(batch) < 2000 or codec == NONE
    assert validate_batches(batch) == [h]
    assert decode_records(batch) == expected(COMPRESSIBLE)


@pytest.mark.parametrize("codec", CODECS, ids=CODEC_NAMES.get)
def test_kafka_python_decodes_our_batches(codec: int) -> None:
    batch = build_batch(COMPRESSIBLE, compression=codec, base_offset=500)
    assert read_header(batch).compression == codec
    theirs = kp_records(batch)
    assert [(r.offset, r.timestamp, r.key, r.value, r.headers) for r in theirs] == [
        (500 + i, r.timestamp, r.key, r.value, list(r.headers)) for i, r in enumerate(COMPRESSIBLE)
    ]
    assert decode_records(batch) == expected(COMPRESSIBLE, 500)


@pytest.mark.parametrize("codec", [GZIP, SNAPPY, LZ4, ZSTD], ids=CODEC_NAMES.get)
def test_compression_kept_even_when_it_does_not_shrink(codec: int) -> None:
    tiny = [NewRecord(None, b"\x8f", (), TS)]
    batch = build_batch(tiny, compression=codec)
    assert read_header(batch).compression == codec
    assert decode_records(batch) == expected(tiny)


def test_decode_respects_max_size() -> None:
    batch = build_batch(COMPRESSIBLE, compression=ZSTD)
    assert len(decode_records(batch, max_size=100_000)) == 30
    with pytest.raises(CorruptRecordError, match="decompresses to more than"):
        decode_records(batch, max_size=1000)


# --- A batch made by hand --------------------------------------------------------


def test_decode_hand_crafted_batch() -> None:
    # Record 1: attributes 0, ts delta 0, offset delta 0, key "k1", value "hello",
    #           one header ("h" -> b"1").
    rec1 = bytes.fromhex("000000046b310a68656c6c6f0202680231")
    # Record 2: ts delta +10 (zigzag 20 = 0x14), offset delta 1 (0x02), null key (0x01),
    #           value "v", header with null value.
    rec2 = bytes.fromhex("00140201027602026801")
    body = bytes([len(rec1) * 2]) + rec1 + bytes([len(rec2) * 2]) + rec2
    batch = bytearray(61 + len(body))
    struct.pack_into(">qiib", batch, 0, 42, len(batch) - 12, 5, 2)
    struct.pack_into(">hiqqqhii", batch, 21, 0, 1, TS, TS + 10, -1, -1, -1, 2)
    batch[61:] = body
    struct.pack_into(">I", batch, 17, crc32c(bytes(batch[21:])))

    assert decode_records(batch) == [
        Record(42, TS, b"k1", b"hello", (("h", b"1"),)),
        Record(43, TS + 10, None, b"v", (("h", None),)),
    ]
    headers = validate_batches(batch, client=False)
    assert headers[0].partition_leader_epoch == 5 and headers[0].records_count == 2
    assert [(r.offset, r.key, r.value) for r in kp_records(bytes(batch))] == [
        (42, b"k1", b"hello"),
        (43, None, b"v"),
    ]


def test_record_attributes_are_signed_int8() -> None:
    body = raw_record(attributes=-1)
    assert decode_records(wrap(body, 1))[0].attributes == -1


def test_negative_key_or_value_length_means_null_like_kafka() -> None:
    body = raw_record(key=None, value=None)
    body = body.replace(b"\x01\x01", encode_varint(-5) + encode_varint(-2))
    (record,) = decode_records(wrap(body, 1))
    assert record.key is None and record.value is None


def test_undecodable_header_key_round_trips() -> None:
    headers = b"\x02" + encode_varint(2) + b"\xff\xfe" + encode_varint(1) + b"x"
    batch = wrap(raw_record(headers=headers), 1)
    (record,) = decode_records(batch)
    rebuilt = build_batch(
        [NewRecord(record.key, record.value, record.headers, record.timestamp)],
        partition_leader_epoch=0,
        base_offset=0,
    )
    assert rebuilt[61:] == batch[61:]


# --- Timestamps, offsets, special batches --------------------------------------


def test_offset_deltas_keep_gaps() -> None:
    batch = build_batch(RECORDS[:3], base_offset=100, offset_deltas=[0, 5, 9])
    h = read_header(batch)
    assert (h.last_offset_delta, h.records_count, h.next_offset) == (9, 3, 110)
    assert [r.offset for r in decode_records(batch)] == [100, 105, 109]
    assert validate_batches(batch, client=False) == [h]
    with pytest.raises(InvalidRecordError, match="Inconsistent batch offset range"):
        validate_batches(_rebase(batch, 0))  # a client batch may not have gaps


def _rebase(batch: bytes, base_offset: int) -> bytearray:
    out = bytearray(batch)
    set_base_offset(out, 0, base_offset)
    return out


@pytest.mark.parametrize("deltas", [[0, 0, 1], [1, 0, 2], [-1, 0, 1], [0, 1]])
def test_offset_deltas_must_increase(deltas: list[int]) -> None:
    with pytest.raises(ValueError):
        build_batch(RECORDS[:3], offset_deltas=deltas)


def test_empty_record_list_is_refused() -> None:
    with pytest.raises(ValueError):
        build_batch([])


def test_missing_timestamp_means_now() -> None:
    before = int(time.time() * 1000)
    batch = build_batch([NewRecord(b"a", b"b"), NewRecord(b"c", b"d", (), TS)])
    after = int(time.time() * 1000)
    first, second = decode_records(batch)
    assert before <= first.timestamp <= after
    assert second.timestamp == TS
    assert read_header(batch).max_timestamp == first.timestamp


def test_delete_horizon() -> None:
    horizon = TS + 86_400_000
    batch = build_batch(RECORDS[:2], delete_horizon_ms=horizon)
    h = read_header(batch)
    assert h.has_delete_horizon and h.delete_horizon_ms == horizon == h.base_timestamp
    assert h.attributes & 0x40
    assert decode_records(batch) == expected(RECORDS[:2])
    assert read_header(build_batch(RECORDS[:1])).delete_horizon_ms is None


def test_log_append_time_batch_reports_max_timestamp_for_every_record() -> None:
    batch = build_batch(RECORDS, timestamp_type=1)
    h = read_header(batch)
    assert h.timestamp_type == 1
    assert [r.timestamp for r in decode_records(batch)] == [h.max_timestamp] * 5


def test_empty_batch_keeps_offsets_and_producer_state() -> None:
    batch = build_empty_batch(
        base_offset=10,
        last_offset_delta=4,
        timestamp=TS,
        producer_id=5,
        producer_epoch=1,
        base_sequence=20,
        transactional=True,
    )
    h = read_header(batch)
    assert len(batch) == 61 and h.batch_length == 49
    assert (h.records_count, h.next_offset, h.last_sequence) == (0, 15, 24)
    assert h.is_transactional and h.crc == batch_crc(batch, 0, h)
    assert decode_records(batch) == []
    assert validate_batches(batch, client=False) == [h]
    with pytest.raises(InvalidRecordError):  # a client may not send one
        validate_batches(_rebase(batch, 0))


def test_control_batch_layout() -> None:
    batch = build_control_batch(
        True,
        base_offset=77,
        producer_id=4242,
        producer_epoch=3,
        coordinator_epoch=9,
        timestamp=TS,
        partition_leader_epoch=2,
    )
    h = read_header(batch)
    assert h.attributes == 0x30 and h.is_control and h.is_transactional
    assert h.compression == 0 and h.timestamp_type == 0
    assert (h.base_offset, h.last_offset_delta, h.records_count) == (77, 0, 1)
    assert (h.producer_id, h.producer_epoch, h.base_sequence) == (4242, 3, -1)
    assert (h.base_timestamp, h.max_timestamp, h.partition_leader_epoch) == (TS, TS, 2)
    assert h.crc == batch_crc(batch, 0, h)
    (record,) = decode_records(batch)
    assert record == Record(77, TS, b"\x00\x00\x00\x01", b"\x00\x00\x00\x00\x00\x09", ())
    # Exact record bytes: len, attrs, tsDelta 0, offsetDelta 0, key(4), value(6), 0 headers.
    assert batch[61:] == bytes.fromhex("2000000008000000010c00000000000900")
    (parsed,) = kp_records(batch)
    assert isinstance(parsed, ControlRecord) and parsed.commit and parsed.version == 0

    abort = build_control_batch(
        False, base_offset=0, producer_id=1, producer_epoch=0, coordinator_epoch=0, timestamp=TS
    )
    assert decode_records(abort)[0].key == b"\x00\x00\x00\x00"
    assert kp_records(abort)[0].abort


# --- In-place rewrites -----------------------------------------------------------


@pytest.mark.parametrize("codec", [NONE, ZSTD], ids=CODEC_NAMES.get)
def test_set_base_offset_and_epoch_keep_crc(codec: int) -> None:
    original = build_batch(RECORDS, compression=codec)
    buf = bytearray(b"\xaa" * 13 + original)
    set_base_offset(buf, 13, 2**40 + 7)
    set_partition_leader_epoch(buf, 13, 12)
    assert buf[13 + 21 :] == original[21:]  # CRC and everything it covers untouched
    h = read_header(buf, 13)
    assert (h.base_offset, h.partition_leader_epoch) == (2**40 + 7, 12)
    assert batch_crc(buf, 13, h) == h.crc
    assert validate_batches(buf[13:], client=False) == [h]
    assert [r.offset for r in decode_records(buf, 13)] == [2**40 + 7 + i for i in range(5)]
    assert [r.offset for r in kp_records(bytes(buf[13:]))][0] == 2**40 + 7


def test_set_base_offset_through_memoryview() -> None:
    buf = bytearray(build_batch(RECORDS[:2]))
    set_base_offset(memoryview(buf), 0, 5)
    assert read_header(buf).base_offset == 5


@pytest.mark.parametrize("codec", [NONE, GZIP], ids=CODEC_NAMES.get)
def test_set_log_append_time_keeps_crc(codec: int) -> None:
    original = build_batch(RECORDS, compression=codec)
    buf = bytearray(original)
    append_time = TS + 999_999
    set_log_append_time(buf, 0, append_time)
    h = read_header(buf)
    assert h.timestamp_type == 1 and h.max_timestamp == append_time
    assert h.base_timestamp == TS and h.compression == codec
    assert h.crc == batch_crc(buf, 0, h) != read_header(original).crc
    assert validate_batches(buf) == [h]
    assert buf[61:] == original[61:]
    assert [r.timestamp for r in decode_records(buf)] == [append_time] * 5
    assert [r.timestamp for r in kp_records(bytes(buf))] == [append_time] * 5

    # Same value again: nothing changes, not even the CRC.
    snapshot = bytes(buf)
    set_log_append_time(buf, 0, append_time)
    assert bytes(buf) == snapshot

    # Back to CreateTime with the true max, as Kafka's setMaxTimestamp does.
    set_max_timestamp(buf, 0, 0, TS + 70_000)
    assert bytes(buf) == original


# --- CRC -------------------------------------------------------------------------

CRC_BATCH = build_batch(RECORDS, producer_id=3, producer_epoch=0, base_sequence=0)
CRC_GZIP_BATCH = build_batch(COMPRESSIBLE, compression=GZIP)


@settings(max_examples=400, deadline=None)
@given(
    which=st.sampled_from([CRC_BATCH, CRC_GZIP_BATCH]),
    index=st.integers(17, 10**6),
    mask=st.integers(1, 255),
)
def test_crc_catches_any_flipped_byte(which: bytes, index: int, mask: int) -> None:
    buf = bytearray(which)
    index = 17 + (index - 17) % (len(buf) - 17)  # the CRC field or anything it covers
    buf[index] ^= mask
    with pytest.raises(CorruptRecordError, match="Record is corrupt"):
        validate_batches(buf)
    with pytest.raises(CorruptRecordError):
        validate_batches(buf, client=False)
    assert valid_prefix_end(buf) == 0


@given(index=st.sampled_from([*range(0, 8), *range(12, 16)]), mask=st.integers(1, 255))
def test_fields_outside_crc_do_not_affect_it(index: int, mask: int) -> None:
    buf = bytearray(CRC_BATCH)
    buf[index] ^= mask
    h = read_header(buf)
    assert batch_crc(buf, 0, h) == h.crc
    assert validate_batches(buf, client=False) == [h]


# --- validate_batches: what a Produce request may carry --------------------------


def test_validate_accepts_one_client_batch_per_codec() -> None:
    for codec in CODECS:
        batch = build_batch(
            COMPRESSIBLE, compression=codec, producer_id=1, producer_epoch=0, base_sequence=0
        )
        (h,) = validate_batches(batch, max_batch_bytes=len(batch))
        assert h == read_header(batch)
        assert validate_batches(memoryview(batch)) == [h]
        assert validate_batches(bytearray(batch)) == [h]


def test_validate_empty_buffer() -> None:
    with pytest.raises(InvalidRecordError, match="at least one"):
        validate_batches(b"")
    assert validate_batches(b"", client=False) == []


def test_validate_truncated_buffers() -> None:
    batch = build_batch(RECORDS)
    for cut in range(1, len(batch)):
        with pytest.raises(InvalidRecordError) as info:
            validate_batches(batch[:cut])
        assert info.value.code == ErrorCode.invalid_record
        with pytest.raises(CorruptRecordError):
            validate_batches(batch[:cut], client=False)


@pytest.mark.parametrize("tail", [b"\x00", b"\x00" * 11, b"\x00" * 30, b"\xff" * 70])
def test_validate_trailing_bytes(tail: bytes) -> None:
    batch = build_batch(RECORDS)
    for client in (True, False):
        with pytest.raises(CorruptRecordError) as info:
            validate_batches(batch + tail, client=client)
        assert info.value.code == ErrorCode.corrupt_message


def test_validate_trailing_partial_batch() -> None:
    batch = build_batch(RECORDS)
    with pytest.raises(CorruptRecordError, match="trailing bytes"):
        validate_batches(batch + batch[:40])
    with pytest.raises(CorruptRecordError, match="trailing bytes"):
        validate_batches(batch + batch[:40], client=False)


def test_validate_more_than_one_batch() -> None:
    first = build_batch(RECORDS)
    second = build_batch(RECORDS[:2], base_offset=5)
    with pytest.raises(InvalidRecordError, match="exactly one record batch"):
        validate_batches(first + build_batch(RECORDS[:2]))
    headers = validate_batches(first + second, client=False)
    assert [h.base_offset for h in headers] == [0, 5]


@pytest.mark.parametrize("magic", [0, 1])
def test_validate_old_magic(magic: int) -> None:
    buf = bytearray(build_batch(RECORDS))
    buf[16] = magic
    with pytest.raises(InvalidRecordError, match="magic version 2") as info:
        validate_batches(buf)
    assert info.value.code == ErrorCode.invalid_record
    with pytest.raises(CorruptRecordError, match="only magic 2"):
        validate_batches(buf, client=False)


@pytest.mark.parametrize("magic", [3, 127, -1, -128])
def test_validate_impossible_magic(magic: int) -> None:
    buf = bytearray(build_batch(RECORDS))
    struct.pack_into(">b", buf, 16, magic)
    for client in (True, False):
        with pytest.raises(CorruptRecordError, match=f"Invalid magic found in record: {magic}"):
            validate_batches(buf, client=client)
        with pytest.raises(CorruptRecordError, match="Invalid magic"):
            validate_batches(bytes(buf[:20]), client=client)  # even before it is complete


def test_validate_oversize_batch() -> None:
    batch = build_batch(RECORDS)
    assert validate_batches(batch, max_batch_bytes=len(batch))
    with pytest.raises(MessageTooLargeError) as info:
        validate_batches(batch, max_batch_bytes=len(batch) - 1)
    assert info.value.code == ErrorCode.message_too_large


@pytest.mark.parametrize("length", [-1, -(2**31), 0, 13])
def test_validate_negative_or_tiny_length(length: int) -> None:
    buf = bytearray(build_batch(RECORDS))
    struct.pack_into(">i", buf, 8, length)
    for client in (True, False):
        with pytest.raises(CorruptRecordError, match="minimum record overhead"):
            validate_batches(buf, client=client)


@pytest.mark.parametrize("length", [14, 30, 48])
def test_validate_length_shorter_than_a_v2_header(length: int) -> None:
    buf = bytearray(build_batch(RECORDS))
    struct.pack_into(">i", buf, 8, length)
    with pytest.raises(CorruptRecordError, match="smaller than the minimum allowed overhead 61"):
        validate_batches(bytes(buf[: length + 12]))


def test_validate_huge_length() -> None:
    buf = bytearray(build_batch(RECORDS))
    struct.pack_into(">i", buf, 8, 2**31 - 1)
    with pytest.raises(InvalidRecordError):
        validate_batches(buf)
    with pytest.raises(CorruptRecordError, match="no complete record batch"):
        validate_batches(buf, client=False)


def test_validate_client_base_offset_must_be_zero() -> None:
    batch = build_batch(RECORDS, base_offset=3)
    with pytest.raises(InvalidRecordError, match="baseOffset .* should be 0, but it is 3"):
        validate_batches(batch)
    assert validate_batches(batch, client=False)[0].base_offset == 3


@pytest.mark.parametrize(
    ("count", "last_offset_delta", "message"),
    [
        (0, -1, "invalid offset range"),
        (0, 0, "Invalid reported count"),
        (-3, 0, "Invalid reported count"),
        (2, 0, "Inconsistent batch offset range"),
        (1, 3, "Inconsistent batch offset range"),
    ],
)
def test_validate_client_record_count(count: int, last_offset_delta: int, message: str) -> None:
    batch = wrap(raw_record(), count, last_offset_delta=last_offset_delta)
    with pytest.raises(InvalidRecordError, match=message):
        validate_batches(batch)


def test_validate_replica_record_count() -> None:
    # Compacted batches may have fewer records than their offset range, never more.
    assert validate_batches(wrap(raw_record(), 1, last_offset_delta=3), client=False)
    for count, lod in [(2, 0), (-1, 0)]:
        with pytest.raises(CorruptRecordError, match="declares"):
            validate_batches(wrap(raw_record(), count, last_offset_delta=lod), client=False)


def test_validate_client_control_batch() -> None:
    marker = build_control_batch(
        True, base_offset=0, producer_id=1, producer_epoch=0, coordinator_epoch=0, timestamp=TS
    )
    with pytest.raises(InvalidRecordError, match="control records"):
        validate_batches(marker)
    assert validate_batches(marker, client=False)[0].is_control


def test_validate_producer_id_without_sequence() -> None:
    batch = build_batch(RECORDS, producer_id=10, producer_epoch=0, base_sequence=-1)
    with pytest.raises(InvalidRecordError, match="Invalid sequence number -1"):
        validate_batches(batch)
    assert validate_batches(batch, client=False)


@pytest.mark.parametrize("codec", [5, 6, 7])
def test_validate_unknown_codec(codec: int) -> None:
    batch = wrap(raw_record(), 1, attributes=codec)
    with pytest.raises(CorruptRecordError, match=f"Unknown compression type id: {codec}"):
        validate_batches(batch)
    with pytest.raises(CorruptRecordError, match="unknown compression codec"):
        decode_records(batch)


def test_validate_error_codes_are_kafkas() -> None:
    assert CorruptRecordError().code == ErrorCode.corrupt_message
    assert InvalidRecordError().code == ErrorCode.invalid_record
    assert MessageTooLargeError().code == ErrorCode.message_too_large


def test_validate_one_mebibyte_of_many_batches() -> None:
    batches, offset = [], 0
    while sum(map(len, batches)) < 1 << 20:
        records = [NewRecord(b"k%d" % offset, b"v" * (offset % 700), (), TS + offset)]
        records.append(NewRecord(None, b"second", (("h", b"x"),), TS))
        batches.append(
            build_batch(records, base_offset=offset, compression=(NONE, LZ4)[offset // 2 % 2])
        )
        offset += 2
    payload = b"".join(batches)
    assert len(payload) >= 1 << 20
    headers = validate_batches(payload, max_batch_bytes=2000, client=False)
    assert len(headers) == len(batches)
    assert [h.base_offset for h in headers] == list(range(0, offset, 2))
    assert sum(h.size for h in headers) == len(payload)
    assert [pos for pos, _ in iter_batches(payload)] == [
        sum(map(len, batches[:i])) for i in range(len(batches))
    ]
    assert valid_prefix_end(payload) == len(payload)


# --- iter_batches / valid_prefix_end -------------------------------------------


def test_iter_batches_stops_at_incomplete_tail() -> None:
    a = build_batch(RECORDS[:2], base_offset=0)
    b = build_batch(RECORDS, base_offset=2, compression=SNAPPY)
    log = a + b
    assert [(p, h.base_offset) for p, h in iter_batches(log)] == [(0, 0), (len(a), 2)]
    for cut in range(len(a), len(log)):
        assert [p for p, _ in iter_batches(log[:cut])] == [0]
    assert list(iter_batches(log, len(a))) == [(len(a), read_header(b))]
    assert [p for p, _ in iter_batches(log, 0, len(log) - 1)] == [0]
    assert list(iter_batches(log, 0, len(a) - 1)) == []


def test_iter_batches_raises_on_garbage() -> None:
    a = build_batch(RECORDS[:2])
    with pytest.raises(CorruptRecordError, match="length 0"):
        list(iter_batches(a + bytes(100)))
    bad_magic = bytearray(a)
    bad_magic[16] = 1
    with pytest.raises(CorruptRecordError, match="magic 1"):
        list(iter_batches(a + bad_magic))


def test_valid_prefix_end_truncates_at_first_bad_batch() -> None:
    a = build_batch(RECORDS[:2])
    b = bytearray(build_batch(RECORDS, base_offset=2))
    c = build_batch(RECORDS[:1], base_offset=7)
    assert valid_prefix_end(a + b + c) == len(a) + len(b) + len(c)
    assert valid_prefix_end(a + b + c[:-1]) == len(a) + len(b)  # torn tail
    assert valid_prefix_end(a + b + bytes(4096)) == len(a) + len(b)  # zero-filled tail
    b[-1] ^= 0x10
    assert valid_prefix_end(a + b + c) == len(a)  # CRC mismatch in the middle
    assert valid_prefix_end(a + b + c, check_crc=False) == len(a) + len(b) + len(c)
    assert valid_prefix_end(a + b + c, len(a) + len(b)) == len(a) + len(b) + len(c)


# --- decode_records on malformed data --------------------------------------------

GOOD = raw_record()


@pytest.mark.parametrize(
    ("body", "count", "message"),
    [
        (GOOD, 2, "ends inside a record"),  # fewer records than declared
        (GOOD + GOOD, 1, "bytes left after"),  # more data than declared
        (GOOD[:-1], 1, "Invalid record size"),  # record overruns the section
        (raw_record(length_adjust=1) + b"\x00", 1, "Invalid record size"),
        (raw_record(length_adjust=-1), 1, "Invalid record size"),
        (raw_record(headers=encode_varint(-1)), 1, "invalid number of record headers"),
        (raw_record(headers=encode_varint(10**6)), 1, "record headers overrun"),
        (raw_record(headers=b"\x02" + encode_varint(-1) + b"\x01"), 1, "negative header key"),
        (raw_record(headers=b"\x02" + encode_varint(50) + b"ab\x01"), 1, "header key of 50"),
        (
            raw_record(headers=b"\x02" + encode_varint(2) + b"ab" + encode_varint(9) + b"x"),
            1,
            "header value of 9",
        ),
        (raw_record(key=b"k").replace(b"\x02k", encode_varint(40) + b"k"), 1, "key of 40"),
        (b"\x80\x80\x80\x80\x80\x01" + GOOD, 1, "Varint is too long"),
        (encode_varint(0), 1, "Invalid record size 0"),
        (encode_varint(-4) + GOOD, 1, "Invalid record size -4"),
        (b"", 1, "ends inside a record"),
        (GOOD, -1, "declares -1 records"),
    ],
)
def test_decode_rejects_malformed_records(body: bytes, count: int, message: str) -> None:
    with pytest.raises(CorruptRecordError, match=message):
        decode_records(wrap(body, count))


def test_decode_rejects_bad_batch_frames() -> None:
    batch = build_batch(RECORDS)
    with pytest.raises(CorruptRecordError, match="needs"):
        decode_records(batch[:-1])
    with pytest.raises(CorruptRecordError):
        decode_records(batch[:60])
    old = bytearray(batch)
    old[16] = 1
    with pytest.raises(CorruptRecordError, match="magic 1"):
        decode_records(old)
    short = bytearray(batch)
    struct.pack_into(">i", short, 8, 20)
    with pytest.raises(CorruptRecordError, match="below 49"):
        decode_records(short)
    corrupt_gzip = bytearray(build_batch(COMPRESSIBLE, compression=GZIP))
    corrupt_gzip[80] ^= 0xFF
    with pytest.raises(CorruptRecordError):
        decode_records(corrupt_gzip)


def test_decode_at_position() -> None:
    a = build_batch(RECORDS[:1])
    b = build_batch(RECORDS[1:3], base_offset=1, compression=LZ4)
    assert decode_records(a + b, len(a)) == [
        Record(1, RECORDS[1].timestamp, None, b"no key", RECORDS[1].headers),
        Record(2, TS - 3, b"k2", None, ()),
    ]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.binary(max_size=300),
    count=st.integers(-3, 20),
    codec=st.sampled_from(CODECS),
)
def test_fuzz_decode_random_sections(body: bytes, count: int, codec: int) -> None:
    try:
        records = decode_records(wrap(body, count, attributes=codec))
    except CorruptRecordError:
        return
    assert len(records) == count


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    codec=st.sampled_from(CODECS),
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), min_size=1, max_size=6),
)
def test_fuzz_decode_mutated_batches(codec: int, flips: list[tuple[int, int]]) -> None:
    buf = bytearray(build_batch(RECORDS, compression=codec))
    for index, mask in flips:
        buf[16 + index % (len(buf) - 16)] ^= mask  # any byte from the magic on
    try:
        records = decode_records(buf, max_size=1 << 20)
    except CorruptRecordError:
        return
    assert all(isinstance(r, Record) for r in records)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200))
def test_fuzz_decode_arbitrary_bytes(data: bytes) -> None:
    try:
        decode_records(data)
    except CorruptRecordError:
        pass


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200), client=st.booleans())
def test_fuzz_validate_arbitrary_bytes(data: bytes, client: bool) -> None:
    try:
        validate_batches(data, max_batch_bytes=1000, client=client)
    except KafkaError as exc:
        assert exc.code in (
            ErrorCode.corrupt_message,
            ErrorCode.invalid_record,
            ErrorCode.message_too_large,
        )


# --- Varints ---------------------------------------------------------------------


@given(st.integers(-(2**63), 2**63 - 1))
def test_varlong_matches_kafka_python(value: int) -> None:
    ours = encode_varint(value)
    theirs = bytearray()
    kp_encode_varint(value, theirs.append)
    assert ours == bytes(theirs)
    assert read_varlong(ours + b"\xff", 0) == (value, len(ours))
    assert kp_decode_varint(ours, 0) == (value, len(ours))


@given(st.integers(-(2**31), 2**31 - 1))
def test_varint_round_trip(value: int) -> None:
    encoded = encode_varint(value)
    assert len(encoded) <= 5
    assert read_varint(b"\x00" + encoded, 1) == (value, 1 + len(encoded))


def test_varint_edges() -> None:
    assert encode_varint(0) == b"\x00"
    assert encode_varint(-1) == b"\x01"
    assert encode_varint(1) == b"\x02"
    assert encode_varint(63) == b"\x7e"
    assert encode_varint(64) == b"\x80\x01"
    assert encode_varint(-(2**31)) == b"\xff\xff\xff\xff\x0f"
    # Java's readVarint drops bits past 32 in the 5th byte; so do we.
    assert read_varint(b"\xfe\xff\xff\xff\x7f", 0) == (2**31 - 1, 5)
    with pytest.raises(CorruptRecordError, match="Varint is too long"):
        read_varint(b"\x80\x80\x80\x80\x80\x00", 0)
    with pytest.raises(CorruptRecordError, match="Varlong is too long"):
        read_varlong(b"\x80" * 10 + b"\x00", 0)
    with pytest.raises(IndexError):
        read_varint(b"\x80", 0)
