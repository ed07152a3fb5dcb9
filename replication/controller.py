"""The single-node controller: the only writer of the cluster image.

Reassignments and leader elections answer as a one-broker Kafka cluster would: the only
valid assignment is this broker, no reassignment is ever in progress and every partition
already has its preferred leader.

It validates admin changes with Kafka's rules and error codes, persists the new image
through the metadata store, then lets the ReplicaManager reconcile local logs with it.
A ZooKeeper-backed controller will implement the same methods for clusters.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from pybroker.config.topic_config import TOPIC_CONFIGS, ConfigError, TopicConfig
from pybroker.protocol.errors import ErrorCode, KafkaError
from pybroker.replication.election import ELECTION_NOT_NEEDED, ElectionResult
from pybroker.replication.metadata import (
    BrokerInfo,
    ClusterImage,
    PartitionState,
    TopicInfo,
    collision_name,
    validate_topic_name,
)
from pybroker.replication.reassignment import ReplicaAssignment
from pybroker.replication.store_local import LocalMetadataStore, new_cluster_id
from pybroker.storage.kraft_metadata import AdoptedTopic

log = logging.getLogger(__name__)

# Kafka has no hard cap; we bound one request so a typo cannot create a million files.
MAX_PARTITIONS_PER_TOPIC = 100_000


def unknown_topic_for_reassignment(topic: str) -> KafkaError:
    return KafkaError(
        f"Unable to find a topic named {topic}.", ErrorCode.unknown_topic_or_partition
    )


def unknown_partition_for_reassignment(topic: str, partition: int) -> KafkaError:
    return KafkaError(
        f"Unable to find partition {topic}:{partition}.", ErrorCode.unknown_topic_or_partition
    )


def no_reassignment_in_progress() -> KafkaError:
    # Kafka leaves the message out when it is the error's generic one (ApiError).
    return KafkaError("", ErrorCode.no_reassignment_in_progress)


def check_replication_factor(
    current: ReplicaAssignment, target: Sequence[int], allow_rf_change: bool
) -> None:
    """KIP-860: with allow_replication_factor_change=false a reassignment must keep the
    number of replicas the partition has (before any reassignment in progress)."""
    if not allow_rf_change and len(current.origin) != len(target):
        raise KafkaError(
            f"The replication factor is changed from {len(current.origin)} to {len(target)}",
            ErrorCode.invalid_replication_factor,
        )


class TopicRules:
    """Kafka's validation of admin changes (ReplicationControlManager's rules and error
    codes) against ``self.image``; shared by the single-node and the ZooKeeper admin."""

    image: ClusterImage
    topic_defaults: dict[str, object]

    def topic_config(self, configs: Mapping[str, str]) -> TopicConfig:
        return TopicConfig(overrides=dict(configs), defaults=self.topic_defaults)

    def existing_topic(self, name: str) -> TopicInfo:
        info = self.image.topics.get(name)
        if info is None:
            raise KafkaError(
                "This server does not host this topic-partition.",
                ErrorCode.unknown_topic_or_partition,
            )
        return info

    def validate_new_topic(
        self, name: str, num_partitions: int, replication_factor: int, configs: Mapping[str, str]
    ) -> TopicConfig:
        validate_topic_name(name)
        if name in self.image.topics:
            raise KafkaError(f"Topic '{name}' already exists.", ErrorCode.topic_already_exists)
        clash = [t for t in self.image.topics if collision_name(t) == collision_name(name)]
        if clash:
            raise KafkaError(
                f"Topic '{name}' collides with existing topic: {clash[0]}",
                ErrorCode.invalid_topic_exception,
            )
        if num_partitions <= 0:
            raise KafkaError(
                "Number of partitions must be larger than 0.", ErrorCode.invalid_partitions
            )
        if num_partitions > MAX_PARTITIONS_PER_TOPIC:
            raise KafkaError(
                f"Number of partitions {num_partitions} exceeds the maximum of "
                f"{MAX_PARTITIONS_PER_TOPIC} per topic.",
                ErrorCode.invalid_partitions,
            )
        if replication_factor <= 0:
            raise KafkaError(
                "Replication factor must be larger than 0.", ErrorCode.invalid_replication_factor
            )
        if replication_factor > len(self.image.brokers):
            raise KafkaError(
                f"Unable to replicate the partition {replication_factor} time(s): The target "
                f"replication factor of {replication_factor} cannot be reached because only "
                f"{len(self.image.brokers)} broker(s) are registered.",
                ErrorCode.invalid_replication_factor,
            )
        for key in configs:
            if key not in TOPIC_CONFIGS:
                raise KafkaError(f"Unknown topic config name: {key}", ErrorCode.invalid_config)
        try:
            return self.topic_config(configs)
        except ConfigError as exc:
            raise KafkaError(str(exc), ErrorCode.invalid_config) from None

    def validate_partition_increase(self, name: str, count: int) -> TopicInfo:
        info = self.existing_topic(name)
        current = len(info.partitions)
        if count == current:
            raise KafkaError(
                f"Topic already has {current} partition(s).", ErrorCode.invalid_partitions
            )
        if count < current:
            raise KafkaError(
                f"The topic {name} currently has {current} partition(s); {count} would not be "
                "an increase.",
                ErrorCode.invalid_partitions,
            )
        if count > MAX_PARTITIONS_PER_TOPIC:
            raise KafkaError(
                f"Number of partitions {count} exceeds the maximum of "
                f"{MAX_PARTITIONS_PER_TOPIC} per topic.",
                ErrorCode.invalid_partitions,
            )
        return info

    def validate_topic_configs(self, name: str, configs: Mapping[str, str]) -> TopicInfo:
        info = self.existing_topic(name)
        for key in configs:
            if key not in TOPIC_CONFIGS:
                raise KafkaError(f"Unknown topic config name: {key}", ErrorCode.invalid_config)
        try:
            self.topic_config(configs)
        except ConfigError as exc:
            raise KafkaError(str(exc), ErrorCode.invalid_config) from None
        return info


class LocalController(TopicRules):
    def __init__(
        self,
        node_id: int,
        broker: BrokerInfo,
        store: LocalMetadataStore,
        topic_defaults: Mapping[str, object],
        on_change: Callable[[ClusterImage], None],
        cluster_id: str | None = None,
    ) -> None:
        self.node_id = node_id
        self.store = store
        self.topic_defaults = dict(topic_defaults)
        self._on_change = on_change
        loaded = store.load()
        if loaded is None:
            loaded = ClusterImage(cluster_id or new_cluster_id(), node_id, {}, {})
            store.save(loaded)
        elif cluster_id and cluster_id != loaded.cluster_id:
            raise RuntimeError(
                f"cluster.id {cluster_id} does not match {loaded.cluster_id} stored in the log dir"
            )
        self.image = replace(loaded, controller_id=node_id).with_brokers({node_id: broker})

    def start(self) -> None:
        self._on_change(self.image)

    def adopt_topics(self, adopted: Sequence[AdoptedTopic]) -> None:
        """Register topics whose partition dirs were found on disk but are unknown here
        (a log dir copied from Apache Kafka): before ``start``, so no log is dropped."""
        image = self.image
        replicas = (self.node_id,)
        for t in adopted:
            if t.name in image.topics or image.topic_by_id(t.topic_id) is not None:
                continue
            parts = tuple(
                PartitionState(p, self.node_id, 0, replicas, replicas) for p in range(t.partitions)
            )
            configs = {}
            for key, value in t.configs.items():
                try:
                    self.topic_config({key: value})
                    configs[key] = value
                except (ConfigError, ValueError) as exc:
                    log.warning("Topic %s: not adopting config %s=%s: %s", t.name, key, value, exc)
            image = image.with_topic(TopicInfo(t.name, t.topic_id, parts, configs))
            log.info(
                "Adopted topic %s (id %s) with %d partition(s) and configs %s found on disk",
                t.name,
                t.topic_id,
                t.partitions,
                configs,
            )
        if image is not self.image:
            self.store.save(image)
            self.image = image

    def validate_manual_replicas(self, broker_ids: Sequence[int]) -> None:
        """A single node places every replica on itself."""
        if list(broker_ids) != [self.node_id]:
            raise KafkaError(
                f"pybroker places every replica on the broker that hosts the topic: a manual "
                f"partition assignment must be [{self.node_id}], not {list(broker_ids)}.",
                ErrorCode.invalid_replica_assignment,
            )

    def _commit(self, image: ClusterImage) -> None:
        self.store.save(image)
        self.image = image
        self._on_change(image)

    # ------------------------------------------------------------------ topics
    async def create_topic(
        self,
        name: str,
        num_partitions: int,
        replication_factor: int,
        configs: Mapping[str, str],
        validate_only: bool = False,
        assignment: Mapping[int, Sequence[int]] | None = None,
    ) -> TopicInfo:
        """``assignment`` (manual placement) can only name this broker on a single node
        (``validate_manual_replicas``), so it changes nothing here."""
        self.validate_new_topic(name, num_partitions, replication_factor, configs)
        replicas = (self.node_id,)
        info = TopicInfo(
            name=name,
            topic_id=uuid.uuid4(),
            partitions=tuple(
                PartitionState(p, self.node_id, 0, replicas, replicas)
                for p in range(num_partitions)
            ),
            configs=dict(configs),
        )
        if not validate_only:
            log.info("Created topic %s with %d partition(s)", name, num_partitions)
            self._commit(self.image.with_topic(info))
        return info

    async def delete_topic(self, name: str) -> TopicInfo:
        info = self.existing_topic(name)
        log.info("Deleting topic %s", name)
        self._commit(self.image.without_topic(name))
        return info

    async def create_partitions(
        self,
        name: str,
        count: int,
        validate_only: bool = False,
        assignment: Sequence[Sequence[int]] | None = None,
    ) -> None:
        info = self.validate_partition_increase(name, count)
        if validate_only:
            return
        current = len(info.partitions)
        replicas = (self.node_id,)
        added = tuple(
            PartitionState(p, self.node_id, 0, replicas, replicas) for p in range(current, count)
        )
        log.info("Increasing partitions of %s from %d to %d", name, current, count)
        self._commit(self.image.with_topic(replace(info, partitions=info.partitions + added)))

    async def set_topic_configs(
        self, name: str, configs: Mapping[str, str], validate_only: bool = False
    ) -> None:
        """Replace the topic's overrides with ``configs`` after validating every key."""
        info = self.validate_topic_configs(name, configs)
        if validate_only:
            return
        self._commit(self.image.with_topic(replace(info, configs=dict(configs))))

    # ------------------------------------------------------------------ reassignments
    def _partition(self, topic: str, partition: int) -> PartitionState:
        info = self.image.topics.get(topic)
        if info is None:
            raise unknown_topic_for_reassignment(topic)
        if not 0 <= partition < len(info.partitions):
            raise unknown_partition_for_reassignment(topic, partition)
        return info.partitions[partition]

    async def alter_partition_reassignment(
        self, topic: str, partition: int, target: Sequence[int], allow_rf_change: bool = True
    ) -> None:
        """The target was validated (it can only be this broker): nothing moves."""
        current = ReplicaAssignment(tuple(self._partition(topic, partition).replicas))
        check_replication_factor(current, target, allow_rf_change)
        self.validate_manual_replicas(target)

    async def cancel_partition_reassignment(self, topic: str, partition: int) -> None:
        self._partition(topic, partition)
        raise no_reassignment_in_progress()

    def list_partition_reassignments(
        self, topics: Mapping[str, Sequence[int]] | None
    ) -> list[tuple[str, int, ReplicaAssignment]]:
        return []

    # ------------------------------------------------------------------ elections
    async def elect_leaders(
        self,
        election_type: int,
        partitions: Sequence[tuple[str, int]] | None,
        timeout_s: float,
    ) -> list[ElectionResult]:
        """(topic, partition, error, message): every partition already has its preferred
        leader, this broker, so no election is ever needed (and none is reported when
        all partitions were asked for)."""
        if partitions is None:
            return []
        out: list[ElectionResult] = []
        for topic, p in partitions:
            info = self.image.topics.get(topic)
            if info is None:
                out.append(
                    ElectionResult(
                        topic, p, ErrorCode.unknown_topic_or_partition, f"No such topic as {topic}"
                    )
                )
            elif not 0 <= p < len(info.partitions):
                out.append(
                    ElectionResult(
                        topic,
                        p,
                        ErrorCode.unknown_topic_or_partition,
                        f"No such partition as {topic}-{p}",
                    )
                )
            else:
                out.append(
                    ElectionResult(topic, p, ErrorCode.election_not_needed, ELECTION_NOT_NEEDED)
                )
        return out
