"""A real cluster for tests: one ZooKeeper and several pybroker processes on 127.0.0.1.

Each broker is a BrokerProcess with ``zookeeper.connect`` and its own ``broker.id``, port
and log dir; the cluster's state is read the way a client reads it, with Metadata
requests over the wire. Every wait is bounded and fails with the last state seen.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kio.schema.errors import ErrorCode
from kio.static.primitive import i16, i32

from tests.support.broker import BrokerProcess
from tests.support.netns import NetnsBrokerProcess, NetnsNetwork, NetnsZooKeeper
from tests.support.txn_wire import build
from tests.support.wire import ConnectionClosed, KafkaWire, request_module
from tests.support.zookeeper import ZooKeeperProcess

METADATA, CREATE_TOPICS = 3, 19

# Small timeouts so that failures are detected in seconds, not Kafka's minutes.
CLUSTER_DEFAULTS = {
    "zookeeper.session.timeout.ms": "6000",
    "replica.lag.time.max.ms": "3000",
    "replica.fetch.wait.max.ms": "200",
    "replica.fetch.backoff.ms": "200",
    "offsets.topic.replication.factor": "3",
    "transaction.state.log.replication.factor": "3",
    "transaction.state.log.min.isr": "2",
    "group.initial.rebalance.delay.ms": "0",
}


def _host(broker: BrokerProcess) -> str:
    """The address a broker listens on: 127.0.0.1, or its namespace address."""
    return getattr(broker, "host", "127.0.0.1")


@dataclass(frozen=True)
class PartitionView:
    leader: int
    leader_epoch: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    offline: tuple[int, ...]
    error: ErrorCode


class Cluster:
    def __init__(
        self,
        root: Path,
        size: int = 3,
        overrides: dict[str, str] | None = None,
        zookeeper: ZooKeeperProcess | None = None,
        netns: bool = False,
    ) -> None:
        self.root = Path(root)
        # netns=True: each broker in its own network namespace (tests/support/netns.py),
        # so that network.cut(id) / network.heal(id) partition it for real.
        self.network: NetnsNetwork | None = NetnsNetwork(size) if netns else None
        if zookeeper is None and self.network is not None:
            zookeeper = NetnsZooKeeper(self.root / "zookeeper", self.network.gateway)
            self._own_zk = True
        else:
            self._own_zk = zookeeper is None
        self.zk = zookeeper or ZooKeeperProcess(self.root / "zookeeper")
        self.overrides = {**CLUSTER_DEFAULTS, **(overrides or {})}
        self.brokers: dict[int, BrokerProcess] = {}
        for broker_id in range(1, size + 1):
            settings = {
                **self.overrides,
                "broker.id": str(broker_id),
                "node.id": str(broker_id),
                "zookeeper.connect": "",  # filled in at start (the port is known then)
            }
            data_dir = self.root / f"broker-{broker_id}" / "data"
            if self.network is not None:
                self.brokers[broker_id] = NetnsBrokerProcess(
                    data_dir, self.network, broker_id, settings
                )
            else:
                self.brokers[broker_id] = BrokerProcess(data_dir, settings)

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 60.0) -> Cluster:
        if self.network is not None:
            self.network.setup()
        if self._own_zk:
            self.zk.start()
        for b in self.brokers.values():
            b.overrides["zookeeper.connect"] = self.zk.connect
        for b in self.brokers.values():
            b.start(timeout)
        self.wait_for_brokers(set(self.brokers), timeout)
        return self

    def stop(self) -> None:
        for b in self.brokers.values():
            if b.proc is not None:
                b.kill()
        if self._own_zk:
            self.zk.kill()
        if self.network is not None:
            self.network.teardown()

    @property
    def bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers.values())

    def live(self) -> list[BrokerProcess]:
        return [b for b in self.brokers.values() if b.proc is not None and b.proc.poll() is None]

    # ------------------------------------------------------------------ reading state
    def _any_wire(self) -> KafkaWire:
        last: Exception | None = None
        for b in self.live():
            try:
                return KafkaWire(host=_host(b), port=b.port, timeout=10)
            except OSError as exc:
                last = exc
        raise RuntimeError(f"no live broker answers: {last}")

    def metadata(self, topics: list[str] | None = None, via: int | None = None) -> Any:
        """A Metadata v12 answer (no auto-creation) from broker ``via`` or any live one."""
        m = request_module(METADATA, 12)
        req = build(
            m.MetadataRequest,
            topics=None
            if topics is None
            else tuple(build(m.MetadataRequestTopic, name=t, topic_id=None) for t in topics),
            allow_auto_topic_creation=False,
            include_topic_authorized_operations=False,
        )
        conn = (
            KafkaWire(host=_host(self.brokers[via]), port=self.brokers[via].port, timeout=10)
            if via
            else self._any_wire()
        )
        with conn:
            return conn.request(req)

    def partition(self, topic: str, partition: int, via: int | None = None) -> PartitionView:
        md = self.metadata([topic], via)
        for t in md.topics:
            for p in t.partitions:
                if int(p.partition_index) == partition:
                    return PartitionView(
                        int(p.leader_id),
                        int(p.leader_epoch),
                        tuple(int(r) for r in p.replica_nodes),
                        tuple(int(r) for r in p.isr_nodes),
                        tuple(int(r) for r in p.offline_replicas),
                        p.error_code,
                    )
        raise KeyError(f"{topic}-{partition} not in metadata")

    def wait_until(
        self, what: str, check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1
    ) -> Any:
        """Poll ``check`` until it returns a truthy value; fail with the last value/error."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = check()
                if last:
                    return last
            except (OSError, ConnectionClosed, KeyError, RuntimeError, TimeoutError) as exc:
                last = exc
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")

    def wait_for_brokers(self, ids: set[int], timeout: float = 30.0) -> None:
        def registered() -> bool:
            for b in self.live():
                md = self.metadata([], via=self._id_of(b))
                if {int(x.node_id) for x in md.brokers} != ids:
                    return False
            return True

        self.wait_until(f"brokers {sorted(ids)} registered", registered, timeout)

    def _id_of(self, broker: BrokerProcess) -> int:
        return next(i for i, b in self.brokers.items() if b is broker)

    def wait_for_isr(
        self, topic: str, partition: int, isr: set[int], timeout: float = 30.0
    ) -> PartitionView:
        def ok() -> PartitionView | None:
            view = self.partition(topic, partition)
            return view if set(view.isr) == isr and view.leader in isr else None

        return self.wait_until(f"{topic}-{partition} ISR {sorted(isr)}", ok, timeout)

    def wait_for_leader(
        self, topic: str, partition: int, allowed: set[int] | None = None, timeout: float = 30.0
    ) -> PartitionView:
        def ok() -> PartitionView | None:
            view = self.partition(topic, partition)
            good = view.leader >= 0 and (allowed is None or view.leader in allowed)
            return view if good and view.error == ErrorCode.none else None

        return self.wait_until(f"{topic}-{partition} leader in {allowed}", ok, timeout)

    # ------------------------------------------------------------------ admin
    def create_topic(
        self,
        name: str,
        partitions: int,
        replication_factor: int,
        configs: dict[str, str] | None = None,
        timeout: float = 30.0,
    ) -> None:
        m = request_module(CREATE_TOPICS, 7)
        req = build(
            m.CreateTopicsRequest,
            topics=(
                build(
                    m.CreatableTopic,
                    name=name,
                    num_partitions=i32(partitions),
                    replication_factor=i16(replication_factor),
                    assignments=(),
                    configs=tuple(
                        build(m.CreatableTopicConfig, name=k, value=v)
                        for k, v in (configs or {}).items()
                    ),
                ),
            ),
            timeout=datetime.timedelta(seconds=timeout),
            validate_only=False,
        )
        with self._any_wire() as conn:
            resp = conn.request(req)
        (t,) = resp.topics
        assert t.error_code == ErrorCode.none, (t.error_code, t.error_message)
        for p in range(partitions):
            self.wait_for_leader(name, p, timeout=timeout)
