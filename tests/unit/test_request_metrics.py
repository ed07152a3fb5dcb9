"""Request timing, error counting and the text exposition, without a broker."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

import pybroker.broker.handlers.all  # noqa: F401  (API names come from the registry)
from pybroker.broker.context import RequestContext
from pybroker.broker.metrics import render
from pybroker.broker.request_metrics import BUCKETS_MS, RequestMetrics, count_errors
from pybroker.protocol.codec import RequestHeader, build, response_type


def produce_response(*codes: int) -> Any:
    parts = [
        dict(index=i, error_code=c, base_offset=0, log_append_time=-1, log_start_offset=0)
        for i, c in enumerate(codes)
    ]
    return build(
        response_type(0, 9), responses=[dict(name="t", partition_responses=parts)], throttle_time=0
    )


def test_errors_are_counted_per_partition_and_nested_level() -> None:
    out: dict[int, int] = {}
    count_errors(produce_response(0, 0, 6), out)
    assert out == {0: 2, 6: 1}
    metadata = build(
        response_type(3, 12),
        brokers=[],
        cluster_id=None,
        controller_id=1,
        topics=[
            dict(
                error_code=0,
                name="x",
                topic_id=None,
                is_internal=False,
                partitions=[
                    dict(
                        error_code=code,
                        partition_index=i,
                        leader_id=1,
                        leader_epoch=0,
                        replica_nodes=[],
                        isr_nodes=[],
                        offline_replicas=[],
                    )
                    for i, code in enumerate((5, 5, 0))
                ],
                topic_authorized_operations=0,
            )
        ],
        throttle_time=0,
    )
    out = {}
    count_errors(metadata, out)
    assert out == {0: 2, 5: 2}


def test_timing_counts_version_errors_and_each_time_part() -> None:
    metrics = RequestMetrics()
    ctx = RequestContext(RequestHeader(0, 9, 7, "c", 100), "peer", None)  # type: ignore[arg-type]
    for _ in range(3):
        timing = metrics.begin(ctx, 120, last_active=0.0)  # arrived long ago: queue time
        timing.handled(produce_response(0))
        timing.done(60)
    stats = metrics.apis[0]
    assert stats.name == "Produce"
    assert stats.by_version == {9: 3}
    assert stats.errors == {0: 3}
    queue, local, remote, throttle, send, total = (stats.histogram(i) for i in range(6))
    for counts, _ in (queue, local, remote, throttle, send, total):
        assert sum(counts) == 3
        assert len(counts) == len(BUCKETS_MS) + 1
    assert queue[0][-1] == 3  # > the largest bucket: monotonic time since 0.0
    assert throttle[0][0] == 3 and throttle[1] == 0
    assert remote[0][0] == 3 and remote[1] == 0
    assert total[1] >= queue[1] + local[1]


def test_disabled_metrics_count_nothing() -> None:
    metrics = RequestMetrics(enabled=False)
    ctx = RequestContext(RequestHeader(3, 12, 1, None, 10), "peer", None)  # type: ignore[arg-type]
    timing = metrics.begin(ctx, 10, 0.0)
    timing.handled(produce_response(0))
    timing.done(10)
    assert metrics.apis == {}


class _Fixed:
    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> list[Metric]:
        return self.metrics


def test_render_escapes_label_values_and_parses_back() -> None:
    counter = Metric("demo_requests", "Requests, with a \\ and a\nnewline", "counter")
    odd = 'a "quoted" group\\with\nnewline'
    counter.add_sample("demo_requests_total", {"consumergroup": odd, "topic": "t"}, 3)
    counter.add_sample("demo_requests_total", {}, 5)
    gauge = Metric("demo_ratio", "A ratio", "gauge")
    gauge.add_sample("demo_ratio", {}, 0.25)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed([counter, gauge]))  # type: ignore[arg-type]
    text = render(registry).decode()
    assert "# TYPE demo_requests_total counter\n" in text
    parsed = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert parsed[("demo_requests_total", (("consumergroup", odd), ("topic", "t")))] == 3
    assert parsed[("demo_requests_total", ())] == 5
    assert parsed[("demo_ratio", ())] == 0.25
