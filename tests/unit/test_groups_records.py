"""__consumer_offsets record codecs and the group -> partition hash, against Kafka's.

Expected bytes are assembled field by field from Kafka's JSON schemas
(group-coordinator/src/main/resources/common/message/*.json), not by our encoder.
"""

from __future__ import annotations

import struct

import pytest

from pybroker.broker.groups.consumer_protocol import subscribed_topics
from pybroker.broker.groups.records import (
    GroupMetadataKey,
    GroupMetadataValue,
    MemberMetadata,
    OffsetCommitKey,
    OffsetCommitValue,
    OtherKey,
    RecordFormatError,
    decode_group_metadata_value,
    decode_key,
    decode_offset_commit_value,
    encode_group_metadata_key,
    encode_group_metadata_value,
    encode_offset_commit_key,
    encode_offset_commit_value,
    java_string_hashcode,
    java_string_length,
    kafka_abs,
    partition_for,
)


def s16(text: str | None) -> bytes:
    if text is None:
        return struct.pack(">h", -1)
    data = text.encode()
    return struct.pack(">h", len(data)) + data


def b32(data: bytes) -> bytes:
    return struct.pack(">i", len(data)) + data


# ----------------------------------------------------------------- hashing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),
        ("a", 97),
        ("hello", 99162322),  # Java: "hello".hashCode()
        ("Hello World", -862545276),
        ("polygenelubricants", -(2**31)),  # the famous Integer.MIN_VALUE hash
        ("\U0001f600", 0xD83D * 31 + 0xDE00),  # a surrogate pair: two UTF-16 units
        ("é", 0xE9),
    ],
)
def test_java_string_hashcode(text: str, expected: int) -> None:
    assert java_string_hashcode(text) == expected


def test_partition_for_uses_kafka_abs() -> None:
    assert kafka_abs(-(2**31)) == 0
    assert kafka_abs(-5) == 5
    assert partition_for("polygenelubricants", 50) == 0
    assert partition_for("Hello World", 50) == 862545276 % 50
    assert partition_for("hello", 50) == 99162322 % 50
    assert all(0 <= partition_for(f"group-{i}", 7) < 7 for i in range(200))


def test_java_string_length_counts_utf16_units() -> None:
    assert java_string_length("abc") == 3
    assert java_string_length("é") == 1
    assert java_string_length("\U0001f600") == 2


# ----------------------------------------------------------------- keys


def test_offset_commit_key_bytes() -> None:
    key = encode_offset_commit_key("g", "topic", 3)
    assert key == struct.pack(">h", 1) + s16("g") + s16("topic") + struct.pack(">i", 3)
    assert decode_key(key) == OffsetCommitKey("g", "topic", 3)
    # Type 0 (older brokers) has the same layout.
    legacy = struct.pack(">h", 0) + key[2:]
    assert decode_key(legacy) == OffsetCommitKey("g", "topic", 3)


def test_group_metadata_key_bytes() -> None:
    key = encode_group_metadata_key("my-group")
    assert key == struct.pack(">h", 2) + s16("my-group")
    assert decode_key(key) == GroupMetadataKey("my-group")


def test_other_record_types_are_recognised_not_parsed() -> None:
    # KIP-848 ConsumerGroupMetadataKey is type 3.
    assert decode_key(struct.pack(">h", 3) + s16("g")) == OtherKey(3)
    with pytest.raises(RecordFormatError):
        decode_key(b"\x00")
    with pytest.raises(RecordFormatError):
        decode_key(struct.pack(">h", 1) + s16("g"))  # truncated


# ----------------------------------------------------------------- offset values


def test_offset_commit_value_v3_bytes() -> None:
    value = OffsetCommitValue(offset=42, metadata="meta", commit_timestamp=1700, leader_epoch=7)
    data = encode_offset_commit_value(value)
    assert data == (struct.pack(">hqi", 3, 42, 7) + s16("meta") + struct.pack(">q", 1700))
    assert decode_offset_commit_value(data) == value


def test_offset_commit_value_with_expiry_is_v1() -> None:
    value = OffsetCommitValue(5, "", 100, -1, 200)
    data = encode_offset_commit_value(value)
    assert data == struct.pack(">hq", 1, 5) + s16("") + struct.pack(">qq", 100, 200)
    assert decode_offset_commit_value(data) == value


@pytest.mark.parametrize("version", [0, 2])
def test_offset_commit_value_old_versions(version: int) -> None:
    data = struct.pack(">hq", version, 9) + s16("m") + struct.pack(">q", 55)
    assert decode_offset_commit_value(data) == OffsetCommitValue(9, "m", 55)


def test_offset_commit_value_v4_is_flexible() -> None:
    # v4: compact string (length + 1 as a varint) and an empty tagged-field section; a
    # tagged field (tag 0, 2 bytes) must be skipped.
    data = (
        struct.pack(">hqi", 4, 1, 2)
        + bytes([2])
        + b"x"
        + struct.pack(">q", 3)
        + bytes([1, 0, 2])
        + b"zz"
    )
    assert decode_offset_commit_value(data) == OffsetCommitValue(1, "x", 3, 2)
    assert encode_offset_commit_value(OffsetCommitValue(1, "x", 3, 2), version=4) == (
        struct.pack(">hqi", 4, 1, 2) + bytes([2]) + b"x" + struct.pack(">q", 3) + b"\x00"
    )


def test_offset_commit_value_metadata_round_trips_unicode() -> None:
    value = OffsetCommitValue(1, "naïve ☃ \U0001f600", 2, 3)
    assert decode_offset_commit_value(encode_offset_commit_value(value)) == value


def test_truncated_or_trailing_values_are_rejected() -> None:
    data = encode_offset_commit_value(OffsetCommitValue(1, "x", 2, 3))
    with pytest.raises(RecordFormatError):
        decode_offset_commit_value(data[:-1])
    with pytest.raises(RecordFormatError):
        decode_offset_commit_value(data + b"\x00")


# ----------------------------------------------------------------- group values


MEMBER = MemberMetadata(
    member_id="m-1",
    client_id="client",
    client_host="/127.0.0.1",
    session_timeout=10000,
    subscription=b"\x00\x01sub",
    assignment=b"\x00\x01asg",
    rebalance_timeout=30000,
    group_instance_id="static-1",
)


def test_group_metadata_value_v3_bytes() -> None:
    value = GroupMetadataValue("consumer", 5, "range", "m-1", 123456, (MEMBER,))
    data = encode_group_metadata_value(value)
    expected = (
        struct.pack(">h", 3)
        + s16("consumer")
        + struct.pack(">i", 5)
        + s16("range")
        + s16("m-1")
        + struct.pack(">q", 123456)
        + struct.pack(">i", 1)
        + s16("m-1")
        + s16("static-1")
        + s16("client")
        + s16("/127.0.0.1")
        + struct.pack(">ii", 30000, 10000)
        + b32(b"\x00\x01sub")
        + b32(b"\x00\x01asg")
    )
    assert data == expected
    assert decode_group_metadata_value(data) == value


def test_empty_group_metadata_value() -> None:
    value = GroupMetadataValue("", 3, None, None, 99, ())
    data = encode_group_metadata_value(value)
    assert data == (
        struct.pack(">h", 3)
        + s16("")
        + struct.pack(">i", 3)
        + s16(None)
        + s16(None)
        + struct.pack(">qi", 99, 0)
    )
    assert decode_group_metadata_value(data) == value


@pytest.mark.parametrize("version", [0, 1, 2, 3, 4])
def test_group_metadata_value_every_version_round_trips(version: int) -> None:
    member = MemberMetadata(
        "m",
        "c",
        "/h",
        6000,
        b"s",
        b"a",
        rebalance_timeout=9000 if version >= 1 else -1,
        group_instance_id="i" if version >= 3 else None,
    )
    value = GroupMetadataValue(
        "consumer", 1, "roundrobin", "m", 77 if version >= 2 else -1, (member,)
    )
    assert decode_group_metadata_value(encode_group_metadata_value(value, version)) == value


# ----------------------------------------------------------------- subscriptions


def test_subscribed_topics_from_consumer_protocol() -> None:
    # ConsumerProtocolSubscription v1: version, topics, user_data, owned_partitions.
    data = (
        struct.pack(">hi", 1, 2)
        + s16("a")
        + s16("b")
        + struct.pack(">i", -1)
        + struct.pack(">i", 0)
    )
    assert subscribed_topics(data) == {"a", "b"}
    with pytest.raises(RecordFormatError):
        subscribed_topics(b"\x00")
