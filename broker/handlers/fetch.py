"""Fetch (key 1): read record slices up to the high watermark, long-poll in the purgatory.

Sessionless (KIP-227 allows it): every response carries session id 0, so clients keep
sending full fetch requests; an incremental request for a session we never created gets
FETCH_SESSION_ID_NOT_FOUND. Records travel as FileSlices to os.sendfile.

Isolation (KIP-98): every partition answers its last stable offset. A read_committed
fetch reads nothing at or beyond the LSO and carries the aborted transactions that
overlap the batches it returns (from the .txnindex files), so the consumer can drop their
records; a read_uncommitted fetch reads up to the high watermark and carries none.
"""

from __future__ import annotations

import time
from typing import Any

from pybroker.broker.context import RequestContext
from pybroker.broker.handlers.registry import api
from pybroker.protocol.codec import ZERO_UUID, millis
from pybroker.protocol.errors import ErrorCode, KafkaError
from pybroker.protocol.fetch_encoder import (
    EncodedResponse,
    FetchPartition,
    FetchTopic,
    encode_fetch_response,
)

READ_COMMITTED = 1


def _check_leader_epoch(current: int, ours: int) -> None:
    if current < 0 or current == ours:
        return
    if current > ours:
        raise KafkaError("Leader epoch is newer than the leader's", ErrorCode.unknown_leader_epoch)
    raise KafkaError("Leader epoch is older than the leader's", ErrorCode.fenced_leader_epoch)


def _read_all(ctx: RequestContext, request: Any) -> tuple[list[FetchTopic], int, list]:
    """One pass over the requested partitions: (topics, bytes found, partition keys)."""
    broker = ctx.broker
    image = broker.image
    rm = broker.replica_manager
    v = ctx.version
    budget = int(request.max_bytes) if v >= 3 else 2**31 - 1
    committed = request.isolation_level == READ_COMMITTED
    total = 0
    keys = []
    topics: list[FetchTopic] = []
    for t in request.topics:
        if v >= 13:
            info = image.topic_by_id(t.topic_id) if t.topic_id not in (None, ZERO_UUID) else None
            name = info.name if info else ""
            unknown = ErrorCode.unknown_topic_id
        else:
            name = t.topic
            info = image.topics.get(name)
            unknown = ErrorCode.unknown_topic_or_partition
        out: list[FetchPartition] = []
        for p in t.partitions:
            index = int(p.partition)
            fp = FetchPartition(index)
            out.append(fp)
            if info is None:
                fp.error_code = unknown
                continue
            try:
                lg = rm.leader_log(name, index)
                state = info.partitions[index]
                if v >= 9:
                    _check_leader_epoch(int(p.current_leader_epoch), state.leader_epoch)
                hw = lg.high_watermark
                lso = lg.last_stable_offset
                fp.high_watermark = hw
                fp.last_stable_offset = lso
                fp.log_start_offset = lg.log_start_offset
                keys.append((name, index))
                limit = min(int(p.partition_max_bytes), budget - total)
                if limit <= 0 and total > 0:
                    continue
                res = lg.read(
                    int(p.fetch_offset),
                    max(limit, 0),
                    max_offset=lso if committed else hw,
                    min_one_batch=total == 0,
                    collect_aborted=committed,
                )
                fp.records = list(res.slices)
                total += res.total_bytes
                if committed:
                    fp.aborted_transactions = [
                        (a.producer_id, a.first_offset) for a in res.aborted_transactions or ()
                    ]
            except KafkaError as exc:
                fp.error_code = exc.code
        requested_id = t.topic_id if v >= 13 else None
        topics.append(FetchTopic(name, requested_id, out))
    return topics, total, keys


@api(1, "Fetch", 4, 17)
async def handle_fetch(ctx: RequestContext, request: Any) -> EncodedResponse:
    v = ctx.version
    if v >= 7 and (request.session_id != 0 or request.session_epoch > 0):
        return encode_fetch_response(
            v, [], error_code=ErrorCode.fetch_session_id_not_found, session_id=0
        )
    max_wait = millis(request.max_wait) / 1000
    min_bytes = max(int(request.min_bytes), 1)
    deadline = time.monotonic() + max_wait
    purgatory = ctx.broker.purgatory
    while True:
        topics, total, keys = _read_all(ctx, request)
        errors = any(p.error_code for t in topics for p in t.partitions)
        remaining = deadline - time.monotonic()
        if total >= min_bytes or errors or remaining <= 0 or ctx.broker.stopping:
            break
        await purgatory.wait(keys, remaining)
    return encode_fetch_response(v, topics, session_id=0)
