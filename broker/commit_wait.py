"""Coordinator writes complete on commit, not on append.

Kafka's coordinators answer a request from the completion of their acks=all write to
``__consumer_offsets``: the client hears "committed" only once the partition's in-sync
replicas hold the record. Here a coordinator handler is wrapped by ``waits_for_commit``:
the coordinator's appends made while the request runs are noted (``note_append``, called
by the one internal-topic append path) and the response waits until the partition's high
watermark passes them. If that fails (leadership lost, ISR below min.insync.replicas,
``offsets.commit.timeout.ms``), every error slot of the response that said NONE gets
the mapped error instead (Kafka's coordinator mapping: COORDINATOR_NOT_AVAILABLE or
NOT_COORDINATOR), so the client retries against the current coordinator.

On a single node the wait is free: the leader is its whole ISR, so an append is committed
when it returns.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

from pybroker.broker.context import RequestContext
from pybroker.broker.groups.append_errors import map_append_error
from pybroker.protocol.errors import ErrorCode

_appended: ContextVar[list[tuple[str, int, int]] | None] = ContextVar("appended", default=None)

Handler = Callable[[RequestContext, Any], Awaitable[Any]]


def note_append(topic: str, partition: int, end_offset: int) -> None:
    """A coordinator appended up to ``end_offset`` (exclusive) during this request."""
    pending = _appended.get()
    if pending is not None:
        pending.append((topic, partition, end_offset))


def with_error(entity: Any, code: ErrorCode) -> Any:
    """``entity`` with every ``error_code`` that is NONE, at any depth, set to ``code``."""
    if not dataclasses.is_dataclass(entity):
        return entity
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(entity):
        value = getattr(entity, f.name)
        if f.name == "error_code" and value == ErrorCode.none:
            changes[f.name] = code
        elif isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
            changes[f.name] = tuple(with_error(v, code) for v in value)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            changes[f.name] = with_error(value, code)
    return dataclasses.replace(entity, **changes) if changes else entity


def waits_for_commit(too_large: ErrorCode = ErrorCode.unknown_server_error) -> Callable:
    """Decorate a group-coordinator handler (below ``@api``); ``too_large`` is what an
    oversized write becomes (INVALID_COMMIT_OFFSET_SIZE for OffsetCommit)."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapped(ctx: RequestContext, request: Any) -> Any:
            token = _appended.set([])
            try:
                response = await handler(ctx, request)
                pending = _appended.get() or []
            finally:
                _appended.reset(token)
            if not pending or response is None:
                return response
            broker = ctx.broker
            latest: dict[tuple[str, int], int] = {}
            for topic, partition, end in pending:
                latest[(topic, partition)] = max(end, latest.get((topic, partition), 0))
            codes = await broker.replica_manager.wait_for_commit(
                [(t, p, end) for (t, p), end in latest.items()],
                broker.config.offsets_commit_timeout_ms / 1000,
            )
            failed = [c for c in codes.values() if c != ErrorCode.none]
            if not failed:
                return response
            return with_error(response, map_append_error(failed[0], too_large))

        return wrapped

    return decorate
