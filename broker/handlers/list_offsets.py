"""ListOffsets (key 2): earliest, latest, max-timestamp and by-timestamp offset lookups.

As Kafka's handleListOffsetRequest: the last fetchable offset is the last stable offset
for read_committed (v2+ isolation level 1), else the high watermark; LATEST answers it and
a timestamp lookup only finds offsets below it.
"""

from __future__ import annotations

from typing import Any

from pybroker.broker.context import RequestContext
from pybroker.broker.handlers.registry import api
from pybroker.protocol.codec import build, response_type
from pybroker.protocol.errors import ErrorCode, KafkaError

LATEST = -1
EARLIEST = -2
MAX_TIMESTAMP = -3
EARLIEST_LOCAL = -4
LATEST_TIERED = -5
DEBUG_REPLICA = -2  # replica id of consumers that may read up to the log end
READ_COMMITTED = 1


def _lookup(ctx: RequestContext, request: Any, topic: str, p: Any) -> dict[str, Any]:
    index = int(p.partition_index)
    out = dict(partition_index=index, error_code=ErrorCode.none, timestamp=-1, offset=-1)
    try:
        lg = ctx.broker.replica_manager.leader_log(topic, index)
        state = ctx.broker.image.partition(topic, index)
        epoch = state.leader_epoch if state else -1
        current = int(getattr(p, "current_leader_epoch", -1))
        if current >= 0 and current != epoch:
            code = (
                ErrorCode.unknown_leader_epoch if current > epoch else ErrorCode.fenced_leader_epoch
            )
            raise KafkaError("leader epoch mismatch", code)
        ts = int(p.timestamp)
        committed = int(getattr(request, "isolation_level", 0)) == READ_COMMITTED
        fetchable = lg.last_stable_offset if committed else lg.high_watermark
        if ts == LATEST:
            out.update(offset=fetchable, leader_epoch=epoch)
        elif ts in (EARLIEST, EARLIEST_LOCAL):
            out.update(offset=lg.log_start_offset, leader_epoch=epoch)
        elif ts == LATEST_TIERED:
            # No tiered storage: nothing is tiered, so there is no such offset.
            out.update(offset=-1, leader_epoch=-1)
        elif ts < LATEST_TIERED:
            raise KafkaError(f"invalid timestamp {ts}", ErrorCode.invalid_request)
        else:
            found = lg.fetch_offset_for_timestamp(ts)
            if found is not None:
                offset, stamp, found_epoch = found
                if offset < fetchable:
                    out.update(offset=offset, timestamp=stamp, leader_epoch=found_epoch)
    except KafkaError as exc:
        out["error_code"] = exc.code
    return out


@api(2, "ListOffsets", 1, 10)
async def handle_list_offsets(ctx: RequestContext, request: Any) -> Any:
    topics = [
        dict(name=t.name, partitions=[_lookup(ctx, request, t.name, p) for p in t.partitions])
        for t in request.topics
    ]
    return build(response_type(2, ctx.version), throttle_time=0, topics=topics)
