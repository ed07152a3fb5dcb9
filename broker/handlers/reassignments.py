"""AlterPartitionReassignments (45) and ListPartitionReassignments (46), KIP-455.

Validation order and messages follow Kafka 4's controller (ReplicationControlManager):
the topic and partition must exist, then the target replicas must be non-empty, distinct
and registered brokers (KIP-860: with allow_replication_factor_change=false also as many
as the partition has). The controller (``broker.controller``: the single node, or the
ZooKeeper cluster's admin) starts the move and answers once it has started, not when
it is done, as Kafka does. A single node answers as a one-broker Kafka cluster: only
[itself] is a valid target and nothing is ever in progress.
"""

from __future__ import annotations

import logging
from typing import Any

from pybroker.broker.context import RequestContext
from pybroker.broker.handlers.admin_topics import validate_manual_assignment
from pybroker.broker.handlers.registry import api
from pybroker.broker.security.authz import (
    CLUSTER_NAME,
    AclOperation,
    ResourceType,
    authorize,
    denied_message,
)
from pybroker.protocol.codec import build, response_type
from pybroker.protocol.errors import ErrorCode, KafkaError
from pybroker.replication.controller import (
    unknown_partition_for_reassignment,
    unknown_topic_for_reassignment,
)

log = logging.getLogger(__name__)


def _check_exists(ctx: RequestContext, topic: str, partition: int) -> None:
    info = ctx.broker.image.topics.get(topic)
    if info is None:
        raise unknown_topic_for_reassignment(topic)
    if not 0 <= partition < len(info.partitions):
        raise unknown_partition_for_reassignment(topic, partition)


async def _alter_one(ctx: RequestContext, topic: str, part: Any, allow_rf_change: bool) -> None:
    controller = ctx.broker.controller
    assert controller is not None
    index = int(part.partition_index)
    _check_exists(ctx, topic, index)
    if part.replicas is None:
        await controller.cancel_partition_reassignment(topic, index)
        return
    target = [int(b) for b in part.replicas]
    validate_manual_assignment(ctx, target, None)
    await controller.alter_partition_reassignment(topic, index, target, allow_rf_change)


@api(45, "AlterPartitionReassignments", 0, 1)
async def handle_alter_partition_reassignments(ctx: RequestContext, request: Any) -> Any:
    allow_rf_change = bool(getattr(request, "allow_replication_factor_change", True))
    if not authorize(ctx, AclOperation.ALTER, ResourceType.CLUSTER, CLUSTER_NAME):
        # authorizeClusterOperation: getErrorResponse names the error everywhere.
        code = ErrorCode.cluster_authorization_failed
        message = denied_message(ctx, AclOperation.ALTER)
        return build(
            response_type(45, ctx.version),
            throttle_time=0,
            allow_replication_factor_change=allow_rf_change,
            error_code=code,
            error_message=message,
            responses=[
                {
                    "name": t.name,
                    "partitions": [
                        {
                            "partition_index": p.partition_index,
                            "error_code": code,
                            "error_message": message,
                        }
                        for p in t.partitions
                    ],
                }
                for t in request.topics
            ],
        )
    responses = []
    for topic in request.topics:
        name = str(topic.name)
        partitions = []
        for part in topic.partitions:
            code, message = ErrorCode.none, None
            try:
                await _alter_one(ctx, name, part, allow_rf_change)
            except KafkaError as exc:
                # No message given: Kafka sends none for a generic error (ApiError).
                code = exc.code
                message = None if str(exc) == type(exc).__name__ else str(exc)
            except Exception as exc:  # an unexpected failure answers, never drops the request
                log.exception("Reassignment of %s-%s failed", name, part.partition_index)
                code, message = ErrorCode.unknown_server_error, str(exc)
            partitions.append(
                {
                    "partition_index": part.partition_index,
                    "error_code": code,
                    "error_message": message,
                }
            )
        responses.append({"name": name, "partitions": partitions})
    return build(
        response_type(45, ctx.version),
        throttle_time=0,
        allow_replication_factor_change=allow_rf_change,
        error_code=ErrorCode.none,
        error_message=None,
        responses=responses,
    )


@api(46, "ListPartitionReassignments", 0, 0)
async def handle_list_partition_reassignments(ctx: RequestContext, request: Any) -> Any:
    controller = ctx.broker.controller
    assert controller is not None
    if not authorize(ctx, AclOperation.DESCRIBE, ResourceType.CLUSTER, CLUSTER_NAME):
        return build(
            response_type(46, ctx.version),
            throttle_time=0,
            error_code=ErrorCode.cluster_authorization_failed,
            error_message=denied_message(ctx, AclOperation.DESCRIBE),
            topics=[],
        )
    wanted = (
        None
        if request.topics is None
        else {str(t.name): [int(p) for p in t.partition_indexes] for t in request.topics}
    )
    topics: dict[str, list[dict[str, Any]]] = {}
    for topic, index, ra in controller.list_partition_reassignments(wanted):
        topics.setdefault(topic, []).append(
            {
                "partition_index": index,
                "replicas": ra.replicas,
                "adding_replicas": ra.adding,
                "removing_replicas": ra.removing,
            }
        )
    return build(
        response_type(46, ctx.version),
        throttle_time=0,
        error_code=ErrorCode.none,
        error_message=None,
        topics=[{"name": t, "partitions": ps} for t, ps in topics.items()],
    )
