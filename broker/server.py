"""The broker process: wires config, storage, replication and the TCP server together.

One asyncio loop owns all broker state. Appends happen on the loop (page-cache writes);
fsync, retention and checkpoints run in a worker thread so the loop keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pybroker.broker.handlers.all  # noqa: F401  (registers every handler)
from pybroker.broker.acceptor import Acceptor, Endpoint
from pybroker.broker.client_metrics import ClientMetricsManager
from pybroker.broker.client_quota_manager import ClientQuotaManager
from pybroker.broker.clock import now_ms
from pybroker.broker.connection_limits import (
    ConnectionQuotas,
    NetworkContext,
    NetworkStats,
    RequestBudget,
    resolve_overrides,
)
from pybroker.broker.console.api import ConsoleSources
from pybroker.broker.delegation_tokens import DelegationTokenManager
from pybroker.broker.fetch_sessions import FetchSessionCache
from pybroker.broker.groups.consumer_coordinator import ConsumerGroupConfig, ConsumerGroupManager
from pybroker.broker.groups.coordinator import CoordinatorConfig, GroupCoordinator
from pybroker.broker.groups.store import LogGroupStore
from pybroker.broker.groups.store import apply_image as apply_groups_image
from pybroker.broker.http_endpoint import SETTING as HTTP_SETTING
from pybroker.broker.http_endpoint import HttpEndpoint, start_endpoint
from pybroker.broker.log_cleaner import CleanerService
from pybroker.broker.log_dir_failures import LogDirFailureHandler
from pybroker.broker.memory_pool import MemoryPool
from pybroker.broker.metrics import Readiness
from pybroker.broker.purgatory import FetchPurgatory
from pybroker.broker.request_metrics import RequestMetrics
from pybroker.broker.sasl_authenticator import SaslService, inter_broker_sasl
from pybroker.broker.scheduling import LoopScheduler
from pybroker.broker.security.acl_service import AclService
from pybroker.broker.security.authorizer import authorizer_from_config
from pybroker.broker.tls import build_listeners, inter_broker_client_context
from pybroker.broker.txn.coordinator import TransactionCoordinator, TxnConfig
from pybroker.broker.txn.producer_ids import ProducerIdManager
from pybroker.broker.txn.store import LocalMarkerWriter, LogTxnStore
from pybroker.broker.txn.store import apply_image as apply_txn_image
from pybroker.broker.zk_cluster import ZkCluster
from pybroker.config.broker_config import BrokerConfig
from pybroker.config.topic_config import TopicConfig
from pybroker.replication.acl_store import FILE_NAME as ACL_FILE
from pybroker.replication.acl_store import LocalAclStore, ZkAclStore
from pybroker.replication.controller import LocalController
from pybroker.replication.entity_configs import FILE_NAME as ENTITY_CONFIG_FILE
from pybroker.replication.entity_configs import (
    EntityConfigStore,
    LocalEntityConfigs,
    ZkEntityConfigs,
)
from pybroker.replication.fetcher import FetcherConfig, ReplicaFetcherManager
from pybroker.replication.log_dir_mover import LogDirMover
from pybroker.replication.metadata import BrokerInfo, ClusterImage
from pybroker.replication.producer_id_store import FILE_NAME as PRODUCER_ID_FILE
from pybroker.replication.producer_id_store import LocalProducerIdStore
from pybroker.replication.replica_manager import ReplicaManager
from pybroker.replication.store_local import FILE_NAME as METADATA_FILE
from pybroker.replication.store_local import LocalMetadataStore
from pybroker.replication.token_store import FILE_NAME as TOKEN_FILE
from pybroker.replication.token_store import LocalTokenStore, ZkTokenStore
from pybroker.replication.zk_admin import ZkAdmin
from pybroker.storage.kraft_metadata import plan_adoption, read_kraft_metadata
from pybroker.storage.log import ZERO_UUID
from pybroker.storage.log_manager import LogManager

if TYPE_CHECKING:
    from pybroker.broker.connection import KafkaConnection

log = logging.getLogger(__name__)


def local_broker_info(config: BrokerConfig) -> BrokerInfo:
    """This broker in a single node's image: its inter-broker listener as host/port, every
    advertised listener as an endpoint (clients get the one they connected through)."""
    advertised = config.advertised_listeners
    main = next(
        (e for e in advertised if e.name == config.inter_broker_listener_name), advertised[0]
    )
    return BrokerInfo(
        config.node_id,
        main.host or "localhost",
        main.port,
        endpoints=tuple((e.name, e.host or "localhost", e.port) for e in advertised),
    )


class Broker:
    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self.node_id = config.node_id
        # TLS first: a bad ssl.* setting refuses start-up (TlsConfigError) before any work.
        self.tls_listeners = build_listeners(config)
        self.inter_broker_ssl = inter_broker_client_context(config)
        self.tls_raw = dict(config.raw)  # + dynamic listener SSL updates (AlterConfigs)
        # SASL listeners' settings (bad JAAS lines refuse start-up) and our own credentials.
        self.sasl = SaslService(config)
        self.client_metrics: ClientMetricsManager | None = None  # KIP-714, set in start()
        # Delegation tokens (KIP-48): the store is attached once metadata is up.
        self.delegation_tokens = DelegationTokenManager(
            config.values.get("delegation.token.secret.key")
            or config.values.get("delegation.token.master.key"),
            int(config.values["delegation.token.max.lifetime.ms"]),
            int(config.values["delegation.token.expiry.time.ms"]),
        )
        self.sasl.delegation_tokens = self.delegation_tokens
        self.inter_broker_sasl = inter_broker_sasl(config)
        self.connections: set[KafkaConnection] = set()
        self.network = NetworkContext(
            max_request_bytes=config.socket_request_max_bytes,
            budget=RequestBudget(
                config.queued_max_requests,
                MemoryPool(config.queued_max_request_bytes, config.socket_request_max_bytes),
            ),
            stats=NetworkStats(),
            connections=self.connections,
            # Counted only when /metrics can show it (the request log works either way).
            requests=RequestMetrics(enabled=bool(config.values[HTTP_SETTING])),
        )
        self.readiness = Readiness(cluster_mode=bool(config.zookeeper_connect))
        self.http: HttpEndpoint | None = None
        self.purgatory = FetchPurgatory()
        self.fetch_sessions = FetchSessionCache(
            config.max_incremental_fetch_session_cache_slots, now_ms
        )
        # ACLs (authorizer.class.name): None = no authorizer, every request allowed.
        self.authorizer = authorizer_from_config(config)
        self.acls: AclService | None = None
        self._acceptor: Acceptor | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = asyncio.Event()
        self.stopping = False
        self.topic_defaults = config.topic_defaults()
        self.log_dirs = [Path(d) for d in config.log_dirs]
        self.log_manager = LogManager(
            self.log_dirs,
            self.topic_config_for,
            reserved_files=frozenset(
                {METADATA_FILE, PRODUCER_ID_FILE, ACL_FILE, ENTITY_CONFIG_FILE, TOKEN_FILE}
            ),
            producer_id_expiration_ms=config.producer_id_expiration_ms,
        )
        # Cluster mode (zookeeper.connect): ZooKeeper holds the metadata, followers fetch
        # from leaders, leaders write their ISR changes; a single node needs none of it.
        self.cluster: ZkCluster | None = None
        fetchers = None
        if config.zookeeper_connect:
            self.cluster = ZkCluster(
                config, self.topic_defaults, self._apply_image, self._unclean_allowed
            )
            fetchers = ReplicaFetcherManager(
                self.node_id,
                dataclasses.replace(
                    FetcherConfig.from_broker(config),
                    ssl=self.inter_broker_ssl,
                    sasl=self.inter_broker_sasl,
                ),
                self._endpoint_of,
                self.purgatory.notify,
            )
        self.producer_ids = ProducerIdManager(
            self.cluster.allocate_producer_ids
            if self.cluster
            else LocalProducerIdStore(self.log_dirs[0]),
            self.node_id,
        )
        self.replica_manager = ReplicaManager(
            self.node_id,
            self.log_manager,
            self.topic_config_for,
            clock=now_ms,
            replica_lag_time_max_ms=config.replica_lag_time_max_ms,
            fetchers=fetchers,
            isr_writer=self.cluster.write_isr if self.cluster else None,
        )
        self.cleaner = CleanerService(config, self.log_manager)
        # JBOD: failed log dirs (KIP-112) and replica moves between dirs (KIP-113).
        self.log_dir_failures = LogDirFailureHandler(self)
        self.log_dir_mover = LogDirMover(
            self.replica_manager,
            self.log_manager,
            self.purgatory.notify,
            io_max_bytes_per_second=float(
                config.values.get("replica.alter.log.dirs.io.max.bytes.per.second", math.inf)
            ),
        )
        self.replica_manager.add_append_listener(self.purgatory.notify)
        self.broker_info = local_broker_info(config)
        # What admin handlers call: the single node's controller, or the cluster's admin.
        self.controller: LocalController | ZkAdmin | None = None
        self.group_coordinator = GroupCoordinator(
            CoordinatorConfig.from_broker(config), LogGroupStore(self), LoopScheduler(), now_ms
        )
        self.group_coordinator.consumer = ConsumerGroupManager(
            self.group_coordinator, ConsumerGroupConfig.from_broker(config)
        )
        self.txn_coordinator = TransactionCoordinator(
            TxnConfig.from_broker(config),
            LogTxnStore(self),
            LocalMarkerWriter(self),
            self.producer_ids.generate,
            LoopScheduler(),
            now_ms,
        )

    # ------------------------------------------------------------------ state
    @property
    def image(self) -> ClusterImage:
        assert self.controller is not None
        return self.controller.image

    def topic_config_for(self, topic: str) -> TopicConfig:
        image = self._current_image()
        info = image.topics.get(topic) if image else None
        overrides = info.configs if info else {}
        return TopicConfig(overrides=dict(overrides), defaults=self.topic_defaults)

    def _current_image(self) -> ClusterImage | None:
        if self.cluster is not None:
            return self.cluster.cache.image if self.cluster.cache else None
        return self.controller.image if self.controller else None

    def _unclean_allowed(self, topic: str) -> bool:
        return bool(self.topic_config_for(topic).get("unclean.leader.election.enable"))

    def _endpoint_of(self, broker_id: int) -> tuple[str, int] | None:
        image = self._current_image()
        info = image.brokers.get(broker_id) if image else None
        return (info.host, info.port) if info else None

    def _apply_image(self, image: ClusterImage) -> None:
        self.replica_manager.apply_image(image)
        apply_groups_image(self.group_coordinator, image, self.node_id)
        # KIP-848 groups subscribed to a created, grown or deleted topic get a new epoch.
        self.group_coordinator.consumer.on_topics(
            {name: (info.topic_id, len(info.partitions)) for name, info in image.topics.items()}
        )
        # After the groups: completing a transaction may write markers to their partitions.
        apply_txn_image(self.txn_coordinator, image, self.node_id)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        # Host names in the overrides resolve first, so a bad one fails before anything runs.
        quotas = ConnectionQuotas(
            self.config.max_connections,
            self.config.max_connections_per_ip,
            resolve_overrides(self.config.max_connections_per_ip_overrides),
        )
        for d in self.log_dirs:
            with contextlib.suppress(OSError):  # an unusable dir is offline (LogManager)
                d.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        # First, so /healthz and /readyz answer while logs recover and the broker registers.
        self.http = await start_endpoint(
            self.config.values[HTTP_SETTING],
            self.readiness,
            console=ConsoleSources(
                config=self.config,
                node_id=self.node_id,
                cluster_mode=self.cluster is not None,
                replica_manager=self.replica_manager,
                log_manager=self.log_manager,
                group_coordinator=self.group_coordinator,
                txn_coordinator=self.txn_coordinator,
                authorizer=self.authorizer,
                sasl=self.sasl,
                client_metrics=lambda: self.client_metrics,
            ),
            requests=self.network.requests,
            replica_manager=self.replica_manager,
            log_manager=self.log_manager,
            groups=self.group_coordinator,
            transactions=self.txn_coordinator,
            connections=self.connections,
            listeners=[e.name for e in self.config.listeners],
            fetch_purgatory=self.purgatory,
            node_id=self.node_id,
        )
        self.log_dir_failures.attach(loop)
        cluster = self.cluster
        if cluster is not None:
            await cluster.connect()
        self.log_manager.load()
        self.readiness.recovered = True
        self.cleaner.start()
        if cluster is not None:
            await cluster.load_metadata()
            self.controller = cluster.admin
        else:
            store = LocalMetadataStore(self.log_dirs[0])
            # A log dir copied from Apache Kafka (KRaft): keep its cluster id and producer
            # ids, and adopt its partition dirs as topics (see storage.kraft_metadata).
            kraft = read_kraft_metadata(self.log_dirs)
            adopt_id = kraft.cluster_id if kraft and not store.path.exists() else None
            controller = LocalController(
                self.node_id,
                self.broker_info,
                store,
                self.topic_defaults,
                self._apply_image,
                cluster_id=self.config.cluster_id or adopt_id,
            )
            self.controller = controller
            if kraft is not None:
                LocalProducerIdStore(self.log_dirs[0]).skip_below(
                    self.node_id, kraft.next_producer_id
                )
            found = [(lg.topic, lg.partition, lg.topic_id) for lg in self.log_manager.all_logs()]
            controller.adopt_topics(
                plan_adoption(found, set(controller.image.topics), kraft, ZERO_UUID)
            )
            for lg in self.log_manager.all_logs():
                info = controller.image.topics.get(lg.topic)
                if info is not None and lg.topic_id == ZERO_UUID:
                    lg.assign_topic_id(info.topic_id)  # no partition.metadata: as Kafka does
            controller.start()
        if self.authorizer is not None:
            self.acls = AclService(
                self.authorizer,
                ZkAclStore(cluster.client) if cluster else LocalAclStore(self.log_dirs[0]),
            )
            await self.acls.start()
        self.entity_configs: EntityConfigStore = (
            ZkEntityConfigs(cluster.client) if cluster else LocalEntityConfigs(self.log_dirs[0])
        )
        self.sasl.entity_configs = self.entity_configs
        self.delegation_tokens.store = (
            ZkTokenStore(cluster.client) if cluster else LocalTokenStore(self.log_dirs[0])
        )
        self.client_quotas = ClientQuotaManager(  # issue 12: KIP-219 throttling
            self.entity_configs,
            self.config.values["quota.window.num"],
            self.config.values["quota.window.size.seconds"],
            poll=cluster is not None,
        )
        await self.client_quotas.start()
        self.client_metrics = ClientMetricsManager(  # KIP-714 client telemetry
            self.entity_configs, self.config.values["telemetry.max.bytes"], poll=cluster is not None
        )
        await self.client_metrics.start()
        self.group_coordinator.start()
        self.txn_coordinator.start()
        from pybroker.broker.connection import KafkaConnection

        network = self.network
        self._acceptor = Acceptor(
            [
                Endpoint(e.name, e.host or None, e.port, self.tls_listeners.get(e.name))
                for e in self.config.listeners
            ],
            self.config.socket_listen_backlog_size,
            quotas,
            network.stats,
            lambda name, on_close: KafkaConnection(self, network, on_close=on_close, listener=name),
        )
        self._acceptor.start()
        if cluster is not None:
            await cluster.register()
            self.readiness.registered = True
            await cluster.start_controller()
            await self.log_dir_failures.start_cluster()
        self._tasks = [
            # Kafka's default scheduler interval is "never"; we still honour topic flush.ms
            # by checking at least once a second (a cheap scan).
            loop.create_task(
                self._every(min(self.config.log_flush_scheduler_interval_ms, 1000), self._flush)
            ),
            loop.create_task(
                self._every(self.config.log_retention_check_interval_ms, self._retention)
            ),
            loop.create_task(
                self._every(self.config.log_flush_offset_checkpoint_interval_ms, self._checkpoint)
            ),
            loop.create_task(
                self._every(
                    self.config.producer_id_expiration_check_interval_ms, self._expire_producers
                )
            ),
        ]
        if cluster is not None:
            # Kafka's isr-expiration task runs every replica.lag.time.max.ms / 2.
            self._tasks.append(
                loop.create_task(
                    self._every(self.config.replica_lag_time_max_ms // 2, self._shrink_isrs)
                )
            )
        if self.delegation_tokens.enabled:
            self._tasks.append(
                loop.create_task(
                    self._every(
                        int(self.config.values["delegation.token.expiry.check.interval.ms"]),
                        self.delegation_tokens.expire_tokens,
                    )
                )
            )
        idle_ms = self.config.connections_max_idle_ms
        if idle_ms >= 0:  # Kafka: a negative connections.max.idle.ms never expires connections
            self._tasks.append(
                loop.create_task(self._every(max(50, min(1000, idle_ms // 4)), self._expire_idle))
            )
        log.info(
            "pybroker node %d serving on %s (advertised %s), log dirs %s, cluster id %s",
            self.node_id,
            ",".join(e.connection_string for e in self.config.listeners),
            ",".join(e.connection_string for e in self.config.advertised_listeners),
            ", ".join(map(str, self.log_dirs)),
            self.image.cluster_id,
        )
        self.readiness.serving = True

    async def _shrink_isrs(self) -> None:
        self.replica_manager.isr_maintenance()

    async def abort_start(self) -> None:
        """Start-up failed: release what was taken (log dir locks, the ZooKeeper session)."""
        if self.http is not None:
            await self.http.stop()
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                await self.cluster.close()
        await asyncio.get_running_loop().run_in_executor(None, self.log_manager.shutdown)

    async def _every(self, interval_ms: int, job: Callable[[], Awaitable[None]]) -> None:
        interval = max(interval_ms, 10) / 1000
        while True:
            await asyncio.sleep(interval)
            try:
                await job()
            except Exception:
                log.exception("background job %s failed", getattr(job, "__name__", job))

    async def _flush(self) -> None:
        """flush.messages/flush.ms fsyncs and removal of .deleted files, off the loop."""
        lm = self.log_manager
        t = now_ms()
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: lm.flush_dirty_logs(t) + lm.remove_deleted_files(t)
        )

    async def _retention(self) -> None:
        # Retention only renames segments to .deleted (fast, and it must not race appends),
        # so it runs on the loop; the unlink happens later in _flush's worker thread.
        removed = self.log_manager.cleanup_logs(now_ms())
        if removed:
            log.info("Retention scheduled %d segment(s) for deletion", removed)

    async def _expire_producers(self) -> None:
        # Cheap dict scans; on the loop because appends mutate the same state.
        self.log_manager.remove_expired_producers(now_ms())

    async def _expire_idle(self) -> None:
        """Kafka's Selector idle expiry: close connections quiet for connections.max.idle.ms."""
        limit = self.config.connections_max_idle_ms
        now = time.monotonic()
        for conn in list(self.connections):
            idle = conn.idle_ms(now)
            if idle > limit:
                log.debug("Closing connection from %s: idle for %.0f ms", conn.peer, idle)
                self.network.stats.idle_connections_closed += 1
                conn.close()

    @property
    def handler_errors(self) -> int:
        """Requests whose handler failed unexpectedly (each closed its connection)."""
        return self.network.stats.handler_errors

    async def _checkpoint(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.log_manager.checkpoint)

    async def serve_forever(self) -> None:
        await self._stopped.wait()

    def request_stop(self) -> None:
        self._stopped.set()

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish, flush and checkpoint, close."""
        log.info("Shutting down")
        if self.cluster is not None:
            # While still serving: move our leaderships to other in-sync replicas first.
            await self.cluster.controlled_shutdown()
        self.stopping = True
        self.readiness.serving = False
        if getattr(self, "client_quotas", None) is not None:
            self.client_quotas.stop()
        if self.client_metrics is not None:
            self.client_metrics.stop()
        self.group_coordinator.shutdown()  # answers waiting JoinGroup/SyncGroup
        self.txn_coordinator.shutdown()
        if self._acceptor is not None:
            self._acceptor.close()
        for task in self._tasks:
            task.cancel()
        self.purgatory.notify_all()
        deadline = time.monotonic() + 5
        while self.connections and time.monotonic() < deadline:
            for conn in list(self.connections):
                if not conn.busy:
                    conn.close()
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            conn.close()
        await self.log_dir_mover.stop()
        await self.replica_manager.stop()
        self.log_dir_failures.close()
        if self.acls is not None:
            self.acls.close()
        if self.cluster is not None:
            await self.cluster.close()
        await self.cleaner.stop()
        await asyncio.get_running_loop().run_in_executor(None, self.log_manager.shutdown)
        if self.http is not None:
            await self.http.stop()
        log.info("Shutdown complete")
