"""The group coordinators against Kafka 4.1's state machines, request by request.

Every case drives pybroker and the reference Kafka 4.1 in lockstep with the same
sequence of group requests (each broker with its own generated member ids, see
``group_support``) and compares the answers field by field, generation ids and member
epochs included. Classic groups go through every state (Empty, PreparingRebalance,
CompletingRebalance, Stable, Dead); members are unknown, fenced, static, stale, timed
out; KIP-848 consumer groups join, heartbeat, get fenced and leave. A difference fails
its test unless ACCEPTED lists the case with its reason; an accepted case that no longer
differs fails too.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.differential.group_support import Duo, Pending, assignment, subscription
from tests.support.broker import BrokerProcess
from tests.support.kafka_ref import KafkaReference
from tests.support.txn_wire import find_coordinator, init_producer
from tests.support.wire import KafkaWire

pytestmark = pytest.mark.timeout(240)

OFFSET_COMMIT, OFFSET_FETCH, FIND_COORDINATOR, JOIN, HEARTBEAT, LEAVE, SYNC = (
    8,
    9,
    10,
    11,
    12,
    13,
    14,
)
DESCRIBE, LIST, DELETE, TXN_COMMIT, OFFSET_DELETE, CGH, CGD = 15, 16, 42, 28, 47, 68, 69
MEMBERS_UNORDERED = ("groups", "members", "groups[].members")

# case -> why pybroker's answer knowingly differs from Kafka 4.1's (none today).
ACCEPTED: dict[str, str] = {}


def gid(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def duo(differential_brokers: tuple[BrokerProcess, KafkaReference]) -> Iterator[Duo]:
    ours, kafka = differential_brokers
    with Duo(ours.port, kafka.port) as d:
        yield d
        problems = d.verdict(ACCEPTED)
    assert not problems, "\n".join(problems)


def coordinator(duo: Duo, group: str) -> None:
    """Wait until both brokers serve the group: FindCoordinator (which creates
    __consumer_offsets) finds it and DescribeGroups no longer says the partition loads."""
    deadline = time.monotonic() + 30
    while True:
        ours, kafka = duo.call(
            "find", FIND_COORDINATOR, 4, dict(key_type=0, coordinator_keys=[group]), record=False
        )
        if all(int(r.coordinators[0].error_code) == 0 for r in (ours, kafka)):
            break
        assert time.monotonic() < deadline, (ours, kafka)
        time.sleep(0.2)
    while True:
        ours, kafka = duo.call("ready", DESCRIBE, 5, dict(groups=[group]), "admin", record=False)
        if all(int(r.groups[0].error_code) == 0 for r in (ours, kafka)):
            return
        assert time.monotonic() < deadline, (ours, kafka)
        time.sleep(0.2)


def join(
    duo: Duo,
    case: str,
    group: str,
    member: str = "",
    conn: str = "a",
    *,
    instance: str | None = None,
    protocols: list[tuple[str, bytes]] | None = None,
    protocol_type: str = "consumer",
    session: int = 10_000,
    rebalance: int = 5_000,
    version: int = 9,
) -> Pending:
    return duo.send(
        case,
        JOIN,
        version,
        dict(
            group_id=group,
            session_timeout=session,
            rebalance_timeout=rebalance,
            member_id=member,
            group_instance_id=instance,
            protocol_type=protocol_type,
            protocols=[
                dict(name=n, metadata=m)
                for n, m in (protocols if protocols is not None else [("range", b"")])
            ],
            reason=None,
        ),
        conn,
    )


def join_now(duo: Duo, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
    return duo.recv(join(duo, *args, **kwargs), unordered=["members"])[0]


def sync(
    duo: Duo,
    case: str,
    group: str,
    member: str,
    generation: int,
    conn: str = "a",
    *,
    assignments: dict[str, bytes] | None = None,
    instance: str | None = None,
    protocol_type: str | None = "consumer",
    protocol_name: str | None = "range",
    version: int = 5,
) -> Pending:
    return duo.send(
        case,
        SYNC,
        version,
        dict(
            group_id=group,
            generation_id=generation,
            member_id=member,
            group_instance_id=instance,
            protocol_type=protocol_type,
            protocol_name=protocol_name,
            assignments=[dict(member_id=m, assignment=a) for m, a in (assignments or {}).items()],
        ),
        conn,
    )


def sync_now(duo: Duo, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
    return duo.recv(sync(duo, *args, **kwargs))[0]


def heartbeat(
    duo: Duo,
    case: str,
    group: str,
    member: str,
    generation: int,
    *,
    instance: str | None = None,
    version: int = 4,
    conn: str = "a",
) -> tuple[Any, Any]:
    return duo.call(
        case,
        HEARTBEAT,
        version,
        dict(
            group_id=group,
            generation_id=generation,
            member_id=member,
            group_instance_id=instance,
        ),
        conn,
    )


def leave(
    duo: Duo, case: str, group: str, members: list[tuple[str, str | None]], conn: str = "a"
) -> tuple[Any, Any]:
    return duo.call(
        case,
        LEAVE,
        5,
        dict(
            group_id=group,
            members=[dict(member_id=m, group_instance_id=i, reason=None) for m, i in members],
        ),
        conn,
    )


def describe(duo: Duo, case: str, *groups: str, version: int = 5) -> tuple[Any, Any]:
    return duo.call(
        case,
        DESCRIBE,
        version,
        dict(groups=list(groups), include_authorized_operations=True),
        "admin",
        unordered=MEMBERS_UNORDERED,
    )


def commit(
    duo: Duo,
    case: str,
    group: str,
    member: str,
    generation: int,
    offsets: dict[str, list[int]],
    *,
    instance: str | None = None,
    version: int = 9,
    conn: str = "a",
) -> tuple[Any, Any]:
    return duo.call(
        case,
        OFFSET_COMMIT,
        version,
        dict(
            group_id=group,
            generation_id_or_member_epoch=generation,
            member_id=member,
            group_instance_id=instance,
            retention_time_ms=-1,
            topics=[
                dict(
                    name=t,
                    partitions=[
                        dict(
                            partition_index=p,
                            committed_offset=10 + p,
                            committed_leader_epoch=-1,
                            committed_metadata="m",
                        )
                        for p in parts
                    ],
                )
                for t, parts in offsets.items()
            ],
        ),
        conn,
    )


def fetch(
    duo: Duo,
    case: str,
    group: str,
    topics: dict[str, list[int]] | None,
    *,
    member: str | None = None,
    epoch: int = -1,
    require_stable: bool = False,
    version: int = 9,
) -> tuple[Any, Any]:
    spec = (
        None
        if topics is None
        else [dict(name=t, partition_indexes=parts) for t, parts in topics.items()]
    )
    if version >= 8:
        fields: dict[str, Any] = dict(
            groups=[dict(group_id=group, member_id=member, member_epoch=epoch, topics=spec)],
            require_stable=require_stable,
        )
    else:
        fields = dict(group_id=group, topics=spec, require_stable=require_stable)
    return duo.call(case, OFFSET_FETCH, version, fields, "admin")


def list_groups(duo: Duo, case: str, groups: set[str], **filters: Any) -> None:
    """ListGroups, compared on this test's groups only (other tests share the brokers)."""

    def ours_only(plain: dict[str, Any]) -> dict[str, Any]:
        return {**plain, "groups": [g for g in plain["groups"] if g["group_id"] in groups]}

    fields = {"states_filter": [], "types_filter": [], **filters}
    duo.call(case, LIST, 5, fields, "admin", unordered=["groups"], transform=ours_only)


def delete_groups(duo: Duo, case: str, *groups: str) -> tuple[Any, Any]:
    return duo.call(
        case, DELETE, 2, dict(groups_names=list(groups)), "admin", unordered=["results"]
    )


def offset_delete(duo: Duo, case: str, group: str, offsets: dict[str, list[int]]) -> None:
    duo.call(
        case,
        OFFSET_DELETE,
        0,
        dict(
            group_id=group,
            topics=[
                dict(name=t, partitions=[dict(partition_index=p) for p in parts])
                for t, parts in offsets.items()
            ],
        ),
        "admin",
    )


# ------------------------------------------------------------------ classic groups


def test_classic_group_through_every_state(duo: Duo) -> None:
    topic, group = gid("t"), gid("classic")
    duo.create_topic(topic, 2)
    coordinator(duo, group)
    sub = subscription(topic)
    protos = [("range", sub)]

    # Unknown group.
    describe(duo, "unknown/describe", group)
    fetch(duo, "unknown/offset-fetch", group, {topic: [0, 1]})
    fetch(duo, "unknown/offset-fetch-all", group, None)
    fetch(duo, "unknown/offset-fetch-v7", group, {topic: [0]}, version=7)
    heartbeat(duo, "unknown/heartbeat", group, "x-member", 0)
    sync_now(duo, "unknown/sync", group, "x-member", 0)
    leave(duo, "unknown/leave", group, [("x-member", None)])
    commit(duo, "unknown/commit-generation", group, "x-member", 1, {topic: [0]})
    join_now(duo, "unknown/join-unknown-member", group, "x-member", protocols=protos)
    join_now(duo, "unknown/join-bad-session", group, session=100, protocols=protos)
    describe(duo, "unknown/describe-after-bad-session", group)
    join_now(duo, "unknown/join-no-protocols", group, protocols=[])
    # Kafka answers before the new group's record commits, and describes committed groups.
    time.sleep(0.2)
    describe(duo, "unknown/describe-after-no-protocols", group)
    join_now(duo, "unknown/join-empty-protocol-type", group, protocol_type="", protocols=protos)
    describe(duo, "unknown/describe-after-bad-joins", group)

    # MEMBER_ID_REQUIRED, then the first member: CompletingRebalance at generation 1.
    join_now(duo, "join/member-id-required", group, protocols=protos)
    join_now(duo, "join/first-member", group, "<M1>", protocols=protos)
    describe(duo, "completing/describe", group)
    heartbeat(duo, "completing/heartbeat", group, "<M1>", 1)
    commit(duo, "completing/commit", group, "<M1>", 1, {topic: [0]})
    commit(duo, "completing/commit-stale-generation", group, "<M1>", 0, {topic: [0]})
    commit(duo, "completing/commit-unknown-member", group, "x-member", 1, {topic: [0]})
    commit(duo, "completing/commit-simple", group, "", -1, {topic: [0]})
    sync_now(duo, "completing/sync-unknown-member", group, "x-member", 1)
    sync_now(duo, "completing/sync-stale-generation", group, "<M1>", 0)
    sync_now(duo, "completing/sync-protocol-type", group, "<M1>", 1, protocol_type="connect")
    sync_now(duo, "completing/sync-protocol-name", group, "<M1>", 1, protocol_name="roundrobin")
    sync_now(
        duo,
        "completing/sync-leader",
        group,
        "<M1>",
        1,
        assignments={"<M1>": assignment({topic: [0, 1]})},
    )

    # Stable.
    describe(duo, "stable/describe", group)
    describe(duo, "stable/describe-v0", group, version=0)
    heartbeat(duo, "stable/heartbeat", group, "<M1>", 1)
    heartbeat(duo, "stable/heartbeat-v0", group, "<M1>", 1, version=0)
    heartbeat(duo, "stable/heartbeat-stale-generation", group, "<M1>", 0)
    heartbeat(duo, "stable/heartbeat-future-generation", group, "<M1>", 2)
    heartbeat(duo, "stable/heartbeat-unknown-member", group, "x-member", 1)
    heartbeat(duo, "stable/heartbeat-unknown-instance", group, "<M1>", 1, instance="nobody")
    commit(duo, "stable/commit", group, "<M1>", 1, {topic: [0, 1]})
    commit(duo, "stable/commit-v2", group, "<M1>", 1, {topic: [1]}, version=2)
    commit(duo, "stable/commit-stale-generation", group, "<M1>", 0, {topic: [0]})
    commit(duo, "stable/commit-unknown-member", group, "x-member", 1, {topic: [0]})
    commit(duo, "stable/commit-simple", group, "", -1, {topic: [0]})
    commit(duo, "stable/commit-unknown-partition", group, "<M1>", 1, {topic: [7], "nope": [0]})
    fetch(duo, "stable/offset-fetch", group, {topic: [0, 1, 9], "nope": [0]})
    fetch(duo, "stable/offset-fetch-all", group, None)
    fetch(duo, "stable/offset-fetch-require-stable", group, {topic: [0]}, require_stable=True)
    fetch(duo, "stable/offset-fetch-v5", group, {topic: [0, 1]}, version=5)
    sync_now(duo, "stable/sync-again", group, "<M1>", 1)
    sync_now(duo, "stable/sync-stale-generation", group, "<M1>", 0)
    offset_delete(duo, "stable/offset-delete-subscribed", group, {topic: [0], "nope": [0]})
    delete_groups(duo, "stable/delete-non-empty", group)
    list_groups(duo, "stable/list", {group})
    list_groups(duo, "stable/list-filter-stable", {group}, states_filter=["Stable"])
    list_groups(duo, "stable/list-filter-empty", {group}, states_filter=["Empty"])
    list_groups(duo, "stable/list-filter-type", {group}, types_filter=["classic"])
    join_now(duo, "stable/join-protocol-type-mismatch", group, "", "c", protocol_type="connect")
    join_now(duo, "stable/join-protocol-name-mismatch", group, "", "c", protocols=[("x", b"")])

    # A second member: PreparingRebalance until the first rejoins.
    join_now(duo, "preparing/second-member-id-required", group, "", "b", protocols=protos)
    second = join(duo, "preparing/second-join", group, "<M2>", "b", protocols=protos)
    time.sleep(0.3)
    describe(duo, "preparing/describe", group)
    heartbeat(duo, "preparing/heartbeat", group, "<M1>", 1)
    heartbeat(duo, "preparing/heartbeat-pending-member", group, "<M2>", 0)
    commit(duo, "preparing/commit", group, "<M1>", 1, {topic: [0]})
    commit(duo, "preparing/commit-simple", group, "", -1, {topic: [0]})
    sync_now(duo, "preparing/sync", group, "<M1>", 1)
    first = join(duo, "preparing/first-rejoins", group, "<M1>", protocols=protos)
    duo.recv(first, second, unordered=["members"])

    # Generation 2: the follower's sync waits for the leader's.
    follower = sync(duo, "completing2/sync-follower", group, "<M2>", 2, "b")
    time.sleep(0.2)
    leader = sync(
        duo,
        "completing2/sync-leader",
        group,
        "<M1>",
        2,
        assignments={"<M1>": assignment({topic: [0]}), "<M2>": assignment({topic: [1]})},
    )
    duo.recv(leader, follower)
    describe(duo, "stable2/describe", group)

    # Leaving: a batch with unknown members and instances, then the last member.
    leave(
        duo,
        "leave/batch",
        group,
        [("<M2>", None), ("x-member", None), ("", "nobody"), ("<M1>", "nobody")],
    )
    describe(duo, "leave/describe-after-batch", group)
    rejoin = join(duo, "leave/first-rejoins", group, "<M1>", protocols=protos)
    duo.recv(rejoin, unordered=["members"])
    leave(duo, "leave/last-member", group, [("<M1>", None)])
    leave(duo, "leave/again", group, [("<M1>", None)])

    # Empty.
    describe(duo, "empty/describe", group)
    heartbeat(duo, "empty/heartbeat", group, "<M1>", 3)
    commit(duo, "empty/commit-simple", group, "", -1, {topic: [0, 1]})
    commit(duo, "empty/commit-old-member", group, "<M1>", 3, {topic: [0]})
    commit(duo, "empty/commit-generation-no-member", group, "", 3, {topic: [0]})
    fetch(duo, "empty/offset-fetch", group, {topic: [0, 1]})
    list_groups(duo, "empty/list-filter-empty", {group}, states_filter=["Empty"])
    offset_delete(duo, "empty/offset-delete", group, {topic: [1], "nope": [0]})
    fetch(duo, "empty/offset-fetch-after-delete", group, None)
    offset_delete(duo, "unknown/offset-delete", gid("none"), {topic: [0]})

    # Dead.
    delete_groups(duo, "dead/delete", group, gid("none"))
    describe(duo, "dead/describe", group)
    describe(duo, "dead/describe-v6", group, version=6)
    fetch(duo, "dead/offset-fetch", group, {topic: [0, 1]})
    delete_groups(duo, "dead/delete-again", group)
    heartbeat(duo, "dead/heartbeat", group, "<M1>", 3)


def test_classic_static_members(duo: Duo) -> None:
    topic, group = gid("t"), gid("static")
    duo.create_topic(topic, 1)
    coordinator(duo, group)
    protos = [("range", subscription(topic))]

    join_now(duo, "static/join", group, instance="i1", protocols=protos)
    sync_now(duo, "static/sync", group, "<M1>", 1, instance="i1", assignments={"<M1>": b"\x00\x01"})
    join_now(duo, "static/rejoin-unknown-replaces", group, "", "b", instance="i1", protocols=protos)
    describe(duo, "static/describe-replaced", group)
    heartbeat(duo, "static/heartbeat-old-id", group, "<M1>", 1, instance="i1")
    heartbeat(duo, "static/heartbeat-old-id-dynamic", group, "<M1>", 1)
    heartbeat(duo, "static/heartbeat-new-id", group, "<M2>", 1, instance="i1", conn="b")
    commit(duo, "static/commit-old-id", group, "<M1>", 1, {topic: [0]}, instance="i1")
    commit(duo, "static/commit-new-id", group, "<M2>", 1, {topic: [0]}, instance="i1", conn="b")
    sync_now(duo, "static/sync-old-id", group, "<M1>", 1, instance="i1")
    join_now(duo, "static/join-old-id", group, "<M1>", instance="i1", protocols=protos)
    join_now(
        duo,
        "static/join-v4-dynamic-joins-static-group",
        group,
        "",
        "c",
        protocols=protos,
        version=4,
    )
    leave(duo, "static/leave-old-id", group, [("<M1>", "i1")])
    leave(duo, "static/leave-instance-only", group, [("", "i1"), ("", "i9")])
    # No member left: the join phase ends on a 0 ms timer (a member is still pending).
    time.sleep(0.3)
    describe(duo, "static/describe-after-leave", group)


def test_classic_rebalance_and_session_timeouts(duo: Duo) -> None:
    group_r, group_s = gid("rebalance"), gid("session")
    coordinator(duo, group_r)
    coordinator(duo, group_s)

    # Session timeout: a lone stable member that stops heartbeating is removed.
    join_now(duo, "session/member-id-required", group_s, session=6000)
    join_now(duo, "session/join", group_s, "<M1>", session=6000)
    sync_now(duo, "session/sync", group_s, "<M1>", 1, assignments={"<M1>": b""})
    started = time.monotonic()

    # Rebalance timeout: a member that does not rejoin in time is removed.
    join_now(duo, "rebalance/member-id-required", group_r, "", "b", rebalance=1500)
    join_now(duo, "rebalance/join", group_r, "<M2>", "b", rebalance=1500)
    sync_now(duo, "rebalance/sync", group_r, "<M2>", 1, "b", assignments={"<M2>": b""})
    join_now(duo, "rebalance/newcomer-id-required", group_r, "", "c", rebalance=1500)
    newcomer = join(duo, "rebalance/newcomer-join", group_r, "<M3>", "c", rebalance=1500)
    duo.recv(newcomer, unordered=["members"])
    describe(duo, "rebalance/describe-after-timeout", group_r)
    heartbeat(duo, "rebalance/heartbeat-removed", group_r, "<M2>", 1, conn="b")

    time.sleep(max(0.0, started + 8.0 - time.monotonic()))
    describe(duo, "session/describe-expired", group_s)
    heartbeat(duo, "session/heartbeat-expired", group_s, "<M1>", 1)
    commit(duo, "session/commit-expired", group_s, "<M1>", 1, {"nope": [0]})


# ------------------------------------------------------------------ KIP-848 consumer groups


def cgh(
    duo: Duo,
    case: str,
    group: str,
    member: str,
    epoch: int | str,
    conn: str = "a",
    *,
    record: bool = True,
    topics: list[str] | None = None,
    regex: str | None = None,
    instance: str | None = None,
    rebalance: int = -1,
    owned: list[tuple[str, list[int]]] | None = None,
    version: int = 1,
) -> tuple[Any, Any]:
    return duo.call(
        case,
        CGH,
        version,
        dict(
            group_id=group,
            member_id=member,
            member_epoch=epoch,
            instance_id=instance,
            rack_id=None,
            rebalance_timeout=rebalance,
            subscribed_topic_names=topics,
            subscribed_topic_regex=regex,
            server_assignor=None,
            # A (re-)join owns nothing: [] there, unchanged (null) otherwise by default.
            topic_partitions=([] if epoch == 0 else None)
            if owned is None
            else [dict(topic_id=f"<topic-id:{t}>", partitions=p) for t, p in owned],
        ),
        conn,
        record=record,
        unordered=["topic_partitions"],
    )


def cgd(duo: Duo, case: str, *groups: str) -> None:
    duo.call(
        case,
        CGD,
        1,
        dict(group_ids=list(groups), include_authorized_operations=True),
        "admin",
        unordered=["groups", "members", "topic_partitions"],
    )


def test_consumer_groups(duo: Duo) -> None:
    topic, group, classic = gid("t"), gid("consumer"), gid("classic")
    duo.create_topic(topic, 2)
    coordinator(duo, group)
    coordinator(duo, classic)
    m1, m2, m3 = (f"member-{i}-{uuid.uuid4().hex[:6]}" for i in range(3))

    cgd(duo, "cg/describe-unknown", group)
    cgh(duo, "cg/heartbeat-unknown-group", group, m1, 1)
    cgh(duo, "cg/join-empty-member-id", group, "", 0, topics=[topic], rebalance=5000)
    cgh(duo, "cg/join-no-subscription", group, m1, 0, rebalance=5000)
    cgh(duo, "cg/join-no-rebalance-timeout", group, m1, 0, topics=[topic])
    cgh(duo, "cg/join-invalid-regex", group, m1, 0, regex="[", rebalance=5000)
    cgh(duo, "cg/join-names-and-regex", group, m1, 0, topics=[topic], regex=topic, rebalance=5000)
    cgh(duo, "cg/join-bad-epoch", group, m1, 3, topics=[topic], rebalance=5000)
    cgh(duo, "cg/join", group, m1, 0, topics=[topic], rebalance=5000, owned=[])
    cgh(duo, "cg/heartbeat", group, m1, 1, owned=[(topic, [0, 1])])
    cgh(duo, "cg/heartbeat-fenced-epoch", group, m1, 7)
    cgh(duo, "cg/heartbeat-unknown-member", group, m2, 1)
    cgh(
        duo,
        "cg/heartbeat-v0-server-id",
        gid("v0"),
        "",
        0,
        "b",
        topics=[topic],
        rebalance=5000,
        version=0,
    )
    cgh(duo, "cg/join-second", group, m2, 0, "c", topics=[topic], rebalance=5000, owned=[])
    cgh(duo, "cg/first-heartbeat-revoking", group, m1, 1, owned=[(topic, [0, 1])])
    cgh(duo, "cg/static-join", group, m3, 0, "d", topics=[topic], instance="s1", rebalance=5000)
    cgh(
        duo,
        "cg/static-duplicate",
        group,
        "other-id",
        0,
        "e",
        topics=[topic],
        instance="s1",
        rebalance=5000,
    )
    cgd(duo, "cg/describe", group, gid("none"), classic)
    describe(duo, "cg/describe-groups", group)
    describe(duo, "cg/describe-groups-v6", group, version=6)
    list_groups(duo, "cg/list", {group}, types_filter=["consumer"])
    commit(duo, "cg/commit", group, m1, 1, {topic: [0]})
    commit(duo, "cg/commit-stale-epoch", group, m1, 0, {topic: [0]})
    commit(duo, "cg/commit-unknown-member", group, "x", 1, {topic: [0]})
    commit(duo, "cg/commit-simple", group, "", -1, {topic: [0]})
    commit(duo, "cg/commit-v8-generation", group, m1, 1, {topic: [0]}, version=8)
    fetch(duo, "cg/offset-fetch-member", group, {topic: [0]}, member=m1, epoch=1)
    fetch(duo, "cg/offset-fetch-stale-epoch", group, {topic: [0]}, member=m1, epoch=0)
    fetch(duo, "cg/offset-fetch-unknown-member", group, {topic: [0]}, member="x", epoch=1)
    heartbeat(duo, "cg/classic-heartbeat", group, m1, 1)
    sync_now(duo, "cg/classic-sync", group, m1, 1)
    join_now(duo, "cg/classic-join-other-type", group, "", "f", protocol_type="connect")
    delete_groups(duo, "cg/delete-non-empty", group)
    cgh(duo, "cg/static-leave", group, m3, -2, "d", instance="s1")
    cgh(
        duo,
        "cg/static-rejoin",
        group,
        "m3-new",
        0,
        "d",
        topics=[topic],
        instance="s1",
        rebalance=5000,
    )
    cgh(duo, "cg/leave", group, m1, -1)
    cgh(duo, "cg/leave-again", group, m1, -1)
    cgh(duo, "cg/heartbeat-after-leave", group, m1, 1)
    cgd(duo, "cg/describe-after-leaves", group)
    leave(duo, "cg/classic-leave", group, [(m2, None), ("x", None), ("", "s9")])
    cgd(duo, "cg/describe-after-classic-leave", group)
    offset_delete(duo, "cg/offset-delete-subscribed", group, {topic: [0], "nope": [0]})
    multi = [
        dict(group_id=g, member_id=None, member_epoch=-1, topics=None)
        for g in (group, classic, gid("none"))
    ]
    duo.call("cg/offset-fetch-groups", OFFSET_FETCH, 9, dict(groups=multi), "admin")
    list_groups(duo, "cg/list-reconciling", {group}, states_filter=["Reconciling", "Stable"])
    cgh(duo, "cg/static-leave-for-good", group, "m3-new", -1, "d", instance="s1")
    delete_groups(duo, "cg/delete-after-leaves", group)
    cgd(duo, "cg/describe-after-delete", group)

    # A classic group with a member: a KIP-848 member cannot join it while it is not empty.
    required = join_now(duo, "mix/classic-member-id-required", classic, protocols=[("x", b"")])
    join_now(duo, "mix/classic-join", classic, duo.placeholder_of(required), protocols=[("x", b"")])
    cgh(duo, "mix/consumer-into-classic", classic, m1, 0, "b", topics=[topic], rebalance=5000)
    cgd(duo, "mix/describe-classic", classic)


def test_classic_old_versions(duo: Duo) -> None:
    """Versions before MEMBER_ID_REQUIRED (v0-3) and the single-member LeaveGroup (v0-2)."""
    group = gid("old")
    coordinator(duo, group)
    protos = [("range", b"")]
    leave_v0 = dict(group_id=group, member_id="x-member")
    duo.call("old/leave-v0-unknown-group", LEAVE, 0, leave_v0)
    duo.call("old/leave-v2-unknown-group", LEAVE, 2, leave_v0)
    join_now(duo, "old/join-v0", group, version=0, protocols=protos)
    time.sleep(0.2)  # Kafka describes the committed group: let the new group's record commit
    describe(duo, "old/describe-completing", group)
    sync_now(duo, "old/sync-v0", group, "<M1>", 1, version=0, assignments={"<M1>": b"a"})
    join_now(duo, "old/join-v3-second", group, "", "b", version=3, protocols=protos)
    duo.recv(
        join(duo, "old/join-v6-first-rejoins", group, "<M1>", version=6, protocols=protos),
        unordered=["members"],
    )
    commit(duo, "old/commit-v7", group, "<M1>", 2, {"nope": [0]}, version=7)
    commit(duo, "old/commit-v5-stale", group, "<M1>", 1, {"nope": [0]}, version=5)
    duo.call("old/leave-v0-unknown-member", LEAVE, 0, leave_v0)
    duo.call("old/leave-v1", LEAVE, 1, dict(group_id=group, member_id="<M1>"))
    fetch(duo, "old/offset-fetch-v1", group, {"nope": [0]}, version=1)
    describe(duo, "old/describe-after", group)


@pytest.fixture(scope="module")
def small_limits(
    tmp_path_factory: pytest.TempPathFactory,
    differential_brokers: tuple[BrokerProcess, KafkaReference],
) -> Iterator[tuple[int, int]]:
    """A second pair with group.max.size=2 and short KIP-848 session timeouts."""
    overrides = {
        "group.max.size": "2",
        "group.consumer.max.size": "2",
        "group.consumer.min.session.timeout.ms": "2000",
        "group.consumer.session.timeout.ms": "2500",
        "group.consumer.min.heartbeat.interval.ms": "500",
        "group.consumer.heartbeat.interval.ms": "1000",
        "offsets.topic.num.partitions": "3",
    }
    base = tmp_path_factory.mktemp("group-limits")
    kafka = KafkaReference(base / "kafka" / "data", overrides).start()
    try:
        ours = BrokerProcess(
            base / "ours" / "data",
            overrides={
                "num.partitions": "1",
                "group.initial.rebalance.delay.ms": "0",
                **overrides,
            },
        ).start()
        try:
            yield ours.port, kafka.port
        finally:
            ours.stop()
    finally:
        kafka.stop()


def test_group_max_size_and_consumer_session_timeout(small_limits: tuple[int, int]) -> None:
    with Duo(*small_limits) as duo:
        topic, group, cgroup = gid("t"), gid("max"), gid("cmax")
        duo.create_topic(topic, 2)
        coordinator(duo, group)
        coordinator(duo, cgroup)
        protos = [("range", subscription(topic))]

        # group.max.size=2: a third member is refused while the group is full; during a
        # rebalance the first two to join are in, and a member that rejoins too late is out.
        join_now(duo, "max/first-id", group, protocols=protos)
        join_now(duo, "max/first", group, "<M1>", protocols=protos)
        sync_now(duo, "max/first-sync", group, "<M1>", 1, assignments={"<M1>": b""})
        join_now(duo, "max/second-id", group, "", "b", protocols=protos)
        second = join(duo, "max/second", group, "<M2>", "b", protocols=protos)
        time.sleep(0.3)
        first = join(duo, "max/first-rejoins", group, "<M1>", protocols=protos)
        duo.recv(first, second, unordered=["members"])
        join_now(duo, "max/third-id-when-full", group, "", "c", protocols=protos)
        join_now(duo, "max/third-static-when-full", group, "", "d", instance="s3", protocols=protos)
        sync_now(duo, "max/sync-follower-early", group, "<M2>", 2, "b")
        first = join(duo, "max/first-rejoins-again", group, "<M1>", protocols=protos)
        time.sleep(0.3)
        join_now(
            duo, "max/third-static-in-rebalance", group, "", "d", instance="s3", protocols=protos
        )
        join_now(duo, "max/second-rejoins-too-late", group, "<M2>", "b", protocols=protos)
        duo.recv(first, unordered=["members"])
        describe(duo, "max/describe", group)

        # group.consumer.max.size=2 and a session that expires.
        m1, m2, m3 = (f"cm{i}-{uuid.uuid4().hex[:6]}" for i in range(3))
        cgh(duo, "cmax/join-1", cgroup, m1, 0, topics=[topic], rebalance=5000)
        cgh(duo, "cmax/join-2", cgroup, m2, 0, "b", topics=[topic], rebalance=5000)
        cgh(duo, "cmax/join-3-full", cgroup, m3, 0, "c", topics=[topic], rebalance=5000)
        for side, answer in zip(
            duo.sides, cgh(duo, "cmax/heartbeat-1", cgroup, m1, 1), strict=True
        ):
            side.values["epoch"] = int(answer.member_epoch)
        cgh(duo, "cmax/heartbeat-2", cgroup, m2, 2, "b")
        deadline = time.monotonic() + 3.5
        while time.monotonic() < deadline:  # m1 keeps its session, m2 lets it expire
            time.sleep(0.5)
            answers = cgh(duo, "keepalive", cgroup, m1, "<value:epoch>", record=False)
            for side, answer in zip(duo.sides, answers, strict=True):
                side.values["epoch"] = int(answer.member_epoch)
        cgd(duo, "cmax/describe-after-expiry", cgroup)
        cgh(duo, "cmax/heartbeat-expired", cgroup, m2, 2, "b")
        cgh(duo, "cmax/rejoin-expired", cgroup, m2, 0, "b", topics=[topic], rebalance=5000)


def txn_commit(
    duo: Duo,
    case: str,
    group: str,
    member: str,
    generation: int,
    offsets: dict[str, list[int]],
    *,
    instance: str | None = None,
    version: int = 4,
) -> tuple[Any, Any]:
    return duo.call(
        case,
        TXN_COMMIT,
        version,
        dict(
            transactional_id="<value:txn>",
            group_id=group,
            producer_id="<value:pid>",
            producer_epoch="<value:epoch>",
            generation_id=generation,
            member_id=member,
            group_instance_id=instance,
            topics=[
                dict(
                    name=t,
                    partitions=[
                        dict(
                            partition_index=p,
                            committed_offset=100 + p,
                            committed_leader_epoch=-1,
                            committed_metadata="",
                        )
                        for p in parts
                    ],
                )
                for t, parts in offsets.items()
            ],
        ),
        "txn",
    )


def start_transactions(wire: KafkaWire, txn: str) -> tuple[int, int]:
    """InitProducerId once the transaction coordinator serves ``txn``: (pid, epoch)."""
    deadline = time.monotonic() + 30
    while True:
        find_coordinator(wire, txn, key_type=1)
        code, pid, epoch = init_producer(wire, txn)
        if code == 0:
            return pid, epoch
        assert time.monotonic() < deadline, code
        time.sleep(0.2)


def test_transactional_offset_commits(duo: Duo) -> None:
    """TxnOffsetCommit's group checks, and require_stable while offsets are pending."""
    topic, group, cgroup, txn = gid("t"), gid("txn"), gid("txncg"), gid("txn-id")
    duo.create_topic(topic, 2)
    coordinator(duo, group)
    coordinator(duo, cgroup)
    for side, wire in zip(duo.sides, duo.conn("txn"), strict=True):
        side.values["txn"] = txn
        side.values["pid"], side.values["epoch"] = start_transactions(wire, txn)
    join_now(duo, "txn/member-id", group, protocols=[("range", subscription(topic))])
    join_now(duo, "txn/join", group, "<M1>", protocols=[("range", subscription(topic))])
    sync_now(duo, "txn/sync", group, "<M1>", 1, assignments={"<M1>": b""})
    add = dict(
        transactional_id="<value:txn>",
        producer_id="<value:pid>",
        producer_epoch="<value:epoch>",
        group_id=group,
    )
    duo.call("txn/add-offsets", 25, 3, add, "txn")
    txn_commit(duo, "txn/commit-member", group, "<M1>", 1, {topic: [0]})
    txn_commit(duo, "txn/commit-stale-generation", group, "<M1>", 0, {topic: [0]})
    txn_commit(duo, "txn/commit-unknown-member", group, "x-member", 1, {topic: [0]})
    txn_commit(duo, "txn/commit-fenced-instance", group, "<M1>", 1, {topic: [0]}, instance="i")
    txn_commit(duo, "txn/commit-simple", group, "", -1, {topic: [1]})
    txn_commit(duo, "txn/commit-v2-stale", group, "<M1>", 0, {topic: [1]}, version=2)
    fetch(duo, "txn/offset-fetch-require-stable", group, {topic: [0, 1]}, require_stable=True)
    fetch(duo, "txn/offset-fetch-pending", group, {topic: [0, 1]})
    fetch(duo, "txn/offset-fetch-all-require-stable", group, None, require_stable=True)
    commit(duo, "txn/plain-commit-while-pending", group, "<M1>", 1, {topic: [0]})
    delete_groups(duo, "txn/delete-non-empty", group)

    # A consumer group: member epochs instead of generations.
    m1 = f"tm-{uuid.uuid4().hex[:6]}"
    cgh(duo, "txn/cg-join", cgroup, m1, 0, topics=[topic], rebalance=5000)
    duo.call("txn/cg-add-offsets", 25, 3, {**add, "group_id": cgroup}, "txn")
    txn_commit(duo, "txn/cg-commit", cgroup, m1, 1, {topic: [0]})
    txn_commit(duo, "txn/cg-commit-stale-epoch", cgroup, m1, 0, {topic: [0]})
    txn_commit(duo, "txn/cg-commit-unknown-member", cgroup, "x", 1, {topic: [0]})
    txn_commit(duo, "txn/cg-commit-simple", cgroup, "", -1, {topic: [1]})
    fetch(duo, "txn/cg-offset-fetch-require-stable", cgroup, {topic: [0]}, require_stable=True)


def test_protocol_migration(duo: Duo) -> None:
    """A classic member into a non-empty consumer group and a KIP-848 member into a
    non-empty classic group, both with consumer-protocol metadata; then empty groups,
    which convert."""
    topic, cgroup, classic = gid("t"), gid("mixcg"), gid("mixclassic")
    duo.create_topic(topic, 2)
    coordinator(duo, cgroup)
    coordinator(duo, classic)
    protos = [("range", subscription(topic))]
    m1, m2 = (f"mx{i}-{uuid.uuid4().hex[:6]}" for i in range(2))

    # Not upgradable: the member's subscription metadata is not the consumer protocol's.
    bad = [("range", b"")]
    first = duo.placeholder_of(join_now(duo, "mix/classic-id", classic, protocols=bad))
    join_now(duo, "mix/classic-join", classic, first, protocols=bad)
    sync_now(duo, "mix/classic-sync", classic, first, 1, assignments={first: b""})
    cgh(duo, "mix/consumer-into-classic", classic, m2, 0, "b", topics=[topic], rebalance=5000)
    leave(duo, "mix/classic-leave", classic, [(first, None)])
    cgh(duo, "mix/consumer-into-empty-classic", classic, m2, 0, "c", topics=[topic], rebalance=5000)
    cgh(duo, "mix/cg-join", cgroup, m1, 0, topics=[topic], rebalance=5000)
    join_now(duo, "mix/classic-into-consumer", cgroup, "", "b", protocols=protos)
    join_now(duo, "mix/classic-other-type-into-consumer", cgroup, "", "c", protocol_type="x")
    cgh(duo, "mix/cg-leave", cgroup, m1, -1)
    cgd(duo, "mix/cg-describe-empty", cgroup)
    answers = join_now(duo, "mix/classic-into-empty-consumer-id", cgroup, "", "d", protocols=protos)
    time.sleep(0.2)
    describe(duo, "mix/describe-after-id", cgroup)
    join_now(
        duo,
        "mix/classic-into-empty-consumer",
        cgroup,
        duo.placeholder_of(answers),
        "d",
        protocols=protos,
    )
    describe(duo, "mix/describe-converted", cgroup)

    cgd(duo, "mix/describe-upgraded", classic)
    list_groups(duo, "mix/list", {cgroup, classic})


def test_consumer_into_non_empty_classic_group(duo: Duo) -> None:
    """Kafka 4.1 checks a non-empty classic group before it upgrades it online."""
    topic, plain, connect = gid("t"), gid("upgrade"), gid("connect")
    duo.create_topic(topic, 2)
    coordinator(duo, plain)
    coordinator(duo, connect)
    protos = [("range", subscription(topic))]
    m1, m2 = (f"up{i}-{uuid.uuid4().hex[:6]}" for i in range(2))

    join_now(duo, "upgrade/connect-id", connect, protocol_type="connect", protocols=protos)
    join_now(
        duo, "upgrade/connect-join", connect, "<M1>", protocol_type="connect", protocols=protos
    )
    cgh(duo, "upgrade/into-connect-group", connect, m1, 0, topics=[topic], rebalance=5000)

    join_now(duo, "upgrade/classic-id", plain, "", "b", protocols=protos)
    join_now(duo, "upgrade/classic-join", plain, "<M2>", "b", protocols=protos)
    full = {"<M2>": assignment({topic: [0, 1]})}
    sync_now(duo, "upgrade/classic-sync", plain, "<M2>", 1, "b", assignments=full)
    cgh(duo, "upgrade/into-consumer-group", plain, m2, 0, "c", topics=[topic], rebalance=5000)
    describe(duo, "upgrade/describe", plain)

    # The classic member lives on in the consumer group: told to rejoin, it gets a new
    # epoch as its generation and its share of the partitions through SyncGroup.
    cgd(duo, "upgrade/cg-describe", plain)
    heartbeat(duo, "upgrade/classic-heartbeat", plain, "<M2>", 1, conn="b")
    heartbeat(duo, "upgrade/classic-heartbeat-bad-generation", plain, "<M2>", 7, conn="b")
    heartbeat(duo, "upgrade/classic-heartbeat-unknown", plain, "nobody", 1, conn="b")
    heartbeat(duo, "upgrade/consumer-member-classic-heartbeat", plain, m2, 2, conn="b")
    join_now(duo, "upgrade/classic-rejoin", plain, "<M2>", "b", protocols=protos)
    sync_now(duo, "upgrade/classic-sync-wrong-name", plain, "<M2>", 2, "b", protocol_name="x")
    sync_now(duo, "upgrade/classic-resync", plain, "<M2>", 2, "b")
    heartbeat(duo, "upgrade/classic-heartbeat-stable", plain, "<M2>", 2, conn="b")
    cgh(duo, "upgrade/consumer-gets-released", plain, m2, 2, "c", owned=[])
    cgd(duo, "upgrade/cg-describe-stable", plain)
    commit(duo, "upgrade/classic-commit", plain, "<M2>", 2, {topic: [0]}, version=8, conn="b")
    commit(duo, "upgrade/classic-commit-stale", plain, "<M2>", 1, {topic: [0]}, version=8)
    describe(duo, "upgrade/describe-consumer-group", plain)
    list_groups(duo, "upgrade/list", {plain})

    # A second classic member joins the consumer group (with a member id first).
    late = join_now(duo, "upgrade/classic-second-id", plain, "", "d", protocols=protos)
    join_now(
        duo, "upgrade/classic-second-join", plain, duo.placeholder_of(late), "d", protocols=protos
    )
    cgd(duo, "upgrade/cg-describe-three", plain)

    # The last consumer-protocol member leaves: the group is classic again and rebalances.
    cgh(duo, "upgrade/consumer-leaves", plain, m2, -1, "c")
    describe(duo, "upgrade/describe-downgraded", plain)
    cgd(duo, "upgrade/cg-describe-downgraded", plain)
    heartbeat(duo, "upgrade/classic-heartbeat-downgraded", plain, "<M2>", 3, conn="b")


def test_consumer_group_regex(duo: Duo) -> None:
    """A regex subscription is resolved after the join, then bumps the group epoch."""
    prefix = f"rx-{uuid.uuid4().hex[:6]}"
    group = gid("regex")
    duo.create_topic(f"{prefix}-a", 1)
    duo.create_topic(f"{prefix}-b", 2)
    coordinator(duo, group)
    m1, m2 = (f"rx{i}-{uuid.uuid4().hex[:6]}" for i in range(2))
    cgh(duo, "regex/join", group, m1, 0, regex=f"{prefix}-.*", rebalance=5000)
    time.sleep(0.5)
    cgh(duo, "regex/heartbeat-after-resolution", group, m1, 1)
    cgd(duo, "regex/describe", group)
    cgh(duo, "regex/second-same-regex", group, m2, 0, "b", regex=f"{prefix}-.*", rebalance=5000)
    cgh(duo, "regex/second-to-names", group, m2, 3, "b", topics=[f"{prefix}-a"], regex="")
    time.sleep(0.5)
    cgd(duo, "regex/describe-after-change", group)
    cgh(duo, "regex/invalid-on-heartbeat", group, m1, 2, regex="a(")


def test_classic_static_member_replacing_the_last_consumer_member(duo: Duo) -> None:
    """A static member restarted on the classic protocol takes the instance id of the last
    consumer-protocol member: Kafka 4.1 downgrades the group at once, without a rebalance."""
    topic, group = gid("t"), gid("static-down")
    duo.create_topic(topic, 2)
    coordinator(duo, group)
    protos = [("range", subscription(topic))]
    k = f"sd-{uuid.uuid4().hex[:6]}"
    first = join_now(
        duo, "static-down/classic-join", group, "", "b", instance="ia", protocols=protos
    )
    member = duo.placeholder_of(first)
    full = {member: assignment({topic: [0, 1]})}
    sync_now(
        duo, "static-down/classic-sync", group, member, 1, "b", instance="ia", assignments=full
    )
    cgh(
        duo,
        "static-down/consumer-joins",
        group,
        k,
        0,
        "c",
        topics=[topic],
        instance="ib",
        rebalance=5000,
    )
    cgd(duo, "static-down/cg-describe", group)
    answers = join_now(
        duo, "static-down/classic-replaces", group, "", "d", instance="ib", protocols=protos
    )
    describe(duo, "static-down/describe", group)
    cgd(duo, "static-down/cg-describe-after", group)
    replacing = duo.placeholder_of(answers)
    sync_now(duo, "static-down/replacing-sync", group, replacing, 2, "d", instance="ib")
    heartbeat(duo, "static-down/replaced-heartbeat", group, replacing, 2, instance="ib", conn="d")
    heartbeat(duo, "static-down/other-heartbeat", group, member, 1, instance="ia", conn="b")
