"""Committed offsets: OffsetCommit (8), OffsetFetch (9) and OffsetDelete (47).

As Kafka 4.x's ``KafkaApis``: partitions of topics the cluster does not know are
answered here (UNKNOWN_TOPIC_OR_PARTITION, or UNKNOWN_TOPIC_ID for the topic-id
versions) and never reach the coordinator; the coordinator answers the rest, with one
group-level error for every partition when the group check fails.
"""

from __future__ import annotations

from typing import Any

from pybroker.broker.commit_wait import waits_for_commit
from pybroker.broker.context import RequestContext
from pybroker.broker.groups.coordinator import CommitEntry
from pybroker.broker.groups.group import OffsetAndMetadata
from pybroker.broker.handlers.groups import coordinator_of
from pybroker.broker.handlers.registry import api
from pybroker.broker.security.authz import AclOperation, ResourceType, authorize, authorized
from pybroker.protocol.codec import build, millis, response_type
from pybroker.protocol.errors import ErrorCode

# ------------------------------------------------------------------ OffsetCommit


@api(8, "OffsetCommit", 2, 10)
@waits_for_commit(ErrorCode.invalid_commit_offset_size)
async def handle_offset_commit(ctx: RequestContext, request: Any) -> Any:
    v = ctx.version
    image = ctx.broker.image
    use_ids = v >= 10
    # KafkaApis: READ on the group (else every partition is refused), then READ per topic.
    group_ok = authorize(ctx, AclOperation.READ, ResourceType.GROUP, request.group_id)
    names = [t.name for t in request.topics] if not use_ids else []
    if use_ids:
        names = [i.name for t in request.topics if (i := image.topic_by_id(t.topic_id))]
    readable = authorized(ctx, AclOperation.READ, ResourceType.TOPIC, names) if group_ok else set()
    # (response topic dict, partition index, error or None = ask the coordinator)
    slots: list[tuple[dict[str, Any], int, int, ErrorCode | None]] = []
    entries: list[CommitEntry] = []
    topics_out: list[dict[str, Any]] = []
    for topic in request.topics:
        if use_ids:
            info = image.topic_by_id(topic.topic_id)
            name = info.name if info is not None else None
        else:
            name = topic.name
        out: dict[str, Any] = dict(name=name or "", topic_id=getattr(topic, "topic_id", None))
        out["partitions"] = []
        topics_out.append(out)
        for p in topic.partitions:
            index = int(p.partition_index)
            if not group_ok:
                slots.append((out, index, -1, ErrorCode.group_authorization_failed))
            elif name is None:
                slots.append((out, index, -1, ErrorCode.unknown_topic_id))
            elif name not in readable:
                slots.append((out, index, -1, ErrorCode.topic_authorization_failed))
            elif image.partition(name, index) is None:
                slots.append((out, index, -1, ErrorCode.unknown_topic_or_partition))
            else:
                slots.append((out, index, len(entries), None))
                entries.append(
                    CommitEntry(
                        name,
                        index,
                        int(p.committed_offset),
                        int(getattr(p, "committed_leader_epoch", -1)),
                        p.committed_metadata,
                    )
                )
    errors: list[ErrorCode] = []
    if entries:
        retention = getattr(request, "retention_time", None)
        errors = coordinator_of(ctx).commit_offsets(
            request.group_id,
            request.member_id,
            getattr(request, "group_instance_id", None),
            int(request.generation_id_or_member_epoch),
            entries,
            v,
            millis(retention) if retention is not None else -1,
        )
    for out, index, i, error in slots:
        out["partitions"].append(
            dict(partition_index=index, error_code=error if error is not None else errors[i])
        )
    return build(response_type(8, v), throttle_time=0, topics=topics_out)


# ------------------------------------------------------------------ OffsetFetch


def _partition(index: int, om: OffsetAndMetadata | None, error: ErrorCode) -> dict[str, Any]:
    return dict(
        partition_index=index,
        committed_offset=om.offset if om is not None else -1,
        committed_leader_epoch=om.leader_epoch if om is not None else -1,
        metadata=om.metadata if om is not None else "",
        error_code=error,
    )


def _fetch_group(
    ctx: RequestContext, group_id: str, topics: Any, use_ids: bool, require_stable: bool = False
) -> tuple[ErrorCode, list[dict[str, Any]]]:
    """One group's answer: (group error, topics with their partitions).

    ``require_stable`` (v7+, KIP-447): a partition with a transactional offset commit
    still waiting for its transaction is UNSTABLE_OFFSET_COMMIT, so the consumer retries.
    """
    image = ctx.broker.image
    coordinator = coordinator_of(ctx)
    # KafkaApis: DESCRIBE on the group, then on each topic (others hidden or refused).
    if not authorize(ctx, AclOperation.DESCRIBE, ResourceType.GROUP, group_id):
        return ErrorCode.group_authorization_failed, []

    def answer(index: int, om: OffsetAndMetadata | None, topic: str) -> dict[str, Any]:
        if require_stable and coordinator.has_pending_txn_offset(group_id, topic, index):
            return _partition(index, None, ErrorCode.unstable_offset_commit)
        return _partition(index, om, ErrorCode.none)

    if topics is None:
        error, data = coordinator.fetch_offsets(group_id, None)
        visible = authorized(ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, (n for n, _ in data))
        data = [(n, parts) for n, parts in data if n in visible]
        out = []
        for name, parts in data:
            info = image.topics.get(name)
            if use_ids and info is None:
                continue  # no id to name it by
            out.append(
                dict(
                    name=name,
                    topic_id=info.topic_id if info is not None else None,
                    partitions=[answer(p, om, name) for p, om in parts],
                )
            )
        return error, out
    wanted: list[tuple[str, list[int]]] = []
    unknown_ids: list[dict[str, Any]] = []
    order: list[tuple[str | None, Any]] = []
    for t in topics:
        indexes = [int(p) for p in t.partition_indexes]
        if use_ids:
            info = image.topic_by_id(t.topic_id)
            if info is None:
                entry = dict(
                    name="",
                    topic_id=t.topic_id,
                    partitions=[_partition(p, None, ErrorCode.unknown_topic_id) for p in indexes],
                )
                unknown_ids.append(entry)
                order.append((None, entry))
                continue
            name = info.name
        else:
            name = t.name
        wanted.append((name, indexes))
        order.append((name, t))
    visible = authorized(ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, (n for n, _ in wanted))
    refused = [
        dict(
            name=name,
            topic_id=image.topics[name].topic_id if use_ids else None,
            partitions=[_partition(p, None, ErrorCode.topic_authorization_failed) for p in parts],
        )
        for name, parts in wanted
        if name not in visible
    ]
    wanted = [(n, parts) for n, parts in wanted if n in visible]
    order = [(n, t) for n, t in order if n is None or n in visible]
    error, data = coordinator.fetch_offsets(group_id, wanted)
    if error != ErrorCode.none:
        return error, []
    answered = iter(data)
    out = []
    for name, t in order:
        if name is None:
            out.append(t)
            continue
        topic_name, parts = next(answered)
        info = image.topics.get(topic_name)
        out.append(
            dict(
                name=topic_name,
                topic_id=info.topic_id if info is not None else getattr(t, "topic_id", None),
                partitions=[answer(p, om, topic_name) for p, om in parts],
            )
        )
    return ErrorCode.none, out + refused


@api(9, "OffsetFetch", 1, 10)
async def handle_offset_fetch(ctx: RequestContext, request: Any) -> Any:
    v = ctx.version
    cls = response_type(9, v)
    if v >= 8:
        groups = []
        for g in request.groups:
            if not authorize(ctx, AclOperation.DESCRIBE, ResourceType.GROUP, g.group_id):
                error = ErrorCode.group_authorization_failed
                groups.append(dict(group_id=g.group_id, topics=[], error_code=error))
                continue
            # v9+: a KIP-848 member names itself and its epoch (STALE_MEMBER_EPOCH etc.).
            member_error = coordinator_of(ctx).consumer.validate_offset_fetch(
                g.group_id, getattr(g, "member_id", None), int(getattr(g, "member_epoch", -1))
            )
            if member_error is not None:
                groups.append(dict(group_id=g.group_id, topics=[], error_code=member_error))
                continue
            error, topics = _fetch_group(
                ctx, g.group_id, g.topics, use_ids=v >= 10, require_stable=request.require_stable
            )
            groups.append(dict(group_id=g.group_id, topics=topics, error_code=error))
        return build(cls, throttle_time=0, groups=groups)
    error, topics = _fetch_group(
        ctx,
        request.group_id,
        request.topics,
        use_ids=False,
        require_stable=bool(getattr(request, "require_stable", False)),
    )
    if v < 2 and error != ErrorCode.none:
        # v1 has no group-level error: every requested partition carries it.
        topics = [
            dict(
                name=t.name,
                partitions=[_partition(int(p), None, error) for p in t.partition_indexes],
            )
            for t in request.topics or ()
        ]
    return build(cls, throttle_time=0, error_code=error, topics=topics)


# ------------------------------------------------------------------ OffsetDelete


@api(47, "OffsetDelete", 0, 0)
@waits_for_commit()
async def handle_offset_delete(ctx: RequestContext, request: Any) -> Any:
    image = ctx.broker.image
    cls = response_type(47, ctx.version)
    # KafkaApis: DELETE on the group, then READ on each topic.
    if not authorize(ctx, AclOperation.DELETE, ResourceType.GROUP, request.group_id):
        error = ErrorCode.group_authorization_failed
        return build(cls, error_code=error, throttle_time=0, topics=[])
    readable = authorized(
        ctx, AclOperation.READ, ResourceType.TOPIC, (t.name for t in request.topics)
    )
    known: list[tuple[str, list[int]]] = []
    unknown: dict[str, list[int]] = {}
    refused: dict[str, list[int]] = {}
    for t in request.topics:
        indexes = [int(p.partition_index) for p in t.partitions]
        if t.name not in readable:
            refused.setdefault(t.name, []).extend(indexes)
            continue
        valid = [p for p in indexes if image.partition(t.name, p) is not None]
        bad = [p for p in indexes if image.partition(t.name, p) is None]
        if bad:
            unknown.setdefault(t.name, []).extend(bad)
        if valid:
            known.append((t.name, valid))
    error, results = coordinator_of(ctx).delete_offsets(request.group_id, known)
    if error != ErrorCode.none:
        return build(cls, error_code=error, throttle_time=0, topics=[])
    merged: dict[str, list[dict[str, Any]]] = {}
    for name, parts in refused.items():
        merged.setdefault(name, []).extend(
            dict(partition_index=p, error_code=ErrorCode.topic_authorization_failed) for p in parts
        )
    for name, parts in unknown.items():
        merged.setdefault(name, []).extend(
            dict(partition_index=p, error_code=ErrorCode.unknown_topic_or_partition) for p in parts
        )
    for name, parts in results:
        merged.setdefault(name, []).extend(dict(partition_index=p, error_code=e) for p, e in parts)
    return build(
        cls,
        error_code=ErrorCode.none,
        throttle_time=0,
        topics=[dict(name=n, partitions=ps) for n, ps in merged.items()],
    )
