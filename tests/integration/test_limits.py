"""Kafka's socket-server limits against a real broker process, with bounded waits.

- ``max.connections.per.ip`` (and its overrides): the connection over the limit is closed
  at once (Kafka: TooManyConnectionsException, logged at INFO); the others are served.
- ``max.connections``: the acceptor stops accepting; the newest client waits in the
  listen backlog and is served once another connection closes (Kafka's acceptor blocks).
- ``connections.max.idle.ms``: an idle connection is closed; an active one or one with a
  long-polling Fetch parked is not.
- ``queued.max.request.bytes`` / ``queued.max.requests``: clients over them wait (the broker
  stops reading) and get every response, in order; none is dropped.
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from kafka.record.default_records import DefaultRecordBatchBuilder
from kio.index import load_response_schema
from kio.static.primitive import Records, i16, i32, i64

from tests.support.broker import BrokerProcess
from tests.support.wire import ConnectionClosed, KafkaWire, request_module

PRODUCE, FETCH, METADATA, API_VERSIONS = 0, 1, 3, 18
WAIT = 10.0  # upper bound for anything the broker should do "soon"


# ----------------------------------------------------------------------------- helpers


@contextmanager
def running(tmp_path: Path, overrides: dict[str, str]) -> Iterator[BrokerProcess]:
    proc = BrokerProcess(tmp_path / "data", overrides).start()
    try:
        yield proc
    finally:
        if proc.proc is not None:
            proc.stop()


def served(broker: BrokerProcess, timeout: float = WAIT) -> KafkaWire:
    """A connection that got an ApiVersions answer.

    Retried for a while: the harness's own port probe may still count against a limit
    until the broker has seen it close.
    """
    deadline = time.monotonic() + timeout
    while True:
        conn = KafkaWire("127.0.0.1", broker.port, timeout=timeout)
        try:
            conn.api_versions()
            return conn
        except (ConnectionClosed, OSError):
            conn.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def still_served(conns: list[KafkaWire]) -> None:
    for conn in conns:
        conn._api_versions = None
        assert conn.api_versions()


def api_versions_request() -> Any:
    return request_module(API_VERSIONS, 3).ApiVersionsRequest(
        client_software_name="pybroker-tests", client_software_version="0.1"
    )


def build(cls: type, **kwargs: Any) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in kwargs.items() if k in names})


def create_topic(conn: KafkaWire, topic: str) -> None:
    """Auto-create ``topic`` with a Metadata request and wait until it has a leader."""
    v = conn.pick_version(METADATA, 4, 12)
    m = request_module(METADATA, v)
    req = build(
        m.MetadataRequest,
        topics=(build(m.MetadataRequestTopic, topic_id=None, name=topic),),
        allow_auto_topic_creation=True,
        include_cluster_authorized_operations=False,
        include_topic_authorized_operations=False,
    )
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        md = conn.request(req)
        if md.topics and md.topics[0].error_code == 0 and md.topics[0].partitions:
            return
        time.sleep(0.1)
    raise AssertionError(f"topic {topic} has no leader after {WAIT}s")


def batch(value: bytes) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=False,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 24,
    )
    builder.append(0, timestamp=None, key=None, value=value, headers=[])
    return bytes(builder.build())


def produce_request(conn: KafkaWire, topic: str, value: bytes) -> Any:
    m = request_module(PRODUCE, conn.pick_version(PRODUCE, 3, 12))
    part = build(m.PartitionProduceData, index=i32(0), records=Records(batch(value)))
    return build(
        m.ProduceRequest,
        transactional_id=None,
        acks=i16(1),
        timeout=datetime.timedelta(seconds=10),
        topic_data=(build(m.TopicProduceData, name=topic, partition_data=(part,)),),
    )


def fetch_request(conn: KafkaWire, topic: str, offset: int, max_wait_ms: int) -> Any:
    m = request_module(FETCH, conn.pick_version(FETCH, 4, 12))
    part = build(
        m.FetchPartition, partition=i32(0), fetch_offset=i64(offset), partition_max_bytes=i32(1024)
    )
    return build(
        m.FetchRequest,
        max_wait=datetime.timedelta(milliseconds=max_wait_ms),
        min_bytes=i32(1),
        max_bytes=i32(1 << 20),
        topics=(build(m.FetchTopic, topic=topic, topic_id=None, partitions=(part,)),),
        forgotten_topics_data=(),
    )


def pipeline(conn: KafkaWire, requests: list[Any]) -> list[Any]:
    """Send every request before reading any response; responses must come in order."""
    frames = []
    ids = []
    for req in requests:
        cid = conn.next_correlation_id()
        ids.append(cid)
        frames.append(conn.encode_request(req, cid))
    conn.send_raw(b"".join(frames))
    bodies = []
    for req, cid in zip(requests, ids, strict=True):
        cls = load_response_schema(type(req).__api_key__, type(req).__version__)
        bodies.append(conn.recv(cls, cid).body)
    return bodies


def assert_refused(conn: KafkaWire) -> None:
    """The broker closes the connection without answering anything."""
    try:
        conn.send_raw(KafkaWire.encode_request(conn, api_versions_request(), 1))
    except OSError:
        return  # already reset
    assert conn.read_until_closed(WAIT) == b""


# -------------------------------------------------------------------- connection limits


def test_connection_over_max_connections_per_ip_is_closed(tmp_path: Path) -> None:
    with running(tmp_path, {"max.connections.per.ip": "3"}) as broker:
        conns = [served(broker) for _ in range(3)]
        try:
            with KafkaWire("127.0.0.1", broker.port, timeout=WAIT) as extra:
                assert_refused(extra)
            still_served(conns)
            assert (
                "Rejected connection from 127.0.0.1, address already has the configured "
                "maximum of 3 connections." in broker.log_path.read_text()
            )
            conns.pop().close()
            conns.append(served(broker))  # the freed slot is usable again
            still_served(conns)
        finally:
            for conn in conns:
                conn.close()


def test_per_ip_override_raises_the_limit(tmp_path: Path) -> None:
    overrides = {"max.connections.per.ip": "0", "max.connections.per.ip.overrides": "127.0.0.1:4"}
    with running(tmp_path, overrides) as broker:
        conns = [served(broker) for _ in range(4)]
        try:
            with KafkaWire("127.0.0.1", broker.port, timeout=WAIT) as extra:
                assert_refused(extra)
            still_served(conns)
        finally:
            for conn in conns:
                conn.close()


def test_max_connections_makes_the_newest_client_wait_for_a_slot(tmp_path: Path) -> None:
    with running(tmp_path, {"max.connections": "3"}) as broker:
        conns = [served(broker) for _ in range(3)]
        waiting = KafkaWire("127.0.0.1", broker.port, timeout=1.0)  # the kernel's backlog
        try:
            cid = waiting.send(api_versions_request())
            with pytest.raises(TimeoutError):
                waiting.recv_frame()  # not accepted yet: no answer
            still_served(conns)
            conns.pop(0).close()  # a slot frees: the waiting client is accepted and served
            waiting.timeout = WAIT
            cls = load_response_schema(API_VERSIONS, 3)
            assert waiting.recv(cls, cid).body.error_code == 0
            still_served(conns)
        finally:
            waiting.close()
            for conn in conns:
                conn.close()


# ------------------------------------------------------------------------ idle expiry


def test_idle_connections_are_closed_active_ones_are_not(tmp_path: Path) -> None:
    with running(tmp_path, {"connections.max.idle.ms": "1500"}) as broker:
        active = served(broker)
        create_topic(active, "idle-topic")
        idle = served(broker)
        poller = served(broker)
        try:
            started = time.monotonic()
            # A Fetch parked longer than the idle limit keeps its connection.
            poll_id = poller.send(fetch_request(poller, "idle-topic", 0, 3000))
            while time.monotonic() - started < 4.0:
                assert active.api_versions()
                active._api_versions = None
                time.sleep(0.3)
            assert idle.read_until_closed(WAIT) == b""  # closed well before this
            cls = load_response_schema(FETCH, type(fetch_request(poller, "t", 0, 0)).__version__)
            assert poller.recv(cls, poll_id).body.error_code == 0
            # Once answered (at ~3 s), the poller idles too and is closed 1.5 s later.
            assert poller.read_until_closed(WAIT) == b""
            assert time.monotonic() - started > 4.0
        finally:
            for conn in (active, idle, poller):
                conn.close()


# -------------------------------------------------------------- request queue and memory

QUEUE_OVERRIDES = {
    "socket.request.max.bytes": "200000",
    "queued.max.request.bytes": "200000",
    "queued.max.requests": "2",
}


@pytest.fixture(scope="module")
def queue_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    proc = BrokerProcess(tmp_path_factory.mktemp("queue") / "data", QUEUE_OVERRIDES).start()
    try:
        yield proc
    finally:
        if proc.proc is not None:
            proc.stop()


def test_clients_over_queued_max_request_bytes_wait_and_get_every_response(
    queue_broker: BrokerProcess,
) -> None:
    setup = served(queue_broker)
    create_topic(setup, "big-produce")
    setup.close()
    conns = [served(queue_broker, timeout=60) for _ in range(3)]
    value = b"v" * 150_000  # each request ~150 KB: the pool holds one, at most two

    def run(conn: KafkaWire) -> list[Any]:
        return pipeline(conn, [produce_request(conn, "big-produce", value) for _ in range(4)])

    try:
        with ThreadPoolExecutor(len(conns)) as pool:
            results = list(pool.map(run, conns, timeout=60))
        offsets = []
        for bodies in results:
            assert len(bodies) == 4
            for body in bodies:
                part = body.responses[0].partition_responses[0]
                assert part.error_code == 0, part
                offsets.append(int(part.base_offset))
        assert sorted(offsets) == list(range(12))
        still_served(conns)
    finally:
        for conn in conns:
            conn.close()
    assert "Closing connection" not in queue_broker.log_path.read_text()


def test_small_request_queue_still_answers_everything_in_order(
    queue_broker: BrokerProcess,
) -> None:
    conns = [served(queue_broker) for _ in range(4)]

    def run(conn: KafkaWire) -> list[Any]:
        return pipeline(conn, [api_versions_request() for _ in range(50)])

    try:
        with ThreadPoolExecutor(len(conns)) as pool:
            results = list(pool.map(run, conns, timeout=60))
        assert all(len(r) == 50 and all(b.error_code == 0 for b in r) for r in results)
    finally:
        for conn in conns:
            conn.close()
