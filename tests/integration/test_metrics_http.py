"""pybroker.http.listener: /metrics checked against what real clients did, /healthz and
/readyz, hostile HTTP input, the endpoint turned off, a taken port, the request log."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from kio.schema.errors import ErrorCode

from tests.support.broker import BrokerProcess, free_port
from tests.support.clients import confluent_create_topic
from tests.support.prometheus import Samples, scrape, value
from tests.support.txn_wire import build
from tests.support.wire import KafkaWire, request_module


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture(scope="module")
def mbroker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    b = BrokerProcess(
        tmp_path_factory.mktemp("metrics") / "data",
        overrides={"offsets.topic.num.partitions": "3", "group.initial.rebalance.delay.ms": "0"},
    )
    b.start()
    yield b
    b.stop()


def log_bytes(b: BrokerProcess, topic: str) -> dict[int, int]:
    """Bytes of each partition's .log files: the batches exactly as producers sent them."""
    sizes: dict[int, int] = {}
    for d in b.data_dir.glob(f"{topic}-*"):
        partition = int(d.name.rsplit("-", 1)[1])
        sizes[partition] = sum(f.stat().st_size for f in d.glob("*.log"))
    return sizes


def test_counters_match_a_produce_consume_run(mbroker: BrokerProcess) -> None:
    topic = "metrics-run"
    confluent_create_topic(mbroker.bootstrap, topic, partitions=2)
    before = scrape(mbroker.http_port)
    producer = Producer({"bootstrap.servers": mbroker.bootstrap, "linger.ms": 5, "acks": "all"})
    delivered: list[tuple[int, int]] = []

    def report(err: object, msg: object) -> None:
        assert err is None, err
        delivered.append((msg.partition(), msg.offset()))  # type: ignore[attr-defined]

    total = 3000
    for i in range(total):
        producer.produce(topic, value=b"v" * (i % 200), key=b"%d" % i, on_delivery=report)
        if i % 500 == 0:
            producer.poll(0)
            scrape(mbroker.http_port)  # scraping while producing changes nothing below
    assert producer.flush(30) == 0
    assert len(delivered) == total
    produced = scrape(mbroker.http_port)
    sizes = log_bytes(mbroker, topic)
    assert sum(sizes.values()) > 0
    messages_in = value(produced, "kafka_server_brokertopicmetrics_messagesin_total", topic=topic)
    bytes_in = value(produced, "kafka_server_brokertopicmetrics_bytesin_total", topic=topic)
    assert messages_in == total
    assert bytes_in == sum(sizes.values())
    for p, size in sizes.items():
        assert value(produced, "kafka_log_log_size", topic=topic, partition=str(p)) == size
        ends = [o for q, o in delivered if q == p]
        leo = value(produced, "kafka_log_log_logendoffset", topic=topic, partition=str(p))
        assert leo == max(ends) + 1
    # The all-topics series is the sum over topics (plus __consumer_offsets, none yet here).
    all_in = value(produced, "kafka_server_brokertopicmetrics_messagesin_total")
    assert all_in - value(before, "kafka_server_brokertopicmetrics_messagesin_total") == total
    produce_requests = sum(
        v
        for (name, labels), v in produced.items()
        if name == "kafka_network_requestmetrics_requests_total"
        and ("request", "Produce") in labels
    )
    assert produce_requests >= 1
    assert (
        value(produced, "kafka_network_requestmetrics_totaltimems_count", request="Produce")
        == produce_requests
    )

    # Consume everything once from a fixed assignment, then commit a chosen position.
    consumer = Consumer(
        {
            "bootstrap.servers": mbroker.bootstrap,
            "group.id": "metrics-group",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0), TopicPartition(topic, 1, 0)])
    got = 0
    deadline = time.monotonic() + 30
    while got < total and time.monotonic() < deadline:
        for msg in consumer.consume(500, timeout=1.0):
            assert msg.error() is None, msg.error()
            got += 1
    assert got == total
    commit = {0: 7, 1: 11}
    consumer.commit(
        offsets=[TopicPartition(topic, p, o) for p, o in commit.items()], asynchronous=False
    )
    highs = {
        p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in commit
    }
    consumer.close()
    after = scrape(mbroker.http_port)
    bytes_out = value(after, "kafka_server_brokertopicmetrics_bytesout_total", topic=topic)
    assert bytes_out == sum(sizes.values())  # each batch sent to the consumer exactly once
    for p, offset in commit.items():
        labels = {"consumergroup": "metrics-group", "topic": topic, "partition": str(p)}
        assert value(after, "kafka_consumergroup_current_offset", **labels) == offset
        assert value(after, "kafka_consumergroup_lag", **labels) == highs[p] - offset
    assert value(after, "kafka_coordinator_group_groupmetadatamanager_numoffsets") >= 2
    assert value(after, "kafka_server_replicamanager_partitioncount") >= 2
    assert value(after, "kafka_server_replicamanager_underreplicatedpartitions") == 0
    assert value(after, "kafka_controller_kafkacontroller_activecontrollercount") == 1
    idle = value(after, "kafka_network_socketserver_networkprocessoravgidle_percent")
    assert 0.0 <= idle <= 1.0


def connection_count(samples: Samples) -> float:
    return value(
        samples,
        "kafka_server_socket_server_metrics_connection_count",
        listener="PLAINTEXT",
        networkProcessor="0",
    )


def settled_connections(port: int) -> float:
    """The connection count once it has not moved for half a second."""
    last = connection_count(scrape(port))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = connection_count(scrape(port))
        if now == last:
            return now
        last = now
    raise AssertionError("the connection count kept moving")


def test_request_and_error_counts_per_api(mbroker: BrokerProcess) -> None:
    m = request_module(3, 12)
    missing = build(
        m.MetadataRequest,
        topics=(build(m.MetadataRequestTopic, name="no-such-topic", topic_id=None),),
        allow_auto_topic_creation=False,
        include_topic_authorized_operations=False,
    )
    everything = build(
        m.MetadataRequest,
        topics=None,
        allow_auto_topic_creation=False,
        include_topic_authorized_operations=False,
    )
    connections = settled_connections(mbroker.http_port)  # earlier clients have gone
    before = scrape(mbroker.http_port)
    with KafkaWire(port=mbroker.port) as a, KafkaWire(port=mbroker.port) as b:
        for _ in range(3):
            a.request(everything)
        resp = b.request(missing)
        assert resp.topics[0].error_code == ErrorCode.unknown_topic_or_partition
        during = scrape(mbroker.http_port)
    after = scrape(mbroker.http_port)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert (
        delta("kafka_network_requestmetrics_requests_total", request="Metadata", version="12") == 4
    )
    assert delta("kafka_network_requestmetrics_totaltimems_count", request="Metadata") == 4
    unknown = delta(
        "kafka_network_requestmetrics_errors_total",
        request="Metadata",
        error="UNKNOWN_TOPIC_OR_PARTITION",
    )
    assert unknown == 1
    assert delta("kafka_network_requestmetrics_errors_total", request="Metadata", error="NONE") >= 3
    assert connection_count(during) == connections + 2
    # Every latency histogram counts each request once; buckets are cumulative.
    for part in ("requestqueuetimems", "localtimems", "remotetimems", "responsesendtimems"):
        assert delta(f"kafka_network_requestmetrics_{part}_count", request="Metadata") == 4
    inf = value(
        after, "kafka_network_requestmetrics_totaltimems_bucket", request="Metadata", le="+Inf"
    )
    assert inf == value(after, "kafka_network_requestmetrics_totaltimems_count", request="Metadata")


def test_log_flush_time(mbroker: BrokerProcess) -> None:
    """flush.messages=1: every acknowledged produce is fsynced first, and timed."""
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = "metrics-flushed"
    admin = AdminClient({"bootstrap.servers": mbroker.bootstrap})
    futures = admin.create_topics([NewTopic(topic, 1, 1, config={"flush.messages": "1"})])
    assert futures[topic].result(30) is None
    name = "kafka_log_logflushstats_logflushrateandtimems"
    before = scrape(mbroker.http_port)
    producer = Producer({"bootstrap.servers": mbroker.bootstrap, "linger.ms": 0})
    for i in range(5):
        producer.produce(topic, b"%d" % i)
        assert producer.flush(10) == 0  # one batch per request: five flushes
    after = scrape(mbroker.http_port)
    assert value(after, name + "_count") - value(before, name + "_count") >= 5
    assert value(after, name + "_sum") > value(before, name + "_sum")
    assert value(after, name + "_bucket", le="+Inf") == value(after, name + "_count")


def test_health_and_readiness(mbroker: BrokerProcess) -> None:
    assert get(mbroker.http_port, "/healthz") == (200, "ok\n")
    assert get(mbroker.http_port, "/readyz") == (200, "ready\n")
    status, body = get(mbroker.http_port, "/nope")
    assert status == 404 and "/metrics" in body
    req = urllib.request.Request(f"http://127.0.0.1:{mbroker.http_port}/metrics", method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=10)
    assert info.value.code == 405


def test_not_ready_until_registered(tmp_path: Path) -> None:
    """In ZooKeeper mode the broker is alive but not ready while it cannot reach the
    ensemble; it then gives up and exits."""
    dead_zk = free_port()
    b = BrokerProcess(
        tmp_path / "data",
        overrides={
            "zookeeper.connect": f"127.0.0.1:{dead_zk}",
            # Long enough for a slow start-up on a loaded machine to reach the endpoint.
            "zookeeper.connection.timeout.ms": "15000",
        },
    )
    log = open(b.log_path, "ab")  # noqa: SIM115
    proc = subprocess.Popen(b.command(), stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        seen = None
        deadline = time.monotonic() + 14
        while time.monotonic() < deadline and seen is None:
            try:
                seen = (get(b.http_port, "/healthz"), get(b.http_port, "/readyz"))
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        assert seen is not None, b.log_tail()
        health, ready = seen
        assert health == (200, "ok\n")
        assert ready[0] == 503 and ready[1].startswith("not ready: "), ready
        assert proc.wait(40) == 1  # gave up on ZooKeeper: one clear error, no traceback
        assert "Cannot start: ZooKeeper" in b.log_tail()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def test_hostile_input_closes_only_that_connection(mbroker: BrokerProcess) -> None:
    port = mbroker.http_port
    # A keep-alive client that must keep working throughout.
    good = socket.create_connection(("127.0.0.1", port), timeout=10)
    good_file = good.makefile("rb")

    def good_request() -> None:
        good.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert good_file.readline() == b"HTTP/1.1 200 OK\r\n"
        length = 0
        while (line := good_file.readline()) != b"\r\n":
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        assert good_file.read(length) == b"ok\n"

    good_request()
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as big:
        big.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000)
        assert _read_until_closed(big, 10).startswith(b"HTTP/1.1 431 ")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as junk:
        junk.sendall(os.urandom(300) + b"\r\n\r\n")
        assert _read_until_closed(junk, 10).startswith(b"HTTP/1.1 400 ")
    good_request()
    # Slowloris: a head that trickles in is cut off HEAD_TIMEOUT_S after its first byte.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
        slow.sendall(b"GET /metrics HTTP/1.1\r\n")
        t0 = time.monotonic()
        closed = False
        while time.monotonic() - t0 < 20:
            try:
                slow.sendall(b"X: y\r\n")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            slow.settimeout(1.0)
            try:
                data = slow.recv(4096)
            except TimeoutError:
                continue
            except ConnectionResetError:
                closed = True
                break
            assert data.startswith(b"HTTP/1.1 408 ") or data == b""
            closed = True
            break
        waited = time.monotonic() - t0
        assert closed and 8 < waited < 15, waited
    good_request()
    good.close()
    # The broker itself never noticed: Kafka clients still work.
    with KafkaWire(port=mbroker.port) as wire:
        m = request_module(18, 3)
        resp = wire.request(
            build(m.ApiVersionsRequest, client_software_name="t", client_software_version="1")
        )
        assert resp.error_code == ErrorCode.none
    assert time.monotonic() - started < 40


def test_pipelined_requests_are_answered_in_order_with_backpressure(
    mbroker: BrokerProcess,
) -> None:
    """200 pipelined scrapes sent at once (MBs of answers): the server stops reading while
    the client does not, and answers every one, in order, once it reads."""
    n = 200
    request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", mbroker.http_port), timeout=10) as sock:
        sock.sendall(request * (n - 1) + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.5)  # the answers pile up on the server side, unread
        with urllib.request.urlopen(  # meanwhile another client is served at once
            f"http://127.0.0.1:{mbroker.http_port}/healthz", timeout=5
        ) as other:
            assert other.read() == b"ok\n"
        reader = sock.makefile("rb")
        for i in range(n):
            status = reader.readline()
            assert status == b"HTTP/1.1 200 OK\r\n", (i, status)
            length = 0
            while (line := reader.readline()) != b"\r\n":
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            body = reader.read(length)
            assert len(body) == length
            if i < n - 1:
                assert b"kafka_server_replicamanager_partitioncount" in body
            else:
                assert body == b"ok\n"


def test_endpoint_off_and_request_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYBROKER_LOG_LEVEL", "DEBUG")
    b = BrokerProcess(tmp_path / "data", overrides={"pybroker.http.listener": ""})
    b.start()
    try:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", b.http_port), timeout=5).close()
        m = request_module(3, 12)
        with KafkaWire(port=b.port, client_id="request-log-client") as wire:
            wire.request(
                build(
                    m.MetadataRequest,
                    topics=None,
                    allow_auto_topic_creation=False,
                    include_topic_authorized_operations=False,
                )
            )
        deadline = time.monotonic() + 10
        line = None
        while line is None and time.monotonic() < deadline:
            line = next(
                (x for x in b.log_tail(400).splitlines() if "clientId=request-log-client" in x),
                None,
            )
            time.sleep(0.1)
        assert line is not None, b.log_tail()
        assert "Completed request: Metadata v12 correlationId=1 " in line
        assert "principal=User:ANONYMOUS listener=PLAINTEXT" in line
        assert "(pybroker.request)" in line
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f and "Ms" not in f[:3])
        assert int(fields["requestBytes"]) > 20 and int(fields["responseBytes"]) > 20
        assert float(fields["totalTimeMs"]) >= 0
    finally:
        b.stop()


def test_taken_port_is_one_clear_start_up_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        b = BrokerProcess(
            tmp_path / "data", overrides={"pybroker.http.listener": f"http://127.0.0.1:{port}"}
        )
        with pytest.raises(RuntimeError):
            b.start(timeout=15)
        errors = [x for x in b.log_tail().splitlines() if " ERROR " in x]
        assert len(errors) == 1, errors
        assert "Cannot start" in errors[0]
        assert f"pybroker.http.listener=http://127.0.0.1:{port}" in errors[0]
        assert "Traceback" not in b.log_tail()
