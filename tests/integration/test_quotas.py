"""Client quotas end to end (issue 12): set with Kafka's kafka-configs, enforced as KIP-219.

A confluent-kafka producer (acks=all) with a 1 MB/s producer_byte_rate quota, producing
flat out for 20 s, is told throttle times (librdkafka's stats) and its acknowledged rate
stays within 10% of the quota, while a producer with another client id on the same broker
runs several times faster. A consumer with a consumer_byte_rate quota reads at its quota;
kafka-python reads the throttle time of a Fetch response; kafka-configs describes what
it set, and quotas are stored beside SCRAM credentials without clobbering them.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer

from tests.support.broker import BrokerProcess
from tests.support.clients import confluent_create_topic
from tests.support.kafka_ref import KafkaReference, run_tool

QUOTA = 1024 * 1024  # 1 MB/s
RUN_S = 20.0
VALUE = b"q" * 16_384


@pytest.fixture(scope="module")
def quota_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    proc = BrokerProcess(tmp_path_factory.mktemp("quotas") / "data").start()
    try:
        yield proc
    finally:
        proc.stop()


def configs(broker: BrokerProcess, *args: str) -> str:
    done = run_tool("kafka-configs", "--bootstrap-server", broker.bootstrap, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def produce_flat_out(
    bootstrap: str, topic: str, client_id: str, seconds: float, out: dict[str, Any]
) -> None:
    """Produce as fast as librdkafka takes it; count bytes acknowledged within ``seconds``."""
    acked = {"bytes": 0, "errors": 0}
    per_second = [0] * int(seconds)
    throttles: list[int] = []
    start = time.monotonic()
    deadline = start + seconds

    def on_delivery(err: Any, msg: Any) -> None:
        if err is not None:
            acked["errors"] += 1
        elif (now := time.monotonic()) < deadline:
            acked["bytes"] += len(msg.value())
            per_second[int(now - start)] += len(msg.value())

    def on_stats(text: str) -> None:
        for b in json.loads(text)["brokers"].values():
            if b.get("nodeid", -1) >= 0 and b["throttle"]["cnt"]:
                throttles.append(b["throttle"]["max"])

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "client.id": client_id,
            "acks": "all",
            "linger.ms": 5,
            "queue.buffering.max.kbytes": 16384,
            "statistics.interval.ms": 1000,
            "stats_cb": on_stats,
        }
    )
    while time.monotonic() < deadline:
        try:
            producer.produce(topic, VALUE, on_delivery=on_delivery)
        except BufferError:
            producer.poll(0.05)
            continue
        producer.poll(0)
    producer.poll(0)
    out.update(
        rate=acked["bytes"] / seconds,
        per_second=per_second,
        errors=acked["errors"],
        throttles=throttles,
    )
    producer.purge()
    producer.flush(10)


def set_client_quota(bootstrap: str, client_id: str, key: str, value: int) -> None:
    done = run_tool(
        "kafka-configs",
        "--bootstrap-server",
        bootstrap,
        "--alter",
        "--add-config",
        f"{key}={value}",
        "--entity-type",
        "clients",
        "--entity-name",
        client_id,
    )
    assert done.returncode == 0, done.stderr


def test_producer_byte_rate_throttles_one_client_only(
    quota_broker: BrokerProcess, kafka_reference: KafkaReference
) -> None:
    """Run side by side for 20 s: the throttled client and a free one on pybroker, and the
    same throttled client on Kafka 4.1. pybroker holds the client to its quota within 10%
    over the run. Kafka's Rate counts at least (samples - 1) windows as elapsed, so a fresh
    client may send 10 s worth at once (again when that sample expires): the same client
    gets well over its quota through Kafka, which pybroker deliberately does not copy."""
    client = "quota-throttled-it"
    for bootstrap in (quota_broker.bootstrap, kafka_reference.bootstrap):
        confluent_create_topic(bootstrap, "quota-produce", partitions=1)
        set_client_quota(bootstrap, client, "producer_byte_rate", QUOTA)
    time.sleep(1)  # Kafka's brokers apply a quota from their metadata image a moment later
    throttled: dict[str, Any] = {}
    free: dict[str, Any] = {}
    kafka: dict[str, Any] = {}
    runs = (
        (quota_broker.bootstrap, client, throttled),
        (quota_broker.bootstrap, "quota-free", free),
        (kafka_reference.bootstrap, client, kafka),
    )
    threads = [
        threading.Thread(target=produce_flat_out, args=(b, "quota-produce", cid, RUN_S, out))
        for b, cid, out in runs
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(RUN_S + 40)
    print(
        f"pybroker throttled {throttled['rate'] / QUOTA:.3f} x quota, "
        f"Kafka 4.1 {kafka['rate'] / QUOTA:.3f}, free client {free['rate'] / QUOTA:.1f}"
    )
    print("per second (x quota):", [round(b / QUOTA, 2) for b in throttled["per_second"]])
    print("Kafka per second:    ", [round(b / QUOTA, 2) for b in kafka["per_second"]])
    assert throttled["errors"] == 0 and free["errors"] == 0
    assert throttled["throttles"] and max(throttled["throttles"]) > 0
    assert kafka["throttles"] and max(kafka["throttles"]) > 0
    assert 0.9 * QUOTA <= throttled["rate"] <= 1.1 * QUOTA, throttled["rate"] / QUOTA
    assert kafka["rate"] > 1.2 * QUOTA, kafka["rate"] / QUOTA  # Kafka's start-up allowance
    assert not free["throttles"] or max(free["throttles"]) == 0
    assert free["rate"] >= 3 * QUOTA, free["rate"]


def test_consumer_byte_rate_throttles_fetches(quota_broker: BrokerProcess) -> None:
    rate = 256 * 1024
    confluent_create_topic(quota_broker.bootstrap, "quota-fetch", partitions=1)
    p = Producer({"bootstrap.servers": quota_broker.bootstrap, "client.id": "quota-loader"})
    for _ in range(400):  # 6.5 MB
        p.produce("quota-fetch", VALUE)
        p.poll(0)
    assert p.flush(30) == 0
    configs(
        quota_broker,
        "--alter",
        "--add-config",
        f"consumer_byte_rate={rate}",
        "--entity-type",
        "clients",
        "--entity-name",
        "quota-reader",
    )
    throttles: list[int] = []
    c = Consumer(
        {
            "bootstrap.servers": quota_broker.bootstrap,
            "client.id": "quota-reader",
            "group.id": "quota-reader",
            "auto.offset.reset": "earliest",
            "statistics.interval.ms": 1000,
            "stats_cb": lambda text: throttles.extend(
                b["throttle"]["max"]
                for b in json.loads(text)["brokers"].values()
                if b.get("nodeid", -1) >= 0 and b["throttle"]["cnt"]
            ),
        }
    )
    c.subscribe(["quota-fetch"])
    got = 0
    start = time.monotonic()
    while time.monotonic() - start < 14:
        msg = c.poll(0.2)
        if msg is not None and msg.error() is None:
            got += len(msg.value())
    c.close()
    print(f"consumer read {got / rate:.2f} s worth of its quota in 14 s")
    # Held to the quota from the first second (6.5 MB, 25 s worth, were there to read):
    # 14 s worth, give or take the one-window allowance, the last throttle and the fetch
    # librdkafka has in flight (measured 17 s worth; Kafka 4.1 lets 10 s worth through
    # at once, then about half the quota, as it drops a throttled fetch's records).
    assert rate * 12 <= got <= rate * 18, got / rate
    assert throttles and max(throttles) > 0  # librdkafka saw the Fetch throttle times


def test_describe_and_scram_side_by_side(quota_broker: BrokerProcess, tmp_path: Path) -> None:
    configs(
        quota_broker,
        "--alter",
        "--add-config",
        "SCRAM-SHA-256=[iterations=4096,password=pw]",
        "--entity-type",
        "users",
        "--entity-name",
        "quota-user",
    )
    configs(
        quota_broker,
        "--alter",
        "--add-config",
        "request_percentage=150.5,consumer_byte_rate=2048",
        "--entity-type",
        "users",
        "--entity-name",
        "quota-user",
        "--entity-type",
        "clients",
        "--entity-default",
    )
    configs(
        quota_broker,
        "--alter",
        "--add-config",
        "producer_byte_rate=4096",
        "--entity-type",
        "users",
        "--entity-name",
        "quota-user",
    )
    out = configs(
        quota_broker, "--describe", "--entity-type", "users", "--entity-name", "quota-user"
    )
    assert "producer_byte_rate=4096.0" in out, out
    both = configs(
        quota_broker,
        "--describe",
        "--entity-type",
        "users",
        "--entity-name",
        "quota-user",
        "--entity-type",
        "clients",
        "--entity-default",
    )
    assert "request_percentage=150.5" in both and "consumer_byte_rate=2048.0" in both, both
    scram = configs(
        quota_broker, "--describe", "--entity-type", "users", "--entity-name", "quota-user"
    )
    assert "SCRAM-SHA-256=iterations=4096" in scram, scram
    configs(
        quota_broker,
        "--alter",
        "--delete-config",
        "producer_byte_rate",
        "--entity-type",
        "users",
        "--entity-name",
        "quota-user",
    )
    after = configs(
        quota_broker, "--describe", "--entity-type", "users", "--entity-name", "quota-user"
    )
    assert "producer_byte_rate" not in after and "SCRAM-SHA-256=iterations=4096" in after, after


def test_kafka_python_honours_produce_throttle(
    quota_broker: BrokerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """kafka-python reads throttle_time_ms from the Produce response, logs it and pauses
    the connection (its KIP-219 support); every send still succeeds."""
    from kafka import KafkaProducer

    rate = 20_000
    confluent_create_topic(quota_broker.bootstrap, "quota-kp", partitions=1)
    set_client_quota(quota_broker.bootstrap, "quota-kp", "producer_byte_rate", rate)
    producer = KafkaProducer(
        bootstrap_servers=quota_broker.bootstrap, client_id="quota-kp", acks="all"
    )
    caplog.set_level("WARNING", logger="kafka.net.connection")
    try:
        futures = [producer.send("quota-kp", b"k" * 10_000) for _ in range(30)]  # 15 s worth
        producer.flush(30)
        assert all(f.get(timeout=30).offset >= 0 for f in futures)
    finally:
        producer.close(5)
    throttled = [r.getMessage() for r in caplog.records if "throttled by broker" in r.getMessage()]
    assert throttled, "kafka-python saw no throttle time"
    assert all(int(m.rsplit("(", 1)[1].split()[0]) > 0 for m in throttled), throttled


def test_quotas_in_zookeeper_keep_kafkas_layout(zookeeper: Any) -> None:
    """Cluster mode: Kafka's znodes (``<default>`` unsanitized, user+client-id under the
    user), a /config/changes notification per change, SCRAM keys left alone."""
    from kazoo.client import KazooClient

    from pybroker.replication import client_quotas as cq
    from pybroker.replication.entity_configs import ZkEntityConfigs
    from pybroker.replication.zk_client import ZkClient

    scram = "salt=YQ==,stored_key=Yg==,server_key=Yw==,iterations=4096"

    async def run() -> dict[cq.Entity, dict[str, float]]:
        client = ZkClient(zookeeper.connect)
        await client.start()
        try:
            store = ZkEntityConfigs(client)
            await store.set("users", "alice", {"SCRAM-SHA-256": scram})
            await cq.apply(store, cq.entity(user="alice"), {"producer_byte_rate": 2048.0})
            await cq.apply(
                store, cq.entity(user="alice", client_id=None), {"request_percentage": 7.5}
            )
            await cq.apply(store, cq.entity(client_id="a b"), {"consumer_byte_rate": 99.0})
            return await cq.load_all(store)
        finally:
            await client.close()

    found = asyncio.run(run())
    assert found == {
        cq.entity(user="alice"): {"producer_byte_rate": 2048.0},
        cq.entity(user="alice", client_id=None): {"request_percentage": 7.5},
        cq.entity(client_id="a b"): {"consumer_byte_rate": 99.0},
    }
    zk = KazooClient(hosts=zookeeper.connect)
    zk.start(timeout=15)
    try:
        alice = json.loads(zk.get("/config/users/alice")[0])
        assert alice == {
            "version": 1,
            "config": {"SCRAM-SHA-256": scram, "producer_byte_rate": "2048"},
        }
        nested = json.loads(zk.get("/config/users/alice/clients/<default>")[0])
        assert nested["config"] == {"request_percentage": "7.5"}
        assert json.loads(zk.get("/config/clients/a%20b")[0])["config"] == {
            "consumer_byte_rate": "99"
        }
        changes = {
            json.loads(zk.get(f"/config/changes/{c}")[0])["entity_path"]
            for c in zk.get_children("/config/changes")
        }
        assert {"users/alice", "users/alice/clients/<default>", "clients/a%20b"} <= changes
    finally:
        zk.stop()
        zk.close()


def test_java_producer_reads_throttle_time(quota_broker: BrokerProcess) -> None:
    """Kafka's own Java producer (kafka-producer-perf-test --print-metrics) records the
    throttle times it is sent in produce-throttle-time-max / -avg."""
    rate = 20_000
    confluent_create_topic(quota_broker.bootstrap, "quota-java", partitions=1)
    set_client_quota(quota_broker.bootstrap, "quota-java", "producer_byte_rate", rate)
    done = run_tool(
        "kafka-producer-perf-test",
        "--topic",
        "quota-java",
        "--num-records",
        "30",
        "--record-size",
        "10000",
        "--throughput",
        "-1",
        "--print-metrics",
        "--producer-props",
        f"bootstrap.servers={quota_broker.bootstrap}",
        "client.id=quota-java",
        "acks=all",
        "batch.size=10000",
    )
    assert done.returncode == 0, done.stderr
    assert "30 records sent" in done.stdout, done.stdout[-2000:]
    metric = [
        line
        for line in done.stdout.splitlines()
        if line.startswith("producer-metrics:produce-throttle-time-max:{client-id=quota-java}")
    ]
    assert metric, done.stdout[-3000:]
    assert float(metric[0].rsplit(":", 1)[1].strip()) > 0, metric


def test_request_percentage_throttles_and_mutes(quota_broker: BrokerProcess) -> None:
    """request_percentage counts handler time: a tiny share throttles Metadata requests,
    the throttle (at most one window) is in the response, and the next request on the
    connection is only read once the mute is over."""
    from tests.support.differential import request_for
    from tests.support.prometheus import scrape, value
    from tests.support.wire import KafkaWire

    throttle_sum = "kafka_network_requestmetrics_throttletimems_sum"
    before = value(scrape(quota_broker.http_port), throttle_sum, request="Metadata")
    set_client_quota(quota_broker.bootstrap, "quota-req", "request_percentage", 0.001)
    wire = KafkaWire(port=quota_broker.port, client_id="quota-req")
    other = KafkaWire(port=quota_broker.port, client_id="quota-unlimited")
    try:
        throttles = []
        for _ in range(5):
            start = time.monotonic()
            resp = wire.request(request_for(3, 12, topics=None))
            throttles.append((resp.throttle_time.total_seconds(), time.monotonic() - start))
        print("request quota (throttle s, took s):", throttles)
        assert any(t > 0.05 for t, _ in throttles[:-1]), throttles
        assert all(t <= 1.0 for t, _ in throttles), throttles  # bounded by the window
        # After a throttled response the next one waited out the mute.
        for (t_prev, _), (_, took) in zip(throttles, throttles[1:], strict=False):
            if t_prev > 0.05:
                assert took >= t_prev - 0.05, throttles
        free = other.request(request_for(3, 12, topics=None))
        assert free.throttle_time.total_seconds() == 0
        # The throttle each response carried is in the ThrottleTimeMs histogram.
        after = value(scrape(quota_broker.http_port), throttle_sum, request="Metadata")
        carried_ms = sum(round(t * 1000) for t, _ in throttles)
        assert after - before >= carried_ms > 0, (before, after, throttles)
    finally:
        wire.close()
        other.close()
