"""The authorization matrix against Kafka 4.1's, API by API.

Both brokers run with an authorizer and deny by default. For every API key pybroker
advertises, a client (User:ANONYMOUS from 127.0.0.1) first sends the request holding no
ACL: it must be refused with an authorization error, exactly as Kafka refuses it; then it
is granted the ACLs Kafka's KafkaApis checks for that API and sends it again: no
authorization error, and again Kafka's exact answer. Further cases: deny beats allow,
prefixed patterns, topics hidden from Metadata and DescribeTopicPartitions, auto-creation
needing CREATE, and the authorized-operations bitfields.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.differential.helpers import (
    Cases,
    batch,
    create_topic,
    fetch,
    init_producer,
    produce_request,
    records_without_producer_ids,
    topic_id,
    versions,
    warm_coordinator,
)
from tests.support.authz import ADMIN_HOST, CLIENT_HOST, start_kafka, start_pybroker
from tests.support.authz_pairs import PREFIXED, auth_errors, creation, grant, revoke_client
from tests.support.differential import (
    DifferentialPair,
    record_comparison,
    request_for,
    to_plain,
)
from tests.support.wire import KafkaWire

TOPIC, GROUP, TXN = "authz-t", "authz-g", "authz-x"
OTHER = "authz-other"  # a topic the client never gets rights on
MEMBER = str(uuid.UUID(int=7))
# Records as new as the test: Kafka's retention (7 days, first check 30 s after start)
# would otherwise delete them mid-run, and pybroker's (first check after 5 min) not yet.
TS = int(time.time() * 1000)  # a KIP-848 member id chosen by the client
CLUSTER = ("cluster", "kafka-cluster")
Grant = tuple[str, str, str]  # (resource type, name, operation)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DifferentialPair, ...]]:
    base: Path = tmp_path_factory.mktemp("authz")
    kafka = start_kafka(base / "kafka" / "data")
    try:
        ours = start_pybroker(base / "ours" / "data")
    except BaseException:
        kafka.stop()
        raise
    admin = DifferentialPair(ours.port, kafka.port, source=ADMIN_HOST)
    client = DifferentialPair(ours.port, kafka.port, source=CLIENT_HOST)
    try:
        _setup(admin)
        yield admin, client
    finally:
        admin.close()
        client.close()
        ours.stop()
        kafka.stop()


def _setup(admin: DifferentialPair) -> None:
    """A topic with one batch, a group with a committed offset, a transactional id."""
    create_topic(admin, TOPIC)
    create_topic(admin, OTHER)
    for conn in (admin.ours, admin.kafka):
        resp = conn.request(produce_request(9, TOPIC, batch([b"a", b"b"], ts=TS)))
        assert resp.responses[0].partition_responses[0].error_code == 0
        warm_coordinator(conn, GROUP, 0)
        deadline = time.monotonic() + 30
        while True:  # the coordinator may still be loading its partition
            commit = conn.request(_offset_commit(conn, 9))
            code = commit.topics[0].partitions[0].error_code
            if code == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert code == 0, commit
        warm_coordinator(conn, TXN, 1)
        init_producer(conn, TXN)
        TOPIC_IDS[conn.sock.getpeername()[1]] = topic_id(conn, TOPIC)


# ------------------------------------------------------------------------- requests


def _offset_commit(_conn: KafkaWire, v: int) -> Any:
    return request_for(
        8,
        v,
        group_id=GROUP,
        generation_id_or_member_epoch=-1,
        member_id="",
        topics=[
            {
                "name": TOPIC,
                "partitions": [{"partition_index": 0, "committed_offset": 1}],
            }
        ],
    )


TOPIC_IDS: dict[int, Any] = {}  # broker port -> the id it gave TOPIC (looked up as admin)


def _fetch(v: int) -> Callable[[KafkaWire], Any]:
    def make(conn: KafkaWire) -> Any:
        request = fetch(min(v, 12), conn, TOPIC, {0: 0})
        if v < 13:
            return request
        tid = TOPIC_IDS[conn.sock.getpeername()[1]]
        topics = [
            {
                "topic": TOPIC,
                "topic_id": tid,
                "partitions": [to_plain(p) for p in request.topics[0].partitions],
            }
        ]
        return request_for(
            1,
            v,
            replica_id=-1,
            max_wait=0,
            min_bytes=0,
            max_bytes=request.max_bytes,
            topics=topics,
            forgotten_topics_data=[],
            rack_id="",
        )

    return make


def _req(api_key: int, v: int, **fields: Any) -> Callable[[KafkaWire], Any]:
    return lambda _conn: request_for(api_key, v, **fields)


@dataclass
class Case:
    name: str
    key: int
    version: int
    make: Callable[[KafkaWire], Any]
    grants: list[Grant]
    volatile: tuple[str, ...] = ()
    unordered: tuple[str, ...] = ()
    transform: Callable[[Any], Any] | None = None
    # The refusal need not be an error code (Metadata hides topics): a check of our answer.
    refused: Callable[[Any], bool] = field(default=lambda r: bool(auth_errors(r)))
    # How to ask when kio cannot decode the answer (a -1 timestamp as a datetime).
    ask: Callable[[KafkaWire, Any], Any] | None = None
    # ACLs held already when the request is refused (to reach a later check).
    given: list[Grant] = field(default_factory=list)
    # What "allowed" means when part of the answer stays refused on purpose.
    accepted: Callable[[Any], bool] = field(default=lambda r: not auth_errors(r))


class _Reader:
    """Just enough of the flexible wire format to read a DescribeTransactions v0 answer."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def int(self, size: int) -> int:
        value = int.from_bytes(self.data[self.pos : self.pos + size], "big", signed=True)
        self.pos += size
        return value

    def uvarint(self) -> int:
        shift = value = 0
        while True:
            b = self.data[self.pos]
            self.pos += 1
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7

    def string(self) -> str:
        n = self.uvarint() - 1
        text = self.data[self.pos : self.pos + n].decode()
        self.pos += n
        return text

    def array(self, item: Callable[[], Any]) -> list[Any]:
        return [item() for _ in range(self.uvarint() - 1)]

    def tags(self) -> None:
        assert self.uvarint() == 0


def _raw_flexible(conn: KafkaWire, request: Any) -> dict[str, Any]:
    """A flexible response whose first field is its error code, compared byte for byte
    (kio refuses the -1 timestamps the delegation-token answers carry)."""
    conn.send(request)
    payload = conn.recv_frame()
    assert payload[4] == 0, "a response header without tagged fields"
    return {"error_code": int.from_bytes(payload[5:7], "big"), "rest": payload[7:].hex()}


def _describe_transactions(conn: KafkaWire, request: Any) -> dict[str, Any]:
    """DescribeTransactions v0 decoded by hand: kio refuses the -1 start time Kafka sends."""
    conn.send(request)
    r = _Reader(conn.recv_frame())
    r.int(4)
    r.tags()  # response header v1

    def topic() -> dict[str, Any]:
        out = {"topic": r.string(), "partitions": r.array(lambda: r.int(4))}
        r.tags()
        return out

    def state() -> dict[str, Any]:
        out = {
            "error_code": r.int(2),
            "transactional_id": r.string(),
            "transaction_state": r.string(),
            "transaction_timeout": r.int(4),
            "transaction_start_time": r.int(8),
            "producer_id": r.int(8),
            "producer_epoch": r.int(2),
            "topics": r.array(topic),
        }
        r.tags()
        return out

    return {"throttle_time": r.int(4), "transaction_states": r.array(state)}


DENIED_MESSAGE = ("error_message",)  # cluster-operation denials name Kafka's request object


def cases() -> list[Case]:
    t, g, x = ("topic", TOPIC), ("group", GROUP), ("transactional_id", TXN)
    pid = {"producer_id": 424242, "producer_epoch": 0}
    return [
        Case(
            "produce",
            0,
            11,
            lambda c: produce_request(11, TOPIC, batch([b"p"], ts=TS)),
            [(*t, "WRITE")],
        ),
        Case(
            "produce-v13",
            0,
            13,
            lambda c: produce_request(
                13, "", batch([b"p"], ts=TS), topic_id=TOPIC_IDS[c.sock.getpeername()[1]]
            ),
            [(*t, "WRITE")],
            volatile=("topic_id",),
        ),
        Case(
            "produce-transactional",
            0,
            11,
            lambda c: produce_request(
                11,
                TOPIC,
                batch(
                    [b"p"],
                    ts=TS,
                    transactional=True,
                    producer_id=9,
                    producer_epoch=0,
                    base_sequence=0,
                ),
                transactional_id=TXN,
            ),
            [(*t, "WRITE"), (*x, "WRITE")],
        ),
        Case(
            "fetch-v12", 1, 12, _fetch(12), [(*t, "READ")], transform=records_without_producer_ids
        ),
        Case(
            "fetch-v17",
            1,
            17,
            _fetch(17),
            [(*t, "READ")],
            volatile=("topic_id",),
            transform=records_without_producer_ids,
        ),
        Case(
            "list-offsets",
            2,
            9,
            _req(
                2,
                9,
                replica_id=-1,
                topics=[
                    {
                        "name": TOPIC,
                        "partitions": [
                            {"partition_index": 0, "timestamp": -1, "current_leader_epoch": -1}
                        ],
                    }
                ],
            ),
            [(*t, "DESCRIBE")],
        ),
        Case(
            "metadata-named",
            3,
            12,
            _req(
                3,
                12,
                topics=[{"name": TOPIC}],
                allow_auto_topic_creation=False,
                include_topic_authorized_operations=True,
            ),
            [(*t, "READ")],
        ),
        Case(
            "metadata-v10-cluster-ops",
            3,
            10,
            _req(
                3,
                10,
                topics=[{"name": TOPIC}],
                allow_auto_topic_creation=False,
                include_topic_authorized_operations=True,
                include_cluster_authorized_operations=True,
            ),
            [(*t, "DESCRIBE"), (*CLUSTER, "DESCRIBE"), (*CLUSTER, "ALTER_CONFIGS")],
            refused=lambda r: bool(auth_errors(r)) and r.cluster_authorized_operations == 0,
        ),
        Case("offset-commit", 8, 9, lambda c: _offset_commit(c, 9), [(*g, "READ"), (*t, "READ")]),
        Case(
            "offset-fetch",
            9,
            9,
            _req(
                9,
                9,
                groups=[
                    {
                        "group_id": GROUP,
                        "member_id": None,
                        "member_epoch": -1,
                        "topics": [{"name": TOPIC, "partition_indexes": [0]}],
                    }
                ],
            ),
            [(*g, "DESCRIBE"), (*t, "DESCRIBE")],
        ),
        Case(
            "offset-fetch-v7",
            9,
            7,
            _req(9, 7, group_id=GROUP, topics=[{"name": TOPIC, "partition_indexes": [0]}]),
            [(*g, "READ"), (*t, "READ")],
        ),
        Case(
            "find-coordinator-group",
            10,
            6,
            _req(10, 6, key_type=0, coordinator_keys=[GROUP]),
            [(*g, "DESCRIBE")],
        ),
        Case(
            "find-coordinator-txn",
            10,
            6,
            _req(10, 6, key_type=1, coordinator_keys=[TXN]),
            [(*x, "DESCRIBE")],
        ),
        Case("find-coordinator-v3", 10, 3, _req(10, 3, key_type=0, key=GROUP), [(*g, "READ")]),
        Case(
            "join-group",
            11,
            9,
            _req(
                11,
                9,
                group_id=GROUP,
                session_timeout=10_000,
                rebalance_timeout=10_000,
                member_id="",
                protocol_type="consumer",
                protocols=[{"name": "range", "metadata": b""}],
            ),
            [(*g, "READ")],
            volatile=("member_id",),
        ),
        Case(
            "heartbeat",
            12,
            4,
            _req(12, 4, group_id=GROUP, generation_id=1, member_id="m"),
            [(*g, "READ")],
        ),
        Case(
            "leave-group",
            13,
            5,
            _req(13, 5, group_id=GROUP, members=[{"member_id": "m"}]),
            [(*g, "READ")],
        ),
        Case(
            "sync-group",
            14,
            5,
            _req(
                14,
                5,
                group_id=GROUP,
                generation_id=1,
                member_id="m",
                protocol_type="consumer",
                protocol_name="range",
                assignments=[],
            ),
            [(*g, "READ")],
        ),
        Case(
            "describe-groups",
            15,
            5,
            _req(15, 5, groups=[GROUP], include_authorized_operations=True),
            [(*g, "DESCRIBE")],
        ),
        Case(
            "list-groups",
            16,
            5,
            _req(16, 5, states_filter=[], types_filter=[]),
            [(*g, "DESCRIBE")],
            refused=lambda r: not r.groups,
        ),
        Case(
            "create-topics",
            19,
            7,
            _req(
                19,
                7,
                topics=[{"name": "authz-new", "num_partitions": 1, "replication_factor": 1}],
                timeout=30_000,
                validate_only=True,
            ),
            [("topic", "authz-new", "CREATE")],
            volatile=("topic_id",),
        ),
        Case(
            "create-topics-cluster-configs",
            19,
            7,
            _req(
                19,
                7,
                topics=[{"name": "authz-new2", "num_partitions": 2, "replication_factor": 1}],
                timeout=30_000,
                validate_only=True,
            ),
            [(*CLUSTER, "CREATE"), ("topic", "authz-new2", "ALTER_CONFIGS")],
            volatile=("topic_id", "configs"),
        ),
        Case(
            "delete-topics",
            20,
            6,
            _req(20, 6, topics=[{"name": "authz-gone"}], timeout=30_000),
            [("topic", "authz-gone", "DELETE")],
        ),
        Case(
            "delete-records",
            21,
            2,
            _req(
                21,
                2,
                topics=[{"name": TOPIC, "partitions": [{"partition_index": 0, "offset": 0}]}],
                timeout=30_000,
            ),
            [(*t, "DELETE")],
        ),
        Case(
            "init-producer-id-idempotent",
            22,
            5,
            _req(
                22,
                5,
                transactional_id=None,
                transaction_timeout=60_000,
                producer_id=-1,
                producer_epoch=-1,
            ),
            [("topic", "authz-", "WRITE")],
        ),
        Case(
            "init-producer-id-transactional",
            22,
            5,
            _req(
                22,
                5,
                transactional_id=TXN,
                transaction_timeout=60_000,
                producer_id=-1,
                producer_epoch=-1,
            ),
            [(*x, "WRITE")],
        ),
        Case(
            "offset-for-leader-epoch",
            23,
            4,
            _req(
                23,
                4,
                replica_id=-1,
                topics=[
                    {
                        "topic": TOPIC,
                        "partitions": [
                            {"partition": 0, "current_leader_epoch": -1, "leader_epoch": 0}
                        ],
                    }
                ],
            ),
            [(*t, "DESCRIBE")],
        ),
        Case(
            "add-partitions-to-txn-v3",
            24,
            3,
            _req(
                24,
                3,
                v3_and_below_transactional_id=TXN,
                v3_and_below_producer_id=424242,
                v3_and_below_producer_epoch=0,
                v3_and_below_topics=[{"name": TOPIC, "partitions": [0]}],
            ),
            [(*x, "WRITE"), (*t, "WRITE")],
        ),
        Case(
            "add-partitions-to-txn-v5",
            24,
            5,
            _req(
                24,
                5,
                transactions=[
                    {
                        "transactional_id": TXN,
                        **pid,
                        "verify_only": True,
                        "topics": [{"name": TOPIC, "partitions": [0]}],
                    }
                ],
            ),
            [(*CLUSTER, "CLUSTER_ACTION"), (*t, "WRITE")],
        ),
        Case(
            "add-offsets-to-txn",
            25,
            4,
            _req(25, 4, transactional_id=TXN, group_id=GROUP, **pid),
            [(*x, "WRITE"), (*g, "READ")],
        ),
        Case(
            "end-txn",
            26,
            4,
            _req(26, 4, transactional_id=TXN, committed=False, **pid),
            [(*x, "WRITE")],
        ),
        Case(
            "write-txn-markers",
            27,
            1,
            _req(
                27,
                1,
                markers=[
                    {
                        **pid,
                        "transaction_result": False,
                        "coordinator_epoch": 0,
                        "topics": [{"name": OTHER, "partition_indexes": [0]}],
                    }
                ],
            ),
            [(*CLUSTER, "CLUSTER_ACTION")],
        ),
        Case(
            "txn-offset-commit",
            28,
            4,
            _req(
                28,
                4,
                transactional_id=TXN,
                group_id=GROUP,
                **pid,
                generation_id=-1,
                member_id="",
                topics=[
                    {"name": TOPIC, "partitions": [{"partition_index": 0, "committed_offset": 1}]}
                ],
            ),
            [(*x, "WRITE"), (*g, "READ"), (*t, "READ")],
        ),
        Case(
            "describe-configs-topic",
            32,
            4,
            _req(
                32,
                4,
                resources=[
                    {
                        "resource_type": 2,
                        "resource_name": TOPIC,
                        "configuration_keys": ["cleanup.policy"],
                    }
                ],
            ),
            [(*t, "ALTER_CONFIGS")],
        ),
        Case(
            "describe-configs-broker",
            32,
            4,
            _req(
                32,
                4,
                resources=[
                    {
                        "resource_type": 4,
                        "resource_name": "1",
                        "configuration_keys": ["num.partitions"],
                    }
                ],
            ),
            [(*CLUSTER, "DESCRIBE_CONFIGS")],
            volatile=("resource_name", "results"),
        ),
        Case(
            "alter-configs",
            33,
            2,
            _req(
                33,
                2,
                resources=[
                    {
                        "resource_type": 2,
                        "resource_name": TOPIC,
                        "configs": [{"name": "retention.ms", "value": "100000"}],
                    }
                ],
                validate_only=True,
            ),
            [(*t, "ALTER_CONFIGS")],
        ),
        Case(
            "alter-replica-log-dirs",
            34,
            2,
            _req(
                34,
                2,
                dirs=[{"path": "/nonexistent-dir", "topics": [{"name": TOPIC, "partitions": [0]}]}],
            ),
            [(*CLUSTER, "ALTER")],
        ),
        Case(
            "describe-log-dirs",
            35,
            4,
            _req(35, 4, topics=[{"topic": TOPIC, "partitions": [0]}]),
            [(*CLUSTER, "DESCRIBE")],
            transform=lambda plain: {
                "error_code": plain["error_code"],
                "dirs": len(plain["results"]),
            },
        ),
        Case(
            "create-partitions",
            37,
            3,
            _req(
                37,
                3,
                topics=[{"name": TOPIC, "count": 3, "assignments": None}],
                timeout=30_000,
                validate_only=True,
            ),
            [(*t, "ALTER")],
        ),
        Case(
            "delete-groups",
            42,
            2,
            _req(42, 2, groups_names=["authz-empty"]),
            [("group", "authz-empty", "DELETE")],
        ),
        Case(
            "elect-leaders",
            43,
            2,
            _req(
                43,
                2,
                election_type=0,
                topic_partitions=[{"topic": TOPIC, "partitions": [0]}],
                timeout=30_000,
            ),
            [(*CLUSTER, "ALTER")],
            volatile=DENIED_MESSAGE,
        ),
        Case(
            "incremental-alter-configs",
            44,
            1,
            _req(
                44,
                1,
                resources=[
                    {
                        "resource_type": 2,
                        "resource_name": TOPIC,
                        "configs": [
                            {"name": "retention.ms", "config_operation": 0, "value": "100000"}
                        ],
                    }
                ],
                validate_only=True,
            ),
            [(*t, "ALTER_CONFIGS")],
        ),
        Case(
            "alter-partition-reassignments",
            45,
            0,
            _req(
                45,
                0,
                timeout=30_000,
                topics=[{"name": TOPIC, "partitions": [{"partition_index": 0, "replicas": None}]}],
            ),
            [(*CLUSTER, "ALTER")],
            volatile=DENIED_MESSAGE,
        ),
        Case(
            "list-partition-reassignments",
            46,
            0,
            _req(46, 0, timeout=30_000, topics=None),
            [(*CLUSTER, "DESCRIBE")],
            volatile=DENIED_MESSAGE,
        ),
        Case(
            "offset-delete",
            47,
            0,
            _req(
                47,
                0,
                group_id=GROUP,
                topics=[{"name": TOPIC, "partitions": [{"partition_index": 0}]}],
            ),
            [(*g, "DELETE"), (*t, "READ")],
        ),
        Case(
            "describe-cluster",
            60,
            1,
            _req(60, 1, include_cluster_authorized_operations=True, endpoint_type=1),
            [(*CLUSTER, "DESCRIBE"), (*CLUSTER, "IDEMPOTENT_WRITE")],
            refused=lambda r: r.cluster_authorized_operations == 0,
        ),
        Case(
            "describe-producers",
            61,
            0,
            _req(61, 0, topics=[{"name": TOPIC, "partition_indexes": [0]}]),
            [(*t, "READ")],
        ),
        Case(
            "describe-transactions",
            65,
            0,
            _req(65, 0, transactional_ids=[TXN]),
            [(*x, "DESCRIBE")],
            ask=_describe_transactions,
            refused=lambda r: r["transaction_states"][0]["error_code"] == 53,
        ),
        Case(
            "list-transactions",
            66,
            1,
            _req(66, 1, state_filters=[], producer_id_filters=[], duration_filter=-1),
            [(*x, "WRITE")],
            refused=lambda r: not r.transaction_states,
        ),
        Case(
            "consumer-group-heartbeat",
            68,
            1,
            _req(
                68,
                1,
                group_id="authz-cg",
                member_id=MEMBER,
                member_epoch=0,
                rebalance_timeout=30_000,
                subscribed_topic_names=[TOPIC],
                topic_partitions=[],
                server_assignor=None,
            ),
            [("group", "authz-cg", "READ"), (*t, "DESCRIBE")],
            volatile=("heartbeat_interval", "assignment"),
        ),
        Case(
            "consumer-group-describe",
            69,
            1,
            _req(69, 1, group_ids=["authz-cg"], include_authorized_operations=True),
            [("group", "authz-cg", "DESCRIBE"), (*t, "DESCRIBE")],
        ),
        Case(
            "consumer-group-describe-hidden-topics",
            69,
            1,
            _req(69, 1, group_ids=["authz-cg"], include_authorized_operations=True),
            [(*t, "DESCRIBE")],
            given=[("group", "authz-cg", "DESCRIBE")],
        ),
        Case(
            "offset-commit-topic",
            8,
            9,
            lambda c: _offset_commit(c, 9),
            [(*t, "READ")],
            given=[(*g, "READ")],
        ),
        Case(
            "offset-fetch-topic",
            9,
            9,
            _req(
                9,
                9,
                groups=[
                    {
                        "group_id": GROUP,
                        "member_id": None,
                        "member_epoch": -1,
                        "topics": [
                            {"name": TOPIC, "partition_indexes": [0]},
                            {"name": OTHER, "partition_indexes": [0]},
                        ],
                    }
                ],
            ),
            [(*t, "DESCRIBE")],
            given=[(*g, "DESCRIBE")],
            accepted=lambda r: r.groups[0].topics[0].partitions[0].error_code == 0,
        ),
        Case(
            "offset-fetch-all-topics",
            9,
            9,
            _req(
                9,
                9,
                groups=[{"group_id": GROUP, "member_id": None, "member_epoch": -1, "topics": None}],
            ),
            [(*t, "DESCRIBE")],
            given=[(*g, "DESCRIBE")],
            refused=lambda r: not r.groups[0].topics,
        ),
        Case(
            "txn-offset-commit-topic",
            28,
            4,
            _req(
                28,
                4,
                transactional_id=TXN,
                group_id=GROUP,
                **pid,
                generation_id=-1,
                member_id="",
                topics=[
                    {"name": TOPIC, "partitions": [{"partition_index": 0, "committed_offset": 1}]}
                ],
            ),
            [(*t, "READ")],
            given=[(*x, "WRITE"), (*g, "READ")],
        ),
        Case(
            "add-offsets-to-txn-group",
            25,
            4,
            _req(25, 4, transactional_id=TXN, group_id=GROUP, **pid),
            [(*g, "READ")],
            given=[(*x, "WRITE")],
        ),
        Case(
            "produce-transactional-topic",
            0,
            11,
            lambda c: produce_request(
                11,
                TOPIC,
                batch(
                    [b"p"],
                    ts=TS,
                    transactional=True,
                    producer_id=9,
                    producer_epoch=0,
                    base_sequence=0,
                ),
                transactional_id=TXN,
            ),
            [(*t, "WRITE")],
            given=[(*x, "WRITE")],
        ),
        Case(
            "delete-topics-describe-only",
            20,
            6,
            _req(20, 6, topics=[{"name": OTHER}], timeout=30_000),
            [("topic", "authz-nothing", "DELETE")],
            given=[("topic", OTHER, "DESCRIBE")],
            refused=lambda r: r.responses[0].error_code == 29,
            accepted=lambda r: r.responses[0].error_code == 29,  # DELETE on another topic
        ),
        Case(
            "create-topics-configs-withheld",
            19,
            7,
            _req(
                19,
                7,
                topics=[{"name": "authz-new3", "num_partitions": 1, "replication_factor": 1}],
                timeout=30_000,
                validate_only=True,
            ),
            [("topic", "authz-new3", "ALTER_CONFIGS")],
            given=[("topic", "authz-new3", "CREATE")],
            volatile=("topic_id", "configs"),
            refused=lambda r: r.topics[0].topic_config_error_code == 29,
        ),
        Case(
            "metadata-cluster-create",
            3,
            12,
            _req(3, 12, topics=[{"name": "authz-auto2"}], allow_auto_topic_creation=True),
            [(*CLUSTER, "CREATE")],
            given=[("topic", "authz-auto2", "DESCRIBE")],
        ),
        Case(
            "list-groups-cluster",
            16,
            5,
            _req(16, 5, states_filter=[], types_filter=[]),
            [(*CLUSTER, "DESCRIBE")],
            refused=lambda r: not r.groups,
            unordered=("groups",),
        ),
        Case(
            "describe-user-scram-credentials",
            50,
            0,
            _req(50, 0, users=[{"name": "authz-nobody"}]),
            [(*CLUSTER, "DESCRIBE")],
        ),
        Case(
            "alter-user-scram-credentials",
            51,
            0,
            _req(51, 0, deletions=[{"name": "authz-nobody", "mechanism": 1}], upsertions=[]),
            [(*CLUSTER, "ALTER")],
            volatile=DENIED_MESSAGE,
        ),
        Case(
            "describe-client-quotas",
            48,
            1,
            _req(48, 1, components=[], strict=False),
            [(*CLUSTER, "DESCRIBE_CONFIGS")],
        ),
        Case(
            "alter-client-quotas",
            49,
            1,
            _req(
                49,
                1,
                validate_only=True,
                entries=[
                    {
                        "entity": [{"entity_type": "client-id", "entity_name": "authz-c"}],
                        "ops": [{"key": "producer_byte_rate", "value": 1024.0, "remove": False}],
                    }
                ],
            ),
            [(*CLUSTER, "ALTER_CONFIGS")],
            volatile=DENIED_MESSAGE,
        ),
        # Delegation tokens cannot be asked for over PLAINTEXT at all (Kafka: only a SASL
        # session authenticated without a token may): the refusal is compared, no grant helps.
        Case(
            "create-delegation-token",
            38,
            3,
            _req(38, 3, renewers=[], max_lifetime=-1),
            [],
            ask=_raw_flexible,
            refused=lambda r: r["error_code"] != 0,
            accepted=lambda r: r["error_code"] != 0,
        ),
        Case(
            "renew-delegation-token",
            39,
            2,
            _req(39, 2, hmac=b"x", renew_period=-1),
            [],
            ask=_raw_flexible,
            refused=lambda r: r["error_code"] != 0,
            accepted=lambda r: r["error_code"] != 0,
        ),
        Case(
            "expire-delegation-token",
            40,
            2,
            _req(40, 2, hmac=b"x", expiry_time_period=-1),
            [],
            ask=_raw_flexible,
            refused=lambda r: r["error_code"] != 0,
            accepted=lambda r: r["error_code"] != 0,
        ),
        Case(
            "describe-delegation-token",
            41,
            3,
            _req(41, 3, owners=None),
            [],
            ask=_raw_flexible,
            refused=lambda r: r["error_code"] != 0,
            accepted=lambda r: r["error_code"] != 0,
        ),
        Case(
            "list-config-resources",
            74,
            1,
            _req(74, 1, resource_types=[16]),
            [(*CLUSTER, "DESCRIBE_CONFIGS")],
        ),
        Case(
            "describe-topic-partitions",
            75,
            0,
            _req(75, 0, topics=[{"name": TOPIC}], response_partition_limit=100, cursor=None),
            [(*t, "DESCRIBE")],
            volatile=("topic_id",),
        ),
    ]


AUTHORIZATION_FREE = {
    17: "SaslHandshake",
    18: "ApiVersions",
    36: "SaslAuthenticate",
    # KIP-714: Kafka's KafkaApis authorizes neither (test_diff_telemetry compares them).
    71: "GetTelemetrySubscriptions",
    72: "PushTelemetry",
}


def _run(cases_: Cases, admin: DifferentialPair, client: DifferentialPair, case: Case) -> list[str]:
    """Denied then allowed; returns what went wrong on pybroker's side (Kafka's answers are
    compared by ``cases_``)."""
    problems = []
    revoke_client(admin)
    if case.given:
        grant(admin, *(creation(rtype, name, op) for rtype, name, op in case.given))
    kw = dict(volatile=case.volatile, unordered=case.unordered, transform=case.transform)
    ask = case.ask or (lambda conn, request: conn.request(request))

    def compare(label: str) -> Any:
        ours_req, kafka_req = case.make(client.ours), case.make(client.kafka)
        ours, kafka = ask(client.ours, ours_req), ask(client.kafka, kafka_req)
        cases_.add(record_comparison(f"authz-{case.name}-{label}", ours_req, ours, kafka, **kw))
        return ours

    ours_denied = compare("denied")
    if not case.refused(ours_denied):
        problems.append(f"{case.name}: not refused without ACLs: {ours_denied}")
    if case.grants:
        grant(admin, *(creation(rtype, name, op) for rtype, name, op in case.grants))
    ours_allowed = compare("allowed")
    if not case.accepted(ours_allowed):
        problems.append(f"{case.name}: refused with {case.grants}: {ours_allowed}")
    return problems


def test_every_advertised_api_is_authorized_as_kafka(pairs: tuple[DifferentialPair, ...]) -> None:
    admin, client = pairs
    table = cases()
    advertised = set(client.ours.api_versions())
    covered = {c.key for c in table} | {29, 30, 31}  # the ACL APIs: test_diff_acls.py
    missing = advertised - covered - set(AUTHORIZATION_FREE)
    assert not missing, f"advertised APIs without an authorization case: {missing}"
    checks = Cases(client)
    problems: list[str] = []
    for case in table:
        assert case.version in versions(client, case.key), case
        problems += _run(checks, admin, client, case)
    revoke_client(admin)
    try:
        checks.check()
    except AssertionError as exc:
        problems.append(str(exc))
    assert not problems, "\n".join(problems)


def test_deny_beats_allow_and_prefixes(pairs: tuple[DifferentialPair, ...]) -> None:
    admin, client = pairs
    checks = Cases(client)
    revoke_client(admin)
    make = _fetch(12)
    grant(admin, creation("topic", "authz-", "ALL", pattern=PREFIXED))
    prefixed = client.ours.request(make(client.ours))
    assert not auth_errors(prefixed)
    checks.compare_each("authz-prefix-allows", make, transform=records_without_producer_ids)
    grant(admin, creation("topic", TOPIC, "READ", deny=True))
    checks.compare_each("authz-deny-beats-allow", make, transform=records_without_producer_ids)
    assert auth_errors(client.ours.request(make(client.ours))) == {"topic_authorization_failed"}
    # A DENY of READ does not deny DESCRIBE (implied by the prefixed ALL).
    lo = _req(
        2,
        9,
        replica_id=-1,
        topics=[
            {
                "name": TOPIC,
                "partitions": [{"partition_index": 0, "timestamp": -1, "current_leader_epoch": -1}],
            }
        ],
    )
    checks.compare_each("authz-deny-read-keeps-describe", lo)
    assert not auth_errors(client.ours.request(lo(client.ours)))
    revoke_client(admin)
    checks.check()


def test_metadata_hides_and_auto_create_needs_create(pairs: tuple[DifferentialPair, ...]) -> None:
    admin, client = pairs
    checks = Cases(client)
    revoke_client(admin)
    grant(admin, creation("topic", TOPIC, "DESCRIBE"))
    all_topics = _req(
        3,
        12,
        topics=None,
        allow_auto_topic_creation=False,
        include_topic_authorized_operations=True,
    )
    checks.compare_each("authz-metadata-all-hides", all_topics, volatile=("topic_id",))
    names = {t.name for t in client.ours.request(all_topics(client.ours)).topics}
    assert names == {TOPIC}
    named = _req(
        3,
        12,
        topics=[{"name": TOPIC}, {"name": OTHER}, {"name": "authz-missing"}],
        allow_auto_topic_creation=True,
    )
    checks.compare_each("authz-metadata-named-mixed", named, volatile=("topic_id",))
    dtp = _req(75, 0, topics=[], response_partition_limit=100, cursor=None)
    checks.compare_each("authz-describe-topic-partitions-all-hides", dtp, volatile=("topic_id",))
    assert [t.name for t in client.ours.request(dtp(client.ours)).topics] == [TOPIC]
    grant(admin, creation("topic", "authz-auto", "DESCRIBE"))
    auto = _req(3, 12, topics=[{"name": "authz-auto"}], allow_auto_topic_creation=True)
    checks.compare_each("authz-metadata-auto-create-refused", auto)
    grant(admin, creation("topic", "authz-auto", "CREATE"))
    checks.compare_each("authz-metadata-auto-create-allowed", auto, volatile=("topic_id",))
    revoke_client(admin)
    checks.check()
