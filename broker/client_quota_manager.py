"""Client quotas enforced as Kafka's ClientQuotaManager with the DefaultQuotaCallback.

Each quota type (produce bytes, fetch bytes, request time) resolves a (user, client-id)
to the most specific entity that has that quota — user+client, user+default client, user,
default user+client, default user+default client, default user, client, default client —
and shares one windowed Rate among everyone mapped to the same metric tags. Recording
returns the KIP-219 throttle time; the connection puts it in the response and mutes the
channel that long. With no quota configured nothing is recorded (``active`` is False).
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import time
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from pybroker.broker.entity_refresh import StoreRefresher
from pybroker.broker.quota_rate import Rate, TokenBucket
from pybroker.protocol.codec import response_type
from pybroker.protocol.errors import ErrorCode, KafkaError
from pybroker.protocol.fetch_encoder import EncodedResponse
from pybroker.replication import client_quotas as cq

if TYPE_CHECKING:
    from pybroker.broker.context import RequestContext
    from pybroker.replication.entity_configs import EntityConfigStore

log = logging.getLogger(__name__)
# A fresh client's rate counts one window as elapsed (Kafka: quota.window.num - 1, which
# lets a new client send ten seconds' worth at once; broker/quota_rate.py says why).
MIN_WINDOWS = 1

PRODUCE, FETCH, REQUEST = "producer_byte_rate", "consumer_byte_rate", "request_percentage"
MUTATION = "controller_mutation_rate"
# CreateTopics, DeleteTopics, CreatePartitions: from these versions a mutation over the
# quota is refused with THROTTLING_QUOTA_EXCEEDED (KIP-599); older ones are only throttled.
STRICT_SINCE = {19: 6, 20: 5, 37: 3}
_mutation_throttle: ContextVar[int] = ContextVar("mutation_throttle", default=0)
# Inter-broker APIs Kafka answers with sendResponseExemptThrottle.
EXEMPT_APIS = frozenset({4, 5, 6, 7, 27})


def _user(principal: str) -> str:
    return principal.split(":", 1)[1] if ":" in principal else principal


class ThrottlingQuotaExceeded(KafkaError):
    """A refused mutation. Kafka's ApiError.fromThrowable drops a message that only
    repeats the code's, so the response carries none."""

    code = ErrorCode.throttling_quota_exceeded

    @property
    def message(self) -> str | None:  # type: ignore[override]
        return None


class ClientQuotaManager:
    def __init__(
        self, store: EntityConfigStore, samples: int = 11, window_s: int = 1, *, poll: bool
    ) -> None:
        self.store = store
        self.samples = samples
        self.window_ms = window_s * 1000
        self.active = False
        self._by_key: dict[str, dict[cq.Entity, float]] = {}
        self._sensors: dict[tuple[str, str, str], Rate] = {}
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._refresher = StoreRefresher(self.reload, "Client quota", poll)

    async def start(self) -> None:
        await self._refresher.start()

    def stop(self) -> None:
        self._refresher.stop()

    async def reload(self) -> None:
        entities = await cq.load_all(self.store)
        by_key: dict[str, dict[cq.Entity, float]] = {}
        for ent, values in entities.items():
            for key, value in values.items():
                by_key.setdefault(key, {})[ent] = value
        self._by_key = by_key
        self.active = any(k in by_key for k in (PRODUCE, FETCH, REQUEST, MUTATION))

    # ------------------------------------------------------------ resolution
    def metric_tags(self, key: str, user: str, client: str) -> tuple[str, str]:
        """DefaultQuotaCallback.quotaMetricTags."""
        q = self._by_key.get(key, {})
        u, c, du, dc = (
            (cq.USER, user),
            (cq.CLIENT_ID, client),
            (cq.USER, None),
            (cq.CLIENT_ID, None),
        )
        if frozenset({u, c}) in q or frozenset({u, dc}) in q:
            return user, client
        if frozenset({u}) in q:
            return user, ""
        if frozenset({du, c}) in q or frozenset({du, dc}) in q:
            return user, client
        if frozenset({du}) in q:
            return user, ""
        return "", client

    def quota_limit(self, key: str, user: str, client: str) -> float | None:
        """DefaultQuotaCallback.quotaLimit for metric tags (user, client)."""
        q = self._by_key.get(key, {})
        u, c, du, dc = (
            (cq.USER, user),
            (cq.CLIENT_ID, client),
            (cq.USER, None),
            (cq.CLIENT_ID, None),
        )
        if user and client:
            order = [{u, c}, {u, dc}, {du, c}, {du, dc}]
        elif user:
            order = [{u}, {du}]
        elif client:
            order = [{c}, {dc}]
        else:
            return None
        for ent in order:
            value = q.get(frozenset(ent))
            if value is not None:
                return value
        return None

    def record(self, key: str, principal: str, client_id: str | None, value: float) -> int:
        """Record ``value`` against the client's quota of ``key``; the throttle time in ms."""
        if key not in self._by_key:
            return 0
        tags = self.metric_tags(key, _user(principal), client_id or "")
        bound = self.quota_limit(key, *tags)
        if bound is None:
            return 0
        sensor = self._sensors.get((key, *tags))
        if sensor is None:
            sensor = self._sensors[(key, *tags)] = Rate(self.samples, self.window_ms, MIN_WINDOWS)
        throttle = sensor.record_and_throttle(value, bound, int(time.time() * 1000))
        if key == REQUEST:  # ClientRequestQuotaManager bounds it by one quota window
            throttle = min(throttle, self.window_ms)
        return throttle

    def max_fetch_bytes(self, principal: str, client_id: str | None) -> int:
        """getMaxValueInQuotaWindow: the most a fetch may return without certain throttling
        (quota x the windows a fresh rate counts: one here, samples - 1 in Kafka); caps the
        response as Kafka caps fetch.max.bytes."""
        tags = self.metric_tags(FETCH, _user(principal), client_id or "")
        bound = self.quota_limit(FETCH, *tags)
        if bound is None:
            return 2**31 - 1
        return int(min(bound * MIN_WINDOWS * self.window_ms / 1000, 2**31 - 1))

    # ------------------------------------------------------------ per response
    def on_response(
        self, ctx: RequestContext, body: Any, request_bytes: int, result: Any, local_s: float
    ) -> tuple[int, Any]:
        """(throttle time, response) for this request: the max over the quotas it counts
        against, the response carrying it."""
        api_key = ctx.header.api_key
        if api_key in EXEMPT_APIS or (api_key == 1 and _replica_id(body) >= 0):
            return 0, result  # inter-broker requests and follower fetches are never throttled
        principal, client = ctx.principal, ctx.client_id
        mutation = _mutation_throttle.get()
        if mutation:
            _mutation_throttle.set(0)
        # Request time as a percentage of one thread-second (nanosToPercentage).
        throttle = max(mutation, self.record(REQUEST, principal, client, local_s * 100.0))
        if api_key == 0:
            throttle = max(throttle, self.record(PRODUCE, principal, client, request_bytes))
        elif api_key == 1 and isinstance(result, EncodedResponse):
            # The records go out with the throttle time (the fetch was capped at one
            # window's worth, max_fetch_bytes): the client is held back until it has paid
            # for them. Kafka drops a throttled fetch's records instead, so a consumer that
            # always reads a full window gets about half its quota, and an incremental
            # fetch session would have to be left untouched.
            throttle = max(throttle, self.record(FETCH, principal, client, result.size))
        if throttle and result is not None:
            result = with_throttle(result, api_key, ctx.version, throttle)
        return throttle, result

    def charge_mutation(self, ctx: RequestContext, partitions: int) -> None:
        """applyPartitionChangeQuota: take ``partitions`` from the client's
        controller_mutation_rate bucket. Strict versions refuse (KafkaError
        THROTTLING_QUOTA_EXCEEDED) while the balance is negative; older versions always
        go ahead and are only throttled. The throttle lands in this request's response."""
        if MUTATION not in self._by_key:
            return
        tags = self.metric_tags(MUTATION, _user(ctx.principal), ctx.client_id or "")
        bound = self.quota_limit(MUTATION, *tags)
        if bound is None:
            return
        bucket = self._buckets.get(tags)
        if bucket is None:
            bucket = self._buckets[tags] = TokenBucket(self.samples, self.window_ms)
        now = int(time.time() * 1000)
        strict = ctx.version >= STRICT_SINCE.get(ctx.header.api_key, 1 << 15)
        if strict:
            throttle = TokenBucket.throttle_ms(bucket.measure(bound, now), bound)
            if throttle:
                _mutation_throttle.set(max(_mutation_throttle.get(), throttle))
                raise ThrottlingQuotaExceeded()
            bucket.record(partitions, bound, now)
            return
        bucket.record(partitions, bound, now)
        throttle = TokenBucket.throttle_ms(bucket.measure(bound, now), bound)
        if throttle:
            _mutation_throttle.set(max(_mutation_throttle.get(), throttle))


def _replica_id(body: Any) -> int:
    state = getattr(body, "replica_state", None)
    if state is not None:
        return int(state.replica_id)
    return int(getattr(body, "replica_id", -1))


def with_throttle(result: Any, api_key: int, version: int, throttle_ms: int) -> Any:
    """The response with its throttle_time_ms set (where this version has one)."""
    if isinstance(result, EncodedResponse):
        if api_key == 1 and version >= 1 and result.parts and isinstance(result.parts[0], bytes):
            first = result.parts[0]
            result.parts[0] = throttle_ms.to_bytes(4, "big") + first[4:]
        return result
    if isinstance(result, (bytes, bytearray)):
        fields = dataclasses.fields(response_type(api_key, version))
        if fields and fields[0].name == "throttle_time" and len(result) >= 4:
            return throttle_ms.to_bytes(4, "big") + bytes(result[4:])
        return result
    if dataclasses.is_dataclass(result) and any(
        f.name == "throttle_time" for f in dataclasses.fields(result)
    ):
        return dataclasses.replace(
            result, throttle_time=datetime.timedelta(milliseconds=throttle_ms)
        )
    return result


def charge_mutation(ctx: RequestContext, partitions: int) -> None:
    """The handlers' entry: ClientQuotaManager.charge_mutation when quotas are on."""
    quotas = getattr(ctx.broker, "client_quotas", None)
    if quotas is not None and quotas.active:
        quotas.charge_mutation(ctx, partitions)
