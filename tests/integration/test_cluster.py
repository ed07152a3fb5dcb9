"""Cluster mode: three broker processes and a real ZooKeeper.

What Kafka users expect of a cluster, checked with a stock client (confluent-kafka) and
raw requests: every broker lists every broker and the controller; a topic's replicas
are spread and in sync; acks=all survives the leader's kill -9 with nothing acknowledged
lost; below min.insync.replicas produce is refused with NOT_ENOUGH_REPLICAS; a dead
controller is replaced; a partition whose in-sync replicas are all gone stays offline
(no unclean election) until one of them returns; a SIGTERM moves leadership away first.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from kio.schema.errors import ErrorCode

from tests.support.cluster import Cluster
from tests.support.txn_wire import batch, produce
from tests.support.wire import KafkaWire


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, 3)
    try:
        yield c.start()
    finally:
        c.stop()


def produce_all(bootstrap: str, topic: str, values: list[bytes]) -> list[tuple[int, int, bytes]]:
    """Idempotent acks=all produce; (partition, offset, value) of every acknowledged one."""
    acked: list[tuple[int, int, bytes]] = []
    errors: list[str] = []

    def done(err: object, msg: object) -> None:
        if err is None:
            acked.append((msg.partition(), msg.offset(), msg.value()))  # type: ignore[attr-defined]
        else:
            errors.append(str(err))

    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "message.timeout.ms": 60_000,
        }
    )
    for i, v in enumerate(values):
        p.produce(topic, value=v, callback=done)
        if i % 200 == 0:
            p.poll(0)
    assert p.flush(90) == 0
    assert not errors, errors[:5]
    return acked


def read_all(
    bootstrap: str, topic: str, partitions: int, expect: int
) -> dict[tuple[int, int], bytes]:
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "reader",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got: dict[tuple[int, int], bytes] = {}
    deadline = time.monotonic() + 60
    while len(got) < expect and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            assert m.error().code() == KafkaError._PARTITION_EOF or m.error().retriable(), m.error()
            continue
        got[(m.partition(), m.offset())] = m.value()
    c.close()
    return got


def test_cluster_replicates_and_survives_leader_kill(cluster: Cluster) -> None:
    for b in cluster.brokers:
        md = cluster.metadata([], via=b)
        assert {int(x.node_id) for x in md.brokers} == {1, 2, 3}
        assert int(md.controller_id) in {1, 2, 3}
    cluster.create_topic("orders", 3, 3, {"min.insync.replicas": "2"})
    leaders = set()
    for p in range(3):
        view = cluster.wait_for_isr("orders", p, {1, 2, 3})
        assert sorted(view.replicas) == [1, 2, 3]
        leaders.add(view.leader)
    assert leaders == {1, 2, 3}  # Kafka's round-robin puts one leader on each broker
    first = produce_all(cluster.bootstrap, "orders", [b"a%d" % i for i in range(2000)])
    before = cluster.partition("orders", 0)
    cluster.brokers[before.leader].kill()
    after = cluster.wait_for_leader("orders", 0, allowed=set(before.isr) - {before.leader})
    assert after.leader_epoch > before.leader_epoch
    assert before.leader in after.offline
    second = produce_all(cluster.bootstrap, "orders", [b"b%d" % i for i in range(1000)])
    acked = first + second
    got = read_all(cluster.bootstrap, "orders", 3, len(acked))
    missing = [a for a in acked if got.get((a[0], a[1])) != a[2]]
    assert not missing, missing[:5]
    assert sorted(got.values()) == sorted(v for _, _, v in acked)  # nothing extra
    # The killed broker comes back, catches up and rejoins every ISR.
    cluster.brokers[before.leader].start()
    for p in range(3):
        cluster.wait_for_isr("orders", p, {1, 2, 3}, timeout=60)


def test_acks_all_below_min_insync_replicas_is_refused(cluster: Cluster) -> None:
    cluster.create_topic("strict", 1, 3, {"min.insync.replicas": "2"})
    view = cluster.wait_for_isr("strict", 0, {1, 2, 3})
    followers = [r for r in view.replicas if r != view.leader]
    for r in followers:
        cluster.brokers[r].kill()
    cluster.wait_until(
        "the ISR to shrink to the leader",
        lambda: cluster.partition("strict", 0).isr == (view.leader,),
        timeout=60,
    )
    with KafkaWire(port=cluster.brokers[view.leader].port) as conn:
        got = produce(conn, {("strict", 0): batch(-1, -1, -1, [b"x"], transactional=False)}, None)
    assert got[("strict", 0)].error_code == ErrorCode.not_enough_replicas


def test_controller_failover(cluster: Cluster) -> None:
    first = int(cluster.metadata([]).controller_id)
    cluster.brokers[first].kill()
    others = set(cluster.brokers) - {first}

    def moved() -> int | None:
        cid = int(cluster.metadata([]).controller_id)
        return cid if cid in others else None

    cluster.wait_until("a new controller", moved, timeout=60)
    cluster.create_topic("after-failover", 2, 2)
    for p in range(2):
        cluster.wait_for_isr(
            "after-failover", p, set(cluster.partition("after-failover", p).replicas)
        )


def test_no_unclean_election_by_default(cluster: Cluster) -> None:
    cluster.create_topic("careful", 1, 2, {"min.insync.replicas": "1"})
    view = cluster.wait_for_isr("careful", 0, set(cluster.partition("careful", 0).replicas))
    leader = view.leader
    (follower,) = [r for r in view.replicas if r != leader]
    cluster.brokers[follower].kill()
    cluster.wait_until(
        "the ISR to shrink", lambda: cluster.partition("careful", 0).isr == (leader,), timeout=60
    )
    acked = produce_all(cluster.bootstrap, "careful", [b"only-on-leader"])
    cluster.brokers[leader].kill()
    cluster.brokers[follower].start()
    cluster.wait_until(
        "the partition to be offline",
        lambda: cluster.partition("careful", 0).leader == -1,
        timeout=60,
    )
    time.sleep(2)  # the out-of-sync follower must not be elected meanwhile
    assert cluster.partition("careful", 0).leader == -1
    cluster.brokers[leader].start()
    cluster.wait_for_leader("careful", 0, allowed={leader}, timeout=60)
    got = read_all(cluster.bootstrap, "careful", 1, 1)
    assert list(got.values()) == [v for _, _, v in acked]


def test_sigterm_moves_leadership_first(cluster: Cluster) -> None:
    cluster.create_topic("rolling", 3, 3, {"min.insync.replicas": "2"})
    for p in range(3):
        cluster.wait_for_isr("rolling", p, {1, 2, 3})
    victim = cluster.partition("rolling", 0).leader
    assert cluster.brokers[victim].stop() == 0
    view = cluster.partition("rolling", 0)
    assert view.leader not in (-1, victim)
    log = cluster.brokers[victim].log_path.read_text()
    assert "Controlled shutdown: leadership moved to other brokers" in log


def test_unclean_election_when_enabled_logs_the_loss(cluster: Cluster) -> None:
    cluster.create_topic(
        "reckless", 1, 2, {"min.insync.replicas": "1", "unclean.leader.election.enable": "true"}
    )
    view = cluster.wait_for_isr("reckless", 0, set(cluster.partition("reckless", 0).replicas))
    leader = view.leader
    (follower,) = [r for r in view.replicas if r != leader]
    cluster.brokers[follower].kill()
    cluster.wait_until(
        "the ISR to shrink", lambda: cluster.partition("reckless", 0).isr == (leader,), timeout=60
    )
    produce_all(cluster.bootstrap, "reckless", [b"lost-with-the-leader"])
    cluster.brokers[leader].kill()
    cluster.brokers[follower].start()
    after = cluster.wait_for_leader("reckless", 0, allowed={follower}, timeout=60)
    assert after.isr == (follower,)
    logs = "".join(b.log_path.read_text() for b in cluster.brokers.values())
    assert "Unclean leader election for reckless-0" in logs


@pytest.mark.parametrize("damage", ["wiped", "torn"])
def test_leader_restart_with_lost_or_torn_log_loses_nothing(cluster: Cluster, damage: str) -> None:
    """A leader whose disk comes back empty (or with a torn tail) must neither lose
    acknowledged records nor bring back unacknowledged ones: it returns as a follower
    outside the ISR, truncates by leader epoch and copies the new leader's log."""
    topic = f"disk-{damage}"
    cluster.create_topic(topic, 1, 3, {"min.insync.replicas": "2"})
    before = cluster.wait_for_isr(topic, 0, {1, 2, 3})
    acked = produce_all(
        cluster.bootstrap, topic, [b"%s-%d" % (damage.encode(), i) for i in range(2000)]
    )
    victim = cluster.brokers[before.leader]
    victim.kill()
    part_dir = victim.data_dir / f"{topic}-0"
    if damage == "wiped":
        for child in victim.data_dir.iterdir():
            if child.is_dir():
                for f in child.iterdir():
                    f.unlink()
                child.rmdir()
            else:
                child.unlink()
    else:
        log_file = sorted(part_dir.glob("*.log"))[-1]
        size = log_file.stat().st_size
        with open(log_file, "r+b") as f:
            f.truncate(size // 2 + 7)  # cut inside a batch
    cluster.wait_for_leader(topic, 0, allowed=set(before.replicas) - {before.leader})
    more = produce_all(cluster.bootstrap, topic, [b"after-%d" % i for i in range(500)])
    victim.start()
    cluster.wait_for_isr(topic, 0, {1, 2, 3}, timeout=90)
    # Only the damaged broker may lead now, so reads must come from its copy.
    for r in before.replicas:
        if r != before.leader:
            cluster.brokers[r].kill()
    cluster.wait_for_leader(topic, 0, allowed={before.leader}, timeout=60)
    got = read_all(cluster.bootstrap, topic, 1, len(acked) + len(more))
    want = {(p, o): v for p, o, v in acked + more}
    assert got == want


def test_admin_changes_are_cluster_wide(cluster: Cluster) -> None:
    """Manual assignment, CreatePartitions, AlterConfigs and DeleteTopics through a stock
    AdminClient, seen the same way by every broker and on every broker's disk."""
    from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic

    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    fut = admin.create_topics([NewTopic("placed", 2, replica_assignment=[[3, 1], [2, 3]])])
    fut["placed"].result(30)
    assert cluster.partition("placed", 0).replicas == (3, 1)
    assert cluster.wait_for_leader("placed", 1).replicas == (2, 3)
    admin.create_partitions([NewPartitions("placed", 4)])["placed"].result(30)
    for p in range(4):
        view = cluster.wait_for_leader("placed", p)
        assert len(view.replicas) == 2
    resource = ConfigResource(ConfigResource.Type.TOPIC, "placed")
    resource.set_config("retention.ms", "3600000")
    admin.alter_configs([resource])[resource].result(30)
    for b in cluster.brokers:
        described = admin.describe_configs([resource])[resource].result(30)
        assert described["retention.ms"].value == "3600000", b
    admin.delete_topics(["placed"])["placed"].result(30)
    for b in cluster.brokers:
        cluster.wait_until(
            f"placed gone on broker {b}",
            lambda b=b: all(t.name != "placed" for t in cluster.metadata(None, via=b).topics),
        )
    cluster.wait_until(
        "the logs deleted on every broker",
        lambda: (
            not any(
                d.name.startswith("placed-") and not d.name.endswith("-delete")
                for b in cluster.brokers.values()
                for d in b.data_dir.iterdir()
            )
        ),
    )
