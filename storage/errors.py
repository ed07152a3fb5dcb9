"""Storage-layer errors that are not client error codes of their own.

They still subclass KafkaError so a handler that forgets one answers with a code
(KAFKA_STORAGE_ERROR or UNKNOWN_SERVER_ERROR) instead of crashing the connection.
"""

from __future__ import annotations

from pybroker.protocol.errors import ErrorCode, KafkaError, KafkaStorageError


class CorruptIndexError(Exception):
    """An index file is missing, of the wrong size or out of order; it gets rebuilt."""


class CorruptCheckpointError(ValueError):
    """A checkpoint file cannot be parsed; callers log it and treat the file as absent."""


class LogDirLockedError(KafkaStorageError):
    """Another process (a second broker) holds the lock on a log directory."""


class UnexpectedAppendOffsetError(KafkaError):
    """A follower append starts below the log end offset (the fetcher truncates and retries)."""

    code = ErrorCode.unknown_server_error

    def __init__(self, message: str, first_offset: int, last_offset: int) -> None:
        super().__init__(message)
        self.first_offset = first_offset
        self.last_offset = last_offset


class InconsistentTopicIdError(KafkaError):
    """partition.metadata names a different topic id than the caller expects."""

    code = ErrorCode.inconsistent_topic_id


class RecordBatchTooLargeError(KafkaError):
    """An append larger than segment.bytes can never fit a segment (RECORD_LIST_TOO_LARGE)."""

    code = ErrorCode.record_list_too_large
