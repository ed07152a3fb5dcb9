"""ListOffsets (key 2): earliest, latest, max-timestamp and by-timestamp offset lookups.

As Kafka's handleListOffsetRequest: the last fetchable offset is the last stable offset
for read_committed (v2+ isolation level 1), else the high watermark; LATEST answers it and
a timestamp lookup only finds offsets below it.

Right after a leader change the new leader's high watermark can sit below where its epoch
starts, until its followers fetch: records the previous leader acknowledged are then above
it. A consumer asking for LATEST, or for a timestamp found at or past the high watermark,
gets OFFSET_NOT_AVAILABLE (retriable; Partition.fetchOffsetForTimestamp) rather than an
end offset short of acknowledged records.
"""

from __future__ import annotations

from typing import Any

from pybroker.broker.context import RequestContext
from pybroker.broker.handlers.registry import api
from pybroker.broker.security.authz import AclOperation, ResourceType, authorized
from pybroker.protocol.codec import build, response_type
from pybroker.protocol.errors import ErrorCode, KafkaError

LATEST = -1
EARLIEST = -2
MAX_TIMESTAMP = -3
EARLIEST_LOCAL = -4
LATEST_TIERED = -5
CONSUMER_REPLICA = -1
DEBUG_REPLICA = -2  # replica id of consumers that may read up to the log end
READ_UNCOMMITTED, READ_COMMITTED = 0, 1
# ReplicaManager.timestampMinSupportedVersion: the first version of each special timestamp;
# any other negative timestamp, or one sent at an older version, is UNSUPPORTED_VERSION.
# (-1/-2 existed from v0, which Kafka 3.9 still served: pybroker.legacy.protocol.enable.)
_MIN_VERSION = {LATEST: 0, EARLIEST: 0, MAX_TIMESTAMP: 7, EARLIEST_LOCAL: 8, LATEST_TIERED: 9}


def _error(index: int, code: ErrorCode) -> dict[str, Any]:
    return dict(partition_index=index, error_code=code, timestamp=-1, offset=-1)


def _lookup(ctx: RequestContext, request: Any, topic: str, p: Any) -> dict[str, Any]:
    index = int(p.partition_index)
    out = dict(partition_index=index, error_code=ErrorCode.none, timestamp=-1, offset=-1)
    try:
        part = ctx.broker.replica_manager.leader_partition(topic, index)
        lg = part.log
        state = ctx.broker.image.partition(topic, index)
        epoch = state.leader_epoch if state else -1
        current = int(getattr(p, "current_leader_epoch", -1))
        # Only -1 means "unknown" (ReplicaManager.fetchOffset); any other value is checked.
        if current != -1 and current != epoch:
            code = (
                ErrorCode.unknown_leader_epoch if current > epoch else ErrorCode.fenced_leader_epoch
            )
            raise KafkaError("leader epoch mismatch", code)
        ts = int(p.timestamp)
        # Only a consumer's isolation level counts (ReplicaManager.fetchOffset); anyone
        # else may see up to the log end (Partition.fetchOffsetForTimestamp).
        consumer = int(request.replica_id) == CONSUMER_REPLICA
        lagging = consumer and part.leader_epoch_start_offset > lg.high_watermark
        if not consumer:
            fetchable = lg.log_end_offset
        elif int(getattr(request, "isolation_level", 0)) == READ_COMMITTED:
            fetchable = lg.last_stable_offset
        else:
            fetchable = lg.high_watermark
        if ts == LATEST:
            if lagging:
                raise _not_available(lg.high_watermark, part.leader_epoch_start_offset)
            out.update(offset=fetchable, leader_epoch=epoch)
        elif ts in (EARLIEST, EARLIEST_LOCAL):
            out.update(offset=lg.log_start_offset, leader_epoch=epoch)
        elif ts == LATEST_TIERED:
            # No tiered storage: nothing is tiered, so there is no such offset.
            out.update(offset=-1, leader_epoch=-1)
        else:
            found = lg.fetch_offset_for_timestamp(ts)
            if found is not None:
                offset, stamp, found_epoch = found
                if offset < fetchable:
                    out.update(offset=offset, timestamp=stamp, leader_epoch=found_epoch)
                elif lagging:
                    raise _not_available(lg.high_watermark, part.leader_epoch_start_offset)
    except KafkaError as exc:
        out["error_code"] = exc.code
    return out


def _not_available(high_watermark: int, epoch_start: int) -> KafkaError:
    return KafkaError(
        f"high watermark {high_watermark} is behind the start of this leader epoch ({epoch_start})",
        ErrorCode.offset_not_available,
    )


@api(2, "ListOffsets", 1, 10)
async def handle_list_offsets(ctx: RequestContext, request: Any) -> Any:
    v = ctx.version
    cls = response_type(2, v)
    if request.topics and int(getattr(request, "isolation_level", 0)) not in (
        READ_UNCOMMITTED,
        READ_COMMITTED,
    ):
        # ListOffsetsRequest.isolationLevel -> IsolationLevel.forId throws
        # IllegalArgumentException: KafkaApis.handleError sends getErrorResponse, every
        # partition UNKNOWN_SERVER_ERROR.
        topics = [
            dict(
                name=t.name,
                partitions=[
                    _error(int(p.partition_index), ErrorCode.unknown_server_error)
                    for p in t.partitions
                ],
            )
            for t in request.topics
        ]
        return build(cls, throttle_time=0, topics=topics)
    # ReplicaManager.fetchOffset keeps one status per topic-partition: a repeated
    # partition is answered once, INVALID_REQUEST; the response groups them by topic.
    # KafkaApis: DESCRIBE on each topic; refused topics are answered after the others.
    allowed = authorized(
        ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, (t.name for t in request.topics)
    )
    refused = [
        dict(
            name=t.name,
            partitions=[
                _error(int(p.partition_index), ErrorCode.topic_authorization_failed)
                for p in t.partitions
            ],
        )
        for t in request.topics
        if t.name not in allowed
    ]
    seen: set[tuple[str, int]] = set()
    duplicates: set[tuple[str, int]] = set()
    for t in request.topics:
        if t.name not in allowed:
            continue
        for p in t.partitions:
            tp = (t.name, int(p.partition_index))
            (duplicates if tp in seen else seen).add(tp)
    by_topic: dict[str, dict[int, dict[str, Any]]] = {}
    for t in request.topics:
        if t.name not in allowed:
            continue
        for p in t.partitions:
            index = int(p.partition_index)
            if (t.name, index) in duplicates:
                answer = _error(index, ErrorCode.invalid_request)
            elif int(p.timestamp) < 0 and v < _MIN_VERSION.get(int(p.timestamp), 2**15):
                answer = _error(index, ErrorCode.unsupported_version)
            else:
                answer = _lookup(ctx, request, t.name, p)
            by_topic.setdefault(t.name, {})[index] = answer
    topics = [dict(name=n, partitions=list(parts.values())) for n, parts in by_topic.items()]
    return build(cls, throttle_time=0, topics=topics + refused)
