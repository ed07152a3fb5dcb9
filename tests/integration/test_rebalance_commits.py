"""Commits made while a classic group rebalances are kept (issue 8).

Eager consumers commit their position when a rebalance starts, before they revoke their
partitions and rejoin; a member that leaves commits before its LeaveGroup. Those commits
arrive while the group is PreparingRebalance, and Kafka accepts them (only
CompletingRebalance refuses a commit of the current generation). This test runs a group
of three stock consumers of one client library (confluent-kafka, kafka-python, aiokafka or
kcat -G, each with its default eager assignor and auto-commit) over a 6-partition topic
that is still being produced to: members a and b consume, c joins mid-stream, then a
leaves gracefully, and b and c finish the topic.

Every delivery (member, partition, offset, record index), every assignment and revocation
(from the clients' callbacks; kcat prints them with ``-v``) and the group's committed
offsets (sampled by OffsetFetch every 50 ms) are stamped with ``time.monotonic()``. Then:

- no partition is assigned to a member while another member still holds it;
- every produced record is delivered at least once, save the one record kcat itself drops
  when SIGTERM stops it mid-stream (it commits a polled message it never prints; only
  that exact record is excused, see ``excused_at_stop``);
- no record is delivered twice. A graceful handover commits the deliverer's position, so
  a second delivery is always of a committed record; each one is reported with the
  committed offset sampled before the second deliverer got the partition.

``PYBROKER_REBALANCE_RUNS`` sets the runs per client (default 4: a run takes about 4 s, the
four clients about a minute); every wait is bounded.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.support.broker import BrokerProcess
from tests.support.clients import (
    confluent_create_topic,
    confluent_produce,
    confluent_producer_conf,
    index_of_value,
    key_of,
    value_of,
)

RUNS = int(os.environ.get("PYBROKER_REBALANCE_RUNS", "4"))
RUN_TIMEOUT_S = 60
pytestmark = pytest.mark.timeout(60 + RUN_TIMEOUT_S * RUNS)

OVERRIDES = {
    "group.initial.rebalance.delay.ms": "50",
    "group.min.session.timeout.ms": "1000",
}
PARTITIONS = 6
PRE_PRODUCED = 600  # produced before the members start
TOTAL = 3000  # records in all; the rest are produced while the group rebalances
PACE_BATCH = 40  # records per 50 ms once the members consume
HEARTBEAT_MS = 250
SESSION_MS = 6000
WAIT_S = 30


@pytest.fixture(scope="module")
def rbroker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    proc = BrokerProcess(tmp_path_factory.mktemp("rebalance") / "data", overrides=OVERRIDES)
    proc.start()
    try:
        yield proc
    finally:
        if proc.proc is not None:
            proc.stop()


# ---------------------------------------------------------------------- the record of a run


@dataclass(order=True)
class Event:
    t: float
    seq: int
    member: str = field(compare=False)
    kind: str = field(compare=False)  # assign | revoke | release | deliver
    partitions: tuple[int, ...] = field(compare=False, default=())
    offset: int = field(compare=False, default=-1)
    index: int = field(compare=False, default=-1)


class Timeline:
    """Everything the members and the commit sampler saw, in one time-ordered log."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[Event] = []
        self.committed: list[tuple[float, dict[int, int]]] = []  # (answered at, p -> offset)
        self.commit_errors: list[str] = []
        self.placements: dict[int, tuple[int, int]] = {}  # index -> (partition, offset)
        self.sigtermed: dict[str, tuple[float, set[int]]] = {}  # kcat: when, what it held
        self.client_errors: list[str] = []
        self._seq = 0

    def add(self, member: str, kind: str, partitions: Any = ()) -> None:
        with self.lock:
            self._seq += 1
            self.events.append(
                Event(
                    time.monotonic(),
                    self._seq,
                    member,
                    kind,
                    tuple(sorted(partitions)),
                )
            )

    def deliver(self, member: str, records: list[tuple[int, int, int]]) -> None:
        """(partition, offset, index) records returned to the application at once."""
        now = time.monotonic()
        with self.lock:
            for p, o, i in records:
                self._seq += 1
                self.events.append(Event(now, self._seq, member, "deliver", (p,), o, i))

    def delivered(self) -> set[int]:
        with self.lock:
            return {e.index for e in self.events if e.kind == "deliver"}

    def sorted_events(self) -> list[Event]:
        with self.lock:
            return sorted(self.events)


def check_ownership(events: list[Event]) -> list[str]:
    """A partition assigned while another member has neither revoked it nor stopped."""
    owner: dict[int, str] = {}
    problems = []
    for e in events:
        if e.kind == "assign":
            for p in e.partitions:
                holder = owner.get(p)
                if holder is not None and holder != e.member:
                    problems.append(
                        f"t={e.t:.3f} {e.member} assigned partition {p} still held by {holder}"
                    )
                owner[p] = e.member
        elif e.kind == "revoke":
            for p in e.partitions:
                if owner.get(p) == e.member:
                    del owner[p]
        elif e.kind == "release":
            for p in [p for p, m in owner.items() if m == e.member]:
                del owner[p]
    return problems


def check_redeliveries(tl: Timeline, events: list[Event]) -> list[str]:
    """Every second delivery of a record, with what had been committed for it before."""
    by_record: dict[tuple[int, int], list[Event]] = defaultdict(list)
    assigned_at: dict[tuple[str, int], list[float]] = defaultdict(list)
    handovers: dict[tuple[str, int], list[float]] = defaultdict(list)
    held: dict[str, set[int]] = defaultdict(set)
    for e in events:
        if e.kind == "deliver":
            by_record[(e.partitions[0], e.offset)].append(e)
        elif e.kind == "assign":
            held[e.member] |= set(e.partitions)
            for p in e.partitions:
                assigned_at[(e.member, p)].append(e.t)
        elif e.kind in ("revoke", "release"):
            parts = set(e.partitions) if e.kind == "revoke" else set(held[e.member])
            held[e.member] -= parts
            for p in parts:
                handovers[(e.member, p)].append(e.t)
    with tl.lock:
        samples = list(tl.committed)

    def committed_before(p: int, t: float) -> int:
        return max((c.get(p, -1) for at, c in samples if at < t), default=-1)

    problems = []
    for (p, o), deliveries in sorted(by_record.items()):
        first = deliveries[0]
        for again in deliveries[1:]:
            since = max((t for t in assigned_at[(again.member, p)] if t <= again.t), default=0.0)
            committed = committed_before(p, since)
            handed = [t for t in handovers[(first.member, p)] if first.t <= t <= again.t]
            why = []
            if committed > o:
                why.append(f"offset {committed} was committed before it got the partition")
            if handed:
                why.append(f"{first.member} committed on handing the partition over")
            problems.append(
                f"record {first.index} (partition {p} offset {o}) delivered to {first.member} "
                f"at t={first.t:.3f} and again to {again.member} at t={again.t:.3f}"
                + (f": {'; '.join(why)}" if why else "")
            )
    return problems


def excused_at_stop(tl: Timeline, events: list[Event]) -> set[int]:
    """Records kcat itself drops on SIGTERM: librdkafka stores a message's offset when
    poll returns it, and kcat discards a message polled once its run flag is down
    (consume_cb), so the next record of one partition of a stopped kcat is committed
    without being printed. At most one per stopped member, and only that exact record:
    the one after the last delivery of a partition it held when it was signalled."""
    where = {placement: i for i, placement in tl.placements.items()}
    delivered = tl.delivered()
    excused = set()
    for at, held in tl.sigtermed.values():
        dropped = []
        for p in held:
            last = max(
                (
                    e.offset
                    for e in events
                    if e.kind == "deliver" and e.partitions[0] == p and e.t <= at
                ),
                default=-1,
            )
            i = where.get((p, last + 1))
            if i is not None and i not in delivered:
                dropped.append(i)
        if len(dropped) == 1:
            excused |= set(dropped)
    return excused


def all_accounted(tl: Timeline) -> bool:
    return len(tl.delivered() | excused_at_stop(tl, tl.sorted_events())) == TOTAL


def verify(tl: Timeline) -> None:
    events = tl.sorted_events()
    problems = []
    problems += check_ownership(events)
    redelivered = check_redeliveries(tl, events)
    if redelivered:
        problems.append(f"{len(redelivered)} redelivered record(s), e.g.:")
        problems += redelivered[:10]
    excused = excused_at_stop(tl, events)
    if excused:
        print(f"kcat dropped record(s) {sorted(excused)} polled after SIGTERM")
    missing = set(range(TOTAL)) - tl.delivered() - excused
    if missing:
        problems.append(f"{len(missing)} records never delivered, e.g. {sorted(missing)[:10]}")
    if problems:
        moves = [
            f"t={e.t:.3f} {e.member} {e.kind} {list(e.partitions)}"
            for e in events
            if e.kind != "deliver"
        ]
        detail = problems + ["-- commit errors seen by the clients:"] + tl.commit_errors[:10]
        detail += ["-- client errors:"] + tl.client_errors[:10]
        detail += ["-- assignments:"] + moves
        raise AssertionError("\n".join(detail))


# ---------------------------------------------------------------------- producing, sampling


class PacedProducer(threading.Thread):
    """Produces records PRE_PRODUCED..TOTAL-1 in small steps while the group rebalances."""

    def __init__(self, bootstrap: str, topic: str, tl: Timeline) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.tl = bootstrap, topic, tl
        self.error: BaseException | None = None
        self.done = threading.Event()

    def run(self) -> None:
        from confluent_kafka import Producer

        try:
            producer = Producer({**confluent_producer_conf(self.bootstrap), "linger.ms": 5})
            failures: list[str] = []

            def on_delivery(err: Any, msg: Any) -> None:
                if err is not None:
                    failures.append(str(err))
                else:
                    self.tl.placements[index_of_value(msg.value())] = (
                        msg.partition(),
                        msg.offset(),
                    )

            for start in range(PRE_PRODUCED, TOTAL, PACE_BATCH):
                for i in range(start, min(start + PACE_BATCH, TOTAL)):
                    producer.produce(
                        self.topic, value=value_of(i), key=key_of(i), on_delivery=on_delivery
                    )
                producer.poll(0)
                time.sleep(0.05)
            assert producer.flush(30) == 0, "records still unacknowledged after 30 s"
            assert not failures, failures[:3]
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            self.error = exc
        finally:
            self.done.set()


class CommitSampler(threading.Thread):
    """OffsetFetch of the group's committed offsets every 50 ms (librdkafka committed())."""

    def __init__(self, bootstrap: str, group: str, topic: str, tl: Timeline) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.group, self.topic, self.tl = bootstrap, group, topic, tl
        self.stop = threading.Event()

    def run(self) -> None:
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": self.group,
                "enable.auto.commit": False,
            }
        )
        try:
            tps = [TopicPartition(self.topic, p) for p in range(PARTITIONS)]
            while not self.stop.is_set():
                try:
                    got = consumer.committed(tps, timeout=5)
                except Exception as exc:  # noqa: BLE001 - a missed sample only
                    self.tl.client_errors.append(f"sampler: {exc}")
                else:
                    sample = {tp.partition: tp.offset for tp in got if tp.offset >= 0}
                    with self.tl.lock:
                        self.tl.committed.append((time.monotonic(), sample))
                self.stop.wait(0.05)
        finally:
            consumer.close()


# ---------------------------------------------------------------------- members


class Member:
    """One group member consuming in its own thread (kcat: its own process)."""

    def __init__(self, name: str, bootstrap: str, group: str, topic: str, tl: Timeline) -> None:
        self.name, self.bootstrap, self.group, self.topic, self.tl = (
            name,
            bootstrap,
            group,
            topic,
            tl,
        )
        self.assigned: set[int] = set()
        self.stop_requested = threading.Event()
        self.thread = threading.Thread(target=self._guarded, daemon=True)

    def start(self) -> Member:
        self.thread.start()
        return self

    def _guarded(self) -> None:
        try:
            self.run()
        except BaseException as exc:  # noqa: BLE001 - reported by verify()
            self.tl.client_errors.append(f"{self.name}: {exc!r}")

    def run(self) -> None:
        raise NotImplementedError

    def on_assign(self, parts: set[int]) -> None:
        self.tl.add(self.name, "assign", parts)
        self.assigned |= parts

    def on_revoke(self, parts: set[int]) -> None:
        self.tl.add(self.name, "revoke", parts)
        self.assigned -= parts

    def released(self) -> None:
        """The member stops consuming: whatever it held is no longer in use."""
        self.tl.add(self.name, "release", self.assigned)
        self.assigned = set()

    def close(self) -> None:
        """Graceful: the client commits its position and leaves the group."""
        self.stop_requested.set()
        self.thread.join(30)
        assert not self.thread.is_alive(), f"{self.name} did not close within 30 s"


class ConfluentMember(Member):
    def run(self) -> None:
        from confluent_kafka import Consumer

        def on_commit(err: Any, parts: Any) -> None:
            bad = [f"{tp.partition}:{tp.error}" for tp in parts or [] if tp.error is not None]
            if err is not None or bad:
                self.tl.commit_errors.append(f"{self.name} t={time.monotonic():.3f} {err} {bad}")

        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": self.group,
                "auto.offset.reset": "earliest",
                "heartbeat.interval.ms": HEARTBEAT_MS,
                "session.timeout.ms": SESSION_MS,
                "on_commit": on_commit,
            }
        )
        consumer.subscribe(
            [self.topic],
            on_assign=lambda _c, ps: self.on_assign({tp.partition for tp in ps}),
            on_revoke=lambda _c, ps: self.on_revoke({tp.partition for tp in ps}),
            on_lost=lambda _c, ps: self.on_revoke({tp.partition for tp in ps}),
        )
        try:
            while not self.stop_requested.is_set():
                records = []
                for msg in consumer.consume(500, 0.05):
                    if msg.error() is not None:
                        self.tl.client_errors.append(f"{self.name}: {msg.error()}")
                        continue
                    records.append((msg.partition(), msg.offset(), index_of_value(msg.value())))
                self.tl.deliver(self.name, records)
        finally:
            self.released()
            consumer.close()


class KafkaPythonMember(Member):
    def run(self) -> None:
        from kafka import ConsumerRebalanceListener, KafkaConsumer

        member = self

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked: Any) -> None:
                member.on_revoke({tp.partition for tp in revoked})

            def on_partitions_assigned(self, assigned: Any) -> None:
                member.on_assign({tp.partition for tp in assigned})

        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.group,
            auto_offset_reset="earliest",
            heartbeat_interval_ms=HEARTBEAT_MS,
            session_timeout_ms=SESSION_MS,
        )
        consumer.subscribe([self.topic], listener=Listener())
        try:
            while not self.stop_requested.is_set():
                batch = consumer.poll(timeout_ms=50, max_records=500)
                self.tl.deliver(
                    self.name,
                    [
                        (r.partition, r.offset, index_of_value(r.value))
                        for rs in batch.values()
                        for r in rs
                    ],
                )
        finally:
            self.released()
            consumer.close()


class AiokafkaMember(Member):
    def run(self) -> None:
        asyncio.run(asyncio.wait_for(self._consume(), RUN_TIMEOUT_S))

    async def _consume(self) -> None:
        from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener

        member = self

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked: Any) -> None:
                member.on_revoke({tp.partition for tp in revoked})

            def on_partitions_assigned(self, assigned: Any) -> None:
                member.on_assign({tp.partition for tp in assigned})

        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.group,
            auto_offset_reset="earliest",
            heartbeat_interval_ms=HEARTBEAT_MS,
            session_timeout_ms=SESSION_MS,
        )
        consumer.subscribe([self.topic], listener=Listener())
        await consumer.start()
        try:
            while not self.stop_requested.is_set():
                batch = await consumer.getmany(timeout_ms=50, max_records=500)
                self.tl.deliver(
                    self.name,
                    [
                        (r.partition, r.offset, index_of_value(r.value))
                        for rs in batch.values()
                        for r in rs
                    ],
                )
        finally:
            self.released()
            await consumer.stop()


class KcatMember(Member):
    """``kcat -G``: librdkafka's auto commit. Its stdout (unbuffered, written by kcat's
    one consuming thread) gives the deliveries; its stderr, with ``-v``, the assignments
    and revocations its rebalance callback prints, and librdkafka's warnings."""

    def run(self) -> None:
        proc = subprocess.Popen(
            [
                "kcat",
                "-b",
                self.bootstrap,
                "-G",
                self.group,
                self.topic,
                "-u",
                "-v",
                "-f",
                "M %p %o %s\\n",
                "-X",
                "auto.offset.reset=earliest",
                "-X",
                f"heartbeat.interval.ms={HEARTBEAT_MS}",
                "-X",
                f"session.timeout.ms={SESSION_MS}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stderr is not None
        stderr = threading.Thread(target=self._read_stderr, args=(proc.stderr,), daemon=True)
        stderr.start()
        stopper = threading.Thread(target=self._stop_when_asked, args=(proc,), daemon=True)
        stopper.start()
        try:
            for raw in proc.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                if not line.startswith("M "):
                    self.tl.client_errors.append(f"{self.name} stdout: {line}")
                    continue
                _, p, o, value = line.split(" ", 3)
                self.tl.deliver(self.name, [(int(p), int(o), index_of_value(value.encode()))])
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
            stderr.join(10)
            self.released()

    def _stop_when_asked(self, proc: subprocess.Popen[bytes]) -> None:
        self.stop_requested.wait(RUN_TIMEOUT_S)
        if proc.poll() is None:
            self.tl.sigtermed[self.name] = (time.monotonic(), set(self.assigned))
            proc.send_signal(signal.SIGTERM)  # kcat closes the consumer: commit, leave
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()

    def _read_stderr(self, stream: Any) -> None:
        for raw in stream:
            line = raw.decode(errors="replace").rstrip("\n")
            if "rebalanced" in line and ("assigned:" in line or "revoked:" in line):
                parts = {int(p) for p in PARTITION_RE.findall(line.split("rebalanced", 1)[1])}
                if "assigned:" in line:
                    self.on_assign(parts)
                else:
                    self.on_revoke(parts)
            elif "FAIL" in line or "ERROR" in line or "rror" in line:
                self.tl.client_errors.append(f"{self.name}: {line}")


PARTITION_RE = re.compile(r"\[(\d+)\]")


CLIENTS: dict[str, type[Member]] = {
    "confluent": ConfluentMember,
    "kafka-python": KafkaPythonMember,
    "aiokafka": AiokafkaMember,
    "kcat": KcatMember,
}


# ---------------------------------------------------------------------- the scenario


def wait_until(cond: Callable[[], bool], what: str, tl: Timeline, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what}; "
                f"delivered {len(tl.delivered())}/{TOTAL}; errors {tl.client_errors[:5]}"
            )
        time.sleep(0.02)


def covers_all(members: list[Member]) -> bool:
    """Every member holds partitions and together they hold each one once."""
    parts = [set(m.assigned) for m in members]
    return (
        all(parts)
        and sum(map(len, parts)) == PARTITIONS
        and set().union(*parts) == set(range(PARTITIONS))
    )


def run_once(broker: BrokerProcess, kind: type[Member]) -> None:
    topic = f"rb-{uuid.uuid4().hex[:8]}"
    group = f"g-{topic}"
    confluent_create_topic(broker.bootstrap, topic, PARTITIONS)
    tl = Timeline()
    tl.placements.update(confluent_produce(broker.bootstrap, topic, range(PRE_PRODUCED)))
    sampler = CommitSampler(broker.bootstrap, group, topic, tl)
    sampler.start()
    producer = PacedProducer(broker.bootstrap, topic, tl)
    members: list[Member] = []
    failure: AssertionError | None = None
    try:
        a, b = (kind(n, broker.bootstrap, group, topic, tl).start() for n in "ab")
        members += [a, b]
        wait_until(lambda: covers_all([a, b]), "a and b to split the partitions", tl)
        producer.start()
        wait_until(lambda: len(tl.delivered()) >= PRE_PRODUCED, "a and b to consume", tl)
        c = kind("c", broker.bootstrap, group, topic, tl).start()
        members.append(c)
        wait_until(lambda: covers_all([a, b, c]), "c to join and get partitions", tl)
        a.close()  # a graceful leave while records still arrive
        wait_until(lambda: covers_all([b, c]), "b and c to take over a's partitions", tl)
        wait_until(producer.done.is_set, "the producer to finish", tl)
        assert producer.error is None, producer.error
        wait_until(lambda: all_accounted(tl), "every record to be delivered", tl)
    except AssertionError as exc:
        failure = exc  # reported with what verify() finds
    finally:
        for m in members:
            if m.thread.is_alive():
                m.close()
        sampler.stop.set()
        sampler.join(10)
    try:
        verify(tl)
    except AssertionError as exc:
        raise AssertionError(f"{failure or ''}\n{exc}") from None
    if failure is not None:
        raise failure


@pytest.mark.parametrize("client", list(CLIENTS))
def test_commits_during_rebalance_are_kept(rbroker: BrokerProcess, client: str) -> None:
    for run in range(RUNS):
        try:
            run_once(rbroker, CLIENTS[client])
        except AssertionError as exc:
            raise AssertionError(f"{client} run {run + 1}/{RUNS}: {exc}") from None
