"""Auto-creation in a cluster never creates a topic with fewer replicas than
default.replication.factor: while brokers are missing, Metadata answers
LEADER_NOT_AVAILABLE (retriable, as Kafka's AutoTopicCreationManager does) and creates
nothing; once they are back, the same request creates the topic fully replicated."""

from __future__ import annotations

from pathlib import Path

from kio.schema.errors import ErrorCode

from tests.support.cluster import METADATA, Cluster
from tests.support.txn_wire import build
from tests.support.wire import KafkaWire, request_module


def auto_create(port: int, topic: str) -> ErrorCode:
    m = request_module(METADATA, 12)
    req = build(
        m.MetadataRequest,
        topics=(build(m.MetadataRequestTopic, name=topic, topic_id=None),),
        allow_auto_topic_creation=True,
        include_topic_authorized_operations=False,
    )
    with KafkaWire(port=port, timeout=10) as conn:
        (entry,) = conn.request(req).topics
    return entry.error_code


def test_auto_creation_waits_for_the_replication_factor(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, 3, overrides={"default.replication.factor": "3"})
    try:
        cluster.start()
        cluster.brokers[3].stop()
        cluster.wait_for_brokers({1, 2})
        port = cluster.brokers[1].port
        for _ in range(3):
            assert auto_create(port, "auto-rf3") == ErrorCode.leader_not_available
        assert not cluster.metadata([]).topics  # nothing was created meanwhile
        cluster.brokers[3].start()
        cluster.wait_for_brokers({1, 2, 3})
        cluster.wait_until(
            "auto-rf3 created", lambda: auto_create(port, "auto-rf3") == ErrorCode.none
        )
        (topic,) = cluster.metadata(["auto-rf3"]).topics
        assert topic.partitions
        for p in topic.partitions:
            view = cluster.wait_for_isr("auto-rf3", int(p.partition_index), {1, 2, 3})
            assert sorted(view.replicas) == [1, 2, 3]
    finally:
        cluster.stop()
