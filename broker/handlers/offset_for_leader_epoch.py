"""OffsetForLeaderEpoch (key 23): where a leader epoch ends in the leader's log.

Followers ask it after a leader change to find where their log diverges from the new
leader's (KIP-101/279); consumers ask it to detect log truncation (KIP-320). As Kafka's
Partition.lastOffsetForLeaderEpoch: the current leader epoch is checked
(FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH), only the leader answers (except for the
debugging replica id -2), and the answer is the largest epoch at or below the requested
one with the offset where it ends, or -1/-1 when the log knows no such epoch.
"""

from __future__ import annotations

from typing import Any

from pybroker.broker.context import RequestContext
from pybroker.broker.handlers.registry import api
from pybroker.broker.security.authz import (
    CLUSTER_NAME,
    AclOperation,
    ResourceType,
    authorize,
    authorized,
)
from pybroker.protocol.codec import build, response_type
from pybroker.protocol.errors import ErrorCode, KafkaError
from pybroker.replication.partition import check_epoch

DEBUGGING_REPLICA_ID = -2


def _end_offset(ctx: RequestContext, replica_id: int, topic: str, p: Any) -> dict[str, Any]:
    index = int(p.partition)
    out: dict[str, Any] = dict(
        partition=index, error_code=ErrorCode.none, leader_epoch=-1, end_offset=-1
    )
    rm = ctx.broker.replica_manager
    try:
        current = int(p.current_leader_epoch)
        if replica_id == DEBUGGING_REPLICA_ID:
            part = rm.partition(topic, index)
            if part is None:
                rm.leader_partition(topic, index)  # raises the right error
                return out
            check_epoch(current, part.leader_epoch)
        else:
            part = rm.leader_partition(topic, index, current)
        epoch, end = part.log.end_offset_for_epoch(int(p.leader_epoch))
        out.update(leader_epoch=epoch, end_offset=end)
    except KafkaError as exc:
        out.update(error_code=exc.code)
    return out


@api(23, "OffsetForLeaderEpoch", 2, 4)
async def handle_offset_for_leader_epoch(ctx: RequestContext, request: Any) -> Any:
    replica_id = int(getattr(request, "replica_id", -1))
    # KafkaApis: CLUSTER_ACTION on the cluster covers every topic, else DESCRIBE per topic;
    # refused topics are answered after the others.
    names = [t.topic for t in request.topics]
    allowed = set(names)
    if not authorize(ctx, AclOperation.CLUSTER_ACTION, ResourceType.CLUSTER, CLUSTER_NAME):
        allowed = authorized(ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, names)
    code = ErrorCode.topic_authorization_failed
    topics = [
        dict(
            topic=t.topic,
            partitions=[_end_offset(ctx, replica_id, t.topic, p) for p in t.partitions],
        )
        for t in request.topics
        if t.topic in allowed
    ] + [
        dict(
            topic=t.topic,
            partitions=[
                dict(partition=int(p.partition), error_code=code, leader_epoch=-1, end_offset=-1)
                for p in t.partitions
            ],
        )
        for t in request.topics
        if t.topic not in allowed
    ]
    return build(response_type(23, ctx.version), topics=topics, throttle_time=0)
