"""Admin changes in a ZooKeeper cluster, from whichever broker a client asked.

As Kafka's AdminZkClient: the receiving broker validates (the same rules as a single
node, ``TopicRules``), places replicas (Kafka's rack-aware round-robin over the live
brokers) and writes the topic's assignment and config znodes; the controller then
creates the partition states and elects leaders. The request is answered once this
broker's own view shows the change (every partition with a leader, the topic gone, the
new config), bounded by the request's timeout, like Kafka's DelayedCreatePartitions;
after the timeout the answer is REQUEST_TIMED_OUT while the change still completes.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence

from pybroker.protocol.errors import ErrorCode, KafkaError
from pybroker.replication.assignment import assign_replicas
from pybroker.replication.controller import TopicRules
from pybroker.replication.metadata import ClusterImage, PartitionState, TopicInfo
from pybroker.replication.zk_client import ZkBadVersionError
from pybroker.replication.zk_data import TopicAssignment, new_kafka_uuid
from pybroker.replication.zk_metadata import ZkMetadataCache
from pybroker.replication.zk_store import KafkaZkStore, TopicExistsError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 30.0


class ZkAdmin(TopicRules):
    def __init__(
        self,
        store: KafkaZkStore,
        cache: ZkMetadataCache,
        topic_defaults: Mapping[str, object],
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.store = store
        self.cache = cache
        self.topic_defaults = dict(topic_defaults)
        self.timeout_s = timeout_s

    @property
    def image(self) -> ClusterImage:  # type: ignore[override]
        return self.cache.image

    def validate_manual_replicas(self, broker_ids: Sequence[int]) -> None:
        """Any registered broker may hold a replica (the handler checks registration)."""

    def _racks(self) -> dict[int, str | None]:
        return {b.node_id: b.rack for b in self.image.brokers.values()}

    async def _wait(self, what: str, done: object) -> None:
        ok = await self.cache.wait_for(done, self.timeout_s)  # type: ignore[arg-type]
        if not ok:
            raise KafkaError(
                f"Timed out after {self.timeout_s}s waiting for {what}",
                ErrorCode.request_timed_out,
            )

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
        self.validate_new_topic(name, num_partitions, replication_factor, configs)
        placed = (
            {p: list(r) for p, r in assignment.items()}
            if assignment is not None
            else assign_replicas(self._racks(), num_partitions, replication_factor)
        )
        topic_id = new_kafka_uuid()
        info = TopicInfo(
            name,
            topic_id,
            tuple(PartitionState(p, -1, -1, tuple(placed[p]), ()) for p in range(num_partitions)),
            dict(configs),
        )
        if validate_only:
            return info
        try:
            await self.store.create_topic_assignment(
                TopicAssignment(name, topic_id, {p: tuple(r) for p, r in placed.items()}),
                configs,
            )
        except TopicExistsError:
            raise KafkaError(
                f"Topic '{name}' already exists.", ErrorCode.topic_already_exists
            ) from None
        log.info("Created topic %s with assignment %s", name, placed)

        def online(image: ClusterImage) -> bool:
            t = image.topics.get(name)
            return (
                t is not None
                and t.topic_id == topic_id
                and len(t.partitions) == num_partitions
                and all(p.leader >= 0 for p in t.partitions)
            )

        await self._wait(f"the partitions of {name} to come online", online)
        return self.image.topics[name]

    async def delete_topic(self, name: str) -> TopicInfo:
        info = self.existing_topic(name)
        await self.store.mark_topic_for_deletion(name)
        log.info("Queued topic %s for deletion", name)
        await self._wait(
            f"{name} to be deleted",
            lambda image: (t := image.topics.get(name)) is None or t.topic_id != info.topic_id,
        )
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
        existing = await self.store.get_topic_assignment(name)
        if existing is None:
            raise KafkaError(
                "This server does not host this topic-partition.",
                ErrorCode.unknown_topic_or_partition,
            )
        rf = len(info.partitions[0].replicas)
        if assignment is not None:
            added = {current + i: list(r) for i, r in enumerate(assignment)}
        else:
            added = assign_replicas(self._racks(), count - current, rf, start_partition=current)
        new = dataclasses.replace(
            existing,
            partitions={**existing.partitions, **{p: tuple(r) for p, r in added.items()}},
        )
        try:
            await self.store.set_topic_assignment(new)
        except ZkBadVersionError:
            raise KafkaError(
                f"The partitions of {name} changed concurrently; retry",
                ErrorCode.reassignment_in_progress,
            ) from None
        log.info("Increasing partitions of %s from %d to %d", name, current, count)

        def online(image: ClusterImage) -> bool:
            t = image.topics.get(name)
            return (
                t is not None
                and len(t.partitions) >= count
                and all(p.leader >= 0 for p in t.partitions[current:count])
            )

        await self._wait(f"the new partitions of {name} to come online", online)

    async def set_topic_configs(
        self, name: str, configs: Mapping[str, str], validate_only: bool = False
    ) -> None:
        self.validate_topic_configs(name, configs)
        if validate_only:
            return
        await self.store.change_topic_config(name, configs)
        wanted = dict(configs)
        await self._wait(
            f"the new configs of {name}",
            lambda image: (t := image.topics.get(name)) is not None and dict(t.configs) == wanted,
        )
