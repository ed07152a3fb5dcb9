"""ReplicaManager: the partitions this broker hosts, as leader or follower (Kafka's
ReplicaManager).

Handlers never touch logs directly for writes: they call ``append`` here, which checks
leadership and min.insync.replicas (acks=all), appends, and lets the Partition move the
high watermark. ``wait_for_commit`` is the delayed-produce purgatory: it completes when
the high watermark passes an append (the ISR has it) or fails with the leader's error.

On every metadata change ``apply_image`` makes each hosted partition leader or follower
(Kafka's ``becomeLeaderOrFollower``): a new leader starts tracking its followers; a
follower is handed to the fetcher manager, which truncates it by leader epoch and copies
the leader's log. The leader feeds follower fetches into ``record_follower_fetch``; ISR
shrinks run every half ``replica.lag.time.max.ms`` (``isr_maintenance``). ISR changes are
proposed through ``isr_writer`` (the metadata store's conditional write) and become real
only when the store confirms them.

A single node is the special case where every ISR is the leader alone, the ISR writer is
never called and an append is committed when it returns.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from pybroker.config.topic_config import TopicConfig
from pybroker.protocol.errors import ErrorCode, KafkaError, UnknownTopicOrPartitionError
from pybroker.replication.fetcher import ReplicaFetcherManager
from pybroker.replication.log_dir_events import OfflineReplicas
from pybroker.replication.metadata import ClusterImage, PartitionState
from pybroker.replication.partition import LeaderAndIsr, Partition, check_epoch
from pybroker.replication.replica_selector import ReplicaView, candidate_views
from pybroker.replication.replica_selector import preferred_read_replica as choose_read_replica
from pybroker.replication.topic_stats import BrokerTopicStats
from pybroker.storage.log import AppendInfo, Log, wall_ms
from pybroker.storage.log_manager import LogManager

log = logging.getLogger(__name__)

AppendListener = Callable[[str, int], None]
LeadershipListener = Callable[[str, int, bool], None]
TopicPartition = tuple[str, int]


class IsrWriter(Protocol):
    """The metadata store's conditional ISR update (Kafka ZK mode: the leader writes the
    partition state znode at the version it read). Returns the stored new state, or None
    when the write was refused (a newer state exists; the store's watch delivers it)."""

    def __call__(
        self, topic: str, partition: int, proposed: LeaderAndIsr
    ) -> Awaitable[LeaderAndIsr | None]: ...


def _leader_and_isr(state: PartitionState) -> LeaderAndIsr:
    return LeaderAndIsr(
        state.leader,
        state.leader_epoch,
        tuple(state.isr),
        tuple(state.replicas),
        state.version,
    )


class ReplicaManager:
    def __init__(
        self,
        node_id: int,
        log_manager: LogManager,
        topic_config_for: Callable[[str], TopicConfig],
        *,
        clock: Callable[[], int] = wall_ms,
        replica_lag_time_max_ms: int = 30_000,
        fetchers: ReplicaFetcherManager | None = None,
        isr_writer: IsrWriter | None = None,
    ) -> None:
        self.node_id = node_id
        self.log_manager = log_manager
        self.topic_config_for = topic_config_for
        self.clock = clock
        self.replica_lag_time_max_ms = replica_lag_time_max_ms
        self.fetchers = fetchers
        self.isr_writer = isr_writer
        self.image: ClusterImage | None = None
        self.partitions: dict[TopicPartition, Partition] = {}
        self._listeners: list[AppendListener] = []
        self._leadership_listeners: list[LeadershipListener] = []
        self._isr_tasks: set[asyncio.Task[None]] = set()
        # Partitions whose log dir failed (KAFKA_STORAGE_ERROR), see log_dir_events.
        self.offline = OfflineReplicas()
        # Messages/bytes per topic and ISR changes, read by the /metrics collectors.
        self.topic_stats = BrokerTopicStats()

    def add_append_listener(self, listener: AppendListener) -> None:
        """Called when a partition's readable data grows (append or HW move)."""
        self._listeners.append(listener)

    def add_leadership_listener(self, listener: LeadershipListener) -> None:
        """Called with (topic, partition, is_leader) when this broker gains or loses
        leadership of a partition (coordinators load and unload their state)."""
        self._leadership_listeners.append(listener)

    def _notify(self, topic: str, partition: int) -> None:
        for listener in self._listeners:
            listener(topic, partition)

    # ----------------------------------------------------------------- metadata
    def apply_image(self, image: ClusterImage) -> None:
        """Create logs for hosted partitions, make each leader or follower, drop logs of
        deleted topics (and, in a cluster, of replicas reassigned away) and push config
        changes."""
        old = self.image
        self.image = image
        now = self.clock()
        hosted: set[TopicPartition] = set()
        for info in image.topics.values():
            config = self.topic_config_for(info.name)
            previous = old.topics.get(info.name) if old else None
            for p in info.partitions:
                if self.node_id not in p.replicas:
                    continue
                tp = (info.name, p.partition)
                hosted.add(tp)
                if self.offline.blocks(tp, old is None, self.log_manager):
                    continue
                existing = self.log_manager.get_log(info.name, p.partition)
                if existing is not None and existing.topic_id != info.topic_id:
                    log.warning(
                        "Log %s-%d belongs to an older incarnation of the topic; deleting it",
                        info.name,
                        p.partition,
                    )
                    self._drop(tp)
                    self.log_manager.delete_log(info.name, p.partition)
                    existing = None
                if existing is not None and previous is None:
                    existing.update_config(config)  # opened at start-up, before any image
                lg = existing or self.log_manager.get_or_create_log(
                    info.name, p.partition, info.topic_id, config
                )
                self._become(tp, lg, _leader_and_isr(p), now)
            if previous is not None and previous.configs != info.configs:
                self.log_manager.update_config(info.name, config)
        for tp in [tp for tp in self.partitions if tp not in hosted]:
            self._drop(tp)
        for lg in list(self.log_manager.all_logs()):
            info = image.topics.get(lg.topic)
            if info is None or lg.partition >= len(info.partitions):
                log.info("Deleting log %s-%d: its topic is gone", lg.topic, lg.partition)
                self.log_manager.delete_log(lg.topic, lg.partition)
            elif self.isr_writer is not None and (lg.topic, lg.partition) not in hosted:
                # In a cluster: a replica reassigned away (Kafka's StopReplica with
                # deletePartition), also when this broker was down while it moved.
                replicas = info.partitions[lg.partition].replicas
                if replicas:
                    log.info(
                        "Deleting log %s-%d: this broker is no longer a replica (now %s)",
                        lg.topic,
                        lg.partition,
                        list(replicas),
                    )
                    self.log_manager.delete_log(lg.topic, lg.partition)

    def _become(self, tp: TopicPartition, lg: Log, state: LeaderAndIsr, now: int) -> None:
        part = self.partitions.get(tp)
        if part is None or part.log is not lg:
            part = Partition(tp[0], tp[1], self.node_id, lg)
            self.partitions[tp] = part
        was_leader = part.is_leader
        if part.state is not None and state.leader_epoch < part.leader_epoch:
            log.warning(
                "Ignoring state of %s-%d with stale leader epoch %d (current %d)",
                tp[0],
                tp[1],
                state.leader_epoch,
                part.leader_epoch,
            )
            return
        if state.leader == self.node_id:
            if self.fetchers is not None:
                self.fetchers.unfollow(tp)
            if part.make_leader(state, now):
                log.info(
                    "Leader of %s-%d at epoch %d, ISR %s, log end %d, high watermark %d",
                    tp[0],
                    tp[1],
                    state.leader_epoch,
                    list(state.isr),
                    lg.log_end_offset,
                    lg.high_watermark,
                )
            self._notify(*tp)
        else:
            changed = part.make_follower(state)
            if changed or (self.fetchers and self.fetchers.leader_of(tp) != state.leader):
                if self.fetchers is not None:
                    if state.leader >= 0:
                        self.fetchers.follow(part, state.leader)
                    else:
                        self.fetchers.unfollow(tp)
                if changed:
                    log.info(
                        "Follower of %s-%d: leader %d at epoch %d",
                        tp[0],
                        tp[1],
                        state.leader,
                        state.leader_epoch,
                    )
        if was_leader != part.is_leader:
            for listener in self._leadership_listeners:
                listener(tp[0], tp[1], part.is_leader)

    def _drop(self, tp: TopicPartition, code: ErrorCode = ErrorCode.not_leader_or_follower) -> bool:
        """This broker no longer hosts ``tp`` (deleted, reassigned away, or its log dir
        failed): stop fetching, fail produce waiters with ``code``, tell the coordinators
        that leadership is gone. False if it did not host it."""
        part = self.partitions.pop(tp, None)
        if part is None:
            return False
        if self.fetchers is not None:
            self.fetchers.unfollow(tp)
        was_leader = part.is_leader
        part.fail_waiters(code)
        if was_leader:
            for listener in self._leadership_listeners:
                listener(tp[0], tp[1], False)
        return True

    def take_offline(self, tps: Iterable[TopicPartition]) -> list[TopicPartition]:
        """Kafka's ReplicaManager.handleLogDirFailure for ``tps``: remembered as offline
        (KAFKA_STORAGE_ERROR from now on) and dropped. Returns the ones this changed."""
        changed = []
        for tp in tps:
            self.offline.local.add(tp)
            if self._drop(tp, ErrorCode.kafka_storage_error):
                changed.append(tp)
        return changed

    # ----------------------------------------------------------------- access
    def partition(self, topic: str, partition: int) -> Partition | None:
        return self.partitions.get((topic, partition))

    def leader_partition(self, topic: str, partition: int, leader_epoch: int = -1) -> Partition:
        """The Partition this broker leads, or the Kafka error why not."""
        part = self._hosted(topic, partition)
        part.check_leader(leader_epoch)
        return part

    def readable_partition(self, topic: str, partition: int, leader_epoch: int = -1) -> Partition:
        """A partition a consumer may read here: led, or followed (KIP-392: Fetch v11+
        consumers may read from followers, up to the follower's high watermark)."""
        part = self._hosted(topic, partition)
        if part.state is None:
            part.check_leader(leader_epoch)  # neither leader nor follower yet
        check_epoch(leader_epoch, part.leader_epoch)
        return part

    def _hosted(self, topic: str, partition: int) -> Partition:
        self.offline.check(topic, partition)
        part = self.partitions.get((topic, partition))
        if part is None:
            image = self.image
            if image is not None and image.partition(topic, partition) is not None:
                raise KafkaError(
                    "This broker is not a replica of this partition",
                    ErrorCode.not_leader_or_follower,
                )
            raise UnknownTopicOrPartitionError("This server does not host this topic-partition.")
        return part

    def preferred_read_replica(
        self,
        part: Partition,
        selector: str | None,
        client_rack: str | None,
        fetch_offset: int,
        rack_of: Callable[[int], str | None],
    ) -> int | None:
        """Where the leader sends a consumer of ``part`` to read (None: read here)."""
        if selector is None or not part.is_leader:
            return None
        now = self.clock()
        leader = ReplicaView(self.node_id, rack_of(self.node_id), part.log.log_end_offset, 0)
        followers = candidate_views(
            (
                (f.broker_id, f.log_start_offset, f.log_end_offset, f.last_caught_up_ms)
                for f in part.followers.values()
            ),
            part.isr,
            fetch_offset,
            now,
            rack_of,
        )
        return choose_read_replica(selector, client_rack, leader, followers)

    def leader_log(self, topic: str, partition: int) -> Log:
        """The local log of a partition this broker leads, or the Kafka error why not."""
        return self.leader_partition(topic, partition).log

    def append(
        self,
        topic: str,
        partition: int,
        payload: bytearray | memoryview,
        acks: int,
        *,
        client: bool = True,
        verified_txn: tuple[int, int] | None = None,
    ) -> tuple[Log, AppendInfo]:
        """Append as leader; returns (log, AppendInfo). Committed once the HW passes
        ``info.last_offset`` (see ``wait_for_commit``).

        ``client=False``: the broker's own append (coordinator records, transaction
        markers); ``verified_txn``: see Log.append_as_leader."""
        part = self.leader_partition(topic, partition)
        lg = part.log
        part.check_min_isr_for_append(acks, lg.config.min_insync_replicas)
        info: AppendInfo = lg.append_as_leader(
            payload, part.leader_epoch, client=client, verified_txn=verified_txn
        )
        part.maybe_increment_hw(self.clock(), self.replica_lag_time_max_ms)
        self._notify(topic, partition)
        self.topic_stats.record_append(topic, info.last_offset - info.base_offset + 1, len(payload))
        return lg, info

    async def wait_for_commit(
        self, required: Iterable[tuple[str, int, int]], timeout_s: float
    ) -> dict[TopicPartition, ErrorCode]:
        """Kafka's DelayedProduce: for each (topic, partition, offset after the append),
        NONE once the HW reaches it with the ISR at min.insync.replicas,
        NOT_ENOUGH_REPLICAS_AFTER_APPEND if the ISR shrank below it meanwhile,
        NOT_LEADER_OR_FOLLOWER if leadership moved, REQUEST_TIMED_OUT after ``timeout_s``."""
        futures: dict[TopicPartition, asyncio.Future[ErrorCode]] = {}
        results: dict[TopicPartition, ErrorCode] = {}
        for topic, index, offset in required:
            part = self.partitions.get((topic, index))
            if part is None:
                results[(topic, index)] = ErrorCode.not_leader_or_follower
            elif part.is_leader and part.log.high_watermark >= offset:
                # Already committed (always so for a sole-ISR leader): no future needed.
                results[(topic, index)] = self._isr_check(part)
            else:
                futures[(topic, index)] = part.wait_for_commit(offset)
        pending = [f for f in futures.values() if not f.done()]
        if pending:
            await asyncio.wait(pending, timeout=max(timeout_s, 0))
        for tp, fut in futures.items():
            if not fut.done():
                fut.cancel()
                results[tp] = ErrorCode.request_timed_out
                continue
            code = fut.result()
            part = self.partitions.get(tp)
            if code == ErrorCode.none and part is not None:
                code = self._isr_check(part)
            results[tp] = code
        return results

    @staticmethod
    def _isr_check(part: Partition) -> ErrorCode:
        """Committed, but did the ISR stay at min.insync.replicas? (DelayedProduce)"""
        if len(part.maximal_isr) < part.log.config.min_insync_replicas:
            return ErrorCode.not_enough_replicas_after_append
        return ErrorCode.none

    # ----------------------------------------------------------------- followers
    def record_follower_fetch(
        self, replica_id: int, topic: str, partition: int, fetch_offset: int, log_start: int
    ) -> None:
        """A follower fetched ``fetch_offset``: its LEO; may move the HW or grow the ISR."""
        part = self.partitions.get((topic, partition))
        if part is None or not part.is_leader:
            return
        now = self.clock()
        if part.update_follower_fetch(replica_id, fetch_offset, log_start, now):
            self._notify(topic, partition)
        image = self.image
        eligible = self.offline.isr_eligible(
            (topic, partition), image.isr_eligible if image else lambda _: True
        )
        expanded = part.isr_to_expand(eligible)
        if expanded is not None:
            self._propose_isr(part, expanded, "expand")

    def isr_maintenance(self) -> None:
        """Shrink the ISR of every led partition with followers lagging too long (Kafka's
        isr-expiration task, every replica.lag.time.max.ms / 2)."""
        now = self.clock()
        lag = self.replica_lag_time_max_ms
        for part in list(self.partitions.values()):
            if not part.is_leader:
                continue
            shrunk = part.isr_to_shrink(now, lag)
            if shrunk is not None:
                self._propose_isr(part, shrunk, "shrink")

    def _propose_isr(self, part: Partition, isr: tuple[int, ...], why: str) -> None:
        if self.isr_writer is None or part.state is None:
            return
        state = part.state
        proposed = LeaderAndIsr(
            state.leader, state.leader_epoch, isr, state.replicas, state.version
        )
        part.propose_isr(isr)
        log.info(
            "ISR %s of %s-%d at epoch %d: %s -> %s",
            why,
            part.topic,
            part.index,
            state.leader_epoch,
            list(state.isr),
            list(isr),
        )
        task = asyncio.get_running_loop().create_task(self._write_isr(part, proposed, why))
        self._isr_tasks.add(task)
        task.add_done_callback(self._isr_tasks.discard)

    async def _write_isr(self, part: Partition, proposed: LeaderAndIsr, why: str) -> None:
        assert self.isr_writer is not None
        try:
            stored = await self.isr_writer(part.topic, part.index, proposed)
        except Exception as exc:
            log.warning("ISR update of %s-%d failed: %s", part.topic, part.index, exc)
            stored = None
        if stored is not None:  # Kafka marks IsrShrinks/IsrExpands once the change is written
            if why == "shrink":
                self.topic_stats.isr_shrinks += 1
            else:
                self.topic_stats.isr_expands += 1
        if self.partitions.get((part.topic, part.index)) is not part:
            return
        if stored is None:
            part.isr_write_failed()
            return
        if part.is_leader and stored.leader_epoch == part.leader_epoch:
            part.update_state(stored)
            if part.maybe_increment_hw(self.clock(), self.replica_lag_time_max_ms):
                self._notify(part.topic, part.index)

    def led_partitions(self) -> list[Partition]:
        return [p for p in self.partitions.values() if p.is_leader]

    async def stop(self) -> None:
        for part in self.partitions.values():
            part.fail_waiters(ErrorCode.not_leader_or_follower)
        for task in list(self._isr_tasks):
            task.cancel()
        if self.fetchers is not None:
            await self.fetchers.stop()
