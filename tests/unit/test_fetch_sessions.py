"""The fetch session cache (KIP-227) as pure state: contexts chosen from the request
metadata, what an incremental answer keeps, and Kafka's eviction rules. The wire answers
are compared with Kafka 4.1 in tests/differential/test_diff_records.py."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from pybroker.broker.fetch_sessions import (
    EVICTION_MS,
    FINAL_EPOCH,
    FetchSessionCache,
    PartitionRequest,
    next_epoch,
)
from pybroker.protocol.errors import ErrorCode

E = ErrorCode


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


@dataclass
class Answer:
    """The fields of a partition answer the cache looks at."""

    high_watermark: int = 0
    log_start_offset: int = 0
    records: list[Any] = field(default_factory=list)
    error_code: int = 0
    preferred_read_replica: int = -1


def data(*parts: int, topic: str = "t", offset: int = 0) -> list[Any]:
    return [((topic, p), topic, PartitionRequest(p, offset, 1000)) for p in parts]


def no_names(_: Any) -> str | None:
    return None


def open_session(cache: FetchSessionCache, *parts: int, follower: bool = False) -> int:
    ctx = cache.new_context(12, 0, 0, follower, data(*parts), [], no_names)
    assert ctx.kind == "full"
    session_id, sent = cache.respond(ctx, [(k, Answer()) for k, _, _ in data(*parts)])
    assert len(sent) == len(parts)
    return session_id


def test_epochs_wrap_and_final_stays_final() -> None:
    assert next_epoch(0) == 1 and next_epoch(2**31 - 1) == 1
    assert next_epoch(FINAL_EPOCH) == FINAL_EPOCH


def test_full_incremental_and_closing() -> None:
    clock = Clock()
    cache = FetchSessionCache(10, clock, rng=random.Random(1))
    sid = open_session(cache, 0, 1, 2)
    assert sid > 0 and len(cache) == 1 and cache.total_partitions == 3
    # Incremental: the whole session is read; only changed partitions are answered.
    ctx = cache.new_context(12, sid, 1, False, data(1, offset=5), [("t", 2)], no_names)
    assert ctx.kind == "incremental"
    read = ctx.partitions()
    assert [(k, r.fetch_offset) for k, _, r in read] == [(("t", 0), 0), (("t", 1), 5)]
    answers = [(("t", 0), Answer()), (("t", 1), Answer(high_watermark=9, records=[b"x"]))]
    assert cache.respond(ctx, answers) == (sid, [answers[1]])
    # The partition that returned records went to the back of the session.
    assert list(cache.sessions[sid].partitions) == [("t", 0), ("t", 1)]
    # Errors are always answered, and the cached HW forgets itself so recovery is too.
    ctx = cache.new_context(12, sid, 2, False, [], [], no_names)
    _, sent = cache.respond(ctx, [(("t", 0), Answer(error_code=6)), (("t", 1), Answer(9))])
    assert [k for k, _ in sent] == [("t", 0)]
    ctx = cache.new_context(12, sid, 3, False, [], [], no_names)
    _, sent = cache.respond(ctx, [(("t", 0), Answer()), (("t", 1), Answer(9))])
    assert [k for k, _ in sent] == [("t", 0)]
    # Session errors.
    assert cache.new_context(12, sid, 3, False, [], [], no_names).error == (
        E.invalid_fetch_session_epoch
    )
    assert cache.new_context(13, sid, 4, False, [], [], no_names).error == (
        E.fetch_session_topic_id_error
    )
    assert cache.new_context(12, 12345, 1, False, [], [], no_names).error == (
        E.fetch_session_id_not_found
    )
    # Forgetting everything ends the session; a full fetch naming a session closes it.
    ctx = cache.new_context(12, sid, 4, False, [], [("t", 0), ("t", 1)], no_names)
    assert ctx.kind == "sessionless" and len(cache) == 0
    other = open_session(cache, 0)
    ctx = cache.new_context(12, other, FINAL_EPOCH, False, data(0), [], no_names)
    assert ctx.kind == "sessionless" and len(cache) == 0
    assert cache.respond(ctx, [(("t", 0), Answer())])[0] == 0


def test_v13_sessions_name_topics_once_they_exist() -> None:
    cache = FetchSessionCache(10, Clock())
    key = ("id-1", 0)
    ctx = cache.new_context(13, 0, 0, False, [(key, None, PartitionRequest(0, 0, 1))], [], no_names)
    sid, _ = cache.respond(ctx, [(key, Answer(error_code=100))])
    ctx = cache.new_context(13, sid, 1, False, [], [], lambda i: "t" if i == "id-1" else None)
    assert ctx.partitions()[0][1] == "t"


def test_a_full_cache_evicts_by_kafkas_rules() -> None:
    clock = Clock()
    cache = FetchSessionCache(2, clock)
    small = open_session(cache, 0)
    big = open_session(cache, 0, 1, 2)
    # Full, nothing stale or old enough: a consumer's new session is not created.
    assert open_session(cache, 0, 1, 2, 3) == 0
    # A follower's session may evict a consumer's at once (the smallest first).
    follower = open_session(cache, 0, follower=True)
    assert follower and small not in cache.sessions and big in cache.sessions
    # Once older than the eviction time (and in use), a bigger session evicts the least
    # valuable one: a consumer's before a follower's, then the smallest.
    clock.now += EVICTION_MS - 10
    assert cache.new_context(12, big, 1, False, [], [], no_names).kind == "incremental"
    assert cache.new_context(12, follower, 1, True, [], [], no_names).kind == "incremental"
    clock.now += 11
    assert open_session(cache, 0, 1) == 0  # 2 partitions are worth less than big's 3
    newest = open_session(cache, 0, 1, 2, 3, 4)
    assert newest and set(cache.sessions) == {follower, newest}
    assert cache.evictions == 2
    # A session unused for the eviction time goes first, whatever its worth.
    clock.now += EVICTION_MS + 1
    assert open_session(cache, 0) and cache.evictions == 3
