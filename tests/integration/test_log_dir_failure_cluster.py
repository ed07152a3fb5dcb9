"""A failed log dir on a partition's leader in a 3-broker cluster (KIP-112).

The leader's broker takes the replica offline and publishes it
(``/pybroker/offline_replicas/<id>``); the controller moves leadership to another
in-sync replica and drops the failed one from the ISR, and it stays out while that broker
runs; restarted with a working dir it catches up and rejoins. An idempotent acks=all
producer keeps sending throughout: every acknowledged record
is read back afterwards at its acknowledged offset.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from tests.support.cluster import Cluster

pytestmark = pytest.mark.timeout(240)
TOPIC = "jbod"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(
        tmp_path,
        3,
        overrides={
            "log.flush.offset.checkpoint.interval.ms": "300",
            "offsets.topic.num.partitions": "1",
        },
    )
    for broker_id, b in c.brokers.items():
        dirs = [tmp_path / f"broker-{broker_id}" / d for d in ("dir-a", "dir-b")]
        b.overrides["log.dirs"] = ",".join(map(str, dirs))
    try:
        yield c.start()
    finally:
        c.stop()


def dirs_of(cluster: Cluster, broker_id: int) -> list[Path]:
    return [Path(p) for p in cluster.brokers[broker_id].overrides["log.dirs"].split(",")]


class SteadyProducer:
    """An idempotent acks=all producer sending distinct values until stopped."""

    def __init__(self, bootstrap: str) -> None:
        self.acked: list[tuple[int, bytes]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._p = Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "message.timeout.ms": 60_000,
                "linger.ms": 5,
            }
        )
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _done(self, err: KafkaError | None, msg: object) -> None:
        if err is None:
            self.acked.append((msg.offset(), msg.value()))  # type: ignore[attr-defined]
        else:
            self.errors.append(str(err))

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            self._p.produce(TOPIC, value=b"v%06d" % i, partition=0, callback=self._done)
            i += 1
            self._p.poll(0.002)
        assert self._p.flush(90) == 0

    def start(self) -> SteadyProducer:
        self._thread.start()
        return self

    def wait_acked(self, n: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.acked) >= n, (len(self.acked), self.errors[:5])

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(120)


def read_all(bootstrap: str, expect: int) -> dict[int, bytes]:
    c = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "reader", "enable.auto.commit": False}
    )
    c.assign([TopicPartition(TOPIC, 0, 0)])
    got: dict[int, bytes] = {}
    deadline = time.monotonic() + 60
    while len(got) < expect and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        got[m.offset()] = m.value()
    c.close()
    return got


def test_failed_dir_on_leader_moves_leadership_and_loses_nothing(cluster: Cluster) -> None:
    cluster.create_topic(TOPIC, 1, 3, {"min.insync.replicas": "2", "segment.bytes": "1048576"})
    before = cluster.wait_for_isr(TOPIC, 0, {1, 2, 3})
    producer = SteadyProducer(cluster.bootstrap).start()
    try:
        producer.wait_acked(500)
        leader = before.leader
        (failed,) = [d for d in dirs_of(cluster, leader) if (d / f"{TOPIC}-0").is_dir()]
        shutil.rmtree(failed)
        failed.write_bytes(b"")  # TestUtils.causeLogDirFailure
        after = cluster.wait_for_leader(TOPIC, 0, allowed={1, 2, 3} - {leader})
        assert after.leader_epoch > before.leader_epoch
        view = cluster.wait_until(
            "the failed replica out of the ISR",
            lambda: (v := cluster.partition(TOPIC, 0)) and leader not in v.isr and v,
        )
        assert set(view.isr) == {1, 2, 3} - {leader}
        assert view.offline == (leader,)  # Metadata lists the replica on the failed dir
        mark = len(producer.acked)
        producer.wait_acked(mark + 500)
    finally:
        producer.stop()
    # It stays out of the ISR while its broker runs with the dir failed.
    time.sleep(4)  # > replica.lag.time.max.ms (3 s): an ISR expansion would have happened
    view = cluster.partition(TOPIC, 0)
    assert leader not in view.isr and view.leader != leader, view
    assert cluster.brokers[leader].proc.poll() is None  # the broker itself keeps running
    tail = cluster.brokers[leader].log_tail(3000)
    assert "failed and is now offline" in tail

    acked = producer.acked
    got = read_all(cluster.bootstrap, len(acked))
    missing = [(o, v) for o, v in acked if got.get(o) != v]
    assert not missing, (len(missing), missing[:5])
    assert len(set(got.values())) == len(got)  # no value twice

    # Restarted with the dir still failed: it starts with its other dir, finds no log for
    # the partition while a dir is offline (Kafka's getOrCreateLog with isNew=false) and
    # publishes the replica as offline again: it stays out of the ISR.
    broker = cluster.brokers[leader]
    broker.restart()
    cluster.wait_for_brokers({1, 2, 3})
    time.sleep(4)
    view = cluster.partition(TOPIC, 0)
    assert leader not in view.isr and view.leader != leader, view
    assert f"Partition {TOPIC}-0 has no log and log dirs" in broker.log_tail(3000)
    assert not (failed.is_dir() or any(failed.parent.glob(f"*/{TOPIC}-0")))

    # Restarted with a working dir (the replacement disk), it catches up and rejoins.
    failed.unlink()
    failed.mkdir()
    cluster.brokers[leader].restart()
    view = cluster.wait_for_isr(TOPIC, 0, {1, 2, 3}, timeout=60)
    assert view.offline == ()


def test_moving_a_follower_replica_between_dirs_under_load(cluster: Cluster) -> None:
    """AlterReplicaLogDirs on a follower (its fetcher appends to the moved log) and on the
    leader, while an acks=all producer runs: the ISR stays whole and nothing is lost."""
    from kafka import TopicPartitionReplica
    from kafka.admin import KafkaAdminClient

    cluster.create_topic(TOPIC, 1, 3, {"min.insync.replicas": "2"})
    view = cluster.wait_for_isr(TOPIC, 0, {1, 2, 3})
    follower = next(r for r in view.replicas if r != view.leader)
    producer = SteadyProducer(cluster.bootstrap).start()
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    try:
        producer.wait_acked(3000)
        moves = {}
        for broker_id in (follower, view.leader):
            (here,) = [d for d in dirs_of(cluster, broker_id) if (d / f"{TOPIC}-0").is_dir()]
            there = next(d for d in dirs_of(cluster, broker_id) if d != here)
            moves[TopicPartitionReplica(TOPIC, 0, broker_id)] = str(there)
        result = admin.alter_replica_log_dirs(moves)
        assert {e.__name__ for e in result.values()} == {"NoError"}
        for tpr, there in moves.items():
            cluster.wait_until(
                f"{TOPIC}-0 of broker {tpr.broker_id} in {there}",
                lambda there=there, b=tpr.broker_id: (
                    (Path(there) / f"{TOPIC}-0").is_dir()
                    and not any(
                        (d / f"{TOPIC}-0").is_dir() for d in dirs_of(cluster, b) if str(d) != there
                    )
                ),
            )
        mark = len(producer.acked)
        producer.wait_acked(mark + 1000)
    finally:
        producer.stop()
        admin.close()
    assert set(cluster.partition(TOPIC, 0).isr) == {1, 2, 3}
    acked = producer.acked
    got = read_all(cluster.bootstrap, len(acked))
    missing = [(o, v) for o, v in acked if got.get(o) != v]
    assert not missing, (len(missing), missing[:5])
