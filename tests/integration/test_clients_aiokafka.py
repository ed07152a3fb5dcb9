"""aiokafka against pybroker: issue #2's "Done when" for this client.

Create a 4-partition topic with AIOKafkaAdminClient; produce 100,000 keyed records with
headers and explicit timestamps under each codec; read them back byte for byte in order;
list offsets earliest / latest / by timestamp with exact expected answers; long-poll
fetches. aiokafka's snappy, lz4 and zstd codecs all come from cramjam.
"""

from __future__ import annotations

import asyncio
import time

import aiokafka.codec
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.protocol.fetch import FetchRequest

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

TOPIC_ALREADY_EXISTS = 36


def test_codecs_available() -> None:
    assert aiokafka.codec.has_gzip()
    assert aiokafka.codec.has_snappy(), "pip install cramjam"
    assert aiokafka.codec.has_lz4(), "pip install cramjam"
    assert aiokafka.codec.has_zstd(), "pip install cramjam"


async def create_topic(bootstrap: str, topic: str, partitions: int = PARTITIONS) -> list:
    """Create the topic; return the per-topic error entries of the response."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    await admin.start()
    try:
        resp = await admin.create_topics(
            [NewTopic(name=topic, num_partitions=partitions, replication_factor=1)]
        )
        return list(resp.topic_errors)
    finally:
        await admin.close()


async def wait_partitions(consumer: AIOKafkaConsumer, topic: str, want: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        parts = consumer.partitions_for_topic(topic)
        if parts == set(range(want)):
            return
        assert time.monotonic() < deadline, f"{topic}: partitions {parts}, want {want}"
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.05)


def make_consumer(bootstrap: str, **extra) -> AIOKafkaConsumer:
    conf = {
        "bootstrap_servers": bootstrap,
        "group_id": None,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "fetch_max_bytes": 52_428_800,
        "max_partition_fetch_bytes": 10_485_760,
        "request_timeout_ms": 30_000,
    }
    conf.update(extra)
    return AIOKafkaConsumer(**conf)


async def _produce(bootstrap: str, topic: str, codec: str, base_ts: int) -> list:
    errors = await create_topic(bootstrap, topic)
    assert [(t[0], t[1]) for t in errors] == [(topic, 0)], errors
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        compression_type=None if codec == "none" else codec,
        linger_ms=20,
        max_batch_size=512 * 1024,
        acks="all",
        request_timeout_ms=30_000,
    )
    await producer.start()
    try:
        futures = []
        for i in range(N_RECORDS):
            futures.append(
                await producer.send(
                    topic,
                    value=value_of(i),
                    key=key_of(i),
                    headers=headers_of(i),
                    timestamp_ms=timestamp_of(base_ts, i),
                )
            )
        await asyncio.wait_for(producer.flush(), 120)
        metas = await asyncio.wait_for(asyncio.gather(*futures), 30)
    finally:
        await producer.stop()
    assert all(md.topic == topic for md in metas)
    return [(md.partition, md.offset) for md in metas]


@pytest.fixture(scope="module", params=CODECS)
def produced(request, broker) -> Produced:
    codec = request.param
    topic = f"aiokafka-{codec}"
    base_ts = new_base_ts()
    placements = asyncio.run(_produce(broker.bootstrap, topic, codec, base_ts))
    return Produced(topic, codec, N_RECORDS, base_ts, placements)


async def test_create_topic_and_duplicate(broker) -> None:
    topic = "aiokafka-admin"
    errors = await create_topic(broker.bootstrap, topic)
    assert [(t[0], t[1]) for t in errors] == [(topic, 0)], errors
    consumer = make_consumer(broker.bootstrap)
    await consumer.start()
    try:
        await wait_partitions(consumer, topic, PARTITIONS)
    finally:
        await consumer.stop()
    errors = await create_topic(broker.bootstrap, topic)
    assert [(t[0], t[1]) for t in errors] == [(topic, TOPIC_ALREADY_EXISTS)], errors


async def test_consume_roundtrip(broker, produced: Produced) -> None:
    consumer = make_consumer(broker.bootstrap)
    await consumer.start()
    tps = [TopicPartition(produced.topic, p) for p in range(PARTITIONS)]
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[Consumed] = []
        deadline = time.monotonic() + 180
        while len(records) < N_RECORDS:
            assert time.monotonic() < deadline, f"consumed only {len(records)} records"
            batch = await consumer.getmany(timeout_ms=1000, max_records=50_000)
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
        assert {tp.partition: await consumer.position(tp) for tp in tps} == layout.counts()
    finally:
        await consumer.stop()


async def test_list_offsets(broker, produced: Produced) -> None:
    expected = layout_from_placements(produced)
    tps = [TopicPartition(produced.topic, p) for p in range(PARTITIONS)]
    consumer = make_consumer(broker.bootstrap)
    await consumer.start()
    try:
        assert await consumer.beginning_offsets(tps) == dict.fromkeys(tps, 0)
        assert await consumer.end_offsets(tps) == {
            tp: expected.counts()[tp.partition] for tp in tps
        }
        assert produced.base_ts is not None
        for ts in timestamp_queries(produced.base_ts, N_RECORDS):
            got = await consumer.offsets_for_times(dict.fromkeys(tps, ts))
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
        await consumer.stop()


async def test_long_poll(broker) -> None:
    """An idle fetch is held for fetch_max_wait_ms; an append answers it at once."""
    topic = "aiokafka-longpoll"
    errors = await create_topic(broker.bootstrap, topic, partitions=1)
    assert [(t[0], t[1]) for t in errors] == [(topic, 0)], errors
    tp = TopicPartition(topic, 0)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0, acks="all")
    consumer = make_consumer(
        broker.bootstrap, fetch_max_wait_ms=LONG_POLL_WAIT_MS, fetch_min_bytes=1
    )
    await producer.start()
    await consumer.start()
    stop = asyncio.Event()
    task = None
    try:
        md = await producer.send_and_wait(topic, value=b"warm-up", key=b"k")
        assert (md.partition, md.offset) == (0, 0)

        # Time every Fetch round trip the consumer's fetcher makes.
        rtts: list[float] = []
        client = consumer._client
        original_send = client.send

        async def timed_send(node_id, request, *args, **kwargs):
            t0 = time.monotonic()
            response = await original_send(node_id, request, *args, **kwargs)
            if isinstance(request, FetchRequest):
                rtts.append((time.monotonic() - t0) * 1000)
            return response

        client.send = timed_send
        consumer.assign([tp])
        consumer.seek(tp, 1)

        received: list[tuple[float, bytes, int]] = []

        async def loop() -> None:
            deadline = time.monotonic() + 60
            while not stop.is_set() and time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=50)
                for recs in batch.values():
                    received.extend((time.monotonic(), r.value, r.offset) for r in recs)

        task = asyncio.create_task(loop())
        deadline = time.monotonic() + 15
        while len(rtts) < 2:
            assert time.monotonic() < deadline, f"idle fetches seen: {rtts}"
            await asyncio.sleep(0.01)
        check_idle_fetches(list(rtts))
        assert received == []

        latencies = []
        for r in range(3):
            await asyncio.sleep(ROUND_GAP_S)  # scenario: the record comes mid-park
            value = b"long-poll-%d" % r
            t0 = time.monotonic()
            await producer.send_and_wait(topic, value=value, key=b"k")
            deadline = time.monotonic() + 10
            while not any(x[1] == value for x in received):
                assert time.monotonic() < deadline, f"record {value!r} never arrived"
                await asyncio.sleep(0.005)
            latencies.append(next(x[0] for x in received if x[1] == value) - t0)
        assert [(v, o) for _, v, o in received] == [(b"long-poll-%d" % r, 1 + r) for r in range(3)]
        check_prompt(latencies)
    finally:
        stop.set()
        if task is not None:
            await asyncio.wait_for(task, 10)
        await consumer.stop()
        await producer.stop()
