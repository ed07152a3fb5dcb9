"""Fetched records reach the client byte for byte, whichever way the broker sends them.

A response up to 64 KiB goes out as one write with its record slices read inline; a larger
one as a header write plus sendfile per slice. Both must carry exactly the bytes of the
segment file, and a connection must keep working after either.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from kio.static.primitive import Records, i16, i32, i64

from pybroker.broker.connection import INLINE_RESPONSE_BYTES
from tests.integration.test_limits import (
    FETCH,
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


def fetch(conn: KafkaWire, offset: int, max_bytes: int) -> Any:
    m = request_module(FETCH, conn.pick_version(FETCH, 4, 12))
    part = build(
        m.FetchPartition,
        partition=i32(0),
        fetch_offset=i64(offset),
        partition_max_bytes=i32(max_bytes),
    )
    resp = conn.request(
        build(
            m.FetchRequest,
            max_wait=datetime.timedelta(milliseconds=0),
            min_bytes=i32(1),
            max_bytes=i32(max_bytes),
            topics=(build(m.FetchTopic, topic=TOPIC, topic_id=None, partitions=(part,)),),
            forgotten_topics_data=(),
        )
    )
    answer = resp.responses[0].partitions[0]
    assert answer.error_code == 0
    return answer


def test_small_and_large_fetches_carry_the_segment_bytes(tmp_path: Path) -> None:
    with running(tmp_path, {"num.partitions": "1"}) as broker, served(broker) as conn:
        create_topic(conn, TOPIC)
        sizes = [100, 3_000, 40_000, 1_000, 90_000, 10, 200_000, 500]
        offsets = [produce(conn, bytes([i + 1]) * n) for i, n in enumerate(sizes)]
        assert offsets == list(range(len(sizes)))
        log_bytes = (broker.data_dir / f"{TOPIC}-0" / f"{0:020d}.log").read_bytes()
        starts, pos = [], 0
        while pos < len(log_bytes):  # each batch's position from its length field
            starts.append(pos)
            pos += 12 + int.from_bytes(log_bytes[pos + 8 : pos + 12], "big")
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
