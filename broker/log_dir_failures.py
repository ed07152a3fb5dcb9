"""What the broker does when a log dir fails (Kafka's LogDirFailureHandler thread and
``ReplicaManager.handleLogDirFailure``).

The storage layer reports a failed dir from whatever thread saw the I/O error; this
hops onto the event loop, where it closes and forgets the dir's logs, takes their
partitions offline (KAFKA_STORAGE_ERROR from then on, produce waiters answered with it,
fetchers stopped, coordinators told leadership is gone), stops replica moves touching the
dir, wakes parked fetches and, in a cluster, publishes the offline replicas so the
controller moves leadership away and shrinks the ISRs (``replication.log_dir_events``).

If no log dir is left the broker halts, as Kafka does ("Shutdown broker because all log
dirs in ... have failed"); so it does when the single-node metadata dir (the first log
dir, which holds the local metadata file, as KRaft's metadata.log.dir defaults to it)
fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import TYPE_CHECKING, Any

from pybroker.replication.log_dir_events import OfflineReplicaRegistry
from pybroker.storage.log_dir_failure import dir_key

if TYPE_CHECKING:
    from pybroker.broker.server import Broker

log = logging.getLogger(__name__)


def halt(message: str) -> None:
    """Kafka's Exit.halt(1) after a fatal log line: no clean shutdown (the page cache
    keeps what was written; the dirs that failed cannot be trusted to flush)."""
    log.critical(message)
    logging.shutdown()
    os._exit(1)


def add_offline_replicas(broker: Broker, topics: list[dict[str, Any]]) -> None:
    """Metadata / DescribeTopicPartitions: replicas on failed log dirs are offline too
    (Kafka lists them in offline_replicas beside those of dead brokers)."""
    offline = broker.replica_manager.offline
    if not offline.local and not offline.remote:
        return
    for t in topics:
        for p in t.get("partitions") or ():
            extra = offline.replicas_offline((t["name"], p["partition_index"]), broker.node_id)
            if extra:
                known = set(p["offline_replicas"]) | extra
                p["offline_replicas"] = [r for r in p["replica_nodes"] if r in known]


class LogDirFailureHandler:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.registry: OfflineReplicaRegistry | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Listen for failed dirs (before the logs load: start-up failures count too)."""
        self._loop = loop
        self.broker.log_manager.failures.add_listener(self._from_any_thread)

    def _from_any_thread(self, key: str) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            loop.call_soon(self.on_failure, key)
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (shutdown)
                loop.call_soon_threadsafe(self.on_failure, key)

    async def start_cluster(self) -> None:
        """Cluster mode, once registered: watch every broker's offline replicas and
        publish ours (start-up may already have some)."""
        broker = self.broker
        cluster = broker.cluster
        if cluster is None:
            return
        self.registry = OfflineReplicaRegistry(cluster.client, broker.node_id, self._on_remote)
        await self.registry.start()
        if broker.replica_manager.offline.local:
            await self._publish()

    def close(self) -> None:
        if self.registry is not None:
            self.registry.close()

    def _on_remote(self, offline: dict[tuple[str, int], frozenset[int]]) -> None:
        broker = self.broker
        broker.replica_manager.offline.remote = offline
        cluster = broker.cluster
        controller = cluster.controller if cluster is not None else None
        if controller is not None:
            controller.offline_replicas = offline
            controller.poke()

    def on_failure(self, key: str) -> None:
        broker = self.broker
        lm = broker.log_manager
        if broker.cluster is None and key == dir_key(broker.log_dirs[0]):
            halt(f"Shutdown broker because the metadata log dir {key} has failed")
        if lm.all_dirs_offline:
            halt(
                "Shutdown broker because all log dirs in "
                f"{', '.join(dir_key(d) for d in broker.log_dirs)} have failed"
            )
        if not lm.loaded or broker.stopping:
            return  # start-up: the first image takes the partitions offline; shutdown: moot
        gone, futures = lm.handle_dir_failure(key)
        rm = broker.replica_manager
        changed = rm.take_offline(gone)
        log.warning("Stopping serving replicas in dir %s: %d partitions offline", key, len(gone))
        mover = getattr(broker, "log_dir_mover", None)
        if mover is not None:
            mover.on_dir_failure(gone, futures)
        for topic, partition in changed + gone:
            broker.purgatory.notify(topic, partition)
        if broker.cluster is not None and self.registry is not None:
            task = asyncio.get_running_loop().create_task(self._publish())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _publish(self) -> None:
        assert self.registry is not None
        broker = self.broker
        try:
            await self.registry.publish(
                broker.log_manager.offline_dirs, broker.replica_manager.offline.local
            )
        except Exception as exc:
            log.error("Could not publish the offline replicas: %r", exc)
