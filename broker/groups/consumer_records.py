"""KIP-848 consumer-group records of ``__consumer_offsets``, byte-compatible with Kafka 4.0.

Kafka's new group coordinator persists a consumer group as a handful of record types
(``group-coordinator/src/main/resources/common/message`` at 4.0). Every key is an int16
record type followed by non-flexible fields; every value is an int16 version (0 for all of
these) followed by flexible fields (compact strings and arrays, a tagged-field section):

====  ==========================================  ==========================================
type  key (group id, ...)                         value v0
====  ==========================================  ==========================================
3     ConsumerGroupMetadataKey                    Epoch
4     ConsumerGroupPartitionMetadataKey           Topics [TopicId, TopicName, NumPartitions,
                                                  PartitionRacks [Partition, Racks]]
5     ConsumerGroupMemberMetadataKey (+member)    InstanceId?, RackId?, ClientId, ClientHost,
                                                  SubscribedTopicNames, SubscribedTopicRegex?,
                                                  RebalanceTimeoutMs, ServerAssignor?,
                                                  tag 0: ClassicMemberMetadata
6     ConsumerGroupTargetAssignmentMetadataKey    AssignmentEpoch
7     ConsumerGroupTargetAssignmentMemberKey (+m) TopicPartitions [TopicId, Partitions]
8     ConsumerGroupCurrentMemberAssignmentKey (+m) MemberEpoch, PreviousMemberEpoch, State
                                                  (int8), AssignedPartitions,
                                                  PartitionsPendingRevocation
16    ConsumerGroupRegularExpressionKey (+regex)  Topics, Version, Timestamp
====  ==========================================  ==========================================

A null value is a tombstone. Values written by a newer Kafka (extra tagged fields such as
4.1's MetadataHash, or a higher version) are read for the fields 4.0 knows (KIP-915).
Assignments are ``{topic id: frozenset(partitions)}``, written with sorted partitions.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from pybroker.broker.groups.records import RecordFormatError, _Reader, _Writer

CONSUMER_GROUP_METADATA = 3
CONSUMER_GROUP_PARTITION_METADATA = 4
CONSUMER_GROUP_MEMBER_METADATA = 5
CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA = 6
CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER = 7
CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT = 8
CONSUMER_GROUP_REGULAR_EXPRESSION = 16

CONSUMER_RECORD_TYPES = frozenset(
    {
        CONSUMER_GROUP_METADATA,
        CONSUMER_GROUP_PARTITION_METADATA,
        CONSUMER_GROUP_MEMBER_METADATA,
        CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA,
        CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER,
        CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT,
        CONSUMER_GROUP_REGULAR_EXPRESSION,
    }
)
_WITH_MEMBER = frozenset(
    {
        CONSUMER_GROUP_MEMBER_METADATA,
        CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER,
        CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT,
    }
)

Assignment = Mapping[uuid.UUID, frozenset[int]]


# ---------------------------------------------------------------------------------------
# Decoded forms


@dataclass(frozen=True, slots=True)
class ConsumerKey:
    """Any consumer-group key: ``member`` for types 5, 7, 8; ``regex`` for type 16."""

    record_type: int
    group_id: str
    member_id: str | None = None
    regex: str | None = None


@dataclass(frozen=True, slots=True)
class GroupEpochValue:
    epoch: int


@dataclass(frozen=True, slots=True)
class TopicMetadata:
    topic_id: uuid.UUID
    name: str
    num_partitions: int


@dataclass(frozen=True, slots=True)
class PartitionMetadataValue:
    topics: tuple[TopicMetadata, ...]


@dataclass(frozen=True, slots=True)
class ClassicMemberMetadata:
    """What a member that speaks the classic protocol inside a consumer group joined with:
    its session timeout and its protocols (name, consumer-protocol subscription), in its
    order of preference."""

    session_timeout_ms: int
    protocols: tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class MemberMetadataValue:
    instance_id: str | None
    rack_id: str | None
    client_id: str
    client_host: str
    subscribed_topic_names: tuple[str, ...]
    subscribed_topic_regex: str | None
    rebalance_timeout_ms: int
    server_assignor: str | None
    classic: ClassicMemberMetadata | None = None  # tag 0: the member uses the classic protocol


@dataclass(frozen=True, slots=True)
class AssignmentEpochValue:
    assignment_epoch: int


@dataclass(frozen=True, slots=True)
class TargetAssignmentValue:
    partitions: Assignment


@dataclass(frozen=True, slots=True)
class CurrentAssignmentValue:
    member_epoch: int
    previous_member_epoch: int
    state: int
    assigned: Assignment
    pending_revocation: Assignment


@dataclass(frozen=True, slots=True)
class RegexValue:
    topics: tuple[str, ...]
    version: int
    timestamp: int


ConsumerValue = (
    GroupEpochValue
    | PartitionMetadataValue
    | MemberMetadataValue
    | AssignmentEpochValue
    | TargetAssignmentValue
    | CurrentAssignmentValue
    | RegexValue
)


# ---------------------------------------------------------------------------------------
# Keys


def encode_key(key: ConsumerKey) -> bytes:
    w = _Writer()
    w.int16(key.record_type)
    w.string(key.group_id)
    if key.record_type in _WITH_MEMBER:
        w.string(key.member_id or "")
    elif key.record_type == CONSUMER_GROUP_REGULAR_EXPRESSION:
        w.string(key.regex or "")
    return bytes(w.buf)


def decode_consumer_key(data: bytes | memoryview) -> ConsumerKey | None:
    """The key if it is a consumer-group record type, else None."""
    r = _Reader(data)
    record_type = r.int16()
    if record_type not in CONSUMER_RECORD_TYPES:
        return None
    group = r.string()
    member = regex = None
    if record_type in _WITH_MEMBER:
        member = r.string()
    elif record_type == CONSUMER_GROUP_REGULAR_EXPRESSION:
        regex = r.string()
    r.done()
    assert group is not None
    return ConsumerKey(record_type, group, member, regex)


# ---------------------------------------------------------------------------------------
# Values


class _FlexWriter(_Writer):
    def __init__(self) -> None:
        super().__init__(flexible=True)

    def int8(self, v: int) -> None:
        self.buf += (v & 0xFF).to_bytes(1, "big")

    def uuid(self, v: uuid.UUID) -> None:
        self.buf += v.bytes

    def strings(self, values: tuple[str, ...] | list[str]) -> None:
        self.array_len(len(values))
        for s in values:
            self.string(s)

    def int32s(self, values: list[int]) -> None:
        self.array_len(len(values))
        for v in values:
            self.int32(v)

    def tagged(self, fields: Mapping[int, bytes]) -> None:
        """A tagged fields section (tags in ascending order, as the schema requires)."""
        self.uvarint(len(fields))
        for tag in sorted(fields):
            self.uvarint(tag)
            self.uvarint(len(fields[tag]))
            self.buf += fields[tag]

    def topic_partitions(self, assignment: Assignment) -> None:
        items = sorted(assignment.items(), key=lambda kv: str(kv[0]))
        self.array_len(len(items))
        for topic_id, partitions in items:
            self.uuid(topic_id)
            self.int32s(sorted(partitions))
            self.tags()


class _FlexReader(_Reader):
    def __init__(self, data: bytes | memoryview) -> None:
        super().__init__(data, flexible=True)

    def int8(self) -> int:
        return int.from_bytes(self._take(1), "big", signed=True)

    def uuid(self) -> uuid.UUID:
        return uuid.UUID(bytes=self._take(16))

    def strings(self) -> tuple[str, ...]:
        out = []
        for _ in range(self.array_len()):
            s = self.string()
            assert s is not None
            out.append(s)
        return tuple(out)

    def int32s(self) -> list[int]:
        return [self.int32() for _ in range(self.array_len())]

    def topic_partitions(self) -> dict[uuid.UUID, frozenset[int]]:
        out: dict[uuid.UUID, frozenset[int]] = {}
        for _ in range(self.array_len()):
            topic_id = self.uuid()
            parts = self.int32s()
            self.skip_tags()
            if parts:
                out[topic_id] = out.get(topic_id, frozenset()) | frozenset(parts)
        return out

    def tagged(self) -> dict[int, bytes]:
        """The tagged fields section: each tag's raw bytes."""
        out = {}
        for _ in range(self.uvarint()):
            tag = self.uvarint()
            out[tag] = self._take(self.uvarint())
        return out


def encode_value(value: ConsumerValue) -> bytes:
    w = _FlexWriter()
    w.int16(0)
    if isinstance(value, GroupEpochValue):
        w.int32(value.epoch)
    elif isinstance(value, PartitionMetadataValue):
        topics = sorted(value.topics, key=lambda t: t.name)
        w.array_len(len(topics))
        for t in topics:
            w.uuid(t.topic_id)
            w.string(t.name)
            w.int32(t.num_partitions)
            w.array_len(0)  # PartitionRacks: no racks are configured
            w.tags()
    elif isinstance(value, MemberMetadataValue):
        w.string(value.instance_id)
        w.string(value.rack_id)
        w.string(value.client_id)
        w.string(value.client_host)
        w.strings(sorted(value.subscribed_topic_names))
        w.string(value.subscribed_topic_regex)
        w.int32(value.rebalance_timeout_ms)
        w.string(value.server_assignor)
        if value.classic is not None:
            w.tagged({0: _classic_member_metadata(value.classic)})
            return bytes(w.buf)
    elif isinstance(value, AssignmentEpochValue):
        w.int32(value.assignment_epoch)
    elif isinstance(value, TargetAssignmentValue):
        w.topic_partitions(value.partitions)
    elif isinstance(value, CurrentAssignmentValue):
        w.int32(value.member_epoch)
        w.int32(value.previous_member_epoch)
        w.int8(value.state)
        w.topic_partitions(value.assigned)
        w.topic_partitions(value.pending_revocation)
    elif isinstance(value, RegexValue):
        w.strings(sorted(value.topics))
        w.int64(value.version)
        w.int64(value.timestamp)
    else:  # pragma: no cover - a programming error
        raise TypeError(f"not a consumer-group value: {value!r}")
    w.tags()
    return bytes(w.buf)


def decode_value(record_type: int, data: bytes | memoryview) -> ConsumerValue:
    r = _FlexReader(data)
    version = r.int16()
    if version < 0:
        raise RecordFormatError(f"record type {record_type} value has negative version {version}")
    value: ConsumerValue
    if record_type == CONSUMER_GROUP_METADATA:
        value = GroupEpochValue(r.int32())
    elif record_type == CONSUMER_GROUP_PARTITION_METADATA:
        topics = []
        for _ in range(r.array_len()):
            topic_id = r.uuid()
            name = r.string()
            count = r.int32()
            for _ in range(r.array_len()):  # PartitionRacks
                r.int32()
                r.strings()
                r.skip_tags()
            r.skip_tags()
            assert name is not None
            topics.append(TopicMetadata(topic_id, name, count))
        value = PartitionMetadataValue(tuple(topics))
    elif record_type == CONSUMER_GROUP_MEMBER_METADATA:
        instance_id = r.string(nullable=True)
        rack_id = r.string(nullable=True)
        client_id = r.string()
        client_host = r.string()
        names = r.strings()
        regex = r.string(nullable=True)
        rebalance_timeout = r.int32()
        assignor = r.string(nullable=True)
        tags = r.tagged()
        assert client_id is not None and client_host is not None
        value = MemberMetadataValue(
            instance_id,
            rack_id,
            client_id,
            client_host,
            names,
            regex,
            rebalance_timeout,
            assignor,
            classic=_read_classic_member_metadata(tags[0]) if 0 in tags else None,
        )
        _done(r, version)
        return value
    elif record_type == CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA:
        value = AssignmentEpochValue(r.int32())
    elif record_type == CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER:
        value = TargetAssignmentValue(r.topic_partitions())
    elif record_type == CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT:
        value = CurrentAssignmentValue(
            r.int32(), r.int32(), r.int8(), r.topic_partitions(), r.topic_partitions()
        )
    elif record_type == CONSUMER_GROUP_REGULAR_EXPRESSION:
        value = RegexValue(r.strings(), r.int64(), r.int64())
    else:
        raise RecordFormatError(f"record type {record_type} is not a consumer-group record")
    r.skip_tags()
    _done(r, version)
    return value


def _classic_member_metadata(v: ClassicMemberMetadata) -> bytes:
    w = _FlexWriter()
    w.int32(v.session_timeout_ms)
    w.array_len(len(v.protocols))
    for name, metadata in v.protocols:
        w.string(name)
        w.bytes_(metadata)
        w.tags()
    w.tags()
    return bytes(w.buf)


def _read_classic_member_metadata(data: bytes) -> ClassicMemberMetadata:
    r = _FlexReader(data)
    timeout = r.int32()
    protocols = []
    for _ in range(r.array_len()):
        name = r.string()
        metadata = r.bytes_()
        r.skip_tags()
        if name is None:
            raise RecordFormatError("ClassicMemberMetadata has a null protocol name")
        protocols.append((name, metadata))
    r.skip_tags()
    return ClassicMemberMetadata(timeout, tuple(protocols))


def _done(r: _Reader, version: int) -> None:
    if version == 0:
        r.done()
