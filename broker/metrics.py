"""/metrics: the broker's state in Prometheus text format, named as Prometheus' JMX exporter
names Kafka's MBeans (its example kafka rules, lower-cased), so Kafka dashboards apply.

Nothing here runs on the request path. Counters are plain integers kept by their owners
(RequestMetrics, BrokerTopicStats, LOG_FLUSH_STATS); everything else is a gauge computed
when Prometheus scrapes, from the components handed to ``BrokerCollector`` (the replica
manager, log manager, coordinators, connections, purgatory). A scrape walks each hosted
partition and each committed group offset once: cost grows with partitions and groups,
never with records.

The README lists every exported name with the Kafka MBean it stands for.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import deque
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import Metric
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString as _go_float

from pybroker.broker.request_metrics import BUCKETS_MS, TIME_PARTS, RequestMetrics
from pybroker.protocol.errors import ErrorCode
from pybroker.replication.replica_manager import ReplicaManager
from pybroker.storage.flush_stats import FLUSH_BUCKETS_MS, LOG_FLUSH_STATS
from pybroker.storage.log_manager import LogManager


class LoopMonitor:
    """How busy the event loop is: CPU time of the loop's thread over wall time, sampled
    once a second over the last WINDOW seconds. The loop thread sleeps in epoll when idle,
    so its CPU time is the time it spent working: Kafka's network processors and request
    handlers are this one loop, so 1 - busy is both their idle ratios."""

    WINDOW = 10

    def __init__(self) -> None:
        self._samples: deque[tuple[float, float]] = deque(maxlen=self.WINDOW + 1)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._samples.append((time.monotonic(), time.thread_time()))
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self._samples.append((time.monotonic(), time.thread_time()))

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def idle_ratio(self) -> float:
        """Must be called on the loop's thread (thread_time is per thread)."""
        if not self._samples:
            return 1.0
        wall0, cpu0 = self._samples[0]
        wall, cpu = time.monotonic(), time.thread_time()
        if wall - wall0 <= 0:
            return 1.0
        return min(1.0, max(0.0, 1.0 - (cpu - cpu0) / (wall - wall0)))


@dataclass
class Readiness:
    """What /readyz reports: each start-up step flips its flag; stopping clears serving."""

    cluster_mode: bool = False
    recovered: bool = False
    registered: bool = False
    serving: bool = False

    def reason(self) -> str | None:
        if not self.recovered:
            return "starting: log recovery has not finished"
        if self.cluster_mode and not self.registered:
            return "not registered in the cluster (ZooKeeper)"
        if not self.serving:
            return "not serving (starting or shutting down)"
        return None


def _counter(name: str, doc: str) -> Metric:
    return Metric(name, doc, "counter")


def _gauge(name: str, doc: str) -> Metric:
    return Metric(name, doc, "gauge")


class BrokerCollector(Collector):
    """Everything /metrics shows, read from the components given at construction."""

    def __init__(
        self,
        *,
        requests: RequestMetrics,
        replica_manager: ReplicaManager,
        log_manager: LogManager,
        groups: Any,  # GroupCoordinator: .groups {id: group with .offsets, .state}
        transactions: Any,  # TransactionCoordinator: .partitions {p: cache with .txns}
        connections: Collection[Any],  # KafkaConnections (their .listener)
        listeners: Collection[str],
        fetch_purgatory: Any,  # FetchPurgatory (len)
        loop: LoopMonitor,
        node_id: int,
    ) -> None:
        self.requests = requests
        self.rm = replica_manager
        self.logs = log_manager
        self.groups = groups
        self.txns = transactions
        self.connections = connections
        self.listeners = tuple(listeners)
        self.purgatory = fetch_purgatory
        self.loop = loop
        self.node_id = node_id

    def collect(self) -> Iterator[Metric]:
        yield from self._topic_metrics()
        yield from self._request_metrics()
        yield from self._replica_metrics()
        yield from self._log_metrics()
        yield from self._group_metrics()
        yield from self._txn_metrics()
        yield from self._network_metrics()

    # ------------------------------------------------------------ BrokerTopicMetrics
    def _topic_metrics(self) -> Iterator[Metric]:
        stats = self.rm.topic_stats
        families = {
            "messagesin": ("MessagesInPerSec: records appended as leader", "messages_in"),
            "bytesin": ("BytesInPerSec: record batch bytes appended as leader", "bytes_in"),
            "bytesout": ("BytesOutPerSec: record bytes sent to consumers", "bytes_out"),
        }
        for short, (doc, attr) in families.items():
            base = f"kafka_server_brokertopicmetrics_{short}"
            m = _counter(base, doc)
            total = 0
            for topic, counters in sorted(stats.topics.items()):
                value = getattr(counters, attr)
                total += value
                m.add_sample(base + "_total", {"topic": topic}, value)
            m.add_sample(base + "_total", {}, total)  # Kafka's all-topics MBean
            yield m
        base = "kafka_server_brokertopicmetrics_replicationbytesout"
        m = _counter(base, "ReplicationBytesOutPerSec: record bytes sent to followers")
        m.add_sample(
            base + "_total",
            {},
            sum(c.replication_bytes_out for c in stats.topics.values()),
        )
        yield m

    # ------------------------------------------------------------ RequestMetrics
    def _request_metrics(self) -> Iterator[Metric]:
        apis = sorted(self.requests.apis.values(), key=lambda s: s.name)
        base = "kafka_network_requestmetrics_requests"
        m = _counter(base, "RequestsPerSec: requests answered, per API and version")
        for s in apis:
            for version, n in sorted(s.by_version.items()):
                m.add_sample(base + "_total", {"request": s.name, "version": str(version)}, n)
        yield m
        base = "kafka_network_requestmetrics_errors"
        m = _counter(base, "ErrorsPerSec: error codes in responses (NONE too), per API")
        for s in apis:
            for code, n in sorted(s.errors.items()):
                m.add_sample(base + "_total", {"request": s.name, "error": _error_name(code)}, n)
        yield m
        for i, part in enumerate(TIME_PARTS):
            name = f"kafka_network_requestmetrics_{part.lower()}"
            h = Metric(name, f"{part}: milliseconds, per API", "histogram")
            for s in apis:
                counts, total = s.histogram(i)
                _add_histogram(h, name, {"request": s.name}, counts, total)
            yield h

    # ------------------------------------------------------------ ReplicaManager
    def _replica_metrics(self) -> Iterator[Metric]:
        rm = self.rm
        leaders = under = under_min = at_min = 0
        delayed_produce = 0
        for part in list(rm.partitions.values()):
            if not part.is_leader or part.state is None:
                continue
            leaders += 1
            isr, replicas = len(part.state.isr), len(part.state.replicas)
            if isr < replicas:
                under += 1
            min_isr = part.log.config.min_insync_replicas
            if isr < min_isr:
                under_min += 1
            elif isr == min_isr:
                at_min += 1
            delayed_produce += part.pending_commits
        image = rm.image
        active = image is not None and image.controller_id == self.node_id
        offline = 0
        if active and image is not None:
            offline = sum(1 for t in image.topics.values() for p in t.partitions if p.leader < 0)
        base = "kafka_server_replicamanager_"
        for name, doc, value in (
            ("leadercount", "LeaderCount: partitions this broker leads", leaders),
            ("partitioncount", "PartitionCount: partitions hosted here", len(rm.partitions)),
            (
                "underreplicatedpartitions",
                "UnderReplicatedPartitions: led partitions whose ISR is smaller than replicas",
                under,
            ),
            (
                "underminisrpartitioncount",
                "UnderMinIsrPartitionCount: led partitions with ISR below min.insync.replicas",
                under_min,
            ),
            (
                "atminisrpartitioncount",
                "AtMinIsrPartitionCount: led partitions with ISR at min.insync.replicas",
                at_min,
            ),
        ):
            m = _gauge(base + name, doc)
            m.add_sample(base + name, {}, value)
            yield m
        for name, doc, value in (
            ("isrshrinks", "IsrShrinksPerSec: ISR shrinks written", rm.topic_stats.isr_shrinks),
            ("isrexpands", "IsrExpandsPerSec: ISR expansions written", rm.topic_stats.isr_expands),
        ):
            m = _counter(base + name, doc)
            m.add_sample(base + name + "_total", {}, value)
            yield m
        for name, doc, value in (
            ("activecontrollercount", "ActiveControllerCount: 1 on the controller", int(active)),
            (
                "offlinepartitionscount",
                "OfflinePartitionsCount: partitions without a leader (controller only)",
                offline,
            ),
        ):
            full = "kafka_controller_kafkacontroller_" + name
            m = _gauge(full, doc)
            m.add_sample(full, {}, value)
            yield m
        base = "kafka_server_delayedoperationpurgatory_purgatorysize"
        m = _gauge(base, "PurgatorySize: requests parked, per delayed operation")
        m.add_sample(base, {"delayedOperation": "Fetch"}, len(self.purgatory))
        m.add_sample(base, {"delayedOperation": "Produce"}, delayed_produce)
        yield m

    # ------------------------------------------------------------ Log
    def _log_metrics(self) -> Iterator[Metric]:
        size = _gauge("kafka_log_log_size", "Size: bytes of a partition's segments")
        segs = _gauge("kafka_log_log_numlogsegments", "NumLogSegments of a partition")
        end = _gauge("kafka_log_log_logendoffset", "LogEndOffset of a partition")
        start = _gauge("kafka_log_log_logstartoffset", "LogStartOffset of a partition")
        for lg in sorted(self.logs.all_logs(), key=lambda lg: (lg.topic, lg.partition)):
            if lg.closed:
                continue
            labels = {"topic": lg.topic, "partition": str(lg.partition)}
            segments = lg.segments
            size.add_sample("kafka_log_log_size", labels, sum(s.size for s in segments))
            segs.add_sample("kafka_log_log_numlogsegments", labels, len(segments))
            end.add_sample("kafka_log_log_logendoffset", labels, lg.log_end_offset)
            start.add_sample("kafka_log_log_logstartoffset", labels, lg.log_start_offset)
        yield from (size, segs, end, start)
        counts, total = LOG_FLUSH_STATS.snapshot()
        name = "kafka_log_logflushstats_logflushrateandtimems"
        h = Metric(name, "LogFlushRateAndTimeMs: milliseconds per log flush (fsync)", "histogram")
        _add_histogram(h, name, {}, counts, total, FLUSH_BUCKETS_MS)
        yield h

    # ------------------------------------------------------------ groups
    def _group_metrics(self) -> Iterator[Metric]:
        classic: dict[str, int] = {}
        consumer: dict[str, int] = {}
        num_offsets = 0
        current = _gauge("kafka_consumergroup_current_offset", "Committed offset per partition")
        lag = _gauge("kafka_consumergroup_lag", "High watermark minus committed offset")
        members = _gauge("kafka_consumergroup_members", "Members of a consumer group")
        for group_id, group in sorted(self.groups.groups.items()):
            state = group.state.value
            kind = consumer if type(group).__name__ == "ConsumerGroup" else classic
            kind[state] = kind.get(state, 0) + 1
            members.add_sample(
                "kafka_consumergroup_members",
                {"consumergroup": group_id},
                len(group.members),
            )
            for (topic, partition), om in sorted(group.offsets.items()):
                num_offsets += 1
                labels = {"consumergroup": group_id, "topic": topic, "partition": str(partition)}
                current.add_sample("kafka_consumergroup_current_offset", labels, om.offset)
                lg = self.logs.get_log(topic, partition)
                if lg is not None and not lg.closed:
                    lag.add_sample("kafka_consumergroup_lag", labels, lg.high_watermark - om.offset)
        yield from (current, lag, members)
        base = "kafka_coordinator_group_groupmetadatamanager_"
        for name, state in (
            ("numgroupspreparingrebalance", "PreparingRebalance"),
            ("numgroupscompletingrebalance", "CompletingRebalance"),
            ("numgroupsstable", "Stable"),
            ("numgroupsdead", "Dead"),
            ("numgroupsempty", "Empty"),
        ):
            m = _gauge(base + name, f"NumGroups{state}: classic groups in state {state}")
            m.add_sample(base + name, {}, classic.get(state, 0))
            yield m
        m = _gauge(base + "numgroups", "NumGroups: groups this coordinator owns")
        m.add_sample(base + "numgroups", {}, sum(classic.values()) + sum(consumer.values()))
        yield m
        m = _gauge(base + "numoffsets", "NumOffsets: committed offsets this coordinator holds")
        m.add_sample(base + "numoffsets", {}, num_offsets)
        yield m
        name = "kafka_server_group_coordinator_metrics_consumer_group_count"
        m = _gauge(name, "consumer-group-count: KIP-848 consumer groups per state")
        for state in ("Empty", "Assigning", "Reconciling", "Stable", "Dead"):
            m.add_sample(name, {"state": state.lower()}, consumer.get(state, 0))
        yield m

    # ------------------------------------------------------------ transactions
    def _txn_metrics(self) -> Iterator[Metric]:
        by_state: dict[str, int] = {}
        for cache in list(self.txns.partitions.values()):
            for txn in cache.txns.values():
                label = txn.state.value[1]
                by_state[label] = by_state.get(label, 0) + 1
        name = "pybroker_transaction_coordinator_transactions"
        m = _gauge(name, "Transactional ids this coordinator owns, per state (no Kafka MBean)")
        for state in sorted(by_state):
            m.add_sample(name, {"state": state}, by_state[state])
        yield m

    # ------------------------------------------------------------ network
    def _network_metrics(self) -> Iterator[Metric]:
        per_listener = dict.fromkeys(self.listeners, 0)
        for conn in list(self.connections):
            per_listener[conn.listener] = per_listener.get(conn.listener, 0) + 1
        name = "kafka_server_socket_server_metrics_connection_count"
        m = _gauge(name, "connection-count: open connections per listener")
        for listener, n in sorted(per_listener.items()):
            m.add_sample(name, {"listener": listener, "networkProcessor": "0"}, n)
        yield m
        idle = self.loop.idle_ratio()
        for name, doc in (
            (
                "kafka_network_socketserver_networkprocessoravgidle_percent",
                "NetworkProcessorAvgIdlePercent: 1 - the event loop's busy ratio (0..1)",
            ),
            (
                "kafka_server_kafkarequesthandlerpool_requesthandleravgidle_percent",
                "RequestHandlerAvgIdlePercent: the same loop, so the same ratio (0..1)",
            ),
        ):
            m = _gauge(name, doc)
            m.add_sample(name, {}, idle)
            yield m


def _add_histogram(
    metric: Metric,
    name: str,
    labels: dict[str, str],
    counts: list[int],
    total: float,
    bounds: tuple[float, ...] = BUCKETS_MS,
) -> None:
    """Cumulative ``_bucket`` samples (per-bucket ``counts``, the last one +Inf), ``_sum``
    and ``_count``, as Prometheus histograms are exposed."""
    running = 0
    bucket = name + "_bucket"
    for le, n in zip(_le_labels(bounds), counts, strict=False):
        running += n
        metric.add_sample(bucket, {**labels, "le": le}, running)
    running += counts[-1]
    metric.add_sample(name + "_bucket", {**labels, "le": "+Inf"}, running)
    metric.add_sample(name + "_sum", labels, total)
    metric.add_sample(name + "_count", labels, running)


@functools.cache
def _le_labels(bounds: tuple[float, ...]) -> tuple[str, ...]:
    return tuple(_go_float(b) for b in bounds)


def render(registry: CollectorRegistry) -> bytes:
    """The Prometheus text format (0.0.4) of every collector in ``registry``.

    prometheus_client's ``generate_latest`` validates and escapes every label name of every
    sample (~12 us a line here), which blocks the broker's loop for tens of milliseconds
    per scrape once a few thousand lines exist. Our label names are fixed valid constants,
    so only label values need escaping; this writes the same format about 4x faster."""
    out: list[str] = []
    append = out.append
    for metric in registry.collect():
        mname, mtype = metric.name, metric.type
        if mtype == "counter":
            mname += "_total"
        elif mtype == "unknown":
            mtype = "untyped"
        doc = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
        append(f"# HELP {mname} {doc}\n# TYPE {mname} {mtype}\n")
        for sample in metric.samples:
            labels = sample.labels
            value = sample.value
            text = repr(float(value)) if type(value) is int else _go_float(value)
            if labels:
                inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
                append(f"{sample.name}{{{inner}}} {text}\n")
            else:
                append(f"{sample.name} {text}\n")
    return "".join(out).encode()


def _escape(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", r"\\").replace('"', r"\"").replace("\n", r"\n")
    return value


def _error_name(code: int) -> str:
    try:
        return ErrorCode(code).name.upper()
    except ValueError:
        return str(code)
