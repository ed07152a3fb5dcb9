"""The single-node controller: the only writer of the cluster image.

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
from pybroker.replication.metadata import (
    BrokerInfo,
    ClusterImage,
    PartitionState,
    TopicInfo,
    collision_name,
    validate_topic_name,
)
from pybroker.replication.store_local import LocalMetadataStore, new_cluster_id

log = logging.getLogger(__name__)

# Kafka has no hard cap; we bound one request so a typo cannot create a million files.
MAX_PARTITIONS_PER_TOPIC = 100_000


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
