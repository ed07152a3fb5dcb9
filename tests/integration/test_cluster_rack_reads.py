"""Fetch from the closest replica (KIP-392): a consumer reads from a follower in its rack.

Three brokers in three racks with Kafka's RackAwareReplicaSelector. The leader, asked by
a consumer that names a follower's rack, answers with that follower as the preferred
read replica and no records; the follower serves the records up to its high watermark.
Checked twice: over the raw protocol (the leader's answer, then the follower's), and with
librdkafka (client.rack), whose statistics show which broker it fetched the partition
from, and which must read exactly the records the leader holds.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer

from tests.support.cluster import Cluster
from tests.support.txn_wire import Fetched
from tests.support.txn_wire import fetch as txn_fetch
from tests.support.wire import KafkaWire

SELECTOR = "org.apache.kafka.common.replica.RackAwareReplicaSelector"


def fetch(port: int, topic: str, rack: str) -> Fetched:
    """A consumer's Fetch of partition 0 from offset 0, naming ``rack``."""
    with KafkaWire(port=port) as wire:
        return txn_fetch(wire, topic, rack=rack)


def produce(bootstrap: str, topic: str, count: int) -> list[bytes]:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    failed: list[str] = []
    values = [f"{topic}-{i}".encode() for i in range(count)]
    for v in values:
        producer.produce(
            topic, value=v, partition=0, on_delivery=lambda e, _m: e and failed.append(str(e))
        )
    assert producer.flush(30) == 0
    assert failed == []
    return values


def consume_with_rack(bootstrap: str, topic: str, rack: str, count: int) -> tuple[list, dict]:
    """Read ``count`` records as a librdkafka consumer in ``rack``; also its last stats."""
    stats: dict[str, Any] = {}

    def on_stats(text: str) -> None:
        stats.update(json.loads(text))

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"rack-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "client.rack": rack,
            "statistics.interval.ms": 200,
            "stats_cb": on_stats,
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
        end = time.monotonic() + 2  # let one more statistics report arrive
        while time.monotonic() < end:
            consumer.poll(0.1)
    finally:
        consumer.close()
    return values, stats


def fetching_broker(stats: dict[str, Any], topic: str) -> set[int]:
    """Broker ids whose librdkafka toppars include ``topic``-0 (where it fetches it)."""
    ids = set()
    for b in stats.get("brokers", {}).values():
        if b.get("nodeid", -1) < 0:
            continue
        for tp in b.get("toppars", {}).values():
            if tp.get("topic") == topic and tp.get("partition") == 0:
                ids.add(int(b["nodeid"]))
    return ids


def test_consumer_reads_from_the_follower_in_its_rack(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, size=3, overrides={"replica.selector.class": SELECTOR})
    for broker_id, b in cluster.brokers.items():
        b.overrides["broker.rack"] = f"rack-{broker_id}"
    cluster.start()
    try:
        topic = f"rack-reads-{uuid.uuid4().hex[:8]}"
        cluster.create_topic(topic, partitions=1, replication_factor=3)
        view = cluster.wait_for_isr(topic, 0, {1, 2, 3})
        leader = view.leader
        follower = next(r for r in view.replicas if r != leader)
        values = produce(cluster.bootstrap, topic, 500)
        cluster.wait_until(
            "follower high watermark 500",
            lambda: fetch(cluster.brokers[follower].port, topic, "").high_watermark == 500 or None,
        )

        # The leader sends a consumer of the follower's rack there, with offsets, no records.
        redirected = fetch(cluster.brokers[leader].port, topic, f"rack-{follower}")
        assert redirected.error_code == 0
        assert redirected.preferred_read_replica == follower
        assert redirected.high_watermark == 500
        assert not redirected.records
        # In its own rack, or with none, the leader serves the records itself.
        for rack in (f"rack-{leader}", "", "rack-elsewhere"):
            served = fetch(cluster.brokers[leader].port, topic, rack)
            assert served.preferred_read_replica == -1 and served.records
        # The follower serves the same bytes the leader holds.
        from_follower = fetch(cluster.brokers[follower].port, topic, f"rack-{follower}")
        from_leader = fetch(cluster.brokers[leader].port, topic, f"rack-{leader}")
        assert from_follower.error_code == 0 and from_follower.preferred_read_replica == -1
        assert from_follower.records == from_leader.records
        assert [v for _, v in from_follower.values] == values

        # A librdkafka consumer in the follower's rack reads everything, from the follower.
        got, stats = consume_with_rack(cluster.bootstrap, topic, f"rack-{follower}", 500)
        assert got == values
        assert fetching_broker(stats, topic) == {follower}
        # And one in the leader's rack reads from the leader.
        got, stats = consume_with_rack(cluster.bootstrap, topic, f"rack-{leader}", 500)
        assert got == values
        assert fetching_broker(stats, topic) == {leader}
    finally:
        cluster.stop()
