"""ListOffsets on a new leader whose high watermark is still behind its epoch's start.

Kafka (Partition.fetchOffsetForTimestamp) answers a consumer OFFSET_NOT_AVAILABLE then,
for LATEST and for a timestamp found at or past the high watermark, so that nobody takes
an end offset short of records the previous leader acknowledged. Followers, and lookups
below the high watermark, are answered as usual.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from pybroker.broker.handlers.list_offsets import _lookup
from pybroker.protocol.errors import ErrorCode
from tests.unit.test_replica_manager import image, setup  # noqa: F401 (fixture)
from tests.unit.test_storage_support import batch

LATEST, EARLIEST = -1, -2


def lookup(rm: Any, img: Any, timestamp: int, replica_id: int = -1) -> dict[str, Any]:
    ctx = SimpleNamespace(broker=SimpleNamespace(replica_manager=rm, image=img))
    request = SimpleNamespace(replica_id=replica_id, isolation_level=0)
    p = SimpleNamespace(partition_index=0, timestamp=timestamp, current_leader_epoch=-1)
    return _lookup(ctx, request, "t", p)  # type: ignore[arg-type]


async def test_latest_is_not_available_until_the_followers_catch_the_hw_up(setup) -> None:  # noqa: F811
    rm, _, _ = setup
    rm.apply_image(image(1, 3, (1, 2, 3)))
    lg, info = rm.append("t", 0, batch(5, ts=5_000), -1)
    end = info.last_offset + 1
    rm.record_follower_fetch(2, "t", 0, 2, 0)
    rm.record_follower_fetch(3, "t", 0, 2, 0)
    assert lg.high_watermark == 2 and lg.log_end_offset == end == 5
    # a new epoch starts at 5 with the high watermark still at 2
    newer = image(1, 4, (1, 2, 3))
    rm.apply_image(newer)
    answer = lookup(rm, newer, LATEST)
    assert answer["error_code"] == ErrorCode.offset_not_available and answer["offset"] == -1
    # found at or past the high watermark: not available either
    assert lookup(rm, newer, 5_003)["error_code"] == ErrorCode.offset_not_available
    # below the high watermark, the earliest offset, and a follower's lookup: answered
    below = lookup(rm, newer, 5_000)
    assert (below["error_code"], below["offset"]) == (ErrorCode.none, 0)
    assert lookup(rm, newer, EARLIEST)["offset"] == 0
    follower = lookup(rm, newer, LATEST, replica_id=2)
    assert (follower["error_code"], follower["offset"]) == (ErrorCode.none, 5)
    # the followers fetch at the new epoch: the high watermark reaches the epoch's start
    rm.record_follower_fetch(2, "t", 0, end, 0)
    rm.record_follower_fetch(3, "t", 0, end, 0)
    assert lg.high_watermark == end
    answer = lookup(rm, newer, LATEST)
    assert (answer["error_code"], answer["offset"]) == (ErrorCode.none, end)
    found = lookup(rm, newer, 5_003)
    assert (found["error_code"], found["offset"]) == (ErrorCode.none, 3)
