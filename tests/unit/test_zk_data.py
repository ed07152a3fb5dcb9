"""zk_data: Kafka's znode JSON, byte for byte where Kafka's output is fixed.

Vectors come from Kafka 3.x: ZkData.scala encoders (key order as Jackson writes Scala's
hash maps), BrokerEndPointTest's registrations (v1..v5, future versions) and UuidTest.
"""

from __future__ import annotations

import json
import uuid

import pytest

from pybroker.replication import zk_data as zd
from pybroker.replication.zk_data import (
    BrokerEndpoint,
    BrokerRegistration,
    ControllerZnode,
    PartitionStateZnode,
    ProducerIdBlock,
    TopicAssignment,
    ZkDataError,
)

# ------------------------------------------------------------------------------------- paths


def test_paths_are_kafkas():
    assert zd.broker_path(3) == "/brokers/ids/3"
    assert zd.topic_path("t") == "/brokers/topics/t"
    assert zd.partition_state_path("t", 7) == "/brokers/topics/t/partitions/7/state"
    assert zd.topic_config_path("t") == "/config/topics/t"
    assert zd.delete_topic_path("t") == "/admin/delete_topics/t"
    assert zd.isr_change_path() == "/isr_change_notification/isr_change_"
    assert zd.isr_change_path("0000000003") == "/isr_change_notification/isr_change_0000000003"
    assert zd.config_change_path() == "/config/changes/config_change_"
    assert zd.sequence_number("isr_change_0000000012", zd.ISR_CHANGE_PREFIX) == "0000000012"
    assert zd.parse_partition_state_path("/brokers/topics/a.b/partitions/12/state") == ("a.b", 12)
    assert zd.parse_partition_state_path("/brokers/topics/a/partitions/01/state") is None
    assert zd.parse_partition_state_path("/brokers/topics/a") is None


def test_persistent_paths_match_zkdata():
    assert zd.PERSISTENT_PATHS == (
        "/consumers",
        "/brokers/ids",
        "/brokers/topics",
        "/config/changes",
        "/admin/delete_topics",
        "/brokers/seqid",
        "/isr_change_notification",
        "/latest_producer_id_block",
        "/log_dir_event_notification",
        "/config/topics",
        "/config/clients",
        "/config/users",
        "/config/brokers",
        "/config/ips",
    )


@pytest.mark.parametrize("bad", ["", "a/b", ".", ".."])
def test_path_helpers_refuse_names_that_escape(bad):
    with pytest.raises(ZkDataError):
        zd.topic_path(bad)


# ------------------------------------------------------------------------------------- ids


def test_topic_id_is_kafka_uuid_string():
    assert zd.topic_id_to_str(uuid.UUID(int=0)) == "AAAAAAAAAAAAAAAAAAAAAA"
    assert zd.topic_id_to_str(uuid.UUID(int=1)) == "AAAAAAAAAAAAAAAAAAAAAQ"
    u = uuid.UUID("f7f41cb6-6f38-4a96-8b2c-ff1e8a1ad5b3")
    s = zd.topic_id_to_str(u)
    assert len(s) == 22 and "=" not in s and "+" not in s and "/" not in s
    assert zd.topic_id_from_str(s) == u
    # URL-safe alphabet: bytes 0xfb 0xff encode with '-' and '_'.
    u2 = uuid.UUID(bytes=b"\xfb\xff" * 8)
    assert zd.topic_id_from_str(zd.topic_id_to_str(u2)) == u2
    assert set(zd.topic_id_to_str(u2)) & set("-_")


@pytest.mark.parametrize("bad", ["", "AAAA", "AAAAAAAAAAAAAAAAAAAAA=", "AAAAAAAAAAAAAAAAAAAA+/", 7])
def test_topic_id_rejects_malformed(bad):
    with pytest.raises(ZkDataError):
        zd.topic_id_from_str(bad)


def test_new_ids():
    for _ in range(200):
        u = zd.new_kafka_uuid()
        assert not zd.topic_id_to_str(u).startswith("-")
        assert u.int > 1
    assert len(zd.new_cluster_id()) == 22


# ------------------------------------------------------------------------------------- cluster id


def test_cluster_id():
    raw = b'{"version":"1","id":"Rg2mIJ9tQTyNo-k1sFVUNw"}'
    assert zd.encode_cluster_id("Rg2mIJ9tQTyNo-k1sFVUNw") == raw
    assert zd.decode_cluster_id(raw) == "Rg2mIJ9tQTyNo-k1sFVUNw"
    assert zd.decode_cluster_id(b'{"id":"x","version":1,"extra":[]}') == "x"
    with pytest.raises(ZkDataError, match="/cluster/id"):
        zd.decode_cluster_id(b'{"version":"1"}')


# ------------------------------------------------------------------------------------- brokers

V5_AS_KAFKA_WRITES = (
    b'{"features":{},"listener_security_protocol_map":{"PLAINTEXT":"PLAINTEXT"},'
    b'"endpoints":["PLAINTEXT://localhost:9092"],"jmx_port":-1,"port":9092,'
    b'"host":"localhost","version":5,"timestamp":"1681234567890"}'
)


def test_broker_v5_encode_matches_kafka():
    reg = BrokerRegistration(
        broker_id=0,
        endpoints=(BrokerEndpoint("PLAINTEXT", "localhost", 9092),),
        timestamp_ms=1681234567890,
    )
    assert zd.encode_broker(reg) == V5_AS_KAFKA_WRITES
    assert zd.decode_broker(0, V5_AS_KAFKA_WRITES) == reg


def test_broker_round_trip_with_rack_features_and_listeners():
    reg = BrokerRegistration(
        broker_id=2,
        endpoints=(
            BrokerEndpoint("CLIENT", "host1", 9092, "SSL"),
            BrokerEndpoint("REPLICATION", "host1", 9093, "PLAINTEXT"),
            BrokerEndpoint("V6", "::1", 9094, "SASL_SSL"),
        ),
        rack="dc1",
        jmx_port=9999,
        timestamp_ms=5,
        features={"feature1": (1, 2)},
    )
    raw = zd.encode_broker(reg)
    obj = json.loads(raw)
    # Top-level host/port: the first PLAINTEXT endpoint (for old clients).
    assert (obj["host"], obj["port"]) == ("host1", 9093)
    assert obj["endpoints"] == [
        "CLIENT://host1:9092",
        "REPLICATION://host1:9093",
        "V6://[::1]:9094",
    ]
    assert obj["listener_security_protocol_map"] == {
        "CLIENT": "SSL",
        "REPLICATION": "PLAINTEXT",
        "V6": "SASL_SSL",
    }
    assert obj["features"] == {"feature1": {"min_version": 1, "max_version": 2}}
    assert obj["rack"] == "dc1" and obj["timestamp"] == "5" and obj["version"] == 5
    assert zd.decode_broker(2, raw) == reg


def test_broker_without_plaintext_has_null_host():
    reg = BrokerRegistration(1, (BrokerEndpoint("SSL", "h", 9093, "SSL"),))
    obj = json.loads(zd.encode_broker(reg))
    assert obj["host"] is None and obj["port"] == -1
    assert "rack" not in obj


# BrokerEndPointTest (Kafka 3.8) vectors.
def test_broker_decode_v1():
    raw = (
        b'{"jmx_port":-1,"timestamp":"1420485325400","host":"172.16.8.243","version":1,"port":9091}'
    )
    reg = zd.decode_broker(1, raw)
    assert reg.endpoint("PLAINTEXT") == BrokerEndpoint("PLAINTEXT", "172.16.8.243", 9091)
    assert reg.timestamp_ms == 1420485325400 and reg.version == 1


def test_broker_decode_future_version_ignores_unknown_keys():
    raw = b"""{
      "foo":"bar",
      "version":100,
      "host":"localhost",
      "port":9092,
      "jmx_port":9999,
      "timestamp":"1416974968782",
      "endpoints":["SSL://localhost:9093"]
    }"""
    reg = zd.decode_broker(1, raw)
    assert reg.endpoints == (BrokerEndpoint("SSL", "localhost", 9093, "SSL"),)


def test_broker_decode_v3_v4():
    v3 = b"""{"version":3,"host":"localhost","port":9092,"jmx_port":9999,
      "timestamp":"2233345666","endpoints":["PLAINTEXT://host1:9092", "SSL://host1:9093"],
      "rack":"dc1"}"""
    reg = zd.decode_broker(1, v3)
    assert reg.endpoint("SSL") == BrokerEndpoint("SSL", "host1", 9093, "SSL")
    assert reg.rack == "dc1"
    v4 = b"""{"version":4,"host":"localhost","port":9092,"jmx_port":9999,
      "timestamp":"2233345666","endpoints":["CLIENT://host1:9092", "REPLICATION://host1:9093"],
      "listener_security_protocol_map":{"CLIENT":"SSL", "REPLICATION":"PLAINTEXT"},
      "rack":null}"""
    reg = zd.decode_broker(1, v4)
    assert reg.endpoint("CLIENT") == BrokerEndpoint("CLIENT", "host1", 9092, "SSL")
    assert reg.rack is None and reg.features == {}


def test_broker_decode_v5_features():
    raw = b"""{"version":5,"host":"localhost","port":9092,"jmx_port":9999,
      "timestamp":"2233345666","endpoints":["CLIENT://host1:9092", "REPLICATION://host1:9093"],
      "listener_security_protocol_map":{"CLIENT":"SSL", "REPLICATION":"PLAINTEXT"},
      "rack":"dc1",
      "features": {"feature1": {"min_version": 1, "max_version": 2},
                   "feature2": {"min_version": 2, "max_version": 4}}}"""
    reg = zd.decode_broker(1, raw)
    assert reg.features == {"feature1": (1, 2), "feature2": (2, 4)}


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"[1,2]",
        b'{"version":5,"endpoints":["PLAINTEXT://h:1"]}',  # no jmx_port
        b'{"version":0,"jmx_port":-1}',
        b'{"version":5,"jmx_port":-1,"endpoints":"PLAINTEXT://h:1"}',
        b'{"version":5,"jmx_port":-1,"endpoints":["garbage"]}',
        b'{"version":5,"jmx_port":-1,"endpoints":["X://h:1"],'
        b'"listener_security_protocol_map":{"Y":"PLAINTEXT"}}',
        b'{"version":"5","jmx_port":-1,"endpoints":[]}',
        b'{"version":5,"jmx_port":-1,"endpoints":[],"timestamp":"soon"}',
    ],
)
def test_broker_decode_rejects_malformed(raw):
    with pytest.raises(ZkDataError, match="/brokers/ids/4"):
        zd.decode_broker(4, raw)


# ------------------------------------------------------------------------------------- topics


def test_topic_assignment_as_kafka_writes():
    tid = uuid.UUID(int=0x1234)
    a = TopicAssignment(
        "t", tid, {1: (2, 3, 1), 0: (1, 2, 3)}, adding={1: (4,)}, removing={1: (1,)}
    )
    raw = zd.encode_topic_assignment(a)
    assert raw == (
        b'{"partitions":{"0":[1,2,3],"1":[2,3,1]},"topic_id":"'
        + zd.topic_id_to_str(tid).encode()
        + b'","adding_replicas":{"1":[4]},"removing_replicas":{"1":[1]},"version":3}'
    )
    assert zd.decode_topic_assignment("t", raw, 4) == TopicAssignment(
        "t", tid, {0: (1, 2, 3), 1: (2, 3, 1)}, {1: (4,)}, {1: (1,)}, zk_version=4
    )


def test_topic_assignment_old_versions_and_no_id():
    v1 = b'{"version":1,"partitions":{"0":[0,1],"1":[1,0]}}'
    a = zd.decode_topic_assignment("x", v1)
    assert a.topic_id is None and a.partitions == {0: (0, 1), 1: (1, 0)}
    assert a.adding == {} and a.removing == {}
    raw = zd.encode_topic_assignment(a)
    assert json.loads(raw) == {
        "partitions": {"0": [0, 1], "1": [1, 0]},
        "adding_replicas": {},
        "removing_replicas": {},
        "version": 3,
    }


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b'{"version":3,"partitions":{"a":[1]}}',
        b'{"version":3,"partitions":{"0":[1,"2"]}}',
        b'{"version":3,"partitions":[[1]]}',
        b'{"version":3,"partitions":{"0":[1]},"topic_id":"short"}',
    ],
)
def test_topic_assignment_rejects_malformed(raw):
    with pytest.raises(ZkDataError, match="/brokers/topics/t"):
        zd.decode_topic_assignment("t", raw)


# -------------------------------------------------------------------------- partition state


def test_partition_state_as_kafka_writes():
    raw = b'{"controller_epoch":1,"leader":1,"version":1,"leader_epoch":0,"isr":[1,2,3]}'
    s = zd.decode_partition_state("t", 0, raw, zk_version=7)
    assert s == PartitionStateZnode(1, 0, (1, 2, 3), 1, zk_version=7)
    assert zd.encode_partition_state(s) == raw


def test_partition_state_leader_recovery_state_only_when_recovering():
    s = PartitionStateZnode(-1, 4, (2,), 3, leader_recovery_state=zd.LEADER_RECOVERING)
    raw = zd.encode_partition_state(s)
    assert json.loads(raw)["leader_recovery_state"] == 1
    assert zd.decode_partition_state("t", 0, raw) == s
    extra = b'{"controller_epoch":1,"leader":-1,"version":1,"leader_epoch":9,"isr":[],"x":1}'
    assert zd.decode_partition_state("t", 0, extra).isr == ()


@pytest.mark.parametrize(
    "raw",
    [
        b"{}",
        b'{"controller_epoch":1,"leader":1,"version":1,"isr":[1]}',
        b'{"controller_epoch":1,"leader":true,"version":1,"leader_epoch":0,"isr":[1]}',
        b'{"controller_epoch":1,"leader":1,"version":1,"leader_epoch":0,"isr":"1"}',
        b'{"controller_epoch":1,"leader":1,"version":1,"leader_epoch":0,"isr":[1],'
        b'"leader_recovery_state":7}',
        b"\xff\xfe",
    ],
)
def test_partition_state_rejects_malformed(raw):
    with pytest.raises(ZkDataError, match="partitions/0/state"):
        zd.decode_partition_state("t", 0, raw)


# ------------------------------------------------------------------------------------- controller


def test_controller_as_kafka_3_writes():
    raw = b'{"version":2,"brokerid":1,"timestamp":"1681234567890","kraftControllerEpoch":-1}'
    c = zd.decode_controller(raw)
    assert c == ControllerZnode(1, 1681234567890)
    assert zd.encode_controller(c) == raw


def test_controller_v1_and_malformed():
    c = zd.decode_controller(b'{"version":1,"brokerid":5,"timestamp":"1"}')
    assert c.broker_id == 5 and c.kraft_controller_epoch == -1 and c.version == 1
    with pytest.raises(ZkDataError, match="/controller"):
        zd.decode_controller(b'{"version":2}')
    with pytest.raises(ZkDataError):
        zd.decode_controller(b'{"version":2,"brokerid":"1"}')


def test_controller_epoch_is_a_plain_integer():
    assert zd.encode_controller_epoch(12) == b"12"
    assert zd.decode_controller_epoch(b"12") == 12
    for bad in (b"", b"1.5", b'{"epoch":1}', None):
        with pytest.raises(ZkDataError, match="/controller_epoch"):
            zd.decode_controller_epoch(bad)


# ------------------------------------------------------------------------------------- configs


def test_entity_config():
    raw = b'{"version":1,"config":{"cleanup.policy":"compact","retention.ms":"100"}}'
    cfg = zd.decode_entity_config(raw)
    assert cfg == {"cleanup.policy": "compact", "retention.ms": "100"}
    assert zd.encode_entity_config(cfg) == raw
    assert zd.encode_entity_config({}) == b'{"version":1,"config":{}}'
    assert zd.decode_entity_config(None) == {}
    assert zd.decode_entity_config(b'{"version":1}') == {}
    with pytest.raises(ZkDataError):
        zd.decode_entity_config(b'{"version":1,"config":{"a":1}}')


def test_config_change_notification():
    raw = b'{"version":2,"entity_path":"topics/foo"}'
    assert zd.encode_config_change("topics/foo") == raw
    assert zd.decode_config_change(raw) == "topics/foo"
    v1 = b'{"version":1,"entity_type":"topics","entity_name":"bar"}'
    assert zd.decode_config_change(v1) == "topics/bar"
    with pytest.raises(ZkDataError):
        zd.decode_config_change(b'{"version":2}')


# ------------------------------------------------------------------------------------- isr change


def test_isr_change_notification():
    raw = zd.encode_isr_change([("b", 1), ("a", 0), ("a", 0)])
    assert raw == (
        b'{"version":1,"partitions":[{"topic":"a","partition":0},{"topic":"b","partition":1}]}'
    )
    assert zd.decode_isr_change(raw) == {("a", 0), ("b", 1)}
    with pytest.raises(ZkDataError):
        zd.decode_isr_change(b'{"version":1,"partitions":[{"topic":"a"}]}')


# ------------------------------------------------------------------------------------- producer ids


def test_producer_id_block_as_kafka_writes():
    raw = b'{"version":1,"broker":0,"block_start":"0","block_end":"999"}'
    b = zd.decode_producer_id_block(raw)
    assert b == ProducerIdBlock(0, 0, 1000)
    assert (b.last_producer_id, b.next_block_first_id) == (999, 1000)
    assert zd.encode_producer_id_block(b) == raw
    big = ProducerIdBlock(3, 9_000_000_000_000, 1000)
    assert zd.decode_producer_id_block(zd.encode_producer_id_block(big)) == big


@pytest.mark.parametrize(
    "raw",
    [
        b'{"version":1,"broker":0,"block_start":"10","block_end":"9"}',
        b'{"version":1,"broker":0,"block_start":"x","block_end":"9"}',
        b'{"version":1,"block_start":"0","block_end":"9"}',
        b'{"version":1,"broker":0,"block_start":"0","block_end":"9223372036854775808"}',
    ],
)
def test_producer_id_block_rejects_malformed(raw):
    with pytest.raises(ZkDataError, match="/latest_producer_id_block"):
        zd.decode_producer_id_block(raw)


# ------------------------------------------------------------------------------------- config glue


def test_registration_and_client_from_broker_config():
    from pybroker.config.broker_config import BrokerConfig
    from pybroker.replication.zk_client import ZkClient

    cfg = BrokerConfig.from_properties(
        {
            "broker.id": "3",
            "zookeeper.connect": "zk1:2181,zk2:2181/kafka",
            "listeners": "PLAINTEXT://:9092,REPL://:9093",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,REPL:PLAINTEXT",
            "advertised.listeners": "PLAINTEXT://h3:9092,REPL://h3:9093",
            "broker.rack": "r2",
        }
    )
    reg = zd.registration_from_listeners(cfg.node_id, cfg.advertised_listeners, cfg.broker_rack)
    assert reg.endpoints == (
        BrokerEndpoint("PLAINTEXT", "h3", 9092),
        BrokerEndpoint("REPL", "h3", 9093),
    )
    assert (reg.broker_id, reg.rack) == (3, "r2")
    client = ZkClient.from_config(cfg)
    assert (client.connect.hosts, client.connect.chroot) == ("zk1:2181,zk2:2181", "/kafka")
    assert (client.session_timeout_ms, client.connection_timeout_ms) == (18000, 18000)
