"""The legacy protocol layer (KIP-896's removed versions): message sets, down-conversion,
the schema reader's defences, and each legacy request/response round trip."""

from __future__ import annotations

import struct
import zlib

import lz4.frame
import pytest

from pybroker.protocol.codec import FrameError, build, decode_request_body, encode_body
from pybroker.protocol.codec import response_type as codec_response_type
from pybroker.protocol.compression import GZIP, LZ4, NONE, SNAPPY, ZSTD
from pybroker.protocol.errors import CorruptRecordError, ErrorCode
from pybroker.protocol.fetch_encoder import FetchPartition, FetchTopic, encode_fetch_response
from pybroker.protocol.legacy import (
    LEGACY_MIN,
    decode_response,
    encode_request,
    legacy_version,
)
from pybroker.protocol.legacy.message_set import (
    UnsupportedDownConversion,
    decode_message_set,
    down_convert,
    encode_messages,
    to_v2_batch,
    xxh32,
)
from pybroker.protocol.records import (
    LOG_APPEND_TIME,
    NewRecord,
    Record,
    build_batch,
    build_control_batch,
    decode_records,
    read_header,
)


def _records(n: int, base: int = 0, ts: int = 1_700_000_000_000) -> list[Record]:
    return [Record(base + i, ts + i, b"k%d" % i, b"value-%d" % i, ()) for i in range(n)]


# -- xxh32 (the LZ4 header checksum) ------------------------------------------------------


def test_xxh32_known_vectors() -> None:
    assert xxh32(b"") == 0x02CC5D05
    assert xxh32(b"a") == 0x550D7456
    assert xxh32(b"abc") == 0x32D153FF
    assert xxh32(b"Nobody inspects the spammish repetition") == 0xE2293B2F


# -- message sets --------------------------------------------------------------------------


@pytest.mark.parametrize("magic", [0, 1])
@pytest.mark.parametrize("codec", [NONE, GZIP, SNAPPY, LZ4])
def test_message_set_round_trip(magic: int, codec: int) -> None:
    recs = _records(5, base=100)
    data = encode_messages(magic, recs, codec=codec)
    got_codec, msgs = decode_message_set(data)
    assert got_codec == codec
    assert [m.offset for m in msgs] == [r.offset for r in recs]
    assert [(m.key, m.value) for m in msgs] == [(r.key, r.value) for r in recs]
    assert all(m.magic == magic for m in msgs)
    expected_ts = [r.timestamp for r in recs] if magic == 1 else [-1] * 5
    assert [m.timestamp for m in msgs] == expected_ts


def test_message_layout_and_crc32_are_kafkas() -> None:
    """offset, size, crc32(magic..value), magic, attributes, [timestamp], key, value."""
    data = encode_messages(1, [Record(7, 1234, b"k", None, ())])
    offset, size, crc = struct.unpack_from(">qiI", data, 0)
    assert (offset, size) == (7, len(data) - 12)
    body = data[16:]
    assert crc == zlib.crc32(body)
    assert body == struct.pack(">Bbq", 1, 0, 1234) + struct.pack(">i", 1) + b"k" + b"\xff" * 4


def test_magic0_lz4_uses_kafkas_broken_header_checksum() -> None:
    """KAFKA-3160: magic 0 LZ4 frames checksum the magic number too; we read and write it."""
    data = encode_messages(0, _records(3), codec=LZ4)
    _, msgs = decode_message_set(data)
    assert len(msgs) == 3
    value = data[12 + 4 + 2 + 4 :][4:]  # skip entry header, crc, magic, attrs, null key, len
    with pytest.raises(RuntimeError):
        lz4.frame.decompress(value)  # a standard decoder rejects the broken checksum


def test_corrupt_crc_is_rejected() -> None:
    data = bytearray(encode_messages(1, _records(2)))
    data[-1] ^= 0xFF
    with pytest.raises(CorruptRecordError, match="CRC32"):
        decode_message_set(bytes(data))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00" * 11,
        struct.pack(">qi", 0, 1000) + b"\x00" * 20,
        struct.pack(">qi", 0, -5) + b"\x00" * 20,
        struct.pack(">qi", 0, 14) + b"\x00" * 14,
    ],
)
def test_malformed_message_sets_are_corrupt(data: bytes) -> None:
    with pytest.raises(CorruptRecordError):
        decode_message_set(data)


def test_nested_compression_is_rejected() -> None:
    inner = encode_messages(1, _records(2), codec=GZIP)
    msg = struct.pack(">Bbq", 1, GZIP, 0) + struct.pack(">i", -1)
    gz = zlib.compressobj(6, zlib.DEFLATED, 31)
    payload = gz.compress(inner) + gz.flush()
    msg += struct.pack(">i", len(payload)) + payload
    outer = struct.pack(">qi", 1, len(msg) + 4) + struct.pack(">I", zlib.crc32(msg)) + msg
    with pytest.raises(CorruptRecordError, match="inside a compressed"):
        decode_message_set(outer)


@pytest.mark.parametrize("codec", [NONE, GZIP, SNAPPY, LZ4])
def test_to_v2_batch_keeps_codec_keys_values_and_timestamps(codec: int) -> None:
    data = encode_messages(1, _records(4), codec=codec)
    batch = to_v2_batch(data)
    header = read_header(batch)
    assert header.magic == 2 and header.compression == codec and header.records_count == 4
    recs = decode_records(batch)
    assert [(r.key, r.value, r.timestamp) for r in recs] == [
        (r.key, r.value, r.timestamp) for r in _records(4)
    ]


def test_to_v2_batch_magic0_has_no_timestamps() -> None:
    batch = to_v2_batch(encode_messages(0, _records(2)))
    assert read_header(batch).max_timestamp == -1
    assert [r.timestamp for r in decode_records(batch)] == [-1, -1]


# -- down-conversion -----------------------------------------------------------------------


def _v2(n: int, base: int, codec: int = NONE, **kw: object) -> bytes:
    recs = [NewRecord(b"k%d" % i, b"v%d" % i, (("h", b"x"),), 1000 + i) for i in range(n)]
    return build_batch(recs, base_offset=base, compression=codec, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("to_magic", [0, 1])
def test_down_convert_uncompressed_drops_records_before_fetch_offset(to_magic: int) -> None:
    data = _v2(5, base=10)
    _, msgs = decode_message_set(down_convert(data, to_magic, fetch_offset=12))
    assert [m.offset for m in msgs] == [12, 13, 14]
    assert [m.key for m in msgs] == [b"k2", b"k3", b"k4"]
    assert all(m.magic == to_magic for m in msgs)


@pytest.mark.parametrize("to_magic", [0, 1])
@pytest.mark.parametrize("codec", [GZIP, SNAPPY, LZ4])
def test_down_convert_compressed_is_one_wrapper(to_magic: int, codec: int) -> None:
    data = _v2(4, base=20, codec=codec)
    converted = down_convert(data, to_magic, fetch_offset=22)
    wrapper_offset, _ = struct.unpack_from(">qi", converted, 0)
    assert wrapper_offset == 23  # the last inner offset
    assert converted[17] & 0x07 == codec  # the wrapper's attributes carry the codec
    got_codec, msgs = decode_message_set(converted)
    assert got_codec == codec
    assert [m.offset for m in msgs] == [20, 21, 22, 23]


def test_down_convert_drops_control_batches_and_keeps_log_append_time() -> None:
    data = _v2(2, base=0, timestamp_type=LOG_APPEND_TIME, producer_id=5, producer_epoch=0)
    data += build_control_batch(
        True, base_offset=2, timestamp=5, producer_id=5, producer_epoch=0, coordinator_epoch=0
    )
    _, msgs = decode_message_set(down_convert(data, 1, 0))
    assert [m.offset for m in msgs] == [0, 1]
    assert all(m.log_append_time for m in msgs)


def test_down_convert_refuses_zstd() -> None:
    with pytest.raises(UnsupportedDownConversion) as info:
        down_convert(_v2(2, base=0, codec=ZSTD), 1, 0)
    assert info.value.code == ErrorCode.unsupported_compression_type


def test_down_convert_ignores_a_partial_trailing_batch() -> None:
    data = _v2(2, base=0) + _v2(2, base=2)[:30]
    _, msgs = decode_message_set(down_convert(data, 1, 0))
    assert [m.offset for m in msgs] == [0, 1]


# -- the legacy schemas and the codec hooks -----------------------------------------------


def test_legacy_minimums_are_kafka_39s() -> None:
    assert LEGACY_MIN == {0: 0, 1: 0, 2: 0, 8: 0, 9: 0, 19: 0, 20: 0, 23: 0, 27: 0, 32: 0}


def _decode(api_key: int, version: int, body: bytes) -> object:
    return decode_request_body(api_key, version, memoryview(body).toreadonly(), 0)


def test_produce_v2_decodes_to_a_v3_request() -> None:
    records = encode_messages(1, _records(1))
    body = encode_request(
        0,
        2,
        dict(
            acks=-1,
            timeout=1500,
            topic_data=[dict(name="t", partition_data=[dict(index=3, records=records)])],
        ),
    )
    req = _decode(0, 2, body)
    assert type(req).__version__ == 3
    assert req.transactional_id is None and req.acks == -1  # type: ignore[attr-defined]
    pd = req.topic_data[0].partition_data[0]  # type: ignore[attr-defined]
    assert (pd.index, pd.records) == (3, records)


@pytest.mark.parametrize("version", [0, 1, 2])
def test_produce_response_layouts(version: int) -> None:
    resp = build(
        codec_response_type(0, version),
        responses=[
            dict(
                name="t",
                partition_responses=[
                    dict(index=1, error_code=0, base_offset=42, log_append_time=7)
                ],
            )
        ],
        throttle_time=0,
    )
    raw = encode_body(resp)
    part = struct.pack(">ihq", 1, 0, 42) + (struct.pack(">q", 7) if version >= 2 else b"")
    expected = struct.pack(">ih", 1, 1) + b"t" + struct.pack(">i", 1) + part
    if version >= 1:
        expected += struct.pack(">i", 0)
    assert raw == expected


@pytest.mark.parametrize("version", [0, 1, 2, 3])
def test_fetch_request_and_response(version: int) -> None:
    fields = dict(
        replica_id=-1,
        max_wait=250,
        min_bytes=1,
        max_bytes=4096,
        topics=[
            dict(topic="t", partitions=[dict(partition=0, fetch_offset=9, partition_max_bytes=99)])
        ],
    )
    req = _decode(1, version, encode_request(1, version, fields))
    assert type(req).__version__ == 4 and req.isolation_level == 0  # type: ignore[attr-defined]
    assert req.max_bytes == (4096 if version == 3 else 2**31 - 1)  # type: ignore[attr-defined]
    assert req.topics[0].partitions[0].fetch_offset == 9  # type: ignore[attr-defined]
    records = encode_messages(1 if version >= 2 else 0, _records(2))
    resp = encode_fetch_response(
        version, [FetchTopic("t", None, [FetchPartition(0, 0, 55, records=[records])])]
    )
    body = b"".join(p for p in resp.parts if isinstance(p, bytes))
    assert len(body) == resp.size
    decoded = decode_response(1, version, body)
    p = decoded["responses"][0]["partitions"][0]
    assert (p["partition_index"], p["error_code"], p["high_watermark"]) == (0, 0, 55)
    assert p["records"] == records


def test_list_offsets_v0_answers_old_style_offsets() -> None:
    body = encode_request(
        2,
        0,
        dict(
            replica_id=-1,
            topics=[
                dict(
                    name="t",
                    partitions=[dict(partition_index=0, timestamp=-1, max_num_offsets=1)],
                )
            ],
        ),
    )
    req = _decode(2, 0, body)
    assert req.topics[0].partitions[0].timestamp == -1  # type: ignore[attr-defined]
    resp = build(
        codec_response_type(2, 0),
        topics=[
            dict(
                name="t",
                partitions=[
                    dict(partition_index=0, offset=17),
                    dict(partition_index=1, error_code=ErrorCode.unknown_topic_or_partition),
                ],
            )
        ],
    )
    out = decode_response(2, 0, encode_body(resp))
    parts = out["topics"][0]["partitions"]
    assert parts[0] == dict(partition_index=0, error_code=0, old_style_offsets=[17])
    assert parts[1]["old_style_offsets"] == [] and parts[1]["error_code"] == 3


@pytest.mark.parametrize("version", [0, 1])
def test_offset_commit_legacy_defaults(version: int) -> None:
    part = dict(partition_index=2, committed_offset=5, committed_metadata=None)
    fields: dict[str, object] = dict(group_id="g", topics=[dict(name="t", partitions=[part])])
    if version == 1:
        part["commit_timestamp"] = -1
        fields.update(generation_id_or_member_epoch=4, member_id="m")
    req = _decode(8, version, encode_request(8, version, fields))
    assert type(req).__version__ == 2
    assert req.generation_id_or_member_epoch == (4 if version else -1)  # type: ignore[attr-defined]
    assert req.member_id == ("m" if version else "")  # type: ignore[attr-defined]


def test_describe_configs_v0_is_default_is_always_false() -> None:
    req = _decode(
        32,
        0,
        encode_request(
            32,
            0,
            dict(resources=[dict(resource_type=2, resource_name="t", configuration_keys=None)]),
        ),
    )
    assert req.resources[0].configuration_keys is None  # type: ignore[attr-defined]
    assert req.include_synonyms is False  # type: ignore[attr-defined]
    resp = build(
        codec_response_type(32, 0),
        results=[
            dict(
                resource_type=2,
                resource_name="t",
                configs=[
                    dict(name="a", value="1", config_source=5),
                    dict(name="b", value="2", config_source=1),
                ],
            )
        ],
    )
    out = decode_response(32, 0, encode_body(resp))
    configs = out["results"][0]["configs"]
    assert [(c["name"], c["value"], c["is_default"]) for c in configs] == [
        ("a", "1", False),
        ("b", "2", False),
    ]


@pytest.mark.parametrize("key,version", sorted(LEGACY_MIN.items()))
def test_every_legacy_version_is_known(key: int, version: int) -> None:
    spec = legacy_version(key, version)
    assert spec is not None and spec.proxy > version


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x00\x01",
        struct.pack(">hi", 1, 0x7FFFFFFF),  # acks, then a huge timeout... then nothing
        struct.pack(">hii", 1, 100, 0x7FFFFFFF),  # a topic count no frame can hold
        struct.pack(">hii", 1, 100, -2),
        struct.pack(">hiih", 1, 100, 1, 200) + b"x",  # a string longer than the frame
        struct.pack(">hiih", 1, 100, 1, 1) + b"\xff",  # not UTF-8
    ],
)
def test_hostile_legacy_bodies_raise_frame_error(body: bytes) -> None:
    with pytest.raises(FrameError):
        _decode(0, 1, body)


def test_unknown_old_version_still_refused() -> None:
    with pytest.raises(FrameError):
        _decode(3, 99, b"")


def test_write_txn_markers_v0_is_v1_without_tagged_fields() -> None:
    fields = dict(
        markers=[
            dict(
                producer_id=9,
                producer_epoch=2,
                transaction_result=True,
                topics=[dict(name="t", partition_indexes=[0, 3])],
                coordinator_epoch=5,
            )
        ]
    )
    req = _decode(27, 0, encode_request(27, 0, fields))
    marker = req.markers[0]  # type: ignore[attr-defined]
    assert (marker.producer_id, marker.producer_epoch, marker.coordinator_epoch) == (9, 2, 5)
    assert marker.transaction_result is True and list(marker.topics[0].partition_indexes) == [0, 3]
    resp = build(
        codec_response_type(27, 0),
        markers=[
            dict(
                producer_id=9,
                topics=[dict(name="t", partitions=[dict(partition_index=3, error_code=0)])],
            )
        ],
    )
    assert encode_body(resp) == (
        struct.pack(">iqi", 1, 9, 1) + struct.pack(">h", 1) + b"t" + struct.pack(">iih", 1, 3, 0)
    )


@pytest.mark.parametrize("version", [0, 1])
def test_create_topics_legacy_layouts(version: int) -> None:
    fields: dict[str, object] = dict(
        topics=[
            dict(
                name="t",
                num_partitions=3,
                replication_factor=1,
                assignments=[],
                configs=[dict(name="retention.ms", value="5")],
            )
        ],
        timeout=1000,
    )
    if version:
        fields["validate_only"] = True
    req = _decode(19, version, encode_request(19, version, fields))
    assert req.validate_only is bool(version)  # type: ignore[attr-defined]
    assert req.topics[0].configs[0].value == "5"  # type: ignore[attr-defined]
    resp = build(
        codec_response_type(19, version),
        topics=[dict(name="t", error_code=36, error_message="exists")],
    )
    tail = struct.pack(">h", 6) + b"exists" if version else b""
    assert encode_body(resp) == struct.pack(">ih", 1, 1) + b"t" + struct.pack(">h", 36) + tail


def test_delete_topics_v0_has_no_throttle_time() -> None:
    req = _decode(20, 0, encode_request(20, 0, dict(topic_names=["a", "b"], timeout=10)))
    assert list(req.topic_names) == ["a", "b"]  # type: ignore[attr-defined]
    resp = build(codec_response_type(20, 0), responses=[dict(name="a", error_code=0)])
    assert encode_body(resp) == struct.pack(">ih", 1, 1) + b"a" + struct.pack(">h", 0)


def test_legacy_option_parses_like_a_kafka_boolean() -> None:
    from pybroker.broker.handlers.api_versions import LEGACY_KEY, legacy_enabled
    from pybroker.config.broker_config import BrokerConfig, ConfigError

    class Holder:
        def __init__(self, config: BrokerConfig) -> None:
            self.config = config

    default = BrokerConfig.from_properties({}, hostname="localhost")
    off = BrokerConfig.from_properties({LEGACY_KEY: " FALSE "}, hostname="localhost")
    assert legacy_enabled(Holder(default)) is True
    assert legacy_enabled(Holder(off)) is False
    with pytest.raises(ConfigError, match=LEGACY_KEY.replace(".", r"\.")):
        BrokerConfig.from_properties({LEGACY_KEY: "maybe"}, hostname="localhost")
