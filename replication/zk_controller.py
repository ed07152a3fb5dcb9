"""The cluster controller in ZooKeeper mode: Kafka's KafkaController, as far as pybroker
needs it.

Every broker runs one. The one that creates the ephemeral ``/controller`` (bumping
``/controller_epoch``) acts; the others wait for the znode to vanish and try again.
The active controller makes every partition decision, and writes each one as a
ZooKeeper multi-op that first checks the controller epoch's zk version and then sets the
partition state conditionally on the version it read: a deposed controller cannot
overwrite anything, and a decision based on a stale read is refused and retried from
the fresh state. Brokers learn decisions by watching the state znodes
(``zk_metadata``).

What it decides, from the live brokers (``/brokers/ids``) and the topics' assignments:
- a new partition (assignment without state): leader = first live replica, ISR = the live
  replicas (Kafka's NewPartition -> OnlinePartition);
- a partition whose leader died or is shutting down: a new leader from the live ISR in
  assignment order, leader epoch + 1 (``election``); with
  ``unclean.leader.election.enable`` an out-of-sync replica if no ISR member lives, logged
  as possible data loss; otherwise leader -1 and the last ISR member kept, so the
  partition stays offline until an in-sync replica returns;
- a dead or stopping follower leaves the ISR (the leader epoch stays: only leader
  changes bump it, as in KRaft; Kafka's ZooKeeper mode also bumped it here, which fences
  clients for no benefit);
- topics queued in ``/admin/delete_topics`` are deleted;
- controlled shutdown: a broker asks by creating ``/admin/controlled_shutdown/<id>``; its
  leaderships move to other ISR members and it leaves every ISR.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import replace

from pybroker.replication.election import controlled_shutdown_election, offline_election
from pybroker.replication.zk_client import (
    CreateOp,
    Subscription,
    ZkMultiError,
    ZkNodeExistsError,
    ZkNoNodeError,
)
from pybroker.replication.zk_data import (
    PartitionStateZnode,
    encode_partition_state,
    partition_state_path,
    topic_partition_path,
    topic_partitions_path,
)
from pybroker.replication.zk_metadata import CONTROLLED_SHUTDOWN_PATH, ZkMetadataCache
from pybroker.replication.zk_store import ControllerEpoch, ControllerMovedError, KafkaZkStore

log = logging.getLogger(__name__)

NO_LEADER = -1
RETRY_S = 0.5
TopicPartition = tuple[str, int]


def controlled_shutdown_path(broker_id: int) -> str:
    return f"{CONTROLLED_SHUTDOWN_PATH}/{broker_id}"


class ZkController:
    def __init__(
        self,
        broker_id: int,
        store: KafkaZkStore,
        cache: ZkMetadataCache,
        unclean_allowed: Callable[[str], bool],
    ) -> None:
        self.broker_id = broker_id
        self.store = store
        self.cache = cache
        self.unclean_allowed = unclean_allowed
        self.epoch: ControllerEpoch | None = None
        self._wake = asyncio.Event()
        self._want_election = True
        self._task: asyncio.Task[None] | None = None
        self._subs: list[Subscription] = []
        self._active_subs: list[Subscription] = []
        self._deletions: list[str] = []
        self._closed = False

    @property
    def is_active(self) -> bool:
        return self.epoch is not None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self._subs.append(self.store.watch_controller(self._on_controller_znode))
        self._task = asyncio.get_running_loop().create_task(self._run(), name="zk-controller")

    async def stop(self) -> None:
        """Stop acting; resign (delete /controller) if active so another broker takes over
        at once instead of after our session times out."""
        self._closed = True
        for sub in self._subs + self._active_subs:
            sub.cancel()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        epoch, self.epoch = self.epoch, None
        if epoch is not None:
            with contextlib.suppress(Exception):
                await self.store.resign_controller(epoch)
                log.info("Broker %d resigned as controller", self.broker_id)

    def poke(self) -> None:
        """Something changed (metadata, membership): reconcile soon."""
        self._wake.set()

    def _on_controller_znode(self, znode: object) -> None:
        if znode is None:
            self._want_election = True
            self._wake.set()
        elif getattr(znode, "broker_id", None) != self.broker_id and self.epoch is not None:
            log.info("Controller moved to broker %s", getattr(znode, "broker_id", "?"))
            self._resign_locally()

    def expire(self) -> None:
        """Our ZooKeeper session expired: whatever we were, run for election again."""
        self._resign_locally()
        self._want_election = True
        self._wake.set()

    def _resign_locally(self) -> None:
        self.epoch = None
        for sub in self._active_subs:
            sub.cancel()
        self._active_subs.clear()

    # ------------------------------------------------------------------ event loop
    async def _run(self) -> None:
        while not self._closed:
            await self._wake.wait()
            self._wake.clear()
            try:
                if self.epoch is None and self._want_election:
                    await self._elect()
                if self.epoch is not None:
                    await self._act()
            except ControllerMovedError as exc:
                log.info("Broker %d is no longer the controller: %s", self.broker_id, exc)
                self._resign_locally()
                self._want_election = True
                self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("Controller work failed (retrying): %r", exc)
                await asyncio.sleep(RETRY_S)
                self._wake.set()

    async def _elect(self) -> None:
        self._want_election = False
        epoch = await self.store.try_elect_controller(self.broker_id)
        if epoch is None:
            return
        self.epoch = epoch
        log.info("Broker %d became the controller at epoch %d", self.broker_id, epoch.epoch)
        store = self.store
        self._active_subs = [
            store.watch_topic_deletions(self._on_deletions),
            store.watch_isr_changes(self._on_isr_changes),
        ]

    def _on_deletions(self, topics: list[str]) -> None:
        self._deletions = list(topics)
        self._wake.set()

    def _on_isr_changes(self, sequence_numbers: list[str]) -> None:
        if sequence_numbers and self.epoch is not None:
            epoch = self.epoch
            # Brokers watch the state znodes themselves: the notifications are only
            # acknowledged (deleted), as Kafka's controller does after propagating them.
            asyncio.get_running_loop().create_task(self._ack_isr_changes(sequence_numbers, epoch))

    async def _ack_isr_changes(self, seqs: list[str], epoch: ControllerEpoch) -> None:
        with contextlib.suppress(Exception):
            await self.store.delete_isr_change_notifications(seqs, epoch)

    # ------------------------------------------------------------------ decisions
    async def _act(self) -> None:
        assert self.epoch is not None
        epoch = self.epoch
        for topic in list(self._deletions):
            log.info("Deleting topic %s", topic)
            await self.store.delete_topic(topic, epoch)
        self._deletions = []
        await self._forget_finished_shutdowns(epoch)
        creates, updates = self.decide()
        for tp, state in creates.items():
            await self._create_state(tp, state, epoch)
        if updates:
            result = await self.store.update_partition_states(updates, epoch)
            if result.stale or result.missing:
                log.debug("Stale partition states %s: waiting for fresh ones", result.stale)
                asyncio.get_running_loop().call_later(RETRY_S, self._wake.set)

    def decide(self) -> tuple[dict[TopicPartition, PartitionStateZnode], dict]:
        """(states to create, states to update) from the cached view: pure given the
        cache, so it is unit-testable and safe to re-run (writes are conditional)."""
        cache = self.cache
        live = set(cache.registrations)
        stopping = set(cache.shutting_down) & live
        eligible = live - stopping
        creates: dict[TopicPartition, PartitionStateZnode] = {}
        updates: dict[TopicPartition, PartitionStateZnode] = {}
        for topic, a in cache.assignments.items():
            for p, replicas in a.partitions.items():
                tp = (topic, p)
                s = cache.states.get(tp)
                if s is None:
                    alive = tuple(r for r in replicas if r in eligible)
                    if alive:
                        creates[tp] = PartitionStateZnode(alive[0], 0, alive, -1)
                    continue
                new = self._decide_one(tp, tuple(replicas), s, live, eligible, stopping)
                if new is not None and new != s:
                    updates[tp] = new
        return creates, updates

    def _decide_one(
        self,
        tp: TopicPartition,
        replicas: tuple[int, ...],
        s: PartitionStateZnode,
        live: set[int],
        eligible: set[int],
        stopping: set[int],
    ) -> PartitionStateZnode | None:
        topic, index = tp
        isr = tuple(s.isr)
        if s.leader >= 0 and s.leader in eligible:
            keep = tuple(r for r in isr if r == s.leader or r in eligible)
            if keep != isr:
                return replace(s, isr=keep)
            return None
        if s.leader >= 0 and s.leader in stopping:
            got = controlled_shutdown_election(replicas, isr, live, stopping)
            if got is None:
                return None  # no one else in sync: it stays leader until it stops
            leader, new_isr = got
            log.info(
                "Moving leadership of %s-%d from stopping broker %d to %d",
                topic,
                index,
                s.leader,
                leader,
            )
            return replace(s, leader=leader, leader_epoch=s.leader_epoch + 1, isr=new_isr)
        elected = offline_election(replicas, isr, eligible, self.unclean_allowed(topic))
        if elected is not None:
            leader, new_isr, unclean = elected
            if unclean:
                log.warning(
                    "Unclean leader election for %s-%d: broker %d was not in the ISR %s; "
                    "records acknowledged only by the ISR may be lost",
                    topic,
                    index,
                    leader,
                    list(isr),
                )
            return replace(s, leader=leader, leader_epoch=s.leader_epoch + 1, isr=new_isr)
        if s.leader == NO_LEADER:
            return None
        # No eligible leader: offline. Keep the last ISR member, so that it alone can come
        # back as a clean leader (Kafka's removeReplicasFromIsr keeps a sole member).
        kept = isr if len(isr) <= 1 else tuple(r for r in isr if r in eligible) or isr[-1:]
        log.warning(
            "No in-sync replica of %s-%d is alive (ISR %s): it is offline",
            topic,
            index,
            list(isr),
        )
        return replace(s, leader=NO_LEADER, leader_epoch=s.leader_epoch + 1, isr=kept)

    async def _create_state(
        self, tp: TopicPartition, state: PartitionStateZnode, epoch: ControllerEpoch
    ) -> None:
        s = replace(state, controller_epoch=epoch.epoch)
        topic, p = tp
        client = self.store.client
        with contextlib.suppress(ZkNodeExistsError):
            await client.create(topic_partitions_path(topic))
        ops = []
        if await client.exists(topic_partition_path(topic, p)) is None:
            ops.append(CreateOp(topic_partition_path(topic, p)))
        ops.append(CreateOp(partition_state_path(topic, p), encode_partition_state(s)))
        try:
            await self.store.controller_multi(ops, epoch)
            log.info("Partition %s-%d online: leader %d, ISR %s", topic, p, s.leader, list(s.isr))
        except ZkMultiError as e:
            if not isinstance(e.cause, ZkNodeExistsError | ZkNoNodeError):
                raise

    async def _forget_finished_shutdowns(self, epoch: ControllerEpoch) -> None:
        """A stopped broker's request is done once it is no longer registered."""
        live = set(self.cache.registrations)
        for broker_id in sorted(set(self.cache.shutting_down) - live):
            with contextlib.suppress(ZkNoNodeError):
                await self.store.client.delete(controlled_shutdown_path(broker_id))
