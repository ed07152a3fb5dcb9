"""Admin changes in a ZooKeeper cluster, from whichever broker a client asked.

As Kafka's AdminZkClient: the receiving broker validates (the same rules as a single
node, ``TopicRules``), places replicas (Kafka's rack-aware round-robin over the live
brokers) and writes the topic's assignment and config znodes; the controller then
creates the partition states and elects leaders. The request is answered once this
broker's own view shows the change (every partition with a leader, the topic gone, the
new config), bounded by the request's timeout, like Kafka's DelayedCreatePartitions;
after the timeout the answer is REQUEST_TIMED_OUT while the change still completes.

Reassignments are started here too (the topic znode gets RS = TRS + ORS with adding and
removing replicas, Kafka's first reassignment step) and completed by the controller;
ElectLeaders requests are queued for the controller, which answers them in ZooKeeper.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Mapping, Sequence

from pybroker.protocol.errors import ErrorCode, KafkaError
from pybroker.replication.assignment import assign_replicas
from pybroker.replication.controller import (
    TopicRules,
    check_replication_factor,
    no_reassignment_in_progress,
    unknown_partition_for_reassignment,
    unknown_topic_for_reassignment,
)
from pybroker.replication.metadata import ClusterImage, PartitionState, TopicInfo
from pybroker.replication.reassignment import (
    ReplicaAssignment,
    replica_assignment,
    with_reassignment,
)
from pybroker.replication.zk_client import ZkBadVersionError, ZkNoNodeError
from pybroker.replication.zk_data import TopicAssignment, new_kafka_uuid
from pybroker.replication.zk_metadata import ZkMetadataCache
from pybroker.replication.zk_store import (
    ElectionRequest,
    ElectionResult,
    KafkaZkStore,
    TopicExistsError,
    decode_election_request,
)

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

    # ------------------------------------------------------------------ reassignments
    async def _partition_assignment(
        self, topic: str, partition: int
    ) -> tuple[TopicAssignment, ReplicaAssignment]:
        a = await self.store.get_topic_assignment(topic)
        if a is None:
            raise unknown_topic_for_reassignment(topic)
        if partition not in a.partitions:
            raise unknown_partition_for_reassignment(topic, partition)
        return a, replica_assignment(a, partition)

    async def alter_partition_reassignment(
        self, topic: str, partition: int, target: Sequence[int], allow_rf_change: bool = True
    ) -> None:
        """Start (or replace) a reassignment: RS = TRS + ORS with adding/removing written
        to the topic znode (conditional on its version, re-read on a race); the
        controller completes it once the targets are in sync."""
        for _attempt in range(10):
            a, current = await self._partition_assignment(topic, partition)
            check_replication_factor(current, target, allow_rf_change)
            new = current.reassign_to(target)
            if new == current:
                return
            if await self._write_reassignment(a, partition, new):
                await self.store.forget_legacy_reassignment((topic, partition))
                log.info(
                    "Reassigning %s-%d from %s to %s (replicas %s)",
                    topic,
                    partition,
                    list(current.origin),
                    list(target),
                    list(new.replicas),
                )
                return
        raise KafkaError(
            f"The assignment of {topic} keeps changing; retry", ErrorCode.reassignment_in_progress
        )

    async def cancel_partition_reassignment(self, topic: str, partition: int) -> None:
        """Revert to the original replicas (the added ones leave the ISR and stop)."""
        for _attempt in range(10):
            a, current = await self._partition_assignment(topic, partition)
            if not current.in_progress:
                raise no_reassignment_in_progress()
            state = self.cache.states.get((topic, partition))
            isr_after = [r for r in (state.isr if state else ()) if r not in current.adding]
            info = self.image.topics.get(topic)
            unclean = info is not None and bool(
                self.topic_config(info.configs).get("unclean.leader.election.enable")
            )
            if not isr_after and not unclean:
                raise KafkaError(
                    f"Unable to revert partition assignment for {topic}:{partition} because "
                    "it would require an unclean leader election.",
                    ErrorCode.invalid_replica_assignment,
                )
            if await self._write_reassignment(a, partition, current.reassign_to(current.origin)):
                await self.store.forget_legacy_reassignment((topic, partition))
                log.info("Cancelled the reassignment of %s-%d", topic, partition)
                return
        raise KafkaError(
            f"The assignment of {topic} keeps changing; retry", ErrorCode.reassignment_in_progress
        )

    async def _write_reassignment(
        self, a: TopicAssignment, partition: int, new: ReplicaAssignment
    ) -> bool:
        """Write one partition's new replicas; False if the znode changed meanwhile. Once
        written, wait (bounded) until this broker's view has it, so that a
        ListPartitionReassignments or Metadata right after the answer sees it."""
        updated = with_reassignment(a, partition, new)
        try:
            version = await self.store.set_topic_assignment(updated)
        except (ZkBadVersionError, ZkNoNodeError):
            return False
        topic = a.topic
        await self.cache.wait_for(
            lambda _image: (
                (seen := self.cache.assignments.get(topic)) is None or seen.zk_version >= version
            ),
            self.timeout_s,
        )
        return True

    def list_partition_reassignments(
        self, topics: Mapping[str, Sequence[int]] | None
    ) -> list[tuple[str, int, ReplicaAssignment]]:
        """The partitions being reassigned (all, or among ``topics``), from this view."""
        out: list[tuple[str, int, ReplicaAssignment]] = []
        wanted = topics if topics is not None else None
        for topic in sorted(self.cache.assignments) if wanted is None else wanted:
            a = self.cache.assignments.get(topic)
            if a is None:
                continue
            partitions = sorted(a.partitions) if wanted is None else wanted[topic]
            for p in partitions:
                ra = replica_assignment(a, p)
                if p in a.partitions and ra.in_progress:
                    out.append((topic, p, ra))
        return out

    # ------------------------------------------------------------------ elections
    async def elect_leaders(
        self,
        election_type: int,
        partitions: Sequence[tuple[str, int]] | None,
        timeout_s: float,
    ) -> list[ElectionResult]:
        """Queue the election for the controller and wait (bounded) for its answer;
        REQUEST_TIMED_OUT for every partition when it does not come in time."""
        path = await self.store.create_election_request(election_type, partitions)
        name = path.rsplit("/", 1)[1]
        answered: asyncio.Future[ElectionRequest] = asyncio.get_running_loop().create_future()

        def on_data(data: bytes | None, _stat: object) -> None:
            if data and not answered.done():
                request = decode_election_request(data)
                if request.results is not None:
                    answered.set_result(request)

        sub = self.store.client.watch_data(path, on_data)
        try:
            request = await asyncio.wait_for(answered, max(timeout_s, 0.001))
            return list(request.results or ())
        except TimeoutError:
            log.info("ElectLeaders request %s not answered within %.1fs", name, timeout_s)
            return [
                ElectionResult(t, p, ErrorCode.request_timed_out, "The request timed out.")
                for t, p in partitions or ()
            ]
        finally:
            sub.cancel()
            with contextlib.suppress(Exception):
                await self.store.client.delete(path)
