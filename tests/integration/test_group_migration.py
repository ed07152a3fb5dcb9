"""Online group migration with stock clients: a classic group rolled to the KIP-848 consumer
protocol one member at a time, and rolled back, while it consumes.

librdkafka (confluent-kafka) speaks both protocols (``group.protocol=classic|consumer``).
Phase 1: two classic members. Phase 2: one restarts on the consumer protocol, which
upgrades the group online; the other keeps consuming as a classic member inside the
consumer group. Phase 3: the consumer-protocol member leaves, which downgrades the group,
and the classic member takes every partition. Each record is consumed exactly once, by
a member of its phase, and the group's type follows the migration.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from tests.support.broker import BrokerProcess
from tests.support.clients import confluent_create_topic

PARTITIONS = 4
PER_PHASE = 40
TIMEOUT_S = 60.0


class Member:
    """A confluent-kafka consumer polling in a thread; it commits every record it takes,
    so a partition that moves on carries on from exactly there."""

    def __init__(self, name: str, bootstrap: str, group: str, topic: str, protocol: str) -> None:
        self.name = name
        conf: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "group.protocol": protocol,
            "client.id": name,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
        if protocol == "classic":
            conf.update({"session.timeout.ms": 10_000, "heartbeat.interval.ms": 500})
            conf["partition.assignment.strategy"] = "cooperative-sticky"
        self.consumer = Consumer(conf)
        self.records: list[tuple[int, int, bytes]] = []
        self.assignment: set[int] = set()
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._topic = topic
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.consumer.subscribe([self._topic])
        while not self._stop.is_set():
            msg = self.consumer.poll(0.1)
            self.assignment = {tp.partition for tp in self.consumer.assignment()}
            if msg is None:
                continue
            if msg.error():
                self.errors.append(str(msg.error()))
                continue
            self.consumer.commit(message=msg, asynchronous=False)
            self.records.append((msg.partition(), msg.offset(), msg.value()))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=TIMEOUT_S)
        self.consumer.close()


def produce(bootstrap: str, topic: str, phase: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for i in range(PER_PHASE):
        producer.produce(topic, value=f"phase{phase}-{i}".encode(), partition=i % PARTITIONS)
    assert producer.flush(TIMEOUT_S) == 0


def wait_for(what: str, check: Any) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def consumed(members: list[Member], phase: int) -> list[tuple[str, int, int]]:
    prefix = f"phase{phase}-".encode()
    return sorted((m.name, p, o) for m in members for p, o, v in m.records if v.startswith(prefix))


def group_description(admin: AdminClient, group: str) -> Any:
    return admin.describe_consumer_groups([group])[group].result(timeout=TIMEOUT_S)


def test_rolling_upgrade_to_the_consumer_protocol_and_back(broker: BrokerProcess) -> None:
    bootstrap = broker.bootstrap
    topic = f"migrate-{uuid.uuid4().hex[:8]}"
    group = f"migrate-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    confluent_create_topic(bootstrap, topic, PARTITIONS)
    everyone = set(range(PARTITIONS))

    # Phase 1: a classic group of two.
    a = Member("a-classic", bootstrap, group, topic, "classic")
    b = Member("b-classic", bootstrap, group, topic, "classic")
    wait_for(
        "a and b to split",
        lambda: (
            a.assignment | b.assignment == everyone
            and a.assignment
            and b.assignment
            and not a.assignment & b.assignment
        ),
    )
    produce(bootstrap, topic, 1)
    wait_for("phase 1", lambda: len(consumed([a, b], 1)) == PER_PHASE)
    assert str(group_description(admin, group).type).endswith("CLASSIC")
    b.close()

    # Phase 2: b comes back on the consumer protocol; the group is upgraded online and a
    # keeps consuming inside it as a classic member.
    b2 = Member("b-consumer", bootstrap, group, topic, "consumer")
    wait_for(
        "a and b2 to split",
        lambda: (
            a.assignment | b2.assignment == everyone
            and a.assignment
            and b2.assignment
            and not a.assignment & b2.assignment
        ),
    )
    described = group_description(admin, group)
    assert str(described.type).endswith("CONSUMER")
    assert sorted(m.client_id for m in described.members) == ["a-classic", "b-consumer"]
    owners = {
        m.client_id: {tp.partition for tp in m.assignment.topic_partitions}
        for m in described.members
    }
    assert owners == {"a-classic": a.assignment, "b-consumer": b2.assignment}
    produce(bootstrap, topic, 2)
    wait_for("phase 2", lambda: len(consumed([a, b2], 2)) == PER_PHASE)
    phase2 = consumed([a, b2], 2)
    assert {name for name, _, _ in phase2} == {"a-classic", "b-consumer"}
    for name, partition, _ in phase2:
        assert partition in (a.assignment if name == "a-classic" else b2.assignment)
    b2.close()

    # Phase 3: the last consumer-protocol member left: the group is classic again and a
    # owns every partition.
    wait_for("a to own everything", lambda: a.assignment == everyone)
    assert str(group_description(admin, group).type).endswith("CLASSIC")
    produce(bootstrap, topic, 3)
    wait_for("phase 3", lambda: len(consumed([a], 3)) == PER_PHASE)
    a.close()

    # Exactly once overall, and the committed offsets are the log's end.
    everything = consumed([a, b, b2], 1) + consumed([a, b, b2], 2) + consumed([a, b, b2], 3)
    assert len(everything) == 3 * PER_PHASE
    assert len({(p, o) for _, p, o in everything}) == 3 * PER_PHASE
    for m in (a, b, b2):
        assert m.errors == []
    checker = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        committed = checker.committed(
            [TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=TIMEOUT_S
        )
    finally:
        checker.close()
    assert {tp.partition: tp.offset for tp in committed} == {
        p: 3 * PER_PHASE // PARTITIONS for p in range(PARTITIONS)
    }
    log = broker.log_path.read_text(errors="replace")
    assert f"[GroupId {group}] Upgrading the classic group" in log
    assert f"[GroupId {group}] Downgraded the consumer group to a classic group" in log
