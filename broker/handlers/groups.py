"""Group APIs: FindCoordinator (10), JoinGroup (11), Heartbeat (12), LeaveGroup (13),
SyncGroup (14), DescribeGroups (15), ListGroups (16) and DeleteGroups (42).

Versions and answers follow Kafka 4.x's ``KafkaApis`` in front of the classic group
coordinator (``broker.groups.coordinator``). JoinGroup and SyncGroup wait for the
rebalance step they belong to; the connection, like Kafka's muted channel, serves this
client's next request once they are answered.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pybroker.broker.commit_wait import waits_for_commit
from pybroker.broker.context import RequestContext
from pybroker.broker.groups.consumer_group import ConsumerGroup
from pybroker.broker.groups.coordinator import OFFSETS_TOPIC, GroupCoordinator
from pybroker.broker.groups.group import GroupState, JoinResult, SyncResult
from pybroker.broker.groups.store import create_offsets_topic
from pybroker.broker.handlers.registry import api
from pybroker.broker.security.authz import (
    CLUSTER_NAME,
    AclOperation,
    ResourceType,
    authorize,
    authorized,
    authorized_operations,
)
from pybroker.broker.txn.coordinator import TXN_STATE_TOPIC
from pybroker.broker.txn.store import create_txn_topic
from pybroker.protocol.codec import build, millis, response_type
from pybroker.protocol.errors import ErrorCode, KafkaError

log = logging.getLogger(__name__)

AUTHORIZED_OPS_NOT_REQUESTED = -(2**31)
# AclOperation codes Kafka 4.x supports on a GROUP (READ, DELETE, DESCRIBE,
# DESCRIBE_CONFIGS, ALTER_CONFIGS); with no authorizer all are allowed.
GROUP_OPERATIONS = sum(1 << op for op in (3, 6, 8, 10, 11))
KEY_TYPE_GROUP, KEY_TYPE_TRANSACTION, KEY_TYPE_SHARE = 0, 1, 2

# Errors.message() of the codes FindCoordinator reports (v1+ carries a message).
_MESSAGES = {
    ErrorCode.none: "NONE",
    ErrorCode.coordinator_not_available: "The coordinator is not available.",
    ErrorCode.unsupported_version: "The version of API is not supported.",
    ErrorCode.invalid_request: (
        "This most likely occurs because of a request being malformed by the client library "
        "or the message was sent to an incompatible broker. See the broker logs for more "
        "details."
    ),
    ErrorCode.group_authorization_failed: "Group authorization failed.",
    ErrorCode.transactional_id_authorization_failed: "Transactional Id authorization failed.",
}


def coordinator_of(ctx: RequestContext) -> GroupCoordinator:
    return ctx.broker.group_coordinator


# ------------------------------------------------------------------ FindCoordinator


async def _find(ctx: RequestContext, key_type: int, key: str) -> tuple[ErrorCode, int, str, int]:
    """Kafka's getCoordinator: (error, node id, host, port)."""
    no_node = (-1, "", -1)
    # KafkaApis.getCoordinator: DESCRIBE on the group or transactional id, checked first.
    if key_type == KEY_TYPE_GROUP and not authorize(
        ctx, AclOperation.DESCRIBE, ResourceType.GROUP, key
    ):
        return (ErrorCode.group_authorization_failed, *no_node)
    if key_type == KEY_TYPE_TRANSACTION and not authorize(
        ctx, AclOperation.DESCRIBE, ResourceType.TRANSACTIONAL_ID, key
    ):
        return (ErrorCode.transactional_id_authorization_failed, *no_node)
    if key_type == KEY_TYPE_GROUP:
        broker = ctx.broker
        info = broker.image.topics.get(OFFSETS_TOPIC)
        if info is None:
            try:
                await create_offsets_topic(broker)
            except KafkaError as exc:
                if exc.code != ErrorCode.topic_already_exists:  # a concurrent creation is fine
                    log.warning("Cannot create %s: %s", OFFSETS_TOPIC, exc)
                    return (ErrorCode.coordinator_not_available, *no_node)
        image = broker.image
        partition = coordinator_of(ctx).partition_for(key)
        state = image.partition(OFFSETS_TOPIC, partition)
        node = image.brokers_on(ctx.listener).get(state.leader) if state is not None else None
        if node is None:
            return (ErrorCode.coordinator_not_available, *no_node)
        return ErrorCode.none, node.node_id, node.host, node.port
    if key_type == KEY_TYPE_TRANSACTION:
        # The leader of the transactional id's __transaction_state partition; the topic
        # is created on first use, like the offsets topic above.
        broker = ctx.broker
        if broker.image.topics.get(TXN_STATE_TOPIC) is None:
            try:
                await create_txn_topic(broker)
            except KafkaError as exc:
                if exc.code != ErrorCode.topic_already_exists:  # a concurrent creation is fine
                    log.warning("Cannot create %s: %s", TXN_STATE_TOPIC, exc)
                    return (ErrorCode.coordinator_not_available, *no_node)
        image = broker.image
        state = image.partition(TXN_STATE_TOPIC, broker.txn_coordinator.partition_for(key))
        node = image.brokers_on(ctx.listener).get(state.leader) if state is not None else None
        if node is None:
            return (ErrorCode.coordinator_not_available, *no_node)
        return ErrorCode.none, node.node_id, node.host, node.port
    # Share groups (KIP-932) are not served; any other key type is malformed.
    return (ErrorCode.invalid_request, *no_node)


@api(10, "FindCoordinator", 0, 6)
async def handle_find_coordinator(ctx: RequestContext, request: Any) -> Any:
    v = ctx.version
    key_type = int(getattr(request, "key_type", KEY_TYPE_GROUP))
    cls = response_type(10, v)
    if v < 4:
        error, node_id, host, port = await _find(ctx, key_type, request.key)
        return build(
            cls,
            throttle_time=0,
            error_code=error,
            error_message=_MESSAGES.get(error, error.name),
            node_id=node_id,
            host=host,
            port=port,
        )
    coordinators = []
    for key in request.coordinator_keys:
        error, node_id, host, port = await _find(ctx, key_type, key)
        coordinators.append(
            dict(
                key=key,
                node_id=node_id,
                host=host,
                port=port,
                error_code=error,
                error_message=_batched_message(error, key_type),
            )
        )
    return build(cls, throttle_time=0, coordinators=coordinators)


# Batched (v4+) answers Kafka 4.1 sends without a message.
_SILENT = (
    ErrorCode.none,
    ErrorCode.group_authorization_failed,
    ErrorCode.transactional_id_authorization_failed,
)


def _batched_message(error: ErrorCode, key_type: int) -> str:
    """v4+ messages as Kafka 4.1 sends them: none on success, and none for the share key
    type it rejects while share groups are off; otherwise Errors.message()."""
    if error in _SILENT or key_type == KEY_TYPE_SHARE:
        return ""
    return _MESSAGES.get(error, error.name)


# ------------------------------------------------------------------ JoinGroup / SyncGroup


def _client_host(ctx: RequestContext) -> str:
    host = ctx.peer.rsplit(":", 1)[0] if ":" in ctx.peer else ctx.peer
    return "/" + host.strip("[]")


def _may_read_group(ctx: RequestContext, group_id: str) -> bool:
    """KafkaApis: JoinGroup, SyncGroup, Heartbeat and LeaveGroup need READ on the group."""
    return authorize(ctx, AclOperation.READ, ResourceType.GROUP, group_id)


def _waiter() -> tuple[asyncio.Future[Any], Any]:
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def done(result: Any) -> None:
        if not fut.done():
            fut.set_result(result)

    return fut, done


@api(11, "JoinGroup", 0, 9)
@waits_for_commit()
async def handle_join_group(ctx: RequestContext, request: Any) -> Any:
    v = ctx.version
    if not _may_read_group(ctx, request.group_id):
        return build(
            response_type(11, v),
            throttle_time=0,
            error_code=ErrorCode.group_authorization_failed,
            generation_id=-1,
            protocol_type=None,
            protocol_name=None if v >= 7 else "",
            leader="",
            member_id="",
            members=[],
        )
    session_timeout = millis(request.session_timeout)
    rebalance_timeout = millis(request.rebalance_timeout) if v >= 1 else session_timeout
    instance_id = getattr(request, "group_instance_id", None)
    protocols: list[tuple[str, bytes]] = []
    seen: set[str] = set()
    for p in request.protocols:
        if p.name not in seen:  # the protocols are a map keyed by name
            seen.add(p.name)
            protocols.append((p.name, bytes(p.metadata)))
    fut, done = _waiter()
    coordinator_of(ctx).join_group(
        group_id=request.group_id,
        member_id=request.member_id,
        group_instance_id=instance_id,
        require_known_member_id=v >= 4 and instance_id is None,
        supports_skip_assignment=v >= 9,
        client_id=ctx.client_id or "",
        client_host=_client_host(ctx),
        rebalance_timeout_ms=rebalance_timeout,
        session_timeout_ms=session_timeout,
        protocol_type=request.protocol_type,
        protocols=protocols,
        reason=getattr(request, "reason", None),
        callback=done,
    )
    result: JoinResult = await fut
    ok = result.error == ErrorCode.none
    return build(
        response_type(11, v),
        throttle_time=0,
        error_code=result.error,
        generation_id=result.generation_id,
        protocol_type=result.protocol_type if ok else None,
        # Nullable from v7: Kafka leaves it null on errors (MEMBER_ID_REQUIRED included).
        protocol_name=result.protocol_name
        if ok and result.protocol_name is not None
        else (None if v >= 7 else ""),
        leader=result.leader,
        skip_assignment=result.skip_assignment,
        member_id=result.member_id,
        members=[
            dict(member_id=m, group_instance_id=i, metadata=md) for m, i, md in result.members
        ],
    )


@api(14, "SyncGroup", 0, 5)
@waits_for_commit()
async def handle_sync_group(ctx: RequestContext, request: Any) -> Any:
    v = ctx.version
    if not _may_read_group(ctx, request.group_id):
        return build(
            response_type(14, v),
            throttle_time=0,
            error_code=ErrorCode.group_authorization_failed,
            protocol_type=None,
            protocol_name=None,
            assignment=b"",
        )
    assignments = {a.member_id: bytes(a.assignment) for a in request.assignments}
    fut, done = _waiter()
    coordinator_of(ctx).sync_group(
        group_id=request.group_id,
        generation_id=int(request.generation_id),
        member_id=request.member_id,
        protocol_type=getattr(request, "protocol_type", None),
        protocol_name=getattr(request, "protocol_name", None),
        group_instance_id=getattr(request, "group_instance_id", None),
        assignments=assignments,
        callback=done,
    )
    result: SyncResult = await fut
    return build(
        response_type(14, v),
        throttle_time=0,
        error_code=result.error,
        protocol_type=result.protocol_type,
        protocol_name=result.protocol_name,
        assignment=result.assignment,
    )


# ------------------------------------------------------------------ Heartbeat / LeaveGroup


@api(12, "Heartbeat", 0, 4)
async def handle_heartbeat(ctx: RequestContext, request: Any) -> Any:
    if not _may_read_group(ctx, request.group_id):
        error = ErrorCode.group_authorization_failed
        return build(response_type(12, ctx.version), throttle_time=0, error_code=error)
    error = coordinator_of(ctx).heartbeat(
        request.group_id,
        request.member_id,
        getattr(request, "group_instance_id", None),
        int(request.generation_id),
    )
    return build(response_type(12, ctx.version), throttle_time=0, error_code=error)


@api(13, "LeaveGroup", 0, 5)
@waits_for_commit()
async def handle_leave_group(ctx: RequestContext, request: Any) -> Any:
    v = ctx.version
    if not _may_read_group(ctx, request.group_id):
        error = ErrorCode.group_authorization_failed
        return build(response_type(13, v), throttle_time=0, error_code=error, members=[])
    if v < 3:
        leaving = [(request.member_id, None, None)]
    else:
        leaving = [
            (m.member_id, m.group_instance_id, getattr(m, "reason", None)) for m in request.members
        ]
    top, errors = coordinator_of(ctx).leave_group(request.group_id, leaving)
    if v < 3:
        error = top if top != ErrorCode.none else (errors[0] if errors else ErrorCode.none)
        return build(response_type(13, v), throttle_time=0, error_code=error)
    return build(
        response_type(13, v),
        throttle_time=0,
        error_code=top,
        members=[
            dict(member_id=m, group_instance_id=i, error_code=e)
            for (m, i, _), e in zip(leaving, errors, strict=False)
        ],
    )


# ------------------------------------------------------------------ admin


@api(16, "ListGroups", 0, 5)
async def handle_list_groups(ctx: RequestContext, request: Any) -> Any:
    v = ctx.version
    error, groups = coordinator_of(ctx).list_groups(
        getattr(request, "states_filter", ()) or (), getattr(request, "types_filter", ()) or ()
    )
    # KafkaApis: DESCRIBE on the cluster lists every group, otherwise those described.
    if not authorize(ctx, AclOperation.DESCRIBE, ResourceType.CLUSTER, CLUSTER_NAME):
        allowed = authorized(
            ctx, AclOperation.DESCRIBE, ResourceType.GROUP, (g.group_id for g in groups)
        )
        groups = [g for g in groups if g.group_id in allowed]
    return build(
        response_type(16, v),
        throttle_time=0,
        error_code=error,
        groups=[
            dict(
                group_id=g.group_id,
                protocol_type=g.protocol_type,
                group_state=g.state,
                group_type=g.group_type,
            )
            for g in groups
        ],
    )


@api(15, "DescribeGroups", 0, 6)
async def handle_describe_groups(ctx: RequestContext, request: Any) -> Any:
    v = ctx.version
    coordinator = coordinator_of(ctx)
    want_ops = v >= 3 and request.include_authorized_operations
    described = []
    refused = []
    for group_id in request.groups:
        # KafkaApis: DESCRIBE on each group; refused groups come first in the response.
        if not authorize(ctx, AclOperation.DESCRIBE, ResourceType.GROUP, group_id):
            refused.append(
                dict(
                    error_code=ErrorCode.group_authorization_failed,
                    error_message=None,
                    group_id=group_id,
                    group_state="",
                    protocol_type="",
                    protocol_data="",
                    members=[],
                    authorized_operations=AUTHORIZED_OPS_NOT_REQUESTED,
                )
            )
            continue
        ops = (
            authorized_operations(ctx, ResourceType.GROUP, group_id)
            if want_ops
            else AUTHORIZED_OPS_NOT_REQUESTED
        )
        error, group = coordinator.describe_group(group_id)
        entry: dict[str, Any] = dict(
            error_code=error,
            error_message=None,
            group_id=group_id,
            group_state="",
            protocol_type="",
            protocol_data="",
            members=[],
            authorized_operations=AUTHORIZED_OPS_NOT_REQUESTED,
        )
        if error == ErrorCode.group_id_not_found:
            entry["group_state"] = GroupState.DEAD.value
            if v < 6:  # answered as a dead group, with the operations Kafka reports
                entry["authorized_operations"] = ops
            if v >= 6:
                entry["error_message"] = (
                    f"Group {group_id} is not a classic group."
                    if isinstance(coordinator.groups.get(group_id), ConsumerGroup)
                    else f"Group {group_id} not found."
                )
            else:
                entry["error_code"] = ErrorCode.none
        elif group is not None:
            stable = group.state == GroupState.STABLE and group.protocol_name is not None
            entry.update(
                group_state=group.state.value,
                protocol_type=group.protocol_type or "",
                protocol_data=group.protocol_name if stable else "",
                authorized_operations=ops,
                members=[
                    dict(
                        member_id=m.member_id,
                        group_instance_id=m.group_instance_id,
                        client_id=m.client_id,
                        client_host=m.client_host,
                        member_metadata=m.metadata(group.protocol_name)
                        if stable and group.protocol_name is not None
                        else b"",
                        # Kafka describes the assignment in every state.
                        member_assignment=m.assignment,
                    )
                    for m in group.members.values()
                ],
            )
        described.append(entry)
    return build(response_type(15, v), throttle_time=0, groups=refused + described)


@api(42, "DeleteGroups", 0, 2)
@waits_for_commit()
async def handle_delete_groups(ctx: RequestContext, request: Any) -> Any:
    unique = list(dict.fromkeys(request.groups_names))
    # KafkaApis: DELETE on each group; the refused ones are answered after the others.
    allowed = authorized(ctx, AclOperation.DELETE, ResourceType.GROUP, unique)
    results = coordinator_of(ctx).delete_groups([g for g in unique if g in allowed])
    for g in unique:
        if g not in allowed:
            results[g] = ErrorCode.group_authorization_failed
    order = [g for g in unique if g in allowed] + [g for g in unique if g not in allowed]
    return build(
        response_type(42, ctx.version),
        throttle_time=0,
        results=[dict(group_id=g, error_code=results[g]) for g in order],
    )
