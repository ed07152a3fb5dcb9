"""Kafka error codes and the exception that carries one.

Every layer raises :class:`KafkaError` with the code a real broker would answer, so a
handler turns any failure into the right per-partition or top-level error code without
a translation table of its own.
"""

from __future__ import annotations

from kio.schema.errors import ErrorCode

__all__ = [
    "ErrorCode",
    "KafkaError",
    "CorruptRecordError",
    "OffsetOutOfRangeError",
    "UnknownTopicOrPartitionError",
    "MessageTooLargeError",
    "InvalidRecordError",
    "KafkaStorageError",
    "InvalidTimestampError",
    "OutOfOrderSequenceError",
    "InvalidProducerEpochError",
    "InvalidTxnStateError",
    "TransactionCoordinatorFencedError",
]


class KafkaError(Exception):
    """An error that maps onto one Kafka error code."""

    code: ErrorCode = ErrorCode.unknown_server_error

    def __init__(self, message: str = "", code: ErrorCode | None = None) -> None:
        super().__init__(message or self.__class__.__name__)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self)


class CorruptRecordError(KafkaError):
    code = ErrorCode.corrupt_message


class OffsetOutOfRangeError(KafkaError):
    code = ErrorCode.offset_out_of_range


class UnknownTopicOrPartitionError(KafkaError):
    code = ErrorCode.unknown_topic_or_partition


class MessageTooLargeError(KafkaError):
    code = ErrorCode.message_too_large


class InvalidRecordError(KafkaError):
    code = ErrorCode.invalid_record


class KafkaStorageError(KafkaError):
    code = ErrorCode.kafka_storage_error


class InvalidTimestampError(KafkaError):
    code = ErrorCode.invalid_timestamp


# Idempotent / transactional producer state (Kafka's ProducerAppendInfo exceptions).


class OutOfOrderSequenceError(KafkaError):
    code = ErrorCode.out_of_order_sequence_number


class InvalidProducerEpochError(KafkaError):
    code = ErrorCode.invalid_producer_epoch


class InvalidTxnStateError(KafkaError):
    code = ErrorCode.invalid_txn_state


class TransactionCoordinatorFencedError(KafkaError):
    code = ErrorCode.transaction_coordinator_fenced
