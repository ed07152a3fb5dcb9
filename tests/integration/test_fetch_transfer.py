"""Fetched records reach the client byte for byte, whichever way the broker sends them.

A response up to 64 KiB goes out as one write with its record slices read inline; a larger
one as a header write plus sendfile per slice. A parked fetch woken by a Produce is
answered from the Produce's own handling when its answer is small, by its own task when it
is large. Every way must carry exactly the bytes of the segment file, in request order.
"""

from __future__ import annotations

import datetime
import time
from pathlib import Path
from typing import Any

from kio.index import load_response_schema
from kio.static.primitive import Records, i16, i32, i64

from pybroker.broker.connection import INLINE_RESPONSE_BYTES
from tests.integration.test_limits import (
    FETCH,
    METADATA,
    PRODUCE,
    batch,
    build,
    create_topic,
    running,
    served,
)
from tests.support.wire import KafkaWire, request_module

TOPIC = "transfer"


def produce(conn: KafkaWire, value: bytes) -> int:
    """Append one batch of one record (acks=1); returns its offset."""
    m = request_module(PRODUCE, conn.pick_version(PRODUCE, 3, 12))
    part = build(m.PartitionProduceData, index=i32(0), records=Records(batch(value)))
    resp = conn.request(
        build(
            m.ProduceRequest,
            transactional_id=None,
            acks=i16(1),
            timeout=datetime.timedelta(seconds=10),
            topic_data=(build(m.TopicProduceData, name=TOPIC, partition_data=(part,)),),
        )
    )
    answer = resp.responses[0].partition_responses[0]
    assert answer.error_code == 0
    return answer.base_offset


def fetch_request(conn: KafkaWire, offset: int, max_bytes: int, max_wait_ms: int = 0) -> Any:
    m = request_module(FETCH, conn.pick_version(FETCH, 4, 12))
    part = build(
        m.FetchPartition,
        partition=i32(0),
        fetch_offset=i64(offset),
        partition_max_bytes=i32(max_bytes),
    )
    return build(
        m.FetchRequest,
        max_wait=datetime.timedelta(milliseconds=max_wait_ms),
        min_bytes=i32(1),
        max_bytes=i32(max_bytes),
        topics=(build(m.FetchTopic, topic=TOPIC, topic_id=None, partitions=(part,)),),
        forgotten_topics_data=(),
    )


def fetch(conn: KafkaWire, offset: int, max_bytes: int) -> Any:
    return partition_of(conn.request(fetch_request(conn, offset, max_bytes)))


def partition_of(resp: Any) -> Any:
    answer = resp.responses[0].partitions[0]
    assert answer.error_code == 0
    return answer


def batch_starts(log_bytes: bytes) -> list[int]:
    """Each batch's position in a segment file, from its length field."""
    starts, pos = [], 0
    while pos < len(log_bytes):
        starts.append(pos)
        pos += 12 + int.from_bytes(log_bytes[pos + 8 : pos + 12], "big")
    return starts


def test_small_and_large_fetches_carry_the_segment_bytes(tmp_path: Path) -> None:
    with running(tmp_path, {"num.partitions": "1"}) as broker, served(broker) as conn:
        create_topic(conn, TOPIC)
        sizes = [100, 3_000, 40_000, 1_000, 90_000, 10, 200_000, 500]
        offsets = [produce(conn, bytes([i + 1]) * n) for i, n in enumerate(sizes)]
        assert offsets == list(range(len(sizes)))
        log_bytes = (broker.data_dir / f"{TOPIC}-0" / f"{0:020d}.log").read_bytes()
        starts = batch_starts(log_bytes)
        assert len(starts) == len(sizes)
        starts.append(len(log_bytes))
        answered_inline = answered_by_sendfile = 0
        for offset in offsets:
            for max_bytes in (1, 50_000, 1 << 20):
                answer = fetch(conn, offset, max_bytes)
                got = bytes(answer.records)
                # whole batches from the fetched one, as many as fit (at least one)
                stop = offset + 1
                while stop < len(sizes) and starts[stop + 1] - starts[offset] <= max_bytes:
                    stop += 1
                assert got == log_bytes[starts[offset] : starts[stop]], (offset, max_bytes)
                assert answer.high_watermark == len(sizes)
                if len(got) < INLINE_RESPONSE_BYTES - 200:
                    answered_inline += 1
                elif len(got) > INLINE_RESPONSE_BYTES:
                    answered_by_sendfile += 1
        assert answered_inline >= 8 and answered_by_sendfile >= 8
        # nothing past the end: an empty answer on the same connection
        assert bytes(fetch(conn, len(sizes), 1 << 20).records or b"") == b""


def test_parked_fetches_woken_by_produce_answer_in_order_with_the_new_records(
    tmp_path: Path,
) -> None:
    with (
        running(tmp_path, {"num.partitions": "1"}) as broker,
        served(broker) as producer,
        served(broker) as consumer,
    ):
        create_topic(producer, TOPIC)
        fetch_cls = load_response_schema(FETCH, consumer.pick_version(FETCH, 4, 12))
        metadata = request_module(METADATA, 1).MetadataRequest(topics=None)
        metadata_cls = load_response_schema(METADATA, 1)
        for offset, size in enumerate((300, 150_000, 20, 70_000, 5_000)):
            # a long poll, then a request queued behind it on the same connection
            fetch_id = consumer.send(fetch_request(consumer, offset, 1 << 20, max_wait_ms=10_000))
            metadata_id = consumer.send(metadata)
            time.sleep(0.2)  # the fetch is parked by now
            assert produce(producer, bytes([offset + 1]) * size) == offset
            answer = partition_of(consumer.recv(fetch_cls, fetch_id).body)
            assert consumer.recv(metadata_cls, metadata_id).body.brokers
            log_bytes = (broker.data_dir / f"{TOPIC}-0" / f"{0:020d}.log").read_bytes()
            starts = batch_starts(log_bytes) + [len(log_bytes)]
            assert bytes(answer.records) == log_bytes[starts[offset] : starts[offset + 1]]
            assert answer.high_watermark == offset + 1
