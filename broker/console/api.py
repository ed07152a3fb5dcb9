"""The console's JSON views (see the contract in the README's "Web console" paragraph).

Each view is computed when a page asks, from the broker's own components: the cluster
image (metadata), the replica manager's partitions and logs (offsets, segments, records),
the group and transaction coordinators, BrokerTopicStats through the rate sampler. Nothing
here opens a file: segment facts come from the LogSegment objects, records from Log.read.

What a viewer sees follows the ACLs (``Viewer``): topics need DESCRIBE, groups DESCRIBE,
records READ on the topic, transactions DESCRIBE on the transactional id. A viewer without
a principal (no login required) sees everything, like Kafka without an authorizer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pybroker.broker.console.records import read_records
from pybroker.broker.console.samplers import LagSampler, RateSampler, total_rates
from pybroker.broker.groups.consumer_protocol import parse_assignment
from pybroker.protocol.errors import KafkaError
from pybroker.replication.acls import AclOperation, ResourceType

MAX_PRODUCERS = 1000  # /api/transactions lists at most this many producer states


@dataclass(frozen=True, slots=True)
class ConsoleSources:
    """What the console reads, handed over by the Broker that wires it (the console gets
    these components, not the Broker). The coordinators and the replica manager exist
    before the endpoint starts; their contents (metadata image, groups, ACLs) fill in
    later, which is why every view reads them when asked."""

    config: Any  # BrokerConfig
    node_id: int
    cluster_mode: bool  # ZooKeeper mode (else a single node)
    replica_manager: Any  # ReplicaManager: .image, .partitions, .topic_stats
    log_manager: Any  # LogManager: .get_log
    group_coordinator: Any  # .groups
    txn_coordinator: Any  # .partitions
    authorizer: Any  # None without authorizer.class.name
    sasl: Any  # SaslService: .listeners, .scram_credential, .delay_ms
    client_metrics: Callable[[], Any]  # the ClientMetricsManager once started, else None


class NotFound(Exception):
    """A 404 with this message."""


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is looking: ``principal`` None = no login required, everything is visible."""

    principal: str | None = None
    host: str = ""

    def allowed(self, authorizer: Any, op: AclOperation, rtype: ResourceType, name: str) -> bool:
        if self.principal is None or authorizer is None:
            return True
        return bool(authorizer.authorize(self.principal, self.host, op, rtype, name))


EVERYONE = Viewer()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pybroker")
    except PackageNotFoundError:
        return "unknown"


class ConsoleApi:
    """The views over ``sources``."""

    def __init__(self, sources: ConsoleSources) -> None:
        self.sources = sources
        self.started_ms = int(time.time() * 1000)
        self.version = _version()
        rm = sources.replica_manager
        self.rates = RateSampler(
            lambda: {
                name: (c.messages_in, c.bytes_in, c.bytes_out)
                for name, c in list(rm.topic_stats.topics.items())
            }
        )
        self.lag = LagSampler(self.group_lag_totals)

    # ------------------------------------------------------------------ helpers
    @property
    def image(self) -> Any:
        return self.sources.replica_manager.image

    def _image_or_empty(self) -> Any:
        image = self.image
        if image is None:
            raise NotFound("metadata is not loaded yet")
        return image

    def _allowed(self, viewer: Viewer, op: AclOperation, rtype: ResourceType, name: str) -> bool:
        return viewer.allowed(self.sources.authorizer, op, rtype, name)

    def _partition_state(self, topic: str, index: int, image_state: Any) -> Any:
        """The freshest leader/ISR: the local partition's when we lead it, else the image's."""
        part = self.sources.replica_manager.partitions.get((topic, index))
        if part is not None and part.is_leader and part.state is not None:
            return part.state
        return image_state

    def _local_log(self, topic: str, index: int) -> Any:
        lg = self.sources.log_manager.get_log(topic, index)
        return None if lg is None or lg.closed else lg

    # ------------------------------------------------------------------ /api/cluster
    def cluster(self, viewer: Viewer) -> dict[str, Any]:
        image = self.image
        config = self.sources.config
        protocols = dict(config.listener_security_protocol_map)
        brokers = []
        if image is not None:
            for node_id, info in sorted(image.brokers.items()):
                endpoints = info.endpoints or (("", info.host, info.port),)
                brokers.append(
                    {
                        "id": node_id,
                        "host": info.host,
                        "port": info.port,
                        "rack": info.rack,
                        "is_controller": node_id == image.controller_id,
                        "listeners": [
                            {
                                "name": name,
                                "host": host,
                                "port": port,
                                "security_protocol": protocols.get(name, name or "PLAINTEXT"),
                            }
                            for name, host, port in endpoints
                        ],
                    }
                )
        return {
            "cluster_id": image.cluster_id if image is not None else None,
            "node_id": self.sources.node_id,
            "controller_id": image.controller_id if image is not None else None,
            "mode": "zookeeper" if self.sources.cluster_mode else "single",
            "version": self.version,
            "brokers": brokers,
            "started_ms": self.started_ms,
        }

    # ------------------------------------------------------------------ /api/topics
    def topics(self, viewer: Viewer) -> dict[str, Any]:
        image = self.image
        rates = self.rates.rates()
        out = []
        for name, info in sorted(image.topics.items()) if image is not None else ():
            if not self._allowed(viewer, AclOperation.DESCRIBE, ResourceType.TOPIC, name):
                continue
            under = offline = size = 0
            for p in info.partitions:
                state = self._partition_state(name, p.partition, p)
                if len(state.isr) < len(state.replicas):
                    under += 1
                if state.leader < 0:
                    offline += 1
                lg = self._local_log(name, p.partition)
                if lg is not None:
                    size += lg.size_bytes()
            rate = rates.get(name, {})
            out.append(
                {
                    "name": name,
                    "topic_id": str(info.topic_id),
                    "internal": info.is_internal,
                    "partitions": len(info.partitions),
                    "replication_factor": len(info.partitions[0].replicas)
                    if info.partitions
                    else 0,
                    "under_replicated": under,
                    "offline": offline,
                    "size_bytes": size,
                    "messages_in_per_sec": rate.get("messages_in_per_sec", 0.0),
                    "bytes_in_per_sec": rate.get("bytes_in_per_sec", 0.0),
                    "bytes_out_per_sec": rate.get("bytes_out_per_sec", 0.0),
                }
            )
        return {"topics": out}

    def topic(self, viewer: Viewer, name: str) -> dict[str, Any]:
        image = self._image_or_empty()
        info = image.topics.get(name)
        if info is None or not self._allowed(
            viewer, AclOperation.DESCRIBE, ResourceType.TOPIC, name
        ):
            raise NotFound(f"no topic {name!r}")
        partitions = []
        for p in info.partitions:
            state = self._partition_state(name, p.partition, p)
            row: dict[str, Any] = {
                "partition": p.partition,
                "leader": state.leader,
                "leader_epoch": state.leader_epoch,
                "replicas": list(state.replicas),
                "isr": list(state.isr),
                "out_of_sync": [r for r in state.replicas if r not in state.isr],
                "offline": state.leader < 0,
            }
            lg = self._local_log(name, p.partition)
            row["local"] = lg is not None
            row.update(_log_view(lg))
            partitions.append(row)
        return {
            "name": name,
            "topic_id": str(info.topic_id),
            "internal": info.is_internal,
            "configs": dict(sorted(info.configs.items())),
            "partitions": partitions,
        }

    # ------------------------------------------------------------------ groups
    def _visible_groups(self, viewer: Viewer) -> list[tuple[str, Any]]:
        groups = self.sources.group_coordinator.groups
        return [
            (gid, g)
            for gid, g in sorted(groups.items())
            if g.state.value != "Dead"
            and self._allowed(viewer, AclOperation.DESCRIBE, ResourceType.GROUP, gid)
        ]

    def _offsets(self, group: Any) -> list[dict[str, Any]]:
        rows = []
        for (topic, partition), om in sorted(group.offsets.items()):
            lg = self._local_log(topic, partition)
            end = lg.high_watermark if lg is not None else None
            rows.append(
                {
                    "topic": topic,
                    "partition": partition,
                    "committed_offset": om.offset,
                    "log_end_offset": end,
                    "lag": None if end is None else end - om.offset,
                    "metadata": om.metadata,
                }
            )
        return rows

    def group_lag_totals(self) -> dict[str, int]:
        """Group id -> summed lag over its committed offsets on local logs (the sampler's)."""
        totals: dict[str, int] = {}
        get_log = self.sources.log_manager.get_log
        for gid, group in list(self.sources.group_coordinator.groups.items()):
            total = 0
            for (topic, partition), om in group.offsets.items():
                lg = get_log(topic, partition)
                if lg is not None and not lg.closed:
                    total += max(0, lg.high_watermark - om.offset)
            totals[gid] = total
        return totals

    def groups(self, viewer: Viewer) -> dict[str, Any]:
        out = []
        for gid, group in self._visible_groups(viewer):
            lags = [r["lag"] for r in self._offsets(group) if r["lag"] is not None]
            out.append(
                {
                    "group_id": gid,
                    "group_type": _group_type(group),
                    "protocol_type": group.protocol_type,
                    "state": group.state.value,
                    "members": len(group.members),
                    "total_lag": sum(max(0, lag) for lag in lags),
                }
            )
        return {"groups": out}

    def group(self, viewer: Viewer, group_id: str) -> dict[str, Any]:
        group = self.sources.group_coordinator.groups.get(group_id)
        if (
            group is None
            or group.state.value == "Dead"
            or not self._allowed(viewer, AclOperation.DESCRIBE, ResourceType.GROUP, group_id)
        ):
            raise NotFound(f"no group {group_id!r}")
        kind = _group_type(group)
        if kind == "consumer":
            epoch, protocol = group.group_epoch, _consumer_assignor(group)
        else:
            epoch, protocol = group.generation_id, group.protocol_name
        return {
            "group_id": group_id,
            "group_type": kind,
            "protocol_type": group.protocol_type,
            "protocol": protocol,
            "state": group.state.value,
            "epoch": epoch,
            "members": [self._member(kind, m) for _, m in sorted(group.members.items())],
            "offsets": self._offsets(group),
            "lag_history": self.lag.of(group_id),
        }

    def _member(self, kind: str, member: Any) -> dict[str, Any]:
        if kind == "consumer":
            instance = member.instance_id
            by_id = self.image.topic_by_id if self.image is not None else (lambda _id: None)
            assigned: dict[str, list[int]] = {}
            for topic_id, parts in member.assigned.items():
                info = by_id(topic_id)
                assigned[info.name if info else str(topic_id)] = sorted(parts)
        else:
            instance = member.group_instance_id
            try:
                parsed = parse_assignment(member.assignment) if member.assignment else {}
            except Exception:  # not the consumer protocol (connect, a custom protocol)
                parsed = {}
            assigned = {t: sorted(p) for t, p in parsed.items()}
        return {
            "member_id": member.member_id,
            "client_id": member.client_id,
            "client_host": member.client_host,
            "group_instance_id": instance,
            "assignment": [{"topic": t, "partitions": p} for t, p in sorted(assigned.items())],
        }

    # ------------------------------------------------------------------ transactions
    def transactions(self, viewer: Viewer) -> dict[str, Any]:
        txns = []
        for cache in list(self.sources.txn_coordinator.partitions.values()):
            for txn_id, txn in sorted(cache.txns.items()):
                if not self._allowed(
                    viewer, AclOperation.DESCRIBE, ResourceType.TRANSACTIONAL_ID, txn_id
                ):
                    continue
                txns.append(
                    {
                        "transactional_id": txn_id,
                        "producer_id": txn.producer_id,
                        "producer_epoch": txn.producer_epoch,
                        "state": txn.state.value[1],
                        "timeout_ms": txn.timeout_ms,
                        "start_ms": txn.start_ms if txn.start_ms >= 0 else None,
                        "partitions": [
                            {"topic": t, "partition": p} for t, p in sorted(txn.partitions)
                        ],
                    }
                )
        txns.sort(key=lambda t: t["transactional_id"])
        producers: list[dict[str, Any]] = []
        readable: dict[str, bool] = {}
        for (topic, index), part in sorted(self.sources.replica_manager.partitions.items()):
            if not part.is_leader or len(producers) >= MAX_PRODUCERS:
                continue
            if topic not in readable:
                op, rtype = AclOperation.READ, ResourceType.TOPIC
                readable[topic] = self._allowed(viewer, op, rtype, topic)
            if not readable[topic]:
                continue
            for pid, entry in sorted(part.log.producer_state.producers.items()):
                producers.append(
                    {
                        "topic": topic,
                        "partition": index,
                        "producer_id": pid,
                        "producer_epoch": entry.producer_epoch,
                        "last_sequence": entry.last_seq,
                        "last_timestamp": entry.last_timestamp,
                        "current_txn_start_offset": entry.current_txn_first_offset,
                    }
                )
        return {"transactions": txns, "producers": producers[:MAX_PRODUCERS]}

    # ------------------------------------------------------------------ records
    def records(
        self, viewer: Viewer, topic: str, partition: int, offset: int, max_records: int
    ) -> dict[str, Any]:
        image = self._image_or_empty()
        info = image.topics.get(topic)
        if info is None or not self._allowed(viewer, AclOperation.READ, ResourceType.TOPIC, topic):
            raise NotFound(f"no topic {topic!r}")
        if not 0 <= partition < len(info.partitions):
            raise NotFound(f"topic {topic!r} has no partition {partition}")
        lg = self._local_log(topic, partition)
        if lg is None:
            raise NotFound(f"{topic}-{partition} has no replica on this broker")
        try:
            body = read_records(lg, offset, max_records)
        except KafkaError as exc:
            raise NotFound(f"{topic}-{partition} cannot be read here: {exc}") from None
        return {"topic": topic, "partition": partition, **body}

    # ------------------------------------------------------------------ rates
    def rates_view(self, viewer: Viewer) -> dict[str, Any]:
        rates = self.rates.rates()
        visible = {
            name: r
            for name, r in sorted(rates.items())
            if self._allowed(viewer, AclOperation.DESCRIBE, ResourceType.TOPIC, name)
        }
        return {"t": int(time.time() * 1000), "topics": visible, "total": total_rates(visible)}


def _group_type(group: Any) -> str:
    return "consumer" if type(group).__name__ == "ConsumerGroup" else "classic"


def _consumer_assignor(group: Any) -> str | None:
    """The server assignor the members ask for (Kafka reports the group's chosen one)."""
    names = {m.server_assignor for m in group.members.values() if m.server_assignor}
    if len(names) == 1:
        return names.pop()
    return "uniform" if group.members else None


def _log_view(lg: Any) -> dict[str, Any]:
    """Offsets, size and segments of a local Log (nulls and [] when not local)."""
    if lg is None:
        return {
            "log_start_offset": None,
            "log_end_offset": None,
            "high_watermark": None,
            "last_stable_offset": None,
            "size_bytes": None,
            "segments": [],
        }
    segments = lg.segments
    rows = []
    for i, seg in enumerate(segments):
        nxt = segments[i + 1].base_offset if i + 1 < len(segments) else lg.log_end_offset
        first = seg.header_at(0) if seg.size else None
        rows.append(
            {
                "base_offset": seg.base_offset,
                "next_offset": nxt,
                "size_bytes": seg.size,
                "first_timestamp": first.base_timestamp if first is not None else None,
                "max_timestamp": _max_timestamp(seg),
                "index_bytes": _index_bytes(seg.offset_index),
                "timeindex_bytes": _index_bytes(seg.time_index),
                "txnindex_bytes": _txn_index_bytes(seg.txn_index),
                "active": bool(seg.active),
            }
        )
    return {
        "log_start_offset": lg.log_start_offset,
        "log_end_offset": lg.log_end_offset,
        "high_watermark": lg.high_watermark,
        "last_stable_offset": lg.last_stable_offset,
        "size_bytes": sum(s.size for s in segments),
        "segments": rows,
    }


def _max_timestamp(seg: Any) -> int | None:
    ts = seg.max_timestamp()
    return ts if ts >= 0 else None


def _index_bytes(index: Any) -> int:
    """Bytes of entries (what the file holds once trimmed; the active one is preallocated)."""
    return int(index.entries) * int(index.entry_size)


def _txn_index_bytes(index: Any) -> int:
    from pybroker.storage.txn_index import ENTRY_SIZE

    entries = index.entries()
    return len(entries) * ENTRY_SIZE
