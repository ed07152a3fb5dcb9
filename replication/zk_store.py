"""The cluster's ZooKeeper operations, async: Kafka's KafkaZkClient (plus the pieces of
AdminZkClient, ReplicationUtils and ZkProducerIdManager the cluster needs).

Safety rules copied from Kafka's ZooKeeper mode:

- Every controller write is one ZooKeeper multi-op that first checks the zk version of
  ``/controller_epoch`` the controller got when it was elected; a deposed controller's
  write therefore fails as a whole and raises :class:`ControllerMovedError`.
- Partition state znodes change only by conditional writes on their zk version (Kafka's
  partitionEpoch): a write based on a stale read is refused (:class:`StaleZkVersionError`,
  or listed in :attr:`PartitionUpdateResult.stale`), never applied.
- A broker registers an ephemeral ``/brokers/ids/<id>``; after a session expiry it must
  register again and re-run the controller election (listen for
  ``SessionEvent(CONNECTED, new_session=True)`` on :attr:`KafkaZkStore.client`).

Watch callbacks run on the event loop and receive the *current* decoded value; they may
see the same value twice (after a reconnect) and must be idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from pybroker.replication import zk_data as zd
from pybroker.replication.election import ElectionResult
from pybroker.replication.producer_id_store import ProducerIdStoreError
from pybroker.replication.zk_client import (
    CheckOp,
    CreateOp,
    DeleteOp,
    SetDataOp,
    Subscription,
    ZkBadVersionError,
    ZkClient,
    ZkConnectionLossError,
    ZkConnectionTimeoutError,
    ZkMultiError,
    ZkNodeExistsError,
    ZkNoNodeError,
    ZkNotEmptyError,
    ZkOp,
    ZkStat,
)
from pybroker.replication.zk_data import (
    BrokerRegistration,
    ControllerZnode,
    PartitionStateZnode,
    ProducerIdBlock,
    TopicAssignment,
    TopicPartition,
)

log = logging.getLogger(__name__)

INITIAL_CONTROLLER_EPOCH = 0  # KafkaController.InitialControllerEpoch
INITIAL_CONTROLLER_EPOCH_ZK_VERSION = 0


class ControllerMovedError(Exception):
    """Kafka's ControllerMovedException: this broker's controller epoch is no longer current."""


class StaleZkVersionError(Exception):
    """A conditional partition-state write named an old zk version (ZooKeeper BADVERSION).

    ``current`` is the state now in ZooKeeper (None if the znode is gone): adopt it, or
    re-decide from it, and try again.
    """

    def __init__(
        self, tp: TopicPartition, expected_version: int, current: PartitionStateZnode | None
    ) -> None:
        found = current.zk_version if current else "no znode"
        super().__init__(f"partition state {tp}: expected zk version {expected_version}, {found}")
        self.tp = tp
        self.expected_version = expected_version
        self.current = current


class BrokerIdInUseError(Exception):
    """Another live session holds ``/brokers/ids/<id>`` and did not go away in time."""


class TopicExistsError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class ControllerEpoch:
    """What winning the election gives: the epoch and ``/controller_epoch``'s zk version."""

    epoch: int
    zk_version: int


@dataclass(frozen=True, slots=True)
class PartitionUpdateResult:
    """KafkaZkClient.UpdateLeaderAndIsrResult, split by outcome."""

    updated: dict[TopicPartition, PartitionStateZnode] = field(default_factory=dict)
    stale: list[TopicPartition] = field(default_factory=list)  # BADVERSION: re-read, retry
    missing: list[TopicPartition] = field(default_factory=list)  # no state znode


def _now_ms() -> int:
    return int(time.time() * 1000)


def _is_epoch_check_failure(e: ZkMultiError) -> bool:
    return e.index == 0 and isinstance(e.cause, ZkBadVersionError | ZkNoNodeError)


class KafkaZkStore:
    """Kafka's ZooKeeper layout and its operations over one :class:`ZkClient` session."""

    def __init__(self, client: ZkClient) -> None:
        self.client = client
        self._registered_session: int | None = None

    # ------------------------------------------------------------------ bootstrap

    async def create_top_level_paths(self) -> None:
        """KafkaZkClient.createTopLevelPaths: ZkData.PersistentZkPaths, null data."""
        await asyncio.gather(*(self.client.ensure_path(p) for p in zd.PERSISTENT_PATHS))

    async def get_cluster_id(self) -> str | None:
        got = await self.client.get_or_none(zd.CLUSTER_ID_PATH)
        return zd.decode_cluster_id(got[0]) if got else None

    async def get_or_create_cluster_id(self, proposed: str | None = None) -> str:
        """createOrGetClusterId: the first broker's proposal wins; later ones read it."""
        proposed = proposed or zd.new_cluster_id()
        await self.client.ensure_path(zd.CLUSTER_PATH)
        try:
            await self.client.create(zd.CLUSTER_ID_PATH, zd.encode_cluster_id(proposed))
            return proposed
        except ZkNodeExistsError:
            cluster_id = await self.get_cluster_id()
            if cluster_id is None:
                raise RuntimeError(
                    "Failed to get cluster id from Zookeeper. This can happen if /cluster/id "
                    "is deleted from Zookeeper."
                ) from None
            return cluster_id

    # ------------------------------------------------------------------ brokers

    async def register_broker(
        self, reg: BrokerRegistration, *, stale_timeout_s: float | None = None
    ) -> int:
        """Create the ephemeral ``/brokers/ids/<id>``; returns the broker epoch (its czxid).

        Kafka's CheckedEphemeral: create with null data and set the data in one multi. If
        the znode exists and our session owns it (a retry), that is success; if a previous
        session of ours owns it (ZOOKEEPER-2985) it is deleted and created again; if another
        session owns it (e.g. this broker's previous incarnation, not yet expired) we wait
        up to ``stale_timeout_s`` (default: twice the session timeout) for it to go away.

        ZooKeeper going away meanwhile (a restart) does not end the wait: a restarted server
        gives every session a fresh timeout, so the stale one expires that much later. A
        lost connection is retried, and the wait restarts once connected, within twice the
        wait in all; Kafka would give up after one connection timeout.
        """
        path = zd.broker_path(reg.broker_id)
        data = zd.encode_broker(replace(reg, timestamp_ms=_now_ms()))
        timeout = stale_timeout_s
        if timeout is None:
            timeout = 2 * self.client.session_timeout_ms / 1000
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        give_up = deadline + timeout
        while True:
            try:
                return await self._register_once(path, data, reg.broker_id, deadline)
            except (ZkConnectionLossError, ZkConnectionTimeoutError) as exc:
                if loop.time() >= give_up:
                    raise
                log.warning("ZooKeeper unavailable while registering %s (%s): retrying", path, exc)
                deadline = min(loop.time() + timeout, give_up)

    async def _register_once(self, path: str, data: bytes, broker_id: int, deadline: float) -> int:
        """One pass of register_broker until created, refused, or the connection is lost."""
        while True:
            try:
                results = await self.client.multi(
                    [CreateOp(path, None, ephemeral=True), SetDataOp(path, data, 0)]
                )
                stat: ZkStat = results[1]
                self._registered_session = self.client.session_id
                log.info("registered broker %d at %s, broker epoch %d", broker_id, path, stat.czxid)
                return stat.czxid
            except ZkMultiError as e:
                if not isinstance(e.cause, ZkNodeExistsError):
                    raise e.cause from e
            got = await self.client.get_or_none(path)
            if got is None:
                continue  # went away while we looked: create again
            owner = got[1].ephemeral_owner
            if owner == self.client.session_id:
                self._registered_session = owner
                return got[1].czxid
            if owner == self._registered_session:
                log.info("deleting %s left by our previous session 0x%x", path, owner)
                with contextlib.suppress(ZkNoNodeError):
                    await self.client.delete(path)
                continue
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise BrokerIdInUseError(
                    f"{path} is held by session 0x{owner:x}: broker id {broker_id} is in use"
                )
            log.info(
                "%s is held by session 0x%x; waiting up to %.1fs for it to expire",
                path,
                owner,
                remaining,
            )
            await self._wait_deleted(path, remaining)

    async def _wait_deleted(self, path: str, timeout_s: float) -> None:
        gone = asyncio.Event()
        stat = await self.client.exists(path, watch=lambda _ev: gone.set())
        if stat is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(gone.wait(), timeout_s)

    async def get_broker(self, broker_id: int) -> BrokerRegistration | None:
        got = await self.client.get_or_none(zd.broker_path(broker_id))
        if got is None:
            return None
        return replace(zd.decode_broker(broker_id, got[0]), epoch=got[1].czxid)

    async def get_broker_ids(self) -> list[int]:
        return sorted(int(c) for c in await self.client.get_children(zd.BROKER_IDS_PATH))

    async def get_brokers(self) -> dict[int, BrokerRegistration]:
        """getAllBrokerAndEpochsInCluster: live brokers with ``epoch`` = znode czxid."""
        ids = await self.get_broker_ids()
        regs = await asyncio.gather(*(self.get_broker(i) for i in ids))
        return {r.broker_id: r for r in regs if r is not None}

    def watch_broker_ids(self, callback: Callable[[list[int]], None]) -> Subscription:
        """BrokerChangeHandler: the live broker ids, now and on every membership change."""

        def on_children(children: list[str] | None) -> None:
            callback(sorted(int(c) for c in children or () if c.isdigit()))

        return self.client.watch_children(zd.BROKER_IDS_PATH, on_children)

    # ------------------------------------------------------------------ controller

    async def get_controller(self) -> ControllerZnode | None:
        got = await self.client.get_or_none(zd.CONTROLLER_PATH)
        return zd.decode_controller(got[0]) if got else None

    def watch_controller(self, callback: Callable[[ControllerZnode | None], None]) -> Subscription:
        """ControllerChangeHandler: the controller znode now and whenever it changes."""

        def on_data(data: bytes | None, stat: ZkStat | None) -> None:
            if data is None:
                callback(None)
                return
            try:
                callback(zd.decode_controller(data))
            except zd.ZkDataError:
                log.exception("ignoring unreadable %s", zd.CONTROLLER_PATH)

        return self.client.watch_data(zd.CONTROLLER_PATH, on_data)

    async def get_controller_epoch(self) -> ControllerEpoch | None:
        got = await self.client.get_or_none(zd.CONTROLLER_EPOCH_PATH)
        if got is None:
            return None
        return ControllerEpoch(zd.decode_controller_epoch(got[0]), got[1].version)

    async def _get_or_create_controller_epoch(self) -> ControllerEpoch:
        """maybeCreateControllerEpochZNode: "0" at zk version 0 when absent."""
        try:
            await self.client.create(
                zd.CONTROLLER_EPOCH_PATH, zd.encode_controller_epoch(INITIAL_CONTROLLER_EPOCH)
            )
            return ControllerEpoch(INITIAL_CONTROLLER_EPOCH, INITIAL_CONTROLLER_EPOCH_ZK_VERSION)
        except ZkNodeExistsError:
            got = await self.get_controller_epoch()
            if got is None:
                raise ControllerMovedError(f"{zd.CONTROLLER_EPOCH_PATH} vanished") from None
            return got

    async def try_elect_controller(self, broker_id: int) -> ControllerEpoch | None:
        """KafkaController.elect + registerControllerAndIncrementControllerEpoch.

        Returns the new (epoch, epoch zk version) if this broker became the controller,
        None if another broker is (or just became) the controller.
        """
        got = await self.client.get_or_none(zd.CONTROLLER_PATH)
        if got is not None:
            if got[1].ephemeral_owner == self.client.session_id:
                current = zd.decode_controller(got[0])
                epoch = await self.get_controller_epoch()
                if current.broker_id == broker_id and epoch is not None:
                    return epoch  # already ours (a retried election)
            return None
        cur = await self._get_or_create_controller_epoch()
        new_epoch = cur.epoch + 1
        data = zd.encode_controller(ControllerZnode(broker_id, _now_ms()))
        try:
            results = await self.client.multi(
                [
                    CreateOp(zd.CONTROLLER_PATH, data, ephemeral=True),
                    SetDataOp(
                        zd.CONTROLLER_EPOCH_PATH,
                        zd.encode_controller_epoch(new_epoch),
                        cur.zk_version,
                    ),
                ]
            )
        except ZkMultiError as e:
            if not isinstance(e.cause, ZkNodeExistsError | ZkBadVersionError):
                raise e.cause from e
            return await self._check_controller_and_epoch(broker_id, new_epoch)
        log.info("broker %d is the controller, epoch %d", broker_id, new_epoch)
        return ControllerEpoch(new_epoch, results[1].version)

    async def _check_controller_and_epoch(
        self, broker_id: int, new_epoch: int
    ) -> ControllerEpoch | None:
        """checkControllerAndEpoch: did our multi succeed before a connection loss?"""
        current = await self.get_controller()
        if current is None or current.broker_id != broker_id:
            return None
        epoch = await self.get_controller_epoch()
        if epoch is not None and epoch.epoch == new_epoch:
            return epoch
        return None

    async def resign_controller(self, epoch: ControllerEpoch) -> None:
        """deleteController: delete ``/controller`` only while our epoch is current."""
        await self.controller_multi([DeleteOp(zd.CONTROLLER_PATH)], epoch)

    async def controller_multi(self, ops: Iterable[ZkOp], epoch: ControllerEpoch) -> list[object]:
        """Run ``ops`` atomically behind the controller-epoch check (results exclude it)."""
        try:
            results = await self.client.multi(
                [CheckOp(zd.CONTROLLER_EPOCH_PATH, epoch.zk_version), *ops]
            )
        except ZkMultiError as e:
            if _is_epoch_check_failure(e):
                raise ControllerMovedError(
                    f"Controller epoch zkVersion check fails. Expected zkVersion = "
                    f"{epoch.zk_version}"
                ) from e
            raise
        return results[1:]

    # ------------------------------------------------------------------ topics (controller)

    async def create_topic(
        self,
        assignment: TopicAssignment,
        config: Mapping[str, str],
        states: Mapping[int, PartitionStateZnode],
        epoch: ControllerEpoch,
    ) -> dict[int, PartitionStateZnode]:
        """Topic config, assignment and every partition's state znode, in one multi-op.

        Raises TopicExistsError if ``/brokers/topics/<topic>`` exists. Returns the states
        as written (zk_version 0, controller_epoch = the controller's epoch).
        """
        topic = assignment.topic
        if set(states) != set(assignment.partitions):
            raise ValueError(
                f"{topic}: states for {sorted(states)} but assignment for "
                f"{sorted(assignment.partitions)}"
            )
        config_path = zd.topic_config_path(topic)
        config_data = zd.encode_entity_config(config)
        config_op: ZkOp
        if await self.client.exists(config_path) is not None:
            config_op = SetDataOp(config_path, config_data)
        else:
            config_op = CreateOp(config_path, config_data)
        ops: list[ZkOp] = [
            config_op,
            CreateOp(zd.topic_path(topic), zd.encode_topic_assignment(assignment)),
            CreateOp(zd.topic_partitions_path(topic)),
        ]
        written, state_ops = self._state_creates(topic, states, epoch)
        ops += state_ops
        try:
            await self.controller_multi(ops, epoch)
        except ZkMultiError as e:
            if e.index == 2 and isinstance(e.cause, ZkNodeExistsError):
                raise TopicExistsError(f"Topic '{topic}' already exists.") from e
            raise
        return written

    async def create_topic_assignment(
        self, assignment: TopicAssignment, config: Mapping[str, str]
    ) -> None:
        """AdminZkClient.createTopicWithAssignment: any broker writes the topic's config and
        assignment (one multi-op); the controller then creates the partition states.
        Raises TopicExistsError if ``/brokers/topics/<topic>`` exists."""
        topic = assignment.topic
        config_path = zd.topic_config_path(topic)
        config_data = zd.encode_entity_config(config)
        await self.client.ensure_path(f"{zd.CONFIG_PATH}/{zd.CONFIG_TYPE_TOPIC}")
        for _attempt in range(3):
            config_op: ZkOp
            if await self.client.exists(config_path) is not None:
                config_op = SetDataOp(config_path, config_data)
            else:
                config_op = CreateOp(config_path, config_data)
            try:
                await self.client.multi(
                    [
                        config_op,
                        CreateOp(zd.topic_path(topic), zd.encode_topic_assignment(assignment)),
                    ]
                )
                return
            except ZkMultiError as e:
                if e.index == 1 and isinstance(e.cause, ZkNodeExistsError):
                    raise TopicExistsError(f"Topic '{topic}' already exists.") from e
                if e.index == 0 and isinstance(e.cause, ZkNodeExistsError | ZkNoNodeError):
                    continue  # another broker creates the same topic: look again
                raise e.cause from e
        raise TopicExistsError(f"Topic '{topic}' already exists.")

    async def set_topic_assignment(self, assignment: TopicAssignment) -> int:
        """CreatePartitions or a reassignment from any broker: rewrite the assignment,
        conditional on the version it was read at (a concurrent change fails with
        ZkBadVersionError). Returns the new zk version."""
        stat = await self.client.set(
            zd.topic_path(assignment.topic),
            zd.encode_topic_assignment(assignment),
            assignment.zk_version,
        )
        return stat.version

    def _state_creates(
        self, topic: str, states: Mapping[int, PartitionStateZnode], epoch: ControllerEpoch
    ) -> tuple[dict[int, PartitionStateZnode], list[ZkOp]]:
        written: dict[int, PartitionStateZnode] = {}
        ops: list[ZkOp] = []
        for p in sorted(states):
            s = replace(states[p], controller_epoch=epoch.epoch, zk_version=0)
            written[p] = s
            ops.append(CreateOp(zd.topic_partition_path(topic, p)))
            ops.append(CreateOp(zd.partition_state_path(topic, p), zd.encode_partition_state(s)))
        return written, ops

    async def add_partitions(
        self,
        assignment: TopicAssignment,
        new_states: Mapping[int, PartitionStateZnode],
        epoch: ControllerEpoch,
    ) -> dict[int, PartitionStateZnode]:
        """CreatePartitions: rewrite the assignment (conditional on ``assignment.zk_version``
        when it is >= 0) and create the new partitions' state znodes, in one multi-op."""
        topic = assignment.topic
        ops: list[ZkOp] = [
            SetDataOp(
                zd.topic_path(topic), zd.encode_topic_assignment(assignment), assignment.zk_version
            )
        ]
        written, state_ops = self._state_creates(topic, new_states, epoch)
        await self.controller_multi(ops + state_ops, epoch)
        return written

    async def update_partition_states(
        self,
        states: Mapping[TopicPartition, PartitionStateZnode],
        epoch: ControllerEpoch,
    ) -> PartitionUpdateResult:
        """updateLeaderAndIsr: one (epoch check + conditional set) multi per partition.

        Each state's ``zk_version`` is the version it was read at. The controller's epoch is
        written into every state. Raises ControllerMovedError if any write found a newer
        controller (no write of this controller can have succeeded after that).
        """
        tps = list(states)

        async def one(tp: TopicPartition) -> object:
            s = replace(states[tp], controller_epoch=epoch.epoch)
            op = SetDataOp(zd.partition_state_path(*tp), zd.encode_partition_state(s), s.zk_version)
            try:
                (stat,) = await self.controller_multi([op], epoch)
            except ZkMultiError as e:
                return e
            assert isinstance(stat, ZkStat)
            return replace(s, zk_version=stat.version)

        outcomes = await asyncio.gather(*(one(tp) for tp in tps), return_exceptions=True)
        result = PartitionUpdateResult()
        for out in outcomes:
            if isinstance(out, ControllerMovedError):
                raise out
        for tp, out in zip(tps, outcomes, strict=True):
            if isinstance(out, PartitionStateZnode):
                result.updated[tp] = out
            elif isinstance(out, ZkMultiError) and isinstance(out.cause, ZkBadVersionError):
                result.stale.append(tp)
            elif isinstance(out, ZkMultiError) and isinstance(out.cause, ZkNoNodeError):
                result.missing.append(tp)
            else:
                assert isinstance(out, BaseException)
                raise out
        return result

    async def delete_topic(self, topic: str, epoch: ControllerEpoch) -> None:
        """TopicDeletionManager.completeDeleteTopic: the topic's znodes, its config and its
        deletion marker, removed in one multi-op behind the epoch check."""
        for _attempt in range(5):
            ops: list[ZkOp] = [DeleteOp(p) for p in await self._subtree(zd.topic_path(topic))]
            for path in (zd.topic_config_path(topic), zd.delete_topic_path(topic)):
                if await self.client.exists(path) is not None:
                    ops.append(DeleteOp(path))
            if not ops:
                return
            try:
                await self.controller_multi(ops, epoch)
                return
            except ZkMultiError as e:
                if not isinstance(e.cause, ZkNoNodeError | ZkNotEmptyError):
                    raise
                log.info("topic %s changed while deleting it; retrying", topic)
        raise RuntimeError(f"could not delete topic {topic}: its znodes keep changing")

    async def _subtree(self, path: str) -> list[str]:
        """Paths under and including ``path``, children before parents; [] if absent."""
        try:
            children = await self.client.get_children(path)
        except ZkNoNodeError:
            return []
        subs = await asyncio.gather(*(self._subtree(f"{path}/{c}") for c in children))
        return [p for sub in subs for p in sub] + [path]

    # ------------------------------------------------------------------ topics (anyone)

    async def mark_topic_for_deletion(self, topic: str) -> None:
        """createDeleteTopicPath: ``/admin/delete_topics/<topic>`` (the controller acts on it)."""
        with contextlib.suppress(ZkNodeExistsError):
            await self.client.create(zd.delete_topic_path(topic))

    async def get_topic_deletions(self) -> list[str]:
        return await self.client.get_children(zd.DELETE_TOPICS_PATH)

    def watch_topic_deletions(self, callback: Callable[[list[str]], None]) -> Subscription:
        """TopicDeletionHandler: topics queued for deletion."""
        return self.client.watch_children(zd.DELETE_TOPICS_PATH, lambda c: callback(c or []))

    async def get_topics(self) -> list[str]:
        return await self.client.get_children(zd.TOPICS_PATH)

    def watch_topics(self, callback: Callable[[list[str]], None]) -> Subscription:
        """TopicChangeHandler: all topic names, now and whenever one is added or removed."""
        return self.client.watch_children(zd.TOPICS_PATH, lambda c: callback(c or []))

    async def get_topic_assignment(self, topic: str) -> TopicAssignment | None:
        got = await self.client.get_or_none(zd.topic_path(topic))
        if got is None:
            return None
        return zd.decode_topic_assignment(topic, got[0], got[1].version)

    async def get_topic_assignments(self, topics: Iterable[str]) -> dict[str, TopicAssignment]:
        topics = list(topics)
        got = await asyncio.gather(*(self.get_topic_assignment(t) for t in topics))
        return {t: a for t, a in zip(topics, got, strict=True) if a is not None}

    def watch_topic_assignment(
        self, topic: str, callback: Callable[[TopicAssignment | None], None]
    ) -> Subscription:
        """PartitionModificationsHandler: the topic's assignment whenever it changes."""

        def on_data(data: bytes | None, stat: ZkStat | None) -> None:
            if data is None or stat is None:
                callback(None)
                return
            try:
                callback(zd.decode_topic_assignment(topic, data, stat.version))
            except zd.ZkDataError:
                log.exception("ignoring unreadable assignment of %s", topic)

        return self.client.watch_data(zd.topic_path(topic), on_data)

    async def get_partition_state(self, topic: str, partition: int) -> PartitionStateZnode | None:
        got = await self.client.get_or_none(zd.partition_state_path(topic, partition))
        if got is None:
            return None
        return zd.decode_partition_state(topic, partition, got[0], got[1].version)

    async def get_partition_states(
        self, tps: Iterable[TopicPartition]
    ) -> dict[TopicPartition, PartitionStateZnode]:
        tps = list(tps)
        got = await asyncio.gather(*(self.get_partition_state(t, p) for t, p in tps))
        return {tp: s for tp, s in zip(tps, got, strict=True) if s is not None}

    def watch_partition_state(
        self, topic: str, partition: int, callback: Callable[[PartitionStateZnode | None], None]
    ) -> Subscription:
        """The partition's leader/ISR/epochs, now and after every write to its state znode."""

        def on_data(data: bytes | None, stat: ZkStat | None) -> None:
            if data is None or stat is None:
                callback(None)
                return
            try:
                callback(zd.decode_partition_state(topic, partition, data, stat.version))
            except zd.ZkDataError:
                log.exception("ignoring unreadable state of %s-%d", topic, partition)

        return self.client.watch_data(zd.partition_state_path(topic, partition), on_data)

    # ------------------------------------------------------------------ topic configs

    async def get_topic_config(self, topic: str) -> dict[str, str]:
        """getEntityConfigs(topics, t): the overrides; {} when there are none."""
        path = zd.topic_config_path(topic)
        got = await self.client.get_or_none(path)
        return zd.decode_entity_config(got[0], path) if got else {}

    async def get_topic_configs(self, topics: Iterable[str]) -> dict[str, dict[str, str]]:
        topics = list(topics)
        got = await asyncio.gather(*(self.get_topic_config(t) for t in topics))
        return dict(zip(topics, got, strict=True))

    async def change_topic_config(self, topic: str, config: Mapping[str, str]) -> str:
        """AdminZkClient.changeTopicConfig: set (or create) the overrides, then a
        ``/config/changes/config_change_<seq>`` notification; returns its path."""
        path = zd.topic_config_path(topic)
        data = zd.encode_entity_config(config)
        try:
            await self.client.set(path, data)
        except ZkNoNodeError:
            await self.client.ensure_path(f"{zd.CONFIG_PATH}/{zd.CONFIG_TYPE_TOPIC}")
            try:
                await self.client.create(path, data)
            except ZkNodeExistsError:
                await self.client.set(path, data)
        return await self.client.create(
            zd.config_change_path(),
            zd.encode_config_change(f"{zd.CONFIG_TYPE_TOPIC}/{topic}"),
            sequential=True,
        )

    async def get_config_change(self, name: str) -> str | None:
        """The entity path (e.g. "topics/foo") a notification names; None if it is gone."""
        got = await self.client.get_or_none(f"{zd.CONFIG_CHANGES_PATH}/{name}")
        return zd.decode_config_change(got[0]) if got else None

    def watch_config_changes(self, callback: Callable[[list[str]], None]) -> Subscription:
        """ZkNodeChangeNotificationListener: notification names (config_change_<seq>)."""
        return self.client.watch_children(zd.CONFIG_CHANGES_PATH, lambda c: callback(c or []))

    # ------------------------------------------------------------------ leader ISR changes

    async def update_leader_and_isr(
        self, topic: str, partition: int, new_state: PartitionStateZnode
    ) -> PartitionStateZnode:
        """ReplicationUtils.updateLeaderAndIsr: a leader's own ISR change (ZooKeeper mode).

        Conditional on ``new_state.zk_version``. On BADVERSION the znode is read back: if it
        already holds exactly ``new_state`` (our write went through before a connection
        loss: checkLeaderAndIsrZkData) that is success; otherwise StaleZkVersionError.
        Returns the state with its new zk version. Follow with :meth:`propagate_isr_changes`.
        """
        path = zd.partition_state_path(topic, partition)
        data = zd.encode_partition_state(new_state)
        try:
            stat = await self.client.set(path, data, new_state.zk_version)
            return replace(new_state, zk_version=stat.version)
        except (ZkBadVersionError, ZkNoNodeError):
            current = await self.get_partition_state(topic, partition)
        if current is not None and replace(current, zk_version=-1) == replace(
            new_state, zk_version=-1
        ):
            return current
        raise StaleZkVersionError((topic, partition), new_state.zk_version, current)

    async def update_isr_and_notify(
        self, topic: str, partition: int, new_state: PartitionStateZnode
    ) -> PartitionStateZnode:
        """A leader's ISR change, then the notification that tells the controller of it
        (Kafka batches notifications; one per change is simpler and equally correct)."""
        written = await self.update_leader_and_isr(topic, partition, new_state)
        await self.propagate_isr_changes([(topic, partition)])
        return written

    async def propagate_isr_changes(self, tps: Iterable[TopicPartition]) -> str:
        """propagateIsrChanges: a sequential ``/isr_change_notification/isr_change_<seq>``."""
        return await self.client.create(
            zd.isr_change_path(), zd.encode_isr_change(tps), sequential=True
        )

    async def get_isr_change_notifications(self) -> list[str]:
        """getAllIsrChangeNotifications: the sequence numbers, oldest first."""
        names = await self.client.get_children(zd.ISR_CHANGE_PATH)
        return sorted(zd.sequence_number(n, zd.ISR_CHANGE_PREFIX) for n in names)

    async def get_partitions_from_isr_changes(
        self, sequence_numbers: Iterable[str]
    ) -> set[TopicPartition]:
        """getPartitionsFromIsrChangeNotifications (notifications already gone are skipped)."""
        got = await asyncio.gather(
            *(self.client.get_or_none(zd.isr_change_path(s)) for s in sequence_numbers)
        )
        result: set[TopicPartition] = set()
        for g in got:
            if g is not None:
                result |= zd.decode_isr_change(g[0])
        return result

    async def delete_isr_change_notifications(
        self, sequence_numbers: Iterable[str], epoch: ControllerEpoch
    ) -> None:
        """deleteIsrChangeNotifications, each behind the controller-epoch check."""

        async def one(seq: str) -> None:
            try:
                await self.controller_multi([DeleteOp(zd.isr_change_path(seq))], epoch)
            except ZkMultiError as e:
                if not isinstance(e.cause, ZkNoNodeError):
                    raise

        await asyncio.gather(*(one(s) for s in sequence_numbers))

    def watch_isr_changes(self, callback: Callable[[list[str]], None]) -> Subscription:
        """IsrChangeNotificationHandler: pending notification sequence numbers."""

        def on_children(children: list[str] | None) -> None:
            callback(sorted(zd.sequence_number(c, zd.ISR_CHANGE_PREFIX) for c in children or ()))

        return self.client.watch_children(zd.ISR_CHANGE_PATH, on_children)

    # ------------------------------------------------------------------ producer ids

    async def allocate_producer_id_block(
        self, broker_id: int, block_size: int = zd.PRODUCER_ID_BLOCK_SIZE, max_attempts: int = 100
    ) -> ProducerIdBlock:
        """ZkProducerIdManager.getNewProducerIdBlock: read the latest block, write the next
        one conditionally on the znode version, retry when another broker won the race."""
        path = zd.PRODUCER_ID_BLOCK_PATH
        for _attempt in range(max_attempts):
            got = await self.client.get_or_none(path)
            if got is None:
                start = 0
            elif not got[0]:
                start = 0  # created empty by createTopLevelPaths
            else:
                current = zd.decode_producer_id_block(got[0])
                if current.last_producer_id > zd._LONG_MAX - block_size:
                    raise ProducerIdStoreError("Have exhausted all producerIds.")
                start = current.next_block_first_id
            block = ProducerIdBlock(broker_id, start, block_size)
            data = zd.encode_producer_id_block(block)
            try:
                if got is None:
                    await self.client.create(path, data)
                else:
                    await self.client.set(path, data, got[1].version)
                log.info("acquired producer id block %s", block)
                return block
            except (ZkBadVersionError, ZkNodeExistsError, ZkNoNodeError):
                await asyncio.sleep(random.uniform(0, 0.01))
        raise RuntimeError(f"could not allocate a producer id block in {max_attempts} attempts")

    # ------------------------------------------------------------------ reassignments

    async def complete_reassignment(
        self,
        assignment: TopicAssignment,
        states: Mapping[int, PartitionStateZnode],
        epoch: ControllerEpoch,
    ) -> bool:
        """The controller's last reassignment step for some partitions of one topic, in one
        multi-op: their new states (conditional on the versions read) and the topic
        znode (conditional on ``assignment.zk_version``). False if anything changed
        meanwhile (nothing written; decide again from the fresh state)."""
        topic = assignment.topic
        ops: list[ZkOp] = [
            SetDataOp(
                zd.topic_path(topic), zd.encode_topic_assignment(assignment), assignment.zk_version
            )
        ]
        for p, state in sorted(states.items()):
            s = replace(state, controller_epoch=epoch.epoch)
            ops.append(
                SetDataOp(
                    zd.partition_state_path(topic, p), zd.encode_partition_state(s), s.zk_version
                )
            )
        try:
            await self.controller_multi(ops, epoch)
        except ZkMultiError as e:
            if isinstance(e.cause, ZkBadVersionError | ZkNoNodeError):
                return False
            raise
        return True

    def watch_legacy_reassignments(
        self, callback: Callable[[dict[TopicPartition, tuple[int, ...]] | None, int], None]
    ) -> Subscription:
        """ReassignPartitionsZNode's handler: Kafka's pre-KIP-455 way to ask for moves
        (the ``/admin/reassign_partitions`` znode, written by tools). ``callback(moves,
        zk version)``; None when the znode is absent."""

        def on_data(data: bytes | None, stat: ZkStat | None) -> None:
            if data is None or stat is None:
                callback(None, -1)
                return
            try:
                callback(decode_reassignments(data), stat.version)
            except (ValueError, KeyError, TypeError):
                log.warning("ignoring unreadable %s", REASSIGN_PARTITIONS_PATH)
                callback({}, stat.version)

        return self.client.watch_data(REASSIGN_PARTITIONS_PATH, on_data)

    async def update_legacy_reassignments(
        self, moves: Mapping[TopicPartition, Iterable[int]], version: int
    ) -> None:
        """Rewrite ``/admin/reassign_partitions`` (deleted when ``moves`` is empty),
        conditional on ``version``; a concurrent change wins (the watch re-delivers)."""
        path = REASSIGN_PARTITIONS_PATH
        try:
            if moves:
                await self.client.set(path, encode_reassignments(moves), version)
            else:
                await self.client.delete(path, version)
        except (ZkBadVersionError, ZkNoNodeError):
            pass

    async def forget_legacy_reassignment(self, tp: TopicPartition) -> None:
        """maybeRemoveFromZkReassignment: an API reassignment of ``tp`` takes precedence
        over one asked for in ``/admin/reassign_partitions``."""
        for _attempt in range(5):
            got = await self.client.get_or_none(REASSIGN_PARTITIONS_PATH)
            if got is None or not got[0]:
                return
            try:
                moves = decode_reassignments(got[0])
            except (ValueError, KeyError, TypeError):
                return
            if tp not in moves:
                return
            del moves[tp]
            try:
                if moves:
                    await self.client.set(
                        REASSIGN_PARTITIONS_PATH, encode_reassignments(moves), got[1].version
                    )
                else:
                    await self.client.delete(REASSIGN_PARTITIONS_PATH, got[1].version)
                return
            except (ZkBadVersionError, ZkNoNodeError):
                continue

    async def start_reassignment(self, assignment: TopicAssignment, epoch: ControllerEpoch) -> bool:
        """The controller writes a reassignment's first step (conditional on the version
        read); False if the topic changed meanwhile."""
        op = SetDataOp(
            zd.topic_path(assignment.topic),
            zd.encode_topic_assignment(assignment),
            assignment.zk_version,
        )
        try:
            await self.controller_multi([op], epoch)
        except ZkMultiError as e:
            if isinstance(e.cause, ZkBadVersionError | ZkNoNodeError):
                return False
            raise
        return True

    # ------------------------------------------------------------------ elect leaders

    async def create_election_request(
        self, election_type: int, partitions: Iterable[TopicPartition] | None
    ) -> str:
        """An ElectLeaders request for the controller: a sequential
        ``/admin/elect_leaders/request_<seq>`` (pybroker's counterpart of Kafka's
        ``/admin/preferred_replica_election``, which covers both election types); the
        controller writes the results into it. Returns its path."""
        await self.client.ensure_path(ELECT_LEADERS_PATH)
        return await self.client.create(
            f"{ELECT_LEADERS_PATH}/{ELECT_LEADERS_PREFIX}",
            encode_election_request(ElectionRequest(election_type, partitions)),
            ephemeral=True,  # gone with the asking broker, if it dies before reading it
            sequential=True,
        )

    async def get_election_request(self, name: str) -> tuple[ElectionRequest, int] | None:
        got = await self.client.get_or_none(f"{ELECT_LEADERS_PATH}/{name}")
        if got is None or not got[0]:
            return None
        return decode_election_request(got[0]), got[1].version

    async def answer_election_request(
        self, name: str, request: ElectionRequest, version: int, epoch: ControllerEpoch
    ) -> None:
        """Write the results into the request (behind the controller-epoch check)."""
        op = SetDataOp(f"{ELECT_LEADERS_PATH}/{name}", encode_election_request(request), version)
        try:
            await self.controller_multi([op], epoch)
        except ZkMultiError as e:
            if not isinstance(e.cause, ZkNoNodeError | ZkBadVersionError):
                raise

    def watch_election_requests(self, callback: Callable[[list[str]], None]) -> Subscription:
        return self.client.watch_children(ELECT_LEADERS_PATH, lambda c: callback(c or []))


ELECT_LEADERS_PATH = "/admin/elect_leaders"
ELECT_LEADERS_PREFIX = "request_"


@dataclass(frozen=True, slots=True)
class ElectionRequest:
    """``election_type`` 0 (PREFERRED) or 1 (UNCLEAN); ``partitions`` None = all.
    ``results`` is None until the controller has answered."""

    election_type: int
    partitions: Iterable[TopicPartition] | None
    results: tuple[ElectionResult, ...] | None = None


def encode_election_request(r: ElectionRequest) -> bytes:
    obj: dict[str, object] = {
        "version": 1,
        "election_type": r.election_type,
        "partitions": None
        if r.partitions is None
        else [{"topic": t, "partition": p} for t, p in r.partitions],
    }
    if r.results is not None:
        obj["results"] = [
            {
                "topic": x.topic,
                "partition": x.partition,
                "error_code": int(x.error_code),
                "error_message": x.error_message,
            }
            for x in r.results
        ]
    return json.dumps(obj, separators=(",", ":")).encode()


def decode_election_request(data: bytes) -> ElectionRequest:
    obj = json.loads(data)
    raw = obj.get("partitions")
    partitions = None if raw is None else tuple((str(x["topic"]), int(x["partition"])) for x in raw)
    results = obj.get("results")
    return ElectionRequest(
        int(obj["election_type"]),
        partitions,
        None
        if results is None
        else tuple(
            ElectionResult(
                str(x["topic"]), int(x["partition"]), int(x["error_code"]), x.get("error_message")
            )
            for x in results
        ),
    )


# ---------------------------------------------------------------------- legacy reassignments

REASSIGN_PARTITIONS_PATH = "/admin/reassign_partitions"


def encode_reassignments(reassignments: Mapping[TopicPartition, Iterable[int]]) -> bytes:
    """ReassignPartitionsZNode: {"version":1,"partitions":[{topic, partition, replicas}]}."""
    return json.dumps(
        {
            "version": 1,
            "partitions": [
                {"topic": t, "partition": p, "replicas": list(r)}
                for (t, p), r in sorted(reassignments.items())
            ],
        },
        separators=(",", ":"),
    ).encode()


def decode_reassignments(data: bytes) -> dict[TopicPartition, tuple[int, ...]]:
    obj = json.loads(data)
    return {
        (str(x["topic"]), int(x["partition"])): tuple(int(r) for r in x["replicas"])
        for x in obj.get("partitions", ())
    }
