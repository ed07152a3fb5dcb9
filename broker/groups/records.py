"""Record keys and values of ``__consumer_offsets``, byte-compatible with Kafka's.

Kafka's group coordinator writes two kinds of records to the offsets topic, each a key
prefixed by an int16 record type and a value prefixed by an int16 schema version (a null
value is a tombstone). The schemas are Kafka's JSON messages in
``group-coordinator/src/main/resources/common/message``:

- ``OffsetCommitKey`` (type 0 or 1; Kafka 4.x writes 1): group, topic, partition.
- ``OffsetCommitValue`` v0-v4 (Kafka 4.x writes v3, or v1 when an explicit expire
  timestamp came from OffsetCommit v2-v4): offset, leaderEpoch (v3+), metadata,
  commitTimestamp, expireTimestamp (v1 only). v4 is the first flexible version.
- ``GroupMetadataKey`` (type 2): group.
- ``GroupMetadataValue`` v0-v4 (Kafka 4.x writes v3): protocolType, generation,
  protocol, leader, currentStateTimestamp (v2+), members (memberId, groupInstanceId v3+,
  clientId, clientHost, rebalanceTimeout v1+, sessionTimeout, subscription, assignment).

Other record types (KIP-848 consumer groups, share groups, streams groups) are decoded
as :class:`OtherKey` so a loader can skip them. Everything here is pure bytes in, bytes
out, so the topic stays inspectable with Kafka's own tools.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

OFFSET_COMMIT_KEY_V0 = 0
OFFSET_COMMIT_KEY = 1
GROUP_METADATA_KEY = 2
OFFSET_COMMIT_VALUE_VERSION = 3
OFFSET_COMMIT_VALUE_VERSION_WITH_EXPIRY = 1
GROUP_METADATA_VALUE_VERSION = 3
MAX_VALUE_VERSION = 4  # the flexible versions of both values

_H = struct.Struct(">h")
_I = struct.Struct(">i")
_Q = struct.Struct(">q")


class RecordFormatError(ValueError):
    """A key or value that does not parse as any version of Kafka's schemas."""


# ---------------------------------------------------------------------------------------
# Decoded forms


@dataclass(frozen=True, slots=True)
class OffsetCommitKey:
    group: str
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class GroupMetadataKey:
    group: str


@dataclass(frozen=True, slots=True)
class OtherKey:
    """A record type this broker does not use (KIP-848, share or streams groups)."""

    record_type: int


@dataclass(frozen=True, slots=True)
class OffsetCommitValue:
    offset: int
    metadata: str
    commit_timestamp: int
    leader_epoch: int = -1
    expire_timestamp: int = -1


@dataclass(frozen=True, slots=True)
class MemberMetadata:
    member_id: str
    client_id: str
    client_host: str
    session_timeout: int
    subscription: bytes
    assignment: bytes
    rebalance_timeout: int = -1
    group_instance_id: str | None = None


@dataclass(frozen=True, slots=True)
class GroupMetadataValue:
    protocol_type: str
    generation: int
    protocol: str | None
    leader: str | None
    current_state_timestamp: int = -1
    members: tuple[MemberMetadata, ...] = field(default_factory=tuple)


# ---------------------------------------------------------------------------------------
# Writing


class _Writer:
    def __init__(self, flexible: bool = False) -> None:
        self.buf = bytearray()
        self.flexible = flexible

    def int16(self, v: int) -> None:
        self.buf += _H.pack(v)

    def int32(self, v: int) -> None:
        self.buf += _I.pack(v)

    def int64(self, v: int) -> None:
        self.buf += _Q.pack(v)

    def uvarint(self, v: int) -> None:
        while v >= 0x80:
            self.buf.append((v & 0x7F) | 0x80)
            v >>= 7
        self.buf.append(v)

    def string(self, s: str | None) -> None:
        if s is None:
            if self.flexible:
                self.uvarint(0)
            else:
                self.int16(-1)
            return
        data = s.encode("utf-8")
        if self.flexible:
            self.uvarint(len(data) + 1)
        else:
            if len(data) > 0x7FFF:
                raise RecordFormatError(f"string of {len(data)} bytes does not fit an int16")
            self.int16(len(data))
        self.buf += data

    def bytes_(self, b: bytes) -> None:
        if self.flexible:
            self.uvarint(len(b) + 1)
        else:
            self.int32(len(b))
        self.buf += b

    def array_len(self, n: int) -> None:
        if self.flexible:
            self.uvarint(n + 1)
        else:
            self.int32(n)

    def tags(self) -> None:
        if self.flexible:
            self.uvarint(0)


def encode_offset_commit_key(group: str, topic: str, partition: int) -> bytes:
    w = _Writer()
    w.int16(OFFSET_COMMIT_KEY)
    w.string(group)
    w.string(topic)
    w.int32(partition)
    return bytes(w.buf)


def encode_group_metadata_key(group: str) -> bytes:
    w = _Writer()
    w.int16(GROUP_METADATA_KEY)
    w.string(group)
    return bytes(w.buf)


def encode_offset_commit_value(value: OffsetCommitValue, version: int | None = None) -> bytes:
    """Kafka's choice of version unless given: v1 with an expire timestamp, else v3."""
    if version is None:
        version = (
            OFFSET_COMMIT_VALUE_VERSION_WITH_EXPIRY
            if value.expire_timestamp >= 0
            else OFFSET_COMMIT_VALUE_VERSION
        )
    if not 0 <= version <= MAX_VALUE_VERSION:
        raise RecordFormatError(f"OffsetCommitValue v{version} does not exist")
    w = _Writer(flexible=version >= 4)
    w.int16(version)
    w.int64(value.offset)
    if version >= 3:
        w.int32(value.leader_epoch)
    w.string(value.metadata)
    w.int64(value.commit_timestamp)
    if version == 1:
        w.int64(value.expire_timestamp)
    w.tags()
    return bytes(w.buf)


def encode_group_metadata_value(
    value: GroupMetadataValue, version: int = GROUP_METADATA_VALUE_VERSION
) -> bytes:
    if not 0 <= version <= MAX_VALUE_VERSION:
        raise RecordFormatError(f"GroupMetadataValue v{version} does not exist")
    w = _Writer(flexible=version >= 4)
    w.int16(version)
    w.string(value.protocol_type)
    w.int32(value.generation)
    w.string(value.protocol)
    w.string(value.leader)
    if version >= 2:
        w.int64(value.current_state_timestamp)
    w.array_len(len(value.members))
    for m in value.members:
        w.string(m.member_id)
        if version >= 3:
            w.string(m.group_instance_id)
        w.string(m.client_id)
        w.string(m.client_host)
        if version >= 1:
            w.int32(m.rebalance_timeout)
        w.int32(m.session_timeout)
        w.bytes_(m.subscription)
        w.bytes_(m.assignment)
        w.tags()
    w.tags()
    return bytes(w.buf)


# ---------------------------------------------------------------------------------------
# Reading


class _Reader:
    def __init__(self, buf: bytes | memoryview, flexible: bool = False, pos: int = 0) -> None:
        self.buf = bytes(buf)
        self.pos = pos
        self.flexible = flexible

    def _take(self, n: int) -> bytes:
        end = self.pos + n
        if n < 0 or end > len(self.buf):
            raise RecordFormatError(f"needs {n} bytes at position {self.pos}, record ends")
        out = self.buf[self.pos : end]
        self.pos = end
        return out

    def int16(self) -> int:
        return _H.unpack(self._take(2))[0]

    def int32(self) -> int:
        return _I.unpack(self._take(4))[0]

    def int64(self) -> int:
        return _Q.unpack(self._take(8))[0]

    def uvarint(self) -> int:
        result = shift = 0
        while True:
            b = self._take(1)[0]
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
            if shift > 35:
                raise RecordFormatError("varint too long")

    def string(self, nullable: bool = False) -> str | None:
        n = self.uvarint() - 1 if self.flexible else self.int16()
        if n < 0:
            if not nullable:
                raise RecordFormatError("null string in a non-nullable field")
            return None
        try:
            return self._take(n).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RecordFormatError(f"string is not UTF-8: {exc}") from None

    def bytes_(self) -> bytes:
        n = self.uvarint() - 1 if self.flexible else self.int32()
        if n < 0:
            raise RecordFormatError("null bytes in a non-nullable field")
        return self._take(n)

    def array_len(self) -> int:
        n = self.uvarint() - 1 if self.flexible else self.int32()
        if n < 0:
            raise RecordFormatError("null array in a non-nullable field")
        return n

    def skip_tags(self) -> None:
        if not self.flexible:
            return
        for _ in range(self.uvarint()):
            self.uvarint()
            self._take(self.uvarint())

    def done(self) -> None:
        if self.pos != len(self.buf):
            raise RecordFormatError(f"{len(self.buf) - self.pos} trailing bytes")


def decode_key(key: bytes | memoryview) -> OffsetCommitKey | GroupMetadataKey | OtherKey:
    r = _Reader(key)
    record_type = r.int16()
    if record_type in (OFFSET_COMMIT_KEY_V0, OFFSET_COMMIT_KEY):
        group = r.string()
        topic = r.string()
        partition = r.int32()
        r.done()
        assert group is not None and topic is not None
        return OffsetCommitKey(group, topic, partition)
    if record_type == GROUP_METADATA_KEY:
        group = r.string()
        r.done()
        assert group is not None
        return GroupMetadataKey(group)
    if record_type < 0:
        raise RecordFormatError(f"negative record type {record_type}")
    return OtherKey(record_type)


def _value_reader(value: bytes | memoryview, name: str) -> tuple[_Reader, int]:
    r = _Reader(value)
    version = r.int16()
    if version < 0:
        raise RecordFormatError(f"{name} has negative version {version}")
    # Versions above the newest we know keep their fields (KIP-915): read them as the
    # newest, flexible, version and skip what follows.
    r.flexible = version >= 4
    return r, version


def decode_offset_commit_value(value: bytes | memoryview) -> OffsetCommitValue:
    r, version = _value_reader(value, "OffsetCommitValue")
    offset = r.int64()
    leader_epoch = r.int32() if version >= 3 else -1
    metadata = r.string()
    commit_ts = r.int64()
    expire_ts = r.int64() if version == 1 else -1
    r.skip_tags()
    if version <= MAX_VALUE_VERSION:
        r.done()
    assert metadata is not None
    return OffsetCommitValue(offset, metadata, commit_ts, leader_epoch, expire_ts)


def decode_group_metadata_value(value: bytes | memoryview) -> GroupMetadataValue:
    r, version = _value_reader(value, "GroupMetadataValue")
    protocol_type = r.string()
    generation = r.int32()
    protocol = r.string(nullable=True)
    leader = r.string(nullable=True)
    current_state_ts = r.int64() if version >= 2 else -1
    members = []
    for _ in range(r.array_len()):
        member_id = r.string()
        instance_id = r.string(nullable=True) if version >= 3 else None
        client_id = r.string()
        client_host = r.string()
        rebalance_timeout = r.int32() if version >= 1 else -1
        session_timeout = r.int32()
        subscription = r.bytes_()
        assignment = r.bytes_()
        r.skip_tags()
        assert member_id is not None and client_id is not None and client_host is not None
        members.append(
            MemberMetadata(
                member_id,
                client_id,
                client_host,
                session_timeout,
                subscription,
                assignment,
                rebalance_timeout,
                instance_id,
            )
        )
    r.skip_tags()
    if version <= MAX_VALUE_VERSION:
        r.done()
    assert protocol_type is not None
    return GroupMetadataValue(
        protocol_type, generation, protocol, leader, current_state_ts, tuple(members)
    )


# ---------------------------------------------------------------------------------------
# Where a group lives


def java_string_hashcode(s: str) -> int:
    """Java's ``String.hashCode()``: 31-polynomial over UTF-16 code units, as an int32."""
    data = s.encode("utf-16-be")
    h = 0
    for i in range(0, len(data), 2):
        h = (31 * h + ((data[i] << 8) | data[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def kafka_abs(n: int) -> int:
    """Kafka's ``Utils.abs``: like Math.abs, but Integer.MIN_VALUE maps to 0."""
    return 0 if n == -(2**31) else abs(n)


def partition_for(group_id: str, partitions: int) -> int:
    """The ``__consumer_offsets`` partition whose leader coordinates ``group_id``."""
    return kafka_abs(java_string_hashcode(group_id)) % partitions


def java_string_length(s: str) -> int:
    """Java's ``String.length()`` (UTF-16 code units), which offset.metadata.max.bytes
    is compared with."""
    return len(s.encode("utf-16-le")) // 2
