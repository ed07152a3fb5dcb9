"""KIP-848 record keys and values of __consumer_offsets: Kafka 4.0's bytes.

The expected bytes are written out field by field from the JSON schemas in
group-coordinator/src/main/resources/common/message (keys: int16 type + non-flexible
fields; values: int16 version 0 + flexible fields + an empty tagged-field section).
"""

from __future__ import annotations

import struct
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pybroker.broker.groups.consumer_records import (
    CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT,
    CONSUMER_GROUP_MEMBER_METADATA,
    CONSUMER_GROUP_METADATA,
    CONSUMER_GROUP_PARTITION_METADATA,
    CONSUMER_GROUP_REGULAR_EXPRESSION,
    CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER,
    CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA,
    AssignmentEpochValue,
    ClassicMemberMetadata,
    ConsumerKey,
    CurrentAssignmentValue,
    GroupEpochValue,
    MemberMetadataValue,
    PartitionMetadataValue,
    RegexValue,
    TargetAssignmentValue,
    TopicMetadata,
    decode_consumer_key,
    decode_value,
    encode_key,
    encode_value,
)
from pybroker.broker.groups.records import RecordFormatError, decode_key

T1 = uuid.UUID("11111111-2222-3333-4444-555555555555")
T2 = uuid.UUID("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee")


def h(n: int) -> bytes:
    return struct.pack(">h", n)


def i32(n: int) -> bytes:
    return struct.pack(">i", n)


def s(text: str) -> bytes:
    """Non-flexible string (int16 length)."""
    return h(len(text)) + text.encode()


def cs(text: str | None) -> bytes:
    """Compact (nullable) string."""
    return b"\x00" if text is None else bytes([len(text) + 1]) + text.encode()


def test_keys_are_kafkas_bytes() -> None:
    assert encode_key(ConsumerKey(CONSUMER_GROUP_METADATA, "g")) == h(3) + s("g")
    assert encode_key(ConsumerKey(CONSUMER_GROUP_PARTITION_METADATA, "g")) == h(4) + s("g")
    assert encode_key(ConsumerKey(CONSUMER_GROUP_MEMBER_METADATA, "g", "m1")) == (
        h(5) + s("g") + s("m1")
    )
    assert encode_key(ConsumerKey(CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA, "g")) == h(6) + s("g")
    assert encode_key(ConsumerKey(CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER, "g", "m")) == (
        h(7) + s("g") + s("m")
    )
    assert encode_key(ConsumerKey(CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT, "g", "m")) == (
        h(8) + s("g") + s("m")
    )
    assert encode_key(ConsumerKey(CONSUMER_GROUP_REGULAR_EXPRESSION, "g", regex="^a.*")) == (
        h(16) + s("g") + s("^a.*")
    )


def test_values_are_kafkas_bytes() -> None:
    assert encode_value(GroupEpochValue(7)) == h(0) + i32(7) + b"\x00"
    assert encode_value(AssignmentEpochValue(9)) == h(0) + i32(9) + b"\x00"
    assert encode_value(CurrentAssignmentValue(5, 4, 1, {T1: frozenset({2, 0})}, {})) == (
        h(0)
        + i32(5)
        + i32(4)
        + b"\x01"
        + b"\x02"  # one topic
        + T1.bytes
        + b"\x03"
        + i32(0)
        + i32(2)
        + b"\x00"  # topic tags
        + b"\x01"  # no pending revocation
        + b"\x00"
    )
    assert encode_value(
        MemberMetadataValue(None, "r1", "cid", "/127.0.0.1", ("b", "a"), None, 30000, "range")
    ) == (
        h(0)
        + cs(None)
        + cs("r1")
        + cs("cid")
        + cs("/127.0.0.1")
        + b"\x03"
        + cs("a")
        + cs("b")
        + cs(None)
        + i32(30000)
        + cs("range")
        + b"\x00"
    )
    assert encode_value(PartitionMetadataValue((TopicMetadata(T1, "t", 4),))) == (
        h(0) + b"\x02" + T1.bytes + cs("t") + i32(4) + b"\x01" + b"\x00" + b"\x00"
    )
    assert encode_value(RegexValue(("x",), 3, 99)) == (
        h(0) + b"\x02" + cs("x") + struct.pack(">qq", 3, 99) + b"\x00"
    )


VALUES = [
    (CONSUMER_GROUP_METADATA, GroupEpochValue(12)),
    (CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA, AssignmentEpochValue(3)),
    (
        CONSUMER_GROUP_PARTITION_METADATA,
        PartitionMetadataValue((TopicMetadata(T1, "a", 3), TopicMetadata(T2, "b", 1))),
    ),
    (
        CONSUMER_GROUP_MEMBER_METADATA,
        MemberMetadataValue("inst", None, "c", "/h", ("t1", "t2"), "^t.*", 5000, None),
    ),
    (CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER, TargetAssignmentValue({T1: frozenset({0, 3})})),
    (
        CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT,
        CurrentAssignmentValue(-2, 7, 0, {T2: frozenset({1})}, {T1: frozenset({0})}),
    ),
    (CONSUMER_GROUP_REGULAR_EXPRESSION, RegexValue(("a", "b"), 1, 2)),
]


@pytest.mark.parametrize(("kind", "value"), VALUES)
def test_values_round_trip(kind: int, value: object) -> None:
    assert decode_value(kind, encode_value(value)) == value  # type: ignore[arg-type]


def test_keys_round_trip_and_are_other_keys_to_the_classic_decoder() -> None:
    for key in (
        ConsumerKey(CONSUMER_GROUP_METADATA, "grp"),
        ConsumerKey(CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT, "grp", "m"),
        ConsumerKey(CONSUMER_GROUP_REGULAR_EXPRESSION, "grp", regex=".*"),
    ):
        raw = encode_key(key)
        assert decode_consumer_key(raw) == key
        assert decode_key(raw).record_type == key.record_type  # type: ignore[union-attr]
    assert decode_consumer_key(h(2) + s("g")) is None  # classic GroupMetadataKey


def test_unknown_tagged_fields_and_newer_versions_are_read() -> None:
    # A 4.1 ConsumerGroupMetadataValue carries MetadataHash as tag 0.
    v41 = h(0) + i32(4) + b"\x01" + b"\x00" + b"\x08" + struct.pack(">q", 123)
    assert decode_value(CONSUMER_GROUP_METADATA, v41) == GroupEpochValue(4)
    # A classic member (ClassicMemberMetadata, tag 0): session timeout and protocols.
    body = encode_value(MemberMetadataValue(None, None, "c", "/h", (), None, -1, None))
    meta = i32(45000) + b"\x02" + b"\x06range" + b"\x04abc" + b"\x00" + b"\x00"
    tagged = body[:-1] + b"\x01" + b"\x00" + bytes([len(meta)]) + meta
    value = decode_value(CONSUMER_GROUP_MEMBER_METADATA, tagged)
    assert value.classic == ClassicMemberMetadata(45000, (("range", b"abc"),))  # type: ignore[union-attr]
    assert encode_value(value) == tagged
    # A future version keeps the fields it shares with v0; trailing bytes are its own.
    assert decode_value(CONSUMER_GROUP_METADATA, h(1) + i32(8) + b"\x00" + b"junk") == (
        GroupEpochValue(8)
    )
    with pytest.raises(RecordFormatError):
        decode_value(CONSUMER_GROUP_METADATA, h(0) + i32(8) + b"\x00" + b"junk")
    with pytest.raises(RecordFormatError):
        decode_value(CONSUMER_GROUP_METADATA, h(0) + b"\x00")


@given(
    st.dictionaries(
        st.uuids(), st.frozensets(st.integers(0, 10_000), min_size=1, max_size=20), max_size=5
    ),
    st.integers(-(2**31), 2**31 - 1),
)
def test_assignment_round_trip(assignment: dict[uuid.UUID, frozenset[int]], epoch: int) -> None:
    value = CurrentAssignmentValue(epoch, epoch, 2, assignment, assignment)
    raw = encode_value(value)
    assert decode_value(CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT, raw) == value
