"""Fetch (key 1): read record slices up to the high watermark, long-poll in the purgatory.

Incremental fetch sessions (KIP-227, broker/fetch_sessions.py): a full fetch at epoch 0
opens a session; incremental fetches name only what changed and are answered only what
changed. Records travel as FileSlices to os.sendfile.

Isolation (KIP-98): every partition answers its last stable offset. A read_committed
fetch reads nothing at or beyond the LSO and carries the aborted transactions that
overlap the batches it returns (from the .txnindex files), so the consumer can drop their
records; a read_uncommitted fetch reads up to the high watermark and carries none.

Fetch v0-3 (KIP-896 removed them; pybroker.legacy.protocol.enable) read uncommitted and get
the stored batches down-converted, as Kafka 3.9 did: magic 0 for v0-1, magic 1 for v2-3,
control batches dropped (records of aborted transactions are delivered: these
versions have no isolation level), zstd answered UNSUPPORTED_COMPRESSION_TYPE
(protocol/legacy/message_set.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from pybroker.broker.context import RequestContext
from pybroker.broker.fetch_sessions import FINAL_EPOCH, FetchContext, Key, PartitionRequest
from pybroker.broker.handlers.registry import api
from pybroker.broker.request_metrics import record_fetch, remote
from pybroker.broker.security.authz import CLUSTER_NAME as CLUSTER
from pybroker.broker.security.authz import AclOperation, ResourceType, authorize, authorized
from pybroker.protocol.codec import ZERO_UUID, millis
from pybroker.protocol.errors import ErrorCode, KafkaError
from pybroker.protocol.fetch_encoder import (
    EncodedResponse,
    FetchPartition,
    FetchTopic,
    encode_fetch_response,
)
from pybroker.protocol.legacy.message_set import down_convert

READ_UNCOMMITTED, READ_COMMITTED = 0, 1
CONSUMER_REPLICA_ID = -1


def _has_known_partition(ctx: RequestContext, request: Any) -> bool:
    """Whether any requested partition exists (Kafka's ``interesting`` is non-empty)."""
    image = ctx.broker.image
    for t in request.topics:
        if ctx.version >= 13:
            info = image.topic_by_id(t.topic_id) if t.topic_id not in (None, ZERO_UUID) else None
        else:
            info = image.topics.get(t.topic)
        if info is not None and any(
            0 <= int(p.partition) < len(info.partitions) for p in t.partitions
        ):
            return True
    return False


def _error_response(ctx: RequestContext, request: Any, code: ErrorCode) -> EncodedResponse:
    """Kafka's FetchRequest.getErrorResponse: a top-level error; before v13 every
    requested partition carries it too (v13+ sends no partitions)."""
    v = ctx.version
    topics: list[FetchTopic] = []
    if v < 13:
        topics = [
            FetchTopic(
                t.topic,
                None,
                [FetchPartition(int(p.partition), error_code=code) for p in t.partitions],
            )
            for t in request.topics
        ]
    return encode_fetch_response(
        v, topics, error_code=code, session_id=int(getattr(request, "session_id", 0))
    )


def fetch_replica_id(request: Any, version: int) -> int:
    """Who is fetching: -1 a consumer, a broker id a follower (KIP-903 moved the field
    into ReplicaState from v15)."""
    if version >= 15:
        state = request.replica_state
        return int(state.replica_id) if state is not None else CONSUMER_REPLICA_ID
    return int(request.replica_id)


def _fetch_data(request: Any, v: int) -> list[tuple[Any, list[Any]]]:
    """The requested partitions as Kafka's FetchRequest.fetchData sees them: a LinkedHashMap
    keyed by topic (id) and partition, so a repeated partition is read once, in its first
    place, with its last entry; the response groups consecutive partitions of a topic."""
    latest: dict[tuple[Any, int], tuple[Any, Any]] = {}
    for t in request.topics:
        key = t.topic_id if v >= 13 else t.topic
        for p in t.partitions:
            latest[(key, int(p.partition))] = (t, p)
    groups: list[tuple[Any, list[Any]]] = []
    last_key: Any = object()
    for (key, _), (t, p) in latest.items():
        if key != last_key:
            groups.append((t, []))
            last_key = key
        groups[-1][1].append(p)
    return groups


@dataclass(frozen=True, slots=True)
class _TopicRef:
    """A topic of a session's partition list, shaped as a request's topic entry."""

    topic: str
    topic_id: Any


def _session_data(
    ctx: RequestContext, request: Any
) -> tuple[list[tuple[Key, str | None, PartitionRequest]], list[Key]]:
    """The request's partitions (as _fetch_data sees them) and forgotten partitions,
    keyed by topic id from v13 and by name before."""
    v = ctx.version
    image = ctx.broker.image
    data = []
    for t, partitions in _fetch_data(request, v):
        if v >= 13:
            info = image.topic_by_id(t.topic_id) if t.topic_id not in (None, ZERO_UUID) else None
            topic_key, name = t.topic_id, info.name if info is not None else None
        else:
            topic_key, name = t.topic, t.topic
        for p in partitions:
            req = PartitionRequest(
                int(p.partition),
                int(p.fetch_offset),
                int(p.partition_max_bytes),
                int(p.current_leader_epoch) if v >= 9 else -1,
                int(p.log_start_offset) if v >= 5 else -1,
                int(p.last_fetched_epoch) if v >= 12 else -1,
            )
            data.append(((topic_key, req.partition), name, req))
    forget: list[Key] = []
    for f in request.forgotten_topics_data or ():
        topic_key = f.topic_id if v >= 13 else f.topic
        forget.extend((topic_key, int(p)) for p in f.partitions)
    return data, forget


def _groups(
    partitions: list[tuple[Key, str | None, PartitionRequest]],
) -> list[tuple[Any, list[Any]]]:
    """A session's partitions as _read_all reads a request: consecutive ones by topic."""
    groups: list[tuple[Any, list[Any]]] = []
    last: Any = object()
    for (topic_key, _), name, req in partitions:
        if topic_key != last:
            groups.append((_TopicRef(name or "", topic_key), []))
            last = topic_key
        groups[-1][1].append(req)
    return groups


def _answers(topics: list[FetchTopic], v: int) -> list[tuple[Key, FetchPartition, FetchTopic]]:
    return [
        ((t.topic_id if v >= 13 else t.name, p.partition), p, t)
        for t in topics
        for p in t.partitions
    ]


def _regroup(answers: list[tuple[Key, Any]], topic_of: dict[Key, FetchTopic]) -> list[FetchTopic]:
    """Partition answers back into topics (consecutive partitions of a topic together)."""
    out: list[FetchTopic] = []
    for key, fp in answers:
        t = topic_of[key]
        if out and out[-1].topic_id == t.topic_id and out[-1].name == t.name:
            out[-1].partitions.append(fp)
        else:
            out.append(FetchTopic(t.name, t.topic_id, [fp]))
    return out


def _read_all(
    ctx: RequestContext, request: Any, groups: list[tuple[Any, list[Any]]] | None = None
) -> tuple[list[FetchTopic], int, list]:
    """One pass over the requested partitions (or a session's): (topics, bytes found,
    partition keys)."""
    broker = ctx.broker
    image = broker.image
    rm = broker.replica_manager
    v = ctx.version
    budget = int(request.max_bytes) if v >= 3 else 2**31 - 1
    replica_id = fetch_replica_id(request, v)
    follower = replica_id >= 0
    quotas = getattr(broker, "client_quotas", None)
    if quotas is not None and quotas.active and not follower:  # no more than a quota window
        budget = min(budget, quotas.max_fetch_bytes(ctx.principal, ctx.client_id))
    # Followers and Kafka's debugging replica id read to the log end, isolation ignored.
    to_log_end = replica_id != CONSUMER_REPLICA_ID
    committed = request.isolation_level == READ_COMMITTED and not to_log_end
    # Fetch v11+ consumers (they send client.rack) may read from followers (KIP-392).
    from_any_replica = replica_id == CONSUMER_REPLICA_ID and v >= 11
    selector = broker.config.replica_selector_class

    def rack_of(broker_id: int) -> str | None:
        info = image.brokers.get(broker_id)
        return info.rack if info is not None else None

    total = 0
    keys = []
    topics: list[FetchTopic] = []
    if groups is None:
        groups = _fetch_data(request, v)
    # KafkaApis: a follower needs CLUSTER_ACTION on the cluster, a consumer READ per topic.
    all_denied = False
    readable: set[str] = set()
    if follower:
        all_denied = not authorize(ctx, AclOperation.CLUSTER_ACTION, ResourceType.CLUSTER, CLUSTER)
    else:
        names = (t.topic for t, _ in groups if v < 13)
        if v >= 13:
            names = (i.name for t, _ in groups if (i := image.topic_by_id(t.topic_id)))
        readable = authorized(ctx, AclOperation.READ, ResourceType.TOPIC, names)
    for t, partitions in groups:
        if v >= 13:
            info = image.topic_by_id(t.topic_id) if t.topic_id not in (None, ZERO_UUID) else None
            name = info.name if info else ""
            unknown = ErrorCode.unknown_topic_id
        else:
            name = t.topic
            info = image.topics.get(name)
            unknown = ErrorCode.unknown_topic_or_partition
        out: list[FetchPartition] = []
        for p in partitions:
            index = int(p.partition)
            fp = FetchPartition(index)
            out.append(fp)
            denied = all_denied if follower else name not in readable
            if denied and (info is not None or v < 13):
                fp.error_code = ErrorCode.topic_authorization_failed
                fp.aborted_transactions = []
                continue
            if info is None:
                # FetchResponse.partitionResponse: aborted transactions [] (not null).
                fp.error_code = unknown
                fp.aborted_transactions = []
                continue
            try:
                epoch = int(p.current_leader_epoch) if v >= 9 else -1
                if from_any_replica:
                    part = rm.readable_partition(name, index, epoch)
                else:
                    part = rm.leader_partition(name, index, epoch)
                if follower and replica_id not in part.followers:
                    raise KafkaError(
                        f"Replica {replica_id} is not a follower of {name}-{index}",
                        ErrorCode.not_leader_or_follower,
                    )
                lg = part.log
                hw = lg.high_watermark
                lso = lg.last_stable_offset
                fp.high_watermark = hw
                fp.last_stable_offset = lso
                fp.log_start_offset = lg.log_start_offset
                keys.append((name, index))
                limit = min(int(p.partition_max_bytes), budget - total)
                if limit <= 0 and total > 0:
                    continue
                fetch_offset = int(p.fetch_offset)
                if from_any_replica and selector is not None:
                    # KIP-392: the leader may send this consumer to a follower in its rack;
                    # then it answers the offsets and no records.
                    preferred = rm.preferred_read_replica(
                        part, selector, request.rack_id, fetch_offset, rack_of
                    )
                    if preferred is not None:
                        fp.preferred_read_replica = preferred
                        continue
                if follower:
                    # The follower's fetch offset is its log end: it may move the HW.
                    rm.record_follower_fetch(
                        replica_id, name, index, fetch_offset, int(p.log_start_offset)
                    )
                    fp.high_watermark = lg.high_watermark
                res = lg.read(
                    fetch_offset,
                    max(limit, 0),
                    max_offset=None if to_log_end else lso if committed else hw,
                    min_one_batch=total == 0,
                    collect_aborted=committed and not to_log_end,
                )
                fp.records = list(res.slices)
                total += res.total_bytes
                if committed:
                    fp.aborted_transactions = [
                        (a.producer_id, a.first_offset) for a in res.aborted_transactions or ()
                    ]
            except KafkaError as exc:
                # ReplicaManager's LogReadResult for a failed read: no offsets (-1); a
                # partition missing from the metadata is answered as an unknown topic's.
                fp.error_code = exc.code
                fp.high_watermark = fp.last_stable_offset = fp.log_start_offset = -1
                if exc.code == ErrorCode.unknown_topic_or_partition:
                    fp.aborted_transactions = []
        requested_id = t.topic_id if v >= 13 else None
        topics.append(FetchTopic(name, requested_id, out))
    return topics, total, keys


def _down_convert(request: Any, topics: list[FetchTopic], version: int) -> None:
    """Fetch v0-3: replace each partition's v2 batches by magic 0/1 message sets."""
    to_magic = 0 if version < 2 else 1
    offsets = {
        (t.topic, int(p.partition)): int(p.fetch_offset)
        for t in request.topics
        for p in t.partitions
    }
    for topic in topics:
        for p in topic.partitions:
            if not p.records:
                continue
            data = b"".join(r if isinstance(r, bytes) else r.read() for r in p.records)
            try:
                converted = down_convert(data, to_magic, offsets[(topic.name, p.partition)])
            except KafkaError as exc:
                p.error_code = exc.code
                converted = b""
            p.records = [converted] if converted else []


@api(1, "Fetch", 4, 18)
async def handle_fetch(ctx: RequestContext, request: Any) -> EncodedResponse:
    v = ctx.version
    session: FetchContext | None = None
    groups = None
    # A sessionless fetch naming no session (librdkafka, followers) skips the session
    # cache: the fetch path reads the request as it is.
    if v >= 7 and (request.session_id != 0 or request.session_epoch != FINAL_EPOCH):
        data, forget = _session_data(ctx, request)
        image = ctx.broker.image
        session = ctx.broker.fetch_sessions.new_context(
            v,
            int(request.session_id),
            int(request.session_epoch),
            fetch_replica_id(request, v) >= 0,
            data,
            forget,
            lambda topic_id: i.name if (i := image.topic_by_id(topic_id)) else None,
        )
        if session.kind == "error":
            return encode_fetch_response(v, [], error_code=session.error, session_id=0)
        groups = _groups(session.partitions())
    if request.isolation_level not in (READ_UNCOMMITTED, READ_COMMITTED) and _has_known_partition(
        ctx, request
    ):
        # FetchIsolation.of -> IsolationLevel.forId throws IllegalArgumentException once a
        # partition is to be read: KafkaApis.handleError answers UNKNOWN_SERVER_ERROR.
        return _error_response(ctx, request, ErrorCode.unknown_server_error)
    max_wait = millis(request.max_wait) / 1000
    min_bytes = max(int(request.min_bytes), 1)
    deadline = time.monotonic() + max_wait
    purgatory = ctx.broker.purgatory

    def try_complete() -> Any:
        """Kafka's DelayedFetch.tryComplete, run by whoever woke this fetch: None while
        there is still not enough to answer, else the response (sent if it could be)."""
        topics, total, _ = _read_all(ctx, request, groups)
        if not _can_answer(ctx, topics, total, min_bytes, deadline):
            return None
        response = _answer(ctx, request, session, topics)
        return response if ctx.respond_now is None else ctx.respond_now(response)

    while True:
        topics, total, keys = _read_all(ctx, request, groups)
        if _can_answer(ctx, topics, total, min_bytes, deadline):
            break
        # v0-3 answers are down-converted: that stays on this fetch's own task.
        woken = await remote(
            purgatory.wait(keys, deadline - time.monotonic(), try_complete if v >= 4 else None)
        )
        if woken is not True and woken is not False:
            return woken  # try_complete answered (and maybe sent) it
    return _answer(ctx, request, session, topics)


def _can_answer(
    ctx: RequestContext, topics: list[FetchTopic], total: int, min_bytes: int, deadline: float
) -> bool:
    """Enough bytes, an error to report, the wait is over, or the broker is stopping."""
    return (
        total >= min_bytes
        or any(p.error_code for t in topics for p in t.partitions)
        or deadline - time.monotonic() <= 0
        or ctx.broker.stopping
    )


def _answer(
    ctx: RequestContext, request: Any, session: FetchContext | None, topics: list[FetchTopic]
) -> EncodedResponse:
    """The Fetch response for what was read: statistics, the session's view, encoding."""
    v = ctx.version
    if v < 4:
        _down_convert(request, topics, v)
    stats = ctx.broker.replica_manager.topic_stats
    record_fetch(stats, fetch_replica_id(request, v) >= 0, topics)
    session_id = 0
    if session is not None and session.kind != "sessionless":
        answers = _answers(topics, v)
        topic_of = {key: t for key, _, t in answers}
        session_id, sent = ctx.broker.fetch_sessions.respond(
            session, [(key, fp) for key, fp, _ in answers]
        )
        if session.kind == "incremental":
            topics = _regroup(sent, topic_of)
    return encode_fetch_response(v, topics, session_id=session_id)
