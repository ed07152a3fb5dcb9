"""Consumer groups in a cluster: the group coordinator fails over with its partition.

``__consumer_offsets`` is an ordinary replicated topic (RF 3 here): when the broker
leading the group's partition is killed, another in-sync replica leads it, loads the
group's offsets from its copy of the log and becomes the coordinator. A consumer keeps
consuming across that, and no committed offset ever goes backwards.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Producer,
)
from confluent_kafka.admin import AdminClient

from tests.support.cluster import Cluster
from tests.support.txn_wire import find_coordinator

TOPIC, PARTITIONS, RECORDS = "events", 4, 4000


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, 3)
    try:
        yield c.start()
    finally:
        c.stop()


def coordinator_of(cluster: Cluster, group: str) -> int:
    with cluster._any_wire() as conn:
        resp = find_coordinator(conn, group, key_type=0)
    return int(resp.node_id)


def committed(admin: AdminClient, group: str) -> dict[int, int]:
    fut = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group]
    return {tp.partition: tp.offset for tp in fut.result(30).topic_partitions if tp.offset >= 0}


def test_group_survives_coordinator_failover(cluster: Cluster) -> None:
    cluster.create_topic(TOPIC, PARTITIONS, 3, {"min.insync.replicas": "2"})
    p = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
    for i in range(RECORDS):
        p.produce(TOPIC, key=b"%d" % i, value=b"v%d" % i)
    assert p.flush(60) == 0
    group = "failover-group"
    c = Consumer(
        {
            "bootstrap.servers": cluster.bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 10_000,
        }
    )
    c.subscribe([TOPIC])
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    seen: set[bytes] = set()
    history: list[dict[int, int]] = []
    stop = threading.Event()

    def watch_commits() -> None:
        while not stop.is_set():
            try:
                history.append(committed(admin, group))
            except Exception:
                pass  # the coordinator may be moving
            time.sleep(0.2)

    watcher = threading.Thread(target=watch_commits, daemon=True)
    watcher.start()
    killed = None
    deadline = time.monotonic() + 120
    try:
        while len(seen) < RECORDS and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                assert m.error().code() == KafkaError._PARTITION_EOF or m.error().retriable()
                continue
            seen.add(m.value())
            if len(seen) % 100 == 0:
                try:
                    c.commit(asynchronous=False)
                except Exception:
                    pass  # a commit refused during the fail-over is retried at the next one
            if killed is None and len(seen) >= RECORDS // 3:
                killed = coordinator_of(cluster, group)
                cluster.brokers[killed].kill()
        try:
            c.commit(asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:  # all already committed
                raise
    finally:
        stop.set()
        watcher.join(10)
        c.close()
    assert killed is not None
    assert len(seen) == RECORDS
    final = committed(admin, group)
    assert sum(final.values()) == RECORDS
    assert coordinator_of(cluster, group) != killed
    # No committed offset ever went backwards, whoever answered.
    for before, after in zip(history, history[1:], strict=False):
        for part, offset in before.items():
            assert after.get(part, offset) >= offset, (part, before, after)


def test_aiokafka_group_survives_coordinator_failover(cluster: Cluster) -> None:
    import asyncio

    from aiokafka import AIOKafkaConsumer
    from aiokafka.errors import KafkaError as AIOKafkaError

    topic, group = "aio-events", "aio-group"
    cluster.create_topic(topic, PARTITIONS, 3, {"min.insync.replicas": "2"})
    p = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
    for i in range(RECORDS):
        p.produce(topic, key=b"%d" % i, value=b"a%d" % i)
    assert p.flush(60) == 0
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    history: list[dict[int, int]] = []
    seen: set[bytes] = set()
    killed: list[int] = []

    async def consume() -> None:
        c = AIOKafkaConsumer(
            topic,
            bootstrap_servers=cluster.bootstrap,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            session_timeout_ms=10_000,
            request_timeout_ms=15_000,
        )
        await c.start()
        try:
            deadline = time.monotonic() + 120
            while len(seen) < RECORDS and time.monotonic() < deadline:
                batches = await c.getmany(timeout_ms=500)
                for records in batches.values():
                    seen.update(r.value for r in records)
                try:
                    await c.commit()
                except AIOKafkaError:
                    pass  # refused during the fail-over: the next commit carries it
                try:
                    history.append(await asyncio.to_thread(committed, admin, group))
                except Exception:
                    pass  # the coordinator may be moving
                if not killed and len(seen) >= RECORDS // 3:
                    killed.append(coordinator_of(cluster, group))
                    cluster.brokers[killed[0]].kill()
            # The last commit may still meet the dead coordinator (aiokafka surfaces
            # NodeNotReady while it rediscovers): retry it, bounded, as an app would.
            for attempt in range(20):
                try:
                    await c.commit()
                    break
                except AIOKafkaError:
                    if attempt == 19:
                        raise
                    await asyncio.sleep(0.5)
            # Stop only once no partition is led by the killed broker any more (its
            # ZooKeeper session must expire first): aiokafka's stop() awaits its in-flight
            # fetches, and one still aimed at a dead leader ends there in CancelledError.
            live = set(cluster.brokers) - set(killed)
            for p in range(PARTITIONS):
                await asyncio.to_thread(cluster.wait_for_leader, topic, p, live)
            await c.getmany(timeout_ms=1000)  # let the fetcher retarget its partitions
        finally:
            await c.stop()

    asyncio.run(consume())
    assert killed and len(seen) == RECORDS
    assert sum(committed(admin, group).values()) == RECORDS
    assert coordinator_of(cluster, group) != killed[0]
    for before, after in zip(history, history[1:], strict=False):
        for part, offset in before.items():
            assert after.get(part, offset) >= offset, (part, before, after)
