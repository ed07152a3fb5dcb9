"""/metrics in a three-broker cluster: the leader reports an under-replicated (and
under-min-ISR) partition while a follower is down, and none once it is back in the ISR."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cluster import Cluster
from tests.support.prometheus import scrape


def gauges(port: int) -> dict[str, float]:
    """The label-less samples of a broker's /metrics."""
    return {name: v for (name, labels), v in scrape(port).items() if not labels}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, 3)
    c.start()
    yield c
    c.stop()


def test_under_replicated_partitions_follow_a_stopped_follower(cluster: Cluster) -> None:
    cluster.create_topic("urp", 1, 3, {"min.insync.replicas": "3"})
    view = cluster.wait_for_isr("urp", 0, {1, 2, 3})
    leader = cluster.brokers[view.leader]
    follower_id = next(r for r in view.replicas if r != view.leader)
    follower = cluster.brokers[follower_id]

    def leader_metric(name: str) -> float:
        return gauges(leader.http_port)[name]

    urp = "kafka_server_replicamanager_underreplicatedpartitions"
    under_min = "kafka_server_replicamanager_underminisrpartitioncount"
    cluster.wait_until("no under-replicated partition", lambda: leader_metric(urp) == 0)
    assert leader_metric(under_min) == 0
    assert leader_metric("kafka_server_replicamanager_leadercount") >= 1
    controllers = [
        gauges(b.http_port)["kafka_controller_kafkacontroller_activecontrollercount"]
        for b in cluster.brokers.values()
    ]
    assert sorted(controllers) == [0, 0, 1]
    expands_before = leader_metric("kafka_server_replicamanager_isrexpands_total")

    follower.stop()
    cluster.wait_for_isr("urp", 0, set(view.replicas) - {follower_id})
    cluster.wait_until("one under-replicated partition", lambda: leader_metric(urp) == 1)
    assert leader_metric(under_min) == 1  # ISR 2 < min.insync.replicas 3

    follower.start()
    cluster.wait_for_isr("urp", 0, {1, 2, 3}, timeout=45)
    cluster.wait_until("back to none", lambda: leader_metric(urp) == 0, timeout=15)
    assert leader_metric(under_min) == 0
    assert leader_metric("kafka_server_replicamanager_isrexpands_total") > expands_before
