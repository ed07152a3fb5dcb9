"""DeleteRecords (key 21): move a partition's log start offset (its low watermark) up.

Kafka 4's rules (``KafkaApis.handleDeleteRecordsRequest``, ``ReplicaManager.deleteRecords``
and ``Partition.deleteRecordsOnLeader``): an unknown topic or partition is
UNKNOWN_TOPIC_OR_PARTITION; an internal topic INVALID_TOPIC_EXCEPTION; a topic whose
cleanup.policy lacks ``delete`` POLICY_VIOLATION; offset -1 means the high watermark; a
negative offset or one above the high watermark is OFFSET_OUT_OF_RANGE. On success the
answer carries the new low watermark (the log start offset: this broker is the only
replica), and whole segments below it are deleted asynchronously like retention's.
"""

from __future__ import annotations

from typing import Any

from pybroker.broker.context import RequestContext
from pybroker.broker.handlers.registry import api
from pybroker.broker.security.authz import AclOperation, ResourceType, authorized
from pybroker.protocol.codec import build, response_type
from pybroker.protocol.errors import ErrorCode, KafkaError

INTERNAL_TOPICS = frozenset({"__consumer_offsets", "__transaction_state"})
HIGH_WATERMARK = -1


def _delete(ctx: RequestContext, topic: str, p: Any) -> dict[str, Any]:
    index = int(p.partition_index)
    out = dict(partition_index=index, low_watermark=-1, error_code=ErrorCode.none)
    try:
        lg = ctx.broker.replica_manager.leader_log(topic, index)
        if topic in INTERNAL_TOPICS:
            raise KafkaError(
                f"Cannot delete records of internal topic {topic}",
                ErrorCode.invalid_topic_exception,
            )
        if "delete" not in lg.config.cleanup_policy:
            raise KafkaError(
                f"Records of partition {topic}-{index} can not be deleted due to the "
                "configured policy",
                ErrorCode.policy_violation,
            )
        offset = int(p.offset)
        if offset < 0 and offset != HIGH_WATERMARK:
            raise KafkaError(
                f"The offset {offset} for partition {topic}-{index} is not valid",
                ErrorCode.offset_out_of_range,
            )
        out["low_watermark"] = lg.delete_records_before(offset)
    except KafkaError as exc:
        out["error_code"] = exc.code
    return out


@api(21, "DeleteRecords", 0, 2)
async def handle_delete_records(ctx: RequestContext, request: Any) -> Any:
    # KafkaApis: DELETE on each topic.
    allowed = authorized(
        ctx, AclOperation.DELETE, ResourceType.TOPIC, (t.name for t in request.topics)
    )
    refused = ErrorCode.topic_authorization_failed
    topics = [
        dict(
            name=t.name,
            partitions=[
                _delete(ctx, t.name, p)
                if t.name in allowed
                else dict(
                    partition_index=int(p.partition_index), low_watermark=-1, error_code=refused
                )
                for p in t.partitions
            ],
        )
        for t in request.topics
    ]
    return build(response_type(21, ctx.version), throttle_time=0, topics=topics)
