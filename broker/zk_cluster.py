"""Cluster mode (``zookeeper.connect`` set): this broker's life in a ZooKeeper cluster.

Owns the ZooKeeper session and everything built on it: the cluster id, the broker's
ephemeral registration (renewed after a session expiry), the watch-fed metadata cache,
the controller (active on whichever broker wins ``/controller``), the admin entry point
handlers call, the leader's ISR writes and producer-id blocks. Start-up order follows
Kafka's KafkaServer: session, cluster id, metadata, (logs and listener, by the broker),
registration, controller. Stopping does a controlled shutdown first: leadership moves
to other in-sync replicas before this broker leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping

from pybroker.config.broker_config import BrokerConfig
from pybroker.replication.metadata import ClusterImage
from pybroker.replication.partition import LeaderAndIsr
from pybroker.replication.producer_id_store import ProducerIdsBlock
from pybroker.replication.zk_admin import ZkAdmin
from pybroker.replication.zk_client import SessionEvent, SessionState, ZkClient, ZkNoNodeError
from pybroker.replication.zk_controller import ZkController, controlled_shutdown_path
from pybroker.replication.zk_data import PartitionStateZnode, registration_from_listeners
from pybroker.replication.zk_metadata import ZkMetadataCache
from pybroker.replication.zk_store import KafkaZkStore, StaleZkVersionError

log = logging.getLogger(__name__)


class ZkCluster:
    def __init__(
        self,
        config: BrokerConfig,
        topic_defaults: Mapping[str, object],
        on_image: Callable[[ClusterImage], None],
        unclean_allowed: Callable[[str], bool],
    ) -> None:
        self.config = config
        self.node_id = config.node_id
        self.client = ZkClient.from_config(config)
        self.store = KafkaZkStore(self.client)
        self.topic_defaults = topic_defaults
        self.on_image = on_image
        self.unclean_allowed = unclean_allowed
        self.cache: ZkMetadataCache | None = None
        self.admin: ZkAdmin | None = None
        self.controller: ZkController | None = None
        self.cluster_id = ""
        self._registered = False
        self._stopping = False

    @property
    def image(self) -> ClusterImage:
        assert self.cache is not None
        return self.cache.image

    # ------------------------------------------------------------------ start-up
    async def connect(self) -> str:
        """Open the session, create Kafka's top-level paths, agree on the cluster id."""
        await self.client.start()
        await self.store.create_top_level_paths()
        self.cluster_id = await self.store.get_or_create_cluster_id(self.config.cluster_id)
        if self.config.cluster_id and self.config.cluster_id != self.cluster_id:
            raise RuntimeError(
                f"cluster.id {self.config.cluster_id} does not match {self.cluster_id} "
                "stored in ZooKeeper"
            )
        # A controlled-shutdown request left by this broker's previous life is void.
        with contextlib.suppress(ZkNoNodeError):
            await self.client.delete(controlled_shutdown_path(self.node_id))
        return self.cluster_id

    async def load_metadata(self) -> ClusterImage:
        """The first complete image (applied through ``on_image``), then watches."""
        self.cache = ZkMetadataCache(
            self.store,
            self.cluster_id,
            self.config.inter_broker_listener_name,
            self._on_image,
        )
        self.admin = ZkAdmin(self.store, self.cache, self.topic_defaults)
        await self.cache.start()
        return self.cache.image

    def _on_image(self, image: ClusterImage) -> None:
        self.on_image(image)
        if self.controller is not None:
            self.controller.poke()

    async def register(self) -> None:
        """The ephemeral /brokers/ids/<id>, with the listeners clients should use."""
        reg = registration_from_listeners(
            self.node_id, self.config.advertised_listeners, self.config.broker_rack
        )
        await self.store.register_broker(reg)
        self._registered = True
        self.client.add_session_listener(self._on_session)

    async def start_controller(self) -> None:
        assert self.cache is not None
        self.controller = ZkController(
            self.node_id,
            self.store,
            self.cache,
            self.unclean_allowed,
            auto_leader_rebalance=self.config.auto_leader_rebalance_enable,
            leader_imbalance_percent=self.config.leader_imbalance_per_broker_percentage,
            leader_imbalance_check_interval_s=self.config.leader_imbalance_check_interval_seconds,
        )
        await self.controller.start()
        self.controller.poke()

    def _on_session(self, event: SessionEvent) -> None:
        """After a session expiry the ephemeral znodes are gone: register again and let
        the controller run for election again."""
        if event.state == SessionState.CONNECTED and event.new_session and not self._stopping:
            log.warning("New ZooKeeper session: registering broker %d again", self.node_id)
            asyncio.get_running_loop().create_task(self._reregister())

    async def _reregister(self) -> None:
        try:
            reg = registration_from_listeners(
                self.node_id, self.config.advertised_listeners, self.config.broker_rack
            )
            await self.store.register_broker(reg)
            if self.controller is not None:
                self.controller.expire()
        except Exception as exc:
            log.error("Re-registering broker %d failed: %r", self.node_id, exc)

    # ------------------------------------------------------------------ services
    async def write_isr(
        self, topic: str, partition: int, proposed: LeaderAndIsr
    ) -> LeaderAndIsr | None:
        """The leader's own ISR change: a conditional write of the state znode, then an
        /isr_change_notification (Kafka ZooKeeper mode before AlterPartition)."""
        assert self.cache is not None
        current = self.cache.states.get((topic, partition))
        controller_epoch = current.controller_epoch if current is not None else 0
        state = PartitionStateZnode(
            proposed.leader,
            proposed.leader_epoch,
            tuple(proposed.isr),
            controller_epoch,
            proposed.version,
        )
        try:
            stored = await self.store.update_leader_and_isr(topic, partition, state)
        except StaleZkVersionError as exc:
            log.info("ISR update of %s-%d refused: %s", topic, partition, exc)
            return None
        with contextlib.suppress(Exception):
            await self.store.propagate_isr_changes([(topic, partition)])
        return LeaderAndIsr(
            stored.leader,
            stored.leader_epoch,
            tuple(stored.isr),
            proposed.replicas,
            stored.zk_version,
        )

    async def allocate_producer_ids(self, broker_id: int, size: int) -> ProducerIdsBlock:
        return await self.store.allocate_producer_id_block(broker_id, size)

    # ------------------------------------------------------------------ shutdown
    async def controlled_shutdown(self) -> None:
        """Ask the controller to move our leaderships away, and wait (bounded by
        controlled.shutdown.max.retries x retry.backoff.ms) until we lead nothing that
        another in-sync replica could lead."""
        self._stopping = True
        if not self._registered or not self.config.controlled_shutdown_enable:
            return
        assert self.cache is not None
        try:
            await self.client.ensure_path(controlled_shutdown_path(self.node_id))
        except Exception as exc:
            log.warning("Controlled shutdown request failed: %r", exc)
            return
        me = self.node_id

        def moved(image: ClusterImage) -> bool:
            # Done when no partition we lead has an in-sync replica that could take over:
            # one that is live and not stopping too (a whole cluster stopping at once
            # has nowhere to move to, and must not wait for nothing).
            takers = set(image.brokers) - set(image.shutting_down) - {me}
            for info in image.topics.values():
                for p in info.partitions:
                    if p.leader == me and any(r in takers for r in p.isr):
                        return False
            return True

        budget = max(
            self.config.controlled_shutdown_max_retries
            * self.config.controlled_shutdown_retry_backoff_ms
            / 1000,
            1.0,
        )
        if await self.cache.wait_for(moved, budget):
            log.info("Controlled shutdown: leadership moved to other brokers")
        else:
            log.warning("Controlled shutdown: leadership did not move within %.0fs", budget)

    async def close(self) -> None:
        self._stopping = True
        if self.controller is not None:
            await self.controller.stop()
        if self.cache is not None:
            self.cache.close()
        await self.client.close()
