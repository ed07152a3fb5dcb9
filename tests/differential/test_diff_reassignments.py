"""AlterPartitionReassignments (45), ListPartitionReassignments (46) and ElectLeaders (43)
vs Kafka 4.1 (a single-node KRaft cluster): the answers a one-broker cluster can give,
errors included. Each broker is asked about its own node id (they differ)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.differential.helpers import Cases, create_topic, versions
from tests.support.broker import BrokerProcess
from tests.support.differential import DifferentialPair, request_for
from tests.support.kafka_ref import KafkaReference
from tests.support.wire import KafkaWire

ELECT, ALTER, LIST = 43, 45, 46
TOPIC = "dre-topic"


@pytest.fixture(scope="module")
def pair(
    differential_brokers: tuple[BrokerProcess, KafkaReference],
) -> Iterator[DifferentialPair]:
    ours, kafka = differential_brokers
    with DifferentialPair(ours.port, kafka.port) as p:
        create_topic(p, TOPIC, partitions=2)
        yield p


def node_id(conn: KafkaWire) -> int:
    (b,) = conn.request(request_for(60, 0)).brokers
    return int(b.broker_id)


def alter(
    version: int, topic: str, partition: int, replicas: list[int] | None, allow: bool = True
) -> Any:
    return request_for(
        ALTER,
        version,
        timeout=30_000,
        allow_replication_factor_change=allow,
        topics=[
            {"name": topic, "partitions": [{"partition_index": partition, "replicas": replicas}]}
        ],
    )


ALTER_CASES: dict[str, Callable[[int, int], Any]] = {
    "unknown-topic": lambda v, me: alter(v, "dre-missing", 0, [me]),
    "unknown-partition": lambda v, me: alter(v, TOPIC, 7, [me]),
    "empty": lambda v, me: alter(v, TOPIC, 0, []),
    "duplicate": lambda v, me: alter(v, TOPIC, 0, [me, me]),
    "unregistered": lambda v, me: alter(v, TOPIC, 0, [me, 99]),
    "same": lambda v, me: alter(v, TOPIC, 0, [me]),
    "cancel-none": lambda v, me: alter(v, TOPIC, 1, None),
    "cancel-unknown": lambda v, me: alter(v, "dre-missing", 0, None),
    "rf-change-refused": lambda v, me: alter(v, TOPIC, 0, [me, 99], allow=False),
    "rf-change-empty": lambda v, me: alter(v, TOPIC, 0, [], allow=False),
}


def _own_id(plain: Any) -> Any:
    """The brokers' node ids differ (0 and 1): messages naming the broker's own id
    compare alike."""
    if isinstance(plain, dict):
        return {k: _own_id(v) for k, v in plain.items()}
    if isinstance(plain, list):
        return [_own_id(v) for v in plain]
    if isinstance(plain, str):
        return re.sub(r"includes the broker [01] more", "includes the broker <self> more", plain)
    return plain


def test_alter_partition_reassignments(pair: DifferentialPair) -> None:
    cases = Cases(pair)
    for v in versions(pair, ALTER):
        for case, make in ALTER_CASES.items():
            cases.compare_each(
                f"alter-reassignments-{case}-v{v}",
                lambda conn, make=make, v=v: make(v, node_id(conn)),
                transform=_own_id,
            )
    cases.check()


def test_list_partition_reassignments(pair: DifferentialPair) -> None:
    cases = Cases(pair)
    for v in versions(pair, LIST):
        cases.compare(f"list-reassignments-all-v{v}", request_for(LIST, v, topics=None))
        cases.compare(
            f"list-reassignments-some-v{v}",
            request_for(
                LIST,
                v,
                topics=[
                    {"name": TOPIC, "partition_indexes": [0, 1, 5]},
                    {"name": "dre-missing", "partition_indexes": [0]},
                ],
            ),
        )
    cases.check()


def elect(version: int, kind: int, partitions: dict[str, list[int]] | None) -> Any:
    return request_for(
        ELECT,
        version,
        election_type=kind,
        timeout=30_000,
        topic_partitions=None
        if partitions is None
        else [{"topic": t, "partitions": ps} for t, ps in partitions.items()],
    )


def _only_partition_results(plain: Any) -> Any:
    """Every topic of the broker is listed for an all-partitions election (the brokers'
    topics differ): compare the partition results only."""
    results = plain.get("replica_election_results") if isinstance(plain, dict) else None
    if results is not None:
        plain["replica_election_results"] = [r for r in results if r.get("partition_result")]
    return plain


def test_elect_leaders(pair: DifferentialPair) -> None:
    cases = Cases(pair)
    for v in versions(pair, ELECT):
        for kind, name in ((0, "preferred"), (1, "unclean")):
            if v == 0 and kind == 1:
                continue  # v0 has no election type (always preferred)
            cases.compare(
                f"elect-leaders-{name}-v{v}",
                elect(v, kind, {TOPIC: [0, 1, 9], "dre-missing": [0]}),
            )
            cases.compare(
                f"elect-leaders-{name}-all-v{v}",
                elect(v, kind, None),
                transform=_only_partition_results,
            )
    cases.check()
