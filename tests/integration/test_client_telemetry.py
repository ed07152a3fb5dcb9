"""KIP-714 with stock clients: a subscription made with Kafka's own kafka-configs tool
(Java Admin: IncrementalAlterConfigs on a CLIENT_METRICS resource), librdkafka
(confluent-kafka, ``enable.metrics.push`` on by default) pushing its OTLP metrics, and
those metrics in /metrics and /api/clients; a client no subscription matches pushes
nothing. Malformed and hostile payloads are covered beside Kafka in
tests/differential/test_diff_telemetry.py."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from pybroker.protocol.otlp import OtlpError, parse_metrics_data
from tests.support.broker import BrokerProcess
from tests.support.cluster import Cluster
from tests.support.differential import request_for
from tests.support.kafka_ref import TOOLS, java_command, run_tool
from tests.support.prometheus import scrape
from tests.support.wire import KafkaWire

pytestmark = pytest.mark.timeout(240)

SUBSCRIBED = "telemetry-producer"
UNSUBSCRIBED = "quiet-producer"


@pytest.fixture(scope="module")
def tbroker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    b = BrokerProcess(tmp_path_factory.mktemp("telemetry") / "data").start()
    try:
        yield b
    finally:
        b.stop()


def clients(b: BrokerProcess) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{b.http_port}/api/clients"
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == "application/json"
        return json.loads(resp.read())["clients"]


def pushed(b: BrokerProcess, client_id: str) -> list[dict[str, Any]]:
    return [c for c in clients(b) if c["client_id"] == client_id and c["last_push_ms"]]


def test_librdkafka_pushes_to_a_subscription(tbroker: BrokerProcess) -> None:
    run_tool(
        "kafka-configs",
        "--bootstrap-server", tbroker.bootstrap,
        "--alter", "--entity-type", "client-metrics", "--entity-name", "producers",
        "--add-config",
        f"metrics=[org.apache.kafka.producer.],interval.ms=1000,match=[client_id={SUBSCRIBED}]",
    ).check()  # fmt: skip
    listed = run_tool(
        "kafka-configs",
        "--bootstrap-server", tbroker.bootstrap,
        "--describe", "--entity-type", "client-metrics",
    ).check()  # fmt: skip
    assert "producers" in listed.stdout and "interval.ms=1000" in listed.stdout, listed.stdout

    loud = Producer({"bootstrap.servers": tbroker.bootstrap, "client.id": SUBSCRIBED})
    quiet = Producer({"bootstrap.servers": tbroker.bootstrap, "client.id": UNSUBSCRIBED})
    try:
        deadline = time.monotonic() + 60
        found: list[dict[str, Any]] = []
        pushes = set()
        while time.monotonic() < deadline:
            for p in (loud, quiet):
                p.produce("telemetry-topic", b"v")
                p.poll(0.2)
            found = pushed(tbroker, SUBSCRIBED)
            if found:
                pushes.add(found[0]["last_push_ms"])
            if len(pushes) >= 2:  # at least two pushes: the interval is honoured
                break
            time.sleep(0.3)
        assert len(pushes) >= 2, clients(tbroker)
        client = found[0]
        assert client["software_name"] == "confluent-kafka-python"
        assert client["source_address"] == "127.0.0.1"
        assert isinstance(client["subscription_id"], int)
        names = {m["name"] for m in client["metrics"]}
        assert names and all(n.startswith("org.apache.kafka.producer.") for n in names), names
        assert "org.apache.kafka.producer.record.queue.time.avg" in names, names
        # Its instance id is in /metrics, one gauge per pushed point.
        samples = scrape(tbroker.http_port)
        series = {
            dict(labels)["name"]
            for (name, labels) in samples
            if name == "kafka_client_telemetry_metric"
            and dict(labels)["client_id"] == SUBSCRIBED
            and dict(labels)["client_instance_id"] == client["client_instance_id"]
        }
        assert series == names
        assert samples[("kafka_server_clientmetrics_plugin_export_count_total", frozenset())] >= 2
        assert samples[("kafka_server_clientmetrics_subscription_count", frozenset())] == 1
        # No subscription matches the other producer: it asked, but never pushed.
        assert pushed(tbroker, UNSUBSCRIBED) == []
        assert any(c["client_id"] == UNSUBSCRIBED for c in clients(tbroker))
    finally:
        loud.flush(10)
        quiet.flush(10)


def test_java_client_pushes_and_terminates(tbroker: BrokerProcess) -> None:
    """Kafka's console producer (the Java client, 4.1) with a matching client id pushes its
    producer metrics every push interval while it runs, then closes cleanly.

    The producer is kept open (stdin not closed) until its metrics arrive: the Java
    client's terminating push on close is best effort (KafkaProducer.close marks it needed,
    but the Sender thread exits without another poll when nothing is in flight), and its
    first periodic push comes 0.5 to 1.5 push intervals after GetTelemetrySubscriptions, so
    a producer that sends three records and closes at once may never push at all."""
    run_tool(
        "kafka-configs",
        "--bootstrap-server", tbroker.bootstrap,
        "--alter", "--entity-type", "client-metrics", "--entity-name", "java",
        "--add-config",
        "metrics=[org.apache.kafka.producer.],interval.ms=500,match=[client_id=java-.*]",
    ).check()  # fmt: skip
    cmd = java_command(
        TOOLS["kafka-console-producer"],
        [
            "--bootstrap-server", tbroker.bootstrap,
            "--topic", "telemetry-java",
            "--producer-property", "client.id=java-telemetry",
        ],
    )  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdin is not None
        proc.stdin.write("a\nb\nc\n")
        proc.stdin.flush()
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            found = pushed(tbroker, "java-telemetry")
            if found:
                break
            time.sleep(0.2)
        assert len(found) == 1, clients(tbroker)
    finally:
        try:  # communicate() closes stdin: end of input, the console producer closes
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert proc.returncode == 0, err[-4000:]
    client = found[0]
    assert client["software_name"] == "apache-kafka-java", client
    names = {m["name"] for m in client["metrics"]}
    assert "org.apache.kafka.producer.record.send.total" in names, sorted(names)
    assert all(n.startswith("org.apache.kafka.producer.") for n in names), sorted(names)


def test_removing_the_subscription_stops_listing_it(tbroker: BrokerProcess) -> None:
    run_tool(
        "kafka-configs",
        "--bootstrap-server", tbroker.bootstrap,
        "--alter", "--entity-type", "client-metrics", "--entity-name", "gone",
        "--add-config", "metrics=[x.]",
    ).check()  # fmt: skip
    run_tool(
        "kafka-configs",
        "--bootstrap-server", tbroker.bootstrap,
        "--alter", "--entity-type", "client-metrics", "--entity-name", "gone",
        "--delete-config", "metrics",
    ).check()  # fmt: skip
    listed = run_tool(
        "kafka-configs",
        "--bootstrap-server", tbroker.bootstrap,
        "--describe", "--entity-type", "client-metrics",
    ).check()  # fmt: skip
    assert "gone" not in listed.stdout, listed.stdout


def _field(number: int, body: bytes) -> bytes:
    """A length-delimited protobuf field (varint length)."""
    size, out = len(body), bytearray([number << 3 | 2])
    while size >= 0x80:
        out.append(size & 0x7F | 0x80)
        size >>= 7
    return bytes(out) + bytes([size]) + body


@pytest.mark.parametrize(
    "payload",
    [
        b"\x0a\xff\xff\xff\xff\x0f",  # a length far beyond the message
        b"\x0a\x02\x12\x05",  # a nested length overrunning its parent
        b"\x0b",  # a group start (wire type 3)
        b"\x0a" + b"\x80" * 11,  # a varint longer than 10 bytes
        _field(1, _field(2, _field(2, _field(1, b"\xc3\x28")))),  # a name not UTF-8
    ],
)
def test_hostile_otlp_is_refused(payload: bytes) -> None:
    with pytest.raises(OtlpError):
        parse_metrics_data(payload)


def test_deep_nesting_is_bounded() -> None:
    """A resource attribute whose value is arrays nested 200 deep: refused, not recursed
    into (the same attribute nested 3 deep decodes)."""

    def payload(depth: int) -> bytes:
        value = _field(1, b"x")  # AnyValue{string_value: "x"}
        for _ in range(depth):
            value = _field(5, _field(1, value))  # AnyValue{array_value: [value]}
        kv = _field(1, b"k") + _field(2, value)
        return _field(1, _field(1, _field(1, kv)))  # ResourceMetrics.resource.attributes

    assert parse_metrics_data(payload(3)).resource == {"k": "x"}
    with pytest.raises(OtlpError):
        parse_metrics_data(payload(200))


def test_subscriptions_are_shared_through_zookeeper(tmp_path: Path) -> None:
    """Cluster mode: a subscription made through one broker is in ZooKeeper
    (/config/client-metrics/<name>), listed and described by the other, and a client of the
    other broker gets it from GetTelemetrySubscriptions."""
    cluster = Cluster(tmp_path, 2)
    cluster.start()
    try:
        one, two = cluster.brokers[1], cluster.brokers[2]
        with KafkaWire(port=one.port) as w:
            r = w.request(
                request_for(
                    44,
                    1,
                    resources=[
                        dict(
                            resource_type=16,
                            resource_name="zk-sub",
                            configs=[
                                dict(name="metrics", config_operation=0, value="a.,b."),
                                dict(name="interval.ms", config_operation=0, value="2000"),
                            ],
                        )
                    ],
                    validate_only=False,
                )
            )
        assert r.responses[0].error_code == 0, r

        def seen_by_two() -> bool:
            with KafkaWire(port=two.port) as w:
                got = w.request(request_for(71, 0, client_instance_id=uuid.UUID(int=0)))
                listed = w.request(request_for(74, 1, resource_types=[16]))
            return got.requested_metrics in (("a.", "b."), ("b.", "a.")) and [
                c.resource_name for c in listed.config_resources
            ] == ["zk-sub"]

        cluster.wait_until("the other broker sees the subscription", seen_by_two, timeout=15)
        with KafkaWire(port=two.port) as w:
            d = w.request(
                request_for(
                    32,
                    4,
                    resources=[
                        dict(resource_type=16, resource_name="zk-sub", configuration_keys=None)
                    ],
                    include_synonyms=False,
                    include_documentation=False,
                )
            )
        assert {c.name: c.value for c in d.results[0].configs} == {
            "interval.ms": "2000",
            "match": "",
            "metrics": "a.,b.",
        }
    finally:
        cluster.stop()
