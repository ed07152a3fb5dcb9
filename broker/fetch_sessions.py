"""Incremental fetch sessions (KIP-227), after Kafka's FetchSession.scala.

A consumer (or follower) that fetches many partitions sends them all once, in a full fetch
at epoch 0; the broker caches them in a session and answers with its id. From then on
the client sends only what changed (new fetch offsets, added partitions, forgotten ones)
with the session id and the next epoch, and the broker answers only the partitions that
have something to say: records, a moved high watermark or log start offset, a preferred
read replica, an error. With hundreds of partitions and little traffic that shrinks both
requests and responses to almost nothing.

Request metadata, as Kafka reads it:

====================  =====  ===========================================================
session id            epoch  meaning
====================  =====  ===========================================================
0                     0      full fetch; create a session if the cache has room
any                   -1     full fetch, no session (closing the one named, if any)
id                    0      full fetch; close session ``id``, create a new one
id                    > 0    incremental fetch on session ``id`` (FETCH_SESSION_ID_NOT_FOUND,
                             INVALID_FETCH_SESSION_EPOCH, FETCH_SESSION_TOPIC_ID_ERROR)
====================  =====  ===========================================================

The cache holds ``max.incremental.fetch.session.cache.slots`` sessions. A new session may
evict one unused for 2 minutes, or a smaller (or a consumer's, for a follower) session
older than that; otherwise it is not created and the answer carries session id 0.
Pure state: the Fetch handler reads the partitions a context names and hands the answers
back to it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pybroker.protocol.errors import ErrorCode

INVALID_SESSION_ID = 0
INITIAL_EPOCH = 0
FINAL_EPOCH = -1
EVICTION_MS = 120_000  # Kafka's MIN_INCREMENTAL_FETCH_SESSION_EVICTION_MS
INT32_MAX = 2**31 - 1

# A partition of a session: (topic id, or the topic name before v13, partition).
Key = tuple[Any, int]


def next_epoch(epoch: int) -> int:
    """FetchMetadata.nextEpoch: the final epoch stays final; MAX wraps to 1."""
    if epoch < 0:
        return FINAL_EPOCH
    return 1 if epoch == INT32_MAX else epoch + 1


@dataclass(slots=True)
class PartitionRequest:
    """One partition as a fetch request names it (the fields the read path uses, under
    the names of Kafka's FetchRequest schema)."""

    partition: int
    fetch_offset: int
    partition_max_bytes: int
    current_leader_epoch: int = -1
    log_start_offset: int = -1
    last_fetched_epoch: int = -1


@dataclass(slots=True)
class CachedPartition:
    """A session's partition: what the fetcher asked last and what it was last told."""

    topic: str | None  # None: a topic id this broker does not know (yet)
    request: PartitionRequest
    high_watermark: int = -1
    log_start_offset: int = -1  # the broker's, as last answered

    def must_respond(self, answer: Any, update: bool) -> bool:
        """CachedPartition.maybeUpdateResponseData: whether the answer for this partition
        goes into an incremental response (and, ``update``, remember what it says)."""
        respond = bool(answer.records)
        if self.high_watermark != answer.high_watermark:
            respond = True
            if update:
                self.high_watermark = answer.high_watermark
        if self.log_start_offset != answer.log_start_offset:
            respond = True
            if update:
                self.log_start_offset = answer.log_start_offset
        if answer.preferred_read_replica != -1:
            respond = True
        if answer.error_code:
            respond = True
            if update:
                self.high_watermark = -1  # re-sent once the error is gone
        if getattr(answer, "diverging_epoch", None) is not None:
            respond = True
        return respond


@dataclass(slots=True)
class FetchSession:
    id: int
    privileged: bool  # a follower's
    uses_topic_ids: bool  # created by Fetch v13+
    creation_ms: int
    last_used_ms: int
    epoch: int
    partitions: dict[Key, CachedPartition] = field(default_factory=dict)  # in fetch order

    def update(
        self, fetch_data: Sequence[tuple[Key, str | None, PartitionRequest]], forget: Iterable[Key]
    ) -> None:
        """Add or update the partitions the request names; drop the forgotten ones."""
        for key, topic, req in fetch_data:
            cached = self.partitions.get(key)
            if cached is None:
                self.partitions[key] = CachedPartition(topic, req)
            else:
                cached.request = req
        for key in forget:
            self.partitions.pop(key, None)


@dataclass(slots=True)
class FetchContext:
    """What a fetch reads and how its answer is shaped.

    ``kind`` is "error" (answer ``error`` and nothing else), "sessionless", "full" (create a
    session from the answer) or "incremental" (read the whole session, answer what
    changed)."""

    kind: str
    error: ErrorCode = ErrorCode.none
    fetch_data: Sequence[tuple[Key, str | None, PartitionRequest]] = ()
    session: FetchSession | None = None
    privileged: bool = False
    uses_topic_ids: bool = False

    def partitions(self) -> list[tuple[Key, str | None, PartitionRequest]]:
        """The partitions to read, in the order their answers are built."""
        if self.kind == "incremental":
            assert self.session is not None
            return [(k, c.topic, c.request) for k, c in self.session.partitions.items()]
        return list(self.fetch_data)


class FetchSessionCache:
    """FetchSessionCacheShard: sessions by id, with Kafka's eviction rules."""

    def __init__(
        self,
        max_entries: int,
        clock: Callable[[], int],
        eviction_ms: int = EVICTION_MS,
        rng: random.Random | None = None,
    ) -> None:
        self.max_entries = max_entries
        self.eviction_ms = eviction_ms
        self._clock = clock
        self._rng = rng or random.Random()
        self.sessions: dict[int, FetchSession] = {}
        self.evictions = 0

    def __len__(self) -> int:
        return len(self.sessions)

    @property
    def total_partitions(self) -> int:
        return sum(len(s.partitions) for s in self.sessions.values())

    # ------------------------------------------------------------------ contexts
    def new_context(
        self,
        version: int,
        session_id: int,
        epoch: int,
        is_follower: bool,
        fetch_data: Sequence[tuple[Key, str | None, PartitionRequest]],
        forget: Iterable[Key],
        resolve: Callable[[Any], str | None],
    ) -> FetchContext:
        """FetchManager.newContext. ``resolve`` names a topic id (v13+), None if unknown."""
        if epoch in (INITIAL_EPOCH, FINAL_EPOCH):  # a full fetch
            if session_id != INVALID_SESSION_ID:
                self.sessions.pop(session_id, None)
            kind = "sessionless" if epoch == FINAL_EPOCH else "full"
            return FetchContext(
                kind,
                fetch_data=fetch_data,
                privileged=is_follower,
                uses_topic_ids=version >= 13,
            )
        session = self.sessions.get(session_id)
        if session is None:
            return FetchContext("error", ErrorCode.fetch_session_id_not_found)
        if session.epoch != epoch:
            return FetchContext("error", ErrorCode.invalid_fetch_session_epoch)
        if session.uses_topic_ids != (version >= 13):
            return FetchContext("error", ErrorCode.fetch_session_topic_id_error)
        session.update(fetch_data, forget)
        if not session.partitions:
            del self.sessions[session.id]
            return FetchContext("sessionless", fetch_data=fetch_data)
        if session.uses_topic_ids:
            for (topic_id, _), cached in session.partitions.items():
                if cached.topic is None:
                    cached.topic = resolve(topic_id)
        session.last_used_ms = self._clock()
        session.epoch = next_epoch(session.epoch)
        return FetchContext("incremental", session=session)

    def respond(self, context: FetchContext, answers: list[tuple[Key, Any]]) -> tuple[int, list]:
        """The session id to answer and the partition answers to send, in order: all of
        them for a full or sessionless fetch (a full fetch creates its session here), only
        those that changed for an incremental one (partitions that returned records move
        to the end of the session, so the next fetch serves the others first)."""
        if context.kind == "sessionless":
            return INVALID_SESSION_ID, answers
        if context.kind == "full":
            by_key = {key: (topic, req) for key, topic, req in context.fetch_data}
            session_id = self._maybe_create(context, by_key, answers)
            return session_id, answers
        session = context.session
        assert session is not None
        sent = []
        for key, answer in answers:
            cached = session.partitions.get(key)
            if cached is None or not cached.must_respond(answer, True):
                continue
            sent.append((key, answer))
            if answer.records:
                del session.partitions[key]
                session.partitions[key] = cached
        return session.id, sent

    # ------------------------------------------------------------------ the cache
    def _maybe_create(
        self,
        context: FetchContext,
        by_key: dict[Key, tuple[str | None, PartitionRequest]],
        answers: list[tuple[Key, Any]],
    ) -> int:
        now = self._clock()
        size = len(answers)
        if len(self.sessions) >= self.max_entries and not self._try_evict(
            context.privileged, size, now
        ):
            return INVALID_SESSION_ID
        session = FetchSession(
            self._new_id(),
            context.privileged,
            context.uses_topic_ids,
            now,
            now,
            next_epoch(INITIAL_EPOCH),
        )
        for key, answer in answers:
            topic, req = by_key[key]
            session.partitions[key] = CachedPartition(
                topic, req, answer.high_watermark, answer.log_start_offset
            )
        self.sessions[session.id] = session
        return session.id

    def _new_id(self) -> int:
        while True:
            candidate = self._rng.randint(1, INT32_MAX - 1)
            if candidate not in self.sessions:
                return candidate

    def _try_evict(self, privileged: bool, size: int, now: int) -> bool:
        """A stale session goes first; else the least valuable evictable one if the new
        session is worth more (a follower's beats a consumer's, then more partitions)."""
        if not self.sessions:
            return False
        stale = min(self.sessions.values(), key=lambda s: (s.last_used_ms, s.id))
        if now - stale.last_used_ms > self.eviction_ms:
            self._evict(stale)
            return True
        candidates = [
            s
            for s in self.sessions.values()
            if now - s.creation_ms > self.eviction_ms or (privileged and not s.privileged)
        ]
        if not candidates:
            return False
        weakest = min(candidates, key=lambda s: (s.privileged, len(s.partitions), s.id))
        if (privileged, size) <= (weakest.privileged, len(weakest.partitions)):
            return False
        self._evict(weakest)
        return True

    def _evict(self, session: FetchSession) -> None:
        del self.sessions[session.id]
        self.evictions += 1
