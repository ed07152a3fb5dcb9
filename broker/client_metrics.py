"""KIP-714 client telemetry, following Kafka 4.1's ClientMetricsManager.

Subscriptions are CLIENT_METRICS config resources (``metrics`` prefixes, ``interval.ms``,
``match`` regexes over the client's attributes), kept in the entity-config store (ZooKeeper
``/config/client-metrics/<name>`` in cluster mode, the local JSON file on a single node).
A client asks GetTelemetrySubscriptions (a zero instance id gets a new one), then pushes
OTLP metrics every push interval. Validation, error codes and subscription ids follow
Kafka: a Get or Push before the interval is THROTTLING_QUOTA_EXCEEDED, a stale
subscription id UNKNOWN_SUBSCRIPTION_ID, anything after a terminating push
INVALID_REQUEST, a payload over ``telemetry.max.bytes`` TELEMETRY_TOO_LARGE and one that
does not decode INVALID_RECORD.

Unlike Kafka (which hands pushes to a plugin), pybroker is its own receiver: the latest
metrics of each client instance are kept (bounded) for /metrics and /api/clients, and
dropped when the client has been silent for three push intervals (at least a minute).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import crc32c

from pybroker.broker.entity_refresh import StoreRefresher
from pybroker.protocol import compression
from pybroker.protocol.errors import CorruptRecordError, ErrorCode
from pybroker.protocol.otlp import MetricPoint, OtlpError, parse_metrics_data

if TYPE_CHECKING:
    from pybroker.replication.entity_configs import EntityConfigStore

log = logging.getLogger(__name__)

ENTITY_TYPE = "client-metrics"  # Kafka's ConfigType.CLIENT_METRICS znode folder
METRICS, INTERVAL_MS, MATCH = "metrics", "interval.ms", "match"
DEFAULT_INTERVAL_MS = 300_000
MIN_INTERVAL_MS, MAX_INTERVAL_MS = 100, 3_600_000
ALL_METRICS = "*"
MATCH_KEYS = (
    "client_instance_id",
    "client_id",
    "client_software_name",
    "client_software_version",
    "client_source_address",
    "client_source_port",
)
# Kafka's SUPPORTED_COMPRESSION_TYPES order: zstd, lz4, gzip, snappy.
ACCEPTED_COMPRESSION = (compression.ZSTD, compression.LZ4, compression.GZIP, compression.SNAPPY)
CACHE_MAX_SIZE = 16384  # Kafka's client instance LRU
CACHE_EXPIRY_MS = 60_000
MAX_CLIENTS_SHOWN = 1024  # client instances whose pushed metrics are kept
MAX_TOTAL_POINTS = 50_000  # data points kept over all of them (memory, /metrics size)
NEVER_MS = -(1 << 62)  # a request timestamp long before any push interval
ZERO_UUID = uuid.UUID(int=0)
# Kafka's Uuid.RESERVED: the zero and the metadata-topic ids.
RESERVED_UUIDS = frozenset({ZERO_UUID, uuid.UUID(int=1)})


class SubscriptionError(ValueError):
    """An invalid subscription config, with the Kafka error code it maps to."""

    def __init__(self, message: str, code: ErrorCode) -> None:
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------- subscriptions


def _list(value: str | None) -> list[str]:
    """Kafka's ConfigDef LIST parsing: comma-separated, trimmed, empty string = []."""
    if value is None or not value.strip():
        return []
    return [p.strip() for p in value.split(",")]


def parse_match(patterns: Iterable[str]) -> dict[str, re.Pattern[str]]:
    """ClientMetricsConfigs.parseMatchingPatterns: ``key=regex`` over known keys."""
    out: dict[str, re.Pattern[str]] = {}
    for pattern in patterns:
        parts = pattern.split("=")
        while parts and parts[-1] == "":  # Java's String.split drops trailing empties
            parts.pop()
        if len(parts) != 2 or parts[0].strip() not in MATCH_KEYS:
            raise SubscriptionError(
                f"Illegal client matching pattern: {pattern}", ErrorCode.invalid_config
            )
        try:
            out[parts[0].strip()] = re.compile(parts[1].strip())
        except re.error:
            raise SubscriptionError(
                f"Illegal client matching pattern: {pattern}", ErrorCode.invalid_config
            ) from None
    return out


def validate_subscription(name: str, config: Mapping[str, str]) -> None:
    """ClientMetricsConfigs.validate on a subscription's full config set."""
    if name == "":
        raise SubscriptionError("Subscription name can't be empty", ErrorCode.invalid_request)
    for key in config:
        if key not in (METRICS, INTERVAL_MS, MATCH):
            raise SubscriptionError(
                f"Unknown client metrics configuration: {key}", ErrorCode.invalid_request
            )
    if INTERVAL_MS in config:
        raw = config[INTERVAL_MS]
        try:
            interval = int(raw.strip())
            if not -(2**31) <= interval < 2**31:
                raise ValueError
        except ValueError:
            raise SubscriptionError(
                f"Invalid value {raw} for configuration {INTERVAL_MS}: Not a number of type INT",
                ErrorCode.invalid_config,
            ) from None
        if not MIN_INTERVAL_MS <= interval <= MAX_INTERVAL_MS:
            raise SubscriptionError(
                f"Invalid value {interval} for {INTERVAL_MS}, interval must be between "
                f"{MIN_INTERVAL_MS} and {MAX_INTERVAL_MS} (1 hour)",
                ErrorCode.invalid_request,
            )
    if MATCH in config:
        parse_match(_list(config[MATCH]))


@dataclass(frozen=True)
class Subscription:
    name: str
    metrics: tuple[str, ...]
    interval_ms: int
    match: dict[str, re.Pattern[str]]

    @classmethod
    def from_config(cls, name: str, config: Mapping[str, str]) -> Subscription:
        return cls(
            name,
            tuple(_list(config.get(METRICS))),
            int(config.get(INTERVAL_MS, DEFAULT_INTERVAL_MS)),
            parse_match(_list(config.get(MATCH))),
        )


# ------------------------------------------------------- Java-compatible subscription id


def java_string_hash(text: str) -> int:
    h = 0
    for unit in text.encode("utf-16-be").hex(" ", 2).split():
        h = (31 * h + int(unit, 16)) & 0xFFFFFFFF
    return h


def java_hash_set_order(items: Iterable[str]) -> list[str]:
    """The iteration order of a java.util.HashSet<String> built by adding ``items`` in
    order: by bucket of the spread hash in the final table, then insertion order."""
    unique = list(dict.fromkeys(items))
    capacity = 16
    while len(unique) > capacity * 0.75:
        capacity *= 2

    def bucket(s: str) -> int:
        h = java_string_hash(s)
        return (h ^ (h >> 16)) & (capacity - 1)

    return sorted(unique, key=lambda s: bucket(s))  # sorted() is stable: insertion order


def subscription_id(metrics: list[str], push_interval_ms: int, instance_id: uuid.UUID) -> int:
    """Kafka's computeSubscriptionId: CRC32C of ``Set.toString() + interval`` XOR the
    instance id's hashCode, as a signed int32."""
    text = "[" + ", ".join(metrics) + "]" + str(push_interval_ms)
    crc = crc32c.crc32c(text.encode())
    hi, lo = instance_id.int >> 64, instance_id.int & 0xFFFFFFFFFFFFFFFF
    h = hi ^ lo
    uuid_hash = ((h >> 32) ^ h) & 0xFFFFFFFF
    value = (crc ^ uuid_hash) & 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


# ------------------------------------------------------------------- client instances


@dataclass
class ClientInstance:
    instance_id: uuid.UUID
    attributes: dict[str, str]  # the match keys' values
    subscription_id: int
    subscription_version: int
    metrics: list[str]
    push_interval_ms: int
    connection: str
    # Monotonic ms; "never" is long ago even on a host booted less than an interval ago
    # (Kafka's wall-clock zero is always long ago).
    last_get_ms: int = NEVER_MS
    last_push_ms: int = NEVER_MS
    terminating: bool = False
    last_error: int = 0
    expires_ms: int = 0

    def may_get(self, now: int) -> bool:
        """ClientMetricsInstance.maybeUpdateGetRequestTimestamp."""
        if now - max(self.last_get_ms, self.last_push_ms) >= self.push_interval_ms:
            self.last_get_ms = now
            return True
        return False

    def may_push(self, now: int) -> bool:
        """maybeUpdatePushRequestTimestamp: a push right after a Get is always accepted
        (clients jitter the interval)."""
        ok = (
            self.last_get_ms > self.last_push_ms or now - self.last_push_ms >= self.push_interval_ms
        )
        if ok:
            self.last_push_ms = now
        return ok


@dataclass
class ClientTelemetry:
    """What /metrics and /api/clients show of one client instance."""

    instance_id: uuid.UUID
    attributes: dict[str, str]
    subscription_id: int | None = None
    last_push_ms: int | None = None  # wall clock
    metrics: list[MetricPoint] = field(default_factory=list)
    resource: dict[str, str] = field(default_factory=dict)
    expires_ms: int = 0  # monotonic


@dataclass
class ClientMetricsStats:
    """Kafka's client-metrics group: counts since start."""

    unknown_subscription_requests: int = 0
    throttles: int = 0
    exports: int = 0
    export_errors: int = 0
    pushed_bytes: int = 0


@dataclass
class Outcome:
    error: int = ErrorCode.none
    message: str | None = None


def _now_ms() -> int:
    return int(time.monotonic() * 1000)


class ClientMetricsManager:
    def __init__(self, store: EntityConfigStore | None, max_bytes: int, *, poll: bool) -> None:
        self.store = store
        self.max_bytes = max_bytes
        self.subscriptions: dict[str, Subscription] = {}
        self.configs: dict[str, dict[str, str]] = {}  # as stored: what DescribeConfigs shows
        self.version = 0
        self.instances: OrderedDict[uuid.UUID, ClientInstance] = OrderedDict()
        self.by_connection: dict[str, uuid.UUID] = {}
        self.telemetry: OrderedDict[uuid.UUID, ClientTelemetry] = OrderedDict()
        self.stats = ClientMetricsStats()
        self._refresher = StoreRefresher(self.reload, "Client metrics subscription", poll)
        self._next_expiry_ms = 0
        self.points_kept = 0  # data points over self.telemetry

    # ------------------------------------------------------------ subscriptions
    async def start(self) -> None:
        await self._refresher.start()

    def stop(self) -> None:
        self._refresher.stop()

    async def reload(self) -> None:
        if self.store is None:
            return
        configs = await self.store.list(ENTITY_TYPE)
        self.configs = configs
        subs: dict[str, Subscription] = {}
        for name, config in configs.items():
            try:
                subs[name] = Subscription.from_config(name, config)
            except (SubscriptionError, ValueError) as exc:
                log.warning("Ignoring invalid client metrics subscription %s: %s", name, exc)
        self.set_subscriptions(subs)

    def set_subscriptions(self, subs: dict[str, Subscription]) -> None:
        if subs != self.subscriptions:
            self.subscriptions = subs
            self.version += 1  # instances re-evaluate on their next request

    def names(self) -> list[str]:
        return sorted(self.subscriptions)

    # ------------------------------------------------------------ instances
    def _evaluate(
        self, instance_id: uuid.UUID, attributes: dict[str, str], connection: str
    ) -> ClientInstance:
        """createClientInstance: the union of matching subscriptions, the least interval."""
        interval = DEFAULT_INTERVAL_MS
        metrics: list[str] = []
        everything = False
        for sub in self.subscriptions.values():
            if all(k in attributes and p.fullmatch(attributes[k]) for k, p in sub.match.items()):
                everything = everything or ALL_METRICS in sub.metrics
                metrics.extend(java_hash_set_order(sub.metrics))
                interval = min(interval, sub.interval_ms)
        ordered = [ALL_METRICS] if everything else java_hash_set_order(metrics)
        return ClientInstance(
            instance_id,
            attributes,
            subscription_id(ordered, interval, instance_id),
            self.version,
            ordered,
            interval,
            connection,
        )

    def _instance(
        self, instance_id: uuid.UUID, attributes: dict[str, str], connection: str, now: int
    ) -> ClientInstance:
        self._expire(now)
        inst = self.instances.get(instance_id)
        if inst is None or inst.subscription_version < self.version:
            if inst is not None:
                attributes = inst.attributes
            inst = self._evaluate(instance_id, attributes, connection)
            self.instances[instance_id] = inst
            self.by_connection[connection] = instance_id
            while len(self.instances) > CACHE_MAX_SIZE:
                self.instances.popitem(last=False)
        self.instances.move_to_end(instance_id)
        inst.expires_ms = now + max(CACHE_EXPIRY_MS, 3 * inst.push_interval_ms)
        return inst

    def _expire(self, now: int) -> None:
        """Drop expired instances and metrics: a scan, so at most once a second."""
        if now < self._next_expiry_ms:
            return
        self._next_expiry_ms = now + 1000
        for key in [k for k, v in self.instances.items() if v.expires_ms <= now]:
            inst = self.instances.pop(key)
            self.by_connection.pop(inst.connection, None)
        for key in [k for k, v in self.telemetry.items() if v.expires_ms <= now]:
            self.points_kept -= len(self.telemetry.pop(key).metrics)

    def on_disconnect(self, connection: str) -> None:
        """Kafka's ClientConnectionDisconnectListener: forget the connection's instance
        (its last metrics stay visible until they expire)."""
        instance_id = self.by_connection.pop(connection, None)
        if instance_id is not None:
            self.instances.pop(instance_id, None)

    def new_instance_id(self) -> uuid.UUID:
        while True:
            candidate = uuid.uuid4()
            if candidate not in self.instances and candidate not in RESERVED_UUIDS:
                return candidate

    # ------------------------------------------------------------ requests
    def get_subscriptions(
        self, requested: uuid.UUID | None, attributes: dict[str, str], connection: str
    ) -> tuple[ClientInstance, uuid.UUID, Outcome]:
        now = _now_ms()
        instance_id = requested if requested and requested != ZERO_UUID else self.new_instance_id()
        attributes = dict(attributes, client_instance_id=str(instance_id))
        inst = self._instance(instance_id, attributes, connection, now)
        if not inst.may_get(now):
            self.stats.throttles += 1
            return (
                inst,
                instance_id,
                Outcome(
                    ErrorCode.throttling_quota_exceeded,
                    f"Request from the client [{requested}] arrived before the next push "
                    "interval time",
                ),
            )
        inst.last_error = ErrorCode.none
        return inst, instance_id, Outcome()

    def push(
        self,
        instance_id: uuid.UUID | None,
        subscription: int,
        terminating: bool,
        codec: int,
        payload: bytes,
        attributes: dict[str, str],
        connection: str,
    ) -> Outcome:
        if instance_id is None or instance_id in RESERVED_UUIDS:
            return Outcome(
                ErrorCode.invalid_request,
                f"Invalid request from the client [{instance_id}], invalid client instance id",
            )
        now = _now_ms()
        attributes = dict(attributes, client_instance_id=str(instance_id))
        inst = self._instance(instance_id, attributes, connection, now)
        try:
            outcome = self._validate_push(inst, subscription, terminating, codec, payload, now)
        finally:
            inst.terminating = terminating
        if outcome.error:
            inst.last_error = outcome.error
            return outcome
        if payload:
            outcome = self._export(inst, codec, payload)
        inst.last_error = outcome.error
        return outcome

    def _validate_push(
        self,
        inst: ClientInstance,
        subscription: int,
        terminating: bool,
        codec: int,
        payload: bytes,
        now: int,
    ) -> Outcome:
        iid = inst.instance_id
        if inst.terminating:
            return Outcome(
                ErrorCode.invalid_request,
                f"Client [{iid}] sent the previous request with state terminating to TRUE, "
                "can not acceptany requests after that",
            )
        if not inst.may_push(now) and not terminating:
            self.stats.throttles += 1
            return Outcome(
                ErrorCode.throttling_quota_exceeded,
                f"Request from the client [{iid}] arrived before the next push interval time",
            )
        if subscription != inst.subscription_id:
            self.stats.unknown_subscription_requests += 1
            return Outcome(
                ErrorCode.unknown_subscription_id,
                f"Unknown client subscription id for the client [{iid}]",
            )
        if codec not in compression.CODEC_NAMES:
            return Outcome(
                ErrorCode.unsupported_compression_type,
                f"Unknown compression type [{codec}] is received in telemetry request from [{iid}]",
            )
        if len(payload) > self.max_bytes:
            return Outcome(
                ErrorCode.telemetry_too_large,
                f"Telemetry request from [{iid}] is larger than the maximum allowed size "
                f"[{self.max_bytes}]",
            )
        return Outcome()

    def _export(self, inst: ClientInstance, codec: int, payload: bytes) -> Outcome:
        """Decompress (bounded by telemetry.max.bytes, as Kafka 4.2 bounds it) and decode;
        keep the latest metrics of the instance."""
        iid = inst.instance_id
        try:
            raw = compression.decompress(codec, payload, self.max_bytes)
            telemetry = parse_metrics_data(raw)
        except compression.DecompressedTooLargeError:
            self.stats.export_errors += 1
            return Outcome(ErrorCode.telemetry_too_large)
        except (CorruptRecordError, OtlpError) as exc:
            self.stats.export_errors += 1
            log.debug("Undecodable telemetry from client instance %s: %s", iid, exc)
            return Outcome(ErrorCode.invalid_record)
        self.stats.exports += 1
        self.stats.pushed_bytes += len(payload)
        shown = self.telemetry.get(iid)
        if shown is None:
            shown = ClientTelemetry(iid, dict(inst.attributes))
            self.telemetry[iid] = shown
        else:
            self.points_kept -= len(shown.metrics)
        self.telemetry.move_to_end(iid)
        self.points_kept += len(telemetry.points)
        # Least recently pushed first out, never the client that just pushed.
        while len(self.telemetry) > 1 and (
            len(self.telemetry) > MAX_CLIENTS_SHOWN or self.points_kept > MAX_TOTAL_POINTS
        ):
            _, old = self.telemetry.popitem(last=False)
            self.points_kept -= len(old.metrics)
        shown.attributes = dict(inst.attributes)
        shown.subscription_id = inst.subscription_id
        shown.last_push_ms = int(time.time() * 1000)
        shown.metrics = telemetry.points
        shown.resource = telemetry.resource
        shown.expires_ms = _now_ms() + max(CACHE_EXPIRY_MS, 3 * inst.push_interval_ms)
        return Outcome()

    # ------------------------------------------------------------ views
    def clients(self) -> list[ClientTelemetry]:
        """Client instances with pushed metrics, plus those only known from a Get."""
        self._expire(_now_ms())
        out = list(self.telemetry.values())
        seen = set(self.telemetry)
        for inst in self.instances.values():
            if inst.instance_id not in seen:
                out.append(
                    ClientTelemetry(inst.instance_id, dict(inst.attributes), inst.subscription_id)
                )
        return out
