"""kafka-python against pybroker: issue #2's "Done when" for this client.

Create a 4-partition topic with KafkaAdminClient; produce 100,000 keyed records with
headers and explicit timestamps under each codec (the producer's defaults otherwise:
kafka-python 3 is idempotent by default); read them back byte for byte in order; list
offsets earliest / latest / by timestamp with exact expected answers; long-poll fetches.
kafka-python's snappy codec needs the python-snappy package (0.7.x is a cramjam wrapper).
"""

from __future__ import annotations

import threading
import time

import kafka.codec
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.errors import TopicAlreadyExistsError

from tests.support.clients import (
    CODECS,
    LONG_POLL_WAIT_MS,
    N_RECORDS,
    PARTITIONS,
    ROUND_GAP_S,
    Consumed,
    Produced,
    check_idle_fetches,
    check_prompt,
    expected_offset_for_time,
    headers_of,
    key_of,
    layout_from_placements,
    new_base_ts,
    timestamp_of,
    timestamp_queries,
    value_of,
    verify_consumed,
)

pytestmark = pytest.mark.timeout(300)


def test_codecs_available() -> None:
    """kafka-python silently lacks a codec when its library is missing."""
    assert kafka.codec.has_gzip()
    assert kafka.codec.has_snappy(), "pip install python-snappy"
    assert kafka.codec.has_lz4(), "pip install lz4"
    assert kafka.codec.has_zstd(), "pip install zstandard"


@pytest.fixture(scope="module")
def admin(broker):
    client = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=30_000)
    yield client
    client.close()


def create_topic(admin: KafkaAdminClient, topic: str, partitions: int = PARTITIONS) -> None:
    result = admin.create_topics(
        {topic: {"num_partitions": partitions, "replication_factor": 1}},
        wait_for_metadata=True,
    )
    (entry,) = result["topics"]
    assert entry["name"] == topic
    assert entry["error_code"] == 0, entry


def make_consumer(bootstrap: str, **extra) -> KafkaConsumer:
    conf = {
        "bootstrap_servers": bootstrap,
        "group_id": None,
        "enable_auto_commit": False,
        "fetch_max_bytes": 52_428_800,
        "max_partition_fetch_bytes": 10_485_760,
        "request_timeout_ms": 30_000,
    }
    conf.update(extra)
    return KafkaConsumer(**conf)


@pytest.fixture(scope="module", params=CODECS)
def produced(request, broker, admin) -> Produced:
    codec = request.param
    topic = f"kafka-python-{codec}"
    create_topic(admin, topic)
    base_ts = new_base_ts()
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap,
        compression_type=None if codec == "none" else codec,
        linger_ms=20,
        batch_size=256 * 1024,
        request_timeout_ms=30_000,
    )
    try:
        futures = [
            producer.send(
                topic,
                value=value_of(i),
                key=key_of(i),
                headers=headers_of(i),
                timestamp_ms=timestamp_of(base_ts, i),
            )
            for i in range(N_RECORDS)
        ]
        producer.flush(timeout=120)
        placements: list[tuple[int, int] | None] = []
        for i, fut in enumerate(futures):
            assert fut.is_done, f"record {i} not acknowledged after flush"
            md = fut.get(timeout=1)
            assert md.topic == topic
            placements.append((md.partition, md.offset))
    finally:
        producer.close(timeout=10)
    return Produced(topic, codec, N_RECORDS, base_ts, placements)


def test_create_topic_describe_and_duplicate(admin) -> None:
    topic = "kafka-python-admin"
    create_topic(admin, topic)
    (desc,) = admin.describe_topics([topic])
    assert desc["name"] == topic
    assert desc["error_code"] == 0
    parts = sorted(desc["partitions"], key=lambda p: p["partition_index"])
    assert [p["partition_index"] for p in parts] == list(range(PARTITIONS))
    leaders = {p["leader_id"] for p in parts}
    assert len(leaders) == 1 and min(leaders) >= 0, parts
    for p in parts:
        assert p["error_code"] == 0
        assert p["replica_nodes"] == [p["leader_id"]]
        assert p["isr_nodes"] == [p["leader_id"]]
    assert topic in admin.list_topics()
    with pytest.raises(TopicAlreadyExistsError):
        admin.create_topics({topic: {"num_partitions": PARTITIONS, "replication_factor": 1}})


def test_consume_roundtrip(broker, produced: Produced) -> None:
    consumer = make_consumer(broker.bootstrap)
    tps = [TopicPartition(produced.topic, p) for p in range(PARTITIONS)]
    try:
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        records: list[Consumed] = []
        deadline = time.monotonic() + 180
        while len(records) < N_RECORDS:
            assert time.monotonic() < deadline, f"consumed only {len(records)} records"
            batch = consumer.poll(timeout_ms=1000, max_records=50_000)
            for recs in batch.values():
                for r in recs:
                    assert r.timestamp_type == 0, "expected CreateTime"
                    records.append(
                        Consumed(
                            r.partition, r.offset, r.key, r.value, list(r.headers), r.timestamp
                        )
                    )
        layout = verify_consumed(produced, records)
        assert layout.indices == produced.expected_layout()
        assert {tp.partition: consumer.position(tp) for tp in tps} == layout.counts()
    finally:
        consumer.close()


def test_list_offsets(broker, produced: Produced) -> None:
    expected = layout_from_placements(produced)
    tps = [TopicPartition(produced.topic, p) for p in range(PARTITIONS)]
    consumer = make_consumer(broker.bootstrap)
    try:
        assert consumer.beginning_offsets(tps) == dict.fromkeys(tps, 0)
        assert consumer.end_offsets(tps) == {tp: expected.counts()[tp.partition] for tp in tps}
        assert produced.base_ts is not None
        for ts in timestamp_queries(produced.base_ts, N_RECORDS):
            got = consumer.offsets_for_times(dict.fromkeys(tps, ts))
            assert set(got) == set(tps)
            for tp, found in got.items():
                stamps = expected.timestamps[tp.partition]
                want = expected_offset_for_time(stamps, ts)
                if want is None:
                    assert found is None, f"ts {ts} partition {tp.partition}: {found}"
                else:
                    assert found is not None, f"ts {ts} partition {tp.partition}: none found"
                    assert (found.offset, found.timestamp) == (want, stamps[want]), (
                        f"ts {ts} partition {tp.partition}"
                    )
    finally:
        consumer.close()


def test_long_poll(broker, admin) -> None:
    """An idle fetch is held for fetch_max_wait_ms; an append answers it at once."""
    topic = "kafka-python-longpoll"
    create_topic(admin, topic, partitions=1)
    tp = TopicPartition(topic, 0)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0)
    consumer = make_consumer(
        broker.bootstrap, fetch_max_wait_ms=LONG_POLL_WAIT_MS, fetch_min_bytes=1
    )
    try:
        md = producer.send(topic, value=b"warm-up", key=b"k").get(timeout=10)
        assert (md.partition, md.offset) == (0, 0)

        # Each completed fetch's round trip, measured from the send time the fetcher
        # hands to its response callback (what its fetch-latency metric records).
        rtts: list[float] = []
        fetcher = consumer._fetcher
        original_handler = fetcher._handle_fetch_response

        def handle_fetch_response(node_id, fetch_offsets, send_time, response):
            rtts.append((time.monotonic() - send_time) * 1000)
            return original_handler(node_id, fetch_offsets, send_time, response)

        fetcher._handle_fetch_response = handle_fetch_response
        consumer.assign([tp])
        consumer.seek(tp, 1)

        received: list[tuple[float, bytes, int]] = []
        stop = threading.Event()

        def loop() -> None:
            deadline = time.monotonic() + 60
            while not stop.is_set() and time.monotonic() < deadline:
                for recs in consumer.poll(timeout_ms=50).values():
                    received.extend((time.monotonic(), r.value, r.offset) for r in recs)

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 15
            while len(rtts) < 2:
                assert time.monotonic() < deadline, f"idle fetches seen: {rtts}"
                time.sleep(0.01)
            check_idle_fetches(list(rtts))
            assert received == []

            latencies = []
            for r in range(3):
                time.sleep(ROUND_GAP_S)  # scenario: the record comes while a fetch is parked
                value = b"long-poll-%d" % r
                t0 = time.monotonic()
                producer.send(topic, value=value, key=b"k").get(timeout=10)
                deadline = time.monotonic() + 10
                while not any(x[1] == value for x in received):
                    assert time.monotonic() < deadline, f"record {value!r} never arrived"
                    time.sleep(0.005)
                latencies.append(next(x[0] for x in received if x[1] == value) - t0)
            assert [(v, o) for _, v, o in received] == [
                (b"long-poll-%d" % r, 1 + r) for r in range(3)
            ]
            check_prompt(latencies)
        finally:
            stop.set()
            thread.join(10)
    finally:
        consumer.close()
        producer.close(timeout=5)
