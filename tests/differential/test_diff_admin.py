"""CreateTopics, DeleteTopics, CreatePartitions and the config APIs vs Kafka 4.1."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.differential.helpers import (
    Cases,
    create_topic,
    kraft_min_isr,
    topic_id,
    versions,
    wait_leaders,
)
from tests.support.broker import BrokerProcess
from tests.support.differential import DifferentialPair, request_for
from tests.support.kafka_ref import KafkaReference
from tests.support.wire import KafkaWire

CREATE_TOPICS, DELETE_TOPICS, CREATE_PARTITIONS = 19, 20, 37
DESCRIBE_CONFIGS, ALTER_CONFIGS, INCREMENTAL_ALTER_CONFIGS = 32, 33, 44
TOPIC, BROKER, BROKER_LOGGER = 2, 4, 8
SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3
PREFIX = "dad-"


@pytest.fixture(scope="module")
def pair(
    differential_brokers: tuple[BrokerProcess, KafkaReference],
) -> Iterator[DifferentialPair]:
    ours, kafka = differential_brokers
    with DifferentialPair(ours.port, kafka.port) as p:
        yield p


def node_id(conn: KafkaWire) -> int:
    """The broker's own node id (DescribeCluster)."""
    (b,) = conn.request(request_for(60, 0)).brokers
    return int(b.broker_id)


# -- CreateTopics / DeleteTopics / CreatePartitions ----------------------------------------


def creatable(
    name: str,
    partitions: int = 1,
    rf: int = 1,
    configs: dict[str, str | None] | None = None,
    assignments: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "name": name,
        "num_partitions": partitions,
        "replication_factor": rf,
        "assignments": assignments or [],
        "configs": [{"name": k, "value": v} for k, v in (configs or {}).items()],
    }


def create_topics(version: int, *topics: dict[str, Any], validate_only: bool = False) -> Any:
    return request_for(
        CREATE_TOPICS, version, topics=list(topics), timeout=30_000, validate_only=validate_only
    )


def test_create_topics_every_version(pair: DifferentialPair) -> None:
    cases = Cases(pair)
    for v in versions(pair, CREATE_TOPICS):
        p = f"{PREFIX}ct{v}-"

        def compare(case: str, *topics: dict[str, Any], v: int = v, **kw: Any) -> None:
            cases.compare(
                f"create-topics-{case}-v{v}",
                create_topics(v, *topics, **kw),
                unordered={"topics", "configs"},
                transform=kraft_min_isr,
            )

        compare("ok", creatable(f"{p}ok", 3))
        compare("exists", creatable(f"{p}ok", 3))
        compare("with-configs", creatable(f"{p}cfg", 1, 1, {"retention.ms": "1000"}))
        if v >= 4:
            compare("broker-defaults", creatable(f"{p}defaults", -1, -1))
        compare("zero-partitions", creatable(f"{p}zero", 0))
        compare("negative-partitions", creatable(f"{p}neg", -5))
        compare("rf-too-large", creatable(f"{p}rf3", 1, 3))
        compare("rf-zero", creatable(f"{p}rf0", 1, 0))
        compare("unknown-config", creatable(f"{p}uc", 1, 1, {"no.such.config": "1"}))
        compare("bad-config-value", creatable(f"{p}bv", 1, 1, {"cleanup.policy": "bogus"}))
        compare("bad-config-number", creatable(f"{p}bn", 1, 1, {"retention.ms": "soon"}))
        compare("null-config-value", creatable(f"{p}nv", 1, 1, {"retention.ms": None}))
        compare("invalid-name", creatable("bad name!"))
        compare("dot-name", creatable("."))
        compare("long-name", creatable("x" * 250))
        compare("duplicate", creatable(f"{p}dup"), creatable(f"{p}dup"))
        compare("validate-only", creatable(f"{p}vo", 2), validate_only=True)
        compare("validate-only-bad", creatable(f"{p}vob", 0), validate_only=True)
        compare("after-validate-only", creatable(f"{p}vo", 2))
        cases.compare_each(
            f"create-topics-assignment-v{v}",
            lambda c, v=v, p=p: create_topics(
                v,
                creatable(
                    f"{p}assigned",
                    -1,
                    -1,
                    assignments=[{"partition_index": 0, "broker_ids": [node_id(c)]}],
                ),
            ),
            transform=kraft_min_isr,
        )
        cases.compare(
            f"create-topics-assignment-unknown-broker-v{v}",
            create_topics(
                v,
                creatable(
                    f"{p}ghost",
                    -1,
                    -1,
                    assignments=[{"partition_index": 0, "broker_ids": [77]}],
                ),
            ),
        )
        cases.compare(
            f"create-topics-assignment-with-count-v{v}",
            create_topics(
                v,
                creatable(
                    f"{p}both", 2, 1, assignments=[{"partition_index": 0, "broker_ids": [0]}]
                ),
            ),
        )
    cases.check()


def delete_topics(version: int, names: list[str]) -> Any:
    return request_for(
        DELETE_TOPICS,
        version,
        topic_names=names,
        topics=[{"name": n, "topic_id": None} for n in names],
        timeout=30_000,
    )


def test_delete_topics_every_version(pair: DifferentialPair) -> None:
    cases = Cases(pair)
    for v in versions(pair, DELETE_TOPICS):
        name = f"{PREFIX}del-v{v}"
        create_topic(pair, name)
        cases.compare(f"delete-topics-ok-v{v}", delete_topics(v, [name]))
        cases.compare(f"delete-topics-again-v{v}", delete_topics(v, [name]))
        cases.compare(f"delete-topics-unknown-v{v}", delete_topics(v, [f"{PREFIX}never"]))
        cases.compare(f"delete-topics-empty-v{v}", delete_topics(v, []))
        if v >= 6:
            by_id = f"{PREFIX}del-id-v{v}"
            create_topic(pair, by_id)
            cases.compare_each(
                f"delete-topics-by-id-v{v}",
                lambda c, v=v, n=by_id: request_for(
                    DELETE_TOPICS,
                    v,
                    topics=[{"name": None, "topic_id": topic_id(c, n)}],
                    timeout=30_000,
                ),
            )
            cases.compare(
                f"delete-topics-unknown-id-v{v}",
                request_for(
                    DELETE_TOPICS,
                    v,
                    topics=[{"name": None, "topic_id": uuid.UUID(int=5)}],
                    timeout=30_000,
                ),
            )
    cases.check()


def create_partitions(
    version: int, topic: str, count: int, assignments: Any = None, validate_only: bool = False
) -> Any:
    return request_for(
        CREATE_PARTITIONS,
        version,
        topics=[{"name": topic, "count": count, "assignments": assignments}],
        timeout=30_000,
        validate_only=validate_only,
    )


def test_create_partitions_every_version(pair: DifferentialPair) -> None:
    cases = Cases(pair)
    for v in versions(pair, CREATE_PARTITIONS):
        name = f"{PREFIX}cp-v{v}"
        create_topic(pair, name)

        def compare(case: str, *args: Any, v: int = v, **kw: Any) -> None:
            cases.compare(f"create-partitions-{case}-v{v}", create_partitions(v, *args, **kw))

        compare("validate-only", name, 3, validate_only=True)
        compare("grow", name, 3)
        for conn in (pair.ours, pair.kafka):
            wait_leaders(conn, name, 3)
        compare("same-count", name, 3)
        compare("shrink", name, 2)
        compare("unknown-topic", f"{PREFIX}cp-absent", 2)
        compare("bad-assignment-length", name, 5, [{"broker_ids": [0]}])
        compare("unknown-broker-assignment", name, 4, [{"broker_ids": [77]}])
        cases.compare(
            f"create-partitions-duplicate-v{v}",
            request_for(
                CREATE_PARTITIONS,
                v,
                topics=[{"name": name, "count": 6}, {"name": name, "count": 7}],
                timeout=30_000,
            ),
        )
    cases.check()


# -- DescribeConfigs / AlterConfigs / IncrementalAlterConfigs -------------------------------

# Broker keys Kafka 4.1 cannot change dynamically either (read-only in both), and keys
# Kafka can change at run time (read_only=false there; pybroker has no dynamic configs).
STATIC_BROKER_KEYS = [
    "log.retention.hours",
    "log.retention.minutes",
    "log.roll.hours",
    "log.dirs.no.such",
    "no.such.key",
]
DYNAMIC_BROKER_KEYS = ["message.max.bytes", "log.retention.ms", "log.roll.jitter.ms"]


def describe_configs(
    version: int,
    resource_type: int,
    name: str,
    keys: list[str] | None = None,
    synonyms: bool = False,
    documentation: bool = False,
) -> Any:
    return request_for(
        DESCRIBE_CONFIGS,
        version,
        resources=[
            {"resource_type": resource_type, "resource_name": name, "configuration_keys": keys}
        ],
        include_synonyms=synonyms,
        include_documentation=documentation,
    )


def test_describe_configs_every_version(pair: DifferentialPair) -> None:
    cases = Cases(pair)
    topic = f"{PREFIX}describe"
    create_topic(pair, topic, configs={"retention.ms": "3600000", "cleanup.policy": "compact"})
    for v in versions(pair, DESCRIBE_CONFIGS):

        def compare(case: str, *args: Any, v: int = v, **kw: Any) -> None:
            cases.compare(
                f"describe-configs-{case}-v{v}",
                describe_configs(v, *args, **kw),
                unordered={"configs"},
                transform=kraft_min_isr,
            )

        compare("topic-all", TOPIC, topic)
        compare("topic-keys", TOPIC, topic, ["retention.ms", "cleanup.policy", "segment.bytes"])
        compare("topic-unknown-key", TOPIC, topic, ["no.such.key"])
        compare("topic-synonyms", TOPIC, topic, ["retention.ms", "max.message.bytes"], True)
        if v >= 3:
            compare("topic-documentation", TOPIC, topic, ["retention.ms"], True, True)
        compare("unknown-topic", TOPIC, f"{PREFIX}absent")
        compare("empty-topic-name", TOPIC, "")
        compare("bad-resource-type", 9, "x")
        cases.compare(
            f"describe-configs-other-broker-v{v}",
            describe_configs(v, BROKER, "42"),
            transform=node_in_message,
        )
        compare("bad-broker-id", BROKER, "not-a-number")
        compare("broker-default", BROKER, "", ["num.partitions"])
        for synonyms in (False, True):
            cases.compare_each(
                f"describe-configs-broker-synonyms-{synonyms}-v{v}",
                lambda c, v=v, s=synonyms: describe_configs(
                    v, BROKER, str(node_id(c)), STATIC_BROKER_KEYS, s
                ),
                unordered={"configs"},
                transform=broker_resource_name,
            )
        cases.compare_each(
            f"describe-configs-broker-dynamic-keys-v{v}",
            lambda c, v=v: describe_configs(v, BROKER, str(node_id(c)), DYNAMIC_BROKER_KEYS),
            unordered={"configs"},
            transform=broker_resource_name,
        )
    cases.check()


def node_in_message(plain: Any) -> Any:
    """Messages that quote the broker's own node id ("expected 1 or empty string")."""
    for r in plain.get("results") or plain.get("responses") or []:
        if r.get("error_message"):
            r["error_message"] = re.sub(r"expected \d+\b", "expected <node id>", r["error_message"])
    return plain


def broker_resource_name(plain: Any) -> Any:
    """The broker resource is named by the node id, which differs between the brokers."""
    for r in plain.get("results") or plain.get("responses") or []:
        r["resource_name"] = "<node id>"
    return kraft_min_isr(plain)


def described(conn: KafkaWire, topic: str, keys: list[str]) -> dict[str, Any]:
    resp = conn.request(describe_configs(4, TOPIC, topic, keys))
    return {c.name: (c.value, int(c.config_source)) for c in resp.results[0].configs}


def alter_configs(
    version: int, resource_type: int, name: str, configs: dict[str, str | None], validate: bool
) -> Any:
    return request_for(
        ALTER_CONFIGS,
        version,
        resources=[
            {
                "resource_type": resource_type,
                "resource_name": name,
                "configs": [{"name": k, "value": v} for k, v in configs.items()],
            }
        ],
        validate_only=validate,
    )


def test_alter_configs_every_version(pair: DifferentialPair) -> None:
    cases = Cases(pair)
    keys = ["retention.ms", "segment.ms", "cleanup.policy"]
    for v in versions(pair, ALTER_CONFIGS):
        topic = f"{PREFIX}alter-v{v}"
        create_topic(pair, topic, configs={"segment.ms": "100000"})

        def compare(case: str, *args: Any, v: int = v, validate: bool = False) -> None:
            cases.compare(
                f"alter-configs-{case}-v{v}",
                alter_configs(v, *args, validate),
                transform=node_in_message,
            )

        compare("validate-only", TOPIC, topic, {"retention.ms": "5000"}, validate=True)
        compare("set", TOPIC, topic, {"retention.ms": "5000"})
        # AlterConfigs replaces the whole set: segment.ms reverts to its default.
        cases.compare(
            f"alter-configs-after-set-v{v}",
            describe_configs(4, TOPIC, topic, keys),
            unordered={"configs"},
            transform=kraft_min_isr,
        )
        compare("unknown-config", TOPIC, topic, {"no.such.config": "1"})
        compare("bad-value", TOPIC, topic, {"retention.ms": "soon"})
        compare("bad-enum", TOPIC, topic, {"cleanup.policy": "bogus"})
        compare("null-value", TOPIC, topic, {"retention.ms": None})
        compare("unknown-topic", TOPIC, f"{PREFIX}absent", {"retention.ms": "1"})
        compare("bad-resource-type", 9, "x", {"a": "b"})
        compare("broker-unknown-id", BROKER, "42", {"log.cleaner.threads": "2"})
        compare("broker-default-read-only", BROKER, "", {"num.partitions": "3"})
        cases.compare_each(
            f"alter-configs-broker-read-only-v{v}",
            lambda c, v=v: alter_configs(v, BROKER, str(node_id(c)), {"log.dirs": "/x"}, False),
            transform=broker_resource_name,
        )
    cases.check()


def incremental(
    version: int,
    resource_type: int,
    name: str,
    ops: list[tuple[str, int, str | None]],
    validate: bool = False,
) -> Any:
    return request_for(
        INCREMENTAL_ALTER_CONFIGS,
        version,
        resources=[
            {
                "resource_type": resource_type,
                "resource_name": name,
                "configs": [
                    {"name": k, "config_operation": op, "value": val} for k, op, val in ops
                ],
            }
        ],
        validate_only=validate,
    )


def test_incremental_alter_configs_every_version(pair: DifferentialPair) -> None:
    cases = Cases(pair)
    keys = ["retention.ms", "cleanup.policy", "segment.ms"]
    for v in versions(pair, INCREMENTAL_ALTER_CONFIGS):
        topic = f"{PREFIX}incr-v{v}"
        create_topic(pair, topic, configs={"segment.ms": "100000"})

        def compare(case: str, *args: Any, v: int = v, **kw: Any) -> None:
            cases.compare(
                f"incremental-{case}-v{v}", incremental(v, *args, **kw), transform=node_in_message
            )

        def check_state(case: str, v: int = v, topic: str = topic) -> None:
            cases.compare(
                f"incremental-{case}-state-v{v}",
                describe_configs(4, TOPIC, topic, keys),
                unordered={"configs"},
                transform=kraft_min_isr,
            )

        compare("validate-only", TOPIC, topic, [("retention.ms", SET, "7000")], validate=True)
        compare("set", TOPIC, topic, [("retention.ms", SET, "7000")])
        check_state("set")
        compare("append", TOPIC, topic, [("cleanup.policy", APPEND, "compact")])
        check_state("append")
        compare("append-again", TOPIC, topic, [("cleanup.policy", APPEND, "compact")])
        compare("subtract", TOPIC, topic, [("cleanup.policy", SUBTRACT, "delete")])
        check_state("subtract")
        compare("delete", TOPIC, topic, [("segment.ms", DELETE, None)])
        check_state("delete")
        compare("append-non-list", TOPIC, topic, [("retention.ms", APPEND, "1")])
        compare("bad-operation", TOPIC, topic, [("retention.ms", 9, "1")])
        compare("unknown-config", TOPIC, topic, [("no.such.config", SET, "1")])
        compare("bad-value", TOPIC, topic, [("retention.ms", SET, "soon")])
        compare("null-set", TOPIC, topic, [("retention.ms", SET, None)])
        compare(
            "duplicate-key", TOPIC, topic, [("retention.ms", SET, "1"), ("retention.ms", SET, "2")]
        )
        compare("unknown-topic", TOPIC, f"{PREFIX}absent", [("retention.ms", SET, "1")])
        compare("broker-unknown-id", BROKER, "42", [("log.cleaner.threads", SET, "2")])
        cases.compare_each(
            f"incremental-broker-read-only-v{v}",
            lambda c, v=v: incremental(v, BROKER, str(node_id(c)), [("log.dirs", SET, "/x")]),
            transform=broker_resource_name,
        )
        cases.compare_each(
            f"incremental-broker-unknown-key-v{v}",
            lambda c, v=v: incremental(v, BROKER, str(node_id(c)), [("no.such", SET, "1")]),
            transform=broker_resource_name,
        )
    cases.check()
