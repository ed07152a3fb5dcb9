"""Admin APIs against a real broker: CreateTopics, DeleteTopics, CreatePartitions,
DescribeConfigs, AlterConfigs, IncrementalAlterConfigs and DescribeCluster.

Driven by the stock admin clients (confluent-kafka's AdminClient, kafka-python's
KafkaAdminClient, aiokafka's AIOKafkaAdminClient) for what users do, and by raw frames
(tests/support/wire.py) for every protocol version we advertise and for inputs the
clients refuse to send. The broker runs with config/server.properties, which sets
log.retention.hours=168, log.segment.bytes=1073741824 and num.partitions=1: those keys
are STATIC_BROKER_CONFIG, the others DEFAULT_CONFIG.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AclOperation,
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    ResourceType,
)
from kafka.admin import KafkaAdminClient
from kafka.admin._configs import AlterConfigOp
from kafka.admin._configs import ConfigResource as KConfigResource
from kafka.errors import (
    InvalidPartitionsError,
    InvalidReplicationFactorError,
    TopicAlreadyExistsError,
    TopicDeletionDisabledError,
)
from kio.schema.errors import ErrorCode

from pybroker.config.topic_config import TOPIC_CONFIGS
from pybroker.protocol.codec import build
from tests.support.broker import BrokerProcess
from tests.support.clients import (
    confluent_consume,
    confluent_produce,
    value_of,
    wait_confluent_topic,
)
from tests.support.wire import KafkaWire, request_module

pytestmark = pytest.mark.timeout(180)

CREATE_TOPICS, DELETE_TOPICS, DESCRIBE_CONFIGS, ALTER_CONFIGS = 19, 20, 32, 33
CREATE_PARTITIONS, INCREMENTAL_ALTER_CONFIGS, DESCRIBE_CLUSTER, METADATA = 37, 44, 60, 3
TOPIC, BROKER, BROKER_LOGGER = 2, 4, 8
DYNAMIC_TOPIC, STATIC_BROKER, DEFAULT = 1, 4, 5
SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3
TIMEOUT = 30

# Kafka's defaults for the keys the tests read (server.properties leaves them alone).
DEFAULTS = {
    "cleanup.policy": "delete",
    "compression.type": "producer",
    "min.insync.replicas": "1",
    "segment.ms": "604800000",
    "max.message.bytes": "1048588",
    "min.cleanable.dirty.ratio": "0.5",
    "preallocate": "false",
}
RETENTION_MS_FROM_HOURS = "604800000"  # log.retention.hours=168 in server.properties
SEGMENT_BYTES = "1073741824"  # log.segment.bytes in server.properties
CLUSTER_OPERATIONS = {
    AclOperation.CREATE,
    AclOperation.ALTER,
    AclOperation.DESCRIBE,
    AclOperation.CLUSTER_ACTION,
    AclOperation.DESCRIBE_CONFIGS,
    AclOperation.ALTER_CONFIGS,
    AclOperation.IDEMPOTENT_WRITE,
}


# ------------------------------------------------------------------------ fixtures, helpers


@pytest.fixture(scope="module")
def cadmin(broker: BrokerProcess) -> AdminClient:
    return AdminClient({"bootstrap.servers": broker.bootstrap})


@pytest.fixture(scope="module")
def kadmin(broker: BrokerProcess) -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=30_000)
    yield client
    client.close()


def wire(broker: BrokerProcess) -> KafkaWire:
    return KafkaWire("127.0.0.1", broker.port, timeout=15.0)


def failure(future: Any) -> KafkaError:
    """The KafkaError a confluent future fails with."""
    with pytest.raises(KafkaException) as info:
        future.result(TIMEOUT)
    return info.value.args[0]


def create(admin: AdminClient, topic: str, partitions: int = 1, **config: str) -> None:
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config)],
        operation_timeout=TIMEOUT,
        request_timeout=TIMEOUT,
    )
    assert futures[topic].result(TIMEOUT) is None
    wait_confluent_topic(admin, topic, partitions)


def topic_names(admin: AdminClient) -> set[str]:
    return set(admin.list_topics(timeout=10).topics)


def describe(admin: AdminClient, topic: str) -> dict[str, ConfigEntry]:
    res = ConfigResource(ResourceType.TOPIC, topic)
    return admin.describe_configs([res], request_timeout=TIMEOUT)[res].result(TIMEOUT)


def values(entries: dict[str, ConfigEntry]) -> dict[str, tuple[str | None, ConfigSource]]:
    return {name: (e.value, ConfigSource(e.source)) for name, e in entries.items()}


def incremental(admin: AdminClient, topic: str, *ops: tuple[str, str | None, Any]) -> Any:
    """IncrementalAlterConfigs on one topic; returns the future."""
    res = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry(name, value, incremental_operation=op) for name, value, op in ops
        ],
    )
    return admin.incremental_alter_configs([res], request_timeout=TIMEOUT)[res]


def partitions_of(admin: AdminClient, topic: str) -> list[int]:
    return sorted(admin.list_topics(topic=topic, timeout=10).topics[topic].partitions)


def wait_partitions(admin: AdminClient, topic: str, count: int) -> None:
    wait_confluent_topic(admin, topic, count)


def watermarks(bootstrap: str, topic: str, partition: int = 0) -> tuple[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"wm-{uuid.uuid4()}"})
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    finally:
        consumer.close()


def produce_one(bootstrap: str, topic: str, value: bytes) -> tuple[KafkaError | None, int]:
    """One acks=all record; (delivery error or None, offset)."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
    report: list[tuple[KafkaError | None, int]] = []
    producer.produce(
        topic, value=value, partition=0, on_delivery=lambda e, m: report.append((e, m.offset()))
    )
    assert producer.flush(TIMEOUT) == 0
    assert len(report) == 1
    return report[0]


def request(conn: KafkaWire, api_key: int, version: int, cls_name: str, **fields: Any) -> Any:
    """Send one request built from plain values (nested dicts are fine); return the body."""
    cls = getattr(request_module(api_key, version), cls_name)
    return conn.request(build(cls, **fields))


def metadata_topic(conn: KafkaWire, name: str) -> Any:
    body = request(
        conn,
        METADATA,
        12,
        "MetadataRequest",
        topics=[dict(name=name, topic_id=None)],
        allow_auto_topic_creation=False,
    )
    (topic,) = body.topics
    return topic


def wire_create(conn: KafkaWire, version: int, *topics: dict[str, Any], validate_only=False):
    return request(
        conn,
        CREATE_TOPICS,
        version,
        "CreateTopicsRequest",
        topics=[dict(dict(num_partitions=1, replication_factor=1), **t) for t in topics],
        timeout=TIMEOUT * 1000,
        validate_only=validate_only,
    ).topics


def wire_describe(
    conn: KafkaWire, version: int, *resources: tuple[int, str, list[str] | None], **kw: Any
) -> Any:
    return request(
        conn,
        DESCRIBE_CONFIGS,
        version,
        "DescribeConfigsRequest",
        resources=[
            dict(resource_type=t, resource_name=n, configuration_keys=keys)
            for t, n, keys in resources
        ],
        **kw,
    ).results


# ------------------------------------------------------------------------------ CreateTopics


def test_create_with_partitions_and_configs(broker: BrokerProcess, cadmin: AdminClient) -> None:
    topic = "adm-create"
    create(cadmin, topic, 3, **{"retention.ms": "3600000", "cleanup.policy": "compact"})
    md = cadmin.list_topics(topic=topic, timeout=10)
    tmd = md.topics[topic]
    assert sorted(tmd.partitions) == [0, 1, 2]
    for pm in tmd.partitions.values():
        assert (pm.leader, list(pm.replicas), list(pm.isrs)) == (0, [0], [0])

    entries = describe(cadmin, topic)
    assert set(entries) == set(TOPIC_CONFIGS), "every topic config key is described"
    got = values(entries)
    assert got["retention.ms"] == ("3600000", ConfigSource.DYNAMIC_TOPIC_CONFIG)
    assert got["cleanup.policy"] == ("compact", ConfigSource.DYNAMIC_TOPIC_CONFIG)
    assert got["segment.bytes"] == (SEGMENT_BYTES, ConfigSource.STATIC_BROKER_CONFIG)
    for key in ("compression.type", "min.insync.replicas", "segment.ms", "preallocate"):
        assert got[key] == (DEFAULTS[key], ConfigSource.DEFAULT_CONFIG), key
    assert not entries["retention.ms"].is_default
    assert entries["compression.type"].is_default
    assert not any(e.is_read_only or e.is_sensitive for e in entries.values())


def test_create_returns_configs_and_topic_id(broker: BrokerProcess, kadmin) -> None:
    """kafka-python speaks CreateTopics v5+: the answer carries the layout and configs."""
    topic = "adm-create-kp"
    result = kadmin.create_topics(
        {topic: {"num_partitions": 2, "replication_factor": 1, "configs": {"retention.ms": "7"}}}
    )
    (t,) = result["topics"]
    assert (t["name"], t["error_code"], t["num_partitions"], t["replication_factor"]) == (
        topic,
        0,
        2,
        1,
    )
    configs = t["configs"]
    assert set(configs) == set(TOPIC_CONFIGS)
    assert (configs["retention.ms"]["value"], configs["retention.ms"]["config_source"]) == (
        "7",
        "DYNAMIC_TOPIC_CONFIG",
    )
    assert configs["segment.bytes"]["config_source"] == "STATIC_BROKER_CONFIG"
    assert configs["cleanup.policy"]["config_source"] == "DEFAULT_CONFIG"
    with wire(broker) as conn:
        meta = metadata_topic(conn, topic)
    assert meta.error_code == ErrorCode.none
    assert uuid.UUID(str(t["topic_id"])) == meta.topic_id and meta.topic_id.int != 0
    assert len(meta.partitions) == 2


def test_validate_only_creates_nothing(broker: BrokerProcess, cadmin: AdminClient, kadmin) -> None:
    topic = "adm-validate"
    futures = cadmin.create_topics(
        [NewTopic(topic, num_partitions=2, replication_factor=1, config={"retention.ms": "1"})],
        validate_only=True,
        request_timeout=TIMEOUT,
    )
    assert futures[topic].result(TIMEOUT) is None
    bad = cadmin.create_topics(
        [NewTopic(topic, num_partitions=2, replication_factor=1, config={"retention.ms": "x"})],
        validate_only=True,
        request_timeout=TIMEOUT,
    )
    assert failure(bad[topic]).code() == KafkaError.INVALID_CONFIG

    result = kadmin.create_topics(
        {topic: {"num_partitions": 4, "replication_factor": 1, "configs": {"segment.ms": "9"}}},
        validate_only=True,
    )
    (t,) = result["topics"]
    assert (t["error_code"], t["num_partitions"]) == (0, 4)
    assert t["configs"]["segment.ms"]["value"] == "9"
    time.sleep(0.2)
    assert topic not in topic_names(cadmin)
    assert topic not in kadmin.list_topics()
    # The name is still free.
    create(cadmin, topic, 2)
    assert partitions_of(cadmin, topic) == [0, 1]


def test_create_errors(broker: BrokerProcess, cadmin: AdminClient) -> None:
    create(cadmin, "adm-exists")
    cases = {
        "adm-bad name!": (KafkaError.TOPIC_EXCEPTION, 1, {}, "Topic name is invalid"),
        "a" * 250: (KafkaError.TOPIC_EXCEPTION, 1, {}, "longer than the max allowed length 249"),
        "adm-rf3": (KafkaError.INVALID_REPLICATION_FACTOR, 3, {}, "only 1 broker(s)"),
        "adm-bad-value": (
            KafkaError.INVALID_CONFIG,
            1,
            {"retention.ms": "forever"},
            "Invalid value forever for configuration retention.ms: Not a number of type LONG",
        ),
        "adm-bad-range": (
            KafkaError.INVALID_CONFIG,
            1,
            {"min.cleanable.dirty.ratio": "1.5"},
            "min.cleanable.dirty.ratio",
        ),
        "adm-bad-choice": (
            KafkaError.INVALID_CONFIG,
            1,
            {"cleanup.policy": "forever"},
            "cleanup.policy",
        ),
        "adm-unknown-key": (
            KafkaError.INVALID_CONFIG,
            1,
            {"no.such.config": "1"},
            "Unknown topic config name: no.such.config",
        ),
        "adm-exists": (
            KafkaError.TOPIC_ALREADY_EXISTS,
            1,
            {},
            "Topic 'adm-exists' already exists.",
        ),
    }
    futures = cadmin.create_topics(
        [
            NewTopic(name, num_partitions=1, replication_factor=rf, config=cfg)
            for name, (_, rf, cfg, _) in cases.items()
        ],
        request_timeout=TIMEOUT,
    )
    for name, (code, _, _, text) in cases.items():
        err = failure(futures[name])
        assert err.code() == code, (name, err)
        assert text in err.str(), (name, err.str())
    names = topic_names(cadmin)
    assert not (set(cases) - {"adm-exists"}) & names


def test_create_errors_kafka_python(broker: BrokerProcess, kadmin) -> None:
    topic = "adm-exists-kp"
    kadmin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}})
    with pytest.raises(TopicAlreadyExistsError):
        kadmin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}})
    with pytest.raises(InvalidReplicationFactorError):
        kadmin.create_topics({"adm-rf2-kp": {"num_partitions": 1, "replication_factor": 2}})
    result = kadmin.create_topics(
        {
            "adm-bad-config-kp": {"configs": {"segment.bytes": "12"}},
            "adm-good-kp": {"configs": {"segment.bytes": "1048576"}},
        },
        raise_errors=False,
    )
    got = {t["name"]: (t["error_code"], t["error_message"]) for t in result["topics"]}
    assert got["adm-good-kp"] == (0, None)
    code, message = got["adm-bad-config-kp"]
    assert code == 40
    assert message.startswith(
        "Invalid value 12 for configuration segment.bytes: Value must be at least "
    )
    assert "adm-rf2-kp" not in kadmin.list_topics()


def test_create_wire_rules(broker: BrokerProcess) -> None:
    """What clients refuse to send: duplicates, counts, assignments, null configs."""
    with wire(broker) as conn:
        dup = wire_create(conn, 7, dict(name="adm-dup"), dict(name="adm-dup"), dict(name="adm-ok"))
        assert [(t.name, t.error_code, t.error_message) for t in dup] == [
            ("adm-dup", ErrorCode.invalid_request, "Duplicate topic name."),
            ("adm-ok", ErrorCode.none, None),
        ]
        assert metadata_topic(conn, "adm-dup").error_code == ErrorCode.unknown_topic_or_partition

        results = wire_create(
            conn,
            7,
            dict(name="adm-zero-parts", num_partitions=0),
            dict(name="adm-zero-rf", replication_factor=0),
            dict(name="adm-defaults", num_partitions=-1, replication_factor=-1),
            dict(name="adm-null-cfg", configs=[dict(name="retention.ms", value=None)]),
            dict(
                name="adm-manual",
                num_partitions=-1,
                replication_factor=-1,
                assignments=[
                    dict(partition_index=1, broker_ids=[0]),
                    dict(partition_index=0, broker_ids=[0]),
                ],
            ),
            dict(
                name="adm-manual-other",
                num_partitions=-1,
                replication_factor=-1,
                assignments=[dict(partition_index=0, broker_ids=[7])],
            ),
            dict(
                name="adm-manual-gap",
                num_partitions=-1,
                replication_factor=-1,
                assignments=[dict(partition_index=1, broker_ids=[0])],
            ),
            dict(
                name="adm-manual-count",
                num_partitions=2,
                replication_factor=-1,
                assignments=[dict(partition_index=0, broker_ids=[0])],
            ),
            dict(
                name="adm-manual-twice",
                num_partitions=-1,
                replication_factor=-1,
                assignments=[dict(partition_index=0, broker_ids=[0, 0])],
            ),
        )
        got = {t.name: (t.error_code, t.error_message, t.num_partitions) for t in results}
        assert got == {
            "adm-zero-parts": (
                ErrorCode.invalid_partitions,
                "Number of partitions was set to an invalid non-positive value.",
                -1,
            ),
            "adm-zero-rf": (
                ErrorCode.invalid_replication_factor,
                "Replication factor must be larger than 0, or -1 to use the default value.",
                -1,
            ),
            "adm-defaults": (ErrorCode.none, None, 1),  # num.partitions=1
            "adm-null-cfg": (
                ErrorCode.invalid_config,
                "Null value not supported for topic configs: retention.ms",
                -1,
            ),
            "adm-manual": (ErrorCode.none, None, 2),
            "adm-manual-other": (
                ErrorCode.invalid_replica_assignment,
                "The manual partition assignment includes broker 7, but no such broker is "
                "registered.",
                -1,
            ),
            "adm-manual-gap": (
                ErrorCode.invalid_replica_assignment,
                "partitions should be a consecutive 0-based integer sequence",
                -1,
            ),
            "adm-manual-count": (
                ErrorCode.invalid_request,
                "A manual partition assignment was specified, but numPartitions was not set to -1.",
                -1,
            ),
            "adm-manual-twice": (
                ErrorCode.invalid_replica_assignment,
                "The manual partition assignment includes the broker 0 more than once.",
                -1,
            ),
        }
        # Kafka caps one request at 10,000 partitions and then fails every topic.
        big = wire_create(
            conn,
            7,
            dict(name="adm-big-1", num_partitions=6000),
            dict(name="adm-big-2", num_partitions=6000),
        )
        assert [(t.name, t.error_code, t.error_message) for t in big] == [
            (
                name,
                ErrorCode.policy_violation,
                "Excessively large number of partitions per request.",
            )
            for name in ("adm-big-1", "adm-big-2")
        ]
        assert metadata_topic(conn, "adm-big-1").error_code == ErrorCode.unknown_topic_or_partition
        manual = metadata_topic(conn, "adm-manual")
        assert sorted((p.partition_index, tuple(p.replica_nodes)) for p in manual.partitions) == [
            (0, (0,)),
            (1, (0,)),
        ]
        assert len(metadata_topic(conn, "adm-defaults").partitions) == 1
        for name in ("adm-zero-parts", "adm-null-cfg", "adm-manual-other", "adm-manual-gap"):
            assert metadata_topic(conn, name).error_code == ErrorCode.unknown_topic_or_partition


@pytest.mark.parametrize("version", range(2, 8))
def test_create_topics_every_version(broker: BrokerProcess, version: int) -> None:
    topic = f"adm-create-v{version}"
    with wire(broker) as conn:
        (t,) = wire_create(
            conn,
            version,
            dict(name=topic, num_partitions=3, configs=[dict(name="segment.ms", value="60000")]),
        )
        assert (t.name, t.error_code, t.error_message) == (topic, ErrorCode.none, None)
        meta = metadata_topic(conn, topic)
        assert len(meta.partitions) == 3
        if version >= 5:
            assert (t.num_partitions, t.replication_factor) == (3, 1)
            configs = {
                c.name: (c.value, c.config_source, c.read_only, c.is_sensitive) for c in t.configs
            }
            assert set(configs) == set(TOPIC_CONFIGS)
            assert configs["segment.ms"] == ("60000", DYNAMIC_TOPIC, False, False)
            assert configs["segment.bytes"] == (SEGMENT_BYTES, STATIC_BROKER, False, False)
            assert configs["compression.type"] == ("producer", DEFAULT, False, False)
        if version >= 7:
            assert t.topic_id == meta.topic_id and t.topic_id.int != 0
        (again,) = wire_create(conn, version, dict(name=topic))
        assert again.error_code == ErrorCode.topic_already_exists


# ------------------------------------------------------------------------- DescribeConfigs


def test_describe_configs_synonyms_kafka_python(broker: BrokerProcess, kadmin) -> None:
    topic = "adm-describe-kp"
    kadmin.create_topics(
        {topic: {"num_partitions": 1, "replication_factor": 1, "configs": {"retention.ms": "12"}}}
    )
    res = KConfigResource("TOPIC", topic)
    every = kadmin.describe_configs([res], include_synonyms=True, config_filter="all")
    configs = every["topic"][topic]
    assert set(configs) == set(TOPIC_CONFIGS)
    retention = configs["retention.ms"]
    assert (retention["value"], retention["config_source"]) == ("12", "DYNAMIC_TOPIC_CONFIG")
    assert [(s["name"], s["value"], s["source"]) for s in retention["synonyms"]] == [
        # Kafka 4.1 lists no fallback keys (log.retention.hours) as synonyms of
        # retention.ms (checked against the reference broker).
        ("retention.ms", "12", "DYNAMIC_TOPIC_CONFIG"),
    ]
    segment = configs["segment.bytes"]
    assert (segment["value"], segment["config_source"]) == (SEGMENT_BYTES, "STATIC_BROKER_CONFIG")
    assert [(s["name"], s["source"]) for s in segment["synonyms"]] == [
        ("log.segment.bytes", "STATIC_BROKER_CONFIG"),
        ("log.segment.bytes", "DEFAULT_CONFIG"),
    ]
    compression = configs["compression.type"]
    assert (compression["value"], compression["config_source"]) == ("producer", "DEFAULT_CONFIG")
    assert [(s["name"], s["value"], s["source"]) for s in compression["synonyms"]] == [
        ("compression.type", "producer", "DEFAULT_CONFIG")
    ]
    # "modified" keeps only what differs from the broker's settings: the override.
    modified = kadmin.describe_configs([res], config_filter="modified")["topic"][topic]
    assert set(modified) == {"retention.ms"}
    # A key filter returns exactly those keys (unknown ones are skipped, as Kafka does).
    picked = kadmin.describe_configs(
        [KConfigResource("TOPIC", topic, configs=["retention.ms", "cleanup.policy", "nope"])],
        config_filter="all",
    )["topic"][topic]
    assert {k: v["value"] for k, v in picked.items()} == {
        "retention.ms": "12",
        "cleanup.policy": "delete",
    }


@pytest.mark.parametrize("version", range(1, 5))
def test_describe_configs_every_version(broker: BrokerProcess, version: int) -> None:
    topic = f"adm-describe-v{version}"
    with wire(broker) as conn:
        (t,) = wire_create(
            conn, 7, dict(name=topic, configs=[dict(name="cleanup.policy", value="compact")])
        )
        assert t.error_code == ErrorCode.none
        results = wire_describe(
            conn,
            version,
            (TOPIC, topic, ["cleanup.policy", "retention.ms", "min.cleanable.dirty.ratio"]),
            (TOPIC, "adm-no-such-topic", None),
            (TOPIC, "", None),
            (BROKER, "0", ["num.partitions", "auto.create.topics.enable"]),
            (BROKER, "", None),
            (BROKER, "7", None),
            (99, "x", None),
            include_synonyms=True,
            include_documentation=True,
        )
    found, missing, empty, mine, default, other, unknown = results
    assert (found.error_code, found.resource_type, found.resource_name) == (
        ErrorCode.none,
        TOPIC,
        topic,
    )
    configs = {c.name: c for c in found.configs}
    assert sorted(configs) == ["cleanup.policy", "min.cleanable.dirty.ratio", "retention.ms"]
    policy = configs["cleanup.policy"]
    assert (policy.value, policy.config_source, policy.read_only) == (
        "compact",
        DYNAMIC_TOPIC,
        False,
    )
    assert [(s.name, s.value, s.source) for s in policy.synonyms] == [
        ("cleanup.policy", "compact", DYNAMIC_TOPIC),
        ("log.cleanup.policy", "delete", DEFAULT),
    ]
    # Derived from log.retention.hours, which Kafka 4.1 does not list as a synonym of
    # retention.ms: no synonym, so DEFAULT_CONFIG (the source is the first synonym's).
    assert (configs["retention.ms"].value, configs["retention.ms"].config_source) == (
        RETENTION_MS_FROM_HOURS,
        DEFAULT,
    )
    assert configs["min.cleanable.dirty.ratio"].value == "0.5"
    if version >= 3:
        types = {name: c.config_type for name, c in configs.items()}
        assert types == {"cleanup.policy": 7, "retention.ms": 5, "min.cleanable.dirty.ratio": 6}
    assert (missing.error_code, missing.error_message, missing.configs) == (
        ErrorCode.unknown_topic_or_partition,
        "",  # Kafka 4.1 sends an empty message here, not null
        (),
    )
    assert empty.error_code == ErrorCode.invalid_topic_exception
    assert mine.error_code == ErrorCode.none
    broker_configs = {c.name: (c.value, c.config_source, c.read_only) for c in mine.configs}
    assert broker_configs == {
        "num.partitions": ("1", STATIC_BROKER, True),
        "auto.create.topics.enable": ("true", DEFAULT, True),
    }
    assert (default.error_code, default.configs) == (ErrorCode.none, ())
    assert (other.error_code, other.error_message) == (
        ErrorCode.invalid_request,
        "Unexpected broker id, expected 0 or empty string, but received 7",
    )
    assert unknown.error_code == ErrorCode.invalid_request


def test_describe_broker_configs_confluent(cadmin: AdminClient) -> None:
    res = ConfigResource(ResourceType.BROKER, "0")
    entries = cadmin.describe_configs([res], request_timeout=TIMEOUT)[res].result(TIMEOUT)
    got = values(entries)
    assert got["log.segment.bytes"] == (SEGMENT_BYTES, ConfigSource.STATIC_BROKER_CONFIG)
    assert got["num.partitions"] == ("1", ConfigSource.STATIC_BROKER_CONFIG)
    assert got["delete.topic.enable"] == ("true", ConfigSource.DEFAULT_CONFIG)
    assert entries["num.partitions"].is_read_only


# ---------------------------------------------------------------------------- AlterConfigs


def test_alter_configs_replaces_overrides(broker: BrokerProcess, cadmin: AdminClient) -> None:
    topic = "adm-alter"
    create(cadmin, topic, **{"retention.ms": "100000", "segment.ms": "200000"})
    res = ConfigResource(ResourceType.TOPIC, topic, set_config={"cleanup.policy": "compact"})
    assert cadmin.alter_configs([res], request_timeout=TIMEOUT)[res].result(TIMEOUT) is None
    got = values(describe(cadmin, topic))
    assert got["cleanup.policy"] == ("compact", ConfigSource.DYNAMIC_TOPIC_CONFIG)
    # AlterConfigs replaces the whole set: the other overrides are gone.
    assert got["retention.ms"] == (RETENTION_MS_FROM_HOURS, ConfigSource.DEFAULT_CONFIG)
    assert got["segment.ms"] == (DEFAULTS["segment.ms"], ConfigSource.DEFAULT_CONFIG)

    # validate_only changes nothing; a bad value is INVALID_CONFIG and changes nothing.
    res = ConfigResource(ResourceType.TOPIC, topic, set_config={"retention.ms": "5"})
    assert (
        cadmin.alter_configs([res], validate_only=True, request_timeout=TIMEOUT)[res].result(
            TIMEOUT
        )
        is None
    )
    res = ConfigResource(ResourceType.TOPIC, topic, set_config={"retention.ms": "soon"})
    err = failure(cadmin.alter_configs([res], request_timeout=TIMEOUT)[res])
    assert err.code() == KafkaError.INVALID_CONFIG
    assert "Not a number of type LONG" in err.str()
    res = ConfigResource(ResourceType.TOPIC, topic, set_config={"retention.days": "5"})
    err = failure(cadmin.alter_configs([res], request_timeout=TIMEOUT)[res])
    assert (err.code(), err.str()) == (
        KafkaError.INVALID_CONFIG,
        "Unknown topic config name: retention.days",
    )
    assert values(describe(cadmin, topic)) == got

    res = ConfigResource(ResourceType.TOPIC, "adm-alter-missing", set_config={"retention.ms": "5"})
    err = failure(cadmin.alter_configs([res], request_timeout=TIMEOUT)[res])
    assert err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART


@pytest.mark.parametrize("version", range(0, 3))
def test_alter_configs_every_version(broker: BrokerProcess, version: int) -> None:
    topic = f"adm-alter-v{version}"
    with wire(broker) as conn:
        (t,) = wire_create(conn, 7, dict(name=topic, configs=[dict(name="segment.ms", value="9")]))
        assert t.error_code == ErrorCode.none
        body = request(
            conn,
            ALTER_CONFIGS,
            version,
            "AlterConfigsRequest",
            resources=[
                dict(
                    resource_type=TOPIC,
                    resource_name=topic,
                    configs=[dict(name="retention.bytes", value="1048576")],
                ),
                dict(resource_type=BROKER, resource_name="0", configs=[]),
                dict(
                    resource_type=BROKER,
                    resource_name="0",
                    configs=[dict(name="log.retention.ms", value="1")],
                ),
                dict(resource_type=TOPIC, resource_name="adm-dup-res", configs=[]),
                dict(resource_type=TOPIC, resource_name="adm-dup-res", configs=[]),
                dict(resource_type=BROKER_LOGGER, resource_name="0", configs=[]),
            ],
            validate_only=False,
        )
        got = [(r.resource_type, r.resource_name, r.error_code) for r in body.responses]
        assert got == [
            (TOPIC, topic, ErrorCode.none),
            (BROKER, "0", ErrorCode.invalid_request),
            (BROKER, "0", ErrorCode.invalid_request),
            (TOPIC, "adm-dup-res", ErrorCode.invalid_request),
            (TOPIC, "adm-dup-res", ErrorCode.invalid_request),
            (BROKER_LOGGER, "0", ErrorCode.invalid_request),
        ]
        assert body.responses[1].error_message == "Each resource must appear at most once."
        (result,) = wire_describe(conn, 1, (TOPIC, topic, None))
        overrides = {c.name: c.value for c in result.configs if c.config_source == DYNAMIC_TOPIC}
        assert overrides == {"retention.bytes": "1048576"}


def test_broker_configs_cannot_change(broker: BrokerProcess, cadmin: AdminClient) -> None:
    res = ConfigResource(
        ResourceType.BROKER,
        "0",
        incremental_configs=[
            ConfigEntry("log.retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    err = failure(cadmin.incremental_alter_configs([res], request_timeout=TIMEOUT)[res])
    assert err.code() == KafkaError.INVALID_REQUEST
    assert "Cannot update these configs dynamically" in err.str()
    with wire(broker) as conn:
        body = request(
            conn,
            INCREMENTAL_ALTER_CONFIGS,
            1,
            "IncrementalAlterConfigsRequest",
            resources=[
                dict(
                    resource_type=BROKER,
                    resource_name="3",
                    configs=[dict(name="num.io.threads", config_operation=SET, value="4")],
                ),
                dict(
                    resource_type=BROKER,
                    resource_name="",
                    configs=[dict(name="num.io.threads", config_operation=DELETE, value=None)],
                ),
                dict(
                    resource_type=TOPIC,
                    resource_name="adm-exists",
                    configs=[dict(name="retention.ms", config_operation=SET, value=None)],
                ),
                dict(
                    resource_type=TOPIC,
                    resource_name="adm-alter-v0",
                    configs=[dict(name="retention.ms", config_operation=7, value="1")],
                ),
            ],
            validate_only=False,
        )
    assert [(r.error_code, r.error_message) for r in body.responses] == [
        (ErrorCode.invalid_request, "Unexpected broker id, expected 0, but received 3"),
        (ErrorCode.none, None),
        (ErrorCode.invalid_request, "Null value not supported for : retention.ms"),
        # Kafka 4.1 (checked against the reference broker): OpType.forId throws inside the
        # handler, so an unknown operation is UNKNOWN_SERVER_ERROR without a message.
        (ErrorCode.unknown_server_error, None),
    ]
    res = ConfigResource(ResourceType.BROKER, "0")
    entries = values(cadmin.describe_configs([res])[res].result(TIMEOUT))
    # As Kafka 4.1 answers with log.retention.hours set and log.retention.ms not: unset.
    assert entries["log.retention.ms"] == (None, ConfigSource.DEFAULT_CONFIG)
    assert entries["log.retention.hours"] == ("168", ConfigSource.STATIC_BROKER_CONFIG)


# ---------------------------------------------------------------- IncrementalAlterConfigs


def test_incremental_alter_configs(broker: BrokerProcess, cadmin: AdminClient) -> None:
    topic = "adm-incremental"
    create(cadmin, topic, **{"retention.ms": "100000"})
    fut = incremental(
        cadmin,
        topic,
        ("segment.ms", "300000", AlterConfigOpType.SET),
        ("cleanup.policy", "compact", AlterConfigOpType.APPEND),
        ("retention.ms", None, AlterConfigOpType.DELETE),
    )
    assert fut.result(TIMEOUT) is None
    got = values(describe(cadmin, topic))
    assert got["segment.ms"] == ("300000", ConfigSource.DYNAMIC_TOPIC_CONFIG)
    # APPEND starts from the default list.
    assert got["cleanup.policy"] == ("delete,compact", ConfigSource.DYNAMIC_TOPIC_CONFIG)
    # DELETE reverts to what the broker says (from log.retention.hours: DEFAULT_CONFIG).
    assert got["retention.ms"] == (RETENTION_MS_FROM_HOURS, ConfigSource.DEFAULT_CONFIG)

    assert (
        incremental(cadmin, topic, ("cleanup.policy", "delete", AlterConfigOpType.SUBTRACT)).result(
            TIMEOUT
        )
        is None
    )
    assert values(describe(cadmin, topic))["cleanup.policy"] == (
        "compact",
        ConfigSource.DYNAMIC_TOPIC_CONFIG,
    )
    # APPEND of a value already there changes nothing.
    assert (
        incremental(cadmin, topic, ("cleanup.policy", "compact", AlterConfigOpType.APPEND)).result(
            TIMEOUT
        )
        is None
    )
    assert values(describe(cadmin, topic))["cleanup.policy"][0] == "compact"

    err = failure(incremental(cadmin, topic, ("retention.ms", "1", AlterConfigOpType.APPEND)))
    assert (err.code(), err.str()) == (
        KafkaError.INVALID_CONFIG,
        "Can't APPEND to key retention.ms because its type is not LIST.",
    )
    err = failure(
        incremental(
            cadmin,
            topic,
            ("segment.ms", "1", AlterConfigOpType.SET),
            ("cleanup.policy", "never", AlterConfigOpType.SET),
        )
    )
    assert err.code() == KafkaError.INVALID_CONFIG
    # A failed request changes nothing, not even its valid part.
    got = values(describe(cadmin, topic))
    assert got["segment.ms"] == ("300000", ConfigSource.DYNAMIC_TOPIC_CONFIG)

    assert (
        incremental(
            cadmin,
            topic,
            ("cleanup.policy", None, AlterConfigOpType.DELETE),
            ("segment.ms", None, AlterConfigOpType.DELETE),
        ).result(TIMEOUT)
        is None
    )
    got = values(describe(cadmin, topic))
    assert got["cleanup.policy"] == ("delete", ConfigSource.DEFAULT_CONFIG)
    assert got["segment.ms"] == (DEFAULTS["segment.ms"], ConfigSource.DEFAULT_CONFIG)
    assert not any(src == ConfigSource.DYNAMIC_TOPIC_CONFIG for _, src in got.values())


def test_incremental_alter_kafka_python(broker: BrokerProcess, kadmin) -> None:
    topic = "adm-incremental-kp"
    kadmin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}})
    result = kadmin.alter_configs(
        [
            KConfigResource(
                "TOPIC",
                topic,
                configs={
                    "cleanup.policy": (AlterConfigOp.APPEND, "compact"),
                    "retention.ms": "500000",
                },
            )
        ]
    )
    assert result == {"topic": {topic: "OK"}}
    modified = kadmin.describe_configs([KConfigResource("TOPIC", topic)])["topic"][topic]
    assert {k: v["value"] for k, v in modified.items()} == {
        "cleanup.policy": "delete,compact",
        "retention.ms": "500000",
    }
    assert kadmin.reset_configs([KConfigResource("TOPIC", topic, configs=["retention.ms"])]) == {
        "topic": {topic: "OK"}
    }
    modified = kadmin.describe_configs([KConfigResource("TOPIC", topic)])["topic"][topic]
    assert {k: v["value"] for k, v in modified.items()} == {"cleanup.policy": "delete,compact"}
    bad = kadmin.alter_configs(
        [KConfigResource("TOPIC", topic, configs={"retention.ms": "-7"})], raise_on_unknown=False
    )
    assert bad["topic"][topic].startswith("[Error 40] InvalidConfigurationError")


@pytest.mark.parametrize("version", range(0, 2))
def test_incremental_alter_every_version(broker: BrokerProcess, version: int) -> None:
    topic = f"adm-incremental-v{version}"
    with wire(broker) as conn:
        (t,) = wire_create(conn, 7, dict(name=topic, configs=[dict(name="segment.ms", value="9")]))
        assert t.error_code == ErrorCode.none

        def alter(*ops: tuple[str, int, str | None], validate_only: bool = False) -> Any:
            body = request(
                conn,
                INCREMENTAL_ALTER_CONFIGS,
                version,
                "IncrementalAlterConfigsRequest",
                resources=[
                    dict(
                        resource_type=TOPIC,
                        resource_name=topic,
                        configs=[dict(name=n, config_operation=op, value=v) for n, op, v in ops],
                    )
                ],
                validate_only=validate_only,
            )
            (r,) = body.responses
            return r.error_code, r.error_message

        def overrides() -> dict[str, str]:
            (result,) = wire_describe(conn, 4, (TOPIC, topic, None))
            return {c.name: c.value for c in result.configs if c.config_source == DYNAMIC_TOPIC}

        assert alter(("cleanup.policy", APPEND, "compact"), validate_only=True) == (
            ErrorCode.none,
            None,
        )
        assert overrides() == {"segment.ms": "9"}
        assert alter(("cleanup.policy", APPEND, "compact"), ("segment.ms", DELETE, None)) == (
            ErrorCode.none,
            None,
        )
        assert overrides() == {"cleanup.policy": "delete,compact"}
        assert alter(("cleanup.policy", SUBTRACT, "delete")) == (ErrorCode.none, None)
        assert overrides() == {"cleanup.policy": "compact"}
        assert alter(("cleanup.policy", SET, "x"), ("cleanup.policy", SET, "y")) == (
            ErrorCode.invalid_request,
            "Error due to duplicate config keys",
        )
        assert alter(("segment.jitter.ms", APPEND, "1")) == (
            ErrorCode.invalid_config,
            "Can't APPEND to key segment.jitter.ms because its type is not LIST.",
        )
        assert overrides() == {"cleanup.policy": "compact"}


def test_config_changes_reach_the_log(broker: BrokerProcess, cadmin: AdminClient) -> None:
    """max.message.bytes and segment.bytes changed on a live topic apply to its next appends."""
    topic = "adm-live-config"
    create(cadmin, topic)
    big = b"x" * 5000
    assert produce_one(broker.bootstrap, topic, big) == (None, 0)

    assert (
        incremental(cadmin, topic, ("max.message.bytes", "1000", AlterConfigOpType.SET)).result(
            TIMEOUT
        )
        is None
    )
    err, _ = produce_one(broker.bootstrap, topic, big)
    assert err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE, err
    assert produce_one(broker.bootstrap, topic, b"small") == (None, 1)

    assert (
        incremental(
            cadmin,
            topic,
            ("max.message.bytes", None, AlterConfigOpType.DELETE),
            ("segment.bytes", "1048576", AlterConfigOpType.SET),
        ).result(TIMEOUT)
        is None
    )
    assert produce_one(broker.bootstrap, topic, big) == (None, 2)
    confluent_produce(broker.bootstrap, topic, range(4000))  # ~300 KiB
    value = b"y" * 100_000
    for _ in range(12):  # ~1.2 MB more: past the 1 MiB segment size
        err, _ = produce_one(broker.bootstrap, topic, value)
        assert err is None
    segments = sorted((broker.data_dir / f"{topic}-0").glob("*.log"))
    assert len(segments) >= 2, segments
    assert segments[0].name == "00000000000000000000.log"


# ------------------------------------------------------------------------ CreatePartitions


def test_create_partitions(broker: BrokerProcess, cadmin: AdminClient, kadmin) -> None:
    topic = "adm-partitions"
    create(cadmin, topic, 2)
    fut = cadmin.create_partitions([NewPartitions(topic, 5)], request_timeout=TIMEOUT)[topic]
    assert fut.result(TIMEOUT) is None
    wait_partitions(cadmin, topic, 5)
    meta = cadmin.list_topics(topic=topic, timeout=10).topics[topic]
    assert all(p.leader == 0 for p in meta.partitions.values())

    err = failure(cadmin.create_partitions([NewPartitions(topic, 3)])[topic])
    assert (err.code(), err.str()) == (
        KafkaError.INVALID_PARTITIONS,
        f"The topic {topic} currently has 5 partition(s); 3 would not be an increase.",
    )
    err = failure(cadmin.create_partitions([NewPartitions(topic, 5)])[topic])
    assert (err.code(), err.str()) == (
        KafkaError.INVALID_PARTITIONS,
        "Topic already has 5 partition(s).",
    )
    fut = cadmin.create_partitions([NewPartitions(topic, 9)], validate_only=True)[topic]
    assert fut.result(TIMEOUT) is None
    err = failure(
        cadmin.create_partitions([NewPartitions("adm-partitions-none", 2)])[topic + "-none"]
    )
    assert err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    time.sleep(0.2)
    assert partitions_of(cadmin, topic) == list(range(5))

    kadmin.create_partitions({topic: 6})
    wait_partitions(cadmin, topic, 6)
    with pytest.raises(InvalidPartitionsError):
        kadmin.create_partitions({topic: 2})
    kadmin.create_partitions({topic: {"count": 7, "assignments": [[0]]}})
    wait_partitions(cadmin, topic, 7)
    bad = kadmin.create_partitions({topic: {"count": 8, "assignments": [[1]]}}, raise_errors=False)
    assert [(r.name, r.error_code) for r in bad.results] == [(topic, 39)]
    bad = kadmin.create_partitions({topic: {"count": 9, "assignments": [[0]]}}, raise_errors=False)
    assert [(r.error_code, r.error_message) for r in bad.results] == [
        (39, "Attempted to add 2 additional partition(s), but only 1 assignment(s) were specified.")
    ]

    # New partitions are writable and start at offset 0.
    assert produce_one(broker.bootstrap, topic, b"p6")[0] is None
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    report: list[Any] = []
    producer.produce(
        topic, value=b"six", partition=6, on_delivery=lambda e, m: report.append((e, m.offset()))
    )
    assert producer.flush(TIMEOUT) == 0
    assert report == [(None, 0)]


@pytest.mark.parametrize("version", range(0, 4))
def test_create_partitions_every_version(broker: BrokerProcess, version: int) -> None:
    topic = f"adm-partitions-v{version}"
    with wire(broker) as conn:
        assert wire_create(conn, 7, dict(name=topic))[0].error_code == ErrorCode.none
        body = request(
            conn,
            CREATE_PARTITIONS,
            version,
            "CreatePartitionsRequest",
            topics=[
                dict(name=topic, count=3, assignments=None),
                dict(name="adm-partitions-missing", count=3, assignments=None),
                dict(name="adm-partitions-twice", count=3, assignments=None),
                dict(name="adm-partitions-twice", count=4, assignments=None),
            ],
            timeout=TIMEOUT * 1000,
            validate_only=False,
        )
        assert [(r.name, r.error_code, r.error_message) for r in body.results] == [
            (topic, ErrorCode.none, None),
            ("adm-partitions-missing", ErrorCode.unknown_topic_or_partition, None),
            ("adm-partitions-twice", ErrorCode.invalid_request, "Duplicate topic name."),
        ]
        assert len(metadata_topic(conn, topic).partitions) == 3


def test_create_partitions_aiokafka(broker: BrokerProcess, cadmin: AdminClient) -> None:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.new_partitions import NewPartitions as ANewPartitions

    topic = "adm-partitions-aio"
    create(cadmin, topic, 1)

    async def run() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            await admin.create_partitions({topic: ANewPartitions(4)})
        finally:
            await admin.close()

    asyncio.run(run())
    wait_partitions(cadmin, topic, 4)


# ---------------------------------------------------------------------------- DeleteTopics


def test_delete_and_recreate(broker: BrokerProcess, cadmin: AdminClient) -> None:
    topic = "adm-delete"
    create(cadmin, topic, 1, **{"retention.ms": "999999"})
    acked = confluent_produce(broker.bootstrap, topic, range(10))
    assert sorted(offset for _, offset in acked.values()) == list(range(10))
    assert watermarks(broker.bootstrap, topic) == (0, 10)

    fut = cadmin.delete_topics([topic], operation_timeout=TIMEOUT, request_timeout=TIMEOUT)[topic]
    assert fut.result(TIMEOUT) is None
    assert topic not in topic_names(cadmin)
    res = ConfigResource(ResourceType.TOPIC, topic)
    err = failure(cadmin.describe_configs([res])[res])
    assert err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    assert not (broker.data_dir / f"{topic}-0").exists() or not any(
        (broker.data_dir / f"{topic}-0").glob("*.log")
    )

    # Recreated: a new, empty topic with fresh (default) configs, starting at offset 0.
    create(cadmin, topic, 1)
    assert watermarks(broker.bootstrap, topic) == (0, 0)
    assert values(describe(cadmin, topic))["retention.ms"][1] == ConfigSource.DEFAULT_CONFIG
    acked = confluent_produce(broker.bootstrap, topic, [42])
    assert acked == {42: (0, 0)}
    consumed = confluent_consume(broker.bootstrap, topic, partitions=1, timeout=30)
    assert [(c.partition, c.offset, c.value) for c in consumed] == [(0, 0, value_of(42))]

    err = failure(cadmin.delete_topics([topic + "-missing"])[topic + "-missing"])
    assert err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_delete_by_id_kafka_python(broker: BrokerProcess, kadmin) -> None:
    topic = "adm-delete-kp"
    created = kadmin.create_topics({topic: {"num_partitions": 2, "replication_factor": 1}})
    topic_id = uuid.UUID(str(created["topics"][0]["topic_id"]))
    assert topic_id.int != 0
    result = kadmin.delete_topics([topic_id])
    assert [
        (t["name"], uuid.UUID(str(t["topic_id"])), t["error_code"]) for t in result["topics"]
    ] == [(topic, topic_id, 0)]
    assert topic not in kadmin.list_topics()
    missing = kadmin.delete_topics([uuid.uuid4(), "adm-delete-kp-missing"], raise_errors=False)
    assert sorted(t["error_code"] for t in missing["topics"]) == [3, 100]


@pytest.mark.parametrize("version", range(1, 7))
def test_delete_topics_every_version(broker: BrokerProcess, version: int) -> None:
    topic = f"adm-delete-v{version}"
    with wire(broker) as conn:
        (t,) = wire_create(conn, 7, dict(name=topic))
        assert t.error_code == ErrorCode.none
        if version >= 6:
            fields = dict(topics=[dict(name=None, topic_id=t.topic_id), dict(name="adm-nope")])
        else:
            fields = dict(topic_names=[topic, "adm-nope"])
        body = request(
            conn, DELETE_TOPICS, version, "DeleteTopicsRequest", timeout=TIMEOUT * 1000, **fields
        )
        got = {r.name: r.error_code for r in body.responses}
        assert got == {topic: ErrorCode.none, "adm-nope": ErrorCode.unknown_topic_or_partition}
        if version >= 6:
            assert {r.name: r.topic_id for r in body.responses}[topic] == t.topic_id
        assert metadata_topic(conn, topic).error_code == ErrorCode.unknown_topic_or_partition


def test_delete_topics_wire_rules(broker: BrokerProcess) -> None:
    with wire(broker) as conn:
        results = wire_create(conn, 7, dict(name="adm-del-a"), dict(name="adm-del-b"))
        ids = {t.name: t.topic_id for t in results}
        stranger = uuid.uuid4()
        body = request(
            conn,
            DELETE_TOPICS,
            6,
            "DeleteTopicsRequest",
            topics=[
                dict(name="adm-del-a", topic_id=ids["adm-del-a"]),
                dict(name=None, topic_id=stranger),
                dict(name="adm-del-b"),
                dict(name="adm-del-b"),
                dict(name=None, topic_id=None),
            ],
            timeout=TIMEOUT * 1000,
        )
        # kio reads the all-zero UUID as None.
        got = [(r.name, r.topic_id, r.error_code, r.error_message) for r in body.responses]
        assert got == [
            (
                "adm-del-a",
                ids["adm-del-a"],
                ErrorCode.invalid_request,
                "You may not specify both topic name and topic id.",
            ),
            (
                None,
                stranger,
                ErrorCode.unknown_topic_id,
                "This server does not host this topic ID.",
            ),
            ("adm-del-b", None, ErrorCode.invalid_request, "Duplicate topic name."),
            (None, None, ErrorCode.invalid_request, "Neither topic name nor id were specified."),
        ]
        for name in ("adm-del-a", "adm-del-b"):
            assert metadata_topic(conn, name).error_code == ErrorCode.none


def test_deletion_disabled(fresh_broker: BrokerProcess) -> None:
    fresh_broker.overrides["delete.topic.enable"] = "false"
    fresh_broker.start()
    cadmin = AdminClient({"bootstrap.servers": fresh_broker.bootstrap})
    topic = "adm-undeletable"
    create(cadmin, topic, 2)
    err = failure(cadmin.delete_topics([topic], request_timeout=TIMEOUT)[topic])
    assert err.code() == KafkaError.TOPIC_DELETION_DISABLED
    kadmin = KafkaAdminClient(bootstrap_servers=fresh_broker.bootstrap)
    try:
        with pytest.raises(TopicDeletionDisabledError):
            kadmin.delete_topics([topic])
    finally:
        kadmin.close()
    with wire(fresh_broker) as conn:
        body = request(
            conn, DELETE_TOPICS, 2, "DeleteTopicsRequest", topic_names=[topic], timeout=1000
        )
        assert [(r.name, r.error_code) for r in body.responses] == [
            (topic, ErrorCode.invalid_request)
        ]
    assert topic in topic_names(cadmin)
    assert partitions_of(cadmin, topic) == [0, 1]


# ---------------------------------------------------------------------------------- aiokafka


def test_aiokafka_create_describe_delete(broker: BrokerProcess, cadmin: AdminClient) -> None:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin import NewTopic as ANewTopic
    from aiokafka.admin.config_resource import ConfigResource as AConfigResource
    from aiokafka.admin.config_resource import ConfigResourceType as AConfigResourceType

    topic = "adm-aio"

    async def run() -> dict[str, Any]:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            out: dict[str, Any] = {}
            created = await admin.create_topics(
                [ANewTopic(topic, 3, 1, topic_configs={"retention.ms": "4242"})]
            )
            out["create"] = [tuple(e)[:2] for e in created.topic_errors]
            dup = await admin.create_topics([ANewTopic(topic, 3, 1)])
            out["dup"] = [tuple(e)[:2] for e in dup.topic_errors]
            (described,) = await admin.describe_configs(
                [AConfigResource(AConfigResourceType.TOPIC, topic)]
            )
            out["describe"] = described
            out["cluster"] = await admin.describe_cluster()
            deleted = await admin.delete_topics([topic])
            out["delete"] = [tuple(e)[:2] for e in deleted.topic_error_codes]
            out["topics_after"] = await admin.list_topics()
            return out
        finally:
            await admin.close()

    out = asyncio.run(run())
    assert out["create"] == [(topic, 0)]
    assert out["dup"] == [(topic, ErrorCode.topic_already_exists.value)]
    (resource,) = out["describe"].resources
    error_code, _message, rtype, name, configs = tuple(resource)[:5]
    assert (error_code, rtype, name) == (0, TOPIC, topic)
    by_name = {c[0]: c for c in configs}
    assert set(by_name) == set(TOPIC_CONFIGS)
    assert by_name["retention.ms"][1] == "4242"
    assert out["cluster"]["cluster_id"]
    assert out["delete"] == [(topic, 0)]
    assert topic not in out["topics_after"]
    assert topic not in topic_names(cadmin)


# ------------------------------------------------------------------------- DescribeCluster


def test_describe_cluster(broker: BrokerProcess, cadmin: AdminClient, kadmin) -> None:
    result = cadmin.describe_cluster(request_timeout=TIMEOUT).result(TIMEOUT)
    assert [(n.id, n.host, n.port) for n in result.nodes] == [(0, "127.0.0.1", broker.port)]
    assert result.controller.id == 0
    assert result.cluster_id and len(result.cluster_id) == 22
    assert result.authorized_operations is None

    described = kadmin.describe_cluster()
    assert described["cluster_id"] == result.cluster_id
    assert described["controller_id"] == 0
    assert described["brokers"] == [
        dict(broker_id=0, host="127.0.0.1", port=broker.port, rack=None, is_fenced=False)
    ]
    # kafka-python speaks DescribeCluster v2 and asks for the cluster's authorized
    # operations: without an authorizer, everything Kafka supports on CLUSTER.
    assert set(described["authorized_operations"]) == {op.name for op in CLUSTER_OPERATIONS}
    with wire(broker) as conn:
        meta = request(conn, METADATA, 12, "MetadataRequest", topics=[])
        assert meta.cluster_id == result.cluster_id
    # librdkafka asks for them with Metadata v10 (IncludeClusterAuthorizedOperations).
    with_ops = cadmin.describe_cluster(
        request_timeout=TIMEOUT, include_authorized_operations=True
    ).result(TIMEOUT)
    assert with_ops.authorized_operations is not None, "Metadata v8-10 ignores the request"
    assert set(with_ops.authorized_operations) == CLUSTER_OPERATIONS


@pytest.mark.parametrize("version", range(0, 3))
def test_describe_cluster_every_version(broker: BrokerProcess, version: int) -> None:
    with wire(broker) as conn:
        body = request(
            conn,
            DESCRIBE_CLUSTER,
            version,
            "DescribeClusterRequest",
            include_cluster_authorized_operations=False,
            endpoint_type=1,
            include_fenced_brokers=True,
        )
        assert (body.error_code, body.error_message, body.controller_id) == (
            ErrorCode.none,
            None,
            0,
        )
        assert body.cluster_authorized_operations == -(2**31)
        assert [(b.broker_id, b.host, b.port, b.rack) for b in body.brokers] == [
            (0, "127.0.0.1", broker.port, None)
        ]
        if version >= 1:
            controllers = request(
                conn,
                DESCRIBE_CLUSTER,
                version,
                "DescribeClusterRequest",
                include_cluster_authorized_operations=False,
                endpoint_type=2,
            )
            assert (controllers.error_code, controllers.error_message) == (
                ErrorCode.mismatched_endpoint_type,
                "The request was sent to an endpoint of type BROKER, but we wanted an endpoint "
                "of type CONTROLLER",
            )
            unknown = request(
                conn,
                DESCRIBE_CLUSTER,
                version,
                "DescribeClusterRequest",
                include_cluster_authorized_operations=False,
                endpoint_type=9,
            )
            assert unknown.error_code == ErrorCode.unsupported_endpoint_type


def test_admin_versions_advertised(broker: BrokerProcess) -> None:
    with wire(broker) as conn:
        versions = conn.api_versions()
    assert {k: versions[k] for k in (19, 20, 32, 33, 37, 44, 60)} == {
        # v0/v0-1 too: pybroker.legacy.protocol.enable (Kafka 3.9's minimums, KIP-896)
        CREATE_TOPICS: (0, 7),
        DELETE_TOPICS: (0, 6),
        DESCRIBE_CONFIGS: (0, 4),
        ALTER_CONFIGS: (0, 2),
        CREATE_PARTITIONS: (0, 3),
        INCREMENTAL_ALTER_CONFIGS: (0, 1),
        DESCRIBE_CLUSTER: (0, 2),
    }


def test_broker_logger_levels(broker: BrokerProcess) -> None:
    """BROKER_LOGGER resources read and set Python logging levels, as Kafka does log4j's."""
    logger = "pybroker.broker.handlers.admin_configs"
    with wire(broker) as conn:
        (before,) = wire_describe(conn, 4, (BROKER_LOGGER, "0", [logger, "root"]))
        assert before.error_code == ErrorCode.none
        assert {c.name for c in before.configs} == {logger, "root"}

        def set_level(*ops: tuple[str, int, str | None]) -> tuple[ErrorCode, str | None]:
            body = request(
                conn,
                INCREMENTAL_ALTER_CONFIGS,
                1,
                "IncrementalAlterConfigsRequest",
                resources=[
                    dict(
                        resource_type=BROKER_LOGGER,
                        resource_name="0",
                        configs=[dict(name=n, config_operation=o, value=v) for n, o, v in ops],
                    )
                ],
                validate_only=False,
            )
            (r,) = body.responses
            return r.error_code, r.error_message

        assert set_level((logger, SET, "DEBUG")) == (ErrorCode.none, None)
        (after,) = wire_describe(conn, 4, (BROKER_LOGGER, "0", [logger]))
        assert [(c.name, c.value) for c in after.configs] == [(logger, "DEBUG")]
        assert set_level((logger, SET, "LOUD"))[0] == ErrorCode.invalid_config
        assert set_level(("root", DELETE, None))[0] == ErrorCode.invalid_request
        assert set_level((logger, DELETE, None)) == (ErrorCode.none, None)
        (reset,) = wire_describe(conn, 4, (BROKER_LOGGER, "0", [logger, "root"]))
        levels = {c.name: c.value for c in reset.configs}
        assert levels[logger] == levels["root"]
