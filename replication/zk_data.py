"""Kafka's ZooKeeper layout: znode paths and their JSON, encoded and decoded without I/O.

A copy of Kafka 3.x ``kafka.zk.ZkData`` (ZkData.scala) so that anyone who knows Kafka can
read a pybroker cluster with ``zkCli``: same paths, same keys, same value types (the
timestamps, block bounds and cluster-id version are JSON *strings*, as Kafka writes them).
JSON is written compactly (Jackson's output); decoders tolerate unknown keys, as Kafka's do,
and raise :class:`ZkDataError` naming the znode when a required field is missing or has the
wrong type. ``zk_version`` fields are the znode's ``Stat.version``, never part of the JSON.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pybroker.replication.producer_id_store import ProducerIdsBlock

TopicPartition = tuple[str, int]

# ----------------------------------------------------------------------------- paths

CLUSTER_PATH = "/cluster"
CLUSTER_ID_PATH = "/cluster/id"
BROKERS_PATH = "/brokers"
BROKER_IDS_PATH = "/brokers/ids"
TOPICS_PATH = "/brokers/topics"
BROKER_SEQID_PATH = "/brokers/seqid"
CONTROLLER_PATH = "/controller"
CONTROLLER_EPOCH_PATH = "/controller_epoch"
CONFIG_PATH = "/config"
CONFIG_CHANGES_PATH = "/config/changes"
CONFIG_CHANGE_PREFIX = "config_change_"
ADMIN_PATH = "/admin"
DELETE_TOPICS_PATH = "/admin/delete_topics"
ISR_CHANGE_PATH = "/isr_change_notification"
ISR_CHANGE_PREFIX = "isr_change_"
LOG_DIR_EVENT_PATH = "/log_dir_event_notification"
PRODUCER_ID_BLOCK_PATH = "/latest_producer_id_block"
CONSUMERS_PATH = "/consumers"
FEATURE_PATH = "/feature"

# Kafka's ConfigType.ALL (server-common ConfigType.java, 3.x).
CONFIG_TYPE_TOPIC = "topics"
CONFIG_TYPES = ("topics", "clients", "users", "brokers", "ips")

# ZkData.PersistentZkPaths: what KafkaZkClient.createTopLevelPaths makes sure exists.
PERSISTENT_PATHS: tuple[str, ...] = (
    CONSUMERS_PATH,
    BROKER_IDS_PATH,
    TOPICS_PATH,
    CONFIG_CHANGES_PATH,
    DELETE_TOPICS_PATH,
    BROKER_SEQID_PATH,
    ISR_CHANGE_PATH,
    PRODUCER_ID_BLOCK_PATH,
    LOG_DIR_EVENT_PATH,
    *(f"{CONFIG_PATH}/{t}" for t in CONFIG_TYPES),
)

# ZkVersion.MatchAnyVersion: a conditional write with this version matches any version.
MATCH_ANY_VERSION = -1


class ZkDataError(ValueError):
    """A znode's content is not what Kafka writes there (or a path/name is unusable)."""


def _name(value: str, what: str) -> str:
    if not value or "/" in value or value in (".", ".."):
        raise ZkDataError(f"illegal {what} for a znode path: {value!r}")
    return value


def broker_path(broker_id: int) -> str:
    return f"{BROKER_IDS_PATH}/{broker_id}"


def topic_path(topic: str) -> str:
    return f"{TOPICS_PATH}/{_name(topic, 'topic')}"


def topic_partitions_path(topic: str) -> str:
    return f"{topic_path(topic)}/partitions"


def topic_partition_path(topic: str, partition: int) -> str:
    return f"{topic_partitions_path(topic)}/{partition}"


def partition_state_path(topic: str, partition: int) -> str:
    return f"{topic_partition_path(topic, partition)}/state"


_STATE_PATH = re.compile(r"^/brokers/topics/([^/]+)/partitions/(0|[1-9][0-9]*)/state$")


def parse_partition_state_path(path: str) -> TopicPartition | None:
    """The partition a ``.../partitions/<p>/state`` path names, else None."""
    m = _STATE_PATH.match(path)
    return (m.group(1), int(m.group(2))) if m else None


def config_entity_path(entity_type: str, entity_name: str) -> str:
    return f"{CONFIG_PATH}/{_name(entity_type, 'config type')}/{_name(entity_name, 'entity')}"


def topic_config_path(topic: str) -> str:
    return config_entity_path(CONFIG_TYPE_TOPIC, topic)


def delete_topic_path(topic: str) -> str:
    return f"{DELETE_TOPICS_PATH}/{_name(topic, 'topic')}"


def isr_change_path(sequence_number: str = "") -> str:
    """IsrChangeNotificationSequenceZNode.path; "" gives the prefix to create sequentially."""
    return f"{ISR_CHANGE_PATH}/{ISR_CHANGE_PREFIX}{sequence_number}"


def config_change_path(sequence_number: str = "") -> str:
    return f"{CONFIG_CHANGES_PATH}/{CONFIG_CHANGE_PREFIX}{sequence_number}"


def sequence_number(name: str, prefix: str) -> str:
    """The 10-digit suffix of a sequential znode name or path (Kafka's sequenceNumber)."""
    i = name.rfind(prefix)
    if i < 0:
        raise ZkDataError(f"{name!r} is not a {prefix}<seq> znode")
    return name[i + len(prefix) :]


# ----------------------------------------------------------------------------- JSON helpers


def _dumps(obj: Any) -> bytes:
    """Jackson's compact output: no blanks, non-ASCII as UTF-8."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _loads(data: bytes | None, what: str) -> dict[str, Any]:
    if not data:
        raise ZkDataError(f"{what}: znode has no data")
    try:
        obj = json.loads(bytes(data).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ZkDataError(f"{what}: not JSON ({e}): {bytes(data)[:200]!r}") from None
    if not isinstance(obj, dict):
        raise ZkDataError(f"{what}: expected a JSON object: {bytes(data)[:200]!r}")
    return obj


def _get(obj: Mapping[str, Any], key: str, what: str) -> Any:
    try:
        return obj[key]
    except KeyError:
        raise ZkDataError(f"{what}: missing field {key!r}") from None


def _int(value: Any, what: str, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ZkDataError(f"{what}: field {key!r} must be an integer, got {value!r}")
    return value


def _str(value: Any, what: str, key: str) -> str:
    if not isinstance(value, str):
        raise ZkDataError(f"{what}: field {key!r} must be a string, got {value!r}")
    return value


def _long_str(value: Any, what: str, key: str) -> int:
    """A long Kafka writes as a JSON string ("timestamp", "block_start"); numbers tolerated."""
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value):
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ZkDataError(f"{what}: field {key!r} must be a decimal string, got {value!r}")


def _int_list(value: Any, what: str, key: str) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise ZkDataError(f"{what}: field {key!r} must be a list of integers, got {value!r}")
    return tuple(_int(v, what, key) for v in value)


def _obj(value: Any, what: str, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ZkDataError(f"{what}: field {key!r} must be an object, got {value!r}")
    return value


# ----------------------------------------------------------------------------- ids


def topic_id_to_str(topic_id: uuid.UUID) -> str:
    """Kafka's Uuid.toString: URL-safe base64 of the 16 bytes, without padding."""
    return base64.urlsafe_b64encode(topic_id.bytes).rstrip(b"=").decode("ascii")


def topic_id_from_str(value: str) -> uuid.UUID:
    """Kafka's Uuid.fromString; raises ZkDataError unless it is 16 bytes of URL-safe base64."""
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_-]{22}", value):
        raise ZkDataError(f"not a Kafka Uuid string: {value!r}")
    try:
        raw = base64.b64decode(value + "==", altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise ZkDataError(f"not a Kafka Uuid string: {value!r}") from None
    return uuid.UUID(bytes=raw)


_ZERO_UUID = uuid.UUID(int=0)
_METADATA_TOPIC_ID = uuid.UUID(int=1)


def new_kafka_uuid() -> uuid.UUID:
    """Kafka's Uuid.randomUuid: never ZERO, METADATA_TOPIC_ID, or a string starting with '-'."""
    while True:
        u = uuid.uuid4()
        if u not in (_ZERO_UUID, _METADATA_TOPIC_ID) and not topic_id_to_str(u).startswith("-"):
            return u


def new_cluster_id() -> str:
    """Kafka's CoreUtils.generateUuidAsBase64: a random Uuid as its 22-character string."""
    return topic_id_to_str(new_kafka_uuid())


# ----------------------------------------------------------------------------- /cluster/id


def encode_cluster_id(cluster_id: str) -> bytes:
    """ClusterIdZNode.toJson: note "version" is the string "1"."""
    return _dumps({"version": "1", "id": cluster_id})


def decode_cluster_id(data: bytes | None) -> str:
    obj = _loads(data, CLUSTER_ID_PATH)
    return _str(_get(obj, "id", CLUSTER_ID_PATH), CLUSTER_ID_PATH, "id")


# ----------------------------------------------------------------------------- /brokers/ids/<id>

# Kafka's EndPoint.uriParseExp (connection string of one advertised endpoint).
_ENDPOINT = re.compile(r"^(.*)://\[?([0-9a-zA-Z\-%._:]*)\]?:(-?[0-9]+)$")
SECURITY_PROTOCOLS = frozenset({"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"})


@dataclass(frozen=True, slots=True)
class BrokerEndpoint:
    """One advertised endpoint (Kafka's EndPoint); host "" is Kafka's null host."""

    listener_name: str
    host: str
    port: int
    security_protocol: str = "PLAINTEXT"

    @property
    def connection_string(self) -> str:
        """EndPoint.connectionString: ``NAME://host:port``, IPv6 hosts in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.listener_name}://{host}:{self.port}"


def parse_endpoint(
    connection_string: str, protocol_map: Mapping[str, str] | None, what: str = "endpoint"
) -> BrokerEndpoint:
    """EndPoint.createEndPoint: without a map the listener name *is* the security protocol."""
    m = _ENDPOINT.match(connection_string)
    if not m:
        raise ZkDataError(f"{what}: unable to parse {connection_string!r} to a broker endpoint")
    name, host, port = m.group(1), m.group(2), int(m.group(3))
    if protocol_map is None:
        protocol = name.upper()
    else:
        protocol = protocol_map.get(name, "")
        if not protocol:
            raise ZkDataError(f"{what}: no security protocol for listener {name!r}")
    if protocol not in SECURITY_PROTOCOLS:
        raise ZkDataError(f"{what}: unknown security protocol {protocol!r}")
    return BrokerEndpoint(name, host, port, protocol)


@dataclass(frozen=True, slots=True)
class BrokerRegistration:
    """The ephemeral ``/brokers/ids/<id>`` znode (Kafka's BrokerInfo, JSON version 5).

    ``features`` maps a feature name to its supported (min_version, max_version); a Kafka
    3.x ZooKeeper-mode broker registers none. ``epoch`` is the znode's czxid (Kafka's broker
    epoch) when read back from ZooKeeper, -1 otherwise; it is not part of the JSON.
    """

    broker_id: int
    endpoints: tuple[BrokerEndpoint, ...]
    rack: str | None = None
    jmx_port: int = -1
    timestamp_ms: int = 0
    features: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    version: int = 5
    epoch: int = -1

    def endpoint(self, listener_name: str) -> BrokerEndpoint | None:
        for ep in self.endpoints:
            if ep.listener_name == listener_name:
                return ep
        return None


class _ListenerLike(Protocol):
    name: str
    host: str
    port: int
    security_protocol: str


def registration_from_listeners(
    broker_id: int, advertised: Iterable[_ListenerLike], rack: str | None = None
) -> BrokerRegistration:
    """A registration from ``config.broker_config.Listener``s (ports already bound, not 0)."""
    endpoints = tuple(
        BrokerEndpoint(x.name, x.host, x.port, x.security_protocol) for x in advertised
    )
    return BrokerRegistration(broker_id, endpoints, rack=rack)


def encode_broker(reg: BrokerRegistration) -> bytes:
    """BrokerIdZNode.encode (v5): top-level host/port are the first PLAINTEXT endpoint."""
    plaintext = next((e for e in reg.endpoints if e.security_protocol == "PLAINTEXT"), None)
    obj: dict[str, Any] = {
        "features": {
            name: {"min_version": lo, "max_version": hi}
            for name, (lo, hi) in sorted(reg.features.items())
        },
        "listener_security_protocol_map": {
            e.listener_name: e.security_protocol for e in reg.endpoints
        },
        "endpoints": [e.connection_string for e in reg.endpoints],
        "jmx_port": reg.jmx_port,
    }
    if reg.rack is not None:
        obj["rack"] = reg.rack
    obj["port"] = plaintext.port if plaintext else -1
    obj["host"] = (plaintext.host or None) if plaintext else None
    obj["version"] = 5
    obj["timestamp"] = str(reg.timestamp_ms)
    return _dumps(obj)


def decode_broker(broker_id: int, data: bytes | None) -> BrokerRegistration:
    """BrokerIdZNode.decode: versions 1..5 and future versions (extra keys ignored)."""
    what = broker_path(broker_id)
    obj = _loads(data, what)
    version = _int(_get(obj, "version", what), what, "version")
    jmx_port = _int(_get(obj, "jmx_port", what), what, "jmx_port")
    if version < 1:
        raise ZkDataError(f"{what}: unsupported version of broker registration: {version}")
    if version == 1:
        host = _str(_get(obj, "host", what), what, "host")
        port = _int(_get(obj, "port", what), what, "port")
        endpoints: tuple[BrokerEndpoint, ...] = (BrokerEndpoint("PLAINTEXT", host, port),)
    else:
        raw_map = obj.get("listener_security_protocol_map")
        protocol_map = None
        if raw_map is not None:
            raw_map = _obj(raw_map, what, "listener_security_protocol_map")
            protocol_map = {
                k: _str(v, what, "listener_security_protocol_map") for k, v in raw_map.items()
            }
        raw_eps = _get(obj, "endpoints", what)
        if not isinstance(raw_eps, list):
            raise ZkDataError(f"{what}: field 'endpoints' must be a list, got {raw_eps!r}")
        endpoints = tuple(
            parse_endpoint(_str(e, what, "endpoints"), protocol_map, what) for e in raw_eps
        )
    rack = obj.get("rack")
    if rack is not None:
        rack = _str(rack, what, "rack")
    features: dict[str, tuple[int, int]] = {}
    raw_features = obj.get("features")
    if raw_features is not None:
        for name, rng in _obj(raw_features, what, "features").items():
            rng = _obj(rng, what, f"features.{name}")
            features[name] = (
                _int(_get(rng, "min_version", what), what, "min_version"),
                _int(_get(rng, "max_version", what), what, "max_version"),
            )
    ts = obj.get("timestamp")
    return BrokerRegistration(
        broker_id=broker_id,
        endpoints=endpoints,
        rack=rack,
        jmx_port=jmx_port,
        timestamp_ms=_long_str(ts, what, "timestamp") if ts is not None else 0,
        features=features,
        version=version,
    )


# ----------------------------------------------------------------------------- /brokers/topics/<t>


@dataclass(frozen=True, slots=True)
class TopicAssignment:
    """``/brokers/topics/<topic>`` (TopicZNode, version 3): replicas per partition.

    ``adding``/``removing`` hold only partitions with a reassignment in progress.
    """

    topic: str
    topic_id: uuid.UUID | None
    partitions: Mapping[int, tuple[int, ...]]
    adding: Mapping[int, tuple[int, ...]] = field(default_factory=dict)
    removing: Mapping[int, tuple[int, ...]] = field(default_factory=dict)
    zk_version: int = -1


def _partition_map(assign: Mapping[int, Iterable[int]]) -> dict[str, list[int]]:
    return {str(p): list(assign[p]) for p in sorted(assign)}


def encode_topic_assignment(a: TopicAssignment) -> bytes:
    """TopicZNode.encode; empty adding/removing maps are written as ``{}``."""
    obj: dict[str, Any] = {
        "partitions": _partition_map(a.partitions),
    }
    if a.topic_id is not None:
        obj["topic_id"] = topic_id_to_str(a.topic_id)
    obj["adding_replicas"] = _partition_map({p: r for p, r in a.adding.items() if r})
    obj["removing_replicas"] = _partition_map({p: r for p, r in a.removing.items() if r})
    obj["version"] = 3
    return _dumps(obj)


def _decode_partition_map(raw: Any, what: str, key: str) -> dict[int, tuple[int, ...]]:
    result: dict[int, tuple[int, ...]] = {}
    for p, replicas in _obj(raw, what, key).items():
        if not re.fullmatch(r"0|[1-9][0-9]*", p):
            raise ZkDataError(f"{what}: {key} has a non-partition key {p!r}")
        result[int(p)] = _int_list(replicas, what, f"{key}.{p}")
    return result


def decode_topic_assignment(
    topic: str, data: bytes | None, zk_version: int = -1
) -> TopicAssignment:
    """TopicZNode.decode: versions 1..3 (topic_id and adding/removing are optional)."""
    what = topic_path(topic)
    obj = _loads(data, what)
    raw_id = obj.get("topic_id")
    topic_id = None
    if raw_id is not None:
        try:
            topic_id = topic_id_from_str(raw_id)
        except ZkDataError as e:
            raise ZkDataError(f"{what}: bad topic_id: {e}") from None
    empty: dict[str, Any] = {}
    return TopicAssignment(
        topic=topic,
        topic_id=topic_id,
        partitions=_decode_partition_map(obj.get("partitions", empty), what, "partitions"),
        adding=_decode_partition_map(obj.get("adding_replicas", empty), what, "adding_replicas"),
        removing=_decode_partition_map(
            obj.get("removing_replicas", empty), what, "removing_replicas"
        ),
        zk_version=zk_version,
    )


# ----------------------------------------------- /brokers/topics/<t>/partitions/<p>/state

LEADER_RECOVERED = 0  # LeaderRecoveryState.RECOVERED
LEADER_RECOVERING = 1  # LeaderRecoveryState.RECOVERING
NO_LEADER = -1  # LeaderAndIsr.NoLeader


@dataclass(frozen=True, slots=True)
class PartitionStateZnode:
    """TopicPartitionStateZNode: Kafka's LeaderIsrAndControllerEpoch plus the znode version.

    ``zk_version`` (Kafka's partitionEpoch) is what a conditional update must name.
    """

    leader: int
    leader_epoch: int
    isr: tuple[int, ...]
    controller_epoch: int
    zk_version: int = -1
    leader_recovery_state: int = LEADER_RECOVERED


def encode_partition_state(s: PartitionStateZnode) -> bytes:
    """Version 1; leader_recovery_state only when not RECOVERED, as Kafka 3.x writes it."""
    obj: dict[str, Any] = {
        "controller_epoch": s.controller_epoch,
        "leader": s.leader,
        "version": 1,
        "leader_epoch": s.leader_epoch,
        "isr": list(s.isr),
    }
    if s.leader_recovery_state != LEADER_RECOVERED:
        obj["leader_recovery_state"] = s.leader_recovery_state
    return _dumps(obj)


def decode_partition_state(
    topic: str, partition: int, data: bytes | None, zk_version: int = -1
) -> PartitionStateZnode:
    what = partition_state_path(topic, partition)
    obj = _loads(data, what)
    recovery = obj.get("leader_recovery_state", LEADER_RECOVERED)
    recovery = _int(recovery, what, "leader_recovery_state")
    if recovery not in (LEADER_RECOVERED, LEADER_RECOVERING):
        raise ZkDataError(f"{what}: unknown leader_recovery_state {recovery}")
    return PartitionStateZnode(
        leader=_int(_get(obj, "leader", what), what, "leader"),
        leader_epoch=_int(_get(obj, "leader_epoch", what), what, "leader_epoch"),
        isr=_int_list(_get(obj, "isr", what), what, "isr"),
        controller_epoch=_int(_get(obj, "controller_epoch", what), what, "controller_epoch"),
        zk_version=zk_version,
        leader_recovery_state=recovery,
    )


# ----------------------------------------------------------------------------- /controller


@dataclass(frozen=True, slots=True)
class ControllerZnode:
    """The ephemeral ``/controller`` znode (ControllerZNode, version 2 in Kafka 3.x).

    A ZooKeeper-mode controller writes kraftControllerEpoch -1; a version-1 znode has none.
    """

    broker_id: int
    timestamp_ms: int = 0
    kraft_controller_epoch: int = -1
    version: int = 2


def encode_controller(c: ControllerZnode) -> bytes:
    return _dumps(
        {
            "version": 2,
            "brokerid": c.broker_id,
            "timestamp": str(c.timestamp_ms),
            "kraftControllerEpoch": c.kraft_controller_epoch,
        }
    )


def decode_controller(data: bytes | None) -> ControllerZnode:
    what = CONTROLLER_PATH
    obj = _loads(data, what)
    ts = obj.get("timestamp")
    kraft = obj.get("kraftControllerEpoch", -1)
    version = obj.get("version", 1)
    return ControllerZnode(
        broker_id=_int(_get(obj, "brokerid", what), what, "brokerid"),
        timestamp_ms=_long_str(ts, what, "timestamp") if ts is not None else 0,
        kraft_controller_epoch=_int(kraft, what, "kraftControllerEpoch"),
        version=_int(version, what, "version"),
    )


def encode_controller_epoch(epoch: int) -> bytes:
    """ControllerEpochZNode: the epoch as a plain decimal string, not JSON."""
    return str(epoch).encode("ascii")


def decode_controller_epoch(data: bytes | None) -> int:
    text = bytes(data or b"").decode("utf-8", "replace")
    if not re.fullmatch(r"-?[0-9]+", text):
        raise ZkDataError(f"{CONTROLLER_EPOCH_PATH}: not an integer: {text[:50]!r}")
    return int(text)


# ----------------------------------------------------------------------------- /config


def encode_entity_config(config: Mapping[str, str]) -> bytes:
    """ConfigEntityZNode.encode: ``{"version":1,"config":{...}}``, every value a string."""
    return _dumps({"version": 1, "config": {k: str(v) for k, v in config.items()}})


def decode_entity_config(data: bytes | None, what: str = "config") -> dict[str, str]:
    """ConfigEntityZNode.decode: no data means no overrides, as in Kafka."""
    if not data:
        return {}
    obj = _loads(data, what)
    config = obj.get("config")
    if config is None:
        return {}
    return {k: _str(v, what, f"config.{k}") for k, v in _obj(config, what, "config").items()}


def encode_config_change(entity_path: str) -> bytes:
    """ConfigEntityChangeNotificationSequenceZNode (v2), e.g. entity_path "topics/foo"."""
    return _dumps({"version": 2, "entity_path": entity_path})


def decode_config_change(data: bytes | None) -> str:
    """The changed entity path; version 1 (entity_type + entity_name) is accepted too."""
    what = CONFIG_CHANGES_PATH
    obj = _loads(data, what)
    version = _int(_get(obj, "version", what), what, "version")
    if version == 1:
        etype = _str(_get(obj, "entity_type", what), what, "entity_type")
        name = _str(_get(obj, "entity_name", what), what, "entity_name")
        return f"{etype}/{name}"
    return _str(_get(obj, "entity_path", what), what, "entity_path")


# ------------------------------------------------------------ /isr_change_notification


def encode_isr_change(partitions: Iterable[TopicPartition]) -> bytes:
    """IsrChangeNotificationSequenceZNode.encode (IsrChangeNotificationHandler.Version = 1)."""
    items = [{"topic": t, "partition": p} for t, p in sorted(set(partitions))]
    return _dumps({"version": 1, "partitions": items})


def decode_isr_change(data: bytes | None) -> frozenset[TopicPartition]:
    what = ISR_CHANGE_PATH
    obj = _loads(data, what)
    raw = _get(obj, "partitions", what)
    if not isinstance(raw, list):
        raise ZkDataError(f"{what}: field 'partitions' must be a list, got {raw!r}")
    result = set()
    for item in raw:
        item = _obj(item, what, "partitions[]")
        topic = _str(_get(item, "topic", what), what, "topic")
        result.add((topic, _int(_get(item, "partition", what), what, "partition")))
    return frozenset(result)


# ----------------------------------------------------------- /latest_producer_id_block

PRODUCER_ID_BLOCK_SIZE = 1000  # ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE
_LONG_MAX = (1 << 63) - 1


# One block type for the local file store and ZooKeeper (Kafka's ProducerIdsBlock).
ProducerIdBlock = ProducerIdsBlock


def encode_producer_id_block(b: ProducerIdBlock) -> bytes:
    """generateProducerIdBlockJson: block bounds are decimal *strings*."""
    return _dumps(
        {
            "version": 1,
            "broker": b.assigned_broker_id,
            "block_start": str(b.first_producer_id),
            "block_end": str(b.last_producer_id),
        }
    )


def decode_producer_id_block(data: bytes | None) -> ProducerIdBlock:
    what = PRODUCER_ID_BLOCK_PATH
    obj = _loads(data, what)
    broker = _int(_get(obj, "broker", what), what, "broker")
    start = _long_str(_get(obj, "block_start", what), what, "block_start")
    end = _long_str(_get(obj, "block_end", what), what, "block_end")
    if not 0 <= start <= end <= _LONG_MAX:
        raise ZkDataError(f"{what}: bad block bounds {start}..{end}")
    return ProducerIdBlock(broker, start, end - start + 1)
