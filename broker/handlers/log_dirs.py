"""DescribeLogDirs (key 35): each log dir's replicas, their sizes and lag, and free space.

Kafka's ``KafkaApis.handleDescribeLogDirsRequest`` and ``ReplicaManager.describeLogDirs``:
null topics means every partition this broker holds; otherwise the named partitions
(unknown ones are simply absent). Each configured log dir is listed with its absolute
path, its volume's total and usable bytes (v4), and per topic the matching partitions
with size and offset lag; topics with no matching partition are left out. A replica being
moved (AlterReplicaLogDirs) also appears in its target dir with ``is_future_key`` true and
its lag behind the current replica. An offline (failed) dir is answered
KAFKA_STORAGE_ERROR with no topics and sizes -1. The broker reads nothing itself: the
storage layer describes its dirs.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from pybroker.broker.context import RequestContext
from pybroker.broker.handlers.registry import api
from pybroker.broker.security.authz import CLUSTER_NAME, AclOperation, ResourceType, authorize
from pybroker.protocol.codec import build, response_type
from pybroker.protocol.errors import ErrorCode


@api(35, "DescribeLogDirs", 1, 4)
async def handle_describe_log_dirs(ctx: RequestContext, request: Any) -> Any:
    if not authorize(ctx, AclOperation.DESCRIBE, ResourceType.CLUSTER, CLUSTER_NAME):
        return build(
            response_type(35, ctx.version),
            throttle_time=0,
            error_code=ErrorCode.cluster_authorization_failed,
            results=[],
        )
    if request.topics is None:
        wanted = None
    else:
        chosen = {(t.topic, int(p)) for t in request.topics for p in t.partitions}

        def wanted(topic: str, partition: int) -> bool:
            return (topic, partition) in chosen

    results = []
    for d in ctx.broker.log_manager.describe_dirs(wanted):
        if d.offline:
            results.append(
                dict(
                    error_code=ErrorCode.kafka_storage_error,
                    log_dir=d.path,
                    topics=[],
                    total_bytes=-1,
                    usable_bytes=-1,
                )
            )
            continue
        by_topic: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in d.replicas:
            by_topic[r.topic].append(
                dict(
                    partition_index=r.partition,
                    partition_size=r.size_bytes,
                    offset_lag=r.offset_lag,
                    is_future_key=r.is_future,
                )
            )
        results.append(
            dict(
                error_code=ErrorCode.none,
                log_dir=d.path,
                topics=[dict(name=name, partitions=parts) for name, parts in by_topic.items()],
                total_bytes=d.total_bytes,
                usable_bytes=d.usable_bytes,
            )
        )
    return build(
        response_type(35, ctx.version), throttle_time=0, error_code=ErrorCode.none, results=results
    )
