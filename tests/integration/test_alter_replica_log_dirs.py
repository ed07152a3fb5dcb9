"""AlterReplicaLogDirs (34, KIP-113): move a replica between a broker's log dirs while it
keeps serving.

Through kafka-python's ``KafkaAdminClient.alter_replica_log_dirs`` under a running
producer: records acknowledged before, during and after the move are all readable at the
same offsets afterwards, the files end up in the target dir, DescribeLogDirs shows the
future replica while it moves and sizes that match the files afterwards. Errors are
compared with Apache Kafka 4.1 on the same requests. A crash mid-move leaves the
original intact and the leftover ``-future`` dir is cleaned at start-up.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import TopicPartitionReplica
from kafka.admin import KafkaAdminClient

from tests.support.broker import BrokerProcess
from tests.support.kafka_ref import KafkaReference, run_tool

pytestmark = pytest.mark.timeout(240)


def where(dirs: list[Path], topic: str, partition: int) -> list[Path]:
    """The log dirs holding ``<topic>-<partition>`` (current, not future) on disk."""
    return [d for d in dirs if (d / f"{topic}-{partition}").is_dir()]


def log_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.glob("*.log"))


def read_all(bootstrap: str, topic: str, expect: int) -> dict[int, bytes]:
    c = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "reader", "enable.auto.commit": False}
    )
    c.assign([TopicPartition(topic, 0, 0)])
    got: dict[int, bytes] = {}
    deadline = time.monotonic() + 60
    while len(got) < expect and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got[m.offset()] = m.value()
    c.close()
    return got


class SteadyProducer(threading.Thread):
    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.topic = topic
        self.acked: list[tuple[int, bytes]] = []
        self.errors: list[str] = []
        self.stop_event = threading.Event()
        self.slow = False  # at most ~1,000 records/s: a throttled move must catch up
        self.p = Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 2,
                "batch.size": 65536,
            }
        )

    def _done(self, err: object, msg: object) -> None:
        if err is None:
            self.acked.append((msg.offset(), msg.value()))  # type: ignore[attr-defined]
        else:
            self.errors.append(str(err))

    def run(self) -> None:
        i = 0
        while not self.stop_event.is_set():
            self.p.produce(
                self.topic, value=b"r%07d" % i + b"." * 200, partition=0, callback=self._done
            )
            i += 1
            if i % 50 == 0:
                self.p.poll(0.001)
            if self.slow:
                time.sleep(0.001)
        self.p.flush(60)

    def wait_acked(self, n: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.acked) >= n, (len(self.acked), self.errors[:3])


class LiveConsumer(threading.Thread):
    """Reads the partition from offset 0 while it moves; records what and when."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.got: dict[int, bytes] = {}
        self.read_at: list[float] = []
        self.errors: list[str] = []
        self.stop_event = threading.Event()
        self.c = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": "live", "enable.auto.commit": False}
        )
        self.c.assign([TopicPartition(topic, 0, 0)])

    def run(self) -> None:
        while not self.stop_event.is_set():
            for m in self.c.consume(500, 0.2):
                if m.error() is None:
                    self.got[m.offset()] = m.value()
                    self.read_at.append(time.monotonic())
                else:
                    self.errors.append(str(m.error()))
        self.c.close()


def describe(admin: KafkaAdminClient, topic: str) -> dict[tuple[str, bool], int]:
    """(log dir, is_future) -> size of ``topic``-0 there."""
    (answer,) = admin.describe_log_dirs(topic_partitions={topic: [0]})
    out = {}
    for r in answer["log_dirs"]:
        assert r["error_code"] == 0
        for t in r["topics"]:
            for p in t["partitions"]:
                out[(r["log_dir"], p["is_future_key"])] = p["partition_size"]
    return out


@pytest.fixture
def two_dirs(tmp_path: Path):  # type: ignore[no-untyped-def]
    dirs = [tmp_path / "dir-a", tmp_path / "dir-b"]
    broker = BrokerProcess(
        tmp_path / "data",
        overrides={
            "log.dirs": ",".join(map(str, dirs)),
            "num.partitions": "1",
            # Kafka's quota on moves: a move of ~15 MB takes seconds, long enough to
            # observe (and kill) it mid-way.
            "replica.alter.log.dirs.io.max.bytes.per.second": "5000000",
        },
    ).start()
    try:
        yield broker, dirs
    finally:
        broker.kill()


def test_move_under_a_running_producer(two_dirs) -> None:  # type: ignore[no-untyped-def]
    broker, dirs = two_dirs
    topic = f"move-{uuid.uuid4().hex[:8]}"
    creator = AdminClient({"bootstrap.servers": broker.bootstrap})
    creator.create_topics([NewTopic(topic, num_partitions=1, config={"segment.bytes": "200000"})])[
        topic
    ].result(15)
    producer = SteadyProducer(broker.bootstrap, topic)
    producer.start()
    consumer = LiveConsumer(broker.bootstrap, topic)
    consumer.start()
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        producer.wait_acked(60_000, timeout=120)  # ~14 MB: the copy takes a while
        (source,) = where(dirs, topic, 0)
        target = next(d for d in dirs if d != source)
        producer.slow = True
        before_move = len(producer.acked)
        move_started = time.monotonic()
        result = admin.alter_replica_log_dirs(
            {TopicPartitionReplica(topic, 0, 0): os.path.abspath(target)}
        )
        assert [e.__name__ for e in result.values()] == ["NoError"]
        # While it moves: the future replica shows in the target dir.
        seen_future = False
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and where(dirs, topic, 0) != [target]:
            if (os.path.abspath(target), True) in describe(admin, topic):
                seen_future = True
            time.sleep(0.01)
        assert where(dirs, topic, 0) == [target]
        move_done = time.monotonic()
        assert seen_future
        assert len(producer.acked) > before_move  # acknowledged during the move
        mark = len(producer.acked)
        producer.wait_acked(mark + 2000)  # and after it
    finally:
        producer.stop_event.set()
        producer.join(60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(consumer.got) < len(producer.acked):
            time.sleep(0.1)
        consumer.stop_event.set()
        consumer.join(30)
    assert not producer.errors, producer.errors[:3]
    acked = producer.acked
    got = read_all(broker.bootstrap, topic, len(acked))
    missing = [(o, v) for o, v in acked if got.get(o) != v]
    assert not missing, (len(missing), missing[:3])
    assert len(got) == len(acked)
    # The live consumer read throughout the move and saw the same records.
    assert any(move_started <= t <= move_done for t in consumer.read_at)
    assert consumer.got == {o: got[o] for o in consumer.got} and len(consumer.got) == len(got)
    assert not consumer.errors, consumer.errors[:3]
    # The old dir is gone (after the retire delay), sizes match the files.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and list(source.glob(f"{topic}-0*")):
        time.sleep(0.2)
    assert list(source.glob(f"{topic}-0*")) == []
    sizes = describe(admin, topic)
    assert sizes == {(os.path.abspath(target), False): log_bytes(target / f"{topic}-0")}
    admin.close()

    # A restart reads the moved log: same records at the same offsets.
    broker.restart()
    again = read_all(broker.bootstrap, topic, len(acked))
    assert again == got


def alter_codes(bootstrap: str, broker_id: int, topic: str, path: str) -> str:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        out = admin.alter_replica_log_dirs({TopicPartitionReplica(topic, 0, broker_id): path})
        (error,) = out.values()
        return error.__name__
    finally:
        admin.close()


def test_errors_match_kafka(two_dirs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    broker, dirs = two_dirs
    ref_dirs = [tmp_path / "ref-a", tmp_path / "ref-b"]
    ref = KafkaReference(tmp_path / "ref", overrides={"log.dirs": ",".join(map(str, ref_dirs))})
    ref.start()
    try:
        answers = {}
        for name, bootstrap, ds in (
            ("pybroker", broker.bootstrap, dirs),
            ("kafka", ref.bootstrap, ref_dirs),
        ):
            creator = AdminClient({"bootstrap.servers": bootstrap})
            creator.create_topics([NewTopic("known", num_partitions=1)])["known"].result(30)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not where(ds, "known", 0):
                time.sleep(0.1)
            (here,) = where(ds, "known", 0)
            node = node_id(bootstrap)
            answers[name] = [
                alter_codes(bootstrap, node, "known", os.path.abspath(here)),  # already there
                alter_codes(bootstrap, node, "known", str(tmp_path / "no-such-dir")),
                alter_codes(bootstrap, node, "nosuchtopic", os.path.abspath(ds[0])),
                alter_codes(bootstrap, node, "nosuchtopic", str(tmp_path / "no-such-dir")),
            ]
        assert answers["pybroker"] == answers["kafka"], answers
        # Kafka 4.1: already there is fine; a dir not in log.dirs; a topic that does not
        # exist; both (the dir is checked first).
        assert answers["kafka"] == [
            "NoError",
            "LogDirNotFoundError",
            "UnknownTopicOrPartitionError",
            "LogDirNotFoundError",
        ]
    finally:
        ref.stop()


def node_id(bootstrap: str) -> int:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return int(admin.describe_cluster()["brokers"][0]["broker_id"])
    finally:
        admin.close()


def test_crash_mid_move_keeps_the_original(two_dirs) -> None:  # type: ignore[no-untyped-def]
    """SIGKILL while the future log is being filled: the restarted broker has the original
    log with every acknowledged record, and the leftover ``-future`` dir is gone."""
    broker, dirs = two_dirs
    topic = f"crash-{uuid.uuid4().hex[:8]}"
    creator = AdminClient({"bootstrap.servers": broker.bootstrap})
    creator.create_topics([NewTopic(topic, num_partitions=1)])[topic].result(15)
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 5})
    value = os.urandom(1000)
    for i in range(60_000):  # ~60 MB: the copy takes longer than the kill below
        p.produce(topic, key=b"%d" % i, value=value, partition=0)
        if i % 1000 == 0:
            p.poll(0)
    assert p.flush(60) == 0
    (source,) = where(dirs, topic, 0)
    target = next(d for d in dirs if d != source)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    result = admin.alter_replica_log_dirs({TopicPartitionReplica(topic, 0, 0): str(target)})
    assert [e.__name__ for e in result.values()] == ["NoError"]
    admin.close()
    futures = list(target.glob(f"{topic}-0.*-future"))
    assert futures, "the move finished before the kill: nothing tested"
    broker.kill()
    assert where(dirs, topic, 0) == [source]

    broker.start()
    assert list(target.glob(f"{topic}-0.*")) == []  # the future is cleaned at start-up
    assert where(dirs, topic, 0) == [source]
    assert "unfinished move" in broker.log_tail(400)
    c = Consumer(
        {"bootstrap.servers": broker.bootstrap, "group.id": "r", "enable.auto.commit": False}
    )
    c.assign([TopicPartition(topic, 0, 0)])
    keys = []
    deadline = time.monotonic() + 90
    while len(keys) < 60_000 and time.monotonic() < deadline:
        for m in c.consume(1000, 0.5):
            if m.error() is None:
                assert m.offset() == len(keys)
                keys.append(m.key())
    c.close()
    assert keys == [b"%d" % i for i in range(60_000)]


def test_kafka_reassign_partitions_tool_moves_the_log_dir(two_dirs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Kafka's own ``kafka-reassign-partitions`` with "log_dirs": execute, then verify
    (which reads DescribeLogDirs) reports the replica moved."""
    broker, dirs = two_dirs
    topic = f"tool-{uuid.uuid4().hex[:8]}"
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(1000):
        p.produce(topic, value=b"v%d" % i, partition=0)
    assert p.flush(30) == 0
    (source,) = where(dirs, topic, 0)
    target = next(d for d in dirs if d != source)
    plan = tmp_path / "plan.json"
    plan.write_text(
        json.dumps(
            {
                "version": 1,
                "partitions": [
                    {"topic": topic, "partition": 0, "replicas": [0], "log_dirs": [str(target)]}
                ],
            }
        )
    )
    args = ("--bootstrap-server", broker.bootstrap, "--reassignment-json-file", str(plan))
    out = run_tool("kafka-reassign-partitions", *args, "--execute")
    assert out.returncode == 0, out
    assert f"Successfully started moving log directory to {target}" in out.stdout
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and where(dirs, topic, 0) != [target]:
        time.sleep(0.1)
    assert where(dirs, topic, 0) == [target]
    out = run_tool("kafka-reassign-partitions", *args, "--verify")
    assert out.returncode == 0, out
    assert f"Reassignment of replica {topic}-0-0 completed successfully." in out.stdout
    got = read_all(broker.bootstrap, topic, 1000)
    assert got == {i: b"v%d" % i for i in range(1000)}
