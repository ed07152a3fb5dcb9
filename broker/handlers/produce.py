"""Produce (key 0): validate and append each partition's batches; acks 0, 1 and -1.

The records field is copied once into a bytearray so the log can rewrite base offsets in
place; everything else about the batches is validated and stored as the producer sent it.

Idempotent producers: the log checks epochs and sequences (storage/producer_state.py). A
retried batch that is already in the log is a success answered with its original base
offset (and, as Kafka does, its stored timestamp as log_append_time). Producer-state errors
carry the log start offset and no error message, as Kafka's ReplicaManager sends them.
Transactional batches need a transactional id in the request, else the whole request gets
TRANSACTIONAL_ID_AUTHORIZATION_FAILED (KafkaApis.handleProduceRequest).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pybroker.broker.clock import now_ms
from pybroker.broker.connection import CloseConnection
from pybroker.broker.context import RequestContext
from pybroker.broker.handlers.registry import api
from pybroker.protocol.codec import build, response_type
from pybroker.protocol.compression import ZSTD
from pybroker.protocol.errors import (
    ErrorCode,
    InvalidProducerEpochError,
    InvalidTxnStateError,
    KafkaError,
    OutOfOrderSequenceError,
    TransactionCoordinatorFencedError,
)

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


def _has_transactional_records(request: Any) -> bool:
    """Kafka's ProduceRequest.hasTransactionalRecords (attribute bit 4 of the batch)."""
    return any(
        pd.records is not None and len(pd.records) > 22 and pd.records[22] & 0x10
        for topic in request.topic_data
        for pd in topic.partition_data
    )


# Errors Kafka answers with the partition's log start offset and without a message.
_PRODUCER_STATE_ERRORS = (
    OutOfOrderSequenceError,
    InvalidProducerEpochError,
    InvalidTxnStateError,
    TransactionCoordinatorFencedError,
)


@api(0, "Produce", 3, 12)
async def handle_produce(ctx: RequestContext, request: Any) -> Any:
    broker = ctx.broker
    rm = broker.replica_manager
    acks = int(request.acks)
    responses = []
    failed = False
    to_flush = []
    denied = request.transactional_id is None and _has_transactional_records(request)
    for topic in request.topic_data:
        name = topic.name
        parts = []
        for pd in topic.partition_data:
            index = int(pd.index)
            if denied:
                parts.append(
                    _partition_response(index, ErrorCode.transactional_id_authorization_failed)
                )
                failed = True
                continue
            if acks not in (0, 1, -1):
                parts.append(_partition_response(index, ErrorCode.invalid_required_acks))
                failed = True
                continue
            if pd.records is None:
                parts.append(_partition_response(index, ErrorCode.corrupt_message))
                failed = True
                continue
            try:
                if ctx.version < 7 and _is_zstd(pd.records):
                    raise KafkaError(
                        "zstd needs Produce v7 or later", ErrorCode.unsupported_compression_type
                    )
                lg, info = rm.append(name, index, bytearray(pd.records), acks)
            except KafkaError as exc:
                failed = True
                if exc.code not in (ErrorCode.unknown_topic_or_partition,):
                    log.debug("Produce to %s-%d failed: %s", name, index, exc)
                if isinstance(exc, _PRODUCER_STATE_ERRORS):
                    failed_log = rm.log_manager.get_log(name, index)
                    start = failed_log.log_start_offset if failed_log is not None else -1
                    parts.append(_partition_response(index, exc.code, log_start_offset=start))
                else:
                    parts.append(_partition_response(index, exc.code, message=str(exc)))
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
            parts.append(
                _partition_response(
                    index,
                    ErrorCode.none,
                    info.base_offset,
                    info.log_append_time,
                    info.log_start_offset,
                )
            )
        responses.append(dict(name=name, partition_responses=parts))
    if to_flush:
        # flush.messages reached: fsync before acknowledging, off the event loop.
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: [lg.flush() for lg in to_flush]
        )
    if acks == 0:
        if failed:
            # The producer cannot see errors with acks=0; Kafka closes the connection so it
            # notices and refreshes metadata.
            raise CloseConnection("acks=0 produce failed for at least one partition")
        return None
    return build(response_type(0, ctx.version), responses=responses, throttle_time=0)
