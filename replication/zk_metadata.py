"""The cluster image as ZooKeeper holds it, kept current by watches.

Kafka's ZooKeeper-mode brokers learned leaders and ISRs from the controller's
UpdateMetadata/LeaderAndIsr requests, which Kafka 4 no longer defines. Here every broker
watches the znodes themselves: ``/brokers/ids`` (live brokers), ``/controller``,
``/brokers/topics`` and each topic's assignment, each partition's state znode, and
``/config/changes`` for topic config overrides. The controller still makes every
decision; the watch only delivers it. A state with a leader epoch lower than the one
already applied is ignored by the ReplicaManager, so a late or replayed watch event can
never move a partition backwards.

Changes are coalesced: any number of watch events in one loop iteration produce one new
immutable ClusterImage, handed to ``on_change`` on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable

from pybroker.replication.metadata import BrokerInfo, ClusterImage, PartitionState, TopicInfo
from pybroker.replication.zk_client import Subscription, ZkNoNodeError
from pybroker.replication.zk_data import (
    CONFIG_CHANGES_PATH,
    BrokerRegistration,
    ControllerZnode,
    PartitionStateZnode,
    TopicAssignment,
)
from pybroker.replication.zk_store import KafkaZkStore

log = logging.getLogger(__name__)

NO_LEADER = -1
# A broker asks the controller to move its leaderships away by creating a child here.
CONTROLLED_SHUTDOWN_PATH = "/admin/controlled_shutdown"
ZERO_UUID = uuid.UUID(int=0)
TopicPartition = tuple[str, int]


def broker_info(reg: BrokerRegistration, listener_name: str) -> BrokerInfo | None:
    """The endpoint clients of ``listener_name`` reach the broker at (the first one when
    the broker does not register that listener)."""
    ep = reg.endpoint(listener_name) or (reg.endpoints[0] if reg.endpoints else None)
    if ep is None:
        return None
    endpoints = tuple((e.listener_name, e.host or "localhost", e.port) for e in reg.endpoints)
    return BrokerInfo(reg.broker_id, ep.host or "localhost", ep.port, reg.rack, endpoints)


class ZkMetadataCache:
    def __init__(
        self,
        store: KafkaZkStore,
        cluster_id: str,
        listener_name: str,
        on_change: Callable[[ClusterImage], None],
    ) -> None:
        self.store = store
        self.cluster_id = cluster_id
        self.listener_name = listener_name
        self.on_change = on_change
        self.registrations: dict[int, BrokerRegistration] = {}
        self.controller_id = NO_LEADER
        self.assignments: dict[str, TopicAssignment] = {}
        self.states: dict[TopicPartition, PartitionStateZnode] = {}
        self.configs: dict[str, dict[str, str]] = {}
        self.shutting_down: frozenset[int] = frozenset()
        self.image = ClusterImage(cluster_id, NO_LEADER, {}, {})
        self._subs: list[Subscription] = []
        self._topic_subs: dict[str, list[Subscription]] = {}
        self._state_subs: dict[TopicPartition, Subscription] = {}
        self._seen_config_changes: set[str] = set()
        self._rebuild_scheduled = False
        self._broker_refreshes = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.changed = asyncio.Event()  # set on every new image (waiters clear it)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Read everything once (the first image is complete when this returns), then
        keep it current with watches."""
        store = self.store
        self.registrations = await store.get_brokers()
        ctrl = await store.get_controller()
        self.controller_id = ctrl.broker_id if ctrl else NO_LEADER
        topics = await store.get_topics()
        self.assignments = await store.get_topic_assignments(topics)
        tps = [(t, p) for t, a in self.assignments.items() for p in a.partitions]
        self.states = await store.get_partition_states(tps)
        self.configs = await store.get_topic_configs(self.assignments)
        self._seen_config_changes = set(await self._config_change_names())
        self._rebuild()
        self._subs.append(store.watch_broker_ids(self._on_broker_ids))
        self._subs.append(store.watch_controller(self._on_controller))
        self._subs.append(store.watch_topics(self._on_topics))
        self._subs.append(store.watch_config_changes(self._on_config_changes))
        await store.client.ensure_path(CONTROLLED_SHUTDOWN_PATH)
        self._subs.append(
            store.client.watch_children(CONTROLLED_SHUTDOWN_PATH, self._on_shutdown_requests)
        )

    async def _config_change_names(self) -> list[str]:
        try:
            return await self.store.client.get_children(CONFIG_CHANGES_PATH)
        except ZkNoNodeError:
            return []

    def close(self) -> None:
        self._closed = True
        for sub in self._subs:
            sub.cancel()
        for subs in self._topic_subs.values():
            for sub in subs:
                sub.cancel()
        for sub in self._state_subs.values():
            sub.cancel()
        self._subs.clear()
        self._topic_subs.clear()
        self._state_subs.clear()
        for task in self._tasks:
            task.cancel()

    def _spawn(self, coro: object) -> None:
        task = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("Metadata refresh from ZooKeeper failed: %s", task.exception())

    # ------------------------------------------------------------------ watch handlers
    def _on_broker_ids(self, ids: list[int]) -> None:
        if self._closed:
            return
        self._spawn(self._refresh_brokers(ids))

    async def _refresh_brokers(self, ids: list[int]) -> None:
        """Re-read every registration (a restarted broker may have new endpoints); only
        the newest of overlapping refreshes is applied."""
        self._broker_refreshes += 1
        mine = self._broker_refreshes
        fresh = await self.store.get_brokers()
        if mine != self._broker_refreshes or self._closed:
            return
        self.registrations = fresh
        self._schedule_rebuild()

    def _on_shutdown_requests(self, children: list[str] | None) -> None:
        self.shutting_down = frozenset(int(c) for c in children or () if c.isdigit())
        self._schedule_rebuild()

    def _on_controller(self, znode: ControllerZnode | None) -> None:
        self.controller_id = znode.broker_id if znode else NO_LEADER
        self._schedule_rebuild()

    def _on_topics(self, topics: list[str]) -> None:
        if self._closed:
            return
        current = set(topics)
        for topic in list(self._topic_subs):
            if topic not in current:
                self._forget_topic(topic)
        for topic in current:
            if topic not in self._topic_subs:
                self._topic_subs[topic] = [
                    self.store.watch_topic_assignment(
                        topic, lambda a, t=topic: self._on_assignment(t, a)
                    )
                ]
                if topic not in self.configs:
                    self._spawn(self._refresh_config(topic))
        self._schedule_rebuild()

    def _forget_topic(self, topic: str) -> None:
        for sub in self._topic_subs.pop(topic, []):
            sub.cancel()
        self.assignments.pop(topic, None)
        self.configs.pop(topic, None)
        for tp in [tp for tp in self._state_subs if tp[0] == topic]:
            self._state_subs.pop(tp).cancel()
            self.states.pop(tp, None)
        for tp in [tp for tp in self.states if tp[0] == topic]:
            del self.states[tp]

    def _on_assignment(self, topic: str, assignment: TopicAssignment | None) -> None:
        if self._closed or topic not in self._topic_subs:
            return
        if assignment is None:
            self._forget_topic(topic)
            self._schedule_rebuild()
            return
        self.assignments[topic] = assignment
        for p in assignment.partitions:
            tp = (topic, p)
            if tp not in self._state_subs:
                self._state_subs[tp] = self.store.watch_partition_state(
                    topic, p, lambda s, tp=tp: self._on_state(tp, s)
                )
        self._schedule_rebuild()

    def _on_state(self, tp: TopicPartition, state: PartitionStateZnode | None) -> None:
        if self._closed or tp not in self._state_subs:
            return
        if state is None:
            self.states.pop(tp, None)
        else:
            self.states[tp] = state
        self._schedule_rebuild()

    def _on_config_changes(self, names: list[str]) -> None:
        if self._closed:
            return
        new = [n for n in names if n not in self._seen_config_changes]
        self._seen_config_changes = set(names)
        for name in new:
            self._spawn(self._apply_config_change(name))

    async def _apply_config_change(self, name: str) -> None:
        entity = await self.store.get_config_change(name)
        if entity is None or not entity.startswith("topics/"):
            return
        await self._refresh_config(entity.split("/", 1)[1])

    async def _refresh_config(self, topic: str) -> None:
        config = await self.store.get_topic_config(topic)
        if topic in self._topic_subs or topic in self.assignments:
            self.configs[topic] = config
            self._schedule_rebuild()

    # ------------------------------------------------------------------ images
    def _schedule_rebuild(self) -> None:
        if self._rebuild_scheduled or self._closed:
            return
        self._rebuild_scheduled = True
        asyncio.get_running_loop().call_soon(self._rebuild)

    def _rebuild(self) -> None:
        self._rebuild_scheduled = False
        brokers = {}
        for broker_id, reg in self.registrations.items():
            info = broker_info(reg, self.listener_name)
            if info is not None:
                brokers[broker_id] = info
        topics = {}
        for name, a in self.assignments.items():
            parts = []
            for p in range(len(a.partitions)):
                replicas = tuple(a.partitions.get(p, ()))
                s = self.states.get((name, p))
                if s is None:
                    parts.append(PartitionState(p, NO_LEADER, -1, replicas, (), -1))
                else:
                    parts.append(
                        PartitionState(
                            p, s.leader, s.leader_epoch, replicas, tuple(s.isr), s.zk_version
                        )
                    )
            topics[name] = TopicInfo(
                name, a.topic_id or ZERO_UUID, tuple(parts), dict(self.configs.get(name, {}))
            )
        self.image = ClusterImage(
            self.cluster_id,
            self.controller_id,
            brokers,
            topics,
            self.shutting_down & frozenset(brokers),
        )
        self.changed.set()
        self.on_change(self.image)

    async def wait_for(self, predicate: Callable[[ClusterImage], bool], timeout_s: float) -> bool:
        """Wait (bounded) until the image satisfies ``predicate``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not predicate(self.image):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except TimeoutError:
                return predicate(self.image)
        return True
