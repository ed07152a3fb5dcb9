"""Partition reassignment in a 3-broker ZooKeeper cluster (issue #11), through stock
clients: kafka-python's admin (AlterPartitionReassignments / ListPartitionReassignments),
Kafka's own ``kafka-reassign-partitions`` tool and confluent-kafka producers/consumers.

Moving a partition from brokers [1, 2] to [2, 3] under a running idempotent acks=all
producer with min.insync.replicas=2 surfaces no error and loses nothing: the new replica
catches up before the old one leaves, leadership moves only by an election among in-sync
targets, the old replica deletes its log. Cancelling an unfinished move reverts to the
original replicas. Errors are Kafka's.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as CTopicPartition
from kafka import KafkaAdminClient
from kafka import TopicPartition as KTopicPartition
from kafka.admin import NewTopic
from kazoo.client import KazooClient
from kio.schema.errors import ErrorCode

from tests.support.cluster import Cluster
from tests.support.kafka_ref import run_tool
from tests.support.wire import KafkaWire, request_module

pytestmark = pytest.mark.timeout(240)

ALTER, LIST = 45, 46
PAD = b"." * 1000  # 1 KB records: the new replica has megabytes to catch up


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(
        Path(tmp_path_factory.mktemp("reassign")),
        3,
        {"auto.leader.rebalance.enable": "false"},
    )
    try:
        yield c.start()
    finally:
        c.stop()


def create(cluster: Cluster, name: str, replicas: list[int], min_isr: int = 2) -> None:
    admin = kafka_admin(cluster)
    topic = NewTopic(
        name,
        num_partitions=-1,
        replication_factor=-1,
        replica_assignments={0: replicas},
        topic_configs={"min.insync.replicas": str(min_isr)},
    )
    admin.create_topics([topic], timeout_ms=30_000)
    admin.close()
    cluster.wait_for_isr(name, 0, set(replicas))


def kafka_admin(cluster: Cluster) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=cluster.bootstrap, request_timeout_ms=30_000)


class SteadyProducer:
    """An idempotent acks=all confluent-kafka producer sending distinct values until
    stopped; records every acknowledgement and every error it reports."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.acked: list[tuple[int, bytes]] = []
        self.errors: list[str] = []
        self.sent = 0
        self._stop = threading.Event()
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "message.timeout.ms": 120_000,
                "error_cb": lambda err: self.errors.append(f"error_cb: {err}"),
            }
        )
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _done(self, err: Any, msg: Any) -> None:
        if err is None:
            self.acked.append((msg.offset(), msg.value()))
        else:
            self.errors.append(f"delivery: {err}")

    def _run(self) -> None:
        while not self._stop.is_set():
            self._producer.produce(
                self.topic, value=b"v%08d" % self.sent + PAD, partition=0, callback=self._done
            )
            self.sent += 1
            self._producer.poll(0.001)
        self._producer.flush(120)
        del self._producer  # destroys the client: no reconnecting after the test

    def start(self) -> SteadyProducer:
        self._thread.start()
        return self

    def wait_acked(self, count: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.acked) >= count, (len(self.acked), self.errors[:5])

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(150)
        assert not self._thread.is_alive()


def read_partition(bootstrap: str, topic: str, expect: int) -> list[tuple[int, bytes]]:
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{topic}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    c.assign([CTopicPartition(topic, 0, 0)])
    got: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + 60
    while len(got) < expect and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        got.append((m.offset(), m.value()))
    c.close()
    return got


def log_dir_of(cluster: Cluster, broker: int, topic: str) -> Path:
    return cluster.brokers[broker].data_dir / f"{topic}-0"


def alter_raw(
    cluster: Cluster,
    topic: str,
    partition: int,
    replicas: list[int] | None,
    allow: bool = True,
    via: int = 3,
) -> tuple[ErrorCode, str | None]:
    m = request_module(ALTER, 1)
    req = m.AlterPartitionReassignmentsRequest(
        allow_replication_factor_change=allow,
        topics=(
            m.ReassignableTopic(
                name=topic,
                partitions=(
                    m.ReassignablePartition(
                        partition_index=partition,
                        replicas=None if replicas is None else tuple(replicas),
                    ),
                ),
            ),
        ),
    )
    with KafkaWire(port=cluster.brokers[via].port) as conn:
        resp = conn.request(req)
    assert resp.error_code == ErrorCode.none
    assert resp.allow_replication_factor_change == allow
    ((p,),) = [t.partitions for t in resp.responses]
    return p.error_code, p.error_message


def list_raw(cluster: Cluster, via: int) -> dict[tuple[str, int], tuple[tuple[int, ...], ...]]:
    """ListPartitionReassignments (all) from broker ``via``: (replicas, adding, removing)."""
    m = request_module(LIST, 0)
    with KafkaWire(port=cluster.brokers[via].port) as conn:
        resp = conn.request(m.ListPartitionReassignmentsRequest(topics=None))
    assert resp.error_code == ErrorCode.none
    return {
        (str(t.name), int(p.partition_index)): (
            tuple(p.replicas),
            tuple(p.adding_replicas),
            tuple(p.removing_replicas),
        )
        for t in resp.topics
        for p in t.partitions
    }


def test_move_under_acks_all_producer_loses_nothing(cluster: Cluster) -> None:
    topic = "moving"
    create(cluster, topic, [1, 2])
    producer = SteadyProducer(cluster.bootstrap, topic).start()
    isr_sizes: list[int] = []
    sampling = threading.Event()

    def sample() -> None:  # the ISR as clients see it, all through the move
        while not sampling.is_set():
            try:
                isr_sizes.append(len(cluster.partition(topic, 0).isr))
            except (OSError, KeyError):
                pass
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        producer.wait_acked(5000)
        sampler.start()
        admin = kafka_admin(cluster)
        result = admin.alter_partition_reassignments({KTopicPartition(topic, 0): [2, 3]})
        assert result == {KTopicPartition(topic, 0): None}
        listed = admin.list_partition_reassignments()
        # Either still moving (RS = TRS + ORS) or already done: never anything else.
        assert listed in (
            {},
            {
                KTopicPartition(topic, 0): {
                    "replicas": [2, 3, 1],
                    "adding_replicas": [3],
                    "removing_replicas": [1],
                }
            },
        ), listed

        def moved() -> Any:
            view = cluster.partition(topic, 0)
            done = view.replicas == (2, 3) and set(view.isr) == {2, 3} and view.leader in (2, 3)
            return view if done else None

        view = cluster.wait_until("the move to [2, 3]", moved, timeout=60)
        assert view.leader == 2  # the first in-sync target: the new preferred replica
        before = len(producer.acked)
        producer.wait_acked(before + 1000)
        sampling.set()
        sampler.join(10)
        assert isr_sizes and min(isr_sizes) >= 2, isr_sizes
        assert admin.list_partition_reassignments() == {}
        admin.close()
    finally:
        sampling.set()
        producer.stop()
    assert producer.errors == []
    acked = sorted(producer.acked)
    assert len(acked) == producer.sent
    got = read_partition(cluster.bootstrap, topic, len(acked))
    assert got == acked  # same records at the same offsets, nothing lost or duplicated
    cluster.wait_until(
        "broker 1 to delete its replica", lambda: not log_dir_of(cluster, 1, topic).exists()
    )
    assert log_dir_of(cluster, 3, topic).exists()


def test_cancel_reverts_to_the_original_replicas(cluster: Cluster) -> None:
    topic = "cancelled"
    # [L, c] -> [c, n], c the controller. L, the partition's leader, is frozen (SIGSTOP,
    # shorter than the session timeout), so n cannot catch up and the move cannot finish.
    # Requests go to c and n directly (an admin client might pick the frozen broker).
    c = int(cluster.metadata([]).controller_id)
    leader, n = sorted({1, 2, 3} - {c})
    create(cluster, topic, [leader, c])
    assert cluster.partition(topic, 0).leader == leader
    proc = cluster.brokers[leader].proc
    assert proc is not None
    proc.send_signal(signal.SIGSTOP)
    try:
        assert alter_raw(cluster, topic, 0, [c, n], via=n) == (ErrorCode.none, None)
        moving = {(topic, 0): ((c, n, leader), (n,), (leader,))}
        assert list_raw(cluster, via=n) == moving
        assert list_raw(cluster, via=c) == moving  # every broker sees it
        assert cluster.partition(topic, 0, via=c).replicas == (c, n, leader)
        cluster.wait_until(
            "the new replica's log", lambda: log_dir_of(cluster, n, topic).exists(), timeout=3
        )
        assert alter_raw(cluster, topic, 0, None, via=c) == (ErrorCode.none, None)
        assert list_raw(cluster, via=c) == {}
    finally:
        proc.send_signal(signal.SIGCONT)
    view = cluster.wait_for_isr(topic, 0, {leader, c})
    assert view.replicas == (c, leader)  # Kafka's revert: RS without the adding replicas
    admin = kafka_admin(cluster)
    assert admin.list_partition_reassignments() == {}
    admin.close()
    code, message = alter_raw(cluster, topic, 0, None)
    assert (code, message) == (ErrorCode.no_reassignment_in_progress, None)
    cluster.wait_until(
        "the cancelled replica to delete its log",
        lambda: not log_dir_of(cluster, n, topic).exists(),
    )


def test_errors_as_kafka(cluster: Cluster) -> None:
    topic = "errors"
    create(cluster, topic, [1, 2], min_isr=1)
    cases = {
        "unknown topic": (("nope", 0, [1, 2]), ErrorCode.unknown_topic_or_partition),
        "unknown partition": ((topic, 5, [1, 2]), ErrorCode.unknown_topic_or_partition),
        "empty": ((topic, 0, []), ErrorCode.invalid_replica_assignment),
        "duplicate": ((topic, 0, [2, 2]), ErrorCode.invalid_replica_assignment),
        "unregistered": ((topic, 0, [2, 9]), ErrorCode.invalid_replica_assignment),
        "cancel nothing": ((topic, 0, None), ErrorCode.no_reassignment_in_progress),
    }
    for what, ((t, p, replicas), expected) in cases.items():
        code, message = alter_raw(cluster, t, p, replicas)
        assert code == expected, (what, code, message)
    assert alter_raw(cluster, topic, 0, [2, 9])[1] == (
        "The manual partition assignment includes broker 9, but no such broker is registered."
    )
    code, message = alter_raw(cluster, topic, 0, [1, 2, 3], allow=False)
    assert (code, message) == (
        ErrorCode.invalid_replication_factor,
        "The replication factor is changed from 2 to 3",
    )
    assert cluster.partition(topic, 0).replicas == (1, 2)
    # Growing the replication factor is a reassignment too.
    assert alter_raw(cluster, topic, 0, [1, 2, 3]) == (ErrorCode.none, None)
    cluster.wait_for_isr(topic, 0, {1, 2, 3})
    assert cluster.partition(topic, 0).replicas == (1, 2, 3)


def test_kafka_reassign_partitions_tool(cluster: Cluster, tmp_path: Path) -> None:
    topic = "tooled"
    create(cluster, topic, [3, 1], min_isr=1)
    plan = tmp_path / "plan.json"
    plan.write_text(
        json.dumps(
            {"version": 1, "partitions": [{"topic": topic, "partition": 0, "replicas": [1, 2]}]}
        )
    )
    bootstrap = cluster.brokers[1].bootstrap
    out = run_tool(
        "kafka-reassign-partitions",
        "--bootstrap-server",
        bootstrap,
        "--reassignment-json-file",
        str(plan),
        "--execute",
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Successfully started partition reassignment" in out.stdout, out.stdout

    def verified() -> bool:
        v = run_tool(
            "kafka-reassign-partitions",
            "--bootstrap-server",
            bootstrap,
            "--reassignment-json-file",
            str(plan),
            "--verify",
        )
        return v.returncode == 0 and f"Reassignment of partition {topic}-0 is completed" in v.stdout

    cluster.wait_until("the tool to verify the move", verified, timeout=90, interval=1)
    view = cluster.wait_for_isr(topic, 0, {1, 2})
    assert view.replicas == (1, 2) and view.leader == 1


def test_legacy_reassign_partitions_znode(cluster: Cluster) -> None:
    """Kafka's ZooKeeper-era way: a tool writes ``/admin/reassign_partitions``; the
    controller starts the moves, and deletes the znode once they are done."""
    topic = "legacy"
    create(cluster, topic, [1, 2], min_isr=1)
    zk = KazooClient(hosts=cluster.zk.connect, timeout=10)
    zk.start(timeout=10)
    try:
        plan = {"version": 1, "partitions": [{"topic": topic, "partition": 0, "replicas": [3, 1]}]}
        zk.create("/admin/reassign_partitions", json.dumps(plan).encode())

        def moved() -> bool:
            view = cluster.partition(topic, 0)
            return view.replicas == (3, 1) and set(view.isr) == {3, 1}

        cluster.wait_until("the move to [3, 1]", moved)
        cluster.wait_until(
            "the znode to be deleted", lambda: zk.exists("/admin/reassign_partitions") is None
        )
        assert json.loads(zk.get(f"/brokers/topics/{topic}")[0]) == {
            "partitions": {"0": [3, 1]},
            "topic_id": json.loads(zk.get(f"/brokers/topics/{topic}")[0])["topic_id"],
            "adding_replicas": {},
            "removing_replicas": {},
            "version": 3,
        }
    finally:
        zk.stop()
        zk.close()
    cluster.wait_until(
        "broker 2 to delete its replica", lambda: not log_dir_of(cluster, 2, topic).exists()
    )


def test_move_survives_a_controller_crash(cluster: Cluster) -> None:
    """The move's state lives in ZooKeeper: [L, n] -> [n, c] is started while L (the
    leader) is frozen, then c, the controller and a target, is killed. The next
    controller finishes the move once c is back and in sync."""
    topic = "failover"
    c = int(cluster.metadata([]).controller_id)
    leader, n = sorted({1, 2, 3} - {c})
    create(cluster, topic, [leader, n], min_isr=1)
    values = [b"r%05d" % i for i in range(2000)]
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
    for v in values:
        producer.produce(topic, value=v, partition=0)
    assert producer.flush(60) == 0
    del producer
    proc = cluster.brokers[leader].proc
    assert proc is not None
    proc.send_signal(signal.SIGSTOP)
    try:
        assert alter_raw(cluster, topic, 0, [n, c], via=n) == (ErrorCode.none, None)
        cluster.brokers[c].kill()
    finally:
        proc.send_signal(signal.SIGCONT)
    cluster.wait_until(
        "a new controller", lambda: int(cluster.metadata([]).controller_id) in (leader, n)
    )
    assert list_raw(cluster, via=n) == {(topic, 0): ((n, c, leader), (c,), (leader,))}
    cluster.brokers[c].start()
    cluster.wait_for_brokers({1, 2, 3})

    def moved() -> bool:
        view = cluster.partition(topic, 0)
        return view.replicas == (n, c) and set(view.isr) == {n, c} and view.leader == n

    cluster.wait_until("the move to finish under the new controller", moved, timeout=60)
    assert list_raw(cluster, via=c) == {}
    got = read_partition(cluster.bootstrap, topic, len(values))
    assert [v for _, v in got] == values
