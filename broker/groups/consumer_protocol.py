"""The consumer protocol embedded in classic JoinGroup and SyncGroup (``ConsumerProtocol``).

A classic consumer puts a ``ConsumerProtocolSubscription`` in its JoinGroup metadata and
receives a ``ConsumerProtocolAssignment`` from SyncGroup; both are non-flexible and start
with an int16 version (subscription v0-3: topics, user data, owned partitions, generation,
rack; assignment v0-3: partitions, user data). A consumer group that hosts classic members
(online migration, KIP-848) reads their subscriptions and writes their assignments, in the
version the member speaks. A newer version is read for the fields known here, as Kafka does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pybroker.broker.groups.records import RecordFormatError, _Reader, _Writer

LATEST_VERSION = 3


@dataclass(frozen=True, slots=True)
class Subscription:
    version: int
    topics: tuple[str, ...]
    owned: tuple[tuple[str, tuple[int, ...]], ...] = ()
    rack_id: str | None = None


def _version(r: _Reader, what: str) -> int:
    version = r.int16()
    if version < 0:
        raise RecordFormatError(f"{what} has negative version {version}")
    return version


def _topic_partitions(r: _Reader) -> list[tuple[str, tuple[int, ...]]]:
    out = []
    for _ in range(r.array_len()):
        topic = r.string()
        if topic is None:
            raise RecordFormatError("null topic name")
        out.append((topic, tuple(r.int32() for _ in range(r.array_len()))))
    return out


def _skip_user_data(r: _Reader) -> None:
    n = r.int32()  # nullable bytes
    if n >= 0:
        r._take(n)


def parse_subscription(metadata: bytes) -> Subscription:
    """A ConsumerProtocolSubscription; raises RecordFormatError if malformed."""
    r = _Reader(metadata)
    version = _version(r, "subscription")
    n = r.int32()
    if n < 0:
        raise RecordFormatError("subscription has a null topic array")
    topics = []
    for _ in range(n):
        t = r.string()
        if t is None:
            raise RecordFormatError("null topic name")
        topics.append(t)
    _skip_user_data(r)
    if version < 1:
        return Subscription(version, tuple(topics))
    owned = _topic_partitions(r)
    rack = None
    if version >= 2:
        r.int32()  # generation id
    if version >= 3:
        rack = r.string(nullable=True)
    return Subscription(version, tuple(topics), tuple(owned), rack)


def subscribed_topics(metadata: bytes) -> set[str]:
    """Topics of a ConsumerProtocolSubscription (every version starts with an int16 version
    and the topics array; the rest is not read). Raises RecordFormatError if malformed."""
    r = _Reader(metadata)
    _version(r, "subscription")
    n = r.int32()
    if n < 0:
        raise RecordFormatError("subscription has a null topic array")
    topics = set()
    for _ in range(n):
        t = r.string()
        assert t is not None
        topics.add(t)
    return topics


def metadata_version(metadata: bytes) -> int:
    """The version a member speaks (ConsumerProtocol.deserializeVersion), at most ours."""
    return min(_version(_Reader(metadata), "subscription"), LATEST_VERSION)


def parse_assignment(data: bytes) -> dict[str, frozenset[int]]:
    """A ConsumerProtocolAssignment's partitions by topic; raises RecordFormatError."""
    r = _Reader(data)
    _version(r, "assignment")
    out: dict[str, frozenset[int]] = {}
    for topic, parts in _topic_partitions(r):
        out[topic] = out.get(topic, frozenset()) | frozenset(parts)
    _skip_user_data(r)
    return out


def check_consumer_assignment(data: bytes) -> None:
    """Raises RecordFormatError if ``data`` is no ConsumerProtocolAssignment, as Kafka's
    upgrade check does."""
    parse_assignment(data)


def encode_assignment(partitions: Mapping[str, Iterable[int]], version: int) -> bytes:
    """A ConsumerProtocolAssignment in ``version`` (topics by name, partitions sorted)."""
    w = _Writer()
    w.int16(max(0, min(version, LATEST_VERSION)))
    topics = sorted((t, sorted(p)) for t, p in partitions.items() if p)
    w.array_len(len(topics))
    for topic, parts in topics:
        w.string(topic)
        w.array_len(len(parts))
        for p in parts:
            w.int32(p)
    w.int32(-1)  # no user data
    return bytes(w.buf)
