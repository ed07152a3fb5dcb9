"""DescribeTopicPartitions (key 75): topics and partitions, a page at a time (KIP-966).

Kafka 4's admin client describes topics with this API when the broker offers it, so
large topics come back in pages instead of one huge Metadata answer. Kafka's rules
(``DescribeTopicPartitionsRequestHandler`` and ``KRaftMetadataCache``):

- no topics named: every topic; otherwise the named ones (unknown ones answer
  UNKNOWN_TOPIC_OR_PARTITION, or INVALID_TOPIC_EXCEPTION for an illegal name, with a zero
  topic id; they are not reported when listing all topics);
- topics go in name order, starting at the cursor's topic (which a named list must
  contain, else INVALID_REQUEST for every named topic) and, for that topic, at the
  cursor's partition;
- at most min(``max.request.partition.size.limit``, the request's limit) partitions, and
  at least one (Kafka 4.1 treats a limit of 0 or below as 1); when
  a topic is cut short, or the limit is used up before the next topic, the answer's
  cursor names where the next page starts.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from pybroker.broker.context import RequestContext
from pybroker.broker.handlers.metadata import AUTHORIZED_OPS_NOT_REQUESTED, TOPIC_OPS_ALL
from pybroker.broker.handlers.registry import api
from pybroker.broker.log_dir_failures import add_offline_replicas
from pybroker.broker.security.authz import (
    AclOperation,
    ResourceType,
    authorized,
    authorized_operations,
)
from pybroker.protocol.codec import ZERO_UUID, build, response_type
from pybroker.protocol.errors import ErrorCode, KafkaError
from pybroker.replication.metadata import (
    INTERNAL_TOPICS,
    PartitionState,
    TopicInfo,
    validate_topic_name,
)

API_KEY = 75


def _partition(p: PartitionState, live: Collection[int]) -> dict[str, Any]:
    """A partition as KRaftMetadataCache describes it: every replica and ISR member is
    listed; the leader is -1 when it is not reachable on this listener."""
    return dict(
        error_code=ErrorCode.none,
        partition_index=p.partition,
        leader_id=p.leader if p.leader in live else -1,
        leader_epoch=p.leader_epoch,
        replica_nodes=list(p.replicas),
        isr_nodes=list(p.isr),
        eligible_leader_replicas=[],
        last_known_elr=[],
        offline_replicas=[r for r in p.replicas if r not in live],
    )


def _topic(info: TopicInfo, partitions: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(
        error_code=ErrorCode.none,
        name=info.name,
        topic_id=info.topic_id,
        is_internal=info.is_internal,
        partitions=partitions,
        topic_authorized_operations=TOPIC_OPS_ALL,
    )


def _missing(name: str, code: ErrorCode) -> dict[str, Any]:
    return dict(
        error_code=code,
        name=name,
        topic_id=ZERO_UUID,
        is_internal=name in INTERNAL_TOPICS,
        partitions=[],
        topic_authorized_operations=TOPIC_OPS_ALL,
    )


def _unknown_topic_code(name: str) -> ErrorCode:
    try:
        validate_topic_name(name)
    except KafkaError:
        return ErrorCode.invalid_topic_exception
    return ErrorCode.unknown_topic_or_partition


@api(API_KEY, "DescribeTopicPartitions", 0, 0)
async def handle_describe_topic_partitions(ctx: RequestContext, request: Any) -> Any:
    cls = response_type(API_KEY, ctx.version)
    image = ctx.broker.image
    cursor = request.cursor
    cursor_topic = cursor.topic_name if cursor is not None else ""
    list_all = not request.topics
    if list_all:
        names = {n for n in image.topics if n >= cursor_topic}
    else:
        names = {t.name for t in request.topics if t.name >= cursor_topic}
        if cursor is not None and cursor.topic_name not in names:
            # Kafka throws InvalidRequestException: every named topic gets INVALID_REQUEST.
            return build(
                cls,
                throttle_time=0,
                topics=[
                    dict(
                        _missing(t.name, ErrorCode.invalid_request),
                        is_internal=False,
                        topic_authorized_operations=AUTHORIZED_OPS_NOT_REQUESTED,
                    )
                    for t in request.topics
                ],
                next_cursor=None,
            )
    # Kafka: topics the principal may not DESCRIBE are hidden from "all topics" and answered
    # TOPIC_AUTHORIZATION_FAILED, after the page, when named.
    visible = authorized(ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, names)
    refused = [
        dict(
            _missing(n, ErrorCode.topic_authorization_failed),
            is_internal=False,
            topic_authorized_operations=AUTHORIZED_OPS_NOT_REQUESTED,
        )
        for n in sorted(names - visible)
        if not list_all
    ]
    names = names & visible
    live = image.brokers_on(ctx.listener)
    # Kafka 4.1 answers a limit of 0 or below with one partition per page.
    remaining = max(
        1,
        min(ctx.broker.config.max_request_partition_size_limit, request.response_partition_limit),
    )
    topics: list[dict[str, Any]] = []
    next_cursor = None
    for name in sorted(names):
        if remaining == 0:
            next_cursor = dict(topic_name=name, partition_index=0)
            break
        info = image.topics.get(name)
        if info is None:
            if not list_all:
                topics.append(_missing(name, _unknown_topic_code(name)))
            continue
        start = cursor.partition_index if cursor is not None and name == cursor_topic else 0
        upper = min(len(info.partitions), start + remaining)
        parts = [_partition(info.partitions[i], live) for i in range(max(start, 0), upper)]
        topics.append(_topic(info, parts))
        add_offline_replicas(ctx.broker, topics[-1:])  # replicas on failed log dirs
        if upper < len(info.partitions):
            next_cursor = dict(topic_name=name, partition_index=upper)
            break
        remaining -= len(parts)
    for t in topics:
        t["topic_authorized_operations"] = authorized_operations(ctx, ResourceType.TOPIC, t["name"])
    return build(cls, throttle_time=0, topics=topics + refused, next_cursor=next_cursor)
