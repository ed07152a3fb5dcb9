"""Errors of a failed append to __consumer_offsets, as the group coordinator reports them."""

from __future__ import annotations

from pybroker.protocol.errors import ErrorCode


def map_append_error(code: ErrorCode, too_large: ErrorCode) -> ErrorCode:
    """How the group coordinator reports a failed append to __consumer_offsets (Kafka's
    GroupCoordinatorService); ``too_large`` is what oversized writes become."""
    if code in (
        ErrorCode.unknown_topic_or_partition,
        ErrorCode.not_enough_replicas,
        ErrorCode.not_enough_replicas_after_append,
        ErrorCode.request_timed_out,
    ):
        return ErrorCode.coordinator_not_available
    if code in (ErrorCode.not_leader_or_follower, ErrorCode.kafka_storage_error):
        return ErrorCode.not_coordinator
    if code in (
        ErrorCode.message_too_large,
        ErrorCode.record_list_too_large,
        ErrorCode.invalid_fetch_size,
    ):
        return too_large
    return code
