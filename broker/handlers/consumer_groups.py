"""KIP-848 group APIs: ConsumerGroupHeartbeat (68) and ConsumerGroupDescribe (69).

Versions are Kafka 4.0's: ConsumerGroupHeartbeat v0-1 (v1, KIP-1082: the client generates
its member id and may subscribe with a regular expression) and ConsumerGroupDescribe v0-1
(v1 adds the member type). The coordinator (``broker.groups.consumer_coordinator``)
answers; these handlers only translate between the wire and it, as Kafka's ``KafkaApis``
does in front of its group coordinator (no authorizer here: every group and topic is
authorized).
"""

from __future__ import annotations

from typing import Any

from pybroker.broker.commit_wait import waits_for_commit
from pybroker.broker.context import RequestContext
from pybroker.broker.groups.consumer_coordinator import HeartbeatRequest
from pybroker.broker.handlers.groups import (
    AUTHORIZED_OPS_NOT_REQUESTED,
    GROUP_OPERATIONS,
    _client_host,
    coordinator_of,
)
from pybroker.broker.handlers.registry import api
from pybroker.protocol.codec import build, millis, response_type
from pybroker.protocol.errors import ErrorCode


@api(68, "ConsumerGroupHeartbeat", 0, 1)
@waits_for_commit()
async def handle_consumer_group_heartbeat(ctx: RequestContext, request: Any) -> Any:
    owned = None
    if request.topic_partitions is not None:
        owned = [(tp.topic_id, [int(p) for p in tp.partitions]) for tp in request.topic_partitions]
    names = request.subscribed_topic_names
    result = coordinator_of(ctx).consumer.heartbeat(
        HeartbeatRequest(
            group_id=request.group_id,
            member_id=request.member_id,
            member_epoch=int(request.member_epoch),
            instance_id=request.instance_id,
            rack_id=request.rack_id,
            rebalance_timeout_ms=millis(request.rebalance_timeout),
            subscribed_topic_names=None if names is None else [str(n) for n in names],
            subscribed_topic_regex=getattr(request, "subscribed_topic_regex", None),
            server_assignor=request.server_assignor,
            owned=owned,
        ),
        ctx.version,
        ctx.client_id or "",
        _client_host(ctx),
    )
    assignment = None
    if result.assignment is not None:
        assignment = dict(
            topic_partitions=[
                dict(topic_id=topic_id, partitions=sorted(parts))
                for topic_id, parts in sorted(result.assignment.items(), key=lambda kv: str(kv[0]))
            ]
        )
    return build(
        response_type(68, ctx.version),
        throttle_time=0,
        error_code=result.error,
        error_message=result.message,
        member_id=result.member_id,
        member_epoch=result.member_epoch,
        heartbeat_interval=result.heartbeat_interval_ms,
        assignment=assignment,
    )


@api(69, "ConsumerGroupDescribe", 0, 1)
async def handle_consumer_group_describe(ctx: RequestContext, request: Any) -> Any:
    groups = coordinator_of(ctx).consumer.describe(list(request.group_ids))
    for group in groups:
        group.setdefault("authorized_operations", AUTHORIZED_OPS_NOT_REQUESTED)
        if request.include_authorized_operations and group["error_code"] == ErrorCode.none:
            group["authorized_operations"] = GROUP_OPERATIONS
    return build(response_type(69, ctx.version), throttle_time=0, groups=groups)
