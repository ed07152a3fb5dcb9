"""KIP-714 pushed client metrics in /metrics and /api/clients.

``kafka_client_telemetry_metric`` is one gauge per pushed data point, labelled with the
client instance, its client id and the OTLP metric name (dots kept, as librdkafka and the
Java client name them: ``org.apache.kafka.producer.record.queue.time.avg``); the data
point's own attributes become further labels (``attr_<key>``, bounded). The
``kafka_server_clientmetrics_*`` series are Kafka's client-metrics group (instance count,
unknown-subscription requests, throttles, exports and export errors) as the JMX exporter
names them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from pybroker.broker.client_metrics import ClientMetricsManager
from pybroker.broker.security.authz import CLUSTER_NAME, AclOperation, ResourceType

_LABEL = re.compile(r"[^a-zA-Z0-9_]")
MAX_ATTR_LABELS = 8  # data-point attributes turned into labels, per point


def _label(key: str) -> str:
    return "attr_" + _LABEL.sub("_", key)[:64]


class ClientTelemetryCollector(Collector):
    """Reads the manager when Prometheus scrapes (``source`` returns None until the
    broker has created it)."""

    def __init__(self, source: Callable[[], ClientMetricsManager | None]) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        manager = self.source()
        if manager is None:
            return
        clients = manager.clients()
        points = Metric(
            "kafka_client_telemetry_metric",
            "Latest value of each metric a client pushed (KIP-714), by OTLP metric name",
            "gauge",
        )
        last_push = Metric(
            "kafka_client_telemetry_last_push_timestamp_seconds",
            "When the client instance last pushed metrics",
            "gauge",
        )
        for c in clients:
            base = {
                "client_instance_id": str(c.instance_id),
                "client_id": c.attributes.get("client_id", ""),
            }
            if c.last_push_ms is not None:
                last_push.add_sample(last_push.name, dict(base), c.last_push_ms / 1000)
            for p in c.metrics:
                labels = dict(base, name=p.name)
                for key, value in list(p.attributes.items())[:MAX_ATTR_LABELS]:
                    labels.setdefault(_label(key), value)
                points.add_sample(points.name, labels, p.value)
        yield points
        yield last_push
        s = manager.stats
        count = Metric(
            "kafka_server_clientmetrics_instance_count",
            "Client metrics instances the broker manages",
            "gauge",
        )
        count.add_sample(count.name, {}, len(manager.instances))
        yield count
        subs = Metric(
            "kafka_server_clientmetrics_subscription_count",
            "Client metrics subscriptions (CLIENT_METRICS config resources)",
            "gauge",
        )
        subs.add_sample(subs.name, {}, len(manager.subscriptions))
        yield subs
        for name, doc, value in (
            (
                "unknown_subscription_request",
                "Pushes with an unknown subscription id",
                s.unknown_subscription_requests,
            ),
            ("throttle", "Telemetry requests before the push interval", s.throttles),
            ("plugin_export", "Pushes whose metrics were decoded and kept", s.exports),
            ("plugin_error", "Pushes whose metrics could not be decoded", s.export_errors),
        ):
            m = Metric(f"kafka_server_clientmetrics_{name}_count", doc, "counter")
            m.add_sample(f"kafka_server_clientmetrics_{name}_count_total", {}, value)
            yield m


def clients_view(
    manager: ClientMetricsManager | None, authorizer: Any, viewer: Any
) -> dict[str, Any]:
    """GET /api/clients (console contract). With a login, only viewers who may describe
    the cluster's configs (what listing client-metrics subscriptions needs) see clients."""
    allowed = viewer.allowed(
        authorizer,
        AclOperation.DESCRIBE_CONFIGS,
        ResourceType.CLUSTER,
        CLUSTER_NAME,
    )
    if manager is None or not allowed:
        return {"clients": []}
    out = []
    for c in sorted(
        manager.clients(), key=lambda c: (c.attributes.get("client_id", ""), str(c.instance_id))
    ):
        out.append(
            {
                "client_instance_id": str(c.instance_id),
                "client_id": c.attributes.get("client_id", ""),
                "software_name": c.attributes.get("client_software_name", ""),
                "software_version": c.attributes.get("client_software_version", ""),
                "source_address": c.attributes.get("client_source_address", ""),
                "subscription_id": c.subscription_id,
                "last_push_ms": c.last_push_ms,
                "metrics": [
                    {"name": p.name, "value": p.value, "attributes": dict(p.attributes)}
                    for p in c.metrics
                ],
            }
        )
    return {"clients": out}
