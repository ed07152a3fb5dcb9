"""The KIP-848 consumer group coordinator as a pure state machine: fake clock, memory log.

Scenarios follow Kafka 4.0's GroupMetadataManager (consumerGroupHeartbeat and friends):
epochs, reconciliation through UNREVOKED/UNRELEASED partitions, fencing, static members,
leaving, session and rebalance timeouts, persistence and reload, the offset APIs'
member-epoch checks and the classic APIs' view of consumer groups. A hypothesis model of
well-behaved clients checks that no partition is ever owned by two members at once.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybroker.broker.groups.consumer_coordinator import (
    ConsumerGroupConfig,
    ConsumerGroupManager,
    HeartbeatRequest,
    HeartbeatResult,
)
from pybroker.broker.groups.consumer_group import ConsumerGroup, ConsumerGroupState, MemberState
from pybroker.broker.groups.consumer_records import (
    CONSUMER_GROUP_METADATA,
    decode_consumer_key,
    decode_value,
)
from pybroker.broker.groups.coordinator import CommitEntry, GroupCoordinator
from pybroker.broker.groups.group import ClassicGroup, JoinResult
from pybroker.protocol.errors import ErrorCode
from tests.unit.test_groups_coordinator import CONFIG, FakeClock, MemoryStore

E = ErrorCode
PARTITIONS = 4
TA = uuid.UUID(int=0xA)
TB = uuid.UUID(int=0xB)
SESSION_MS = 45_000
REBALANCE_MS = 30_000


def build(clock: FakeClock, store: MemoryStore, **config: Any) -> GroupCoordinator:
    c = GroupCoordinator(CONFIG, store, clock, clock)
    c.consumer = ConsumerGroupManager(
        c, dataclasses.replace(ConsumerGroupConfig(session_timeout_ms=SESSION_MS), **config)
    )
    c.consumer.on_topics({"a": (TA, 4), "b": (TB, 2)})
    c.set_owned(set(range(PARTITIONS)), "topic-id", PARTITIONS)
    c.start()
    return c


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def coord(clock: FakeClock, store: MemoryStore) -> GroupCoordinator:
    return build(clock, store)


def hb(
    c: GroupCoordinator,
    member: str,
    epoch: int,
    *,
    group: str = "g",
    topics: list[str] | None = None,
    owned: list[tuple[uuid.UUID, list[int]]] | None = None,
    version: int = 1,
    **kw: Any,
) -> HeartbeatResult:
    if epoch == 0:
        kw.setdefault("rebalance_timeout_ms", REBALANCE_MS)
        if topics is None and "subscribed_topic_regex" not in kw:
            topics = ["a"]
        if owned is None:
            owned = []
    request = HeartbeatRequest(
        group, member, epoch, subscribed_topic_names=topics, owned=owned, **kw
    )
    return c.consumer.heartbeat(request, version, "client", "/127.0.0.1")


def parts(result: HeartbeatResult | dict[uuid.UUID, frozenset[int]] | None) -> set[tuple[str, int]]:
    assignment = result.assignment if isinstance(result, HeartbeatResult) else result
    names = {TA: "a", TB: "b"}
    return {(names[t], p) for t, ps in (assignment or {}).items() for p in ps}


def owned_of(*tps: tuple[str, int]) -> list[tuple[uuid.UUID, list[int]]]:
    ids = {"a": TA, "b": TB}
    out: dict[uuid.UUID, list[int]] = {}
    for t, p in tps:
        out.setdefault(ids[t], []).append(p)
    return list(out.items())


def group_of(c: GroupCoordinator, group_id: str = "g") -> ConsumerGroup:
    g = c.groups[group_id]
    assert isinstance(g, ConsumerGroup)
    return g


A4 = {("a", 0), ("a", 1), ("a", 2), ("a", 3)}


# ---------------------------------------------------------------------- joining


def test_first_member_gets_everything_at_epoch_one(coord: GroupCoordinator) -> None:
    r = hb(coord, "m1", 0)
    assert (r.error, r.member_id, r.member_epoch, r.heartbeat_interval_ms) == (
        E.none,
        "m1",
        1,
        5000,
    )
    assert parts(r) == A4
    g = group_of(coord)
    assert (g.group_epoch, g.assignment_epoch, g.state) == (1, 1, ConsumerGroupState.STABLE)
    # A steady heartbeat carries no assignment.
    r = hb(coord, "m1", 1, owned=owned_of(*A4))
    assert (r.error, r.member_epoch, r.assignment) == (E.none, 1, None)


def test_second_member_waits_for_the_first_to_revoke(coord: GroupCoordinator) -> None:
    hb(coord, "m1", 0)
    r2 = hb(coord, "m2", 0)
    # m2 is at epoch 2 with nothing yet: its partitions are still m1's.
    assert (r2.member_epoch, parts(r2)) == (2, set())
    g = group_of(coord)
    assert g.state == ConsumerGroupState.RECONCILING
    assert g.members["m2"].state == MemberState.UNRELEASED_PARTITIONS
    # m1 learns it must give up two partitions; it stays at epoch 1 until it does.
    r1 = hb(coord, "m1", 1, owned=owned_of(*A4))
    kept = parts(r1)
    assert r1.member_epoch == 1 and len(kept) == 2
    assert g.members["m1"].state == MemberState.UNREVOKED_PARTITIONS
    # Still owning them: nothing moves.
    assert hb(coord, "m1", 1, owned=owned_of(*A4)).member_epoch == 1
    assert parts(hb(coord, "m2", 2, owned=[])) == set()
    # Revoked: m1 moves to epoch 2, and m2 gets the freed partitions.
    r1 = hb(coord, "m1", 1, owned=owned_of(*kept))
    assert (r1.member_epoch, r1.assignment) == (2, None)
    r2 = hb(coord, "m2", 2, owned=[])
    assert parts(r2) == A4 - kept and r2.member_epoch == 2
    assert g.state == ConsumerGroupState.STABLE


def test_lost_response_previous_epoch_is_accepted_once(coord: GroupCoordinator) -> None:
    hb(coord, "m1", 0)
    hb(coord, "m2", 0)
    r1 = hb(coord, "m1", 1, owned=owned_of(*A4))
    kept = parts(r1)
    r1 = hb(coord, "m1", 1, owned=owned_of(*kept))
    assert r1.member_epoch == 2
    # The member never saw epoch 2: epoch 1 with a subset of its assignment is fine.
    assert hb(coord, "m1", 1, owned=owned_of(*kept)).error == E.none
    # Not with a partition it does not have.
    extra = next(iter(A4 - kept))
    assert hb(coord, "m1", 1, owned=owned_of(*kept, extra)).error == E.fenced_member_epoch


def test_fenced_epochs_and_unknown_members(coord: GroupCoordinator) -> None:
    hb(coord, "m1", 0)
    assert hb(coord, "m1", 5, owned=[]).error == E.fenced_member_epoch
    r = hb(coord, "nobody", 1, owned=[])
    assert (r.error, r.member_id, r.member_epoch) == (E.unknown_member_id, None, 0)
    assert hb(coord, "m1", 1, group="other", owned=[]).error == E.group_id_not_found
    # Rejoining with epoch 0 under the same id is accepted (fenced-member recovery).
    r = hb(coord, "m1", 0)
    assert (r.error, r.member_epoch, parts(r)) == (E.none, 1, A4)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (dict(member="", epoch=0), E.invalid_request, "MemberId can't be empty."),
        (dict(member="m", epoch=1, group=" "), E.invalid_request, "GroupId can't be empty."),
        (
            dict(member="m", epoch=0, instance_id=""),
            E.invalid_request,
            "InstanceId can't be empty.",
        ),
        (dict(member="m", epoch=0, rack_id=" "), E.invalid_request, "RackId can't be empty."),
        (
            dict(member="m", epoch=0, rebalance_timeout_ms=-1),
            E.invalid_request,
            "RebalanceTimeoutMs must be provided in first request.",
        ),
        (
            dict(member="m", epoch=0, owned=[(TA, [0])]),
            E.invalid_request,
            "TopicPartitions must be empty when (re-)joining.",
        ),
        (dict(member="m", epoch=-2), E.invalid_request, "InstanceId can't be null."),
        (dict(member="m", epoch=-3), E.invalid_request, "MemberEpoch is invalid."),
        (
            dict(member="m", epoch=0, server_assignor="sticky"),
            E.unsupported_assignor,
            "ServerAssignor sticky is not supported. Supported assignors: uniform, range.",
        ),
    ],
)
def test_invalid_requests(
    coord: GroupCoordinator, kwargs: dict[str, Any], error: ErrorCode, message: str
) -> None:
    member, epoch = kwargs.pop("member"), kwargs.pop("epoch")
    r = hb(coord, member, epoch, **kwargs)
    assert (r.error, r.message) == (error, message)
    assert "g" not in coord.groups


def test_missing_subscription_on_join(coord: GroupCoordinator) -> None:
    request = HeartbeatRequest("g", "m", 0, rebalance_timeout_ms=1000, owned=[])
    r = coord.consumer.heartbeat(request, 1, "c", "/h")
    assert r.error == E.invalid_request
    assert r.message == (
        "Either SubscribedTopicNames or SubscribedTopicRegex must be non-null when (re-)joining."
    )


def test_v0_generates_member_ids_and_v1_requires_them(coord: GroupCoordinator) -> None:
    r = hb(coord, "", 0, version=0)
    assert r.error == E.none and len(r.member_id or "") == 22
    assert hb(coord, "", 0, version=1).error == E.invalid_request


def test_group_max_size(clock: FakeClock, store: MemoryStore) -> None:
    c = build(clock, store, max_size=1)
    assert hb(c, "m1", 0).error == E.none
    r = hb(c, "m2", 0)
    assert (r.error, r.message) == (
        E.group_max_size_reached,
        "The consumer group has reached its maximum capacity of 1 members.",
    )
    assert hb(c, "m1", 1, owned=owned_of(*A4)).error == E.none


def test_range_assignor_on_request(coord: GroupCoordinator) -> None:
    hb(coord, "m1", 0, server_assignor="range", topics=["a", "b"])
    hb(coord, "m2", 0, server_assignor="range", topics=["a", "b"])
    g = group_of(coord)
    assert coord.consumer.describe(["g"])[0]["assignor_name"] == "range"
    assert g.target["m1"] == {TA: frozenset({0, 1}), TB: frozenset({0})}
    assert g.target["m2"] == {TA: frozenset({2, 3}), TB: frozenset({1})}


def test_not_coordinator_and_inactive(coord: GroupCoordinator) -> None:
    coord.unload(coord.partition_for("g"))
    assert hb(coord, "m", 0).error == E.not_coordinator
    coord.shutdown()
    assert hb(coord, "m", 0).error == E.coordinator_not_available


def test_store_failure_changes_nothing(coord: GroupCoordinator, store: MemoryStore) -> None:
    store.fail = E.not_leader_or_follower
    r = hb(coord, "m1", 0)
    assert (r.error, r.message) == (E.not_coordinator, None)
    assert "g" not in coord.groups
    store.fail = None
    assert hb(coord, "m1", 0).member_epoch == 1


# ---------------------------------------------------------------------- leaving, timeouts


def test_leave_bumps_the_epoch_and_frees_partitions(coord: GroupCoordinator) -> None:
    hb(coord, "m1", 0)
    hb(coord, "m2", 0)
    r = hb(coord, "m1", -1)
    assert (r.error, r.member_id, r.member_epoch) == (E.none, "m1", -1)
    g = group_of(coord)
    assert set(g.members) == {"m2"} and g.group_epoch == 3
    r2 = hb(coord, "m2", 2, owned=[])
    assert (r2.member_epoch, parts(r2)) == (3, A4)
    assert hb(coord, "m1", -1).error == E.unknown_member_id
    assert hb(coord, "m2", -1, group="nope").error == E.group_id_not_found


def test_session_timeout_expels_a_silent_member(coord: GroupCoordinator, clock: FakeClock) -> None:
    hb(coord, "m1", 0)
    hb(coord, "m2", 0)
    for _ in range(3):
        clock.advance(SESSION_MS // 2)
        hb(coord, "m2", group_of(coord).members["m2"].member_epoch, owned=[])
    assert set(group_of(coord).members) == {"m2"}
    hb(coord, "m2", group_of(coord).members["m2"].member_epoch, owned=[])
    assert parts(group_of(coord).members["m2"].assigned) == A4
    assert hb(coord, "m1", 1, owned=[]).error == E.unknown_member_id


def test_rebalance_timeout_fences_a_member_that_keeps_its_partitions(
    coord: GroupCoordinator, clock: FakeClock
) -> None:
    hb(coord, "m1", 0, rebalance_timeout_ms=1000)
    hb(coord, "m2", 0)
    hb(coord, "m1", 1, owned=owned_of(*A4))  # told to revoke two
    clock.advance(500)
    hb(coord, "m1", 1, owned=owned_of(*A4))
    clock.advance(600)
    assert "m1" not in group_of(coord).members
    assert parts(hb(coord, "m2", 2, owned=[])) == A4


def test_static_member_leaves_temporarily_and_comes_back(coord: GroupCoordinator) -> None:
    r = hb(coord, "s1", 0, instance_id="i1")
    hb(coord, "m2", 0)
    kept = parts(hb(coord, "s1", 1, owned=owned_of(*A4), instance_id="i1"))
    hb(coord, "s1", 1, owned=owned_of(*kept), instance_id="i1")
    g = group_of(coord)
    epoch = g.group_epoch
    r = hb(coord, "s1", -2, instance_id="i1")
    assert (r.error, r.member_id, r.member_epoch) == (E.none, "s1", -2)
    assert g.members["s1"].member_epoch == -2 and g.group_epoch == epoch
    # Another process takes the instance id while it is released: same partitions, no
    # new group epoch.
    r = hb(coord, "s2", 0, instance_id="i1")
    assert (r.error, parts(r)) == (E.none, kept)
    assert set(g.members) == {"s2", "m2"} and g.group_epoch == epoch
    # The instance id is held again: a third process is refused, the old id is fenced.
    r = hb(coord, "s3", 0, instance_id="i1")
    assert r.error == E.unreleased_instance_id
    assert hb(coord, "s1", 2, instance_id="i1", owned=[]).error == E.fenced_instance_id
    assert hb(coord, "x", 2, instance_id="nope", owned=[]).error == E.unknown_member_id


# ---------------------------------------------------------------------- metadata


def test_new_partitions_and_deleted_topics_start_a_new_epoch(coord: GroupCoordinator) -> None:
    hb(coord, "m1", 0, topics=["a", "b"])
    g = group_of(coord)
    assert g.group_epoch == 1
    coord.consumer.on_topics({"a": (TA, 6), "b": (TB, 2)})
    r = hb(coord, "m1", 1, owned=[])
    assert r.member_epoch == 2 and ("a", 5) in parts(r)
    coord.consumer.on_topics({"a": (TA, 6)})
    r = hb(coord, "m1", 2, owned=[])
    assert r.member_epoch == 3 and not any(t == "b" for t, _ in parts(r))
    # An unrelated topic does not disturb the group.
    coord.consumer.on_topics({"a": (TA, 6), "zzz": (uuid.uuid4(), 1)})
    assert hb(coord, "m1", 3, owned=[]).member_epoch == 3


def test_regex_subscription(coord: GroupCoordinator, clock: FakeClock) -> None:
    # As in Kafka 4.1 (its executor), a new regex is resolved after the heartbeat that
    # brings it: the member joins subscribed to nothing, the resolution bumps the epoch.
    r = hb(coord, "m1", 0, topics=None, subscribed_topic_regex="[a-c]")
    assert r.error == E.none and r.member_epoch == 1 and parts(r) == set()
    clock.advance(0)
    assert group_of(coord).resolved_regexes["[a-c]"].topics == {"a", "b"}
    assert group_of(coord).group_epoch == 2
    r = hb(coord, "m1", 1, owned=[])
    assert r.member_epoch == 2 and parts(r) == A4 | {("b", 0), ("b", 1)}
    r = hb(coord, "m2", 0, topics=None, subscribed_topic_regex="(")
    assert r.error == E.invalid_regular_expression
    assert r.message is not None and r.message.startswith("SubscribedTopicRegex `(` is not a")
    # A matching topic created later joins the subscription at the next refresh (not
    # before the refresh interval), a non-matching one does not.
    tc = uuid.uuid4()
    coord.consumer.on_topics({"a": (TA, 4), "b": (TB, 2), "c": (tc, 1), "cc": (uuid.uuid4(), 1)})
    assert hb(coord, "m1", 2, owned=[]).member_epoch == 2
    clock.advance(0)
    assert group_of(coord).group_epoch == 2
    coord.consumer.regex_refresh_min_interval_ms = 0
    assert hb(coord, "m1", 2, owned=[]).member_epoch == 2  # the refresh runs after it
    clock.advance(0)
    r = hb(coord, "m1", 2, owned=[])
    assert r.member_epoch == 3 and r.assignment is not None and tc in r.assignment
    g = group_of(coord)
    assert g.resolved_regexes["[a-c]"].topics == {"a", "b", "c"}
    assert set(g.subscription_metadata) == {"a", "b", "c"}
    # The last member leaving the regex deletes its resolution.
    hb(coord, "m1", -1)
    assert "[a-c]" in g.resolved_regexes  # kept until a member changes its subscription
    hb(coord, "m3", 0, topics=["a"], subscribed_topic_regex="")
    assert g.state != ConsumerGroupState.EMPTY


# ---------------------------------------------------------------------- persistence


def replay(store: MemoryStore, clock: FakeClock) -> GroupCoordinator:
    return build(clock, store)


def test_state_survives_a_reload(
    coord: GroupCoordinator, store: MemoryStore, clock: FakeClock
) -> None:
    hb(coord, "m1", 0, instance_id="i1")
    hb(coord, "m2", 0, server_assignor="range")
    hb(coord, "m1", 1, owned=owned_of(*A4), instance_id="i1")  # UNREVOKED
    before = group_of(coord)
    again = replay(store, clock)
    after = group_of(again)
    assert after.members == before.members
    assert after.target == before.target
    assert (after.group_epoch, after.assignment_epoch) == (
        before.group_epoch,
        before.assignment_epoch,
    )
    assert after.partition_epochs == before.partition_epochs
    assert after.static_members == {"i1": "m1"}
    assert ("session", "g", "m1") in again.consumer.timers
    assert ("rebalance", "g", "m1") in again.consumer.timers
    # The reloaded group carries on where it stopped.
    kept = after.members["m1"].assigned
    r = hb(again, "m1", 1, owned=list((t, list(ps)) for t, ps in kept.items()), instance_id="i1")
    assert r.member_epoch == 2
    # And members that never come back are expelled.
    clock.advance(SESSION_MS + 1)
    assert not group_of(again).members


def test_offsets_of_a_consumer_group(
    coord: GroupCoordinator, store: MemoryStore, clock: FakeClock
) -> None:
    hb(coord, "m1", 0)
    entries = [CommitEntry("a", 0, 42, -1, "meta")]
    assert coord.commit_offsets("g", "m1", None, 1, entries, 9) == [E.none]
    assert coord.commit_offsets("g", "m1", None, 0, entries, 9) == [E.stale_member_epoch]
    assert coord.commit_offsets("g", "m1", None, 2, entries, 9) == [E.stale_member_epoch]
    assert coord.commit_offsets("g", "zz", None, 1, entries, 9) == [E.unknown_member_id]
    assert coord.commit_offsets("g", "m1", None, 1, entries, 8) == [E.unsupported_version]
    assert coord.commit_offsets("g", "", None, -1, entries, 9) == [E.unknown_member_id]
    m = coord.consumer
    assert m.validate_offset_fetch("g", "m1", 1) is None
    assert m.validate_offset_fetch("g", None, -1) is None
    assert m.validate_offset_fetch("g", "m1", 0) == E.stale_member_epoch
    assert m.validate_offset_fetch("g", "zz", 1) == E.unknown_member_id
    again = replay(store, clock)
    err, data = again.fetch_offsets("g", [("a", [0])])
    assert err == E.none and data[0][1][0][1].offset == 42  # type: ignore[union-attr]
    # Empty: anyone may commit, and the group may be deleted with its offsets.
    hb(again, "m1", -1)
    assert again.commit_offsets("g", "", None, -1, entries, 9) == [E.none]
    assert again.delete_groups(["g"]) == {"g": E.none}
    assert "g" not in again.groups
    assert "g" not in replay(store, clock).groups


def test_classic_apis_see_a_consumer_group(coord: GroupCoordinator) -> None:
    hb(coord, "m1", 0)
    err, listed = coord.list_groups()
    assert err == E.none and [
        (g.group_id, g.group_type, g.state, g.protocol_type) for g in listed
    ] == [("g", "consumer", "Stable", "consumer")]
    assert coord.list_groups(types=["classic"])[1] == []
    assert len(coord.list_groups(types=["Consumer"], states=["stable"])[1]) == 1
    assert coord.describe_group("g") == (E.group_id_not_found, None)
    assert coord.delete_groups(["g"]) == {"g": E.non_empty_group}
    assert coord.heartbeat("g", "m1", None, 1) == E.unknown_member_id
    results: list[JoinResult] = []
    coord.join_group(
        "g",
        "",
        None,
        True,
        True,
        "c",
        "/h",
        30000,
        10000,
        "consumer",
        [("range", b"")],
        None,
        results.append,
    )
    # A classic member may join a consumer group (online migration): first its member id.
    assert (results[0].error, len(results[0].member_id)) == (E.member_id_required, 22)
    # Kafka 4.1: LeaveGroup removes any member of a consumer group by its member id.
    top, errors = coord.leave_group("g", [("", "nope", None), ("m1", None, None)])
    assert (top, errors) == (E.none, [E.unknown_member_id, E.none])
    assert not group_of(coord).members


def test_empty_groups_change_protocol_and_keep_offsets(
    coord: GroupCoordinator, store: MemoryStore, clock: FakeClock
) -> None:
    entries = [CommitEntry("a", 1, 7, -1, "")]
    assert coord.commit_offsets("g", "", None, -1, entries, 9) == [E.none]  # simple group
    assert isinstance(coord.groups["g"], ClassicGroup)
    assert hb(coord, "m1", 0).error == E.none
    assert isinstance(coord.groups["g"], ConsumerGroup)
    assert coord.fetch_offsets("g", [("a", [1])])[1][0][1][0][1].offset == 7  # type: ignore[union-attr]
    hb(coord, "m1", -1)
    results: list[JoinResult] = []
    coord.join_group(
        "g",
        "",
        None,
        False,
        True,
        "c",
        "/h",
        30000,
        10000,
        "consumer",
        [("range", b"")],
        None,
        results.append,
    )
    assert isinstance(coord.groups["g"], ClassicGroup)
    assert coord.fetch_offsets("g", [("a", [1])])[1][0][1][0][1].offset == 7  # type: ignore[union-attr]
    # A non-empty classic group is not a consumer group.
    r = hb(coord, "m9", 0)
    # Kafka 4.1 would upgrade it online if it could: its members' metadata is not the
    # consumer protocol's.
    assert (r.error, r.message) == (
        E.group_id_not_found,
        "Cannot upgrade classic group g to consumer group because the embedded consumer "
        "protocol is malformed.",
    )
    again = replay(store, clock)
    assert isinstance(again.groups["g"], ClassicGroup)


def test_deleted_group_records_are_tombstones(coord: GroupCoordinator, store: MemoryStore) -> None:
    hb(coord, "m1", 0)
    hb(coord, "m1", -1)
    assert coord.delete_groups(["g"]) == {"g": E.none}
    log = store.logs[coord.partition_for("g")]
    last_key, last_value = log[-1]
    key = decode_consumer_key(last_key)  # type: ignore[arg-type]
    assert key is not None and key.record_type == CONSUMER_GROUP_METADATA and last_value is None
    kinds = {decode_consumer_key(k).record_type for k, _ in log}  # type: ignore[arg-type, union-attr]
    assert kinds == {3, 4, 5, 6, 7, 8}
    epoch_values = [decode_value(3, v) for k, v in log if k == last_key and v is not None]
    assert [v.epoch for v in epoch_values] == [1, 2]  # type: ignore[union-attr]


# ---------------------------------------------------------------------- the model


@dataclasses.dataclass
class Client:
    member_id: str
    epoch: int = 0
    joined: bool = False
    owned: set[tuple[uuid.UUID, int]] = dataclasses.field(default_factory=set)
    target: set[tuple[uuid.UUID, int]] = dataclasses.field(default_factory=set)


OPS = st.lists(
    st.tuples(
        st.sampled_from(["hb", "hb", "hb", "revoke", "leave", "crash", "grow"]),
        st.integers(0, 4),
        st.booleans(),
    ),
    min_size=30,
    max_size=150,
)


@given(OPS, st.sampled_from(["uniform", "range"]))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_no_partition_is_ever_owned_by_two_members(
    ops: list[tuple[str, int, bool]], assignor: str
) -> None:
    """Clients that revoke when told (now or on a later heartbeat) never hold a partition
    another client holds: the coordinator hands a partition out only once its previous
    owner reported it gone. Checked after every step, with the coordinator's own
    per-partition epochs, across joins, leaves, crashes (the session expires) and new
    partitions."""
    clock, store = FakeClock(), MemoryStore()
    c = build(clock, store)
    counts = {"a": 4, "b": 2}
    clients = [Client(f"m{i}") for i in range(5)]

    def check() -> None:
        seen: dict[tuple[uuid.UUID, int], str] = {}
        for cl in clients:
            for tp in cl.owned:
                assert tp not in seen, f"{tp} owned by {seen[tp]} and {cl.member_id}"
                seen[tp] = cl.member_id
        g = c.groups.get("g")
        if isinstance(g, ConsumerGroup):
            held: dict[tuple[uuid.UUID, int], str] = {}
            for m in g.members.values():
                for assignment in (m.assigned, m.pending_revocation):
                    for t, ps in assignment.items():
                        for p in ps:
                            assert (t, p) not in held
                            held[(t, p)] = m.member_id
                            assert g.partition_epochs[t][p] == m.member_epoch
            # What a client holds, the coordinator knows it holds.
            for tp, who in seen.items():
                assert held.get(tp) == who, (tp, who, held.get(tp))

    for op, index, flag in ops:
        cl = clients[index]
        if op == "grow":
            counts["a"] = min(counts["a"] + 1, 8)
            c.consumer.on_topics({"a": (TA, counts["a"]), "b": (TB, counts["b"])})
        elif op == "crash" and cl.joined:
            cl.owned.clear()  # the process is gone; its session expires
            cl.joined = False
            c.consumer._fence_operation("g", cl.member_id, "test")
        elif op == "leave" and cl.joined:
            cl.owned.clear()
            cl.joined = False
            hb(c, cl.member_id, -1)
        elif op == "revoke":
            cl.owned &= cl.target
        elif op == "hb":
            if not cl.joined:
                topics = ["a", "b"] if flag else ["a"]
                r = hb(c, cl.member_id, 0, topics=topics, server_assignor=assignor)
            else:
                r = hb(c, cl.member_id, cl.epoch, owned=sorted_owned(cl.owned))
            if r.error != E.none:
                assert r.error in (E.fenced_member_epoch, E.unknown_member_id), r
                cl.owned.clear()
                cl.joined = False
            else:
                cl.joined, cl.epoch = True, r.member_epoch
                if r.assignment is not None:
                    cl.target = {(t, p) for t, ps in r.assignment.items() for p in ps}
                    cl.owned |= cl.target  # newly assigned partitions are used at once
                    if flag:
                        cl.owned &= cl.target  # revoke at once, or on a later "revoke"
        check()


def sorted_owned(owned: set[tuple[uuid.UUID, int]]) -> list[tuple[uuid.UUID, list[int]]]:
    out: dict[uuid.UUID, list[int]] = {}
    for t, p in sorted(owned, key=lambda tp: (str(tp[0]), tp[1])):
        out.setdefault(t, []).append(p)
    return list(out.items())


def test_offsets_expire_and_an_empty_group_goes_with_them(
    clock: FakeClock, store: MemoryStore
) -> None:
    c = build(clock, store)
    hb(c, "m1", 0, topics=["a"])
    r = [CommitEntry("a", 0, 1, -1, ""), CommitEntry("b", 0, 2, -1, "")]
    assert c.commit_offsets("g", "m1", None, 1, r, 9) == [E.none, E.none]
    for _ in range(7):  # past offsets.retention, with the periodic cleanup running
        clock.advance(CONFIG.offsets_retention_ms // 6)
        hb(c, "m1", 1, owned=[])
    # Offsets of a subscribed topic stay; the others expire from their commit time.
    assert set(group_of(c).offsets) == {("a", 0)}
    hb(c, "m1", -1)
    assert c.cleanup_expired_offsets() == 1
    assert "g" not in c.groups
    assert "g" not in build(clock, store).groups


def test_offset_delete_refuses_subscribed_topics(coord: GroupCoordinator) -> None:
    hb(coord, "m1", 0, topics=["a"])
    entries = [CommitEntry("a", 0, 1, -1, ""), CommitEntry("b", 0, 2, -1, "")]
    coord.commit_offsets("g", "m1", None, 1, entries, 9)
    err, out = coord.delete_offsets("g", [("a", [0]), ("b", [0])])
    assert err == E.none
    assert out == [("a", [(0, E.group_subscribed_to_topic)]), ("b", [(0, E.none)])]
    assert set(group_of(coord).offsets) == {("a", 0)}


def test_unexpected_failures_answer_unknown_server_error(
    coord: GroupCoordinator, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*_: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(coord.consumer, "_heartbeat", boom)
    r = hb(coord, "m1", 0)
    assert (r.error, r.message) == (E.unknown_server_error, None)
