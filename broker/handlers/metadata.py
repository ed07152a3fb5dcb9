"""Metadata (key 3): brokers, topics and partitions; auto-creates topics when allowed."""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

from pybroker.broker.context import RequestContext
from pybroker.broker.groups.coordinator import OFFSETS_TOPIC
from pybroker.broker.groups.store import create_offsets_topic
from pybroker.broker.handlers.registry import api
from pybroker.broker.log_dir_failures import add_offline_replicas
from pybroker.broker.security.authz import (
    CLUSTER_NAME,
    AclOperation,
    ResourceType,
    authorize,
    authorized,
    authorized_operations,
)
from pybroker.protocol.codec import ZERO_UUID, build, response_type
from pybroker.protocol.errors import ErrorCode, KafkaError
from pybroker.replication.metadata import (
    INTERNAL_TOPICS,
    ClusterImage,
    PartitionState,
    TopicInfo,
)

log = logging.getLogger(__name__)

AUTHORIZED_OPS_NOT_REQUESTED = -(2**31)
# With no authorizer every operation is allowed: the bitfields Kafka reports then.
# Cluster: CREATE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS,
# IDEMPOTENT_WRITE. Topic: READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS,
# ALTER_CONFIGS.
CLUSTER_OPS_ALL = sum(1 << op for op in (5, 7, 8, 9, 10, 11, 12))
TOPIC_OPS_ALL = sum(1 << op for op in (3, 4, 5, 6, 7, 8, 10, 11))


def partition_entry(p: PartitionState, live: Collection[int]) -> dict[str, Any]:
    """Kafka's KRaftMetadataCache.getPartitionMetadata: a leader that is not a live broker
    is LEADER_NOT_AVAILABLE with leader -1; replicas on brokers that are not live are
    listed as offline."""
    leader_alive = p.leader >= 0 and p.leader in live
    return dict(
        error_code=ErrorCode.none if leader_alive else ErrorCode.leader_not_available,
        partition_index=p.partition,
        leader_id=p.leader if leader_alive else -1,
        leader_epoch=p.leader_epoch,
        replica_nodes=list(p.replicas),
        isr_nodes=list(p.isr),
        offline_replicas=[r for r in p.replicas if r not in live],
    )


def topic_entry(
    info: TopicInfo, live: Collection[int], ops: int = AUTHORIZED_OPS_NOT_REQUESTED
) -> dict[str, Any]:
    return dict(
        error_code=ErrorCode.none,
        name=info.name,
        topic_id=info.topic_id,
        is_internal=info.is_internal,
        partitions=[partition_entry(p, live) for p in info.partitions],
        topic_authorized_operations=ops,
    )


def error_entry(name: str | None, code: ErrorCode, topic_id: Any = None) -> dict[str, Any]:
    return dict(
        error_code=code,
        name=name,
        topic_id=topic_id,
        is_internal=False,
        partitions=[],
        topic_authorized_operations=AUTHORIZED_OPS_NOT_REQUESTED,
    )


def broker_entries(image: ClusterImage, listener: str) -> list[dict[str, Any]]:
    """The brokers with their endpoints on the listener the request came through."""
    return [
        dict(node_id=b.node_id, host=b.host, port=b.port, rack=b.rack)
        for b in sorted(image.brokers_on(listener).values(), key=lambda b: b.node_id)
    ]


async def auto_create(ctx: RequestContext, name: str) -> dict[str, Any]:
    """Create ``name`` with the broker defaults, as Kafka does for a Metadata lookup."""
    broker = ctx.broker
    assert broker.controller is not None
    try:
        if name == OFFSETS_TOPIC:
            # Internal topics get their own partitions and configs (AutoTopicCreationManager).
            info = await create_offsets_topic(broker)
        else:
            rf = broker.config.default_replication_factor
            live = len(broker.image.brokers)
            if rf > live and broker.cluster is not None:
                # Kafka's AutoTopicCreationManager: no topic with fewer replicas than
                # default.replication.factor (it would stay under-replicated forever); the
                # client sees LEADER_NOT_AVAILABLE and asks again once brokers have joined.
                log.info(
                    "Not auto-creating %s yet: default.replication.factor %d, %d live brokers",
                    name,
                    rf,
                    live,
                )
                return error_entry(name, ErrorCode.leader_not_available)
            info = await broker.controller.create_topic(
                name,
                broker.config.num_partitions,
                min(rf, live),  # a single node serves the replication it can (one)
                {},
            )
    except KafkaError as exc:
        if exc.code == ErrorCode.topic_already_exists:
            return topic_entry(broker.image.topics[name], broker.image.brokers)
        return error_entry(name, exc.code)
    log.info("Auto-created topic %s for client %s", name, ctx.client_id)
    return topic_entry(info, broker.image.brokers)


@api(3, "Metadata", 0, 13)
async def handle_metadata(ctx: RequestContext, request: Any) -> Any:
    broker = ctx.broker
    image = broker.image
    v = ctx.version
    allow_auto = v < 4 or bool(request.allow_auto_topic_creation)
    allow_auto = allow_auto and broker.config.auto_create_topics_enable
    want_topic_ops = v >= 8 and request.include_topic_authorized_operations

    def ops(name: str) -> int:
        if not want_topic_ops:
            return AUTHORIZED_OPS_NOT_REQUESTED
        return authorized_operations(ctx, ResourceType.TOPIC, name)

    cluster_ops = AUTHORIZED_OPS_NOT_REQUESTED
    if 8 <= v <= 10 and request.include_cluster_authorized_operations:
        cluster_ops = (
            authorized_operations(ctx, ResourceType.CLUSTER, CLUSTER_NAME)
            if authorize(ctx, AclOperation.DESCRIBE, ResourceType.CLUSTER, CLUSTER_NAME)
            else 0
        )
    topics: list[dict[str, Any]] = []
    requested = request.topics
    if (
        10 <= v < 12
        and requested
        and any(
            t.name is None or (t.topic_id is not None and t.topic_id != ZERO_UUID)
            for t in requested
        )
    ):
        # KafkaApis.handleTopicMetadataRequest: v10-11 take neither a null name nor a topic
        # id (InvalidRequestException); MetadataRequest.getErrorResponse answers every
        # requested topic INVALID_REQUEST (a null name as "") and nothing else.
        return build(
            response_type(3, v),
            throttle_time=0,
            brokers=[],
            cluster_id=None,
            controller_id=-1,
            topics=[
                dict(error_entry(t.name or "", ErrorCode.invalid_request), topic_id=t.topic_id)
                for t in requested
            ],
            cluster_authorized_operations=AUTHORIZED_OPS_NOT_REQUESTED,
        )
    # KafkaApis: topics the principal may not DESCRIBE are left out of "all topics" and
    # answered TOPIC_AUTHORIZATION_FAILED (after the others) when named; creating a missing
    # topic needs CREATE on the cluster or on the topic.
    refused: list[dict[str, Any]] = []
    if requested is None or (v == 0 and not requested):
        visible = authorized(ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, image.topics)
        topics = [
            topic_entry(t, image.brokers, ops(t.name))
            for t in image.topics.values()
            if t.name in visible
        ]
    else:
        wanted = [t.name for t in requested if t.name is not None]
        for t in requested:
            if t.name is None and t.topic_id and (info := image.topic_by_id(t.topic_id)):
                wanted.append(info.name)
        visible = authorized(ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, wanted)
        seen: set[Any] = set()
        for t in requested:
            name = t.name
            topic_id = getattr(t, "topic_id", None)
            # Kafka collects the requested names (and ids) into sets: one entry each.
            key = name if name is not None else topic_id
            if key in seen:
                continue
            seen.add(key)
            if name is None:
                info = image.topic_by_id(topic_id) if topic_id and topic_id != ZERO_UUID else None
                if info is not None and info.name not in visible:
                    refused.append(
                        error_entry(None, ErrorCode.topic_authorization_failed, topic_id)
                    )
                    continue
                topics.append(
                    topic_entry(info, image.brokers, ops(info.name))
                    if info
                    else error_entry(None, ErrorCode.unknown_topic_id, topic_id)
                )
                continue
            if name not in visible:
                refused.append(error_entry(name, ErrorCode.topic_authorization_failed))
                continue
            info = image.topics.get(name)
            if info is not None:
                topics.append(topic_entry(info, image.brokers, ops(info.name)))
            elif allow_auto and not (
                authorize(ctx, AclOperation.CREATE, ResourceType.CLUSTER, CLUSTER_NAME)
                or authorize(ctx, AclOperation.CREATE, ResourceType.TOPIC, name)
            ):
                entry = error_entry(name, ErrorCode.topic_authorization_failed)
                refused.insert(0, dict(entry, is_internal=name in INTERNAL_TOPICS))
            elif allow_auto:
                entry = await auto_create(ctx, name)
                if not entry["error_code"]:
                    # Kafka 4 (AutoTopicCreationManager) answers the creating request
                    # UNKNOWN_TOPIC_OR_PARTITION, no partitions: clients retry and then
                    # see the topic with its leaders.
                    entry = dict(
                        error_entry(name, ErrorCode.unknown_topic_or_partition),
                        is_internal=entry["is_internal"],
                    )
                topics.append(entry)
                image = broker.image
            else:
                topics.append(error_entry(name, ErrorCode.unknown_topic_or_partition))
    topics += refused
    add_offline_replicas(broker, topics)  # replicas on failed log dirs (KIP-112)
    return build(
        response_type(3, v),
        throttle_time=0,
        brokers=broker_entries(image, ctx.listener),
        cluster_id=image.cluster_id,
        controller_id=image.controller_id,
        topics=topics,
        cluster_authorized_operations=cluster_ops,
    )
