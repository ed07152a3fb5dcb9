"""The server-side assignors of KIP-848 consumer groups: uniform and range.

Properties every assignment must have (Kafka 4.0's UniformAssignor / RangeAssignor):
each existing partition of a subscribed topic goes to exactly one member, and only to a
member subscribed to its topic; uniform balances (sizes differ by at most one among
members with the same subscription) and is sticky; range gives contiguous, balanced
ranges per topic and keeps what a member's quota allows.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybroker.broker.groups.assignors import (
    MemberSpec,
    PartitionAssignorError,
    RangeAssignor,
    UniformAssignor,
    resolve_assignors,
)

T = [uuid.UUID(int=i + 1) for i in range(4)]
Result = Mapping[str, Mapping[uuid.UUID, frozenset[int]]]


def owners(result: Result) -> dict[tuple[uuid.UUID, int], list[str]]:
    out: dict[tuple[uuid.UUID, int], list[str]] = {}
    for member, assignment in result.items():
        for topic, parts in assignment.items():
            for p in parts:
                out.setdefault((topic, p), []).append(member)
    return out


def size(result: Result, member: str) -> int:
    return sum(len(ps) for ps in result.get(member, {}).values())


def check_complete(
    members: Mapping[str, MemberSpec], topics: Mapping[uuid.UUID, int], result: Result
) -> None:
    own = owners(result)
    subscribed = {t for m in members.values() for t in m.subscribed_topic_ids if t in topics}
    expected = {(t, p) for t in subscribed for p in range(topics[t])}
    assert set(own) == expected
    for tp, who in own.items():
        assert len(who) == 1, f"{tp} assigned to {who}"
        assert tp[0] in members[who[0]].subscribed_topic_ids


def spec(*topics: uuid.UUID, current: dict[uuid.UUID, set[int]] | None = None) -> MemberSpec:
    return MemberSpec(frozenset(topics), {t: frozenset(ps) for t, ps in (current or {}).items()})


def test_uniform_homogeneous_balances_and_sticks() -> None:
    topics = {T[0]: 5, T[1]: 3}
    first = UniformAssignor().assign({"a": spec(T[0], T[1])}, topics)
    assert size(first, "a") == 8
    members = {"a": spec(T[0], T[1], current=first["a"]), "b": spec(T[0], T[1])}  # type: ignore[arg-type]
    second = UniformAssignor().assign(members, topics)
    check_complete(members, topics, second)
    assert {size(second, "a"), size(second, "b")} == {4}
    # a keeps a subset of what it had: stickiness.
    for t, ps in second["a"].items():
        assert ps <= first["a"][t]
    # A third member takes partitions only from the others, never reshuffles.
    members3 = {
        "a": spec(T[0], T[1], current=second["a"]),  # type: ignore[arg-type]
        "b": spec(T[0], T[1], current=second["b"]),  # type: ignore[arg-type]
        "c": spec(T[0], T[1]),
    }
    third = UniformAssignor().assign(members3, topics)
    check_complete(members3, topics, third)
    assert sorted(size(third, m) for m in "abc") == [2, 3, 3]
    for m in "ab":
        for t, ps in third[m].items():
            assert ps <= second[m][t]


def test_uniform_heterogeneous_respects_subscriptions() -> None:
    topics = {T[0]: 4, T[1]: 4}
    members = {"a": spec(T[0]), "b": spec(T[0], T[1])}
    result = UniformAssignor().assign(members, topics)
    check_complete(members, topics, result)
    assert size(result, "a") == 4 and size(result, "b") == 4
    assert set(result["a"]) == {T[0]}


def test_uniform_ignores_unknown_topics_and_empty_subscriptions() -> None:
    result = UniformAssignor().assign({"a": spec(), "b": spec()}, {})
    assert result == {"a": {}, "b": {}}
    with pytest.raises(PartitionAssignorError):
        UniformAssignor().assign({"a": spec(T[3])}, {})


def test_range_is_contiguous_and_co_partitioned() -> None:
    topics = {T[0]: 5, T[1]: 5}
    members = {"a": spec(T[0], T[1]), "b": spec(T[0], T[1])}
    result = RangeAssignor().assign(members, topics)
    check_complete(members, topics, result)
    assert result["a"] == {T[0]: frozenset({0, 1, 2}), T[1]: frozenset({0, 1, 2})}
    assert result["b"] == {T[0]: frozenset({3, 4}), T[1]: frozenset({3, 4})}
    # A member joining keeps the others' ranges within their quota.
    members3 = {**{m: spec(T[0], T[1], current=result[m]) for m in "ab"}, "c": spec(T[0], T[1])}  # type: ignore[arg-type]
    again = RangeAssignor().assign(members3, topics)
    check_complete(members3, topics, again)
    assert again["a"][T[0]] <= result["a"][T[0]] and again["b"][T[0]] <= result["b"][T[0]]


def test_resolve_assignors_accepts_names_and_kafka_class_names() -> None:
    chain = resolve_assignors(
        ["org.apache.kafka.coordinator.group.assignor.RangeAssignor", "uniform", "range"]
    )
    assert [a.name for a in chain] == ["range", "uniform"]
    with pytest.raises(ValueError):
        resolve_assignors(["sticky"])


@st.composite
def groups(draw: st.DrawFn) -> tuple[dict[str, MemberSpec], dict[uuid.UUID, int]]:
    topics = {t: draw(st.integers(0, 7)) for t in T[: draw(st.integers(1, 4))]}
    names = draw(st.lists(st.sampled_from("abcdefg"), min_size=1, max_size=7, unique=True))
    homogeneous = draw(st.booleans())
    common = frozenset(draw(st.sets(st.sampled_from(list(topics)))))
    taken: set[tuple[uuid.UUID, int]] = set()
    members = {}
    for name in names:
        subs = common if homogeneous else frozenset(draw(st.sets(st.sampled_from(list(topics)))))
        current: dict[uuid.UUID, set[int]] = {}
        for t in draw(st.sets(st.sampled_from(list(topics)))):
            for p in draw(st.sets(st.integers(0, 9), max_size=4)):
                if (t, p) not in taken:  # a previous target never overlaps
                    taken.add((t, p))
                    current.setdefault(t, set()).add(p)
        members[name] = MemberSpec(subs, {t: frozenset(ps) for t, ps in current.items()})
    return members, topics


@given(groups())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_uniform_properties(group: tuple[dict[str, MemberSpec], dict[uuid.UUID, int]]) -> None:
    members, topics = group
    result = UniformAssignor().assign(members, topics)
    check_complete(members, topics, result)
    by_subscription: dict[frozenset[uuid.UUID], list[int]] = {}
    for name, m in members.items():
        by_subscription.setdefault(m.subscribed_topic_ids, []).append(size(result, name))
    if len(by_subscription) == 1:
        sizes = next(iter(by_subscription.values()))
        assert max(sizes) - min(sizes) <= 1, sizes
    # Stickiness: a member that is at or under its fair share keeps all it had.
    if len(by_subscription) == 1:
        total = sum(size(result, n) for n in members)
        floor = total // len(members)
        for name, m in members.items():
            kept = {
                (t, p)
                for t, ps in m.current.items()
                if t in m.subscribed_topic_ids and t in topics
                for p in ps
                if p < topics[t]
            }
            if len(kept) <= floor:
                assert all(p in result[name].get(t, ()) for t, p in kept)


@given(groups())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_range_properties(group: tuple[dict[str, MemberSpec], dict[uuid.UUID, int]]) -> None:
    members, topics = group
    result = RangeAssignor().assign(members, topics)
    check_complete(members, topics, result)
    for t, count in topics.items():
        subscribers = [n for n, m in members.items() if t in m.subscribed_topic_ids]
        if subscribers:
            sizes = [len(result[n].get(t, ())) for n in subscribers]
            assert max(sizes) - min(sizes) <= 1 and sum(sizes) == count
