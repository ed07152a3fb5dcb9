"""OffsetForLeaderEpoch (key 23) and replica fetches on a single node, over the wire.

A single node leads every partition at leader epoch 0: epoch 0 ends at the log end, a
later epoch is unknown (-1/-1), a current epoch ahead of the leader's is
UNKNOWN_LEADER_EPOCH, and a broker id that is no follower cannot fetch as a replica.
"""

from __future__ import annotations

import datetime
from typing import Any

from kio.schema.errors import ErrorCode
from kio.static.primitive import i8, i32, i64

from tests.support.broker import BrokerProcess
from tests.support.txn_wire import batch, build, create_topic, produce
from tests.support.wire import KafkaWire, request_module

OFFSET_FOR_LEADER_EPOCH, FETCH = 23, 1


def epoch_end(
    conn: KafkaWire, topic: str, leader_epoch: int, current: int = -1, version: int = 4
) -> Any:
    m = request_module(OFFSET_FOR_LEADER_EPOCH, version)
    resp = conn.request(
        build(
            m.OffsetForLeaderEpochRequest,
            replica_id=i32(-1),
            topics=(
                build(
                    m.OffsetForLeaderTopic,
                    topic=topic,
                    partitions=(
                        build(
                            m.OffsetForLeaderPartition,
                            partition=i32(0),
                            current_leader_epoch=i32(current),
                            leader_epoch=i32(leader_epoch),
                        ),
                    ),
                ),
            ),
        )
    )
    (t,) = resp.topics
    assert t.topic == topic
    (p,) = t.partitions
    return p


def test_epoch_end_offsets_and_errors(broker: BrokerProcess) -> None:
    with KafkaWire(port=broker.port) as conn:
        create_topic(conn, "ofle")
        got = produce(
            conn, {("ofle", 0): batch(-1, -1, -1, [b"a", b"b", b"c"], transactional=False)}, None
        )
        assert got[("ofle", 0)].error_code == ErrorCode.none
        for version in (2, 3, 4):
            p = epoch_end(conn, "ofle", 0, version=version)
            assert (p.error_code, p.leader_epoch, p.end_offset) == (ErrorCode.none, 0, 3)
        p = epoch_end(conn, "ofle", 7)
        assert (p.error_code, p.leader_epoch, p.end_offset) == (ErrorCode.none, -1, -1)
        p = epoch_end(conn, "ofle", 0, current=1)
        assert p.error_code == ErrorCode.unknown_leader_epoch
        p = epoch_end(conn, "ofle", 0, current=0)
        assert (p.error_code, p.end_offset) == (ErrorCode.none, 3)
        p = epoch_end(conn, "no-such-topic", 0)
        assert p.error_code == ErrorCode.unknown_topic_or_partition


def test_fetch_as_an_unknown_replica_is_refused(broker: BrokerProcess) -> None:
    with KafkaWire(port=broker.port) as conn:
        create_topic(conn, "ofle-replica")
        m = request_module(FETCH, 12)
        resp = conn.request(
            build(
                m.FetchRequest,
                replica_id=i32(5),
                max_wait=datetime.timedelta(0),
                min_bytes=i32(1),
                max_bytes=i32(1 << 20),
                isolation_level=i8(0),
                session_id=i32(0),
                session_epoch=i32(-1),
                topics=(
                    build(
                        m.FetchTopic,
                        topic="ofle-replica",
                        partitions=(
                            build(
                                m.FetchPartition,
                                partition=i32(0),
                                current_leader_epoch=i32(-1),
                                fetch_offset=i64(0),
                                last_fetched_epoch=i32(-1),
                                log_start_offset=i64(0),
                                partition_max_bytes=i32(1 << 20),
                            ),
                        ),
                    ),
                ),
                forgotten_topics_data=(),
                rack_id="",
            )
        )
        (t,) = resp.responses
        (p,) = t.partitions
        assert p.error_code == ErrorCode.not_leader_or_follower
