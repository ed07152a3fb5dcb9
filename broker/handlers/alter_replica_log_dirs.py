"""AlterReplicaLogDirs (key 34, KIP-113): move replicas between this broker's log dirs.

Kafka's ``KafkaApis.handleAlterReplicaLogDirsRequest`` and
``ReplicaManager.alterReplicaLogDirs``: the request is a map from partition to target
dir (a partition named twice goes to the last dir); each partition is answered on its
own, grouped by topic. The move runs in the background (``replication.log_dir_mover``);
NONE means it started, or the replica is already there or already moving there.
Errors: LOG_DIR_NOT_FOUND for a dir not in log.dirs, KAFKA_STORAGE_ERROR for an offline
dir or partition, REPLICA_NOT_AVAILABLE for a partition this broker holds no replica of
and UNKNOWN_TOPIC_OR_PARTITION for one the cluster does not have.
"""

from __future__ import annotations

import logging
from typing import Any

from pybroker.broker.context import RequestContext
from pybroker.broker.handlers.registry import api
from pybroker.broker.security.authz import CLUSTER_NAME, AclOperation, ResourceType, authorize
from pybroker.protocol.codec import build, response_type
from pybroker.protocol.errors import ErrorCode, KafkaError

log = logging.getLogger(__name__)


@api(34, "AlterReplicaLogDirs", 1, 2)
async def handle_alter_replica_log_dirs(ctx: RequestContext, request: Any) -> Any:
    broker = ctx.broker
    wanted: dict[tuple[str, int], str] = {}
    for d in request.dirs:
        for t in d.topics:
            for p in t.partitions:
                tp = (str(t.name), int(p))
                wanted.pop(tp, None)  # keep Kafka's map order: a repeat moves to the end
                wanted[tp] = str(d.path)
    image = broker.image
    results: dict[str, list[dict[str, Any]]] = {}
    # KafkaApis: ALTER on the cluster, else every partition CLUSTER_AUTHORIZATION_FAILED.
    allowed = authorize(ctx, AclOperation.ALTER, ResourceType.CLUSTER, CLUSTER_NAME)
    for (topic, partition), path in wanted.items():
        if not allowed:
            code = ErrorCode.cluster_authorization_failed
            results.setdefault(topic, []).append(dict(partition_index=partition, error_code=code))
            continue
        try:
            exists = image.partition(topic, partition) is not None
            broker.log_dir_mover.alter(topic, partition, path, exists=exists)
            code = ErrorCode.none
        except KafkaError as exc:
            log.warning("Unable to alter log dirs for %s-%d: %s", topic, partition, exc)
            code = exc.code
        results.setdefault(topic, []).append(dict(partition_index=partition, error_code=code))
    return build(
        response_type(34, ctx.version),
        throttle_time=0,
        results=[dict(topic_name=t, partitions=ps) for t, ps in results.items()],
    )
