"""Server-side partition assignors of KIP-848 consumer groups: ``uniform`` and ``range``.

An assignor maps the group's members (their subscribed topic ids and their current target
assignment) and the subscribed topics' partition counts to a new target assignment. The
coordinator persists the result and reconciles each member towards it epoch by epoch, so
an assignor never has to worry about a partition being owned twice: it only has to say
who *should* own what. Both are Kafka 4.0's (``org.apache.kafka.coordinator.group.assignor``):

- ``uniform`` (the default, ``UniformAssignor``): balance first (member sizes differ by at
  most one partition among members subscribed to the same topics), stickiness second.
  Homogeneous subscriptions follow ``UniformHomogeneousAssignmentBuilder`` (each member
  keeps up to its quota of its current partitions, the rest go to members under quota).
  Heterogeneous ones keep what is still subscribed and hand out / move partitions to the
  least-loaded eligible member until no move can reduce the imbalance.
- ``range`` (``RangeAssignor``): per topic, members subscribed to it get contiguous ranges
  of ``partitions / members`` (+1 for the first ``partitions % members``), keeping as many
  of their current partitions of the topic as that quota allows (sticky range).

Member order is the sorted member id where Kafka iterates a hash map, so that an
assignment is deterministic.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

Assignment = Mapping[uuid.UUID, frozenset[int]]


class PartitionAssignorError(Exception):
    """Kafka's PartitionAssignorException: the coordinator answers UNKNOWN_SERVER_ERROR."""


@dataclass(frozen=True, slots=True)
class MemberSpec:
    subscribed_topic_ids: frozenset[uuid.UUID]
    current: Assignment = field(default_factory=dict)
    instance_id: str | None = None
    rack_id: str | None = None


class Assignor(Protocol):
    name: str

    def assign(
        self, members: Mapping[str, MemberSpec], topics: Mapping[uuid.UUID, int]
    ) -> dict[str, dict[uuid.UUID, frozenset[int]]]:
        """``topics``: partition count of every subscribed topic id that exists."""
        ...


def _freeze(assignment: dict[uuid.UUID, set[int]]) -> dict[uuid.UUID, frozenset[int]]:
    return {t: frozenset(ps) for t, ps in assignment.items() if ps}


def _is_homogeneous(members: Mapping[str, MemberSpec]) -> bool:
    subscriptions = {m.subscribed_topic_ids for m in members.values()}
    return len(subscriptions) <= 1


class UniformAssignor:
    name = "uniform"

    def assign(
        self, members: Mapping[str, MemberSpec], topics: Mapping[uuid.UUID, int]
    ) -> dict[str, dict[uuid.UUID, frozenset[int]]]:
        if not members:
            return {}
        if _is_homogeneous(members):
            return self._homogeneous(members, topics)
        return self._heterogeneous(members, topics)

    # ------------------------------------------------------------------ homogeneous
    @staticmethod
    def _homogeneous(
        members: Mapping[str, MemberSpec], topics: Mapping[uuid.UUID, int]
    ) -> dict[str, dict[uuid.UUID, frozenset[int]]]:
        subscribed = next(iter(members.values())).subscribed_topic_ids
        ids = sorted(members)
        if not subscribed:
            return {m: {} for m in ids}
        all_partitions: list[tuple[uuid.UUID, int]] = []
        for topic_id in sorted(subscribed, key=str):
            count = topics.get(topic_id, -1)
            if count < 0:
                raise PartitionAssignorError(
                    f"Members are subscribed to topic {topic_id} which doesn't exist in the "
                    "topic metadata."
                )
            all_partitions += [(topic_id, p) for p in range(count)]
        total = len(all_partitions)
        min_quota, extra = divmod(total, len(ids))
        # Members that already hold more than the minimum get the extra slots first: the
        # same balance as Kafka's, with fewer moves.
        retained_size = {
            m: sum(
                len(ps) for t, ps in members[m].current.items() if t in subscribed and t in topics
            )
            for m in ids
        }
        order = sorted(ids, key=lambda m: (-retained_size[m], m))
        quota = {}
        for m in order:
            quota[m] = min_quota + (1 if extra > 0 else 0)
            extra -= 1 if extra > 0 else 0
        taken: set[tuple[uuid.UUID, int]] = set()
        result: dict[str, dict[uuid.UUID, set[int]]] = {m: {} for m in ids}
        remaining = dict(quota)
        for m in ids:
            for topic_id in sorted(members[m].current, key=str):
                if topic_id not in subscribed:
                    continue
                for p in sorted(members[m].current[topic_id]):
                    tp = (topic_id, p)
                    if remaining[m] <= 0 or tp in taken or p >= topics.get(topic_id, 0):
                        continue
                    taken.add(tp)
                    result[m].setdefault(topic_id, set()).add(p)
                    remaining[m] -= 1
        unassigned = [tp for tp in all_partitions if tp not in taken]
        i = 0
        for m in ids:
            while remaining[m] > 0 and i < len(unassigned):
                topic_id, p = unassigned[i]
                i += 1
                result[m].setdefault(topic_id, set()).add(p)
                remaining[m] -= 1
        if i < len(unassigned):
            raise PartitionAssignorError("Partitions were left unassigned")
        return {m: _freeze(a) for m, a in result.items()}

    # ------------------------------------------------------------------ heterogeneous
    @staticmethod
    def _heterogeneous(
        members: Mapping[str, MemberSpec], topics: Mapping[uuid.UUID, int]
    ) -> dict[str, dict[uuid.UUID, frozenset[int]]]:
        ids = sorted(members)
        owner: dict[tuple[uuid.UUID, int], str] = {}
        held: dict[str, set[tuple[uuid.UUID, int]]] = {m: set() for m in ids}
        # Keep every current partition that is still subscribed and still exists.
        for m in ids:
            spec = members[m]
            for topic_id, parts in spec.current.items():
                if topic_id not in spec.subscribed_topic_ids:
                    continue
                for p in parts:
                    tp = (topic_id, p)
                    if p < topics.get(topic_id, 0) and tp not in owner:
                        owner[tp] = m
                        held[m].add(tp)
        subscribers: dict[uuid.UUID, list[str]] = {}
        for m in ids:
            for topic_id in members[m].subscribed_topic_ids:
                if topic_id in topics:
                    subscribers.setdefault(topic_id, []).append(m)
        # Hand out what nobody holds to the least-loaded subscriber.
        for topic_id in sorted(subscribers, key=str):
            for p in range(topics[topic_id]):
                tp = (topic_id, p)
                if tp in owner:
                    continue
                m = min(subscribers[topic_id], key=lambda x: (len(held[x]), x))
                owner[tp] = m
                held[m].add(tp)
        # Move partitions from the most to the least loaded eligible member while that
        # narrows the gap by more than one (each move strictly reduces the sum of squares,
        # so this ends).
        moved = True
        while moved:
            moved = False
            for tp in sorted(owner, key=lambda x: (str(x[0]), x[1])):
                src = owner[tp]
                candidates = subscribers.get(tp[0], [])
                dst = min(candidates, key=lambda x: (len(held[x]), x))
                if len(held[src]) - len(held[dst]) > 1:
                    held[src].discard(tp)
                    held[dst].add(tp)
                    owner[tp] = dst
                    moved = True
        result: dict[str, dict[uuid.UUID, set[int]]] = {m: {} for m in ids}
        for (topic_id, p), m in owner.items():
            result[m].setdefault(topic_id, set()).add(p)
        return {m: _freeze(a) for m, a in result.items()}


class RangeAssignor:
    name = "range"

    def assign(
        self, members: Mapping[str, MemberSpec], topics: Mapping[uuid.UUID, int]
    ) -> dict[str, dict[uuid.UUID, frozenset[int]]]:
        result: dict[str, dict[uuid.UUID, set[int]]] = {m: {} for m in members}
        per_topic: dict[uuid.UUID, list[str]] = {}
        for m in sorted(members):
            for topic_id in members[m].subscribed_topic_ids:
                if topic_id not in topics:
                    raise PartitionAssignorError("Member is subscribed to a non-existent topic")
                per_topic.setdefault(topic_id, []).append(m)
        for topic_id, subscribed in per_topic.items():
            count = topics[topic_id]
            min_quota, with_extra = divmod(count, len(subscribed))
            sticky: set[int] = set()
            unfilled: list[tuple[str, int]] = []
            for m in subscribed:
                current = sorted(p for p in members[m].current.get(topic_id, ()) if p < count)
                keep = current[: min(len(current), min_quota)]
                if keep:
                    sticky.update(keep)
                    result[m].setdefault(topic_id, set()).update(keep)
                remaining = min_quota - len(current)
                if remaining < 0 and with_extra > 0:
                    with_extra -= 1
                    sticky.add(current[min_quota])
                    result[m].setdefault(topic_id, set()).add(current[min_quota])
                else:
                    unfilled.append((m, remaining))
            free = [p for p in range(count) if p not in sticky]
            start = 0
            for m, remaining in unfilled:
                if with_extra > 0:
                    remaining += 1
                    with_extra -= 1
                if remaining > 0:
                    result[m].setdefault(topic_id, set()).update(free[start : start + remaining])
                    start += remaining
        return {m: _freeze(a) for m, a in result.items()}


BUILTIN_ASSIGNORS: dict[str, Assignor] = {"uniform": UniformAssignor(), "range": RangeAssignor()}
# Kafka's class names for them, as group.consumer.assignors may list them.
CLASS_NAMES = {
    "org.apache.kafka.coordinator.group.assignor.UniformAssignor": "uniform",
    "org.apache.kafka.coordinator.group.assignor.RangeAssignor": "range",
}


def resolve_assignors(names: list[str] | tuple[str, ...]) -> list[Assignor]:
    """group.consumer.assignors -> assignors in order; raises ValueError for unknown names."""
    out: list[Assignor] = []
    for raw in names:
        name = CLASS_NAMES.get(raw.strip(), raw.strip())
        if name not in BUILTIN_ASSIGNORS:
            raise ValueError(
                f"Unknown consumer group assignor {raw!r}; supported: "
                + ", ".join([*BUILTIN_ASSIGNORS, *CLASS_NAMES])
            )
        if all(a.name != name for a in out):
            out.append(BUILTIN_ASSIGNORS[name])
    if not out:
        raise ValueError("group.consumer.assignors must name at least one assignor")
    return out
