"""Per-topic configuration: Kafka's topic config keys, types, defaults and validation.

One table (``TOPIC_CONFIG_DEFS``) describes every topic key we honour, the broker-level
key that supplies its default (``log.segment.bytes`` for ``segment.bytes``, ...), and its
validation. CreateTopics, DescribeConfigs, (Incremental)AlterConfigs and the storage layer
all read this table, so a key is added in one place.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

LONG_MAX = 2**63 - 1
INT_MAX = 2**31 - 1


class ConfigError(ValueError):
    """A config key has a value Kafka would reject (INVALID_CONFIG)."""

    def __init__(self, key: str, value: object, reason: str) -> None:
        # Kafka's ConfigException text, verbatim: clients and operators grep for it.
        super().__init__(f"Invalid value {value} for configuration {key}: {reason}")
        self.key = key
        self.value = value
        self.reason = reason


def parse_bool(key: str, raw: str) -> bool:
    low = raw.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    raise ConfigError(key, raw, "Expected value to be either true or false")


_INTEGER = re.compile(r"[+-]?[0-9]+")
_TYPE_BOUNDS = {"SHORT": 2**15, "INT": 2**31, "LONG": 2**63}


def parse_int(
    key: str, raw: str, lo: int = -(2**63), hi: int = LONG_MAX, kind: str = "LONG"
) -> int:
    """Parse like Kafka's ConfigDef: trimmed ASCII digits that fit ``kind`` (SHORT/INT/LONG).

    Python's int() also takes "1_000" and non-ASCII digits; Kafka does not, so neither do we.
    """
    text = raw.strip() if isinstance(raw, str) else ""
    bound = _TYPE_BOUNDS[kind]
    if not _INTEGER.fullmatch(text) or not -bound <= int(text) < bound:
        raise ConfigError(key, raw, f"Not a number of type {kind}")
    value = int(text)
    if value < lo:
        raise ConfigError(key, raw, f"Value must be at least {lo}")
    if value > hi:
        raise ConfigError(key, raw, f"Value must be no more than {hi}")
    return value


def parse_float(key: str, raw: str, lo: float, hi: float) -> float:
    try:
        value = float(raw.strip())
    except (ValueError, AttributeError):
        raise ConfigError(key, raw, "Not a number of type DOUBLE") from None
    if not value >= lo:
        raise ConfigError(key, raw, f"Value must be at least {lo}")
    if not value <= hi:
        raise ConfigError(key, raw, f"Value must be no more than {hi}")
    return value


def parse_choice(key: str, raw: str, choices: tuple[str, ...], many: bool = False) -> str:
    parts = [p.strip() for p in raw.split(",")] if many else [raw.strip()]
    for p in parts:
        if p not in choices:
            raise ConfigError(key, raw, f"String must be one of: {', '.join(choices)}")
    if not parts or (many and not all(parts)):
        raise ConfigError(key, raw, "empty list")
    return ",".join(parts)


@dataclass(frozen=True, slots=True)
class ConfigDef:
    """One topic config key: its Kafka name, type, default and the broker key behind it."""

    name: str
    type: str  # "long", "int", "double", "string", "boolean", "list"
    default: Any
    parse: Callable[[str, str], Any]
    broker_key: str | None = None
    sensitive: bool = False
    doc: str = ""


def _long(lo: int = -(2**63), hi: int = LONG_MAX) -> Callable[[str, str], int]:
    return lambda key, raw: parse_int(key, raw, lo, hi)


def _int(lo: int = -(2**31), hi: int = INT_MAX) -> Callable[[str, str], int]:
    return lambda key, raw: parse_int(key, raw, lo, hi, "INT")


def _choice(*choices: str, many: bool = False) -> Callable[[str, str], str]:
    return lambda key, raw: parse_choice(key, raw, choices, many)


_THROTTLED = re.compile(r"\s*(\*|[0-9]+:[0-9]+(\s*,\s*[0-9]+:[0-9]+)*)?\s*")


def _throttled(key: str, raw: str) -> str:
    """Kafka's ThrottledReplicaListValidator: "*" or "partition:broker" pairs."""
    if not _THROTTLED.fullmatch(raw):
        raise ConfigError(
            key,
            raw,
            "Value must be a list of the form [partitionId]:[brokerId] or the wildcard '*'",
        )
    return raw.strip()


COMPRESSION_TYPES = ("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer")

TOPIC_CONFIG_DEFS: tuple[ConfigDef, ...] = (
    ConfigDef(
        "cleanup.policy",
        "list",
        "delete",
        _choice("compact", "delete", many=True),  # Kafka's ValidList order (messages)
        "log.cleanup.policy",
    ),
    ConfigDef(
        "compression.type", "string", "producer", _choice(*COMPRESSION_TYPES), "compression.type"
    ),
    ConfigDef(
        "delete.retention.ms", "long", 86_400_000, _long(0), "log.cleaner.delete.retention.ms"
    ),
    ConfigDef("file.delete.delay.ms", "long", 60_000, _long(0), "log.segment.delete.delay.ms"),
    # Accepted and described as Kafka 4.1 does; codec levels, throttles and tiered storage
    # have no effect here (batches are stored as produced; no remote tier).
    ConfigDef("compression.gzip.level", "int", -1, _int(-1, 9), "compression.gzip.level"),
    ConfigDef("compression.lz4.level", "int", 9, _int(1, 17), "compression.lz4.level"),
    ConfigDef("compression.zstd.level", "int", 3, _int(-131_072, 22), "compression.zstd.level"),
    ConfigDef("follower.replication.throttled.replicas", "list", "", _throttled),
    ConfigDef("leader.replication.throttled.replicas", "list", "", _throttled),
    ConfigDef("local.retention.bytes", "long", -2, _long(-2), "log.local.retention.bytes"),
    ConfigDef("local.retention.ms", "long", -2, _long(-2), "log.local.retention.ms"),
    ConfigDef("remote.log.copy.disable", "boolean", False, parse_bool),
    ConfigDef("remote.log.delete.on.disable", "boolean", False, parse_bool),
    ConfigDef("remote.storage.enable", "boolean", False, parse_bool),
    ConfigDef("flush.messages", "long", LONG_MAX, _long(1), "log.flush.interval.messages"),
    ConfigDef("flush.ms", "long", LONG_MAX, _long(0), "log.flush.interval.ms"),
    ConfigDef("index.interval.bytes", "int", 4096, _int(0), "log.index.interval.bytes"),
    ConfigDef(
        "max.compaction.lag.ms", "long", LONG_MAX, _long(1), "log.cleaner.max.compaction.lag.ms"
    ),
    ConfigDef("max.message.bytes", "int", 1_048_588, _int(0), "message.max.bytes"),
    ConfigDef(
        "message.timestamp.type",
        "string",
        "CreateTime",
        _choice("CreateTime", "LogAppendTime"),
        "log.message.timestamp.type",
    ),
    ConfigDef(
        "message.timestamp.before.max.ms",
        "long",
        LONG_MAX,
        _long(0),
        "log.message.timestamp.before.max.ms",
    ),
    ConfigDef(
        "message.timestamp.after.max.ms",
        "long",
        3_600_000,
        _long(0),
        "log.message.timestamp.after.max.ms",
    ),
    ConfigDef(
        "min.cleanable.dirty.ratio",
        "double",
        0.5,
        lambda k, r: parse_float(k, r, 0.0, 1.0),
        "log.cleaner.min.cleanable.ratio",
    ),
    ConfigDef("min.compaction.lag.ms", "long", 0, _long(0), "log.cleaner.min.compaction.lag.ms"),
    ConfigDef("min.insync.replicas", "int", 1, _int(1), "min.insync.replicas"),
    ConfigDef("preallocate", "boolean", False, parse_bool, "log.preallocate"),
    ConfigDef("retention.bytes", "long", -1, _long(), "log.retention.bytes"),
    ConfigDef("retention.ms", "long", 604_800_000, _long(-1), "log.retention.ms"),
    ConfigDef("segment.bytes", "int", 1_073_741_824, _int(14), "log.segment.bytes"),
    ConfigDef("segment.index.bytes", "int", 10_485_760, _int(4), "log.index.size.max.bytes"),
    ConfigDef("segment.jitter.ms", "long", 0, _long(0), "log.roll.jitter.ms"),
    ConfigDef("segment.ms", "long", 604_800_000, _long(1), "log.roll.ms"),
    ConfigDef(
        "unclean.leader.election.enable",
        "boolean",
        False,
        parse_bool,
        "unclean.leader.election.enable",
    ),
)

TOPIC_CONFIGS: dict[str, ConfigDef] = {d.name: d for d in TOPIC_CONFIG_DEFS}


def to_config_string(value: Any) -> str:
    """Render a typed value as Kafka prints it in DescribeConfigs."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True)
class TopicConfig:
    """The effective config of one topic: broker defaults overlaid by topic overrides.

    ``overrides`` keeps the raw strings a user set on the topic (what DescribeConfigs shows
    as TOPIC_CONFIG); ``defaults`` are typed values derived from the broker config.
    """

    overrides: Mapping[str, str] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    _values: dict[str, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        values = {d.name: self.defaults.get(d.name, d.default) for d in TOPIC_CONFIG_DEFS}
        for key, raw in self.overrides.items():
            spec = TOPIC_CONFIGS.get(key)
            if spec is None:
                raise ConfigError(key, raw, "Unknown topic config name")
            values[key] = spec.parse(key, raw)
        object.__setattr__(self, "_values", values)

    def get(self, key: str) -> Any:
        return self._values[key]

    def with_overrides(self, overrides: Mapping[str, str]) -> TopicConfig:
        """A new config whose topic overrides are exactly ``overrides`` (validated)."""
        return TopicConfig(overrides=dict(overrides), defaults=self.defaults)

    def source_of(self, key: str) -> str:
        """'topic', 'broker' (set in server.properties) or 'default'."""
        if key in self.overrides:
            return "topic"
        if key in self.defaults:
            return "broker"
        return "default"

    def items(self) -> list[tuple[str, Any]]:
        return sorted(self._values.items())

    # Typed accessors for the keys the storage layer reads on its hot paths, parsed once
    # per config (it is immutable: a change makes a new TopicConfig).
    @cached_property
    def segment_bytes(self) -> int:
        return int(self._values["segment.bytes"])

    @cached_property
    def segment_ms(self) -> int:
        return int(self._values["segment.ms"])

    @cached_property
    def segment_index_bytes(self) -> int:
        return int(self._values["segment.index.bytes"])

    @cached_property
    def index_interval_bytes(self) -> int:
        return int(self._values["index.interval.bytes"])

    @cached_property
    def max_message_bytes(self) -> int:
        return int(self._values["max.message.bytes"])

    @cached_property
    def log_append_time(self) -> bool:
        return self._values["message.timestamp.type"] == "LogAppendTime"

    @cached_property
    def timestamp_before_max_ms(self) -> int:
        return int(self._values["message.timestamp.before.max.ms"])

    @cached_property
    def timestamp_after_max_ms(self) -> int:
        return int(self._values["message.timestamp.after.max.ms"])

    @cached_property
    def retention_ms(self) -> int:
        return int(self._values["retention.ms"])

    @cached_property
    def retention_bytes(self) -> int:
        return int(self._values["retention.bytes"])

    @cached_property
    def flush_messages(self) -> int:
        return int(self._values["flush.messages"])

    @cached_property
    def flush_ms(self) -> int:
        return int(self._values["flush.ms"])

    @cached_property
    def file_delete_delay_ms(self) -> int:
        return int(self._values["file.delete.delay.ms"])

    @cached_property
    def cleanup_policy(self) -> frozenset[str]:
        return frozenset(str(self._values["cleanup.policy"]).split(","))

    @cached_property
    def compact(self) -> bool:
        return "compact" in self.cleanup_policy

    @cached_property
    def delete_retention_ms(self) -> int:
        return int(self._values["delete.retention.ms"])

    @cached_property
    def min_cleanable_dirty_ratio(self) -> float:
        return float(self._values["min.cleanable.dirty.ratio"])

    @cached_property
    def min_compaction_lag_ms(self) -> int:
        return int(self._values["min.compaction.lag.ms"])

    @cached_property
    def min_insync_replicas(self) -> int:
        return int(self._values["min.insync.replicas"])
