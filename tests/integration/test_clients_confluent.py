"""confluent-kafka (librdkafka) against pybroker: issue #2's "Done when" for this client.

Create a 4-partition topic with AdminClient; produce 100,000 keyed records with headers
and explicit timestamps under each codec; read them back byte for byte in order; list
offsets earliest / latest / by timestamp with exact expected answers; long-poll fetches.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

from tests.support.clients import (
    CODECS,
    LONG_POLL_WAIT_MS,
    N_RECORDS,
    PARTITIONS,
    ROUND_GAP_S,
    Produced,
    check_idle_fetches,
    check_prompt,
    confluent_consume,
    confluent_produce,
    expected_offset_for_time,
    fetch_rtts_ms,
    layout_from_placements,
    new_base_ts,
    timestamp_queries,
    verify_consumed,
    wait_confluent_topic,
)

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def admin(broker) -> AdminClient:
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def create_topic(admin: AdminClient, topic: str, partitions: int = PARTITIONS) -> None:
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1)],
        operation_timeout=30,
        request_timeout=30,
    )
    assert futures[topic].result(30) is None
    wait_confluent_topic(admin, topic, partitions)


@pytest.fixture(scope="module", params=CODECS)
def produced(request, broker, admin) -> Produced:
    codec = request.param
    topic = f"confluent-{codec}"
    create_topic(admin, topic)
    base_ts = new_base_ts()
    acked = confluent_produce(broker.bootstrap, topic, range(N_RECORDS), codec, base_ts)
    placements = [acked.get(i) for i in range(N_RECORDS)]
    return Produced(topic, codec, N_RECORDS, base_ts, placements)


def test_create_topic_metadata_and_duplicate(broker, admin) -> None:
    topic = "confluent-admin"
    create_topic(admin, topic, partitions=PARTITIONS)
    md = admin.list_topics(topic=topic, timeout=10)
    assert len(md.brokers) == 1
    (broker_id,) = md.brokers
    assert md.brokers[broker_id].host == "127.0.0.1"
    assert md.brokers[broker_id].port == broker.port
    tmd = md.topics[topic]
    assert sorted(tmd.partitions) == list(range(PARTITIONS))
    for pm in tmd.partitions.values():
        assert pm.leader == broker_id
        assert list(pm.replicas) == [broker_id]
        assert list(pm.isrs) == [broker_id]
        assert pm.error is None

    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)], request_timeout=30
    )
    with pytest.raises(KafkaException) as exc:
        futures[topic].result(30)
    assert exc.value.args[0].name() == "TOPIC_ALREADY_EXISTS"


def test_consume_roundtrip(broker, produced: Produced) -> None:
    records = confluent_consume(broker.bootstrap, produced.topic)
    layout = verify_consumed(produced, records)
    assert layout.indices == produced.expected_layout()


def test_list_offsets(broker, produced: Produced) -> None:
    expected = layout_from_placements(produced)
    assert sum(expected.counts().values()) == N_RECORDS
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": f"offsets-{produced.topic}",
            "enable.auto.commit": False,
        }
    )
    try:
        for p in range(PARTITIONS):
            low, high = consumer.get_watermark_offsets(
                TopicPartition(produced.topic, p), timeout=10, cached=False
            )
            assert (low, high) == (0, expected.counts()[p]), f"partition {p} watermarks"

        assert produced.base_ts is not None
        for ts in timestamp_queries(produced.base_ts, N_RECORDS):
            got = consumer.offsets_for_times(
                [TopicPartition(produced.topic, p, ts) for p in range(PARTITIONS)], timeout=10
            )
            assert sorted(tp.partition for tp in got) == list(range(PARTITIONS))
            for tp in got:
                assert tp.error is None, f"ts {ts} partition {tp.partition}: {tp.error}"
                want = expected_offset_for_time(expected.timestamps[tp.partition], ts)
                assert tp.offset == (-1 if want is None else want), (
                    f"offsets_for_times ts={ts} partition {tp.partition}: got {tp.offset}, "
                    f"want {want}"
                )
    finally:
        consumer.close()


def test_admin_list_offsets(broker, admin, produced: Produced) -> None:
    """The same answers through AdminClient.list_offsets, which also returns the
    timestamp of the record found."""
    expected = layout_from_placements(produced)
    counts = expected.counts()
    tps = [TopicPartition(produced.topic, p) for p in range(PARTITIONS)]

    def run(spec: OffsetSpec) -> dict[int, object]:
        futures = admin.list_offsets({tp: spec for tp in tps}, request_timeout=10)
        return {tp.partition: f.result(10) for tp, f in futures.items()}

    assert {p: r.offset for p, r in run(OffsetSpec.earliest()).items()} == dict.fromkeys(
        range(PARTITIONS), 0
    )
    assert {p: r.offset for p, r in run(OffsetSpec.latest()).items()} == counts
    assert produced.base_ts is not None
    queries = timestamp_queries(produced.base_ts, N_RECORDS)
    for ts in queries[:: max(1, len(queries) // 10)] + [queries[-1]]:
        for p, info in run(OffsetSpec.for_timestamp(ts)).items():
            want = expected_offset_for_time(expected.timestamps[p], ts)
            if want is None:
                assert (info.offset, info.timestamp) == (-1, -1), f"ts {ts} partition {p}"
            else:
                assert (info.offset, info.timestamp) == (
                    want,
                    expected.timestamps[p][want],
                ), f"ts {ts} partition {p}"


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _wait_until(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.01)


def fetch_in_flight(lines: list[str]) -> bool:
    """librdkafka keeps one Fetch in flight per broker: one is parked when more have
    been sent than answered."""
    snapshot = list(lines)
    sent = sum("Sent FetchRequest" in x for x in snapshot)
    return sent > len(fetch_rtts_ms(snapshot))


def test_long_poll(broker, admin) -> None:
    """An idle fetch is held for fetch.wait.max.ms; an append answers it at once."""
    topic = "confluent-longpoll"
    create_topic(admin, topic, partitions=1)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0, "acks": "all"})
    producer.produce(topic, value=b"warm-up", key=b"k")
    assert producer.flush(10) == 0

    lines = _Lines()
    logger = logging.getLogger(f"librdkafka.{topic}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(lines)
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": f"lp-{topic}",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": LONG_POLL_WAIT_MS,
            "fetch.min.bytes": 1,
            "debug": "protocol",
        },
        logger=logger,
    )
    consumer.assign([TopicPartition(topic, 0, 1)])
    received: list[tuple[float, bytes, int]] = []
    stop = threading.Event()
    errors: list[str] = []

    def loop() -> None:
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            msg = consumer.poll(0.05)
            if msg is None:
                continue
            if msg.error():
                errors.append(str(msg.error()))
                continue
            received.append((time.monotonic(), msg.value(), msg.offset()))

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        _wait_until(lambda: len(fetch_rtts_ms(lines.lines)) >= 2, 15, "two idle fetches")
        check_idle_fetches(fetch_rtts_ms(lines.lines))
        assert received == [], f"records on an empty partition: {received}"

        latencies = []
        for r in range(3):
            _wait_until(lambda: fetch_in_flight(lines.lines), 10, "a parked fetch")
            time.sleep(ROUND_GAP_S)  # scenario: the record comes while the fetch is parked
            value = b"long-poll-%d" % r
            t0 = time.monotonic()
            producer.produce(topic, value=value, key=b"k")
            assert producer.flush(10) == 0
            _wait_until(lambda v=value: any(x[1] == v for x in received), 10, f"record {value!r}")
            t_recv = next(x[0] for x in received if x[1] == value)
            latencies.append(t_recv - t0)
        assert [(v, o) for _, v, o in received] == [(b"long-poll-%d" % r, 1 + r) for r in range(3)]
        check_prompt(latencies)
        assert not errors
    finally:
        stop.set()
        thread.join(10)
        consumer.close()
