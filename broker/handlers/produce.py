"""Produce (key 0): validate and append each partition's batches; acks 0, 1 and -1.

The records field is copied once into a bytearray so the log can rewrite base offsets in
place; everything else about the batches is validated and stored as the producer sent it.

Idempotent producers: the log checks epochs and sequences (storage/producer_state.py). A
retried batch that is already in the log is a success answered with its original base
offset (and, as Kafka does, its stored timestamp as log_append_time). Producer-state errors
carry the log start offset and no error message, as Kafka's ReplicaManager sends them.
Transactional batches need a transactional id in the request, else the whole request gets
TRANSACTIONAL_ID_AUTHORIZATION_FAILED (KafkaApis.handleProduceRequest).

KIP-890 (transaction.partition.verification.enable, on by default in Kafka 4): before the
first transactional batch of a producer starts a transaction in a partition, the
transaction coordinator must confirm the partition is in that transaction (Kafka's
AddPartitionsToTxnManager and ReplicaManager): otherwise INVALID_TXN_STATE "Partition was
not added to the transaction" up to Produce v10, TRANSACTION_ABORTABLE from v11; Produce
v12 (KIP-890 part 2) adds the partition to the transaction instead. A fenced epoch is
INVALID_PRODUCER_EPOCH; a coordinator that cannot answer is NOT_ENOUGH_REPLICAS (which
every client retries). Batches of more than one transactional producer in one request:
INVALID_PRODUCER_ID_MAPPING for every partition.

Produce v13 names topics by id (KIP-516): an id this broker does not know is
UNKNOWN_TOPIC_ID. Produce v0-2 (KIP-896 removed them; pybroker.legacy.protocol.enable)
carry message sets (magic 0/1), converted here to one v2 batch per partition as Kafka
3.9's LogValidator did; a bad CRC or message is CORRUPT_MESSAGE for that partition.
"""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

from pybroker.broker.clock import now_ms
from pybroker.broker.connection import CloseConnection
from pybroker.broker.context import RequestContext
from pybroker.broker.handlers.registry import api
from pybroker.broker.request_metrics import remote
from pybroker.broker.security.authz import AclOperation, ResourceType, authorize, authorized
from pybroker.broker.txn.coordinator import TXN_STATE_TOPIC
from pybroker.broker.txn.verification import verify_transaction
from pybroker.protocol.codec import build, millis, response_type
from pybroker.protocol.compression import ZSTD
from pybroker.protocol.errors import (
    CorruptRecordError,
    ErrorCode,
    InvalidProducerEpochError,
    InvalidTxnStateError,
    KafkaError,
    OutOfOrderSequenceError,
    TransactionCoordinatorFencedError,
)
from pybroker.protocol.legacy.message_set import to_v2_batch
from pybroker.protocol.records import iter_batches

log = logging.getLogger(__name__)


def _partition_response(
    index: int,
    code: ErrorCode,
    base_offset: int = -1,
    log_append_time: int = -1,
    log_start_offset: int = -1,
    message: str | None = None,
) -> dict[str, Any]:
    return dict(
        index=index,
        error_code=code,
        base_offset=base_offset,
        log_append_time=log_append_time,
        log_start_offset=log_start_offset,
        record_errors=[],
        error_message=message,
    )


def _is_zstd(records: bytes) -> bool:
    """KIP-110: zstd batches need Produce v7+ (attributes are at byte 21 of a batch)."""
    return len(records) > 22 and records[22] & 0x07 == ZSTD


def _has_transactional_records(topics: dict[str, dict[int, Any]]) -> bool:
    """Kafka's ProduceRequest.hasTransactionalRecords (attribute bit 4 of the batch)."""
    return any(
        pd.records is not None and len(pd.records) > 22 and pd.records[22] & 0x10
        for parts in topics.values()
        for pd in parts.values()
    )


TopicKey = tuple[str | None, Any]  # (name, topic id): name None = an unknown id (v13)


def _partitions(ctx: RequestContext, request: Any) -> dict[TopicKey, dict[int, Any]]:
    """The request's partitions by topic and index, as KafkaApis.handleProduceRequest keys
    them (a Map per TopicPartition): a repeated partition is appended and answered once,
    with its last entry; ProduceResponse groups partitions by topic (id from v13)."""
    image = ctx.broker.image
    topics: dict[TopicKey, dict[int, Any]] = {}
    for topic in request.topic_data:
        if ctx.version >= 13:
            info = image.topic_by_id(topic.topic_id) if topic.topic_id else None
            key: TopicKey = (info.name if info is not None else None, topic.topic_id)
        else:
            key = (topic.name, None)
        parts = topics.setdefault(key, {})
        for pd in topic.partition_data:
            parts[int(pd.index)] = pd
    return topics


def _convert_message_sets(
    topics: dict[TopicKey, dict[int, Any]], errors: dict[tuple[str | None, int], str]
) -> None:
    """Produce v0-2: message sets (magic 0/1) become one v2 batch each, in place."""
    for (name, _), parts in topics.items():
        for index, pd in parts.items():
            records = pd.records
            if records is None or len(records) < 17 or records[16] >= 2:
                continue  # null, too short (answered as usual) or already a v2 batch
            try:
                converted = to_v2_batch(records)
            except CorruptRecordError as exc:
                errors[(name, index)] = str(exc)
                continue
            parts[index] = SimpleNamespace(index=index, records=converted)


def _precheck(version: int, records: bytes) -> ErrorCode | None:
    """ProduceRequest.validateRecords, which KafkaApis runs on every known partition before
    the ReplicaManager looks at acks: at least one batch, magic 2, no zstd before v7."""
    if len(records) < 17:
        return ErrorCode.invalid_record
    if records[16] != 2:
        return ErrorCode.invalid_record
    if version < 7 and _is_zstd(records):
        return ErrorCode.unsupported_compression_type
    return None


def _transactional_producer(records: bytes | None) -> tuple[int, int] | None:
    """(producer id, epoch) of the transactional batches of one partition's records."""
    if not records or len(records) <= 22 or not records[22] & 0x10:
        return None
    try:
        for _, h in iter_batches(records):
            if h.is_transactional and h.producer_id >= 0:
                return h.producer_id, h.producer_epoch
    except Exception:  # malformed: the append's validation answers it
        return None
    return None


_UNVERIFIABLE = (
    ErrorCode.network_exception,
    ErrorCode.coordinator_load_in_progress,
    ErrorCode.coordinator_not_available,
    ErrorCode.not_coordinator,
)


async def _verify_transaction(
    ctx: RequestContext, txn_id: str, topic: str, index: int, producer: tuple[int, int]
) -> tuple[ErrorCode, str | None, tuple[int, int] | None]:
    """KIP-890: (error, message, verified producer) for a partition's transactional data,
    asked of the transactional id's coordinator (this broker or another one)."""
    broker = ctx.broker
    pid, epoch = producer
    try:
        lg = broker.replica_manager.leader_log(topic, index)
    except KafkaError:
        return ErrorCode.none, None, None  # the append answers it
    if lg.producer_state.has_ongoing_txn(pid, epoch):
        return ErrorCode.none, None, None
    add = ctx.version > 11  # Produce v12 (KIP-890 part 2) adds the partition
    tp = (topic, index)
    if broker.image.topics.get(TXN_STATE_TOPIC) is None:
        code = ErrorCode.coordinator_not_available
    else:
        code = (await verify_transaction(broker, txn_id, pid, epoch, [tp], add))[tp]
    # AddPartitionsToTxnManager's mapping for the producer
    if code == ErrorCode.producer_fenced:
        code = ErrorCode.invalid_producer_epoch
    elif code == ErrorCode.transaction_abortable and ctx.version <= 10:
        code = ErrorCode.invalid_txn_state
    # ReplicaManager's mapping to errors every producer knows how to handle
    if code == ErrorCode.none:
        return code, None, producer
    if code == ErrorCode.invalid_txn_state:
        return code, "Partition was not added to the transaction", None
    if code in _UNVERIFIABLE or (code == ErrorCode.concurrent_transactions and not add):
        return (
            ErrorCode.not_enough_replicas,
            "Unable to verify the partition has been added to the transaction. "
            f"Underlying error: {code.name.upper()}",
            None,
        )
    return code, None, None


# Errors Kafka answers with the partition's log start offset and without a message.
_PRODUCER_STATE_ERRORS = (
    OutOfOrderSequenceError,
    InvalidProducerEpochError,
    InvalidTxnStateError,
    TransactionCoordinatorFencedError,
)


def _writable(records: bytes | memoryview) -> bytearray | memoryview:
    """The records as the log appends them (offsets and epochs stamped in place): a view of
    the request's writable buffer as it is, anything else (kio's bytes) as a copy."""
    if isinstance(records, memoryview) and not records.readonly:
        return records
    return bytearray(records)


@api(0, "Produce", 3, 13)
async def handle_produce(ctx: RequestContext, request: Any) -> Any:
    broker = ctx.broker
    rm = broker.replica_manager
    acks = int(request.acks)
    responses = []
    failed = False
    to_flush = []
    txn_id = request.transactional_id
    topics = _partitions(ctx, request)
    wakes = broker.purgatory.wakes
    corrupt: dict[tuple[str | None, int], str] = {}
    if ctx.version < 3:
        _convert_message_sets(topics, corrupt)
    # KafkaApis: transactional records need WRITE on the transactional id (else the whole
    # request fails), then each topic needs WRITE (else TOPIC_AUTHORIZATION_FAILED).
    denied = _has_transactional_records(topics) and (
        txn_id is None
        or not authorize(ctx, AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID, txn_id)
    )
    names = (n for n, _ in topics if n is not None)
    writable = authorized(ctx, AclOperation.WRITE, ResourceType.TOPIC, names)
    image = broker.image
    if any(
        pd.records is None
        and (denied or (name in writable and image.partition(name, index) is not None))
        for (name, _), parts in topics.items()
        for index, pd in parts.items()
    ):
        # Kafka has no answer for null records on a partition it hosts: the append path
        # (ReplicaManager.handleProduceAppend, records.batches) and then
        # ProduceRequest.getErrorResponse (partitionSizes, records.sizeInBytes) throw
        # NullPointerException, so no response is ever sent. Closing the connection is the
        # observable equivalent without leaving the client waiting forever.
        raise CloseConnection("Produce with null records for a partition this broker hosts")
    producers: dict[tuple[str, int], tuple[int, int]] = {}
    if txn_id is not None:
        for (name, _), parts in topics.items():
            for index, pd in parts.items():
                found = _transactional_producer(pd.records)
                if found is not None:
                    producers[(name, index)] = found
    # Kafka: "Transactional records contained more than one producer ID" fails it all.
    mixed = len(set(producers.values())) > 1
    awaiting: list[tuple[str, int, int]] = []  # acks=all: (topic, partition, offset after)
    for (name, topic_id), partitions in topics.items():
        parts = []
        for index, pd in partitions.items():
            if denied or mixed:
                code = (
                    ErrorCode.transactional_id_authorization_failed
                    if denied
                    else ErrorCode.invalid_producer_id_mapping
                )
                parts.append(_partition_response(index, code))
                failed = True
                continue
            if name is None:  # v13: an unknown topic id (after the transactional checks)
                parts.append(_partition_response(index, ErrorCode.unknown_topic_id))
                failed = True
                continue
            if name not in writable:
                parts.append(_partition_response(index, ErrorCode.topic_authorization_failed))
                failed = True
                continue
            if pd.records is None:  # an unknown partition: never reaches the records
                parts.append(_partition_response(index, ErrorCode.unknown_topic_or_partition))
                failed = True
                continue
            if acks not in (0, 1, -1):
                # ReplicaManager.appendRecords answers INVALID_REQUIRED_ACKS for the
                # partitions KafkaApis passed on: known ones whose records validated.
                if image.partition(name, index) is None:
                    code = ErrorCode.unknown_topic_or_partition
                else:
                    code = _precheck(ctx.version, pd.records) or ErrorCode.invalid_required_acks
                parts.append(_partition_response(index, code))
                failed = True
                continue
            if (name, index) in corrupt:
                known = image.partition(name, index) is not None
                code = ErrorCode.corrupt_message if known else ErrorCode.unknown_topic_or_partition
                parts.append(_partition_response(index, code, message=corrupt[(name, index)]))
                failed = True
                continue
            verified = None
            producer = producers.get((name, index))
            if producer is not None:
                assert txn_id is not None
                code, message, verified = await _verify_transaction(
                    ctx, txn_id, name, index, producer
                )
                if code != ErrorCode.none:
                    log.debug("Produce to %s-%d not verified: %s", name, index, code.name)
                    parts.append(_partition_response(index, code, message=message))
                    failed = True
                    continue
            try:
                if ctx.version < 7 and _is_zstd(pd.records):
                    raise KafkaError(
                        "zstd needs Produce v7 or later", ErrorCode.unsupported_compression_type
                    )
                lg, info = rm.append(
                    name, index, _writable(pd.records), acks, verified_txn=verified
                )
            except KafkaError as exc:
                failed = True
                if exc.code not in (ErrorCode.unknown_topic_or_partition,):
                    log.debug("Produce to %s-%d failed: %s", name, index, exc)
                if isinstance(exc, _PRODUCER_STATE_ERRORS):
                    failed_log = rm.log_manager.get_log(name, index)
                    start = failed_log.log_start_offset if failed_log is not None else -1
                    parts.append(_partition_response(index, exc.code, log_start_offset=start))
                elif getattr(exc, "record_errors", None):
                    # LogValidator's RecordValidationException: the summary message, one
                    # error per bad record and the log start offset (ReplicaManager).
                    failed_log = rm.log_manager.get_log(name, index)
                    part = _partition_response(
                        index,
                        exc.code,
                        log_start_offset=failed_log.log_start_offset if failed_log else -1,
                        message=str(exc),
                    )
                    part["record_errors"] = [
                        dict(batch_index=i, batch_index_error_message=m)
                        for i, m in exc.record_errors  # type: ignore[attr-defined]
                    ]
                    parts.append(part)
                else:
                    # ReplicaManager's LogAppendResult.errorMessage: only record-validation
                    # failures carry a message; others are null, and so is
                    # ProduceRequest.validateRecords' shape check ("Produce requests with
                    # version 3 or later ..."), which KafkaApis answers bare.
                    custom = exc.code in (
                        ErrorCode.invalid_record,
                        ErrorCode.invalid_timestamp,
                    ) and not str(exc).startswith("Produce requests with version")
                    message = str(exc) if custom else None
                    parts.append(_partition_response(index, exc.code, message=message))
                continue
            if info.duplicate:
                log.debug(
                    "Produce to %s-%d: duplicate of the batch at offset %d",
                    name,
                    index,
                    info.base_offset,
                )
            if lg.needs_flush(now_ms()):
                to_flush.append(lg)
            if acks == -1:
                awaiting.append((name, index, info.last_offset + 1))
            parts.append(
                _partition_response(
                    index,
                    ErrorCode.none,
                    info.base_offset,
                    info.log_append_time,
                    info.log_start_offset,
                )
            )
        responses.append(dict(name=name or "", topic_id=topic_id, partition_responses=parts))
    # Parked fetches these appends woke answer first, from here (Kafka completes delayed
    # fetches on the append's thread): a consumer sees the record before the producer
    # hears back. One its try_complete could not send (large, throttled) is a task that
    # still has to run: the producer gives it one loop turn.
    broker.purgatory.complete_ready()
    if broker.purgatory.wakes != wakes:
        await asyncio.sleep(0)
    if to_flush:
        # flush.messages reached: fsync before acknowledging, off the event loop.
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: [lg.flush() for lg in to_flush]
        )
    if awaiting:
        # Kafka's DelayedProduce: answer once the ISR has every append (the HW passed it),
        # or with the partition's error when that cannot happen within the timeout.
        codes = await remote(rm.wait_for_commit(awaiting, millis(request.timeout) / 1000))
        for entry in responses:
            for part in entry["partition_responses"]:
                code = codes.get((entry["name"], part["index"]), ErrorCode.none)
                if code != ErrorCode.none:
                    part.update(error_code=code, base_offset=-1, log_append_time=-1)
    if acks == 0:
        if failed:
            # The producer cannot see errors with acks=0; Kafka closes the connection so it
            # notices and refreshes metadata.
            raise CloseConnection("acks=0 produce failed for at least one partition")
        return None
    return build(response_type(0, ctx.version), responses=responses, throttle_time=0)
