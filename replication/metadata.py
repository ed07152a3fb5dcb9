"""The cluster metadata image: brokers, topics, partition assignments and topic configs.

Immutable: every change produces a new image, so a request handler reads one consistent
snapshot even while the controller is changing the cluster.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from pybroker.protocol.errors import ErrorCode, KafkaError

MAX_TOPIC_NAME_LENGTH = 249
_LEGAL_TOPIC = re.compile(r"^[a-zA-Z0-9._-]+$")
INTERNAL_TOPICS = frozenset({"__consumer_offsets", "__transaction_state"})


def validate_topic_name(name: str) -> None:
    """Kafka's topic name rules; raises INVALID_TOPIC_EXCEPTION."""
    if not name:
        raise KafkaError(
            "Topic name is illegal, it can't be empty", ErrorCode.invalid_topic_exception
        )
    if name in (".", ".."):
        raise KafkaError('Topic name cannot be "." or ".."', ErrorCode.invalid_topic_exception)
    if len(name) > MAX_TOPIC_NAME_LENGTH:
        raise KafkaError(
            f"Topic name is illegal, it can't be longer than {MAX_TOPIC_NAME_LENGTH} characters",
            ErrorCode.invalid_topic_exception,
        )
    if not _LEGAL_TOPIC.match(name):
        raise KafkaError(
            f'Topic name "{name}" is illegal, it contains a character other than '
            "ASCII alphanumerics, '.', '_' and '-'",
            ErrorCode.invalid_topic_exception,
        )


def collision_name(name: str) -> str:
    """Kafka treats '.' and '_' as colliding in metric names."""
    return name.replace(".", "_")


@dataclass(frozen=True, slots=True)
class BrokerInfo:
    node_id: int
    host: str
    port: int
    rack: str | None = None


@dataclass(frozen=True, slots=True)
class PartitionState:
    partition: int
    leader: int
    leader_epoch: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    version: int = 0  # the metadata store's version of this state (a znode's zkVersion)


@dataclass(frozen=True, slots=True)
class TopicInfo:
    name: str
    topic_id: uuid.UUID
    partitions: tuple[PartitionState, ...]
    configs: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_internal(self) -> bool:
        return self.name in INTERNAL_TOPICS


@dataclass(frozen=True, slots=True)
class ClusterImage:
    cluster_id: str
    controller_id: int
    brokers: Mapping[int, BrokerInfo]
    topics: Mapping[str, TopicInfo]
    # Live brokers that asked for a controlled shutdown: they lead nothing and rejoin no ISR.
    shutting_down: frozenset[int] = frozenset()
    _by_id: Mapping[uuid.UUID, TopicInfo] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {t.topic_id: t for t in self.topics.values()})

    def topic_by_id(self, topic_id: uuid.UUID) -> TopicInfo | None:
        return self._by_id.get(topic_id)

    def partition(self, topic: str, partition: int) -> PartitionState | None:
        info = self.topics.get(topic)
        if info is None or not 0 <= partition < len(info.partitions):
            return None
        return info.partitions[partition]

    def with_topic(self, info: TopicInfo) -> ClusterImage:
        return replace(self, topics={**self.topics, info.name: info})

    def without_topic(self, name: str) -> ClusterImage:
        return replace(self, topics={k: v for k, v in self.topics.items() if k != name})

    def with_brokers(self, brokers: Mapping[int, BrokerInfo]) -> ClusterImage:
        return replace(self, brokers=dict(brokers))

    def isr_eligible(self, broker_id: int) -> bool:
        """May this broker (re)join an ISR? Kafka's isReplicaIsrEligible: alive and not
        shutting down."""
        return broker_id in self.brokers and broker_id not in self.shutting_down
