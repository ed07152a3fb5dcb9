"""Replicas on failed log dirs: which are offline, and making them known to the controller.

Kafka (ZooKeeper mode) has the broker write ``/log_dir_event_notification``; the
controller answers with LeaderAndIsr, learns the offline replicas from the
KAFKA_STORAGE_ERROR in the response, elects other leaders and shrinks the ISRs, and keeps
those replicas out until the broker registers again. pybroker has no LeaderAndIsr, so
the broker publishes the replicas themselves, in an **ephemeral** znode of pybroker's own:

    /pybroker/offline_replicas/<broker id>
        {"version": 1, "broker": 2, "log_dirs": ["/data/b"],
         "partitions": [{"topic": "t", "partition": 0}, ...]}

rewritten whenever another dir fails. Every broker watches the parent and each child:
the controller treats a listed replica as ineligible for leadership and the ISR of that
partition only (``ZkController.offline_replicas``), and leaders never add it back to an
ISR. The znode lives as long as the broker's session: a restart (with working dirs)
clears it, which is when Kafka too lets the replicas back. After a session expiry the
broker writes it again.

Locally, ``OfflineReplicas`` is Kafka's ``HostedPartition.Offline``: such a partition has
no Partition object and every request for it is answered KAFKA_STORAGE_ERROR.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterable

from pybroker.protocol.errors import KafkaStorageError
from pybroker.replication.zk_client import (
    SessionEvent,
    SessionState,
    Subscription,
    ZkClient,
    ZkNodeExistsError,
    ZkStat,
)
from pybroker.storage.log_manager import LogManager

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]
OFFLINE_REPLICAS_PATH = "/pybroker/offline_replicas"


class OfflineReplicas:
    """This broker's partitions whose log dir failed, and other brokers' such replicas."""

    def __init__(self) -> None:
        self.local: set[TopicPartition] = set()
        # Replicas other brokers published as offline: tp -> broker ids.
        self.remote: dict[TopicPartition, frozenset[int]] = {}

    def __contains__(self, tp: object) -> bool:
        return tp in self.local

    def check(self, topic: str, partition: int) -> None:
        if (topic, partition) in self.local:
            raise KafkaStorageError(f"Partition {topic}-{partition} is offline (log dir failed)")

    def blocks(self, tp: TopicPartition, first_image: bool, log_manager: LogManager) -> bool:
        """Whether ``tp`` must stay offline instead of getting a log. At the first image
        after start-up a hosted partition without a log while a dir is offline may have
        had its log there: Kafka refuses to create it (``getOrCreateLog`` with
        ``isNew=false``), and so do we; partitions created later are new."""
        if tp in self.local:
            return True
        if first_image and log_manager.offline_dirs and log_manager.get_log(*tp) is None:
            log.warning(
                "Partition %s-%d has no log and log dirs %s are offline: it is offline",
                tp[0],
                tp[1],
                log_manager.offline_dirs,
            )
            self.local.add(tp)
            return True
        return False

    def replicas_offline(self, tp: TopicPartition, local_id: int) -> frozenset[int]:
        """Every broker whose replica of ``tp`` is on a failed dir (Metadata's
        offline_replicas, as Kafka's controller tells brokers of replicasOnOfflineDirs)."""
        found = self.remote.get(tp, frozenset())
        return found | {local_id} if tp in self.local else found

    def isr_eligible(
        self, tp: TopicPartition, base: Callable[[int], bool]
    ) -> Callable[[int], bool]:
        offline = self.remote.get(tp)
        if not offline:
            return base
        return lambda r: r not in offline and base(r)


def encode_offline(broker_id: int, dirs: list[str], tps: Iterable[TopicPartition]) -> bytes:
    return json.dumps(
        {
            "version": 1,
            "broker": broker_id,
            "log_dirs": sorted(dirs),
            "partitions": [{"topic": t, "partition": p} for t, p in sorted(tps)],
        }
    ).encode()


def decode_offline(data: bytes) -> tuple[int, list[TopicPartition]]:
    doc = json.loads(data)
    return int(doc["broker"]), [(e["topic"], int(e["partition"])) for e in doc["partitions"]]


class OfflineReplicaRegistry:
    """Publishes this broker's offline replicas and watches every broker's (ZooKeeper)."""

    def __init__(
        self,
        client: ZkClient,
        broker_id: int,
        on_change: Callable[[dict[TopicPartition, frozenset[int]]], None],
    ) -> None:
        self.client = client
        self.broker_id = broker_id
        self.on_change = on_change
        self._mine: bytes | None = None
        self._by_broker: dict[str, list[TopicPartition]] = {}
        self._subs: dict[str, Subscription] = {}
        self._children: Subscription | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def path(self) -> str:
        return f"{OFFLINE_REPLICAS_PATH}/{self.broker_id}"

    async def start(self) -> None:
        await self.client.ensure_path(OFFLINE_REPLICAS_PATH)
        self._children = self.client.watch_children(OFFLINE_REPLICAS_PATH, self._on_children)
        self.client.add_session_listener(self._on_session)

    def close(self) -> None:
        for sub in [self._children, *self._subs.values()]:
            if sub is not None:
                sub.cancel()
        self._subs.clear()
        self.client.remove_session_listener(self._on_session)

    # -- publishing --------------------------------------------------------------------
    async def publish(self, dirs: list[str], tps: Iterable[TopicPartition]) -> None:
        """Write (create or replace) this broker's ephemeral offline-replica znode."""
        self._mine = encode_offline(self.broker_id, dirs, tps)
        await self._write()

    async def _write(self) -> None:
        data = self._mine
        if data is None:
            return
        try:
            await self.client.create(self.path, data, ephemeral=True)
        except ZkNodeExistsError:
            await self.client.set(self.path, data)
        log.info("Published offline replicas of broker %d: %s", self.broker_id, data.decode())

    def _on_session(self, event: SessionEvent) -> None:
        if event.state == SessionState.CONNECTED and event.new_session and self._mine:
            task = asyncio.get_running_loop().create_task(self._write())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # -- watching ----------------------------------------------------------------------
    def _on_children(self, names: list[str] | None) -> None:
        names = names or []
        for gone in set(self._subs) - set(names):
            self._subs.pop(gone).cancel()
            self._by_broker.pop(gone, None)
        for name in names:
            if name not in self._subs:
                self._subs[name] = self.client.watch_data(
                    f"{OFFLINE_REPLICAS_PATH}/{name}",
                    lambda data, stat, n=name: self._on_data(n, data, stat),
                )
        self._emit()

    def _on_data(self, name: str, data: bytes | None, stat: ZkStat | None) -> None:
        if data is None:
            self._by_broker.pop(name, None)
        else:
            try:
                _, tps = decode_offline(data)
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("Ignoring unreadable %s/%s: %r", OFFLINE_REPLICAS_PATH, name, exc)
                return
            self._by_broker[name] = tps
        self._emit()

    def _emit(self) -> None:
        merged: dict[TopicPartition, set[int]] = {}
        for name, tps in self._by_broker.items():
            with contextlib.suppress(ValueError):
                broker = int(name)
                for tp in tps:
                    merged.setdefault(tp, set()).add(broker)
        self.on_change({tp: frozenset(b) for tp, b in merged.items()})


__all__ = [
    "OFFLINE_REPLICAS_PATH",
    "OfflineReplicaRegistry",
    "OfflineReplicas",
    "decode_offline",
    "encode_offline",
]
