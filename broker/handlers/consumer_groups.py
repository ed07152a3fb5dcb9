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
    _client_host,
    coordinator_of,
)
from pybroker.broker.handlers.registry import api
from pybroker.broker.security.authz import (
    AclOperation,
    ResourceType,
    authorize,
    authorized,
    authorized_operations,
)
from pybroker.protocol.codec import build, millis, response_type
from pybroker.protocol.errors import ErrorCode


@api(68, "ConsumerGroupHeartbeat", 0, 1)
@waits_for_commit()
async def handle_consumer_group_heartbeat(ctx: RequestContext, request: Any) -> Any:
    # KafkaApis: READ on the group; subscribed topic names must all be DESCRIBE-able.
    refused = None
    if not authorize(ctx, AclOperation.READ, ResourceType.GROUP, request.group_id):
        refused = ErrorCode.group_authorization_failed
    elif request.subscribed_topic_names:
        subscribed = set(request.subscribed_topic_names)
        if authorized(ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, subscribed) != subscribed:
            refused = ErrorCode.topic_authorization_failed
    if refused is not None:
        return build(
            response_type(68, ctx.version),
            throttle_time=0,
            error_code=refused,
            error_message=None,
            member_id=None,
            member_epoch=0,
            heartbeat_interval=0,
            assignment=None,
        )
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


HIDDEN_TOPICS_MESSAGE = (
    "The group has described topic(s) that the client is not authorized to describe."
)


def refused_entry(group_id: str) -> dict[str, Any]:
    """A DescribedGroup carrying only its id and GROUP_AUTHORIZATION_FAILED."""
    return dict(
        error_code=ErrorCode.group_authorization_failed,
        error_message=None,
        group_id=group_id,
        group_state="",
        group_epoch=0,
        assignment_epoch=0,
        assignor_name="",
        members=[],
        authorized_operations=AUTHORIZED_OPS_NOT_REQUESTED,
    )


def _member_topics(group: dict[str, Any]) -> set[str]:
    """Topics a described group names: subscriptions, assignments and target assignments."""
    names: set[str] = set()
    for m in group.get("members", ()):
        names.update(m.get("subscribed_topic_names") or ())
        for key in ("assignment", "target_assignment"):
            names.update(tp["topic_name"] for tp in (m.get(key) or {}).get("topic_partitions", ()))
    return names


@api(69, "ConsumerGroupDescribe", 0, 1)
async def handle_consumer_group_describe(ctx: RequestContext, request: Any) -> Any:
    # KafkaApis: DESCRIBE on each group; refused groups come first in the response.
    ids = list(request.group_ids)
    allowed = authorized(ctx, AclOperation.DESCRIBE, ResourceType.GROUP, ids)
    refused = [refused_entry(g) for g in ids if g not in allowed]
    groups = coordinator_of(ctx).consumer.describe([g for g in ids if g in allowed])
    # Kafka 4.1: a group whose members name a topic the principal may not DESCRIBE is
    # answered TOPIC_AUTHORIZATION_FAILED instead of being described.
    named = {g["group_id"]: _member_topics(g) for g in groups}
    visible = authorized(
        ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, {t for ts in named.values() for t in ts}
    )
    for i, group in enumerate(groups):
        if not named[group["group_id"]] <= visible:
            groups[i] = dict(
                refused_entry(group["group_id"]),
                error_code=ErrorCode.topic_authorization_failed,
                error_message=HIDDEN_TOPICS_MESSAGE,
            )
    for group in groups:
        group.setdefault("authorized_operations", AUTHORIZED_OPS_NOT_REQUESTED)
        if request.include_authorized_operations and group["error_code"] == ErrorCode.none:
            group["authorized_operations"] = authorized_operations(
                ctx, ResourceType.GROUP, group["group_id"]
            )
    return build(response_type(69, ctx.version), throttle_time=0, groups=refused + groups)
