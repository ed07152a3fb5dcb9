"""KIP-714 against Kafka 4.1: CLIENT_METRICS subscriptions (IncrementalAlterConfigs,
AlterConfigs, DescribeConfigs), ListConfigResources (74) v0-v1, GetTelemetrySubscriptions
(71) and PushTelemetry (72).

The reference runs with a telemetry receiver (tests/kafka_ref/telemetry) that parses each
push as OTLP MetricsData, as pybroker's decoder does. Client instance ids are chosen by the
test (the same on both sides), so subscription ids — a CRC32C of the Java HashSet's text
XOR the id's hash — compare exactly; an id the broker assigns is normalised to "set".
Subscriptions only match this test's client id, and are removed at the end, so the other
differential tests' librdkafka clients never push.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from pybroker.protocol import compression
from pybroker.protocol.otlp import encode_gauges
from tests.differential.helpers import Cases
from tests.support.broker import BrokerProcess
from tests.support.differential import DifferentialPair, record_comparison, request_for
from tests.support.kafka_ref import KafkaReference
from tests.support.wire import KafkaWire

GET, PUSH, LIST, DESCRIBE, ALTER, INCREMENTAL = 71, 72, 74, 32, 33, 44
CLIENT_METRICS, TOPIC, BROKER, BROKER_LOGGER = 16, 2, 4, 8
SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3
CLIENT_ID = "dtel-client"
P = "dtel-"
ZERO = uuid.UUID(int=0)


@pytest.fixture(scope="module")
def pair(
    differential_brokers: tuple[BrokerProcess, KafkaReference],
) -> Iterator[DifferentialPair]:
    ours, kafka = differential_brokers
    with DifferentialPair(ours.port, kafka.port, client_id=CLIENT_ID) as p:
        yield p


def incremental(v: int, name: str, ops: list[tuple[str, int, str | None]], vo: bool = False) -> Any:
    return request_for(
        INCREMENTAL,
        v,
        resources=[
            dict(
                resource_type=CLIENT_METRICS,
                resource_name=name,
                configs=[dict(name=k, config_operation=o, value=val) for k, o, val in ops],
            )
        ],
        validate_only=vo,
    )


def legacy(v: int, name: str, configs: dict[str, str]) -> Any:
    return request_for(
        ALTER,
        v,
        resources=[
            dict(
                resource_type=CLIENT_METRICS,
                resource_name=name,
                configs=[dict(name=k, value=val) for k, val in configs.items()],
            )
        ],
        validate_only=False,
    )


def describe(v: int, name: str, keys: list[str] | None = None, docs: bool = False) -> Any:
    return request_for(
        DESCRIBE,
        v,
        resources=[dict(resource_type=CLIENT_METRICS, resource_name=name, configuration_keys=keys)],
        include_synonyms=True,
        include_documentation=docs,
    )


def get(instance: uuid.UUID) -> Any:
    return request_for(GET, 0, client_instance_id=instance)


def push(
    instance: uuid.UUID | None,
    sub: int,
    payload: bytes = b"",
    codec: int = 0,
    terminating: bool = False,
) -> Any:
    return request_for(
        PUSH,
        0,
        client_instance_id=instance,
        subscription_id=sub,
        terminating=terminating,
        compression_type=codec,
        metrics=payload,
    )


PAYLOAD = encode_gauges(
    {"client_id": CLIENT_ID},
    [
        ("org.apache.kafka.producer.record.queue.time.avg", 1.5, {"topic": "t"}),
        ("org.apache.kafka.producer.connection.creation.rate", 0.0, {}),
    ],
)
SUBSCRIPTIONS = {
    f"{P}all": [
        ("metrics", SET, "*"),
        ("interval.ms", SET, "1000"),
        ("match", SET, f"client_id={CLIENT_ID}"),
    ],
    f"{P}several": [
        ("metrics", SET, "org.apache.kafka.producer., org.apache.kafka.consumer.,a.b,zz.top"),
        ("interval.ms", SET, "2500"),
        ("match", SET, "client_id=dtel-c.*,client_software_name=pybroker-tests"),
    ],
    f"{P}other": [
        ("metrics", SET, "org.apache.kafka.consumer."),
        ("match", SET, "client_id=nobody"),
    ],
}


def _settle() -> None:
    """Kafka's broker sees a subscription once the controller's record reaches it."""
    time.sleep(0.7)


def _remove_all(pair: DifferentialPair) -> None:
    for side in ("ours", "kafka"):
        for name in [*SUBSCRIPTIONS, f"{P}legacy", f"{P}ops", f"{P}sub2"]:
            pair.ask(
                side,
                incremental(
                    1, name, [(k, DELETE, None) for k in ("metrics", "interval.ms", "match")]
                ),
            )


def test_client_metrics_subscription_configs(pair: DifferentialPair) -> None:
    cases = Cases(pair)
    try:
        for v in (0, 1):
            cases.compare(
                f"telemetry-config-validate-only-v{v}",
                incremental(v, f"{P}all", SUBSCRIPTIONS[f"{P}all"], vo=True),
            )
        _settle()
        cases.compare("telemetry-config-describe-missing", describe(4, f"{P}all"))
        for name, ops in SUBSCRIPTIONS.items():
            cases.compare(f"telemetry-config-create-{name}", incremental(1, name, ops))
        _settle()
        for v in (1, 2, 3, 4):
            cases.compare(f"telemetry-config-describe-v{v}", describe(v, f"{P}several"))
        cases.compare(
            "telemetry-config-describe-keys", describe(4, f"{P}all", ["interval.ms", "x"])
        )
        cases.compare("telemetry-config-describe-empty-name", describe(4, ""))
        cases.compare("telemetry-config-describe-docs", describe(4, f"{P}all", docs=True))
        bad = {
            "empty-name": ("", [("metrics", SET, "a")]),
            "unknown-key": (f"{P}x", [("color", SET, "blue")]),
            "interval-small": (f"{P}x", [("interval.ms", SET, "50")]),
            "interval-large": (f"{P}x", [("interval.ms", SET, "3600001")]),
            "interval-text": (f"{P}x", [("interval.ms", SET, "soon")]),
            "match-no-value": (f"{P}x", [("match", SET, "client_id=")]),
            "match-unknown": (f"{P}x", [("match", SET, "client_color=red")]),
            "match-two-equals": (f"{P}x", [("match", SET, "client_id=a=b")]),
            "match-bad-regex": (f"{P}x", [("match", SET, "client_id=[")]),
            "append-int": (f"{P}x", [("interval.ms", APPEND, "5")]),
        }
        for case, (name, ops) in bad.items():
            cases.compare(f"telemetry-config-invalid-{case}", incremental(1, name, ops))
        cases.compare(
            "telemetry-config-append", incremental(1, f"{P}ops", [("metrics", APPEND, "a.,b.")])
        )
        cases.compare(
            "telemetry-config-subtract", incremental(1, f"{P}ops", [("metrics", SUBTRACT, "a.")])
        )
        _settle()
        cases.compare("telemetry-config-describe-after-ops", describe(4, f"{P}ops"))
        for v in (0, 1, 2):
            cases.compare(
                f"telemetry-config-legacy-v{v}",
                legacy(v, f"{P}legacy", {"metrics": "x.", "interval.ms": str(1000 + v)}),
            )
        _settle()
        cases.compare("telemetry-config-describe-legacy", describe(4, f"{P}legacy"))
        _list_cases(cases, pair)
    finally:
        _remove_all(pair)
    _settle()
    cases.compare("telemetry-config-describe-removed", describe(4, f"{P}all"))
    cases.check()


def _ours_and_kafka(pair: DifferentialPair, request: Any) -> tuple[Any, Any]:
    return pair.ask("ours", request), pair.ask("kafka", request)


def _list_cases(cases: Cases, pair: DifferentialPair) -> None:
    def mine(plain: Any) -> Any:
        """Only this test's subscriptions and topics, and brokers by type (ids differ)."""
        if not isinstance(plain, dict) or "config_resources" not in plain:
            return plain
        kept = []
        for r in plain["config_resources"]:
            if r.get("resource_type") in (BROKER, BROKER_LOGGER):
                kept.append(dict(r, resource_name="<broker>"))
            elif r["resource_name"].startswith(P):
                kept.append(r)
        return dict(plain, config_resources=sorted(kept, key=repr))

    for conn in (pair.ours, pair.kafka):
        conn.request(
            request_for(
                19,
                5,
                topics=[dict(name=f"{P}topic", num_partitions=1, replication_factor=1)],
                timeout=10_000,
            )
        )
    _settle()
    for name, req in [
        ("v0", request_for(LIST, 0)),
        ("v1-default", request_for(LIST, 1, resource_types=[])),
        ("v1-client-metrics", request_for(LIST, 1, resource_types=[CLIENT_METRICS])),
        ("v1-topics-brokers", request_for(LIST, 1, resource_types=[TOPIC, BROKER, BROKER_LOGGER])),
        ("v1-unknown-type", request_for(LIST, 1, resource_types=[3])),
        ("v0-with-type", request_for(LIST, 1, resource_types=[CLIENT_METRICS, 99])),
    ]:
        ours, kafka = _ours_and_kafka(pair, req)
        cases.add(record_comparison(f"telemetry-list-{name}", req, ours, kafka, transform=mine))


def _fresh() -> uuid.UUID:
    return uuid.uuid4()


def test_telemetry_get_and_push(pair: DifferentialPair) -> None:
    cases = Cases(pair)
    volatile_id = ("client_instance_id", "subscription_id")  # both follow a random id
    try:
        for name, ops in SUBSCRIPTIONS.items():
            _ours_and_kafka(pair, incremental(1, name, ops))
        _settle()
        cases.compare("telemetry-get-new-instance", get(ZERO), volatile=volatile_id)
        a = _fresh()
        cases.compare("telemetry-get-fixed-instance", get(a))
        cases.compare("telemetry-get-too-early", get(a))
        b = _fresh()
        ours, kafka = _ours_and_kafka(pair, get(b))
        cases.add(record_comparison("telemetry-get-before-push", get(b), ours, kafka))
        sub = ours.subscription_id
        cases.compare("telemetry-push-ok", push(b, sub, PAYLOAD))
        cases.compare("telemetry-push-too-early", push(b, sub, PAYLOAD))
        cases.compare("telemetry-push-terminating-early", push(b, sub, PAYLOAD, terminating=True))
        cases.compare("telemetry-push-after-terminating", push(b, sub, PAYLOAD))
        cases.compare("telemetry-push-zero-instance", push(ZERO, 0, PAYLOAD))
        cases.compare("telemetry-push-null-instance", push(None, 0, PAYLOAD))
        cases.compare("telemetry-push-unknown-instance", push(_fresh(), 12345, PAYLOAD))
        for label, codec, payload in [
            ("gzip", compression.GZIP, compression.compress(compression.GZIP, PAYLOAD)),
            ("snappy", compression.SNAPPY, compression.compress(compression.SNAPPY, PAYLOAD)),
            ("lz4", compression.LZ4, compression.compress(compression.LZ4, PAYLOAD)),
            ("zstd", compression.ZSTD, compression.compress(compression.ZSTD, PAYLOAD)),
            ("empty", 0, b""),
            ("garbage", 0, b"\xff\xff\xff\xff\x0f"),
            ("truncated", 0, PAYLOAD[:-3]),
            ("bad-gzip", compression.GZIP, b"\x1f\x8bnot gzip"),
            ("unknown-codec", 9, PAYLOAD),
            ("too-large", 0, b"\x00" * (1024 * 1024 + 1)),
            ("wrong-subscription", 0, PAYLOAD),
        ]:
            inst = _fresh()
            ours, kafka = _ours_and_kafka(pair, get(inst))
            assert ours.subscription_id == kafka.subscription_id, (ours, kafka)
            sub_id = ours.subscription_id + (1 if label == "wrong-subscription" else 0)
            cases.compare(f"telemetry-push-{label}", push(inst, sub_id, payload, codec))
        # A client only "several" matches: its metric list and subscription id come from
        # the Java HashSet of four prefixes (order and text hashed exactly as Kafka does).
        with DifferentialPair(*pair.ports.values(), client_id="dtel-c2") as other:
            outcome = Cases(other).compare("telemetry-get-several-prefixes", get(_fresh()))
            cases.add(outcome)
        # A changed subscription: the next Get is answered at once, with a new id.
        c = _fresh()
        _ours_and_kafka(pair, get(c))
        _ours_and_kafka(
            pair,
            incremental(
                1, f"{P}sub2", [("metrics", SET, "q."), ("match", SET, f"client_id={CLIENT_ID}")]
            ),
        )
        _settle()
        cases.compare("telemetry-get-after-subscription-change", get(c))
    finally:
        _remove_all(pair)
    _settle()
    cases.compare("telemetry-get-no-subscription", get(_fresh()))
    cases.check()


def test_no_subscription_means_no_metrics(pair: DifferentialPair) -> None:
    """With no subscription matching, Get answers an empty metric list (the client pushes
    nothing) and the default five-minute interval."""
    with KafkaWire(port=pair.ports["ours"], client_id="dtel-nobody") as w:
        r = w.request(get(ZERO))
    assert int(r.error_code) == 0 and r.requested_metrics == ()
    assert r.push_interval.total_seconds() == 300
    assert r.client_instance_id != ZERO
