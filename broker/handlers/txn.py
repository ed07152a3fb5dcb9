"""Producer ids and transactions: InitProducerId (22), AddPartitionsToTxn (24),
AddOffsetsToTxn (25), EndTxn (26), WriteTxnMarkers (27), TxnOffsetCommit (28),
DescribeProducers (61), DescribeTransactions (65) and ListTransactions (66).

Versions are the ones Kafka 4.0 serves. Answers follow Kafka 4's ``KafkaApis`` in front of
the transaction coordinator (``broker.txn.coordinator``):

- InitProducerId: ProducerId and ProducerEpoch (v3+, KIP-360) must be both -1 or both
  set, else INVALID_REQUEST. No transactional id: "always blindly accept the request and
  return a new producerId" with epoch 0. An empty transactional id: INVALID_REQUEST. Else
  the coordinator (transaction timeout checked against transaction.max.timeout.ms).
- Clients that predate PRODUCER_FENCED get INVALID_PRODUCER_EPOCH instead
  (InitProducerId < v4, AddPartitionsToTxn / AddOffsetsToTxn / EndTxn < v2).
- AddPartitionsToTxn v0-3 come from clients: partitions of unknown topics fail the whole
  request (UNKNOWN_TOPIC_OR_PARTITION for them, OPERATION_NOT_ATTEMPTED for the rest).
  v4+ come from brokers (KIP-890): a batch of transactions, each either verified
  (``verify_only``) or added.
- AddOffsetsToTxn adds the ``__consumer_offsets`` partition of the group.
- EndTxn v5 (KIP-890 part 2) bumps the epoch and answers the new producer id and epoch.
- TxnOffsetCommit goes to the group coordinator once the transaction coordinator has
  verified that the group's offsets partition is in the transaction (v0-3: a partition
  that is not is INVALID_TXN_STATE, v4: TRANSACTION_ABORTABLE, v5 adds it).
- WriteTxnMarkers v1 (v0 was removed in Kafka 4.0) comes from transaction coordinators:
  each marker is appended to the partition this broker leads, with its leader epoch and
  acks=all, and answered once the ISR has it (Kafka appends with requiredAcks=-1 and
  waits); NOT_LEADER_OR_FOLLOWER where this broker is not the leader, so the coordinator
  looks the leader up again. The coordinator writes markers for partitions it leads
  itself without a round trip (``broker.txn.markers``).
- Coordinator writes to ``__transaction_state`` complete on commit: the answers to
  InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn and EndTxn wait for it.
- TxnOffsetCommit verification (KIP-890) asks the transactional id's coordinator, on
  this broker or another one (``broker.txn.verification``).
"""

from __future__ import annotations

import datetime
import logging
import re
from typing import Any

from pybroker.broker.context import RequestContext
from pybroker.broker.groups.coordinator import OFFSETS_TOPIC, CommitEntry
from pybroker.broker.handlers.registry import api
from pybroker.broker.security.authz import (
    CLUSTER_NAME,
    DEFAULT_MESSAGES,
    AclOperation,
    ResourceType,
    authorize,
    authorize_by_type,
    authorized,
)
from pybroker.broker.txn.coordinator import TXN_STATE_TOPIC, TransactionCoordinator, resolve
from pybroker.broker.txn.markers import write_local_markers
from pybroker.broker.txn.verification import verify_transaction
from pybroker.protocol.codec import build, millis, response_type
from pybroker.protocol.errors import ErrorCode, KafkaError
from pybroker.replication.metadata import INTERNAL_TOPICS

log = logging.getLogger(__name__)

NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1


def txn_coordinator(ctx: RequestContext) -> TransactionCoordinator:
    return ctx.broker.txn_coordinator


def _fenced(code: ErrorCode, old_client: bool) -> ErrorCode:
    """Clients that do not know PRODUCER_FENCED get INVALID_PRODUCER_EPOCH."""
    if old_client and code == ErrorCode.producer_fenced:
        return ErrorCode.invalid_producer_epoch
    return code


def _may_write_txn(ctx: RequestContext, transactional_id: str) -> bool:
    return authorize(ctx, AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID, transactional_id)


def _ms_datetime(ms: int) -> datetime.datetime:
    """A datetime kio encodes back to ``ms`` (-1 included)."""
    return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)


# ------------------------------------------------------------------ InitProducerId


def _init_answer(version: int, code: ErrorCode, producer_id: int = -1, epoch: int = -1) -> Any:
    return build(
        response_type(22, version),
        throttle_time=0,
        error_code=_fenced(code, version < 4),
        producer_id=producer_id,
        producer_epoch=epoch,
    )


@api(22, "InitProducerId", 0, 5)
async def handle_init_producer_id(ctx: RequestContext, request: Any) -> Any:
    version = ctx.version
    # KafkaApis: WRITE on the transactional id; without one, IDEMPOTENT_WRITE on the cluster
    # or WRITE on some topic. Checked before anything else.
    if request.transactional_id is not None:
        if not _may_write_txn(ctx, request.transactional_id):
            return _init_answer(version, ErrorCode.transactional_id_authorization_failed)
    elif not (
        authorize(ctx, AclOperation.IDEMPOTENT_WRITE, ResourceType.CLUSTER, CLUSTER_NAME)
        or authorize_by_type(ctx, AclOperation.WRITE, ResourceType.TOPIC)
    ):
        return _init_answer(version, ErrorCode.cluster_authorization_failed)
    producer_id = int(getattr(request, "producer_id", NO_PRODUCER_ID))
    epoch = int(getattr(request, "producer_epoch", NO_PRODUCER_EPOCH))
    if (producer_id == NO_PRODUCER_ID) != (epoch == NO_PRODUCER_EPOCH):
        return _init_answer(version, ErrorCode.invalid_request)
    transactional_id = request.transactional_id
    if transactional_id is None:
        try:
            new_id = await ctx.broker.producer_ids.generate()
        except KafkaError as e:
            return _init_answer(version, e.code)
        return _init_answer(version, ErrorCode.none, new_id, 0)
    expected = None if producer_id == NO_PRODUCER_ID else (producer_id, epoch)
    code, pid, new_epoch = await txn_coordinator(ctx).init_producer_id(
        transactional_id, millis(request.transaction_timeout), expected
    )
    if code != ErrorCode.none:
        log.info(
            "Returning %s to %s for transactional id %r's InitProducerId",
            code.name,
            ctx.peer,
            transactional_id,
        )
    return _init_answer(version, code, pid, new_epoch)


# ------------------------------------------------------------------ AddPartitionsToTxn


def _topic_results(errors: dict[tuple[str, int], ErrorCode]) -> list[dict[str, Any]]:
    by_topic: dict[str, list[dict[str, Any]]] = {}
    for (topic, p), code in errors.items():
        by_topic.setdefault(topic, []).append(dict(partition_index=p, partition_error_code=code))
    return [dict(name=t, results_by_partition=parts) for t, parts in by_topic.items()]


async def _add_or_verify(
    ctx: RequestContext,
    txn_id: str,
    producer_id: int,
    epoch: int,
    topics: Any,
    verify_only: bool,
    client_version: int,
) -> dict[tuple[str, int], ErrorCode]:
    image = ctx.broker.image
    wanted = [(t.name, int(p)) for t in topics for p in t.partitions]
    # KafkaApis: a client (v0-3) needs WRITE on each topic, and internal topics are never
    # added this way; v4+ comes from brokers (CLUSTER_ACTION, checked by the caller), whose
    # verification of a transactional offset commit names __consumer_offsets.
    if ctx.version < 4:
        writable = authorized(
            ctx,
            AclOperation.WRITE,
            ResourceType.TOPIC,
            (t for t, _ in wanted if t not in INTERNAL_TOPICS),
        )
    else:
        writable = {t for t, _ in wanted}
    refused = {tp for tp in wanted if tp[0] not in writable}
    unknown = {tp for tp in wanted if image.partition(*tp) is None} - refused
    if unknown or refused:
        return {
            tp: ErrorCode.topic_authorization_failed
            if tp in refused
            else ErrorCode.unknown_topic_or_partition
            if tp in unknown
            else ErrorCode.operation_not_attempted
            for tp in wanted
        }
    coordinator = txn_coordinator(ctx)
    if verify_only:
        return coordinator.verify_partitions(txn_id, producer_id, epoch, wanted)
    code = await resolve(
        coordinator.add_partitions(txn_id, producer_id, epoch, wanted, client_version)
    )
    return dict.fromkeys(wanted, _fenced(code, ctx.version < 2))


@api(24, "AddPartitionsToTxn", 0, 5)
async def handle_add_partitions_to_txn(ctx: RequestContext, request: Any) -> Any:
    v = ctx.version
    cls = response_type(24, v)
    if v < 4 and not _may_write_txn(ctx, request.v3_and_below_transactional_id):
        code = ErrorCode.transactional_id_authorization_failed
        wanted = [(t.name, int(p)) for t in request.v3_and_below_topics for p in t.partitions]
        errors = dict.fromkeys(wanted, code)
        return build(cls, throttle_time=0, results_by_topic_v3_and_below=_topic_results(errors))
    if v >= 4 and not authorize(
        ctx, AclOperation.CLUSTER_ACTION, ResourceType.CLUSTER, CLUSTER_NAME
    ):
        # v4+ is the brokers' own (verification) request: CLUSTER_ACTION on the cluster.
        code = ErrorCode.cluster_authorization_failed
        return build(cls, throttle_time=0, error_code=code, results_by_transaction=[])
    if v < 4:
        errors = await _add_or_verify(
            ctx,
            request.v3_and_below_transactional_id,
            int(request.v3_and_below_producer_id),
            int(request.v3_and_below_producer_epoch),
            request.v3_and_below_topics,
            False,
            0,
        )
        return build(cls, throttle_time=0, results_by_topic_v3_and_below=_topic_results(errors))
    results = []
    for txn in request.transactions:
        errors = await _add_or_verify(
            ctx,
            txn.transactional_id,
            int(txn.producer_id),
            int(txn.producer_epoch),
            txn.topics,
            bool(txn.verify_only),
            2,
        )
        results.append(
            dict(transactional_id=txn.transactional_id, topic_results=_topic_results(errors))
        )
    return build(cls, throttle_time=0, error_code=ErrorCode.none, results_by_transaction=results)


# ------------------------------------------------------------------ AddOffsetsToTxn / EndTxn


@api(25, "AddOffsetsToTxn", 0, 4)
async def handle_add_offsets_to_txn(ctx: RequestContext, request: Any) -> Any:
    refused = None
    if not _may_write_txn(ctx, request.transactional_id):
        refused = ErrorCode.transactional_id_authorization_failed
    elif not authorize(ctx, AclOperation.READ, ResourceType.GROUP, request.group_id):
        refused = ErrorCode.group_authorization_failed
    if refused is not None:
        return build(response_type(25, ctx.version), throttle_time=0, error_code=refused)
    partition = ctx.broker.group_coordinator.partition_for(request.group_id)
    code = await resolve(
        txn_coordinator(ctx).add_partitions(
            request.transactional_id,
            int(request.producer_id),
            int(request.producer_epoch),
            [(OFFSETS_TOPIC, partition)],
        )
    )
    return build(
        response_type(25, ctx.version), throttle_time=0, error_code=_fenced(code, ctx.version < 2)
    )


@api(26, "EndTxn", 0, 5)
async def handle_end_txn(ctx: RequestContext, request: Any) -> Any:
    v = ctx.version
    if not _may_write_txn(ctx, request.transactional_id):
        return build(
            response_type(26, v),
            throttle_time=0,
            error_code=ErrorCode.transactional_id_authorization_failed,
            producer_id=-1,
            producer_epoch=-1,
        )
    code, pid, epoch = await txn_coordinator(ctx).end_transaction(
        request.transactional_id,
        int(request.producer_id),
        int(request.producer_epoch),
        bool(request.committed),
        2 if v > 4 else 0,
    )
    if code != ErrorCode.none:
        log.info(
            "Returning %s to %s for transactional id %r's EndTxn(%s)",
            code.name,
            ctx.peer,
            request.transactional_id,
            "commit" if request.committed else "abort",
        )
    return build(
        response_type(26, v),
        throttle_time=0,
        error_code=_fenced(code, v < 2),
        producer_id=pid,
        producer_epoch=epoch,
    )


# ------------------------------------------------------------------ WriteTxnMarkers


@api(27, "WriteTxnMarkers", 1, 1)
async def handle_write_txn_markers(ctx: RequestContext, request: Any) -> Any:
    broker = ctx.broker
    image = broker.image
    # KafkaApis: ALTER or CLUSTER_ACTION on the cluster, else every partition refused.
    if not (
        authorize(ctx, AclOperation.ALTER, ResourceType.CLUSTER, CLUSTER_NAME)
        or authorize(ctx, AclOperation.CLUSTER_ACTION, ResourceType.CLUSTER, CLUSTER_NAME)
    ):
        code = ErrorCode.cluster_authorization_failed
        return build(
            response_type(27, ctx.version),
            markers=[
                dict(
                    producer_id=m.producer_id,
                    topics=[
                        dict(
                            name=t.name,
                            partitions=[
                                dict(partition_index=int(p), error_code=code)
                                for p in t.partition_indexes
                            ],
                        )
                        for t in m.topics
                    ],
                )
                for m in request.markers
            ],
        )
    written: list[tuple[Any, dict[tuple[str, int], ErrorCode], Any]] = []
    for marker in request.markers:
        wanted = [(t.name, int(p)) for t in marker.topics for p in t.partition_indexes]
        known = [tp for tp in wanted if image.partition(*tp) is not None]
        errors = dict.fromkeys(wanted, ErrorCode.unknown_topic_or_partition)
        result: Any = None
        if known:
            # Appended now (in request order), answered once committed.
            result = write_local_markers(
                broker,
                int(marker.producer_id),
                int(marker.producer_epoch),
                bool(marker.transaction_result),
                int(marker.coordinator_epoch),
                known,
            )
        written.append((marker, errors, result))
    markers = []
    for marker, errors, result in written:
        if result is not None:
            errors.update(await resolve(result))
        by_topic: dict[str, list[dict[str, Any]]] = {}
        for (topic, p), code in errors.items():
            by_topic.setdefault(topic, []).append(dict(partition_index=p, error_code=code))
        markers.append(
            dict(
                producer_id=marker.producer_id,
                topics=[dict(name=t, partitions=ps) for t, ps in by_topic.items()],
            )
        )
    return build(response_type(27, ctx.version), markers=markers)


# ------------------------------------------------------------------ TxnOffsetCommit


async def _verify_offsets_partition(
    ctx: RequestContext, request: Any, partition: int
) -> tuple[ErrorCode, bool]:
    """KIP-890 verification of the group's offsets partition: (error, verified).

    Asked of the transactional id's coordinator, here or on another broker.
    AddPartitionsToTxnManager's mapping: PRODUCER_FENCED -> INVALID_PRODUCER_EPOCH,
    TRANSACTION_ABORTABLE -> INVALID_TXN_STATE below v4; v5 adds the partition."""
    v = ctx.version
    tp = (OFFSETS_TOPIC, partition)
    pid, epoch = int(request.producer_id), int(request.producer_epoch)
    lg = ctx.broker.log_manager.get_log(OFFSETS_TOPIC, partition)
    if lg is not None and lg.producer_state.has_ongoing_txn(pid, epoch):
        return ErrorCode.none, False
    if ctx.broker.image.topics.get(TXN_STATE_TOPIC) is None:
        return ErrorCode.coordinator_not_available, False
    if not request.transactional_id:
        return ErrorCode.invalid_request, False
    codes = await verify_transaction(
        ctx.broker, request.transactional_id, pid, epoch, [tp], add=v > 4
    )
    code = codes[tp]
    if code == ErrorCode.producer_fenced:
        code = ErrorCode.invalid_producer_epoch
    elif code == ErrorCode.transaction_abortable and v <= 3:
        code = ErrorCode.invalid_txn_state
    elif code == ErrorCode.network_exception:
        code = ErrorCode.coordinator_load_in_progress
    return code, code == ErrorCode.none


@api(28, "TxnOffsetCommit", 0, 5)
async def handle_txn_offset_commit(ctx: RequestContext, request: Any) -> Any:
    image = ctx.broker.image
    groups = ctx.broker.group_coordinator
    # KafkaApis: WRITE on the transactional id, READ on the group (either refusal fails
    # every partition), then READ on each topic.
    whole = None
    if not _may_write_txn(ctx, request.transactional_id):
        whole = ErrorCode.transactional_id_authorization_failed
    elif not authorize(ctx, AclOperation.READ, ResourceType.GROUP, request.group_id):
        whole = ErrorCode.group_authorization_failed
    names = (t.name for t in request.topics)
    readable = authorized(ctx, AclOperation.READ, ResourceType.TOPIC, names) if not whole else set()
    slots: list[tuple[dict[str, Any], int, int, ErrorCode | None]] = []
    entries: list[CommitEntry] = []
    topics_out: list[dict[str, Any]] = []
    for topic in request.topics:
        out: dict[str, Any] = dict(name=topic.name, partitions=[])
        topics_out.append(out)
        for p in topic.partitions:
            index = int(p.partition_index)
            if whole is not None:
                slots.append((out, index, -1, whole))
                continue
            if topic.name not in readable:
                slots.append((out, index, -1, ErrorCode.topic_authorization_failed))
                continue
            if image.partition(topic.name, index) is None:
                slots.append((out, index, -1, ErrorCode.unknown_topic_or_partition))
                continue
            slots.append((out, index, len(entries), None))
            entries.append(
                CommitEntry(
                    topic.name,
                    index,
                    int(p.committed_offset),
                    int(getattr(p, "committed_leader_epoch", -1)),
                    p.committed_metadata,
                )
            )
    errors: list[ErrorCode] = []
    if entries:
        group_id = request.group_id
        verified = False
        error = groups.check_group(group_id)
        if error is None:
            partition = groups.partition_for(group_id)
            error, verified = await _verify_offsets_partition(ctx, request, partition)
        if error is not None and error != ErrorCode.none:
            errors = [error] * len(entries)
        else:
            errors = groups.commit_transactional_offsets(
                group_id,
                int(request.producer_id),
                int(request.producer_epoch),
                getattr(request, "member_id", ""),
                getattr(request, "group_instance_id", None),
                int(getattr(request, "generation_id", -1)),
                entries,
                verified,
            )
    for out, index, i, err in slots:
        out["partitions"].append(
            dict(partition_index=index, error_code=err if err is not None else errors[i])
        )
    return build(response_type(28, ctx.version), throttle_time=0, topics=topics_out)


# ------------------------------------------------------------------ admin


@api(61, "DescribeProducers", 0, 0)
async def handle_describe_producers(ctx: RequestContext, request: Any) -> Any:
    rm = ctx.broker.replica_manager
    topics = []
    readable = authorized(
        ctx, AclOperation.READ, ResourceType.TOPIC, (t.name for t in request.topics)
    )
    for t in request.topics:
        parts = []
        for p in t.partition_indexes:
            index = int(p)
            out: dict[str, Any] = dict(partition_index=index, error_code=ErrorCode.none)
            if t.name not in readable:  # KafkaApis: READ on the topic
                out.update(
                    error_code=ErrorCode.topic_authorization_failed,
                    error_message=DEFAULT_MESSAGES["topic"],
                    active_producers=[],
                )
                parts.append(out)
                continue
            try:
                lg = rm.leader_log(t.name, index)
            except KafkaError as e:
                out.update(error_code=e.code, active_producers=[])
                if t.name not in ctx.broker.image.topics:
                    # Kafka's metadata check (not the partition lookup) words this one.
                    out["error_message"] = "This server does not host this topic-partition."
                parts.append(out)
                continue
            out["active_producers"] = [
                dict(
                    producer_id=pid,
                    producer_epoch=e.producer_epoch,
                    last_sequence=e.last_seq,
                    last_timestamp=e.last_timestamp,
                    coordinator_epoch=e.coordinator_epoch,
                    current_txn_start_offset=(
                        -1 if e.current_txn_first_offset is None else e.current_txn_first_offset
                    ),
                )
                for pid, e in sorted(lg.producer_state.producers.items())
            ]
            parts.append(out)
        topics.append(dict(name=t.name, partitions=parts))
    return build(response_type(61, ctx.version), throttle_time=0, topics=topics)


@api(65, "DescribeTransactions", 0, 0)
async def handle_describe_transactions(ctx: RequestContext, request: Any) -> Any:
    coordinator = txn_coordinator(ctx)
    states = []
    for txn_id in request.transactional_ids:
        code, txn = coordinator.describe(txn_id)
        if not authorize(ctx, AclOperation.DESCRIBE, ResourceType.TRANSACTIONAL_ID, txn_id):
            # Kafka answers a bare TransactionState: every other field at its zero default.
            states.append(
                dict(
                    error_code=ErrorCode.transactional_id_authorization_failed,
                    transactional_id=txn_id,
                    transaction_state="",
                    transaction_timeout=0,
                    transaction_start_time=_ms_datetime(0),
                    producer_id=0,
                    producer_epoch=0,
                    topics=[],
                )
            )
            continue
        if txn is None:
            states.append(
                dict(
                    error_code=code,
                    transactional_id=txn_id,
                    transaction_state="",
                    transaction_timeout=0,
                    transaction_start_time=_ms_datetime(-1),
                    producer_id=-1,
                    producer_epoch=-1,
                    topics=[],
                )
            )
            continue
        by_topic: dict[str, list[int]] = {}
        # KafkaApis: only the topics the principal may DESCRIBE are listed.
        shown = authorized(
            ctx, AclOperation.DESCRIBE, ResourceType.TOPIC, (t for t, _ in txn.partitions)
        )
        for topic, p in sorted(txn.partitions):
            if topic in shown:
                by_topic.setdefault(topic, []).append(p)
        states.append(
            dict(
                error_code=ErrorCode.none,
                transactional_id=txn_id,
                transaction_state=txn.state.display,
                transaction_timeout=txn.timeout_ms,
                transaction_start_time=_ms_datetime(txn.start_ms),
                producer_id=txn.producer_id,
                producer_epoch=txn.producer_epoch,
                topics=[dict(topic=t, partitions=ps) for t, ps in by_topic.items()],
            )
        )
    return build(response_type(65, ctx.version), throttle_time=0, transaction_states=states)


@api(66, "ListTransactions", 0, 2)
async def handle_list_transactions(ctx: RequestContext, request: Any) -> Any:
    # v2 (KIP-1152): a transactional id pattern that must match the whole id, as Java's
    # Pattern.matches; an invalid one is INVALID_REGULAR_EXPRESSION with no states.
    pattern = getattr(request, "transactional_id_pattern", None)
    matcher = None
    if pattern:
        try:
            matcher = re.compile(pattern)
        except re.error:
            return build(
                response_type(66, ctx.version),
                throttle_time=0,
                error_code=ErrorCode.invalid_regular_expression,
            )
    code, found, unknown = txn_coordinator(ctx).list_transactions(
        list(request.state_filters),
        [int(p) for p in request.producer_id_filters],
        int(getattr(request, "duration_filter", -1)),
    )
    if matcher is not None:
        found = [t for t in found if matcher.fullmatch(t.transactional_id)]
    # KafkaApis: only the transactional ids the principal may DESCRIBE.
    ids = [t.transactional_id for t in found]
    allowed = authorized(ctx, AclOperation.DESCRIBE, ResourceType.TRANSACTIONAL_ID, ids)
    found = [t for t in found if t.transactional_id in allowed]
    return build(
        response_type(66, ctx.version),
        throttle_time=0,
        error_code=code,
        unknown_state_filters=unknown,
        transaction_states=[
            dict(
                transactional_id=t.transactional_id,
                producer_id=t.producer_id,
                transaction_state=t.state,
            )
            for t in found
        ],
    )
