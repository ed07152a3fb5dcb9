"""Broker configuration: Kafka's ``server.properties`` keys, typed and validated once.

``BrokerConfig.from_properties(props, overrides)`` does what ``KafkaConfig.fromProps`` does:
overrides win over the file, every key we use is parsed with Kafka's type, default and
range (errors are Kafka's ``ConfigException`` text naming the key), and the cross-key
rules that make Kafka refuse to start make us refuse too. Names, defaults and rules follow
Kafka 4.x (``KafkaConfig``, ``SocketServerConfigs``, ``ListenerInfo``); where pybroker
differs (ZooKeeper mode, no KRaft controller, no GSSAPI) the docstrings say so.

Keys fall in three groups:

- typed keys (``BROKER_CONFIG_DEFS``): parsed, validated, exposed as fields and in
  ``describe()``; some of them (thread counts, ...) are accepted without effect;
- other keys Kafka knows (``is_known_key``): accepted without effect and without a warning;
- anything else: listed in ``BrokerConfig.ignored`` for the caller to log as ignored.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from .properties import load_properties
from .topic_config import (
    INT_MAX,
    LONG_MAX,
    TOPIC_CONFIG_DEFS,
    ConfigDef,
    ConfigError,
    parse_bool,
    parse_float,
    parse_int,
    to_config_string,
)

SHORT_MAX = 2**15 - 1
MS_PER_MINUTE = 60_000
MS_PER_HOUR = 3_600_000

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SUPPORTED_SECURITY_PROTOCOLS = frozenset({"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"})
# Kafka 4.x documents the default map in this order.
DEFAULT_SECURITY_PROTOCOL_MAP = (
    "SASL_SSL:SASL_SSL,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT"
)
DEFAULT_LISTENERS = "PLAINTEXT://:9092"
DEFAULT_LOG_DIR = "/tmp/kafka-logs"


# --------------------------------------------------------------------------- parsers


def _int(lo: int = -(2**31), hi: int = INT_MAX) -> Callable[[str, str], int]:
    return lambda key, raw: parse_int(key, raw, lo, hi, "INT")


def _long(lo: int = -(2**63), hi: int = LONG_MAX) -> Callable[[str, str], int]:
    return lambda key, raw: parse_int(key, raw, lo, hi, "LONG")


def _short(lo: int = -(2**15), hi: int = SHORT_MAX) -> Callable[[str, str], int]:
    return lambda key, raw: parse_int(key, raw, lo, hi, "SHORT")


def _double(lo: float = -sys.float_info.max, hi: float = sys.float_info.max) -> Callable:
    return lambda key, raw: parse_float(key, raw, lo, hi)


def _string(key: str, raw: str) -> str:
    """Kafka trims every STRING value."""
    return raw.strip()


def _http_listener(key: str, raw: str) -> str:
    """``http://host:port`` (host may be empty or a [v6] literal) or empty for off."""
    value = raw.strip()
    if not value:
        return ""
    scheme, sep, rest = value.partition("://")
    host, colon, port = rest.rpartition(":")
    if scheme.lower() != "http" or not sep or not colon or not port.isdigit():
        raise ConfigError(key, raw, "Expected http://host:port, or empty to turn it off")
    if not 0 <= int(port) <= 65535 or "/" in host:
        raise ConfigError(key, raw, "Expected http://host:port, or empty to turn it off")
    return value


# replica.selector.class values (KIP-392); Kafka loads the class, we know these two.
RACK_AWARE_REPLICA_SELECTOR = "org.apache.kafka.common.replica.RackAwareReplicaSelector"
LEADER_REPLICA_SELECTOR = "org.apache.kafka.common.replica.LeaderSelector"


# authorizer.class.name values: Kafka's two ACL authorizers (both mean the same here).
AUTHORIZER_CLASSES = (
    "kafka.security.authorizer.AclAuthorizer",
    "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
)


def _authorizer_class(key: str, raw: str) -> str:
    value = raw.strip()
    if value and value not in AUTHORIZER_CLASSES:
        raise ConfigError(
            key,
            raw,
            f"Class {value} cannot be found: pybroker offers {' and '.join(AUTHORIZER_CLASSES)}",
        )
    return value


def _ssl_client_auth(key: str, raw: str) -> str:
    value = raw.strip().lower()
    if value not in ("required", "requested", "none"):
        raise ConfigError(key, raw, "String must be one of: required, requested, none")
    return value


def _replica_selector(key: str, raw: str) -> str:
    value = raw.strip()
    if value not in (RACK_AWARE_REPLICA_SELECTOR, LEADER_REPLICA_SELECTOR):
        raise ConfigError(
            key,
            raw,
            f"Class {value} cannot be found: pybroker offers {RACK_AWARE_REPLICA_SELECTOR} "
            f"and {LEADER_REPLICA_SELECTOR}",
        )
    return value


def _def(
    name: str, type_: str, default: Any, parse: Callable[[str, str], Any], doc: str = ""
) -> ConfigDef:
    return ConfigDef(name, type_, default, parse, None, False, doc)


# ----------------------------------------------------------------- the typed keys

CONSUMER_GROUP_ASSIGNOR_CLASSES = (
    "org.apache.kafka.coordinator.group.assignor.UniformAssignor",
    "org.apache.kafka.coordinator.group.assignor.RangeAssignor",
)
_ASSIGNOR_NAMES = {
    "uniform": "uniform",
    "range": "range",
    CONSUMER_GROUP_ASSIGNOR_CLASSES[0]: "uniform",
    CONSUMER_GROUP_ASSIGNOR_CLASSES[1]: "range",
}


# Broker keys whose meaning is "topic default" but whose broker-level rules differ from the
# topic key's (null default, precedence over a synonym), defined by hand below.
_SPECIAL_TOPIC_BROKER_KEYS = frozenset(
    {"log.retention.ms", "log.roll.ms", "log.roll.jitter.ms", "log.flush.interval.ms"}
)

_BROKER_DEFS: list[ConfigDef] = [
    # Identity and cluster mode.
    _def("node.id", "int", None, _int(0), "This node's id; broker.id is its synonym."),
    _def("broker.id", "int", -1, _int(), "Synonym of node.id; -1 = unset."),
    _def(
        "cluster.id",
        "string",
        None,
        _string,
        "pybroker: cluster id to report; unset = the metadata store picks and keeps one.",
    ),
    _def("broker.rack", "string", None, _string, "Rack of this broker, reported in Metadata."),
    # ACLs (issue 12): an empty class name = no authorizer, everyone may do everything.
    _def("authorizer.class.name", "string", "", _authorizer_class, "The ACL authorizer."),
    _def("super.users", "list", "", _string, "Principals allowed everything (a;b)."),
    _def("allow.everyone.if.no.acl.found", "boolean", False, parse_bool),
    _def(
        "replica.selector.class",
        "class",
        None,
        _replica_selector,
        "Unset = consumers read from leaders; the rack-aware selector sends a consumer with "
        "client.rack to an in-sync follower in its rack (KIP-392).",
    ),
    _def(
        "zookeeper.connect",
        "string",
        None,
        _string,
        "ZooKeeper connect string; unset or empty = single node, no ZooKeeper.",
    ),
    _def("zookeeper.session.timeout.ms", "int", 18_000, _int()),
    _def(
        "zookeeper.connection.timeout.ms",
        "int",
        None,
        _int(),
        "Unset = zookeeper.session.timeout.ms.",
    ),
    # Network.
    _def("listeners", "string", DEFAULT_LISTENERS, _string),
    _def("advertised.listeners", "string", None, _string, "Unset = listeners."),
    _def("listener.security.protocol.map", "string", DEFAULT_SECURITY_PROTOCOL_MAP, _string),
    _def(
        "inter.broker.listener.name",
        "string",
        None,
        _string,
        "Unset = the listener named after security.inter.broker.protocol.",
    ),
    _def("security.inter.broker.protocol", "string", "PLAINTEXT", _string),
    _def(
        "controller.listener.names",
        "string",
        None,
        _string,
        "KRaft controller listeners: pybroker has no KRaft controller and does not open them.",
    ),
    _def("socket.send.buffer.bytes", "int", 102_400, _int(), "SO_SNDBUF; -1 = OS default."),
    _def("socket.receive.buffer.bytes", "int", 102_400, _int(), "SO_RCVBUF; -1 = OS default."),
    _def("socket.request.max.bytes", "int", 104_857_600, _int(1)),
    _def("socket.listen.backlog.size", "int", 50, _int(1)),
    _def(
        "connections.max.idle.ms",
        "long",
        600_000,
        _long(),
        "Close a connection idle this long (nothing read or written, no request pending); "
        "negative = never.",
    ),
    _def(
        "connection.failed.authentication.delay.ms",
        "int",
        100,
        _int(0),
        "How long a SASL connection that failed authentication waits before its error "
        "answer is sent and it is closed.",
    ),
    _def(
        "connections.max.reauth.ms",
        "long",
        0,
        _long(),
        "SASL sessions expire after this long unless re-authenticated (KIP-368); 0 = never. "
        "listener.name.<l>.connections.max.reauth.ms overrides it.",
    ),
    _def(
        "sasl.enabled.mechanisms",
        "list",
        "GSSAPI",
        _string,
        "Mechanisms SASL listeners offer: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER "
        "(Kafka's default GSSAPI is not offered by pybroker).",
    ),
    _def(
        "sasl.server.max.receive.size",
        "int",
        524_288,
        _int(),
        "Largest request a SASL connection may send before it has authenticated.",
    ),
    _def(
        "sasl.mechanism.inter.broker.protocol",
        "string",
        "GSSAPI",
        _string,
        "Mechanism this broker uses on a SASL inter-broker listener.",
    ),
    # OAUTHBEARER token validation (KIP-768); listener.name.<l>.oauthbearer.<key> overrides.
    _def(
        "sasl.server.callback.handler.class",
        "class",
        None,
        _string,
        "OAUTHBEARER: Kafka's OAuthBearerValidatorCallbackHandler validates signed JWTs on "
        "a JWK set; unset = unsecured development tokens.",
    ),
    _def(
        "sasl.oauthbearer.jwks.endpoint.url",
        "string",
        None,
        _string,
        "JWK set of the token issuer: a file: URL (re-read when it changes) or http(s).",
    ),
    _def(
        "sasl.oauthbearer.jwt.validator.class",
        "class",
        "org.apache.kafka.common.security.oauthbearer.DefaultJwtValidator",
        _string,
        "DefaultJwtValidator or BrokerJwtValidator: both verify signatures on the JWK set.",
    ),
    _def("sasl.oauthbearer.jwks.endpoint.refresh.ms", "long", 3_600_000, _long()),
    _def("sasl.oauthbearer.jwks.endpoint.retry.backoff.ms", "long", 100, _long()),
    _def("sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms", "long", 10_000, _long()),
    _def("sasl.oauthbearer.clock.skew.seconds", "int", 30, _int()),
    _def("sasl.oauthbearer.expected.issuer", "string", None, _string),
    _def("sasl.oauthbearer.expected.audience", "list", None, _string),
    _def("sasl.oauthbearer.sub.claim.name", "string", "sub", _string),
    _def("sasl.oauthbearer.scope.claim.name", "string", "scope", _string),
    # Delegation tokens (KIP-48): unset secret key = tokens disabled.
    _def(
        "delegation.token.secret.key",
        "password",
        None,
        _string,
        "Secret key of token HMACs, the same on every broker; unset = tokens disabled.",
    ),
    _def(
        "delegation.token.master.key",
        "password",
        None,
        _string,
        "Deprecated alias of delegation.token.secret.key.",
    ),
    _def("delegation.token.max.lifetime.ms", "long", 7 * 24 * MS_PER_HOUR, _long(1)),
    _def("delegation.token.expiry.time.ms", "long", 24 * MS_PER_HOUR, _long(1)),
    _def("delegation.token.expiry.check.interval.ms", "long", MS_PER_HOUR, _long(1)),
    # TLS (issue 12): SSL and SASL_SSL listeners; listener.name.<l>.ssl.* overrides each.
    _def("ssl.protocol", "string", "TLSv1.3", _string, "Accepted: OpenSSL negotiates."),
    _def("ssl.enabled.protocols", "list", "TLSv1.2,TLSv1.3", _string),
    _def("ssl.cipher.suites", "list", "", _string, "Empty = OpenSSL's defaults."),
    _def("ssl.keystore.type", "string", "JKS", _string, "PKCS12 or PEM (JKS is read as PKCS12)."),
    _def("ssl.keystore.location", "string", None, _string),
    _def("ssl.keystore.password", "password", None, _string),
    _def("ssl.key.password", "password", None, _string),
    _def("ssl.keystore.key", "password", None, _string, "PEM private key (KIP-651)."),
    _def("ssl.keystore.certificate.chain", "password", None, _string, "PEM chain (KIP-651)."),
    _def("ssl.truststore.type", "string", "JKS", _string, "PKCS12 or PEM."),
    _def("ssl.truststore.location", "string", None, _string),
    _def("ssl.truststore.password", "password", None, _string),
    _def("ssl.truststore.certificates", "password", None, _string, "PEM certificates."),
    _def("ssl.client.auth", "string", "none", _ssl_client_auth),
    _def("ssl.endpoint.identification.algorithm", "string", "https", _string),
    _def("ssl.principal.mapping.rules", "string", "DEFAULT", _string),
    _def("ssl.allow.dn.changes", "boolean", False, parse_bool, "On a key store reload."),
    _def("ssl.allow.san.changes", "boolean", False, parse_bool, "On a key store reload."),
    _def("max.connections", "int", INT_MAX, _int(0), "Open connections in total."),
    _def("max.connections.per.ip", "int", INT_MAX, _int(0), "Open connections per address."),
    _def(
        "max.connections.per.ip.overrides",
        "string",
        "",
        lambda key, raw: _per_ip_overrides_text(key, raw),
        "host:count,... per-address exceptions to max.connections.per.ip.",
    ),
    _def("request.timeout.ms", "int", 30_000, _int()),
    _def("num.network.threads", "int", 3, _int(1), "Accepted without effect (one event loop)."),
    _def("num.io.threads", "int", 8, _int(1), "Accepted without effect (one event loop)."),
    _def("background.threads", "int", 10, _int(1), "Accepted without effect."),
    _def(
        "queued.max.requests",
        "int",
        500,
        _int(1),
        "Requests read but not yet handled, broker-wide; connections stop reading when full.",
    ),
    _def(
        "queued.max.request.bytes",
        "long",
        -1,
        _long(),
        "Bytes of requests read but not yet handled; -1 (or 0) = unbounded.",
    ),
    # Log directories and topic creation.
    _def("log.dirs", "string", None, _string, "Comma-separated; unset = log.dir."),
    _def("log.dir", "string", DEFAULT_LOG_DIR, _string),
    _def("num.partitions", "int", 1, _int(1)),
    _def(
        "max.request.partition.size.limit",
        "int",
        2000,
        _int(1),
        "Most partitions a DescribeTopicPartitions answer carries (then a cursor).",
    ),
    _def("default.replication.factor", "int", 1, _int(1)),
    _def("auto.create.topics.enable", "boolean", True, parse_bool),
    _def("delete.topic.enable", "boolean", True, parse_bool),
    # Retention and rolling: ms > minutes > hours, as Kafka.
    _def(
        "log.retention.ms", "long", None, _long(), "Unset = log.retention.minutes; -1 = unlimited."
    ),
    _def("log.retention.minutes", "int", None, _int(), "Unset = log.retention.hours."),
    _def("log.retention.hours", "int", 168, _int()),
    _def("log.roll.ms", "long", None, _long(1), "Unset = log.roll.hours."),
    _def("log.roll.hours", "int", 168, _int(1)),
    _def("log.roll.jitter.ms", "long", None, _long(0), "Unset = log.roll.jitter.hours."),
    _def("log.roll.jitter.hours", "int", 0, _int(0)),
    _def("log.retention.check.interval.ms", "long", 300_000, _long(1)),
    # Flushing and checkpoints.
    _def(
        "log.flush.interval.ms", "long", None, _long(0), "Unset = log.flush.scheduler.interval.ms."
    ),
    _def("log.flush.scheduler.interval.ms", "long", LONG_MAX, _long()),
    _def("log.flush.offset.checkpoint.interval.ms", "int", 60_000, _int(0)),
    _def("log.flush.start.offset.checkpoint.interval.ms", "int", 60_000, _int(0)),
    _def("num.recovery.threads.per.data.dir", "int", 2, _int(1)),
    # Log cleaner (compaction).
    _def("log.cleaner.enable", "boolean", True, parse_bool),
    _def("log.cleaner.threads", "int", 1, _int(0)),
    _def("log.cleaner.backoff.ms", "long", 15_000, _long(0)),
    _def("log.cleaner.dedupe.buffer.size", "long", 134_217_728, _long()),
    _def("log.cleaner.io.buffer.size", "int", 524_288, _int(0)),
    _def("log.cleaner.io.buffer.load.factor", "double", 0.9, _double()),
    _def("log.cleaner.io.max.bytes.per.second", "double", sys.float_info.max, _double()),
    # Client quotas (broker.client_quota_manager): Kafka's sample windows.
    _def("quota.window.num", "int", 11, _int(1)),
    _def("quota.window.size.seconds", "int", 1, _int(1)),
    # KIP-714: the largest PushTelemetry payload a client may send (broker.client_metrics).
    _def("telemetry.max.bytes", "int", 1024 * 1024, _int(1)),
    # KIP-113's quota on moving replicas between log dirs (replication.log_dir_mover).
    _def("replica.alter.log.dirs.io.max.bytes.per.second", "long", 2**63 - 1, _long(1)),
    # Replication.
    _def("replica.lag.time.max.ms", "long", 30_000, _long()),
    _def("replica.fetch.max.bytes", "int", 1_048_576, _int(0)),
    _def("replica.fetch.min.bytes", "int", 1, _int()),
    _def("replica.fetch.wait.max.ms", "int", 500, _int()),
    _def("replica.fetch.response.max.bytes", "int", 10_485_760, _int(0)),
    _def("replica.fetch.backoff.ms", "int", 1_000, _int(0)),
    _def("replica.socket.timeout.ms", "int", 30_000, _int()),
    _def("replica.socket.receive.buffer.bytes", "int", 65_536, _int()),
    _def("replica.high.watermark.checkpoint.interval.ms", "long", 5_000, _long()),
    _def("num.replica.fetchers", "int", 1, _int()),
    _def(
        "auto.leader.rebalance.enable",
        "boolean",
        True,
        parse_bool,
        "Cluster mode: the controller moves leadership back to preferred replicas.",
    ),
    _def(
        "leader.imbalance.check.interval.seconds",
        "long",
        300,
        _long(1),
        "How often the controller checks the leader balance.",
    ),
    _def(
        "leader.imbalance.per.broker.percentage",
        "int",
        10,
        _int(),
        "Share of a broker's preferred partitions led elsewhere that triggers a rebalance.",
    ),
    _def("controller.socket.timeout.ms", "int", 30_000, _int()),
    _def("controlled.shutdown.enable", "boolean", True, parse_bool),
    _def("controlled.shutdown.max.retries", "int", 3, _int()),
    _def("controlled.shutdown.retry.backoff.ms", "long", 5_000, _long()),
    # Consumer groups and the offsets topic.
    _def("group.initial.rebalance.delay.ms", "int", 3_000, _int()),
    _def("group.min.session.timeout.ms", "int", 6_000, _int()),
    _def("group.max.session.timeout.ms", "int", 1_800_000, _int()),
    _def("group.max.size", "int", INT_MAX, _int(1)),
    # KIP-848 consumer groups (group.protocol=consumer), Kafka 4.0's GroupCoordinatorConfig.
    _def("group.consumer.session.timeout.ms", "int", 45_000, _int(1)),
    _def("group.consumer.min.session.timeout.ms", "int", 45_000, _int(1)),
    _def("group.consumer.max.session.timeout.ms", "int", 60_000, _int(1)),
    _def("group.consumer.heartbeat.interval.ms", "int", 5_000, _int(1)),
    _def("group.consumer.min.heartbeat.interval.ms", "int", 5_000, _int(1)),
    _def("group.consumer.max.heartbeat.interval.ms", "int", 15_000, _int(1)),
    _def("group.consumer.max.size", "int", INT_MAX, _int(1)),
    _def(
        "group.consumer.assignors",
        "list",
        ",".join(CONSUMER_GROUP_ASSIGNOR_CLASSES),
        lambda key, raw: _assignors(key, raw),
        "Server-side assignors, the first being the default: uniform, range (or Kafka's "
        "class names for them).",
    ),
    _def(
        "group.consumer.migration.policy",
        "string",
        "bidirectional",
        lambda key, raw: _migration_policy(key, raw),
        "Online migration of non-empty groups: upgrade (a consumer-protocol member joins "
        "a classic group), downgrade (the last one leaves), bidirectional or disabled.",
    ),
    _def("offsets.topic.num.partitions", "int", 50, _int(1)),
    _def("offsets.topic.replication.factor", "short", 3, _short(1)),
    _def("offsets.topic.segment.bytes", "int", 104_857_600, _int(1)),
    _def("offsets.retention.minutes", "int", 10_080, _int(1)),
    _def("offsets.retention.check.interval.ms", "long", 600_000, _long(1)),
    _def("offsets.commit.timeout.ms", "int", 5_000, _int(1)),
    _def("offsets.load.buffer.size", "int", 5_242_880, _int(1)),
    _def("offset.metadata.max.bytes", "int", 4_096, _int()),
    # Transactions and producer ids.
    _def("transaction.state.log.num.partitions", "int", 50, _int(1)),
    _def("transaction.state.log.replication.factor", "short", 3, _short(1)),
    _def("transaction.state.log.min.isr", "int", 2, _int(1)),
    _def("transaction.state.log.segment.bytes", "int", 104_857_600, _int(1)),
    _def("transaction.state.log.load.buffer.size", "int", 5_242_880, _int(1)),
    _def("transaction.max.timeout.ms", "int", 900_000, _int(1)),
    _def("transactional.id.expiration.ms", "int", 604_800_000, _int(1)),
    _def("transaction.abort.timed.out.transaction.cleanup.interval.ms", "int", 10_000, _int(1)),
    _def("transaction.remove.expired.transaction.cleanup.interval.ms", "int", 3_600_000, _int(1)),
    _def("producer.id.expiration.ms", "int", 86_400_000, _int(1)),
    _def("producer.id.expiration.check.interval.ms", "int", 600_000, _int(1)),
    # Fetch.
    _def("fetch.max.bytes", "int", 57_671_680, _int(1024)),
    _def("max.incremental.fetch.session.cache.slots", "int", 1_000, _int(0)),
    _def(
        "pybroker.legacy.protocol.enable",
        "boolean",
        True,
        parse_bool,
        "pybroker: also serve the request versions KIP-896 removed in Kafka 4.0 (as Kafka "
        "3.9 did: message format v0/v1, Produce v0-2, Fetch v0-3, ...); false = Kafka 4.1.",
    ),
    _def(
        "pybroker.http.listener",
        "string",
        "http://127.0.0.1:9644",
        lambda key, raw: _http_listener(key, raw),
        "pybroker: the HTTP endpoint (/metrics, /healthz, /readyz) as http://host:port; "
        "empty = off.",
    ),
]

# Every broker key that supplies a topic default, with the topic key's type and validation.
for _d in TOPIC_CONFIG_DEFS:
    if _d.broker_key and _d.broker_key not in _SPECIAL_TOPIC_BROKER_KEYS:
        _BROKER_DEFS.append(
            _def(
                _d.broker_key, _d.type, _d.default, _d.parse, f"Default for topic config {_d.name}."
            )
        )

BROKER_CONFIG_DEFS: tuple[ConfigDef, ...] = tuple(_BROKER_DEFS)
BROKER_CONFIGS: dict[str, ConfigDef] = {d.name: d for d in BROKER_CONFIG_DEFS}
assert len(BROKER_CONFIGS) == len(BROKER_CONFIG_DEFS), "duplicate broker config key"

# Keys that stand in for another key when it is unset (Kafka's broker config synonyms).
SYNONYMS: dict[str, tuple[str, ...]] = {
    "log.retention.ms": ("log.retention.ms", "log.retention.minutes", "log.retention.hours"),
    "log.roll.ms": ("log.roll.ms", "log.roll.hours"),
    "log.roll.jitter.ms": ("log.roll.jitter.ms", "log.roll.jitter.hours"),
    "log.flush.interval.ms": ("log.flush.interval.ms", "log.flush.scheduler.interval.ms"),
    "node.id": ("node.id", "broker.id"),
    "broker.id": ("broker.id", "node.id"),
}

# ------------------------------------------------- keys Kafka has that we accept silently

KNOWN_KAFKA_KEYS: frozenset[str] = frozenset(
    """
    add.partitions.to.txn.retry.backoff.max.ms add.partitions.to.txn.retry.backoff.ms
    alter.config.policy.class.name alter.log.dirs.replication.quota.window.num
    alter.log.dirs.replication.quota.window.size.seconds
    auto.include.jmx.reporter broker.heartbeat.interval.ms broker.id.generation.enable
    broker.session.timeout.ms client.quota.callback.class compression.gzip.level
    compression.lz4.level compression.zstd.level
    control.plane.listener.name
    create.topic.policy.class.name delete.records.purgatory.purge.interval.requests
    early.start.listeners eligible.leader.replicas.enable
    fetch.purgatory.purge.interval.requests group.coordinator.append.linger.ms
    group.coordinator.new.enable group.coordinator.rebalance.protocols
    group.coordinator.threads initial.broker.registration.timeout.ms
    inter.broker.protocol.version kafka.metrics.polling.interval.secs kafka.metrics.reporters
    log.dir.failure.timeout.ms log.initial.task.delay.ms log.local.retention.bytes
    log.local.retention.ms log.message.downconversion.enable log.message.format.version
    log.message.timestamp.difference.max.ms max.connection.creation.rate
    metric.reporters metrics.num.samples metrics.recording.level metrics.sample.window.ms
    num.replica.alter.log.dirs.threads offsets.commit.required.acks
    offsets.topic.compression.codec principal.builder.class process.roles
    producer.purgatory.purge.interval.requests replication.quota.window.num
    replication.quota.window.size.seconds reserved.broker.max.id security.providers
    share.fetch.purgatory.purge.interval.requests ssl.engine.factory.class
    ssl.keymanager.algorithm ssl.trustmanager.algorithm ssl.secure.random.implementation
    ssl.provider socket.connection.setup.timeout.max.ms
    socket.connection.setup.timeout.ms
    transaction.partition.verification.enable unclean.leader.election.interval.ms
    unstable.api.versions.enable unstable.feature.versions.enable zookeeper.clientCnxnSocket
    zookeeper.max.in.flight.requests zookeeper.metadata.migration.enable
    zookeeper.metadata.migration.min.batch.size zookeeper.set.acl zookeeper.sync.time.ms
    """.split()  # noqa: SIM905 - a word list reads better than 70 quoted strings
)

# Families of Kafka keys (security, tiered storage, KRaft, share groups, ...) that have no
# effect here; prefixes are kept narrow so that typos of keys we use are still reported.
KNOWN_KAFKA_PREFIXES: tuple[str, ...] = (
    "listener.name.",
    "sasl.",
    "zookeeper.ssl.",
    "controller.quorum.",
    "metadata.",
    "remote.",
    "share.coordinator.",
    "group.share.",
    "group.consumer.",
    "group.streams.",
    "password.encoder.",
    "config.providers",
    "client.quota.",
    "controller.quota.",
)

# Kafka PASSWORD-type keys (also under listener.name.<listener>.[<mechanism>.] prefixes).
PASSWORD_KEYS: frozenset[str] = frozenset(
    """
    ssl.key.password ssl.keystore.password ssl.truststore.password ssl.keystore.key
    ssl.keystore.certificate.chain ssl.truststore.certificates sasl.jaas.config
    delegation.token.secret.key delegation.token.master.key password.encoder.secret
    password.encoder.old.secret zookeeper.ssl.keystore.password
    zookeeper.ssl.truststore.password
    """.split()  # noqa: SIM905 - a word list reads better than 70 quoted strings
)


def is_known_key(key: str) -> bool:
    """True for a key Kafka has (typed here or accepted without effect)."""
    return key in BROKER_CONFIGS or key in KNOWN_KAFKA_KEYS or key.startswith(KNOWN_KAFKA_PREFIXES)


def is_sensitive_key(key: str) -> bool:
    """Kafka hides PASSWORD-type values in DescribeConfigs; so do we."""
    return any(key == p or key.endswith("." + p) for p in PASSWORD_KEYS)


# ------------------------------------------------------------------------ listeners

# Kafka's SocketServerConfigs.URI_PARSE_REGEXP, matched against the whole entry.
_ENDPOINT = re.compile(r"(.*)://\[?([0-9a-zA-Z\-%._:]*)\]?:(-?[0-9]+)")
_CSV = re.compile(r"\s*,\s*")
_NONROUTABLE = frozenset({"0.0.0.0", "::"})


@dataclass(frozen=True, slots=True)
class Listener:
    """One listener: ``NAME://host:port``.

    ``name`` is normalised to upper case as Kafka does. ``host`` is ``""`` for "all
    interfaces" (Kafka stores null); an advertised listener never has an empty host.
    ``port`` 0 means an ephemeral port: the server must advertise the port it bound.
    """

    name: str
    host: str
    port: int
    security_protocol: str = "PLAINTEXT"

    @property
    def bind_host(self) -> str | None:
        """Host for ``asyncio.start_server``: None binds every interface (IPv4 and IPv6)."""
        return self.host or None

    @property
    def connection_string(self) -> str:
        """Kafka's EndPoint.connectionString, IPv6 hosts in brackets."""
        if not self.host:
            return f"{self.name}://:{self.port}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.name}://{host}:{self.port}"

    def __str__(self) -> str:
        return self.connection_string


def _csv(raw: str) -> list[str]:
    """Kafka's Csv.parseCsvList: split on commas with surrounding blanks, drop empties."""
    return [part for part in _CSV.split(raw.strip()) if part]


def _parse_protocol_map(raw: str) -> dict[str, str]:
    """listener.security.protocol.map: ``NAME:PROTOCOL,...``; last ``:`` splits (as Kafka)."""
    key = "listener.security.protocol.map"
    result: dict[str, str] = {}
    for entry in _csv(raw):
        name, sep, protocol = entry.rpartition(":")
        if not sep or not name.strip():
            raise ConfigError(key, raw, f"Expected listenerName:securityProtocol, got '{entry}'")
        protocol = protocol.strip().upper()
        if protocol not in SECURITY_PROTOCOLS:
            raise ConfigError(key, raw, f"Invalid security protocol `{protocol}` defined in {key}")
        result[name.strip().upper()] = protocol
    return result


def _parse_endpoints(
    key: str, raw: str, protocols: Mapping[str, str], skip: frozenset[str]
) -> list[Listener]:
    """Parse a listener list; names in ``skip`` (controller listeners) need no protocol."""
    endpoints: list[Listener] = []
    for entry in _csv(raw):
        m = _ENDPOINT.fullmatch(entry)
        if m is None:
            raise ConfigError(key, raw, f"Unable to parse {entry} to a broker endpoint")
        name, host, port_text = m.group(1).upper(), m.group(2), m.group(3)
        port = int(port_text)
        if not 0 <= port <= 65535:
            raise ConfigError(
                key, raw, f"Invalid port {port_text} for listener {name}: must be 0-65535"
            )
        protocol = protocols.get(name)
        if protocol is None:
            if name not in skip:
                raise ConfigError(key, raw, f"No security protocol defined for listener {name}")
            protocol = "PLAINTEXT"
        endpoints.append(Listener(name, host, port, protocol))
    names = [e.name for e in endpoints]
    if len(set(names)) != len(names):
        raise ConfigError(key, raw, f"Each listener must have a different name, listeners: {raw}")
    return endpoints


def _ip_version(host: str) -> int | None:
    try:
        return ipaddress.ip_address(host).version
    except ValueError:
        return None


def _check_distinct_ports(raw: str, endpoints: list[Listener]) -> None:
    """Kafka: ports must differ unless one listener is an IPv4 and the other an IPv6 literal."""
    by_port: dict[int, list[Listener]] = {}
    for e in endpoints:
        if e.port != 0:  # ephemeral ports never clash
            by_port.setdefault(e.port, []).append(e)
    for port, group in by_port.items():
        if len(group) < 2:
            continue
        with_ip = [e for e in group if _ip_version(e.host) is not None]
        without_ip = [e for e in group if _ip_version(e.host) is None]
        if len(without_ip) > 1:
            raise ConfigError(
                "listeners", raw, f"Each listener must have a different port, listeners: {raw}"
            )
        if len(with_ip) == 2:
            versions = {_ip_version(e.host) for e in with_ip}
            if versions != {4, 6} or without_ip:
                raise ConfigError(
                    "listeners",
                    raw,
                    "If you have two listeners on the same port then one needs to be IPv4 "
                    f"and the other IPv6, listeners: {raw}, port: {port}",
                )
        elif with_ip:
            raise ConfigError(
                "listeners",
                raw,
                "Each listener must have a different port unless exactly one listener has "
                f"an IPv4 address and the other IPv6 address, listeners: {raw}, port: {port}",
            )


def canonical_hostname() -> str:
    """Kafka advertises an empty host as InetAddress.getLocalHost().getCanonicalHostName()."""
    return socket.getfqdn()


# -------------------------------------------------------------------------- describe


@dataclass(frozen=True, slots=True)
class ConfigEntry:
    """One DescribeConfigs entry for the BROKER resource."""

    name: str
    value: str | None
    source: str  # "static" (server.properties or --override) or "default"
    sensitive: bool
    read_only: bool


def _java_double(value: float) -> str:
    """Double.toString: plain between 1e-3 and 1e7, else ``d.dddE[-]n``."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0 or 1e-3 <= abs(value) < 1e7:
        return repr(float(value))
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits))
    mantissa = text[0] + "." + (text[1:] or "0")
    return f"{'-' if sign else ''}{mantissa}E{exponent + len(text) - 1}"


def render_config_value(value: Any) -> str | None:
    """A typed config value as Kafka prints it in DescribeConfigs (None stays None)."""
    if value is None:
        return None
    if isinstance(value, float):
        return _java_double(value)
    return to_config_string(value)


_render = render_config_value  # older name, still imported by broker/handlers/admin_configs.py


# ----------------------------------------------------------------------- BrokerConfig

_READ_ONLY = True  # pybroker has no dynamic broker configs: AlterConfigs cannot change one


@dataclass(frozen=True)
class BrokerConfig:
    """The validated, typed, immutable broker configuration.

    Field names are the Kafka keys with ``.`` replaced by ``_``; fields whose Kafka key has
    synonyms hold the effective value (``log_retention_ms`` is -1 for unlimited and already
    folds in ``log.retention.minutes``/``hours``). ``values`` has every typed key's parsed
    value as set (None for an unset key without default); ``raw`` has every string given.
    """

    # Identity and cluster mode.
    node_id: int
    cluster_id: str | None
    broker_rack: str | None
    replica_selector_class: str | None
    zookeeper_connect: str | None
    zookeeper_session_timeout_ms: int
    zookeeper_connection_timeout_ms: int
    # Network.
    listeners: tuple[Listener, ...]
    advertised_listeners: tuple[Listener, ...]
    listener_security_protocol_map: Mapping[str, str]
    inter_broker_listener_name: str
    controller_listener_names: tuple[str, ...]
    socket_send_buffer_bytes: int
    socket_receive_buffer_bytes: int
    socket_request_max_bytes: int
    socket_listen_backlog_size: int
    connections_max_idle_ms: int
    connection_failed_authentication_delay_ms: int
    max_connections: int
    max_connections_per_ip: int
    max_connections_per_ip_overrides: Mapping[str, int]
    queued_max_requests: int
    queued_max_request_bytes: int
    request_timeout_ms: int
    # Logs.
    log_dirs: tuple[str, ...]
    num_partitions: int
    max_request_partition_size_limit: int
    default_replication_factor: int
    auto_create_topics_enable: bool
    delete_topic_enable: bool
    message_max_bytes: int
    log_segment_bytes: int
    log_retention_ms: int
    log_retention_bytes: int
    log_retention_check_interval_ms: int
    log_roll_ms: int
    log_roll_jitter_ms: int
    log_segment_delete_delay_ms: int
    log_flush_interval_messages: int
    log_flush_interval_ms: int
    log_flush_scheduler_interval_ms: int
    log_flush_offset_checkpoint_interval_ms: int
    log_flush_start_offset_checkpoint_interval_ms: int
    num_recovery_threads_per_data_dir: int
    log_cleaner_enable: bool
    log_cleaner_threads: int
    log_cleaner_backoff_ms: int
    log_cleaner_dedupe_buffer_size: int
    log_cleaner_io_buffer_size: int
    min_insync_replicas: int
    unclean_leader_election_enable: bool
    # Replication.
    replica_lag_time_max_ms: int
    replica_fetch_max_bytes: int
    replica_fetch_min_bytes: int
    replica_fetch_wait_max_ms: int
    replica_fetch_response_max_bytes: int
    replica_fetch_backoff_ms: int
    replica_socket_timeout_ms: int
    replica_socket_receive_buffer_bytes: int
    replica_high_watermark_checkpoint_interval_ms: int
    num_replica_fetchers: int
    auto_leader_rebalance_enable: bool
    leader_imbalance_check_interval_seconds: int
    leader_imbalance_per_broker_percentage: int
    controller_socket_timeout_ms: int
    controlled_shutdown_enable: bool
    controlled_shutdown_max_retries: int
    controlled_shutdown_retry_backoff_ms: int
    # Groups and offsets.
    group_initial_rebalance_delay_ms: int
    group_min_session_timeout_ms: int
    group_max_session_timeout_ms: int
    group_max_size: int
    group_consumer_session_timeout_ms: int
    group_consumer_min_session_timeout_ms: int
    group_consumer_max_session_timeout_ms: int
    group_consumer_heartbeat_interval_ms: int
    group_consumer_min_heartbeat_interval_ms: int
    group_consumer_max_heartbeat_interval_ms: int
    group_consumer_max_size: int
    group_consumer_assignors: str
    group_consumer_migration_policy: str
    offsets_topic_num_partitions: int
    offsets_topic_replication_factor: int
    offsets_topic_segment_bytes: int
    offsets_retention_minutes: int
    offsets_retention_check_interval_ms: int
    offsets_commit_timeout_ms: int
    offsets_load_buffer_size: int
    offset_metadata_max_bytes: int
    # Transactions.
    transaction_state_log_num_partitions: int
    transaction_state_log_replication_factor: int
    transaction_state_log_min_isr: int
    transaction_state_log_segment_bytes: int
    transaction_state_log_load_buffer_size: int
    transaction_max_timeout_ms: int
    transactional_id_expiration_ms: int
    transaction_abort_timed_out_transaction_cleanup_interval_ms: int
    transaction_remove_expired_transaction_cleanup_interval_ms: int
    producer_id_expiration_ms: int
    producer_id_expiration_check_interval_ms: int
    # Fetch.
    fetch_max_bytes: int
    max_incremental_fetch_session_cache_slots: int
    # Bookkeeping.
    values: Mapping[str, Any] = field(repr=False)
    raw: Mapping[str, str] = field(repr=False)
    ignored: tuple[str, ...] = ()
    notices: tuple[str, ...] = ()

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_file(
        cls, path: str | os.PathLike[str], overrides: Mapping[str, str] | None = None
    ) -> BrokerConfig:
        """Load ``server.properties`` and apply ``--override`` pairs."""
        return cls.from_properties(load_properties(path), overrides)

    @classmethod
    def from_properties(
        cls,
        props: Mapping[str, str],
        overrides: Mapping[str, str] | None = None,
        *,
        hostname: str | None = None,
    ) -> BrokerConfig:
        """Validate and type ``props`` overlaid by ``overrides`` (KafkaConfig.fromProps).

        ``hostname`` is what an empty listener host is advertised as; None = Kafka's
        choice, the canonical host name of this machine (looked up only when needed).
        Raises ConfigError naming the offending key.
        """
        raw: dict[str, str] = {**props, **(overrides or {})}
        values: dict[str, Any] = {}
        for d in BROKER_CONFIG_DEFS:
            values[d.name] = d.parse(d.name, raw[d.name]) if d.name in raw else d.default
        notices: list[str] = []
        computed: dict[str, Any] = {}

        zk = values["zookeeper.connect"] or None
        computed["zookeeper_connect"] = zk
        computed["zookeeper_connection_timeout_ms"] = (
            values["zookeeper.connection.timeout.ms"]
            if values["zookeeper.connection.timeout.ms"] is not None
            else values["zookeeper.session.timeout.ms"]
        )
        computed["node_id"] = _node_id(raw, values, zk, notices)
        computed.update(_network(raw, values, notices, hostname))
        computed["log_dirs"] = _log_dirs(values)
        computed.update(_time_settings(raw, values))
        _check_replica_timeouts(values)
        computed.update(_socket_server_limits(values))
        _check_consumer_group_settings(values)

        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name in computed:
                kwargs[f.name] = computed[f.name]
            elif f.name not in ("values", "raw", "ignored", "notices"):
                kwargs[f.name] = values[f.name.replace("_", ".")]
        return cls(
            **kwargs,
            values=MappingProxyType(values),
            raw=MappingProxyType(raw),
            ignored=tuple(sorted(k for k in raw if not is_known_key(k))),
            notices=tuple(notices),
        )

    # --------------------------------------------------------------------- queries

    @property
    def single_node(self) -> bool:
        """No ZooKeeper: this broker is its own controller."""
        return self.zookeeper_connect is None

    def is_set(self, key: str) -> bool:
        """The user set ``key`` or one of its synonyms (server.properties or an override)."""
        return any(k in self.raw for k in SYNONYMS.get(key, (key,)))

    def topic_defaults(self) -> dict[str, Any]:
        """Typed topic-config defaults from broker keys the user set, for TopicConfig(defaults=...).

        Keys the user left alone are absent, so TopicConfig reports them as Kafka's default
        (source DEFAULT_CONFIG) rather than as a broker setting.
        """
        effective = {
            "log.retention.ms": self.log_retention_ms,
            "log.roll.ms": self.log_roll_ms,
            "log.roll.jitter.ms": self.log_roll_jitter_ms,
            "log.flush.interval.ms": self.log_flush_interval_ms,
        }
        result: dict[str, Any] = {}
        for d in TOPIC_CONFIG_DEFS:
            if d.broker_key and self.is_set(d.broker_key):
                result[d.name] = effective.get(d.broker_key, self.values.get(d.broker_key))
        return result

    def describe(self) -> list[ConfigEntry]:
        """DescribeConfigs for this broker: every typed key, plus other known keys set.

        A key whose synonym is set reports the effective value (log.retention.ms from
        log.retention.hours). Sensitive values are None, as Kafka sends them.
        """
        effective: dict[str, Any] = {
            "node.id": self.node_id,
            "broker.id": self.node_id,
            "log.retention.ms": self.log_retention_ms,
            "log.roll.ms": self.log_roll_ms,
            "log.roll.jitter.ms": self.log_roll_jitter_ms,
            "log.flush.interval.ms": self.log_flush_interval_ms,
        }
        entries: list[ConfigEntry] = []
        for d in BROKER_CONFIG_DEFS:
            is_set = self.is_set(d.name)
            if d.name in effective and (is_set or d.name in ("node.id", "broker.id")):
                value = _render(effective[d.name])
            else:
                value = _render(self.values[d.name])
            sensitive = d.sensitive or is_sensitive_key(d.name)
            entries.append(
                ConfigEntry(
                    d.name,
                    None if sensitive else value,
                    "static" if is_set else "default",
                    sensitive,
                    _READ_ONLY,
                )
            )
        for key in sorted(self.raw):
            if key not in BROKER_CONFIGS and is_known_key(key):
                sensitive = is_sensitive_key(key)
                value = None if sensitive else self.raw[key].strip()
                entries.append(ConfigEntry(key, value, "static", sensitive, _READ_ONLY))
        entries.sort(key=lambda e: e.name)
        return entries

    def listener(self, name: str) -> Listener | None:
        """The bound listener called ``name`` (case-insensitive), if any."""
        upper = name.upper()
        return next((lst for lst in self.listeners if lst.name == upper), None)


# ------------------------------------------------------------- from_properties helpers


def _node_id(
    raw: Mapping[str, str], values: Mapping[str, Any], zk: str | None, notices: list[str]
) -> int:
    """node.id and broker.id are synonyms; Kafka 4 refuses two different values."""
    node = values["node.id"] if "node.id" in raw else None
    broker = values["broker.id"] if "broker.id" in raw else None
    if node is not None and broker is not None and node != broker:
        raise ConfigError(
            "node.id",
            raw["node.id"],
            f"You must set `node.id` to the same value as `broker.id` ({broker})",
        )
    chosen = node if node is not None else broker
    if chosen is not None and chosen < -1:
        raise ConfigError("broker.id", raw["broker.id"], "Value must be at least -1 (-1 = unset)")
    if chosen is None or chosen == -1:
        if zk is not None:
            raise ConfigError(
                "broker.id",
                raw.get("broker.id", "-1"),
                "broker.id (or node.id) must be set to a non-negative id when zookeeper.connect "
                "is set; automatic broker id generation is not supported",
            )
        notices.append("node.id and broker.id are not set: using node id 0 (single-node mode)")
        return 0
    return chosen


def _network(
    raw: Mapping[str, str], values: Mapping[str, Any], notices: list[str], hostname: str | None
) -> dict[str, Any]:
    protocols = _parse_protocol_map(values["listener.security.protocol.map"])
    controller = tuple(n.upper() for n in _csv(values["controller.listener.names"] or ""))
    skip = frozenset(controller)

    listeners_raw = values["listeners"]
    every = _parse_endpoints("listeners", listeners_raw, protocols, skip)
    _check_distinct_ports(listeners_raw, every)
    listeners = [e for e in every if e.name not in skip]
    for e in every:
        if e.name in skip:
            notices.append(
                f"listener {e.connection_string} is a KRaft controller listener "
                "(controller.listener.names); pybroker has no KRaft controller and does not open it"
            )
    if not listeners:
        raise ConfigError("listeners", listeners_raw, "There must be at least one broker listener")
    for e in listeners:
        if e.security_protocol not in SUPPORTED_SECURITY_PROTOCOLS:
            raise ConfigError(
                "listeners",
                listeners_raw,
                f"listener {e.name} uses security protocol {e.security_protocol}, which pybroker "
                "does not support yet",
            )
    names = {e.name for e in listeners}

    if values["advertised.listeners"] is not None:
        adv_raw = values["advertised.listeners"]
        advertised = [
            e
            for e in _parse_endpoints("advertised.listeners", adv_raw, protocols, skip)
            if e.name not in skip
        ]
        if not advertised:
            raise ConfigError(
                "advertised.listeners",
                adv_raw,
                "There must be at least one broker advertised listener.",
            )
        extra = sorted({e.name for e in advertised} - names)
        if extra:
            raise ConfigError(
                "advertised.listeners",
                adv_raw,
                "advertised.listeners listener names must be equal to or a subset of the ones "
                f"defined in listeners. Found {','.join(sorted(e.name for e in advertised))}. "
                "The valid options based on the current configuration are "
                + ",".join(sorted(names)),
            )
        adv_key = "advertised.listeners"
    else:
        adv_raw, advertised, adv_key = listeners_raw, list(listeners), "listeners"
    for e in advertised:
        if e.host in _NONROUTABLE:
            raise ConfigError(
                adv_key,
                adv_raw,
                f"advertised.listeners cannot use the nonroutable meta-address {e.host}. "
                "Use a routable IP address.",
            )
    if any(not e.host for e in advertised):
        host = hostname or canonical_hostname()
        advertised = [
            e if e.host else Listener(e.name, host, e.port, e.security_protocol) for e in advertised
        ]

    inter = _inter_broker_listener(raw, values, protocols)
    advertised_names = {e.name for e in advertised}
    if inter not in advertised_names:
        key = (
            "inter.broker.listener.name"
            if "inter.broker.listener.name" in raw
            else "security.inter.broker.protocol"
        )
        raise ConfigError(
            key,
            raw.get(key, values[key]),
            "inter.broker.listener.name must be a listener name defined in advertised.listeners. "
            "The valid options based on currently configured listeners are "
            + ",".join(sorted(advertised_names)),
        )
    return {
        "listeners": tuple(listeners),
        "advertised_listeners": tuple(advertised),
        "listener_security_protocol_map": MappingProxyType(protocols),
        "inter_broker_listener_name": inter,
        "controller_listener_names": controller,
    }


def _inter_broker_listener(
    raw: Mapping[str, str], values: Mapping[str, Any], protocols: Mapping[str, str]
) -> str:
    name = values["inter.broker.listener.name"]
    if name is not None:
        if "security.inter.broker.protocol" in raw:
            raise ConfigError(
                "inter.broker.listener.name",
                name,
                "Only one of inter.broker.listener.name and security.inter.broker.protocol "
                "should be set.",
            )
        upper = name.upper()
        if upper not in protocols:
            raise ConfigError(
                "inter.broker.listener.name",
                name,
                f"Listener with name {upper} defined in inter.broker.listener.name not found in "
                "listener.security.protocol.map.",
            )
        return upper
    protocol = values["security.inter.broker.protocol"].upper()
    if protocol not in SECURITY_PROTOCOLS:
        raise ConfigError(
            "security.inter.broker.protocol",
            values["security.inter.broker.protocol"],
            f"Invalid security protocol `{protocol}` defined in security.inter.broker.protocol",
        )
    return protocol


def _log_dirs(values: Mapping[str, Any]) -> tuple[str, ...]:
    key = "log.dirs" if values["log.dirs"] is not None else "log.dir"
    text = values[key]
    dirs = _csv(text)
    if not dirs:
        raise ConfigError(
            key, text, "At least one log directory must be defined via log.dirs or log.dir."
        )
    seen: set[str] = set()
    for d in dirs:
        norm = os.path.normpath(d)
        if norm in seen:
            raise ConfigError(key, text, f"Duplicate log directory found: {d}")
        seen.add(norm)
    return tuple(dirs)


def _time_settings(raw: Mapping[str, str], values: Mapping[str, Any]) -> dict[str, int]:
    """Kafka's precedence: log.retention.ms > minutes > hours; log.roll.ms > hours; ..."""
    if "log.retention.ms" in raw:
        key, retention = "log.retention.ms", values["log.retention.ms"]
    elif "log.retention.minutes" in raw:
        key, retention = "log.retention.minutes", values["log.retention.minutes"] * MS_PER_MINUTE
    else:
        key, retention = "log.retention.hours", values["log.retention.hours"] * MS_PER_HOUR
    if retention < 0:
        retention = -1  # any negative value means unlimited
    elif retention == 0:
        raise ConfigError(
            key,
            raw.get(key, "0"),
            "log.retention.ms must be unlimited (-1) or, greater than or equal to 1",
        )
    roll = values["log.roll.ms"] if "log.roll.ms" in raw else values["log.roll.hours"] * MS_PER_HOUR
    jitter = (
        values["log.roll.jitter.ms"]
        if "log.roll.jitter.ms" in raw
        else values["log.roll.jitter.hours"] * MS_PER_HOUR
    )
    flush = (
        values["log.flush.interval.ms"]
        if "log.flush.interval.ms" in raw
        else values["log.flush.scheduler.interval.ms"]
    )
    return {
        "log_retention_ms": retention,
        "log_roll_ms": roll,
        "log_roll_jitter_ms": jitter,
        "log_flush_interval_ms": flush,
    }


def _assignors(key: str, raw: str) -> str:
    """A LIST of assignor names or Kafka class names (trimmed, comma-joined)."""
    names = [n.strip() for n in raw.split(",") if n.strip()]
    for name in names:
        if name not in _ASSIGNOR_NAMES:
            raise ConfigError(key, raw, f"Class {name} cannot be found")
    if not names:
        raise ConfigError(key, raw, "at least one assignor is required")
    return ",".join(names)


def _migration_policy(key: str, raw: str) -> str:
    value = raw.strip().lower()
    choices = ("bidirectional", "upgrade", "downgrade", "disabled")
    if value not in choices:
        raise ConfigError(
            key,
            raw,
            f"String must be one of (case insensitive): {', '.join(c.upper() for c in choices)}",
        )
    return value


def _check_consumer_group_settings(values: Mapping[str, Any]) -> None:
    """GroupCoordinatorConfig's requirements on the consumer-group timeouts."""
    p = "group.consumer."
    session, hb = values[p + "session.timeout.ms"], values[p + "heartbeat.interval.ms"]
    rules = (
        ("max.heartbeat.interval.ms", "min.heartbeat.interval.ms", ">="),
        ("heartbeat.interval.ms", "min.heartbeat.interval.ms", ">="),
        ("heartbeat.interval.ms", "max.heartbeat.interval.ms", "<="),
        ("max.session.timeout.ms", "min.session.timeout.ms", ">="),
        ("session.timeout.ms", "min.session.timeout.ms", ">="),
        ("session.timeout.ms", "max.session.timeout.ms", "<="),
    )
    for left, right, op in rules:
        a, b = values[p + left], values[p + right]
        if (op == ">=" and a < b) or (op == "<=" and a > b):
            relation = "greater than or equal to" if op == ">=" else "less than or equal to"
            raise ConfigError(p + left, a, f"{p + left} must be {relation} {p + right}")
    if hb >= session:
        raise ConfigError(
            p + "heartbeat.interval.ms",
            hb,
            f"{p}heartbeat.interval.ms must be less than {p}session.timeout.ms",
        )


def _check_replica_timeouts(values: Mapping[str, Any]) -> None:
    wait = values["replica.fetch.wait.max.ms"]
    if wait > values["replica.socket.timeout.ms"]:
        raise ConfigError(
            "replica.socket.timeout.ms",
            values["replica.socket.timeout.ms"],
            "replica.socket.timeout.ms should always be at least replica.fetch.wait.max.ms "
            "to prevent unnecessary socket timeouts",
        )
    if wait > values["replica.lag.time.max.ms"]:
        raise ConfigError(
            "replica.fetch.wait.max.ms",
            wait,
            "replica.fetch.wait.max.ms should always be less than or equal to "
            "replica.lag.time.max.ms to prevent frequent changes in ISR",
        )


# Kafka's Utils.validHostPattern: the characters a host name or IP literal may contain.
_VALID_HOST = re.compile(r"[0-9a-zA-Z\-%._:]+")


def _parse_per_ip_overrides(key: str, raw: str) -> dict[str, int]:
    """``host:count,...`` as Kafka's parseCsvMap reads it: the last ``:`` splits (IPv6)."""
    result: dict[str, int] = {}
    text = raw.strip()
    if not text:
        return result
    for entry in _CSV.split(text):
        host, sep, count = entry.rpartition(":")
        if not sep:
            raise ConfigError(key, raw, f"Expected host:count, got '{entry}'")
        result[host.strip()] = parse_int(key, count, kind="INT")
    return result


def _per_ip_overrides_text(key: str, raw: str) -> str:
    """Checked at parse time (so the error names the value); kept as the trimmed string."""
    _parse_per_ip_overrides(key, raw)
    return raw.strip()


def _socket_server_limits(values: Mapping[str, Any]) -> dict[str, Any]:
    """KafkaConfig.validateValues' rules for the socket server's limits."""
    key = "max.connections.per.ip.overrides"
    overrides = _parse_per_ip_overrides(key, values[key])
    invalid = [host for host in overrides if not _VALID_HOST.fullmatch(host)]
    if invalid:
        raise ConfigError(
            key, values[key], f"{key} contains invalid addresses : {','.join(invalid)}"
        )
    if values["max.connections.per.ip"] == 0 and not overrides:
        raise ConfigError(
            "max.connections.per.ip",
            0,
            "max.connections.per.ip can be set to zero only if "
            "max.connections.per.ip.overrides property is set.",
        )
    pool = values["queued.max.request.bytes"]
    if pool > 0 and pool < values["socket.request.max.bytes"]:
        raise ConfigError(
            "queued.max.request.bytes",
            pool,
            "queued.max.request.bytes must be larger or equal to socket.request.max.bytes",
        )
    idle = values["connections.max.idle.ms"]
    delay = values["connection.failed.authentication.delay.ms"]
    if idle >= 0 and delay >= idle:
        raise ConfigError(
            "connection.failed.authentication.delay.ms",
            delay,
            f"connection.failed.authentication.delay.ms={delay} should always be less than "
            f"connections.max.idle.ms={idle} to prevent failed authentication responses "
            "from timing out",
        )
    return {"max_connections_per_ip_overrides": MappingProxyType(overrides)}
