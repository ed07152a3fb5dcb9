"""Leader balance in a 3-broker ZooKeeper cluster (issue #11): ElectLeaders (43) through
confluent-kafka's AdminClient and Kafka's ``kafka-leader-election`` tool, and the
controller's auto leader rebalance.

After a broker restarts, its partitions are led elsewhere: a PREFERRED election gives
leadership back (ELECTION_NOT_NEEDED when it already has it), and with
auto.leader.rebalance.enable the controller does it by itself after
leader.imbalance.check.interval.seconds. A partition whose only in-sync replica is gone
stays offline (unclean.leader.election.enable=false) until an UNCLEAN election is asked
for; a PREFERRED one is refused with PREFERRED_LEADER_NOT_AVAILABLE, as Kafka does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import ElectionType, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from tests.support.cluster import Cluster, PartitionView
from tests.support.kafka_ref import run_tool

pytestmark = pytest.mark.timeout(240)


def make_cluster(root: Path, **overrides: str) -> Cluster:
    return Cluster(root, 3, {k.replace("_", "."): v for k, v in overrides.items()})


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = make_cluster(tmp_path_factory.mktemp("elect"), auto_leader_rebalance_enable="false")
    try:
        yield c.start()
    finally:
        c.stop()


def create(cluster: Cluster, name: str, assignment: dict[int, list[int]]) -> None:
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap, request_timeout_ms=30_000)
    admin.create_topics(
        [NewTopic(name, num_partitions=-1, replication_factor=-1, replica_assignments=assignment)],
        timeout_ms=30_000,
    )
    admin.close()
    for p, replicas in assignment.items():
        cluster.wait_for_isr(name, p, set(replicas))


def elect(
    cluster: Cluster, kind: ElectionType, partitions: list[tuple[str, int]] | None
) -> dict[tuple[str, int], int]:
    """{(topic, partition): Kafka error code (0 = elected)} from confluent-kafka."""
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    tps = None if partitions is None else [TopicPartition(t, p) for t, p in partitions]
    result = admin.elect_leaders(kind, tps).result(60)
    out: dict[tuple[str, int], int] = {}
    for tp, err in result.items():
        if err is None:
            out[(tp.topic, tp.partition)] = 0
        else:
            assert isinstance(err, KafkaError), err
            out[(tp.topic, tp.partition)] = err.code()
    return out


def bounce(cluster: Cluster, broker: int, topic: str, partitions: list[int]) -> None:
    """Stop ``broker`` (leadership moves away) and start it again until it is back in
    every ISR: its partitions are then led by another broker."""
    cluster.brokers[broker].stop()
    for p in partitions:
        cluster.wait_for_leader(topic, p, {1, 2, 3} - {broker})
    cluster.brokers[broker].start()
    cluster.wait_for_brokers({1, 2, 3})
    for p in partitions:
        cluster.wait_until(
            f"broker {broker} back in the ISR of {topic}-{p}",
            lambda p=p: broker in cluster.partition(topic, p).isr,
        )


def test_preferred_election_returns_leadership_after_a_restart(cluster: Cluster) -> None:
    topic = "preferred"
    create(cluster, topic, {0: [1, 2], 1: [1, 3], 2: [2, 3]})
    bounce(cluster, 1, topic, [0, 1])
    assert cluster.partition(topic, 0).leader == 2
    assert cluster.partition(topic, 1).leader == 3
    got = elect(cluster, ElectionType.PREFERRED, [(topic, 0), (topic, 2), ("nope", 0)])
    assert got == {
        (topic, 0): 0,
        (topic, 2): KafkaError.ELECTION_NOT_NEEDED,
        ("nope", 0): KafkaError.UNKNOWN_TOPIC_OR_PART,
    }
    view = cluster.partition(topic, 0)
    assert view.leader == 1 and set(view.isr) == {1, 2}
    # Every partition (null topics): only partitions that needed an election are reported.
    got = elect(cluster, ElectionType.PREFERRED, None)
    assert got == {(topic, 1): 0}
    assert cluster.partition(topic, 1).leader == 1
    assert elect(cluster, ElectionType.PREFERRED, None) == {}


def test_kafka_leader_election_tool(cluster: Cluster) -> None:
    topic = "tool"
    create(cluster, topic, {0: [2, 3]})
    bounce(cluster, 2, topic, [0])
    assert cluster.partition(topic, 0).leader == 3
    out = run_tool(
        "kafka-leader-election",
        "--bootstrap-server",
        cluster.brokers[1].bootstrap,
        "--election-type",
        "preferred",
        "--topic",
        topic,
        "--partition",
        "0",
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"Successfully completed leader election (PREFERRED) for partitions {topic}-0" in (
        out.stdout
    ), out.stdout
    assert cluster.partition(topic, 0).leader == 2


def test_unclean_election_only_when_asked(cluster: Cluster) -> None:
    topic = "unclean"
    create(cluster, topic, {0: [1, 2]})
    brokers = cluster.brokers
    brokers[2].stop()  # leaves the ISR: {1}
    cluster.wait_for_isr(topic, 0, {1})
    brokers[1].stop()  # the last in-sync replica: the partition goes offline

    def offline() -> PartitionView | None:
        view = cluster.partition(topic, 0)
        return view if view.leader == -1 else None

    view = cluster.wait_until("the partition to be offline", offline)
    assert view.isr == (1,)
    # No replica alive at all: not even an unclean election can help.
    assert elect(cluster, ElectionType.UNCLEAN, [(topic, 0)]) == {
        (topic, 0): KafkaError.ELIGIBLE_LEADERS_NOT_AVAILABLE
    }
    brokers[2].start()
    cluster.wait_for_brokers({2, 3})
    # unclean.leader.election.enable=false: broker 2 (out of sync) is not elected by itself.
    assert cluster.partition(topic, 0).leader == -1
    assert elect(cluster, ElectionType.PREFERRED, [(topic, 0)]) == {
        (topic, 0): KafkaError.PREFERRED_LEADER_NOT_AVAILABLE
    }
    assert cluster.partition(topic, 0).leader == -1
    assert elect(cluster, ElectionType.UNCLEAN, [(topic, 0)]) == {(topic, 0): 0}
    view = cluster.partition(topic, 0)
    assert (view.leader, view.isr) == (2, (2,))
    # With a live leader an unclean election is not needed.
    assert elect(cluster, ElectionType.UNCLEAN, [(topic, 0)]) == {
        (topic, 0): KafkaError.ELECTION_NOT_NEEDED
    }
    brokers[1].start()
    cluster.wait_for_brokers({1, 2, 3})
    cluster.wait_for_isr(topic, 0, {1, 2})


def test_auto_leader_rebalance(tmp_path: Path) -> None:
    c = make_cluster(tmp_path, leader_imbalance_check_interval_seconds="1")
    try:
        c.start()
        topic = "balanced"
        create(c, topic, {0: [1, 2], 1: [2, 3], 2: [3, 1]})
        c.brokers[1].stop()
        c.wait_for_leader(topic, 0, {2})
        c.brokers[1].start()
        c.wait_for_brokers({1, 2, 3})
        # Broker 1 leads none of its one preferred partition (100% > 10%): the controller
        # moves leadership back by itself once broker 1 is in sync.
        view = c.wait_until(
            "leadership back on broker 1",
            lambda: (v := c.partition(topic, 0)).leader == 1 and v,
            timeout=45,
        )
        assert set(view.isr) == {1, 2}
        assert [c.partition(topic, p).leader for p in (1, 2)] == [2, 3]
    finally:
        c.stop()
