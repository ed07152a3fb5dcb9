"""Coordinator responses whose writes did not commit: every NONE slot gets the error."""

from __future__ import annotations

from pybroker.broker.commit_wait import with_error
from pybroker.protocol.codec import build, response_type
from pybroker.protocol.errors import ErrorCode


def test_offset_commit_partitions_get_the_error_but_keep_their_own() -> None:
    resp = build(
        response_type(8, 8),
        throttle_time=0,
        topics=[
            dict(
                name="t",
                partitions=[
                    dict(partition_index=0, error_code=ErrorCode.none),
                    dict(partition_index=1, error_code=ErrorCode.unknown_topic_or_partition),
                ],
            )
        ],
    )
    out = with_error(resp, ErrorCode.coordinator_not_available)
    codes = [p.error_code for t in out.topics for p in t.partitions]
    assert codes == [ErrorCode.coordinator_not_available, ErrorCode.unknown_topic_or_partition]
    assert [p.partition_index for t in out.topics for p in t.partitions] == [0, 1]


def test_top_level_error_code_is_set() -> None:
    resp = build(response_type(14, 5), throttle_time=0, error_code=ErrorCode.none, assignment=b"x")
    out = with_error(resp, ErrorCode.not_coordinator)
    assert out.error_code == ErrorCode.not_coordinator
    assert out.assignment == b"x"
