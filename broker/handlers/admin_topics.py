"""CreateTopics (19), DeleteTopics (20), CreatePartitions (37) and DescribeCluster (60).

Validation order, error codes and messages follow Kafka 4.x's KRaft controller
(``ControllerApis`` and ``ReplicationControlManager``), which is what a 4.x broker answers
with after forwarding these requests. Changes are applied by ``broker.controller``, which
persists the cluster image and lets the ReplicaManager create or delete the logs before
the response is sent, so a client's next Metadata request already sees them.

pybroker places every replica on its own node, so a manual assignment must name exactly
this broker. A handler never raises: every failure is an error on its own topic.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any

from pybroker.broker.client_quota_manager import charge_mutation
from pybroker.broker.context import RequestContext
from pybroker.broker.handlers.admin_configs import (
    check_topic_overrides,
    error_message,
    topic_config_entries,
)
from pybroker.broker.handlers.registry import api
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

log = logging.getLogger(__name__)

AUTHORIZED_OPS_NOT_REQUESTED = -(2**31)
# AclOperation codes Kafka supports on the CLUSTER resource (CREATE, ALTER, DESCRIBE,
# CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE); without an authorizer
# every one of them is allowed.
# Kafka's ReplicationControlManager.MAX_PARTITIONS_PER_BATCH for one CreateTopics request.
MAX_PARTITIONS_PER_REQUEST = 10_000
ENDPOINT_BROKERS = 1
ENDPOINT_CONTROLLERS = 2


def _invalid_replica_assignment(message: str) -> KafkaError:
    return KafkaError(message, ErrorCode.invalid_replica_assignment)


def validate_manual_assignment(
    ctx: RequestContext, broker_ids: Sequence[int], replication_factor: int | None
) -> None:
    """ReplicationControlManager.validateManualPartitionAssignment, plus our placement rule."""
    if not broker_ids:
        raise _invalid_replica_assignment(
            "The manual partition assignment includes an empty replica list."
        )
    registered = ctx.broker.image.brokers
    previous = None
    for broker_id in sorted(broker_ids):
        if broker_id not in registered:
            raise _invalid_replica_assignment(
                f"The manual partition assignment includes broker {broker_id}, but no such "
                "broker is registered."
            )
        if broker_id == previous:
            raise _invalid_replica_assignment(
                f"The manual partition assignment includes the broker {broker_id} more than once."
            )
        previous = broker_id
    if replication_factor is not None and len(broker_ids) != replication_factor:
        raise _invalid_replica_assignment(
            f"The manual partition assignment includes a partition with {len(broker_ids)} "
            "replica(s), but this is not consistent with previous partitions, which have "
            f"{replication_factor} replica(s)."
        )
    assert ctx.broker.controller is not None
    ctx.broker.controller.validate_manual_replicas(broker_ids)


# ------------------------------------------------------------------------- CreateTopics


def _resolve_layout(
    ctx: RequestContext, topic: Any
) -> tuple[int, int, dict[int, list[int]] | None]:
    """(partitions, replication factor, manual assignment or None) from counts, broker
    defaults or manual assignments."""
    n, rf = int(topic.num_partitions), int(topic.replication_factor)
    if topic.assignments:
        if rf != -1:
            raise KafkaError(
                "A manual partition assignment was specified, but replication factor was not "
                "set to -1.",
                ErrorCode.invalid_request,
            )
        if n != -1:
            raise KafkaError(
                "A manual partition assignment was specified, but numPartitions was not set to -1.",
                ErrorCode.invalid_request,
            )
        seen: set[int] = set()
        manual: dict[int, list[int]] = {}
        replication: int | None = None
        for a in topic.assignments:
            index = int(a.partition_index)
            if index in seen:
                raise _invalid_replica_assignment(
                    f"Found multiple manual partition assignments for partition {index}"
                )
            ids = [int(b) for b in a.broker_ids]
            validate_manual_assignment(ctx, ids, replication)
            replication = len(ids)
            seen.add(index)
            manual[index] = ids
        if seen != set(range(len(seen))):
            raise _invalid_replica_assignment(
                "partitions should be a consecutive 0-based integer sequence"
            )
        assert replication is not None
        return len(seen), replication, manual
    if rf < -1 or rf == 0:
        raise KafkaError(
            "Replication factor must be larger than 0, or -1 to use the default value.",
            ErrorCode.invalid_replication_factor,
        )
    if n < -1 or n == 0:
        raise KafkaError(
            "Number of partitions was set to an invalid non-positive value.",
            ErrorCode.invalid_partitions,
        )
    config = ctx.broker.config
    return (
        config.num_partitions if n == -1 else n,
        config.default_replication_factor if rf == -1 else rf,
        None,
    )


async def _create_one(ctx: RequestContext, topic: Any, validate_only: bool) -> dict[str, Any]:
    name = topic.name
    controller = ctx.broker.controller
    assert controller is not None
    # Name, existence and collisions first, then configs, then the layout (Kafka's order).
    controller.validate_new_topic(name, 1, 1, {})
    nulls = [c.name for c in topic.configs if c.value is None]
    if nulls:
        raise KafkaError(
            "Null value not supported for topic configs: " + ",".join(nulls),
            ErrorCode.invalid_config,
        )
    configs = {c.name: c.value for c in topic.configs}
    check_topic_overrides(configs)
    partitions, replication, manual = _resolve_layout(ctx, topic)
    charge_mutation(ctx, partitions)  # controller_mutation_rate (KIP-599)
    info = await controller.create_topic(
        name, partitions, replication, configs, validate_only, assignment=manual
    )
    if not validate_only:
        log.info(
            "Created topic %s (%d partition(s), configs %s) for client %s",
            name,
            partitions,
            configs,
            ctx.client_id,
        )
    return dict(
        name=name,
        topic_id=info.topic_id,
        error_code=ErrorCode.none,
        error_message=None,
        num_partitions=len(info.partitions),
        replication_factor=len(info.partitions[0].replicas),
        configs=topic_config_entries(ctx, configs, raw_overrides=True),
    )


def _requested_partitions(ctx: RequestContext, topics: Sequence[Any]) -> int:
    """ReplicationControlManager.validateTotalNumberOfPartitions's count."""
    total = 0
    for t in topics:
        if t.assignments:
            total += len(t.assignments)
        elif int(t.num_partitions) == -1:
            total += ctx.broker.config.num_partitions
        elif int(t.num_partitions) > 0:
            total += int(t.num_partitions)
    return total


@api(19, "CreateTopics", 2, 7)
async def handle_create_topics(ctx: RequestContext, request: Any) -> Any:
    validate_only = bool(request.validate_only)
    counts = Counter(t.name for t in request.topics)
    unique = [t for t in request.topics if counts[t.name] == 1]
    if _requested_partitions(ctx, unique) > MAX_PARTITIONS_PER_REQUEST:
        # Kafka fails the whole request, every topic with the same error.
        errors = [
            _topic_error(
                t.name,
                ErrorCode.policy_violation,
                "Excessively large number of partitions per request.",
            )
            for t in request.topics
        ]
        return build(response_type(19, ctx.version), throttle_time=0, topics=errors)
    results: list[dict[str, Any]] = []
    reported: set[str] = set()
    # ControllerApis.createTopics: CREATE on the cluster or on each topic (refused topics are
    # answered last); a topic without DESCRIBE_CONFIGS is created but its configs withheld.
    unique_names = [t.name for t in unique]
    creatable = set(unique_names)
    if not authorize(ctx, AclOperation.CREATE, ResourceType.CLUSTER, CLUSTER_NAME):
        creatable = authorized(ctx, AclOperation.CREATE, ResourceType.TOPIC, unique_names)
    describable = authorized(ctx, AclOperation.DESCRIBE_CONFIGS, ResourceType.TOPIC, unique_names)
    refused = [
        _topic_error(n, ErrorCode.topic_authorization_failed, "Authorization failed.")
        for n in unique_names
        if n not in creatable
    ]
    for topic in request.topics:
        name = topic.name
        if counts[name] > 1:
            if name not in reported:
                reported.add(name)
                results.append(
                    _topic_error(name, ErrorCode.invalid_request, "Duplicate topic name.")
                )
            continue
        if name not in creatable:
            continue
        try:
            results.append(await _create_one(ctx, topic, validate_only))
            if name not in describable:
                results[-1].update(
                    topic_config_error_code=ErrorCode.topic_authorization_failed,
                    num_partitions=-1,
                    replication_factor=-1,
                    configs=[],
                )
        except KafkaError as exc:
            results.append(_topic_error(name, exc.code, error_message(exc)))
        except Exception:
            log.exception("CreateTopics failed for %r", name)
            results.append(_topic_error(name, ErrorCode.unknown_server_error, None))
    return build(response_type(19, ctx.version), throttle_time=0, topics=results + refused)


def _topic_error(name: str, code: ErrorCode, message: str | None) -> dict[str, Any]:
    return dict(
        name=name,
        topic_id=ZERO_UUID,
        error_code=code,
        error_message=message,
        num_partitions=-1,
        replication_factor=-1,
        configs=[],
    )


# ------------------------------------------------------------------------- DeleteTopics


def _requested_deletions(ctx: RequestContext, request: Any) -> list[tuple[str | None, Any]]:
    if ctx.version >= 6:
        return [(t.name, t.topic_id) for t in request.topics]
    return [(name, None) for name in request.topic_names]


def _no_id(topic_id: Any) -> bool:
    return topic_id is None or topic_id == ZERO_UUID


_UNKNOWN_MESSAGE = "This server does not host this topic-partition."
_REFUSED_MESSAGE = "Topic authorization failed."
_UNKNOWN_ID_MESSAGE = "This server does not host this topic ID."


@api(20, "DeleteTopics", 1, 6)
async def handle_delete_topics(ctx: RequestContext, request: Any) -> Any:
    broker = ctx.broker
    wanted = _requested_deletions(ctx, request)
    results: list[dict[str, Any]] = []

    def result(name: str | None, topic_id: Any, code: ErrorCode, message: str | None) -> None:
        results.append(
            dict(
                name=name,
                topic_id=topic_id if topic_id is not None else ZERO_UUID,
                error_code=code,
                error_message=message,
            )
        )

    if not broker.config.delete_topic_enable:
        # Kafka fails the whole request: INVALID_REQUEST before v3, TOPIC_DELETION_DISABLED after.
        code = ErrorCode.invalid_request if ctx.version < 3 else ErrorCode.topic_deletion_disabled
        for name, topic_id in wanted:
            result(name, topic_id, code, None)
        return build(response_type(20, ctx.version), throttle_time=0, responses=results)

    names = Counter(n for n, i in wanted if n is not None and _no_id(i))
    ids = Counter(i for n, i in wanted if n is None and not _no_id(i))
    image = broker.image
    by_name_ids = {image.topics[n].topic_id for n in names if names[n] == 1 and n in image.topics}
    # ControllerApis.deleteTopics: DELETE on the cluster, or DESCRIBE and DELETE per topic;
    # a topic named by id that may not be described is not named in the answer either.
    checked = list(names) + [i.name for t in ids if (i := image.topic_by_id(t)) is not None]
    describable = deletable = set(checked)
    if not authorize(ctx, AclOperation.DELETE, ResourceType.CLUSTER, CLUSTER_NAME):
        describable = authorized(ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, checked)
        deletable = authorized(ctx, AclOperation.DELETE, ResourceType.TOPIC, checked)
    refused = ErrorCode.topic_authorization_failed
    reported: set[Any] = set()
    to_delete: list[tuple[str, uuid.UUID]] = []
    for name, topic_id in wanted:
        if name is None:
            if _no_id(topic_id):
                result(
                    None,
                    ZERO_UUID,
                    ErrorCode.invalid_request,
                    "Neither topic name nor id were specified.",
                )
            elif ids[topic_id] > 1 or topic_id in by_name_ids:
                if topic_id not in reported:
                    reported.add(topic_id)
                    message = (
                        "Duplicate topic id."
                        if ids[topic_id] > 1
                        else "The provided topic name maps to an ID that was already supplied."
                    )
                    result(None, topic_id, ErrorCode.invalid_request, message)
            else:
                info = image.topic_by_id(topic_id)
                if info is None:
                    # The controller's ApiError carries Errors.message() (v5+ shows it).
                    result(None, topic_id, ErrorCode.unknown_topic_id, _UNKNOWN_ID_MESSAGE)
                elif info.name not in deletable:
                    shown = info.name if info.name in describable else None
                    result(shown, topic_id, refused, _REFUSED_MESSAGE)
                else:
                    to_delete.append((info.name, info.topic_id))
        elif not _no_id(topic_id):
            result(
                name,
                topic_id,
                ErrorCode.invalid_request,
                "You may not specify both topic name and topic id.",
            )
        elif names[name] > 1:
            if name not in reported:
                reported.add(name)
                result(name, ZERO_UUID, ErrorCode.invalid_request, "Duplicate topic name.")
        elif name not in describable:
            result(name, ZERO_UUID, refused, _REFUSED_MESSAGE)
        else:
            info = image.topics.get(name)
            if info is None:
                result(name, ZERO_UUID, ErrorCode.unknown_topic_or_partition, _UNKNOWN_MESSAGE)
            elif name not in deletable:
                result(name, ZERO_UUID, refused, _REFUSED_MESSAGE)
            elif ids[info.topic_id] > 0:
                result(
                    name,
                    info.topic_id,
                    ErrorCode.invalid_request,
                    "The provided topic name maps to an ID that was already supplied.",
                )
            else:
                to_delete.append((name, info.topic_id))

    assert broker.controller is not None
    for name, topic_id in to_delete:
        try:
            charge_mutation(ctx, len(getattr(image.topics.get(name), "partitions", ())))  # KIP-599
            await broker.controller.delete_topic(name)
            log.info("Deleted topic %s (id %s) for client %s", name, topic_id, ctx.client_id)
            result(name, topic_id, ErrorCode.none, None)
        except KafkaError as exc:
            result(name, topic_id, exc.code, error_message(exc))
        except Exception:
            log.exception("DeleteTopics failed for %r", name)
            result(name, topic_id, ErrorCode.unknown_server_error, None)
    return build(response_type(20, ctx.version), throttle_time=0, responses=results)


# --------------------------------------------------------------------- CreatePartitions


async def _create_partitions_one(ctx: RequestContext, topic: Any, validate_only: bool) -> None:
    controller = ctx.broker.controller
    assert controller is not None
    name, count = topic.name, int(topic.count)
    # Existence and the count rules first, then the assignments.
    controller.validate_partition_increase(name, count)
    manual: list[list[int]] | None = None
    if topic.assignments is not None:
        info = ctx.broker.image.topics[name]
        additional = count - len(info.partitions)
        if len(topic.assignments) != additional:
            raise _invalid_replica_assignment(
                f"Attempted to add {additional} additional partition(s), but only "
                f"{len(topic.assignments)} assignment(s) were specified."
            )
        replication = len(info.partitions[0].replicas)
        manual = []
        for a in topic.assignments:
            ids = [int(b) for b in a.broker_ids]
            validate_manual_assignment(ctx, ids, replication)
            manual.append(ids)
    charge_mutation(ctx, count - len(ctx.broker.image.topics[name].partitions))  # KIP-599
    if not validate_only:
        await controller.create_partitions(name, count, assignment=manual)
        log.info("Topic %s now has %d partitions (client %s)", name, count, ctx.client_id)


@api(37, "CreatePartitions", 0, 3)
async def handle_create_partitions(ctx: RequestContext, request: Any) -> Any:
    validate_only = bool(request.validate_only)
    counts = Counter(t.name for t in request.topics)
    results: list[dict[str, Any]] = []
    reported: set[str] = set()
    # ControllerApis.createPartitions: ALTER on each topic; refused ones answered first.
    single = [n for n in counts if counts[n] == 1]
    alterable = authorized(ctx, AclOperation.ALTER, ResourceType.TOPIC, single)
    refused = [
        dict(name=n, error_code=ErrorCode.topic_authorization_failed, error_message=None)
        for n in single
        if n not in alterable
    ]
    for topic in request.topics:
        name = topic.name
        out = dict(name=name, error_code=ErrorCode.none, error_message=None)
        if counts[name] == 1 and name not in alterable:
            continue
        if counts[name] > 1:
            if name in reported:
                continue
            reported.add(name)
            out.update(error_code=ErrorCode.invalid_request, error_message="Duplicate topic name.")
        else:
            try:
                await _create_partitions_one(ctx, topic, validate_only)
            except KafkaError as exc:
                out.update(error_code=exc.code, error_message=error_message(exc))
            except Exception:
                log.exception("CreatePartitions failed for %r", name)
                out.update(error_code=ErrorCode.unknown_server_error)
        results.append(out)
    return build(response_type(37, ctx.version), throttle_time=0, results=refused + results)


# ---------------------------------------------------------------------- DescribeCluster


@api(60, "DescribeCluster", 0, 2)
async def handle_describe_cluster(ctx: RequestContext, request: Any) -> Any:
    image = ctx.broker.image
    v = ctx.version
    cls = response_type(60, v)
    endpoint = int(getattr(request, "endpoint_type", ENDPOINT_BROKERS))
    if endpoint not in (ENDPOINT_BROKERS, ENDPOINT_CONTROLLERS):
        return build(
            cls,
            throttle_time=0,
            error_code=ErrorCode.invalid_request if v == 0 else ErrorCode.unsupported_endpoint_type,
            error_message=f"Unsupported endpoint type {endpoint}",
            cluster_id="",
            controller_id=-1,
            cluster_authorized_operations=AUTHORIZED_OPS_NOT_REQUESTED,
        )
    if endpoint != ENDPOINT_BROKERS:
        return build(
            cls,
            throttle_time=0,
            error_code=ErrorCode.invalid_request if v == 0 else ErrorCode.mismatched_endpoint_type,
            error_message="The request was sent to an endpoint of type BROKER, but we wanted "
            "an endpoint of type CONTROLLER",
            cluster_id="",
            controller_id=-1,
            cluster_authorized_operations=AUTHORIZED_OPS_NOT_REQUESTED,
        )
    brokers = [
        dict(broker_id=b.node_id, host=b.host, port=b.port, rack=b.rack, is_fenced=False)
        for b in sorted(image.brokers_on(ctx.listener).values(), key=lambda b: b.node_id)
    ]
    ops = AUTHORIZED_OPS_NOT_REQUESTED
    if request.include_cluster_authorized_operations:
        ops = (
            authorized_operations(ctx, ResourceType.CLUSTER, CLUSTER_NAME)
            if authorize(ctx, AclOperation.DESCRIBE, ResourceType.CLUSTER, CLUSTER_NAME)
            else 0
        )
    return build(
        cls,
        throttle_time=0,
        error_code=ErrorCode.none,
        error_message=None,
        endpoint_type=ENDPOINT_BROKERS,
        cluster_id=image.cluster_id,
        controller_id=image.controller_id if image.controller_id in image.brokers else -1,
        brokers=brokers,
        cluster_authorized_operations=ops,
    )
