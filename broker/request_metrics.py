"""Per-request counters and timings (Kafka's RequestChannel metrics) and the request log.

The connection calls ``begin`` when a request's handler starts and the returned
``RequestTiming`` twice more (``handled``, ``done``); everything else happens at scrape time.
The hot path is plain list and dict increments plus a bisect into fixed buckets: no locks,
no prometheus_client objects, no per-record work; the only per-partition work is reading
each partition's error code from the response (Kafka's ``AbstractResponse.errorCounts``
does the same). About 2 us per request in all.

Kafka splits a request's life into RequestQueueTimeMs (waiting for a handler),
LocalTimeMs (in the handler), RemoteTimeMs (parked in a purgatory: long-poll fetches,
acks=all produce), ThrottleTimeMs, ResponseQueueTimeMs and ResponseSendTimeMs; TotalTimeMs
is their sum. Here: queue = from the later of "the request's last byte arrived" and "the
previous request on this connection finished" to the handler start (Kafka mutes a channel
while a request is in flight, so waiting behind one's own earlier request is not queue
time there either); remote = time spent inside ``remote(...)`` awaits; local = the rest of
the handler; send = writing the response (immediate for buffered writes, sendfile for
fetches); throttle = the KIP-219 throttle time the response carried (client quotas; the
channel is muted for that long after the response is sent, so it is not in TotalTimeMs,
as in Kafka). There is no response queue: the connection writes
its own responses, so ResponseQueueTimeMs is not exported.

The request log (logger ``pybroker.request``, Kafka's ``kafka.request.logger``) writes one
DEBUG line per completed request.
"""

from __future__ import annotations

import logging
import time
import typing
from bisect import bisect_left
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

from pybroker.protocol.fetch_encoder import EncodedResponse, FetchTopic
from pybroker.replication.topic_stats import BrokerTopicStats

if TYPE_CHECKING:
    from pybroker.broker.context import RequestContext

request_log = logging.getLogger("pybroker.request")

T = TypeVar("T")

# Bucket upper bounds in milliseconds, shared by every request latency histogram.
BUCKETS_MS: tuple[float, ...] = (
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0, 30000.0,
)  # fmt: skip

# Kafka's names of the parts of a request's time, in export order.
TIME_PARTS = (
    "RequestQueueTimeMs",
    "LocalTimeMs",
    "RemoteTimeMs",
    "ThrottleTimeMs",
    "ResponseSendTimeMs",
    "TotalTimeMs",
)

_now = time.perf_counter


NB = len(BUCKETS_MS) + 1  # buckets per histogram, the last one +Inf


class ApiStats:
    """One API's requests by version, errors by code, and its time histograms: one flat
    list of bucket counts (NB per part of TIME_PARTS, in that order) and one of sums, so
    recording a request touches two lists."""

    __slots__ = ("name", "by_version", "errors", "counts", "sums")

    def __init__(self, name: str) -> None:
        self.name = name
        self.by_version: dict[int, int] = {}
        self.errors: dict[int, int] = {}
        self.counts = [0] * (NB * len(TIME_PARTS))
        self.sums = [0.0] * len(TIME_PARTS)

    def histogram(self, part: int) -> tuple[list[int], float]:
        """(per-bucket counts, sum) of TIME_PARTS[part]."""
        return self.counts[part * NB : (part + 1) * NB], self.sums[part]


class RequestMetrics:
    """Every API's stats for this broker; ``enabled`` False makes ``begin`` hand out a
    timing that only logs (when the request logger is at DEBUG) and counts nothing."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.apis: dict[int, ApiStats] = {}

    def begin(self, ctx: RequestContext, request_bytes: int, last_active: float) -> RequestTiming:
        """The handler is about to run; ``last_active`` is the connection's monotonic time
        of its last read or finished request (time.monotonic)."""
        key = ctx.header.api_key
        stats = self.apis.get(key) if self.enabled else None
        if stats is None and self.enabled:
            stats = self.apis[key] = ApiStats(_api_name(ctx))
        timing = RequestTiming(ctx, stats, request_bytes, max(0.0, time.monotonic() - last_active))
        _current.set(timing)
        return timing


class RequestTiming:
    __slots__ = (
        "ctx",
        "stats",
        "request_bytes",
        "queue",
        "start",
        "handled_at",
        "remote",
        "throttle_ms",
    )

    def __init__(
        self, ctx: RequestContext, stats: ApiStats | None, request_bytes: int, queue_s: float
    ) -> None:
        self.ctx = ctx
        self.stats = stats
        self.request_bytes = request_bytes
        self.queue = queue_s
        self.start = _now()
        self.handled_at = 0.0
        self.remote = 0.0
        self.throttle_ms = 0  # set by the connection when a quota throttles the response

    def handled(self, result: Any) -> None:
        """The handler returned ``result`` (None: no response, acks=0)."""
        self.handled_at = _now()
        stats = self.stats
        if stats is not None and result is not None and not isinstance(result, EncodedResponse):
            if isinstance(result, (bytes, bytearray)):
                errors = stats.errors  # prebuilt bodies (ApiVersions) carry no error
                errors[0] = errors.get(0, 0) + 1
            else:
                count_errors(result, stats.errors)

    def done(self, response_bytes: int) -> None:
        """The response is written (``response_bytes`` with its size prefix and header)."""
        end = _now()
        if not self.handled_at:
            self.handled_at = end
        queue_ms = self.queue * 1000
        handler_ms = (self.handled_at - self.start) * 1000
        remote_ms = min(self.remote * 1000, handler_ms)
        send_ms = (end - self.handled_at) * 1000
        total_ms = queue_ms + (end - self.start) * 1000
        stats = self.stats
        if stats is not None:
            version = self.ctx.header.api_version
            by_version = stats.by_version
            by_version[version] = by_version.get(version, 0) + 1
            counts, sums = stats.counts, stats.sums
            bounds = BUCKETS_MS
            local_ms = handler_ms - remote_ms
            counts[bisect_left(bounds, queue_ms)] += 1
            sums[0] += queue_ms
            counts[NB + bisect_left(bounds, local_ms)] += 1
            sums[1] += local_ms
            counts[2 * NB + (bisect_left(bounds, remote_ms) if remote_ms else 0)] += 1
            sums[2] += remote_ms
            throttle_ms = self.throttle_ms
            counts[3 * NB + (bisect_left(bounds, throttle_ms) if throttle_ms else 0)] += 1
            sums[3] += throttle_ms
            counts[4 * NB + bisect_left(bounds, send_ms)] += 1
            sums[4] += send_ms
            counts[5 * NB + bisect_left(bounds, total_ms)] += 1
            sums[5] += total_ms
        if request_log.isEnabledFor(logging.DEBUG):
            ctx = self.ctx
            request_log.debug(
                "Completed request: %s v%d correlationId=%d clientId=%s principal=%s "
                "listener=%s peer=%s requestBytes=%d responseBytes=%d totalTimeMs=%.3f "
                "requestQueueTimeMs=%.3f localTimeMs=%.3f remoteTimeMs=%.3f throttleTimeMs=%d "
                "sendTimeMs=%.3f",
                _api_name(ctx),
                ctx.header.api_version,
                ctx.header.correlation_id,
                ctx.header.client_id,
                ctx.principal,
                ctx.listener,
                ctx.peer,
                self.request_bytes,
                response_bytes,
                total_ms,
                queue_ms,
                handler_ms - remote_ms,
                remote_ms,
                self.throttle_ms,
                send_ms,
            )

    def count_errors(self, codes: dict[int, int]) -> None:
        """Add error counts a handler gathered itself (hand-encoded responses)."""
        if self.stats is not None:
            errors = self.stats.errors
            for code, n in codes.items():
                errors[code] = errors.get(code, 0) + n


_current: ContextVar[RequestTiming | None] = ContextVar("pybroker_request_timing", default=None)


async def remote(awaitable: Awaitable[T]) -> T:
    """Await a purgatory wait (delayed fetch, acks=all): its time is RemoteTimeMs."""
    timing = _current.get()
    start = _now()
    try:
        return await awaitable
    finally:
        if timing is not None:
            timing.remote += _now() - start


def _api_name(ctx: RequestContext) -> str:
    from pybroker.broker.handlers.registry import REGISTRY

    spec = REGISTRY.get(ctx.header.api_key)
    return spec.name if spec is not None else str(ctx.header.api_key)


# ----------------------------------------------------------------- error counting
# Per response class, a counting function compiled once from the kio dataclass's field
# types: it reads ``error_code`` and descends only into fields whose entities can hold one.
ErrorCounter = Callable[[Any, dict[int, int]], None]
_COUNTERS: dict[type, ErrorCounter | None] = {}


def _entity(tp: Any) -> type | None:
    """The entity class a field holds (X, X | None), or None."""
    if hasattr(tp, "__dataclass_fields__"):
        return tp  # type: ignore[no-any-return]
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if len(args) == 1 and hasattr(args[0], "__dataclass_fields__"):
        return args[0]  # type: ignore[no-any-return]
    return None


def _counter_for(cls: type) -> ErrorCounter | None:
    if cls in _COUNTERS:
        return _COUNTERS[cls]
    _COUNTERS[cls] = None  # kio schemas are trees, but never recurse forever
    has_code = False
    many: list[tuple[str, ErrorCounter]] = []
    one: list[tuple[str, ErrorCounter]] = []
    for name, f in getattr(cls, "__dataclass_fields__", {}).items():
        if name.startswith("__") or isinstance(f.type, str):
            continue
        if name == "error_code":
            has_code = True
            continue
        tp = f.type
        if typing.get_origin(tp) is tuple:
            args = typing.get_args(tp)
            sub = (
                _counter_for(args[0]) if args and hasattr(args[0], "__dataclass_fields__") else None
            )
            if sub is not None:
                many.append((name, sub))
        elif (entity := _entity(tp)) is not None and (sub := _counter_for(entity)) is not None:
            one.append((name, sub))
    if not has_code and not many and not one:
        return None
    many_t, one_t = tuple(many), tuple(one)

    def count(obj: Any, out: dict[int, int]) -> None:
        if has_code:
            code = int(obj.error_code)
            out[code] = out.get(code, 0) + 1
        for name, sub in many_t:
            for item in getattr(obj, name):
                sub(item, out)
        for name, sub in one_t:
            value = getattr(obj, name)
            if value is not None:
                sub(value, out)

    _COUNTERS[cls] = count
    return count


def count_errors(obj: Any, out: dict[int, int]) -> None:
    """Kafka's AbstractResponse.errorCounts: every error code in the response, NONE too."""
    counter = _COUNTERS.get(type(obj)) or _counter_for(type(obj))
    if counter is not None:
        counter(obj, out)


def record_fetch(stats: BrokerTopicStats, follower: bool, topics: list[FetchTopic]) -> None:
    """A Fetch response's record bytes per topic (BytesOut for consumers, ReplicationBytesOut
    for followers) and its error counts (top level and per partition, as
    FetchResponse.errorCounts has them): one pass over the partitions, none over records."""
    errors: dict[int, int] = {0: 1}
    for topic in topics:
        size = 0
        for p in topic.partitions:
            code = p.error_code
            errors[code] = errors.get(code, 0) + 1
            for piece in p.records:
                size += len(piece) if isinstance(piece, (bytes, bytearray)) else piece.length
        if size and topic.name:
            counters = stats.of(topic.name)
            if follower:
                counters.replication_bytes_out += size
            else:
                counters.bytes_out += size
    timing = _current.get()
    if timing is not None:
        timing.count_errors(errors)
