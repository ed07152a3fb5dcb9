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
    """Kafka's topic name rules (Topic.validate, 4.1 wording); raises INVALID_TOPIC_EXCEPTION."""
    if not name:
        problem = "the empty string is not allowed"
    elif name in (".", ".."):
        problem = f"'{name}' is not allowed"
    elif len(name) > MAX_TOPIC_NAME_LENGTH:
        problem = (
            f"the length of '{name}' is longer than the max allowed length {MAX_TOPIC_NAME_LENGTH}"
        )
    elif not _LEGAL_TOPIC.match(name):
        problem = (
            f"'{name}' contains one or more characters other than ASCII alphanumerics, "
            "'.', '_' and '-'"
        )
    else:
        return
    raise KafkaError(f"Topic name is invalid: {problem}", ErrorCode.invalid_topic_exception)


def collision_name(name: str) -> str:
    """Kafka treats '.' and '_' as colliding in metric names."""
    return name.replace(".", "_")


@dataclass(frozen=True, slots=True)
class BrokerInfo:
    """A live broker: ``host``/``port`` on the inter-broker listener, and every advertised
    listener as (name, host, port), so that clients get the endpoint of the listener they
    connected through."""

    node_id: int
    host: str
    port: int
    rack: str | None = None
    endpoints: tuple[tuple[str, str, int], ...] = ()

    def on(self, listener: str) -> BrokerInfo | None:
        """This broker as seen through ``listener`` (None: it has no such listener).

        A broker that registered no endpoint list is reachable only as it is."""
        if not self.endpoints:
            return self
        for name, host, port in self.endpoints:
            if name == listener:
                if host == self.host and port == self.port:
                    return self
                return replace(self, host=host, port=port)
        return None


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

    def brokers_on(self, listener: str) -> dict[int, BrokerInfo]:
        """The brokers reachable through ``listener``, with that listener's endpoints
        (Kafka's MetadataCache.getAliveBrokerNodes(listenerName))."""
        out = {}
        for node_id, info in self.brokers.items():
            seen = info.on(listener)
            if seen is not None:
                out[node_id] = seen
        return out

    def isr_eligible(self, broker_id: int) -> bool:
        """May this broker (re)join an ISR? Kafka's isReplicaIsrEligible: alive and not
        shutting down."""
        return broker_id in self.brokers and broker_id not in self.shutting_down
