"""Random but plausible values for kio request entities.

A purely random request is refused at the first field and never reaches a handler. These
values look like what a client sends (topics that exist, partitions 0-3, short timeouts,
small arrays, real record batches) so that the valid requests reach deep into the
handlers and the mutations start from a shape the broker takes seriously.
"""

from __future__ import annotations

import datetime
import random
import struct
import uuid
from dataclasses import dataclass
from typing import Any

from kio.schema.types import GroupId, TopicName, TransactionalId

from tests.fuzz.schema import FieldSpec, layout

__all__ = ["ValueContext", "build_entity", "TOPIC_ID_PLACEHOLDERS"]

#: Stand-ins for the broker's topic ids: templates are built before the ids are known
#: (and must not depend on them, for determinism); the runner swaps in the real ids.
TOPIC_ID_PLACEHOLDERS = tuple(uuid.UUID(int=(0xF0220000 << 96) | i) for i in range(1, 4))

_INT_RANGE = {
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint8": (0, 2**8 - 1),
    "uint16": (0, 2**16 - 1),
    "uint32": (0, 2**32 - 1),
    "uint64": (0, 2**64 - 1),
}

_CONFIG_NAMES = (
    "cleanup.policy",
    "retention.ms",
    "segment.bytes",
    "max.message.bytes",
    "min.insync.replicas",
    "compression.type",
    "message.timestamp.type",
    "unknown.config",
)
_CONFIG_VALUES = ("delete", "compact", "86400000", "1048576", "1", "zstd", "LogAppendTime", "")


@dataclass
class ValueContext:
    """The small universes values are drawn from; record batches come from ``records``."""

    rng: random.Random
    topics: tuple[str, ...]
    groups: tuple[str, ...]
    txn_ids: tuple[str, ...]
    records: tuple[bytes, ...]
    depth: int = 0
    owner: str = ""

    def pick(self, seq: tuple[Any, ...]) -> Any:
        return seq[self.rng.randrange(len(seq))]


def _small_int(ctx: ValueContext, name: str, kafka_type: str) -> int:
    rng = ctx.rng
    lo, hi = _INT_RANGE[kafka_type]
    n = name.lower()
    if "partition" in n and "count" not in n:
        return rng.choice((0, 0, 1, 2, 3, -1))
    if n in ("num_partitions", "count"):
        return rng.choice((-1, 1, 2, 3, 4))
    if n == "replication_factor":
        return rng.choice((-1, 1, 1, 2))
    if "producer_id" in n:
        return rng.choice((-1, -1, 0, 1, 2, 1000))
    if "epoch" in n:
        return rng.choice((-1, 0, 0, 1, 5))
    if "offset" in n:
        return rng.choice((0, 0, 1, 5, 100, -1, -2))
    if "timestamp" in n:
        return rng.choice((-1, -2, -3, -4, -5, 0, 1_700_000_000_000))
    if n in ("max_bytes", "partition_max_bytes"):
        return rng.choice((0, 1, 1024, 65536, 1048576))
    if n == "acks":
        return rng.choice((-1, 0, 1, 1, 1))
    if n in ("broker_id", "replica_id", "leader_id", "node_id", "coordinator_id"):
        return rng.choice((-1, 0, 0, 1))
    if n in ("isolation_level", "coordinator_key_type", "key_type"):
        return rng.choice((0, 1))
    if n == "resource_type":
        return rng.choice((2, 2, 4, 0, 8))
    if n == "config_operation":
        return rng.choice((0, 1, 2, 3))
    if "sequence" in n:
        return rng.choice((-1, 0, 1))
    if "session" in n or "generation" in n:
        return rng.choice((-1, 0, 1))
    if "timeout" in n or n.endswith("_ms"):
        return rng.choice((0, 10, 100))
    r = rng.random()
    if r < 0.6:
        return max(lo, min(hi, rng.choice((0, 0, 1, 2, 3, -1))))
    if r < 0.9:
        return rng.randint(max(lo, -100), min(hi, 1000))
    return rng.randint(lo, hi)


def _timedelta(ctx: ValueContext, name: str) -> datetime.timedelta:
    n = name.lower()
    if "session" in n:
        ms = ctx.rng.choice((10, 6000, 10000, 45000))
    elif "rebalance" in n:
        ms = ctx.rng.choice((0, 10, 100, 300))
    else:
        ms = ctx.rng.choice((0, 0, 10, 50, 100))
    return datetime.timedelta(milliseconds=ms)


def _string(ctx: ValueContext, spec: FieldSpec) -> str:
    rng = ctx.rng
    n = spec.name.lower()
    t = spec.pytype
    if t is TopicName:
        return ctx.pick(ctx.topics)
    if t is GroupId:
        return ctx.pick(ctx.groups)
    if t is TransactionalId:
        return ctx.pick(ctx.txn_ids)
    if n in ("key", "coordinator_keys"):
        return ctx.pick(ctx.groups + ctx.txn_ids)
    if "member_id" in n:
        return rng.choice(("", "", "member-1", "fuzz-member-" + str(rng.randrange(4))))
    if "instance" in n:
        return rng.choice(("inst-1", "", "x"))
    if n == "protocol_type":
        return rng.choice(("consumer", "consumer", "connect", ""))
    if n == "protocol_name" or (n == "name" and "Protocol" in ctx.owner):
        return rng.choice(("range", "roundrobin", "cooperative-sticky", "uniform"))
    if n == "resource_name":
        return rng.choice(ctx.topics + ("0", "", "1"))
    if n in ("name", "configuration_keys"):
        return ctx.pick(_CONFIG_NAMES)
    if n == "value":
        return ctx.pick(_CONFIG_VALUES)
    if n == "states_filter" or n == "state_filters":
        return rng.choice(("Stable", "Empty", "PreparingRebalance", "Ongoing", "bogus"))
    if n == "types_filter":
        return rng.choice(("classic", "consumer", "bogus"))
    if "rack" in n:
        return rng.choice(("rack-a", ""))
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-._"
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 12)))


def _consumer_subscription(ctx: ValueContext) -> bytes:
    """A ConsumerProtocolSubscription v0: version, topics, user data (null)."""
    topics = [ctx.pick(ctx.topics).encode() for _ in range(ctx.rng.randrange(0, 3))]
    out = struct.pack(">hi", 0, len(topics))
    for t in topics:
        out += struct.pack(">h", len(t)) + t
    return out + struct.pack(">i", -1)


def _consumer_assignment(ctx: ValueContext) -> bytes:
    """A ConsumerProtocolAssignment v0: version, [topic, [partition]], user data (null)."""
    topic = ctx.pick(ctx.topics).encode()
    parts = [ctx.rng.randrange(4) for _ in range(ctx.rng.randrange(0, 3))]
    out = struct.pack(">hih", 0, 1, len(topic)) + topic + struct.pack(">i", len(parts))
    out += b"".join(struct.pack(">i", p) for p in parts)
    return out + struct.pack(">i", -1)


def _bytes(ctx: ValueContext, spec: FieldSpec) -> bytes:
    n = spec.name.lower()
    r = ctx.rng.random()
    if "metadata" in n and r < 0.7:
        return _consumer_subscription(ctx)
    if "assignment" in n and r < 0.7:
        return _consumer_assignment(ctx)
    return ctx.rng.randbytes(ctx.rng.randrange(0, 24))


def _primitive(ctx: ValueContext, spec: FieldSpec) -> Any:
    kt = spec.kafka_type
    assert kt is not None, spec
    if kt in _INT_RANGE:
        return _small_int(ctx, spec.name, kt)
    if kt == "bool":
        return ctx.rng.random() < 0.5
    if kt == "string":
        return _string(ctx, spec)
    if kt == "bytes":
        return _bytes(ctx, spec)
    if kt == "records":
        return ctx.pick(ctx.records)
    if kt == "uuid":
        r = ctx.rng.random()
        if r < 0.7:
            return ctx.pick(TOPIC_ID_PLACEHOLDERS)
        if r < 0.85:
            return uuid.UUID(int=0)
        return uuid.UUID(int=ctx.rng.getrandbits(128))
    if kt in ("timedelta_i32", "timedelta_i64"):
        return _timedelta(ctx, spec.name)
    if kt == "datetime_i64":
        return datetime.datetime.fromtimestamp(1_700_000_000, tz=datetime.UTC)
    if kt == "float64":
        return ctx.rng.random()
    raise NotImplementedError(f"no generator for kafka type {kt!r} ({spec.name})")


def _value(ctx: ValueContext, spec: FieldSpec) -> Any:
    if spec.is_array:
        if spec.optional and ctx.rng.random() < 0.1:
            return None
        n = ctx.rng.choice((0, 1, 1, 1, 2, 2, 3)) if ctx.depth < 3 else ctx.rng.randrange(2)
        if spec.nested is not None:
            return tuple(build_entity(spec.nested, ctx) for _ in range(n))
        return tuple(_primitive(ctx, spec) for _ in range(n))
    if spec.optional and ctx.rng.random() < 0.1:
        return None
    if spec.nested is not None:
        return build_entity(spec.nested, ctx)
    return _primitive(ctx, spec)


def build_entity(cls: type, ctx: ValueContext) -> Any:
    """A ``cls`` instance with every field (tagged ones mostly too) filled plausibly."""
    kwargs: dict[str, Any] = {}
    ctx.depth += 1
    owner, ctx.owner = ctx.owner, cls.__name__
    try:
        for spec in layout(cls):
            if spec.tag is not None and spec.has_default and ctx.rng.random() < 0.4:
                continue  # leave the tag out (its default)
            ctx.owner = cls.__name__
            kwargs[spec.name] = _value(ctx, spec)
    finally:
        ctx.depth -= 1
        ctx.owner = owner
    return cls(**kwargs)
