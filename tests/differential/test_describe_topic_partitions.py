"""DescribeTopicPartitions (75) against Apache Kafka 4.1, page by page.

The same topics exist on both brokers; every request below goes to both and the answers
must match field for field (topic ids, node ids and epochs normalised): ordering, paging
cursors, unknown and illegal names, a cursor outside the named topics, limits of 0 and
below. Then Kafka's own ``kafka-topics --describe`` pages through a topic on pybroker.
"""

from __future__ import annotations

import time
import uuid

import pytest
from kio.static.primitive import i32

from tests.support.broker import BrokerProcess
from tests.support.differential import DifferentialPair
from tests.support.kafka_ref import KafkaReference, run_tool
from tests.support.txn_wire import create_topic, find_coordinator
from tests.support.wire import KafkaWire, request_module

M = request_module(75, 0)
PREFIX = f"dtp-{uuid.uuid4().hex[:6]}"
TOPICS = {f"{PREFIX}-a": 3, f"{PREFIX}-b": 1, f"{PREFIX}-c": 5}
A, B, C = sorted(TOPICS)


def request(names: list[str], limit: int = 2000, cursor: tuple[str, int] | None = None) -> object:
    return M.DescribeTopicPartitionsRequest(
        topics=tuple(M.TopicRequest(name=n) for n in names),
        response_partition_limit=i32(limit),
        cursor=None
        if cursor is None
        else M.Cursor(topic_name=cursor[0], partition_index=i32(cursor[1])),
    )


CASES = {
    "named topics, one page": request([C, A, B]),
    "limit 4 cuts topic c": request([A, B, C], limit=4),
    "limit 3 ends at a topic boundary": request([A, B, C], limit=3),
    "limit 4 resumed at c-0": request([A, B, C], limit=4, cursor=(C, 0)),
    "cursor mid topic": request([A, B, C], limit=2, cursor=(C, 2)),
    "cursor past the last partition": request([A, C], cursor=(C, 9)),
    "cursor topic not named": request([A, B], cursor=(C, 0)),
    "unknown and illegal names": request(
        [A, f"{PREFIX}-missing", "bad name!", "__consumer_offsets"]
    ),
    "limit 0": request([A, B], limit=0),
    "negative limit": request([A, B], limit=-5),
    "duplicate names": request([B, B, A]),
}


@pytest.fixture(scope="module")
def pair(differential_brokers: tuple[BrokerProcess, KafkaReference]):  # type: ignore[no-untyped-def]
    ours, kafka = differential_brokers
    for port in (ours.port, kafka.port):
        with KafkaWire(port=port) as wire:
            for name, partitions in TOPICS.items():
                create_topic(wire, name, partitions)
            # One case names __consumer_offsets: make sure it exists on both (a group lookup
            # creates it; Kafka answers COORDINATOR_NOT_AVAILABLE until it is ready).
            deadline = time.monotonic() + 30
            while find_coordinator(wire, "dtp-group", key_type=0).error_code != 0:
                assert time.monotonic() < deadline, "no group coordinator after 30 s"
                time.sleep(0.2)
    with DifferentialPair(ours.port, kafka.port) as p:
        yield p


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_answer_as_kafka(pair: DifferentialPair, case: str) -> None:
    outcome = pair.compare(
        f"DescribeTopicPartitions: {case}", CASES[case], volatile={"leader_epoch"}
    )
    assert outcome.identical, "\n".join(outcome.differences)


def test_kafka_topics_pages_through_pybroker(
    differential_brokers: tuple[BrokerProcess, KafkaReference],
) -> None:
    ours, _ = differential_brokers
    out = run_tool(
        "kafka-topics",
        "--bootstrap-server",
        ours.bootstrap,
        "--describe",
        "--topic",
        C,
        "--partition-size-limit-per-response",
        "2",
    ).check()
    rows = [
        line
        for line in out.stdout.splitlines()
        if line.strip().startswith("Topic:") and "Partition:" in line
    ]
    assert sorted(int(r.split("Partition:")[1].split()[0]) for r in rows) == [0, 1, 2, 3, 4]
    header = next(line for line in out.stdout.splitlines() if "PartitionCount:" in line)
    assert f"Topic: {C}" in header and "PartitionCount: 5" in header
