"""Several listeners at once: each client gets the endpoints of the listener it came in by.

Kafka answers Metadata, FindCoordinator and DescribeCluster with every broker's endpoint on
the listener the request arrived on; brokers replicate over ``inter.broker.listener.name``.
That is what makes one broker reachable from two networks (docker-compose's internal
network and the host), so these tests give the two listeners different advertised host
names (127.0.0.1 and localhost) and check which one each answer carries.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Producer

from tests.support.broker import BrokerProcess, free_port
from tests.support.cluster import Cluster
from tests.support.txn_wire import build
from tests.support.wire import KafkaWire, request_module

PROTOCOL_MAP = "INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT"


def two_listeners(internal: int, external: int) -> dict[str, str]:
    return {
        "listeners": f"INTERNAL://127.0.0.1:{internal},EXTERNAL://127.0.0.1:{external}",
        "advertised.listeners": f"INTERNAL://127.0.0.1:{internal},EXTERNAL://localhost:{external}",
        "listener.security.protocol.map": PROTOCOL_MAP,
        "inter.broker.listener.name": "INTERNAL",
    }


def metadata_brokers(port: int) -> list[tuple[int, str, int]]:
    with KafkaWire(port=port) as wire:
        body = wire.request(
            build(
                request_module(3, 12).MetadataRequest,
                topics=(),
                allow_auto_topic_creation=False,
                include_topic_authorized_operations=False,
            )
        )
    return sorted((int(b.node_id), b.host, int(b.port)) for b in body.brokers)


def describe_cluster_brokers(port: int) -> list[tuple[int, str, int]]:
    with KafkaWire(port=port) as wire:
        body = wire.request(
            build(
                request_module(60, 1).DescribeClusterRequest,
                include_cluster_authorized_operations=False,
            )
        )
    return sorted((int(b.broker_id), b.host, int(b.port)) for b in body.brokers)


def find_coordinator(port: int, group: str) -> tuple[int, str, int]:
    with KafkaWire(port=port) as wire:
        body = wire.request(
            request_module(10, 4).FindCoordinatorRequest(key_type=0, coordinator_keys=[group])
        )
    (c,) = body.coordinators
    assert c.error_code == 0, c
    return int(c.node_id), c.host, int(c.port)


def round_trip(bootstrap: str, topic: str, count: int) -> list[bytes]:
    """Produce ``count`` records with acks=all and read them back through ``bootstrap``."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    failed: list[str] = []

    def on_delivery(err: object, _msg: object) -> None:
        if err is not None:
            failed.append(str(err))

    for i in range(count):
        producer.produce(
            topic, key=str(i).encode(), value=f"{topic}-{i}".encode(), on_delivery=on_delivery
        )
    assert producer.flush(30) == 0
    assert failed == []
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"g-{topic}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    values: list[bytes] = []
    deadline = time.monotonic() + 60
    try:
        while len(values) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            values.append(msg.value())
    finally:
        consumer.close()
    return values


def test_single_node_answers_with_the_listener_a_client_used(tmp_path: Path) -> None:
    internal, external = free_port(), free_port()
    broker = BrokerProcess(
        tmp_path / "data", overrides=two_listeners(internal, external), port=internal
    ).start()
    try:
        node = broker.overrides.get("node.id", "0")
        assert metadata_brokers(internal) == [(int(node), "127.0.0.1", internal)]
        assert metadata_brokers(external) == [(int(node), "localhost", external)]
        assert describe_cluster_brokers(external) == [(int(node), "localhost", external)]
        assert find_coordinator(external, "g-listeners")[1:] == ("localhost", external)
        assert find_coordinator(internal, "g-listeners")[1:] == ("127.0.0.1", internal)

        topic = f"listeners-{uuid.uuid4().hex[:8]}"
        values = round_trip(f"localhost:{external}", topic, 50)
        assert sorted(values) == sorted(f"{topic}-{i}".encode() for i in range(50))
    finally:
        broker.stop()
    assert "Traceback" not in broker.log_tail(400)


def test_cluster_replicates_on_the_inter_broker_listener(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, size=3)
    externals = {}
    for broker_id, b in cluster.brokers.items():
        externals[broker_id] = free_port()
        b.overrides.update(two_listeners(b.port, externals[broker_id]))
    cluster.start()
    try:
        expected_internal = [(i, "127.0.0.1", cluster.brokers[i].port) for i in sorted(externals)]
        expected_external = [(i, "localhost", externals[i]) for i in sorted(externals)]
        for broker_id in externals:
            assert metadata_brokers(cluster.brokers[broker_id].port) == expected_internal
            assert metadata_brokers(externals[broker_id]) == expected_external

        topic = f"listeners-rf3-{uuid.uuid4().hex[:8]}"
        cluster.create_topic(topic, partitions=3, replication_factor=3)
        bootstrap = ",".join(f"localhost:{p}" for p in externals.values())
        values = round_trip(bootstrap, topic, 300)
        assert sorted(values) == sorted(f"{topic}-{i}".encode() for i in range(300))
        # The followers caught up through the INTERNAL listener: every replica in sync.
        for p in range(3):
            view = cluster.wait_for_isr(topic, p, {1, 2, 3})
            assert set(view.isr) == {1, 2, 3}
        # The coordinator, asked through EXTERNAL, is given as its EXTERNAL endpoint.
        node, host, port = find_coordinator(externals[1], f"g-{topic}")
        assert (host, port) == ("localhost", externals[node])
    finally:
        cluster.stop()
