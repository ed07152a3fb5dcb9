"""BrokerConfig: Kafka's broker keys, defaults, precedence rules and error messages."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from pybroker.config import broker_config as bc
from pybroker.config.broker_config import (
    BROKER_CONFIGS,
    DEFAULT_SECURITY_PROTOCOL_MAP,
    BrokerConfig,
    ConfigEntry,
    Listener,
    is_known_key,
    is_sensitive_key,
)
from pybroker.config.topic_config import (
    INT_MAX,
    LONG_MAX,
    TOPIC_CONFIG_DEFS,
    ConfigError,
    TopicConfig,
    parse_int,
)

ROOT = Path(__file__).resolve().parents[2]
HOST = "broker.example"


def cfg(props: dict[str, str] | None = None, **overrides: str) -> BrokerConfig:
    """A config with a fixed advertised host name, so tests never depend on DNS."""
    return BrokerConfig.from_properties(props or {}, overrides or None, hostname=HOST)


def error(props: dict[str, str]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        cfg(props)
    return info.value


# ----------------------------------------------------------------------------- defaults

KAFKA_DEFAULTS: list[tuple[str, Any]] = [
    ("node_id", 0),
    ("cluster_id", None),
    ("broker_rack", None),
    ("zookeeper_connect", None),
    ("zookeeper_session_timeout_ms", 18_000),
    ("zookeeper_connection_timeout_ms", 18_000),
    ("listeners", (Listener("PLAINTEXT", "", 9092),)),
    ("advertised_listeners", (Listener("PLAINTEXT", HOST, 9092),)),
    (
        "listener_security_protocol_map",
        {
            "PLAINTEXT": "PLAINTEXT",
            "SSL": "SSL",
            "SASL_PLAINTEXT": "SASL_PLAINTEXT",
            "SASL_SSL": "SASL_SSL",
        },
    ),
    ("inter_broker_listener_name", "PLAINTEXT"),
    ("controller_listener_names", ()),
    ("socket_send_buffer_bytes", 102_400),
    ("socket_receive_buffer_bytes", 102_400),
    ("socket_request_max_bytes", 104_857_600),
    ("socket_listen_backlog_size", 50),
    ("connections_max_idle_ms", 600_000),
    ("connection_failed_authentication_delay_ms", 100),
    ("max_connections", INT_MAX),
    ("max_connections_per_ip", INT_MAX),
    ("max_connections_per_ip_overrides", {}),
    ("queued_max_requests", 500),
    ("queued_max_request_bytes", -1),
    ("request_timeout_ms", 30_000),
    ("log_dirs", ("/tmp/kafka-logs",)),
    ("num_partitions", 1),
    ("max_request_partition_size_limit", 2000),
    ("replica_selector_class", None),
    ("default_replication_factor", 1),
    ("auto_create_topics_enable", True),
    ("delete_topic_enable", True),
    ("message_max_bytes", 1_048_588),
    ("log_segment_bytes", 1_073_741_824),
    ("log_retention_ms", 168 * 3_600_000),
    ("log_retention_bytes", -1),
    ("log_retention_check_interval_ms", 300_000),
    ("log_roll_ms", 168 * 3_600_000),
    ("log_roll_jitter_ms", 0),
    ("log_segment_delete_delay_ms", 60_000),
    ("log_flush_interval_messages", LONG_MAX),
    ("log_flush_interval_ms", LONG_MAX),
    ("log_flush_scheduler_interval_ms", LONG_MAX),
    ("log_flush_offset_checkpoint_interval_ms", 60_000),
    ("log_flush_start_offset_checkpoint_interval_ms", 60_000),
    ("num_recovery_threads_per_data_dir", 2),
    ("log_cleaner_enable", True),
    ("log_cleaner_threads", 1),
    ("log_cleaner_backoff_ms", 15_000),
    ("log_cleaner_dedupe_buffer_size", 134_217_728),
    ("log_cleaner_io_buffer_size", 524_288),
    ("min_insync_replicas", 1),
    ("unclean_leader_election_enable", False),
    ("replica_lag_time_max_ms", 30_000),
    ("controlled_shutdown_enable", True),
    ("controlled_shutdown_max_retries", 3),
    ("controlled_shutdown_retry_backoff_ms", 5_000),
    ("replica_fetch_max_bytes", 1_048_576),
    ("replica_fetch_min_bytes", 1),
    ("replica_fetch_wait_max_ms", 500),
    ("replica_fetch_response_max_bytes", 10_485_760),
    ("replica_fetch_backoff_ms", 1_000),
    ("replica_socket_timeout_ms", 30_000),
    ("replica_socket_receive_buffer_bytes", 65_536),
    ("replica_high_watermark_checkpoint_interval_ms", 5_000),
    ("num_replica_fetchers", 1),
    ("auto_leader_rebalance_enable", True),
    ("leader_imbalance_check_interval_seconds", 300),
    ("leader_imbalance_per_broker_percentage", 10),
    ("controller_socket_timeout_ms", 30_000),
    ("group_initial_rebalance_delay_ms", 3_000),
    ("group_min_session_timeout_ms", 6_000),
    ("group_max_session_timeout_ms", 1_800_000),
    ("group_max_size", INT_MAX),
    ("group_consumer_session_timeout_ms", 45_000),
    ("group_consumer_min_session_timeout_ms", 45_000),
    ("group_consumer_max_session_timeout_ms", 60_000),
    ("group_consumer_heartbeat_interval_ms", 5_000),
    ("group_consumer_min_heartbeat_interval_ms", 5_000),
    ("group_consumer_max_heartbeat_interval_ms", 15_000),
    ("group_consumer_max_size", INT_MAX),
    (
        "group_consumer_assignors",
        "org.apache.kafka.coordinator.group.assignor.UniformAssignor,"
        "org.apache.kafka.coordinator.group.assignor.RangeAssignor",
    ),
    ("group_consumer_migration_policy", "bidirectional"),
    ("offsets_topic_num_partitions", 50),
    ("offsets_topic_replication_factor", 3),
    ("offsets_topic_segment_bytes", 104_857_600),
    ("offsets_retention_minutes", 10_080),
    ("offsets_retention_check_interval_ms", 600_000),
    ("offsets_commit_timeout_ms", 5_000),
    ("offsets_load_buffer_size", 5_242_880),
    ("offset_metadata_max_bytes", 4_096),
    ("transaction_state_log_num_partitions", 50),
    ("transaction_state_log_replication_factor", 3),
    ("transaction_state_log_min_isr", 2),
    ("transaction_state_log_segment_bytes", 104_857_600),
    ("transaction_state_log_load_buffer_size", 5_242_880),
    ("transaction_max_timeout_ms", 900_000),
    ("transactional_id_expiration_ms", 604_800_000),
    ("transaction_abort_timed_out_transaction_cleanup_interval_ms", 10_000),
    ("transaction_remove_expired_transaction_cleanup_interval_ms", 3_600_000),
    ("producer_id_expiration_ms", 86_400_000),
    ("producer_id_expiration_check_interval_ms", 600_000),
    ("fetch_max_bytes", 57_671_680),
    ("max_incremental_fetch_session_cache_slots", 1_000),
    ("ignored", ()),
]


@pytest.mark.parametrize(("attr", "expected"), KAFKA_DEFAULTS, ids=[a for a, _ in KAFKA_DEFAULTS])
def test_kafka_default(attr: str, expected: Any) -> None:
    value = getattr(cfg(), attr)
    assert (dict(value) if attr == "listener_security_protocol_map" else value) == expected


def test_every_field_has_a_default_test() -> None:
    tested = {a for a, _ in KAFKA_DEFAULTS}
    untested = {f.name for f in dataclasses.fields(BrokerConfig)} - tested
    assert untested == {"values", "raw", "notices"}


def test_defaults_are_not_topic_defaults() -> None:
    # Nothing set: TopicConfig must report Kafka's own defaults as DEFAULT_CONFIG.
    assert cfg().topic_defaults() == {}


def test_single_node_flag() -> None:
    assert cfg().single_node
    assert not cfg({"zookeeper.connect": "zk:2181", "broker.id": "1"}).single_node


def test_values_and_raw() -> None:
    c = cfg({"num.partitions": " 3 ", "x.unknown": "1"})
    assert c.raw["num.partitions"] == " 3 "
    assert c.values["num.partitions"] == 3
    assert c.values["log.retention.ms"] is None  # unset, no default: as Kafka (null)
    assert c.raw["x.unknown"] == "1"


# ------------------------------------------------------------------- node.id / broker.id


def test_node_id_unset_defaults_to_zero_and_says_so() -> None:
    c = cfg()
    assert c.node_id == 0
    assert any("node id 0" in n for n in c.notices)


@pytest.mark.parametrize(
    ("props", "expected"),
    [
        ({"node.id": "4"}, 4),
        ({"broker.id": "5"}, 5),
        ({"node.id": "6", "broker.id": "6"}, 6),
        ({"broker.id": "-1"}, 0),  # -1 is Kafka's "unset"
        ({"broker.id": " 7 "}, 7),
    ],
)
def test_node_id_and_broker_id_are_synonyms(props: dict[str, str], expected: int) -> None:
    c = cfg(props)
    assert c.node_id == expected
    if expected:
        assert not c.notices


def test_node_id_and_broker_id_must_agree() -> None:
    e = error({"node.id": "1", "broker.id": "2"})
    assert e.key == "node.id"
    assert "same value as `broker.id`" in str(e)


def test_node_id_must_not_be_negative() -> None:
    e = error({"node.id": "-1"})
    assert str(e) == "Invalid value -1 for configuration node.id: Value must be at least 0"


def test_broker_id_below_minus_one() -> None:
    assert error({"broker.id": "-2"}).key == "broker.id"


def test_cluster_mode_requires_an_id() -> None:
    e = error({"zookeeper.connect": "localhost:2181"})
    assert e.key == "broker.id"
    assert "automatic broker id generation is not supported" in str(e)


def test_cluster_mode_with_id() -> None:
    c = cfg({"zookeeper.connect": "zk1:2181,zk2:2181/kafka", "broker.id": "3"})
    assert c.zookeeper_connect == "zk1:2181,zk2:2181/kafka"
    assert c.node_id == 3


def test_empty_zookeeper_connect_means_single_node() -> None:
    c = cfg({"zookeeper.connect": "  "})
    assert c.zookeeper_connect is None
    assert c.single_node


def test_zookeeper_connection_timeout_defaults_to_session_timeout() -> None:
    c = cfg({"zookeeper.session.timeout.ms": "9000"})
    assert c.zookeeper_connection_timeout_ms == 9000
    c = cfg({"zookeeper.session.timeout.ms": "9000", "zookeeper.connection.timeout.ms": "6000"})
    assert c.zookeeper_connection_timeout_ms == 6000


def test_cluster_id_and_rack() -> None:
    c = cfg({"cluster.id": " MkU3OEVBNTcwNTJENDM2Qk ", "broker.rack": "rack-1"})
    assert c.cluster_id == "MkU3OEVBNTcwNTJENDM2Qk"
    assert c.broker_rack == "rack-1"


# ---------------------------------------------------------------------------- listeners


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PLAINTEXT://:9092", [Listener("PLAINTEXT", "", 9092)]),
        ("PLAINTEXT://localhost:9092", [Listener("PLAINTEXT", "localhost", 9092)]),
        ("PLAINTEXT://0.0.0.0:19092", [Listener("PLAINTEXT", "0.0.0.0", 19092)]),
        ("PLAINTEXT://127.0.0.1:0", [Listener("PLAINTEXT", "127.0.0.1", 0)]),
        ("PLAINTEXT://[::1]:9092", [Listener("PLAINTEXT", "::1", 9092)]),
        ("PLAINTEXT://::1:9092", [Listener("PLAINTEXT", "::1", 9092)]),  # Kafka's regex allows it
        ("PLAINTEXT://[fe80::1%eth0]:9092", [Listener("PLAINTEXT", "fe80::1%eth0", 9092)]),
        ("PLAINTEXT://[::]:9092", [Listener("PLAINTEXT", "::", 9092)]),
        (
            "plaintext://my-host.example.com:9092",
            [Listener("PLAINTEXT", "my-host.example.com", 9092)],
        ),
        (
            " PLAINTEXT://a:1 , PLAINTEXT2://b:2 ",
            [Listener("PLAINTEXT", "a", 1), Listener("PLAINTEXT2", "b", 2)],
        ),
        ("PLAINTEXT://a:1,,", [Listener("PLAINTEXT", "a", 1)]),
        ("PLAINTEXT://a:09092", [Listener("PLAINTEXT", "a", 9092)]),
    ],
)
def test_listener_parsing(text: str, expected: list[Listener]) -> None:
    props = {
        "listeners": text,
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,PLAINTEXT2:PLAINTEXT",
    }
    props["advertised.listeners"] = "PLAINTEXT://adv:9092"
    assert list(cfg(props).listeners) == expected


def test_listener_helpers() -> None:
    assert Listener("PLAINTEXT", "", 9092).bind_host is None
    assert Listener("PLAINTEXT", "::1", 9092).bind_host == "::1"
    assert Listener("PLAINTEXT", "", 9092).connection_string == "PLAINTEXT://:9092"
    assert Listener("PLAINTEXT", "::1", 9092).connection_string == "PLAINTEXT://[::1]:9092"
    assert str(Listener("CLIENT", "h", 1)) == "CLIENT://h:1"
    c = cfg({"listeners": "PLAINTEXT://h:1"})
    assert c.listener("plaintext") == Listener("PLAINTEXT", "h", 1)
    assert c.listener("other") is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("localhost:9092", "Unable to parse localhost:9092 to a broker endpoint"),
        ("PLAINTEXT://localhost", "Unable to parse"),
        ("PLAINTEXT://localhost:abc", "Unable to parse"),
        ("PLAINTEXT://host name:9092", "Unable to parse"),
        ("PLAINTEXT://localhost:65536", "Invalid port 65536 for listener PLAINTEXT"),
        ("PLAINTEXT://localhost:-1", "Invalid port -1"),
        ("PLAINTEXT://localhost:99999999999999", "Invalid port"),
        ("", "There must be at least one broker listener"),
        ("PLAINTEXT://a:1,PLAINTEXT://b:2", "Each listener must have a different name"),
        ("plaintext://a:1,PLAINTEXT://b:2", "Each listener must have a different name"),
        ("NOPE://:9092", "No security protocol defined for listener NOPE"),
    ],
)
def test_bad_listeners(text: str, reason: str) -> None:
    e = error({"listeners": text})
    assert e.key == "listeners"
    assert reason in str(e)
    assert str(e).startswith(f"Invalid value {text} for configuration listeners: ")


@pytest.mark.parametrize(
    "text",
    [
        "PLAINTEXT://:9092,P2://:9092",
        "PLAINTEXT://a:9092,P2://b:9092",
        "PLAINTEXT://127.0.0.1:9092,P2://127.0.0.2:9092",  # both IPv4
        "PLAINTEXT://127.0.0.1:9092,P2://host:9092",  # one IP, one name
        "PLAINTEXT://127.0.0.1:9092,P2://[::1]:9092,P3://host:9092",
        "PLAINTEXT://127.0.0.1:9092,P2://[::1]:9092,P3://[::2]:9092",
    ],
)
def test_listener_ports_must_differ(text: str) -> None:
    props = {
        "listeners": text,
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,P2:PLAINTEXT,P3:PLAINTEXT",
    }
    e = error(props)
    assert e.key == "listeners"
    assert "port" in e.reason


def test_same_port_allowed_for_one_ipv4_and_one_ipv6_listener() -> None:
    props = {
        "listeners": "PLAINTEXT://127.0.0.1:9092,P6://[::1]:9092",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,P6:PLAINTEXT",
    }
    assert [lst.host for lst in cfg(props).listeners] == ["127.0.0.1", "::1"]


def test_ephemeral_ports_never_clash() -> None:
    props = {
        "listeners": "PLAINTEXT://:0,P2://:0",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,P2:PLAINTEXT",
    }
    assert [lst.port for lst in cfg(props).listeners] == [0, 0]


@pytest.mark.parametrize("protocol", ["SSL", "SASL_PLAINTEXT", "SASL_SSL"])
def test_every_security_protocol_is_served(protocol: str) -> None:
    c = cfg({"listeners": f"PLAINTEXT://:9092,{protocol}://:9093"})
    assert [(lst.name, lst.security_protocol) for lst in c.listeners] == [
        ("PLAINTEXT", "PLAINTEXT"),
        (protocol, protocol),
    ]


def test_custom_listener_name_via_protocol_map() -> None:
    c = cfg(
        {
            "listeners": "CLIENT://:9092,INTERNAL://:9093",
            "listener.security.protocol.map": "client:plaintext, INTERNAL:PLAINTEXT",
            "inter.broker.listener.name": "internal",
        }
    )
    assert [(lst.name, lst.security_protocol) for lst in c.listeners] == [
        ("CLIENT", "PLAINTEXT"),
        ("INTERNAL", "PLAINTEXT"),
    ]
    assert c.inter_broker_listener_name == "INTERNAL"
    assert dict(c.listener_security_protocol_map) == {
        "CLIENT": "PLAINTEXT",
        "INTERNAL": "PLAINTEXT",
    }


def test_custom_listener_mapped_to_ssl() -> None:
    c = cfg(
        {
            "listeners": "SECURE://:9093",
            "listener.security.protocol.map": "SECURE:SSL",
            "inter.broker.listener.name": "SECURE",
        }
    )
    assert [(lst.name, lst.security_protocol) for lst in c.listeners] == [("SECURE", "SSL")]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("PLAINTEXT:TLS", "Invalid security protocol `TLS`"),
        ("PLAINTEXT", "Expected listenerName:securityProtocol"),
        (":PLAINTEXT", "Expected listenerName:securityProtocol"),
    ],
)
def test_bad_protocol_map(text: str, reason: str) -> None:
    e = error({"listener.security.protocol.map": text})
    assert e.key == "listener.security.protocol.map"
    assert reason in str(e)


def test_default_protocol_map_string() -> None:
    assert DEFAULT_SECURITY_PROTOCOL_MAP == (
        "SASL_SSL:SASL_SSL,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT"
    )


# ----------------------------------------------------------------- advertised.listeners


def test_advertised_defaults_to_listeners() -> None:
    c = cfg({"listeners": "PLAINTEXT://10.0.0.5:9092"})
    assert c.advertised_listeners == (Listener("PLAINTEXT", "10.0.0.5", 9092),)


def test_empty_host_is_advertised_as_canonical_host_name(monkeypatch: pytest.MonkeyPatch) -> None:
    # Kafka: InetAddress.getLocalHost().getCanonicalHostName() (ListenerInfo).
    monkeypatch.setattr(bc.socket, "getfqdn", lambda: "node7.cluster.local")
    c = BrokerConfig.from_properties({"listeners": "PLAINTEXT://:9092"})
    assert c.listeners[0].host == ""
    assert c.advertised_listeners == (Listener("PLAINTEXT", "node7.cluster.local", 9092),)


def test_host_name_not_looked_up_when_not_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom() -> str:
        raise AssertionError("must not resolve")

    monkeypatch.setattr(bc.socket, "getfqdn", boom)
    BrokerConfig.from_properties({"listeners": "PLAINTEXT://localhost:9092"})


def test_explicit_advertised_listeners() -> None:
    c = cfg(
        {
            "listeners": "PLAINTEXT://0.0.0.0:9092",
            "advertised.listeners": "PLAINTEXT://kafka.example.com:19092",
        }
    )
    assert c.listeners == (Listener("PLAINTEXT", "0.0.0.0", 9092),)
    assert c.advertised_listeners == (Listener("PLAINTEXT", "kafka.example.com", 19092),)


def test_advertised_empty_host_is_resolved_too() -> None:
    c = cfg(
        {"listeners": "PLAINTEXT://localhost:9092", "advertised.listeners": "PLAINTEXT://:9092"}
    )
    assert c.advertised_listeners == (Listener("PLAINTEXT", HOST, 9092),)


def test_advertised_ipv6() -> None:
    c = cfg({"listeners": "PLAINTEXT://[::1]:9092"})
    assert c.advertised_listeners[0].connection_string == "PLAINTEXT://[::1]:9092"


def test_advertised_may_reuse_ports() -> None:
    c = cfg(
        {
            "listeners": "PLAINTEXT://:9092,P2://:9093",
            "advertised.listeners": "PLAINTEXT://lb:9092,P2://lb:9092",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,P2:PLAINTEXT",
        }
    )
    assert [lst.port for lst in c.advertised_listeners] == [9092, 9092]


def test_advertised_subset_of_listeners() -> None:
    c = cfg(
        {
            "listeners": "PLAINTEXT://:9092,P2://:9093",
            "advertised.listeners": "PLAINTEXT://h:9092",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,P2:PLAINTEXT",
        }
    )
    assert [lst.name for lst in c.advertised_listeners] == ["PLAINTEXT"]


def test_advertised_name_must_be_a_listener() -> None:
    e = error(
        {
            "listeners": "PLAINTEXT://:9092",
            "advertised.listeners": "PLAINTEXT://h:9092,OTHER://h:9093",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,OTHER:PLAINTEXT",
        }
    )
    assert e.key == "advertised.listeners"
    assert "subset of the ones defined in listeners" in str(e)


@pytest.mark.parametrize(
    ("props", "key"),
    [
        ({"listeners": "PLAINTEXT://0.0.0.0:9092"}, "listeners"),  # advertised = listeners
        ({"advertised.listeners": "PLAINTEXT://0.0.0.0:9092"}, "advertised.listeners"),
        ({"advertised.listeners": "PLAINTEXT://[::]:9092"}, "advertised.listeners"),
    ],
)
def test_cannot_advertise_the_wildcard_address(props: dict[str, str], key: str) -> None:
    e = error(props)
    assert e.key == key
    assert "cannot use the nonroutable meta-address" in str(e)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "There must be at least one broker advertised listener"),
        ("bogus", "Unable to parse bogus"),
        ("PLAINTEXT://h:70000", "Invalid port 70000"),
        ("PLAINTEXT://h:1,PLAINTEXT://g:2", "Each listener must have a different name"),
    ],
)
def test_bad_advertised_listeners(text: str, reason: str) -> None:
    e = error({"advertised.listeners": text})
    assert e.key == "advertised.listeners"
    assert reason in str(e)


# ------------------------------------------------------------------ inter-broker listener


def test_inter_broker_listener_default_is_plaintext() -> None:
    assert cfg().inter_broker_listener_name == "PLAINTEXT"


def test_inter_broker_listener_must_be_advertised() -> None:
    # Kafka refuses CLIENT-only listeners unless inter.broker.listener.name names one.
    e = error({"listeners": "CLIENT://:9092", "listener.security.protocol.map": "CLIENT:PLAINTEXT"})
    assert e.key == "security.inter.broker.protocol"
    assert "must be a listener name defined in advertised.listeners" in str(e)


def test_inter_broker_listener_name_and_protocol_are_exclusive() -> None:
    e = error(
        {"inter.broker.listener.name": "PLAINTEXT", "security.inter.broker.protocol": "PLAINTEXT"}
    )
    assert e.key == "inter.broker.listener.name"
    assert "Only one of" in str(e)


def test_inter_broker_listener_name_must_be_mapped() -> None:
    e = error({"inter.broker.listener.name": "NOPE"})
    assert e.key == "inter.broker.listener.name"
    assert "not found in listener.security.protocol.map" in str(e)


def test_bad_inter_broker_security_protocol() -> None:
    e = error({"security.inter.broker.protocol": "TLS"})
    assert e.key == "security.inter.broker.protocol"


# ----------------------------------------------------------------- KRaft-style configs


KAFKA4_KRAFT_PROPERTIES = """
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=localhost:9093
listeners=PLAINTEXT://:9092,CONTROLLER://:9093
inter.broker.listener.name=PLAINTEXT
advertised.listeners=PLAINTEXT://localhost:9092,CONTROLLER://localhost:9093
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL
num.network.threads=3
num.io.threads=8
socket.send.buffer.bytes=102400
socket.receive.buffer.bytes=102400
socket.request.max.bytes=104857600
log.dirs=/tmp/kraft-combined-logs
num.partitions=1
num.recovery.threads.per.data.dir=1
offsets.topic.replication.factor=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
log.retention.hours=168
log.segment.bytes=1073741824
log.retention.check.interval.ms=300000
"""


def test_kafka4_kraft_server_properties_is_accepted() -> None:
    from pybroker.config.properties import parse_properties

    c = cfg(parse_properties(KAFKA4_KRAFT_PROPERTIES))
    assert c.ignored == ()
    assert c.node_id == 1
    assert c.listeners == (Listener("PLAINTEXT", "", 9092),)  # no KRaft controller here
    assert c.advertised_listeners == (Listener("PLAINTEXT", "localhost", 9092),)
    assert c.controller_listener_names == ("CONTROLLER",)
    assert any("CONTROLLER" in n and "does not open" in n for n in c.notices)
    assert c.offsets_topic_replication_factor == 1


def test_controller_listener_needs_no_protocol_mapping() -> None:
    c = cfg(
        {
            "listeners": "PLAINTEXT://:9092,CONTROLLER://:9093",
            "controller.listener.names": "CONTROLLER",
        }
    )
    assert [lst.name for lst in c.listeners] == ["PLAINTEXT"]


def test_only_controller_listeners_is_an_error() -> None:
    e = error({"listeners": "CONTROLLER://:9093", "controller.listener.names": "CONTROLLER"})
    assert e.key == "listeners"


# ------------------------------------------------------------------------------ log dirs


@pytest.mark.parametrize(
    ("props", "expected"),
    [
        ({}, ("/tmp/kafka-logs",)),
        ({"log.dir": "/var/kafka"}, ("/var/kafka",)),
        ({"log.dirs": "/a"}, ("/a",)),
        ({"log.dirs": "/a,/b", "log.dir": "/c"}, ("/a", "/b")),  # log.dirs wins
        ({"log.dirs": " /a , /b ,, "}, ("/a", "/b")),
        ({"log.dirs": "./data"}, ("./data",)),
    ],
)
def test_log_dirs(props: dict[str, str], expected: tuple[str, ...]) -> None:
    assert cfg(props).log_dirs == expected


@pytest.mark.parametrize(
    ("props", "key", "reason"),
    [
        ({"log.dirs": ""}, "log.dirs", "At least one log directory"),
        ({"log.dirs": " , "}, "log.dirs", "At least one log directory"),
        ({"log.dir": ""}, "log.dir", "At least one log directory"),
        ({"log.dirs": "/a,/b,/a/"}, "log.dirs", "Duplicate log directory"),
    ],
)
def test_bad_log_dirs(props: dict[str, str], key: str, reason: str) -> None:
    e = error(props)
    assert e.key == key
    assert reason in str(e)


# ------------------------------------------------------------------ time-based precedence


@pytest.mark.parametrize(
    ("props", "expected"),
    [
        ({}, 604_800_000),
        ({"log.retention.hours": "24"}, 86_400_000),
        ({"log.retention.minutes": "30"}, 1_800_000),
        ({"log.retention.ms": "1234"}, 1234),
        ({"log.retention.hours": "24", "log.retention.minutes": "30"}, 1_800_000),
        ({"log.retention.hours": "24", "log.retention.ms": "1234"}, 1234),
        ({"log.retention.minutes": "30", "log.retention.ms": "1234"}, 1234),
        ({"log.retention.hours": "1", "log.retention.minutes": "2", "log.retention.ms": "3"}, 3),
        ({"log.retention.ms": "-1"}, -1),
        ({"log.retention.ms": "-5"}, -1),  # any negative is unlimited
        ({"log.retention.hours": "-1"}, -1),
        ({"log.retention.minutes": "-1"}, -1),
        ({"log.retention.ms": "-1", "log.retention.hours": "5"}, -1),
        ({"log.retention.hours": "2147483647"}, 2_147_483_647 * 3_600_000),
    ],
)
def test_retention_precedence(props: dict[str, str], expected: int) -> None:
    assert cfg(props).log_retention_ms == expected


@pytest.mark.parametrize(
    "key", ["log.retention.ms", "log.retention.minutes", "log.retention.hours"]
)
def test_zero_retention_is_invalid(key: str) -> None:
    e = error({key: "0"})
    assert e.key == key
    assert "must be unlimited (-1) or, greater than or equal to 1" in str(e)


@pytest.mark.parametrize(
    ("props", "roll", "jitter"),
    [
        ({}, 604_800_000, 0),
        ({"log.roll.hours": "1"}, 3_600_000, 0),
        ({"log.roll.ms": "500", "log.roll.hours": "1"}, 500, 0),
        ({"log.roll.jitter.hours": "2"}, 604_800_000, 7_200_000),
        ({"log.roll.jitter.ms": "10", "log.roll.jitter.hours": "2"}, 604_800_000, 10),
    ],
)
def test_roll_precedence(props: dict[str, str], roll: int, jitter: int) -> None:
    c = cfg(props)
    assert (c.log_roll_ms, c.log_roll_jitter_ms) == (roll, jitter)


@pytest.mark.parametrize(
    ("props", "expected"),
    [
        ({}, LONG_MAX),
        ({"log.flush.scheduler.interval.ms": "2000"}, 2000),
        ({"log.flush.interval.ms": "1000", "log.flush.scheduler.interval.ms": "2000"}, 1000),
    ],
)
def test_flush_interval_falls_back_to_scheduler_interval(
    props: dict[str, str], expected: int
) -> None:
    assert cfg(props).log_flush_interval_ms == expected


# ----------------------------------------------------------------------- topic defaults


def test_every_topic_broker_key_is_a_broker_config() -> None:
    for d in TOPIC_CONFIG_DEFS:
        # (Kafka's throttled-replica and remote-storage topic keys have no broker key.)
        assert d.broker_key is None or d.broker_key in BROKER_CONFIGS, d.broker_key


def test_topic_defaults_only_for_keys_set() -> None:
    c = cfg({"log.segment.bytes": "1048576", "num.partitions": "3"})
    assert c.topic_defaults() == {"segment.bytes": 1_048_576}


@pytest.mark.parametrize(
    ("props", "expected"),
    [
        ({"log.retention.hours": "1"}, {"retention.ms": 3_600_000}),
        ({"log.retention.minutes": "1"}, {"retention.ms": 60_000}),
        ({"log.retention.ms": "-1", "log.retention.hours": "1"}, {"retention.ms": -1}),
        ({"log.roll.hours": "2"}, {"segment.ms": 7_200_000}),
        ({"log.roll.ms": "99", "log.roll.hours": "2"}, {"segment.ms": 99}),
        ({"log.roll.jitter.hours": "1"}, {"segment.jitter.ms": 3_600_000}),
        ({"log.flush.scheduler.interval.ms": "5"}, {"flush.ms": 5}),
        ({"log.flush.interval.messages": "10"}, {"flush.messages": 10}),
        ({"log.cleanup.policy": "compact, delete"}, {"cleanup.policy": "compact,delete"}),
        ({"compression.type": "zstd"}, {"compression.type": "zstd"}),
        ({"message.max.bytes": "2000000"}, {"max.message.bytes": 2_000_000}),
        (
            {"log.message.timestamp.type": "LogAppendTime"},
            {"message.timestamp.type": "LogAppendTime"},
        ),
        ({"log.cleaner.min.cleanable.ratio": "0.25"}, {"min.cleanable.dirty.ratio": 0.25}),
        ({"log.preallocate": "TRUE"}, {"preallocate": True}),
        ({"min.insync.replicas": "2"}, {"min.insync.replicas": 2}),
        ({"unclean.leader.election.enable": "true"}, {"unclean.leader.election.enable": True}),
        ({"log.segment.delete.delay.ms": "0"}, {"file.delete.delay.ms": 0}),
        ({"log.index.size.max.bytes": "4096"}, {"segment.index.bytes": 4096}),
        ({"log.index.interval.bytes": "100"}, {"index.interval.bytes": 100}),
        ({"log.retention.bytes": "1000"}, {"retention.bytes": 1000}),
        ({"log.cleaner.delete.retention.ms": "1"}, {"delete.retention.ms": 1}),
        ({"log.cleaner.min.compaction.lag.ms": "1"}, {"min.compaction.lag.ms": 1}),
        ({"log.cleaner.max.compaction.lag.ms": "1"}, {"max.compaction.lag.ms": 1}),
        ({"log.message.timestamp.before.max.ms": "1"}, {"message.timestamp.before.max.ms": 1}),
        ({"log.message.timestamp.after.max.ms": "1"}, {"message.timestamp.after.max.ms": 1}),
    ],
)
def test_topic_defaults(props: dict[str, str], expected: dict[str, Any]) -> None:
    assert cfg(props).topic_defaults() == expected


def test_topic_defaults_feed_topic_config() -> None:
    c = cfg(
        {
            "log.retention.hours": "1",
            "log.segment.bytes": "1048576",
            "log.cleanup.policy": "compact",
        }
    )
    tc = TopicConfig(overrides={"retention.ms": "5000"}, defaults=c.topic_defaults())
    assert tc.retention_ms == 5000
    assert tc.source_of("retention.ms") == "topic"
    assert tc.segment_bytes == 1_048_576
    assert tc.source_of("segment.bytes") == "broker"
    assert tc.compact
    assert tc.source_of("max.message.bytes") == "default"


def test_topic_defaults_is_a_copy() -> None:
    c = cfg({"log.segment.bytes": "1048576"})
    c.topic_defaults()["segment.bytes"] = 1
    assert c.topic_defaults() == {"segment.bytes": 1_048_576}


# --------------------------------------------------------------------------- bad values

BAD_VALUES = [
    ("num.partitions", "abc", "Not a number of type INT"),
    ("num.partitions", "0", "Value must be at least 1"),
    ("num.partitions", "1.5", "Not a number of type INT"),
    ("num.partitions", "1_000", "Not a number of type INT"),
    ("num.partitions", "", "Not a number of type INT"),
    ("num.partitions", "2147483648", "Not a number of type INT"),
    ("default.replication.factor", "0", "Value must be at least 1"),
    ("auto.create.topics.enable", "yes", "Expected value to be either true or false"),
    ("delete.topic.enable", "1", "Expected value to be either true or false"),
    ("message.max.bytes", "-1", "Value must be at least 0"),
    ("socket.request.max.bytes", "0", "Value must be at least 1"),
    ("socket.send.buffer.bytes", "big", "Not a number of type INT"),
    ("socket.receive.buffer.bytes", "1e5", "Not a number of type INT"),
    ("log.segment.bytes", "10", "Value must be at least 14"),
    ("log.retention.ms", "1.5", "Not a number of type LONG"),
    ("log.retention.ms", "9223372036854775808", "Not a number of type LONG"),
    ("log.retention.minutes", "x", "Not a number of type INT"),
    ("log.retention.hours", "one", "Not a number of type INT"),
    ("log.retention.bytes", "1GB", "Not a number of type LONG"),
    ("log.retention.check.interval.ms", "0", "Value must be at least 1"),
    ("log.roll.hours", "0", "Value must be at least 1"),
    ("log.roll.ms", "0", "Value must be at least 1"),
    ("log.roll.jitter.ms", "-1", "Value must be at least 0"),
    ("log.flush.interval.messages", "0", "Value must be at least 1"),
    ("log.flush.interval.ms", "-1", "Value must be at least 0"),
    ("log.flush.scheduler.interval.ms", "soon", "Not a number of type LONG"),
    ("log.flush.offset.checkpoint.interval.ms", "-1", "Value must be at least 0"),
    ("log.segment.delete.delay.ms", "-1", "Value must be at least 0"),
    ("zookeeper.session.timeout.ms", "x", "Not a number of type INT"),
    ("offsets.topic.num.partitions", "0", "Value must be at least 1"),
    ("offsets.topic.replication.factor", "0", "Value must be at least 1"),
    ("offsets.topic.replication.factor", "40000", "Not a number of type SHORT"),
    ("transaction.state.log.num.partitions", "0", "Value must be at least 1"),
    ("transaction.state.log.replication.factor", "x", "Not a number of type SHORT"),
    ("group.initial.rebalance.delay.ms", "x", "Not a number of type INT"),
    ("group.min.session.timeout.ms", "x", "Not a number of type INT"),
    ("group.max.session.timeout.ms", "x", "Not a number of type INT"),
    ("group.max.size", "0", "Value must be at least 1"),
    ("offsets.retention.minutes", "0", "Value must be at least 1"),
    ("offset.metadata.max.bytes", "x", "Not a number of type INT"),
    ("replica.lag.time.max.ms", "x", "Not a number of type LONG"),
    ("min.insync.replicas", "0", "Value must be at least 1"),
    ("log.cleanup.policy", "forever", "String must be one of: compact, delete"),
    ("compression.type", "brotli", "String must be one of"),
    (
        "log.message.timestamp.type",
        "createtime",
        "String must be one of: CreateTime, LogAppendTime",
    ),
    ("log.cleaner.min.cleanable.ratio", "2", "Value must be no more than 1.0"),
    ("log.cleaner.min.cleanable.ratio", "half", "Not a number of type DOUBLE"),
    ("log.preallocate", "maybe", "Expected value to be either true or false"),
    ("unclean.leader.election.enable", "no", "Expected value to be either true or false"),
    ("fetch.max.bytes", "1000", "Value must be at least 1024"),
    ("node.id", "one", "Not a number of type INT"),
    ("broker.id", "one", "Not a number of type INT"),
    ("num.network.threads", "0", "Value must be at least 1"),
    ("num.io.threads", "many", "Not a number of type INT"),
]


@pytest.mark.parametrize(
    ("key", "value", "reason"), BAD_VALUES, ids=[f"{k}={v}" for k, v, _ in BAD_VALUES]
)
def test_bad_value_names_the_key(key: str, value: str, reason: str) -> None:
    e = error({key: value})
    assert e.key == key
    assert str(e) == f"Invalid value {value} for configuration {key}: {e.reason}"
    assert reason in e.reason


def test_kafka_error_text_verbatim() -> None:
    e = error({"num.partitions": "abc"})
    assert str(e) == "Invalid value abc for configuration num.partitions: Not a number of type INT"


def test_config_error_is_a_value_error() -> None:
    assert isinstance(error({"num.partitions": "abc"}), ValueError)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("num.partitions", " 3 ", 3),
        ("num.partitions", "+3", 3),
        ("auto.create.topics.enable", " FALSE ", False),
        ("log.retention.bytes", "-1", -1),
        ("socket.send.buffer.bytes", "-1", -1),  # -1 = OS default
        ("log.cleanup.policy", "compact", "compact"),
    ],
)
def test_values_are_trimmed_and_parsed_like_kafka(key: str, value: str, expected: Any) -> None:
    assert cfg({key: value}).values[key] == expected


def test_replica_fetch_wait_must_fit_socket_timeout() -> None:
    e = error({"replica.fetch.wait.max.ms": "40000", "replica.lag.time.max.ms": "50000"})
    assert e.key == "replica.socket.timeout.ms"
    e = error({"replica.fetch.wait.max.ms": "20000", "replica.lag.time.max.ms": "10000"})
    assert e.key == "replica.fetch.wait.max.ms"


def test_parse_int_kinds() -> None:
    assert parse_int("k", "32767", kind="SHORT") == 32767
    with pytest.raises(ConfigError, match="Not a number of type SHORT"):
        parse_int("k", "32768", kind="SHORT")
    assert parse_int("k", str(LONG_MAX)) == LONG_MAX
    with pytest.raises(ConfigError, match="Not a number of type LONG"):
        parse_int("k", "\u0661")  # ARABIC-INDIC DIGIT ONE: int() takes it, Kafka does not
    with pytest.raises(ConfigError, match="Value must be no more than 5"):
        parse_int("k", "6", 0, 5, "INT")


# ---------------------------------------------------------------------- unknown keys


def test_unknown_keys_are_returned_as_ignored() -> None:
    c = cfg({"num.partition": "3", "zookeeper.conect": "x", "foo": "bar", "num.partitions": "2"})
    assert c.ignored == ("foo", "num.partition", "zookeeper.conect")
    assert c.num_partitions == 2


@pytest.mark.parametrize(
    "key",
    [
        "num.network.threads",
        "num.io.threads",
        "num.recovery.threads.per.data.dir",
        "log.cleaner.enable",
        "process.roles",
        "controller.quorum.voters",
        "ssl.keystore.location",
        "sasl.enabled.mechanisms",
        "listener.name.internal.ssl.keystore.password",
        "zookeeper.ssl.client.enable",
        "zookeeper.set.acl",
        "metric.reporters",
        "authorizer.class.name",
        "remote.log.storage.system.enable",
        "group.consumer.heartbeat.interval.ms",
        "share.coordinator.state.topic.replication.factor",
        "inter.broker.protocol.version",
        "log.message.format.version",
        "broker.id.generation.enable",
    ],
)
def test_known_kafka_keys_are_not_ignored(key: str) -> None:
    assert is_known_key(key)
    value = {
        "process.roles": "broker",
        "log.cleaner.enable": "true",
        "group.consumer.heartbeat.interval.ms": "5000",
        "authorizer.class.name": "kafka.security.authorizer.AclAuthorizer",
    }.get(key, "1")
    assert cfg({key: value}).ignored == ()


def test_every_typed_key_is_known() -> None:
    assert all(is_known_key(k) for k in BROKER_CONFIGS)


def test_pre_3_0_keys_are_unknown() -> None:
    # Removed from Kafka in 3.0; Kafka also warns "isn't a known config".
    assert cfg({"port": "9092", "host.name": "x"}).ignored == ("host.name", "port")


# ------------------------------------------------------------------- overrides and state


def test_overrides_win_over_properties() -> None:
    c = BrokerConfig.from_properties(
        {"num.partitions": "1", "log.dirs": "/a"}, {"num.partitions": "6"}, hostname=HOST
    )
    assert c.num_partitions == 6
    assert c.log_dirs == ("/a",)
    assert c.raw["num.partitions"] == "6"


def test_override_can_fix_a_bad_file_value() -> None:
    c = BrokerConfig.from_properties(
        {"num.partitions": "bad"}, {"num.partitions": "2"}, hostname=HOST
    )
    assert c.num_partitions == 2


def test_config_is_immutable() -> None:
    c = cfg()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.num_partitions = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        c.raw["num.partitions"] = "5"  # type: ignore[index]
    with pytest.raises(TypeError):
        c.values["num.partitions"] = 5  # type: ignore[index]
    with pytest.raises(TypeError):
        c.listener_security_protocol_map["X"] = "SSL"  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.listeners[0].port = 1  # type: ignore[misc]


def test_input_mapping_is_copied() -> None:
    props = {"num.partitions": "2"}
    c = cfg(props)
    props["num.partitions"] = "9"
    assert c.raw["num.partitions"] == "2"


def test_repr_hides_raw_strings() -> None:
    assert "secret" not in repr(cfg({"ssl.keystore.password": "secret"}))


# ---------------------------------------------------------------------------- describe


def by_name(c: BrokerConfig) -> dict[str, ConfigEntry]:
    return {e.name: e for e in c.describe()}


def test_describe_defaults() -> None:
    entries = cfg().describe()
    names = [e.name for e in entries]
    assert names == sorted(names) and len(names) == len(set(names))
    assert set(BROKER_CONFIGS) <= set(names)
    d = {e.name: e for e in entries}
    assert d["num.partitions"] == ConfigEntry("num.partitions", "1", "default", False, True)
    assert d["auto.create.topics.enable"].value == "true"
    assert d["advertised.listeners"].value is None
    assert d["log.retention.ms"].value is None  # Kafka's default is null (hours apply)
    assert d["log.retention.hours"].value == "168"
    assert d["listeners"].value == "PLAINTEXT://:9092"
    assert d["log.flush.interval.messages"].value == str(LONG_MAX)
    assert d["log.cleaner.min.cleanable.ratio"].value == "0.5"
    assert d["log.cleaner.io.max.bytes.per.second"].value == "1.7976931348623157E308"
    assert d["broker.id"].value == "0" and d["node.id"].value == "0"
    assert all(e.source == "default" and e.read_only for e in entries)
    # Kafka's PASSWORD-type keys (ssl.keystore.password, ...) are sensitive even unset.
    assert all(e.sensitive == is_sensitive_key(e.name) for e in entries)
    assert d["ssl.keystore.password"].sensitive and d["ssl.keystore.password"].value is None


def test_describe_static_values() -> None:
    d = by_name(cfg({"num.partitions": " 4 ", "log.retention.hours": "1", "broker.id": "2"}))
    assert d["num.partitions"] == ConfigEntry("num.partitions", "4", "static", False, True)
    assert d["log.retention.hours"].value == "1"
    assert d["log.retention.ms"] == ConfigEntry(
        "log.retention.ms", "3600000", "static", False, True
    )
    assert d["log.retention.minutes"].source == "default"
    assert d["node.id"] == ConfigEntry("node.id", "2", "static", False, True)
    assert d["broker.id"].source == "static"


def test_describe_hides_sensitive_values() -> None:
    c = cfg(
        {
            "ssl.keystore.password": "secret",
            "listener.name.internal.plain.sasl.jaas.config": "x required;",
            "ssl.keystore.location": "/ks.jks",
        }
    )
    d = by_name(c)
    assert d["ssl.keystore.password"] == ConfigEntry(
        "ssl.keystore.password", None, "static", True, True
    )
    assert d["listener.name.internal.plain.sasl.jaas.config"].value is None
    assert d["ssl.keystore.location"] == ConfigEntry(
        "ssl.keystore.location", "/ks.jks", "static", False, True
    )
    assert is_sensitive_key("zookeeper.ssl.truststore.password")
    assert not is_sensitive_key("ssl.keystore.location")


def test_describe_leaves_out_unknown_keys() -> None:
    assert "foo.bar" not in by_name(cfg({"foo.bar": "1"}))


def test_java_double_rendering() -> None:
    assert bc._java_double(0.5) == "0.5"
    assert bc._java_double(1.0) == "1.0"
    assert bc._java_double(1e7) == "1.0E7"
    assert bc._java_double(1.5e-4) == "1.5E-4"
    assert bc._java_double(123456789.0) == "1.23456789E8"


# ------------------------------------------------------------------- example and files


def test_example_server_properties() -> None:
    c = BrokerConfig.from_file(ROOT / "config" / "server.properties")
    assert c.ignored == ()
    assert c.node_id == 0
    assert c.listeners == (Listener("PLAINTEXT", "localhost", 9092),)
    assert c.advertised_listeners == (Listener("PLAINTEXT", "localhost", 9092),)
    assert c.log_dirs == ("./data",)
    assert c.num_partitions == 1
    assert c.offsets_topic_replication_factor == 1
    assert c.transaction_state_log_replication_factor == 1
    assert c.transaction_state_log_min_isr == 1
    assert c.single_node
    assert c.notices == ()


def test_example_with_test_harness_overrides(tmp_path: Path) -> None:
    # What tests/support/broker.py passes on the command line.
    c = BrokerConfig.from_file(
        ROOT / "config" / "server.properties",
        {
            "listeners": "PLAINTEXT://127.0.0.1:45678",
            "advertised.listeners": "PLAINTEXT://127.0.0.1:45678",
            "log.dirs": str(tmp_path),
        },
    )
    assert c.listeners == (Listener("PLAINTEXT", "127.0.0.1", 45678),)
    assert c.log_dirs == (str(tmp_path),)


KAFKA3_ZK_PROPERTIES = """
broker.id=0
num.network.threads=3
num.io.threads=8
socket.send.buffer.bytes=102400
socket.receive.buffer.bytes=102400
socket.request.max.bytes=104857600
log.dirs=/tmp/kafka-logs
num.partitions=1
num.recovery.threads.per.data.dir=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
log.retention.hours=168
log.segment.bytes=1073741824
log.retention.check.interval.ms=300000
zookeeper.connect=localhost:2181
zookeeper.connection.timeout.ms=18000
group.initial.rebalance.delay.ms=0
"""


def test_kafka3_zookeeper_server_properties_is_accepted(tmp_path: Path) -> None:
    p = tmp_path / "server.properties"
    p.write_text(KAFKA3_ZK_PROPERTIES)
    c = BrokerConfig.from_file(p)
    assert c.ignored == ()
    assert c.zookeeper_connect == "localhost:2181"
    assert c.zookeeper_connection_timeout_ms == 18000
    assert c.group_initial_rebalance_delay_ms == 0
    assert c.topic_defaults() == {"retention.ms": 604_800_000, "segment.bytes": 1_073_741_824}


# ------------------------------------------------------------------- KIP-848 consumer groups


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"group.consumer.session.timeout.ms": "3000"},
            "group.consumer.session.timeout.ms must be greater than or equal to "
            "group.consumer.min.session.timeout.ms",
        ),
        (
            {"group.consumer.session.timeout.ms": "61000"},
            "group.consumer.session.timeout.ms must be less than or equal to "
            "group.consumer.max.session.timeout.ms",
        ),
        (
            {"group.consumer.heartbeat.interval.ms": "100"},
            "group.consumer.heartbeat.interval.ms must be greater than or equal to "
            "group.consumer.min.heartbeat.interval.ms",
        ),
        (
            {
                "group.consumer.session.timeout.ms": "1000",
                "group.consumer.min.session.timeout.ms": "1000",
                "group.consumer.heartbeat.interval.ms": "1000",
                "group.consumer.min.heartbeat.interval.ms": "100",
            },
            "group.consumer.heartbeat.interval.ms must be less than "
            "group.consumer.session.timeout.ms",
        ),
        ({"group.consumer.assignors": "sticky"}, "Class sticky cannot be found"),
        ({"group.consumer.migration.policy": "sideways"}, "String must be one of"),
    ],
)
def test_consumer_group_settings_are_checked_as_kafka(
    overrides: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        cfg(overrides)


def test_consumer_group_settings() -> None:
    c = cfg(
        {
            "group.consumer.session.timeout.ms": "3000",
            "group.consumer.min.session.timeout.ms": "1000",
            "group.consumer.heartbeat.interval.ms": "300",
            "group.consumer.min.heartbeat.interval.ms": "100",
            "group.consumer.assignors": " range , uniform",
            "group.consumer.migration.policy": "DISABLED",
        }
    )
    assert (c.group_consumer_session_timeout_ms, c.group_consumer_heartbeat_interval_ms) == (
        3000,
        300,
    )
    assert c.group_consumer_assignors == "range,uniform"
    assert c.group_consumer_migration_policy == "disabled"


# --------------------------------------------------------- socket-server resource limits


def test_socket_server_limits() -> None:
    c = cfg(
        {
            "max.connections": "100",
            "max.connections.per.ip": "0",
            "max.connections.per.ip.overrides": " 127.0.0.1:5 , broker.example:2,::1:7 ",
            "connections.max.idle.ms": "1500",
            "queued.max.requests": "7",
            "queued.max.request.bytes": "104857600",
        }
    )
    assert (c.max_connections, c.max_connections_per_ip) == (100, 0)
    # The last ':' splits, so IPv6 literals need no brackets (Kafka's parseCsvMap).
    assert dict(c.max_connections_per_ip_overrides) == {
        "127.0.0.1": 5,
        "broker.example": 2,
        "::1": 7,
    }
    assert (c.connections_max_idle_ms, c.queued_max_requests) == (1500, 7)
    assert c.queued_max_request_bytes == 104_857_600
    entry = {e.name: e for e in c.describe()}["max.connections.per.ip.overrides"]
    assert (entry.value, entry.source) == ("127.0.0.1:5 , broker.example:2,::1:7", "static")


def test_socket_server_limit_keys_are_typed_not_just_known() -> None:
    for key in (
        "max.connections",
        "max.connections.per.ip",
        "max.connections.per.ip.overrides",
        "queued.max.request.bytes",
        "connection.failed.authentication.delay.ms",
    ):
        assert key in BROKER_CONFIGS and key not in bc.KNOWN_KAFKA_KEYS


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"max.connections": "-1"}, "Value must be at least 0"),
        ({"max.connections.per.ip": "-1"}, "Value must be at least 0"),
        (
            {"max.connections.per.ip": "0"},
            "max.connections.per.ip can be set to zero only if "
            "max.connections.per.ip.overrides property is set",
        ),
        (
            {"max.connections.per.ip.overrides": "127.0.0.1:not_a_number"},
            "Not a number of type INT",
        ),
        ({"max.connections.per.ip.overrides": "127.0.0.1"}, "Expected host:count"),
        (
            {"max.connections.per.ip.overrides": "bad/host:3,ok:1"},
            "contains invalid addresses : bad/host",
        ),
        ({"queued.max.requests": "0"}, "Value must be at least 1"),
        ({"queued.max.request.bytes": "x"}, "Not a number of type LONG"),
        (
            {"queued.max.request.bytes": "1000", "socket.request.max.bytes": "1001"},
            "queued.max.request.bytes must be larger or equal to socket.request.max.bytes",
        ),
        ({"connections.max.idle.ms": "abc"}, "Not a number of type LONG"),
        (
            {"connections.max.idle.ms": "100"},
            "connection.failed.authentication.delay.ms=100 should always be less than "
            "connections.max.idle.ms=100",
        ),
    ],
)
def test_socket_server_limits_are_checked_as_kafka(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        cfg(overrides)


@pytest.mark.parametrize(
    "overrides",
    [
        {"queued.max.request.bytes": "0"},  # 0 or negative: no pool
        {"queued.max.request.bytes": "1000", "socket.request.max.bytes": "1000"},
        {"connections.max.idle.ms": "-1"},  # never expire: the delay rule does not apply
        {"connections.max.idle.ms": "50", "connection.failed.authentication.delay.ms": "0"},
        {"max.connections.per.ip": "0", "max.connections.per.ip.overrides": "10.0.0.1:3"},
    ],
)
def test_socket_server_limits_kafka_accepts(overrides: dict[str, str]) -> None:
    cfg(overrides)
