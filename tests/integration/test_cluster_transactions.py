"""Transactions across a cluster: three brokers, a real ZooKeeper, confluent-kafka clients.

- A transaction spans partitions led by different brokers: the coordinator writes its
  markers at each leader (WriteTxnMarkers between brokers), read_committed consumers see
  exactly the committed records, and no partition is left with an open transaction.
- Exactly-once across failures (issue 9): a consume-transform-produce copier
  (sendOffsetsToTransaction) is killed with kill -9 in the middle of a transaction, then
  the broker coordinating its transactional id is killed too; a new copier with the same
  transactional id takes over once the coordinator has moved (it fences the old epoch and
  aborts the open transaction) and finishes the job. The output, read with
  read_committed, holds exactly one copy of every input record, while read_uncommitted
  shows the aborted records of the killed copier: they were there and were aborted.

Every wait is bounded.
"""

from __future__ import annotations

import collections
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from tests.support.cluster import Cluster
from tests.support.txn_wire import find_coordinator, list_offset
from tests.support.wire import KafkaWire

pytestmark = pytest.mark.timeout(600)

DATA_CONFIGS = {"min.insync.replicas": "2"}
READ_UNCOMMITTED, READ_COMMITTED = 0, 1


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(
        tmp_path,
        3,
        overrides={
            # Fewer internal partitions than Kafka's 50: quicker to create and elect.
            "transaction.state.log.num.partitions": "6",
            "offsets.topic.num.partitions": "6",
            "transaction.state.log.replication.factor": "3",
            "transaction.state.log.min.isr": "2",
        },
    )
    try:
        yield c.start()
    finally:
        c.stop()


def wire(cluster: Cluster, broker_id: int) -> KafkaWire:
    return KafkaWire(port=cluster.brokers[broker_id].port, timeout=15)


def coordinator_of(cluster: Cluster, txn_id: str) -> int:
    """The broker FindCoordinator names for ``txn_id`` (bounded wait)."""

    def found() -> int | None:
        with cluster._any_wire() as conn:
            c = find_coordinator(conn, txn_id)
        return int(c.node_id) if c.error_code == 0 and int(c.node_id) >= 0 else None

    return cluster.wait_until(f"a coordinator for {txn_id}", found, 60)


def produce_inputs(bootstrap: str, topic: str, partitions: int, count: int) -> list[bytes]:
    values = [f"in-{i:05d}".encode() for i in range(count)]
    errors: list[str] = []
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
    for i, v in enumerate(values):
        p.produce(
            topic,
            value=v,
            partition=i % partitions,
            on_delivery=lambda err, _m: errors.append(str(err)) if err else None,
        )
    assert p.flush(60) == 0
    assert not errors, errors[:5]
    return values


def read_values(
    bootstrap: str, topic: str, partitions: int, isolation: str, expect: int, settle: float = 3.0
) -> list[bytes]:
    """Every value of ``topic`` an ``isolation`` consumer returns: read until ``expect``
    values arrived, then ``settle`` seconds more (duplicates would show), at most 90 s."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"check-{isolation}-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "isolation.level": isolation,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        got: list[bytes] = []
        deadline = time.monotonic() + 90
        settle_until: float | None = None
        while time.monotonic() < deadline:
            if settle_until is None and len(got) >= expect:
                settle_until = time.monotonic() + settle
            if settle_until is not None and time.monotonic() >= settle_until:
                break
            for m in c.consume(500, 0.5):
                if m.error() is None:
                    got.append(m.value())
                elif m.error().code() != KafkaError._PARTITION_EOF:
                    raise AssertionError(f"consumer error: {m.error()}")
        return got
    finally:
        c.close()


def assert_no_open_transactions(cluster: Cluster, topic: str, partitions: int) -> None:
    """At each partition's leader the last stable offset reaches the high watermark: every
    transaction got its marker there (bounded wait: markers may still be in flight)."""
    for p in range(partitions):

        def stable(p: int = p) -> bool:
            leader = cluster.partition(topic, p).leader
            try:
                with wire(cluster, leader) as conn:
                    lso = list_offset(conn, topic, READ_COMMITTED, p)
                    hw = list_offset(conn, topic, READ_UNCOMMITTED, p)
            except AssertionError:  # the leader moved meanwhile
                return False
            return lso == hw

        cluster.wait_until(f"{topic}-{p} last stable offset = high watermark", stable, 60)


# ---------------------------------------------------------------------- spanning leaders


def test_transactions_span_partitions_led_by_different_brokers(cluster: Cluster) -> None:
    topic, partitions = "txn-span", 3
    cluster.create_topic(topic, partitions, 3, DATA_CONFIGS)
    leaders = {cluster.wait_for_isr(topic, p, {1, 2, 3}).leader for p in range(partitions)}
    assert len(leaders) >= 2, f"all partitions led by one broker: {leaders}"

    txn_id = "span-txn"
    producer = Producer(
        {
            "bootstrap.servers": cluster.bootstrap,
            "transactional.id": txn_id,
            "transaction.timeout.ms": 60_000,
        }
    )
    producer.init_transactions(60)
    coordinator = coordinator_of(cluster, txn_id)
    # Some data partition is led elsewhere than the coordinator: markers cross brokers.
    assert leaders - {coordinator}, (leaders, coordinator)

    committed: list[bytes] = []
    aborted: list[bytes] = []
    for round_, commit in enumerate([True, False, True, False, True]):
        producer.begin_transaction()
        values = [f"r{round_}-p{p}-{i}".encode() for p in range(partitions) for i in range(5)]
        for i, v in enumerate(values):
            producer.produce(topic, value=v, partition=i // 5)
        if commit:
            producer.commit_transaction(60)
            committed += values
        else:
            producer.flush(30)  # the records are in the logs before the abort
            producer.abort_transaction(60)
            aborted += values
    producer.flush(10)

    seen = read_values(cluster.bootstrap, topic, partitions, "read_committed", len(committed))
    assert collections.Counter(seen) == collections.Counter(committed)
    everything = read_values(
        cluster.bootstrap, topic, partitions, "read_uncommitted", len(committed) + len(aborted)
    )
    assert collections.Counter(everything) == collections.Counter(committed + aborted)
    assert_no_open_transactions(cluster, topic, partitions)

    # The coordinator's broker dies: the same producer goes on with the new coordinator.
    cluster.brokers[coordinator].kill()
    survivors = set(cluster.brokers) - {coordinator}
    cluster.wait_until(
        "the transactional id's coordinator to move",
        lambda: coordinator_of(cluster, txn_id) in survivors,
        60,
    )
    producer.begin_transaction()
    late = [f"late-p{p}".encode() for p in range(partitions)]
    for p, v in enumerate(late):
        producer.produce(topic, value=v, partition=p)
    producer.commit_transaction(90)
    seen = read_values(
        cluster.bootstrap, topic, partitions, "read_committed", len(committed) + len(late)
    )
    assert collections.Counter(seen) == collections.Counter(committed + late)


# ---------------------------------------------------------------------- exactly-once copier

COPIER = textwrap.dedent(
    """
    import sys, time
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

    bootstrap, src, dst, txn_id, group = sys.argv[1:6]
    partitions, total, hang_after = int(sys.argv[6]), int(sys.argv[7]), int(sys.argv[8])

    def say(*words):
        print(*words, flush=True)

    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "session.timeout.ms": 6000,
        "max.poll.interval.ms": 30000,
    })
    producer = Producer({
        "bootstrap.servers": bootstrap,
        "transactional.id": txn_id,
        "transaction.timeout.ms": 60000,
    })
    producer.init_transactions(120)
    say("initialized")
    consumer.subscribe([src])

    def rewind():
        # Back to the group's committed offsets: the aborted batch is consumed again.
        assigned = consumer.assignment()
        if not assigned:
            return
        for tp in consumer.committed(assigned, 30):
            tp.offset = tp.offset if tp.offset >= 0 else -2  # OFFSET_BEGINNING
            consumer.seek(tp)

    last_report = [0.0]

    def finished():
        # Done when the group's committed offsets reach the end of every input partition.
        try:
            wanted = [TopicPartition(src, p) for p in range(partitions)]
            done = True
            report = []
            for tp in consumer.committed(wanted, 10):
                _, high = consumer.get_watermark_offsets(tp, timeout=10, cached=False)
                report.append((tp.partition, tp.offset, high))
                done = done and tp.offset >= high
        except KafkaException as e:
            say("check failed", e)
            return False
        if not done and time.monotonic() - last_report[0] > 5:
            last_report[0] = time.monotonic()
            say("waiting", report, len(consumer.assignment()))
        return done

    copied = 0
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        msgs = [m for m in consumer.consume(25, 1.0) if m.error() is None]
        if not msgs:
            if finished():
                say("done", copied)
                break
            continue
        producer.begin_transaction()
        try:
            for m in msgs:
                producer.produce(dst, value=m.value(), partition=m.partition())
            if hang_after and copied + len(msgs) > hang_after:
                producer.flush(30)
                say("hanging", copied)
                time.sleep(600)  # killed here, in the middle of a transaction
            producer.send_offsets_to_transaction(
                consumer.position(consumer.assignment()),
                consumer.consumer_group_metadata(),
                60,
            )
            producer.commit_transaction(60)
        except KafkaException as e:
            err = e.args[0]
            say("error", err)
            if err.fatal():
                raise
            producer.abort_transaction(60)
            rewind()
            continue
        copied += len(msgs)
        say("committed", copied)
    else:
        say("gave up", copied)
    consumer.close()
    """
)


class Copier:
    def __init__(self, tmp: Path, name: str, args: list[str]) -> None:
        script = tmp / "copier.py"
        script.write_text(COPIER)
        self.out = tmp / f"{name}.out"
        self.proc = subprocess.Popen(
            [sys.executable, str(script), *args],
            stdout=open(self.out, "wb"),  # noqa: SIM115 - handed to the child
            stderr=subprocess.STDOUT,
        )

    def lines(self) -> list[str]:
        return self.out.read_text(errors="replace").splitlines()

    def wait_for(self, word: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines():
                if line.startswith(word):
                    return line
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        tail = "\n".join(self.lines()[-30:])
        raise AssertionError(f"copier did not say {word!r} within {timeout}s:\n{tail}")

    def committed(self) -> int:
        counts = [int(line.split()[1]) for line in self.lines() if line.startswith("committed")]
        return max(counts, default=0)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # SIGKILL
        self.proc.wait(10)


def test_copier_exactly_once_across_copier_and_coordinator_kills(
    cluster: Cluster, tmp_path: Path
) -> None:
    src, dst, partitions, total = "eos-in", "eos-out", 3, 600
    for topic in (src, dst):
        cluster.create_topic(topic, partitions, 3, DATA_CONFIGS)
        for p in range(partitions):
            cluster.wait_for_isr(topic, p, {1, 2, 3})
    inputs = produce_inputs(cluster.bootstrap, src, partitions, total)
    txn_id, group = "eos-copier", "eos-copier-group"

    def args(hang_after: int) -> list[str]:
        return [cluster.bootstrap, src, dst, txn_id, group, str(partitions), str(total)] + [
            str(hang_after)
        ]

    # The first copier commits part of the input, then stops in the middle of a
    # transaction whose records are already in the output partitions; kill -9 it there.
    first = Copier(tmp_path, "copier-1", args(total // 2))
    try:
        first.wait_for("hanging", 180)
        done_before = first.committed()
        assert 0 < done_before < total
    finally:
        first.kill()

    # Then the broker that coordinates its transactional id dies too.
    old = coordinator_of(cluster, txn_id)
    cluster.brokers[old].kill()
    survivors = set(cluster.brokers) - {old}
    new = cluster.wait_until(
        "the transactional id's coordinator to move",
        lambda: (n := coordinator_of(cluster, txn_id)) in survivors and n,
        60,
    )
    assert new != old

    # A new copier with the same transactional id fences the old one, aborts its open
    # transaction and copies the rest.
    second = Copier(tmp_path, "copier-2", args(0))
    try:
        second.wait_for("done", 240)
    finally:
        second.kill()

    seen = read_values(cluster.bootstrap, dst, partitions, "read_committed", total)
    counts = collections.Counter(seen)
    duplicates = {v: n for v, n in counts.items() if n > 1}
    assert not duplicates, f"{len(duplicates)} duplicated, e.g. {list(duplicates.items())[:5]}"
    assert set(seen) == set(inputs), (
        f"missing {len(set(inputs) - set(seen))}, unexpected {len(set(seen) - set(inputs))}"
    )
    # The killed copier's open transaction was really written, and aborted.
    uncommitted = read_values(cluster.bootstrap, dst, partitions, "read_uncommitted", total + 1)
    assert len(uncommitted) > total
    assert_no_open_transactions(cluster, dst, partitions)
