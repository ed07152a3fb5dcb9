"""The hand-written Fetch encoder must produce exactly kio's bytes for every version."""

from __future__ import annotations

import uuid

import pytest

from pybroker.protocol.codec import build, encode_body, response_type
from pybroker.protocol.fetch_encoder import FetchPartition, FetchTopic, encode_fetch_response


class Slice:
    """A stand-in record slice holding its bytes (the encoder only reads .length)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.length = len(data)


def flatten(parts: list) -> bytes:
    return b"".join(p if isinstance(p, bytes) else p.data for p in parts)


@pytest.mark.parametrize("version", range(4, 19))
@pytest.mark.parametrize("aborted", [None, [], [(7, 100), (9, 250)]])
def test_matches_kio(version: int, aborted: list[tuple[int, int]] | None) -> None:
    tid = uuid.UUID("12345678-1234-5678-1234-567812345678")
    recs = [b"\x01" * 70, b"\x02" * 33]
    topics = [
        FetchTopic(
            "orders",
            tid,
            [
                FetchPartition(0, 0, 42, 40, 3, aborted, -1, [Slice(r) for r in recs]),
                FetchPartition(1, 1, 10, 10, 0, aborted, -1, []),
            ],
        ),
        FetchTopic("other", uuid.UUID(int=5), [FetchPartition(2, 3, -1, -1, -1, None, -1, [])]),
    ]
    got = encode_fetch_response(version, topics, throttle_ms=5, error_code=0, session_id=0)
    body = flatten(got.parts)
    assert got.size == len(body)

    cls = response_type(1, version)

    def part(p: FetchPartition) -> dict:
        return dict(
            partition_index=p.partition,
            error_code=p.error_code,
            high_watermark=p.high_watermark,
            last_stable_offset=p.last_stable_offset,
            log_start_offset=p.log_start_offset,
            aborted_transactions=None
            if p.aborted_transactions is None
            else [dict(producer_id=a, first_offset=b) for a, b in p.aborted_transactions],
            preferred_read_replica=p.preferred_read_replica,
            records=b"".join(s.data for s in p.records),
        )

    expected = encode_body(
        build(
            cls,
            throttle_time=5,
            error_code=0,
            session_id=0,
            responses=[
                dict(topic=t.name, topic_id=t.topic_id, partitions=[part(p) for p in t.partitions])
                for t in topics
            ],
        )
    )
    assert body == expected


def test_slices_stay_separate_parts() -> None:
    s = Slice(b"x" * 1000)
    got = encode_fetch_response(12, [FetchTopic("t", None, [FetchPartition(0, records=[s])])])
    assert s in got.parts
    assert got.size == sum(len(p) if isinstance(p, bytes) else p.length for p in got.parts)
