"""Consumer groups with stock clients against a real broker (issue #4).

confluent-kafka (librdkafka), kafka-python and aiokafka consumers join groups, split
partitions, commit and resume; kcat runs a balanced consumer; kafka-python's admin client
lists, describes and deletes groups and their offsets. Ownership is tracked from each
consumer's assignment callbacks: a partition may never be assigned to one member before
the member that held it has given it up. A member that stops heartbeating is a raw
JoinGroup/SyncGroup client (tests/support/wire.py) that simply goes silent.

The broker runs with group.initial.rebalance.delay.ms=100 and
group.min.session.timeout.ms=1000 so that rebalances and expirations take well under a
second or two; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from kafka import KafkaConsumer
from kafka import TopicPartition as KTopicPartition
from kafka.admin import KafkaAdminClient
from kafka.structs import OffsetAndMetadata as KOffsetAndMetadata

from tests.support.broker import BrokerProcess
from tests.support.clients import (
    confluent_create_topic,
    confluent_produce,
    index_of_value,
    run_kcat,
    value_of,
)
from tests.support.wire import KafkaWire, request_module

pytestmark = pytest.mark.timeout(120)

OVERRIDES = {
    "group.initial.rebalance.delay.ms": "100",
    "group.min.session.timeout.ms": "1000",
}
PARTITIONS = 4
FAST = {"heartbeat.interval.ms": 250, "session.timeout.ms": 6000}


@pytest.fixture(scope="module")
def gbroker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    proc = BrokerProcess(tmp_path_factory.mktemp("groups") / "data", overrides=OVERRIDES).start()
    try:
        yield proc
    finally:
        if proc.proc is not None:
            proc.stop()


def fresh_topic(broker: BrokerProcess, count: int, prefix: str = "grp") -> str:
    topic = f"{prefix}-{uuid.uuid4().hex[:8]}"
    confluent_create_topic(broker.bootstrap, topic, PARTITIONS)
    if count:
        confluent_produce(broker.bootstrap, topic, range(count))
    return topic


def wait_until(
    cond: Callable[[], bool], timeout: float, step: Callable[[], None], what: str
) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        step()


# ---------------------------------------------------------------------- ownership


class Ownership:
    """Who holds each partition, from assignment callbacks; records any overlap."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.owner: dict[int, str] = {}
        self.violations: list[str] = []
        self.moves: list[tuple[str, str, list[int]]] = []

    def assign(self, who: str, parts: set[int]) -> None:
        with self.lock:
            self.moves.append((who, "assign", sorted(parts)))
            for p in parts:
                holder = self.owner.get(p)
                if holder is not None and holder != who:
                    self.violations.append(f"{who} got partition {p} still held by {holder}")
                self.owner[p] = who

    def revoke(self, who: str, parts: set[int]) -> None:
        with self.lock:
            self.moves.append((who, "revoke", sorted(parts)))
            for p in parts:
                if self.owner.get(p) == who:
                    del self.owner[p]


class CMember:
    """A confluent-kafka group member polled by the test's thread."""

    def __init__(
        self,
        name: str,
        broker: BrokerProcess,
        group: str,
        topic: str,
        ownership: Ownership | None = None,
        **conf: Any,
    ) -> None:
        self.name = name
        self.ownership = ownership or Ownership()
        self.assigned: set[int] = set()
        self.events: list[tuple[str, list[int]]] = []
        self.seen: list[tuple[int, int, int]] = []  # (partition, offset, index)
        self.stray: list[int] = []  # messages from partitions not assigned at the time
        self.consumer = Consumer(
            {
                "bootstrap.servers": broker.bootstrap,
                "group.id": group,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": False,
                **FAST,
                **conf,
            }
        )
        self.consumer.subscribe(
            [topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
        )

    def _on_assign(self, _c: Any, parts: list[TopicPartition]) -> None:
        ps = {p.partition for p in parts}
        self.events.append(("assign", sorted(ps)))
        self.ownership.assign(self.name, ps)
        self.assigned |= ps

    def _on_revoke(self, _c: Any, parts: list[TopicPartition]) -> None:
        ps = {p.partition for p in parts}
        self.events.append(("revoke", sorted(ps)))
        self.ownership.revoke(self.name, ps)
        self.assigned -= ps

    def poll(self, timeout: float = 0.05) -> None:
        for msg in self.consumer.consume(1000, timeout):
            err = msg.error()
            if err is not None:
                assert err.code() == KafkaError._PARTITION_EOF, f"{self.name}: {err}"
                continue
            if msg.partition() not in self.assigned:
                self.stray.append(msg.partition())
            self.seen.append((msg.partition(), msg.offset(), index_of_value(msg.value())))

    def indices(self) -> set[int]:
        return {i for _, _, i in self.seen}

    def close(self) -> None:
        self.consumer.close()


def assert_committed(
    consumer: Consumer, tps: list[TopicPartition], expected: list[tuple[int, Any, Any]]
) -> None:
    """confluent's committed() gives (offset, metadata, leader_epoch) == ``expected``.

    librdkafka copies committed metadata without a terminating NUL and the Python binding
    reads it as a C string, so now and then garbage follows the real bytes
    (confluentinc/librdkafka#4649; kafka-python and aiokafka read the same broker answer
    exactly). A read showing that is repeated, a bounded number of times."""
    last: Any = None
    for _ in range(20):
        got = consumer.committed(tps, timeout=10)
        try:
            last = [(tp.offset, tp.metadata, tp.leader_epoch) for tp in got]
        except UnicodeDecodeError as exc:
            last = exc
            continue
        if last == expected:
            return
        assert [(o, e) for o, _, e in last] == [(o, e) for o, _, e in expected], last
    raise AssertionError(f"committed() never matched {expected}: last {last!r}")


def poll_all(members: list[CMember]) -> Callable[[], None]:
    def step() -> None:
        for m in members:
            m.poll(0.02)

    return step


def check_split(members: list[CMember]) -> None:
    parts = [m.assigned for m in members]
    assert all(parts), f"every member holds partitions: {parts}"
    assert set().union(*parts) == set(range(PARTITIONS)), parts
    assert sum(len(p) for p in parts) == PARTITIONS, f"overlapping assignments {parts}"


# ---------------------------------------------------------------------- splitting


def test_confluent_two_members_split_disjointly(gbroker: BrokerProcess) -> None:
    topic = fresh_topic(gbroker, 400)
    group = f"split-{topic}"
    own = Ownership()
    members = [CMember(n, gbroker, group, topic, own) for n in ("a", "b")]
    try:
        wait_until(
            lambda: (
                len(members[0].indices() | members[1].indices()) == 400
                and all(len(m.assigned) == 2 for m in members)
            ),
            30,
            poll_all(members),
            "two members to split the topic and read it all",
        )
        check_split(members)
        assert not own.violations, own.violations
        assert not any(m.stray for m in members)
        # Each member read exactly the records of its own partitions.
        for m in members:
            assert {p for p, _, _ in m.seen} <= m.assigned | {
                p for who, kind, ps in own.moves if who == m.name for p in ps
            }
    finally:
        for m in members:
            m.close()


def _kp_consumer(broker: BrokerProcess, group: str, topic: str, **kw: Any) -> KafkaConsumer:
    return KafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        heartbeat_interval_ms=250,
        session_timeout_ms=6000,
        **kw,
    )


def test_kafka_python_two_members_split_disjointly(gbroker: BrokerProcess) -> None:
    topic = fresh_topic(gbroker, 400)
    group = f"kp-split-{topic}"
    stop = threading.Event()
    state: dict[str, Any] = {}
    lock = threading.Lock()
    errors: list[BaseException] = []

    def run(name: str) -> None:
        try:
            c = _kp_consumer(gbroker, group, topic)
            seen: set[int] = set()
            try:
                deadline = time.monotonic() + 40
                while not stop.is_set() and time.monotonic() < deadline:
                    for records in c.poll(timeout_ms=100).values():
                        seen |= {index_of_value(r.value) for r in records}
                    with lock:
                        state[name] = ({tp.partition for tp in c.assignment()}, set(seen))
            finally:
                c.close()
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,), daemon=True) for n in "ab"]
    for t in threads:
        t.start()

    def done() -> bool:
        with lock:
            if len(state) < 2 or errors:
                return bool(errors)
            a, b = state["a"], state["b"]
            return len(a[0]) == 2 and len(b[0]) == 2 and len(a[1] | b[1]) == 400

    try:
        wait_until(done, 45, lambda: time.sleep(0.05), "kafka-python members to split")
    finally:
        stop.set()
        for t in threads:
            t.join(15)
    assert not errors, errors
    a, b = state["a"][0], state["b"][0]
    assert a.isdisjoint(b) and a | b == set(range(PARTITIONS)), (a, b)


def test_aiokafka_two_members_split_disjointly(gbroker: BrokerProcess) -> None:
    from aiokafka import AIOKafkaConsumer

    topic = fresh_topic(gbroker, 400)
    group = f"aio-split-{topic}"

    async def scenario() -> tuple[set[int], set[int], set[int]]:
        consumers = [
            AIOKafkaConsumer(
                topic,
                bootstrap_servers=gbroker.bootstrap,
                group_id=group,
                auto_offset_reset="earliest",
                heartbeat_interval_ms=250,
                session_timeout_ms=6000,
            )
            for _ in range(2)
        ]
        for c in consumers:
            await c.start()
        seen: set[int] = set()
        try:
            deadline = time.monotonic() + 40
            while True:
                for c in consumers:
                    batch = await c.getmany(timeout_ms=50)
                    seen |= {index_of_value(r.value) for rs in batch.values() for r in rs}
                parts = [{tp.partition for tp in c.assignment()} for c in consumers]
                if len(seen) == 400 and all(len(p) == 2 for p in parts):
                    return parts[0], parts[1], seen
                assert time.monotonic() < deadline, f"aiokafka split: {parts}, {len(seen)}"
        finally:
            for c in consumers:
                await c.stop()

    a, b, seen = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert a.isdisjoint(b) and a | b == set(range(PARTITIONS))
    assert seen == set(range(400))


# ---------------------------------------------------------------------- committed positions


def _consume_all(member: CMember, count: int, timeout: float = 30) -> None:
    wait_until(lambda: len(member.indices()) >= count, timeout, member.poll, f"{count} records")


def test_committed_position_survives_close_and_restart(fresh_broker: BrokerProcess) -> None:
    fresh_broker.overrides.update(OVERRIDES)
    fresh_broker.start()
    topic = fresh_topic(fresh_broker, 200)
    group = f"resume-{topic}"
    first = CMember("first", fresh_broker, group, topic, **{"enable.auto.commit": False})
    try:
        _consume_all(first, 200)
        ends = {}
        for p, off, _ in first.seen:
            ends[p] = max(ends.get(p, -1), off + 1)
        # Commit half of each partition, with metadata and a leader epoch.
        commits = [
            TopicPartition(topic, p, end // 2, metadata=f"meta-{p}-é", leader_epoch=0)
            for p, end in sorted(ends.items())
        ]
        first.consumer.commit(offsets=commits, asynchronous=False)
    finally:
        first.close()

    def check(label: str) -> None:
        member = CMember(label, fresh_broker, group, topic, **{"enable.auto.commit": False})
        try:
            assert_committed(
                member.consumer,
                [TopicPartition(topic, p) for p in range(PARTITIONS)],
                [(ends[p] // 2, f"meta-{p}-é", 0) for p in range(PARTITIONS)],
            )
            expected = sum(end - end // 2 for end in ends.values())
            _consume_all(member, expected)
            firsts: dict[int, int] = {}
            for p, off, _ in member.seen:
                firsts.setdefault(p, off)
            assert firsts == {p: end // 2 for p, end in ends.items()}, label
        finally:
            member.close()

    check("after-close")
    fresh_broker.restart()
    check("after-restart")


def test_second_group_receives_every_record(gbroker: BrokerProcess) -> None:
    topic = fresh_topic(gbroker, 300)
    members = [CMember(g, gbroker, f"{g}-{topic}", topic) for g in ("one", "two")]
    try:
        wait_until(
            lambda: all(len(m.indices()) == 300 for m in members),
            30,
            poll_all(members),
            "both groups to read everything",
        )
        assert all(m.indices() == set(range(300)) for m in members)
        assert all(m.assigned == set(range(PARTITIONS)) for m in members)
    finally:
        for m in members:
            m.close()


def test_offsets_cross_clients(gbroker: BrokerProcess) -> None:
    """kafka-python commits with metadata; aiokafka and confluent-kafka read it back."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka import TopicPartition as ATopicPartition

    topic = fresh_topic(gbroker, 0)
    group = f"cross-{topic}"
    c = KafkaConsumer(bootstrap_servers=gbroker.bootstrap, group_id=group)
    try:
        c.commit(
            {
                KTopicPartition(topic, 1): KOffsetAndMetadata(42, "from kafka-python", 3),
                KTopicPartition(topic, 2): KOffsetAndMetadata(7, "", -1),
            }
        )
        assert c.committed(KTopicPartition(topic, 1)) == 42
    finally:
        c.close()

    async def aio() -> Any:
        a = AIOKafkaConsumer(bootstrap_servers=gbroker.bootstrap, group_id=group)
        await a.start()
        try:
            return await a.committed(ATopicPartition(topic, 1)), await a.committed(
                ATopicPartition(topic, 0)
            )
        finally:
            await a.stop()

    assert asyncio.run(asyncio.wait_for(aio(), 30)) == (42, None)
    cc = Consumer({"bootstrap.servers": gbroker.bootstrap, "group.id": group})
    try:
        assert_committed(
            cc,
            [TopicPartition(topic, p) for p in (0, 1, 2)],
            [
                (-1001, None, None),
                (42, "from kafka-python", 3),
                (7, None, None),
            ],
        )
    finally:
        cc.close()


# ---------------------------------------------------------------------- rebalancing


def test_third_member_mid_stream(gbroker: BrokerProcess) -> None:
    topic = fresh_topic(gbroker, 0)
    group = f"third-{topic}"
    total = 6000
    own = Ownership()
    producer_done = threading.Event()

    def produce() -> None:
        p = Producer({"bootstrap.servers": gbroker.bootstrap, "linger.ms": 5})
        try:
            for i in range(total):
                p.produce(topic, value=value_of(i), key=b"%d" % i)
                if i % 200 == 199:
                    p.poll(0)
                    time.sleep(0.04)  # ~3 s of traffic
            assert p.flush(30) == 0
        finally:
            producer_done.set()

    members = [CMember(n, gbroker, group, topic, own) for n in ("a", "b")]
    thread = threading.Thread(target=produce, daemon=True)
    try:
        wait_until(
            lambda: all(m.assigned for m in members), 20, poll_all(members), "a and b joined"
        )
        thread.start()
        wait_until(
            lambda: sum(len(m.seen) for m in members) > 500, 20, poll_all(members), "traffic"
        )
        members.append(CMember("c", gbroker, group, topic, own))
        wait_until(
            lambda: (
                producer_done.is_set()
                and len(set().union(*(m.indices() for m in members))) == total
                and all(m.assigned for m in members)
            ),
            60,
            poll_all(members),
            "every record after the third member joined",
        )
        thread.join(10)
        assert not own.violations, own.violations
        assert not any(m.stray for m in members), [m.stray for m in members]
        check_split(members)
        assert any(kind == "revoke" for who, kind, _ in own.moves if who in "ab")
    finally:
        for m in members:
            m.close()


def subscription(*topics: str) -> bytes:
    """ConsumerProtocolSubscription v0: what a classic consumer sends in JoinGroup."""
    out = struct.pack(">hi", 0, len(topics))
    for t in topics:
        out += struct.pack(">h", len(t)) + t.encode()
    return out + struct.pack(">i", -1)


def test_silent_member_is_expelled_after_session_timeout(gbroker: BrokerProcess) -> None:
    topic = fresh_topic(gbroker, 0)
    group = f"silent-{topic}"
    session_ms = 2000
    survivor = CMember("survivor", gbroker, group, topic)
    synced: dict[str, Any] = {}

    def silent_member() -> None:
        join = request_module(11, 5)
        sync_mod = request_module(14, 3)
        with KafkaWire(port=gbroker.port, timeout=20) as w:
            req = dict(
                group_id=group,
                session_timeout=session_ms,
                rebalance_timeout=10_000,
                group_instance_id=None,
                protocol_type="consumer",
                protocols=(
                    join.JoinGroupRequestProtocol(name="range", metadata=subscription(topic)),
                ),
            )
            first = w.request(join.JoinGroupRequest(member_id="", **_timedeltas(req)))
            joined = w.request(join.JoinGroupRequest(member_id=first.member_id, **_timedeltas(req)))
            assert joined.error_code == 0, joined
            answer = w.request(
                sync_mod.SyncGroupRequest(
                    group_id=group,
                    generation_id=joined.generation_id,
                    member_id=joined.member_id,
                    group_instance_id=None,
                    assignments=(),
                )
            )
            synced.update(error=answer.error_code, at=time.monotonic(), data=answer.assignment)
        # ... and never heartbeats again.

    try:
        wait_until(lambda: len(survivor.assigned) == PARTITIONS, 20, survivor.poll, "survivor")
        thread = threading.Thread(target=silent_member, daemon=True)
        thread.start()
        wait_until(lambda: "at" in synced, 20, survivor.poll, "the silent member to sync")
        assert synced["error"] == 0 and synced["data"], synced
        assert len(survivor.assigned) == 2  # it gave two partitions up
        wait_until(lambda: len(survivor.assigned) == PARTITIONS, 15, survivor.poll, "reassignment")
        elapsed = time.monotonic() - synced["at"]
        # Expelled at the session timeout, not before; the upper bound leaves room for the
        # survivor to notice (heartbeat), rejoin and sync on a loaded machine.
        assert session_ms / 1000 * 0.9 <= elapsed <= session_ms / 1000 + 6, elapsed
        thread.join(5)
    finally:
        survivor.close()


def _timedeltas(fields: dict[str, Any]) -> dict[str, Any]:
    import datetime

    out = dict(fields)
    for k in ("session_timeout", "rebalance_timeout"):
        out[k] = datetime.timedelta(milliseconds=out[k])
    return out


def test_cooperative_sticky_moves_only_what_must(gbroker: BrokerProcess) -> None:
    topic = fresh_topic(gbroker, 200)
    group = f"coop-{topic}"
    own = Ownership()
    conf = {"partition.assignment.strategy": "cooperative-sticky"}
    a = CMember("a", gbroker, group, topic, own, **conf)
    members = [a]
    try:
        wait_until(lambda: len(a.assigned) == PARTITIONS, 20, a.poll, "a owns everything")
        members.append(CMember("b", gbroker, group, topic, own, **conf))
        wait_until(
            lambda: [len(m.assigned) for m in members] == [2, 2], 20, poll_all(members), "2+2"
        )
        kept_by_a = set(a.assigned)
        revoked_a = [p for kind, ps in a.events if kind == "revoke" for p in ps]
        assert len(revoked_a) == 2 and not set(revoked_a) & kept_by_a, a.events
        members.append(CMember("c", gbroker, group, topic, own, **conf))
        wait_until(
            lambda: (
                sorted(len(m.assigned) for m in members) == [1, 1, 2]
                and len(set().union(*(m.indices() for m in members))) == 200
            ),
            20,
            poll_all(members),
            "2+1+1",
        )
        revokes = [(who, ps) for who, kind, ps in own.moves if kind == "revoke" and ps]
        # a gave 2 to b, then one of a and b gave 1 to c: three partitions moved in all.
        assert sum(len(ps) for _, ps in revokes) == 3, own.moves
        assert len(members[2].assigned) == 1
        assert not own.violations, own.violations
        check_split(members)
    finally:
        for m in members:
            m.close()


def test_static_member_restart_keeps_partitions_without_rebalance(
    gbroker: BrokerProcess,
) -> None:
    topic = fresh_topic(gbroker, 100)
    group = f"static-{topic}"
    a = CMember("a", gbroker, group, topic, **{"group.instance.id": "static-a"})
    b = CMember("b", gbroker, group, topic, **{"group.instance.id": "static-b"})
    try:
        wait_until(
            lambda: len(a.assigned) == 2 and len(b.assigned) == 2, 20, poll_all([a, b]), "split"
        )
        before_a, b_events, b_member = set(a.assigned), list(b.events), b.consumer.memberid()
        a.close()  # a static member does not leave the group on close
        for _ in range(10):
            b.poll(0.05)
        a = CMember("a2", gbroker, group, topic, **{"group.instance.id": "static-a"})
        wait_until(lambda: bool(a.assigned), 10, poll_all([a, b]), "a to come back")
        assert a.assigned == before_a
        for _ in range(20):  # give any rebalance a chance to show up at b
            b.poll(0.05)
            a.poll(0.05)
        assert b.events == b_events, "the other member saw a rebalance"
        assert b.consumer.memberid() == b_member
    finally:
        a.close()
        b.close()


# ---------------------------------------------------------------------- kcat, admin


def test_kcat_balanced_consumer(gbroker: BrokerProcess) -> None:
    topic = fresh_topic(gbroker, 300)
    result = run_kcat(
        [
            "-b",
            gbroker.bootstrap,
            "-G",
            f"kcat-{topic}",
            topic,
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%p %o %s\n",
            "-X",
            "topic.auto.offset.reset=earliest",
        ],
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    indices = {index_of_value(line.split(" ", 2)[2].encode()) for line in lines}
    assert indices == set(range(300)), len(lines)


def test_kafka_python_admin(gbroker: BrokerProcess) -> None:
    topic = fresh_topic(gbroker, 100)
    active, idle = f"admin-active-{topic}", f"admin-idle-{topic}"
    member = CMember("m", gbroker, active, topic)
    admin = KafkaAdminClient(bootstrap_servers=gbroker.bootstrap)
    c = KafkaConsumer(bootstrap_servers=gbroker.bootstrap, group_id=idle)
    try:
        wait_until(lambda: len(member.indices()) == 100, 20, member.poll, "active group")
        member.consumer.commit(asynchronous=False)
        c.commit({KTopicPartition(topic, 0): KOffsetAndMetadata(5, "five", -1)})
        c.close()

        listed = {g["group_id"]: g for g in admin.list_groups()}
        assert listed[active]["protocol_type"] == "consumer"
        assert listed[active]["group_state"] == "Stable"
        assert listed[idle]["protocol_type"] == "" and listed[idle]["group_state"] == "Empty"
        assert {g["group_type"] for g in listed.values()} == {"classic"}
        stable = {g["group_id"] for g in admin.list_groups(states_filter=["Stable"])}
        assert active in stable and idle not in stable

        described = admin.describe_groups([active, idle, f"missing-{topic}"])
        d = described[active]
        assert (d["group_state"], d["protocol_type"], d["protocol_data"]) == (
            "Stable",
            "consumer",
            "range",
        )
        (m,) = d["members"]
        assert m["member_id"] == member.consumer.memberid()
        assert m["client_host"] == "/127.0.0.1"
        assert m["member_metadata"]["topics"] == [topic]
        assert m["member_assignment"]["assigned_partitions"] == [
            {"topic": topic, "partitions": list(range(PARTITIONS))}
        ]
        assert described[idle]["group_state"] == "Empty" and not described[idle]["members"]
        assert "GroupIdNotFound" in described[f"missing-{topic}"]["error"]

        offsets = admin.list_group_offsets({active: None, idle: None})
        assert {tp.partition: om.offset for tp, om in offsets[active].items()} == _ends(member)
        assert offsets[idle] == {KTopicPartition(topic, 0): KOffsetAndMetadata(5, "five", -1)}

        deleted = admin.delete_group_offsets(idle, [KTopicPartition(topic, 1)])
        assert deleted[KTopicPartition(topic, 1)].__name__ == "NoError"
        assert admin.delete_groups([active]) == {active: "NonEmptyGroupError"}
        assert admin.delete_groups([idle]) == {idle: "OK"}
        assert idle not in {g["group_id"] for g in admin.list_groups()}
        assert admin.delete_groups([idle]) == {idle: "GroupIdNotFoundError"}
    finally:
        admin.close()
        member.close()


def _ends(member: CMember) -> dict[int, int]:
    ends: dict[int, int] = {}
    for p, off, _ in member.seen:
        ends[p] = max(ends.get(p, 0), off + 1)
    return ends
