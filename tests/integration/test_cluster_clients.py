"""Stock clients across leader changes in a 3-broker cluster (issue #9).

For each of confluent-kafka, kafka-python, aiokafka, kafkajs and kcat: a topic with RF=3,
min.insync.replicas=2 and 3 partitions; an acks=all producer (idempotent, retries on)
sends a steady stream of distinct values while the leader of partition 0 is changed
twice: its broker is killed with SIGKILL (then restarted) and, once the ISR is whole
again, the new leader's broker is stopped with SIGTERM (controlled shutdown, then
restarted). A consumer of the same client consumes meanwhile.

Every error the client reports is recorded (delivery callbacks, send exceptions, error
callbacks, the client's own warning/error logs, kcat's and kafkajs's stderr/logs) and
must be a retriable one: leadership errors, NOT_ENOUGH_REPLICAS, timeouts, broken
connections. Afterwards everything is read back with the same client: each acknowledged
value is there exactly once (at its acknowledged offset where the client says it),
nothing appears that was never sent, and the live consumer received every acknowledged
value, including those produced after the leader changes.

Per client: confluent-kafka, kafka-python and aiokafka consumers assign all partitions;
kafkajs has no manual assignment, so its live consumer is a group member (its
coordinator may be the broker that dies); its errors are the error/warn entries of its
logger, typed with kafkajs's own protocol error table (tests/js/scenarios.js,
"leader-changes"). kcat (librdkafka) takes ``-X acks=all -X enable.idempotence=true``;
it has no per-message callback with the value, so it runs one ``kcat -P -p N`` producer
per partition: an idempotent producer reports deliveries of one partition in order, so
the k-th delivery report (``-v -v``) of partition N is the k-th line written to it.
The tests share one module-scoped cluster, each with its own topic.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.broker import ROOT
from tests.support.cluster import Cluster, PartitionView

pytestmark = pytest.mark.timeout(240)

PARTITIONS = 3
JS_DIR = ROOT / "tests" / "js"
WARMUP, BETWEEN, TAIL = 300, 200, 200  # acknowledged records to wait for at each step

# Error names (whatever the client calls them) that say "try again": leadership moving,
# the ISR shrinking below min.insync.replicas, timeouts and lost connections.
RETRIABLE_NAMES = {
    "NOT_LEADER_FOR_PARTITION",
    "NOT_LEADER_OR_FOLLOWER",
    "LEADER_NOT_AVAILABLE",
    "NOT_ENOUGH_REPLICAS",
    "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
    "REQUEST_TIMED_OUT",
    "NETWORK_EXCEPTION",
    "FENCED_LEADER_EPOCH",
    "UNKNOWN_LEADER_EPOCH",
    "NOT_COORDINATOR",
    "COORDINATOR_NOT_AVAILABLE",
    "COORDINATOR_LOAD_IN_PROGRESS",
    "_TRANSPORT",
    "_ALL_BROKERS_DOWN",
    "_TIMED_OUT",
    "NETWORK",
}


@dataclass
class Seen:
    where: str
    what: str
    retriable: bool


@dataclass
class Outcome:
    """What one client did; offsets are -1 where the client does not report them."""

    acked: list[tuple[int, int, str]] = field(default_factory=list)
    attempted: set[str] = field(default_factory=set)
    errors: list[Seen] = field(default_factory=list)
    live: set[str] = field(default_factory=set)
    final: list[tuple[int, int, str]] = field(default_factory=list)
    mark: int = -1  # index of the first value sent after the leader changes
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ack(self, partition: int, offset: int, value: str) -> None:
        with self.lock:
            self.acked.append((partition, offset, value))

    def error(self, where: str, what: str, retriable: bool) -> None:
        with self.lock:
            self.errors.append(Seen(where, what, retriable))

    @property
    def count(self) -> int:
        return len(self.acked)


def index_of(value: str) -> int:
    return int(value.rsplit("-", 1)[1])


def value_of(client: str, i: int) -> str:
    return f"{client}-{i:07d}"


# ----------------------------------------------------------------------------- cluster


@pytest.fixture(scope="module")
def module_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("cluster"), 3)
    try:
        yield c.start()
    finally:
        c.stop()


@pytest.fixture
def cluster(module_cluster: Cluster) -> Cluster:
    """The module's cluster with all three brokers up (a failed test may leave one down)."""
    for b in module_cluster.brokers.values():
        if b.proc is None or b.proc.poll() is not None:
            b.start()
    module_cluster.wait_for_brokers(set(module_cluster.brokers), timeout=60)
    return module_cluster


def make_topic(cluster: Cluster, name: str) -> None:
    cluster.create_topic(name, PARTITIONS, 3, {"min.insync.replicas": "2"})
    for p in range(PARTITIONS):
        cluster.wait_for_isr(name, p, {1, 2, 3}, timeout=60)


@dataclass
class Change:
    how: str
    victim: int
    before: PartitionView
    after: PartitionView
    unavailable_s: float


def wait_progress(progress: Callable[[], int], n: int, what: str, timeout: float = 45.0) -> None:
    start = progress()
    deadline = time.monotonic() + timeout
    while progress() < start + n:
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: fewer than {n} records acked in {timeout}s")
        time.sleep(0.05)


def change_leaders(cluster: Cluster, topic: str, progress: Callable[[], int]) -> list[Change]:
    """Move partition 0's leadership twice: kill -9 its leader, then SIGTERM the next one.

    Between steps the producer must make progress; each stopped broker is restarted and
    the whole ISR restored before the next step.
    """
    changes = []
    wait_progress(progress, WARMUP, "warm-up")
    for how in ("SIGKILL", "SIGTERM"):
        before = cluster.partition(topic, 0)
        victim = before.leader
        began = time.monotonic()
        if how == "SIGKILL":
            cluster.brokers[victim].kill()
        else:
            assert cluster.brokers[victim].stop() == 0
        others = set(cluster.brokers) - {victim}
        after = cluster.wait_for_leader(topic, 0, allowed=others, timeout=45)
        changes.append(Change(how, victim, before, after, time.monotonic() - began))
        wait_progress(progress, BETWEEN, f"after the {how} of broker {victim}")
        cluster.brokers[victim].start()
        for p in range(PARTITIONS):
            cluster.wait_for_isr(topic, p, {1, 2, 3}, timeout=60)
        wait_progress(progress, BETWEEN, f"after broker {victim} rejoined")
    return changes


class ChaosThread(threading.Thread):
    """change_leaders in a thread, for clients whose loops run in the test's thread."""

    def __init__(self, cluster: Cluster, topic: str, progress: Callable[[], int]) -> None:
        super().__init__(daemon=True)
        self.args_ = (cluster, topic, progress)
        self.changes: list[Change] = []
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            self.changes = change_leaders(*self.args_)
        except BaseException as exc:  # re-raised in the test's thread
            self.failure = exc

    def result(self, timeout: float = 200) -> list[Change]:
        self.join(timeout)
        assert not self.is_alive(), "the leader changes did not finish"
        if self.failure is not None:
            raise self.failure
        return self.changes


# ----------------------------------------------------------------------------- checks


def verify(client: str, out: Outcome, changes: list[Change]) -> None:
    summary = (
        f"{client}: {len(out.attempted)} sent, {out.count} acked, {len(out.final)} read back, "
        f"{len(out.errors)} errors reported; "
        + "; ".join(
            f"{c.how} broker {c.victim}: leader {c.before.leader}->{c.after.leader} "
            f"epoch {c.before.leader_epoch}->{c.after.leader_epoch} "
            f"in {c.unavailable_s:.1f}s"
            for c in changes
        )
    )
    print(summary)
    kinds = Counter(f"{e.where}: {e.what}"[:220] for e in out.errors)
    for what, n in kinds.most_common(40):
        print(f"  {n:5d} x {what}")
    # Two leader changes, each to another broker with a higher leader epoch.
    assert [c.how for c in changes] == ["SIGKILL", "SIGTERM"]
    for c in changes:
        assert c.after.leader != c.victim and c.after.leader_epoch > c.before.leader_epoch, c
    # Only retriable errors.
    fatal = [e for e in out.errors if not e.retriable]
    assert not fatal, fatal[:10]
    # Nothing acknowledged lost or duplicated, nothing invented.
    assert out.count >= WARMUP + 4 * BETWEEN, summary
    counts = Counter(v for _, _, v in out.final)
    dupes = [v for v, n in counts.items() if n > 1]
    assert not dupes, dupes[:10]
    missing = [a for a in out.acked if counts[a[2]] != 1]
    assert not missing, (len(missing), missing[:10])
    at = {(p, o): v for p, o, v in out.final}
    misplaced = [a for a in out.acked if a[1] >= 0 and at.get((a[0], a[1])) != a[2]]
    assert not misplaced, misplaced[:10]
    strangers = set(counts) - out.attempted
    assert not strangers, sorted(strangers)[:10]
    # The live consumer kept going: it received every acknowledged record, including
    # those produced after the leader changes.
    assert out.mark > 0
    tail = [v for _, _, v in out.acked if index_of(v) >= out.mark]
    assert len(tail) >= TAIL, (len(tail), summary)
    tail_partitions = {p for p, _, v in out.acked if index_of(v) >= out.mark}
    assert tail_partitions == set(range(PARTITIONS)), tail_partitions
    unseen_tail = [v for v in tail if v not in out.live]
    assert not unseen_tail, (len(unseen_tail), unseen_tail[:10])
    unseen = [v for _, _, v in out.acked if v not in out.live]
    assert not unseen, (len(unseen), unseen[:10])


def wait_for(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class LogErrors(logging.Handler):
    """Warnings and errors a Python client logs while it retries, classified by the error
    class they name (kafka.errors / aiokafka.errors: ``retriable``) or, failing that, by
    being about a connection."""

    NAME = re.compile(r"\b([A-Z]\w*(?:Error|Exception))\b")
    NETWORK = re.compile(
        r"connect|disconnect|connection|timed out|timeout|Broker is not available|"
        r"refused|reset by peer|Node \d+ not ready|EOF|network data|socket",
        re.IGNORECASE,
    )

    def __init__(self, out: Outcome, errors_module: Any) -> None:
        super().__init__(logging.WARNING)
        self.out = out
        self.errors = errors_module

    # Not an error: kafka-python's warning that its own I/O loop ran a task slowly.
    DIAGNOSTIC = re.compile(r"ran for [\d.]+s \(>[\d.]+s threshold\)")

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if self.DIAGNOSTIC.search(text):
            return
        names = [n for n in self.NAME.findall(text) if hasattr(self.errors, n)]
        if names:
            ok = all(
                getattr(getattr(self.errors, n), "retriable", False)
                or issubclass(getattr(self.errors, n), OSError)
                or "Connection" in n
                or "Timeout" in n
                for n in names
            )
        else:
            ok = bool(self.NETWORK.search(text))
        self.out.error(f"log:{record.name}", text, ok)


def capture_logs(name: str, out: Outcome, errors_module: Any) -> Callable[[], None]:
    logger = logging.getLogger(name)
    handler = LogErrors(out, errors_module)
    logger.addHandler(handler)
    return lambda: logger.removeHandler(handler)


# ----------------------------------------------------------------------------- confluent


def confluent_retriable(err: Any) -> bool:
    return bool(err.retriable()) or err.name() in RETRIABLE_NAMES


# Right after a leader change the new leader may answer ListOffsets OFFSET_NOT_AVAILABLE
# (78) until its high watermark catches up (as Kafka does): the final readers retry it.
END_OFFSET_RETRY_S = 30


def confluent_end_offset(reader: Any, tp: Any) -> int:
    from confluent_kafka import KafkaException

    deadline = time.monotonic() + END_OFFSET_RETRY_S
    while True:
        try:
            return reader.get_watermark_offsets(tp, 10)[1]
        except KafkaException as exc:
            if exc.args[0].code() != 78 or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


async def aiokafka_end_offsets(consumer: Any, tps: list[Any]) -> dict[Any, int]:
    import aiokafka.errors

    deadline = time.monotonic() + END_OFFSET_RETRY_S
    while True:
        try:
            return await consumer.end_offsets(tps)
        except aiokafka.errors.UnknownError:  # aiokafka has no class for error 78
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


def test_confluent_kafka(cluster: Cluster) -> None:
    from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

    client, topic = "confluent", "leaders-confluent"
    make_topic(cluster, topic)
    out = Outcome()

    def on_error(where: str) -> Callable[[Any], None]:
        return lambda err: out.error(where, f"{err.name()}: {err.str()}", confluent_retriable(err))

    def delivered(err: Any, msg: Any) -> None:
        if err is None:
            out.ack(msg.partition(), msg.offset(), msg.value().decode())
        else:
            out.error("delivery", f"{err.name()}: {err.str()}", confluent_retriable(err))

    producer = Producer(
        {
            "bootstrap.servers": cluster.bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "message.timeout.ms": 120_000,
            "linger.ms": 5,
            "error_cb": on_error("producer"),
        }
    )
    stop = threading.Event()

    def consume() -> None:
        c = Consumer(
            {
                "bootstrap.servers": cluster.bootstrap,
                "group.id": f"{topic}-live",
                "enable.auto.commit": False,
                "error_cb": on_error("consumer"),
            }
        )
        c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        try:
            while not stop.is_set():
                m = c.poll(0.2)
                if m is None:
                    continue
                if m.error():
                    if m.error().code() != KafkaError._PARTITION_EOF:
                        on_error("consumer")(m.error())
                    continue
                out.live.add(m.value().decode())
        finally:
            c.close()

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    chaos = ChaosThread(cluster, topic, lambda: out.count)
    chaos.start()
    i = 0

    def send_until(done: Callable[[], bool]) -> None:
        nonlocal i
        while not done():
            for _ in range(5):
                v = value_of(client, i)
                with out.lock:
                    out.attempted.add(v)
                producer.produce(topic, value=v.encode(), on_delivery=delivered)
                i += 1
            producer.poll(0.01)

    send_until(lambda: not chaos.is_alive())
    changes = chaos.result()
    with out.lock:
        out.mark = len(out.attempted)
    deadline = time.monotonic() + 60
    send_until(
        lambda: (
            sum(index_of(v) >= out.mark for _, _, v in out.acked) >= TAIL
            or time.monotonic() > deadline
        )
    )
    assert producer.flush(120) == 0
    acked = {v for _, _, v in out.acked}
    wait_for("the live consumer", lambda: acked <= out.live, 30)
    stop.set()
    consumer.join(30)

    reader = Consumer(
        {"bootstrap.servers": cluster.bootstrap, "group.id": f"{topic}-final", "error_cb": print}
    )
    ends = {p: confluent_end_offset(reader, TopicPartition(topic, p)) for p in range(3)}
    reader.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    position = dict.fromkeys(range(PARTITIONS), 0)
    deadline = time.monotonic() + 60
    while any(position[p] < ends[p] for p in ends) and time.monotonic() < deadline:
        m = reader.poll(0.5)
        if m is None or m.error():
            continue
        out.final.append((m.partition(), m.offset(), m.value().decode()))
        position[m.partition()] = m.offset() + 1
    reader.close()
    verify(client, out, changes)


# ----------------------------------------------------------------------------- kafka-python


def test_kafka_python(cluster: Cluster) -> None:
    import kafka.errors
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    client, topic = "kafka-python", "leaders-kafka-python"
    make_topic(cluster, topic)
    out = Outcome()
    release = capture_logs("kafka", out, kafka.errors)

    def failed(exc: BaseException) -> None:
        out.error("errback", repr(exc), bool(getattr(exc, "retriable", False)))

    producer = KafkaProducer(
        bootstrap_servers=cluster.bootstrap.split(","),
        acks="all",
        enable_idempotence=True,
        delivery_timeout_ms=120_000,
        request_timeout_ms=10_000,
        linger_ms=5,
    )
    stop = threading.Event()
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]

    def consume() -> None:
        c = KafkaConsumer(
            bootstrap_servers=cluster.bootstrap.split(","),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        c.assign(tps)
        c.seek_to_beginning()
        try:
            while not stop.is_set():
                try:
                    for records in c.poll(timeout_ms=200).values():
                        out.live.update(r.value.decode() for r in records)
                except kafka.errors.KafkaError as exc:
                    out.error("consumer", repr(exc), bool(exc.retriable))
        finally:
            c.close()

    try:
        consumer = threading.Thread(target=consume, daemon=True)
        consumer.start()
        chaos = ChaosThread(cluster, topic, lambda: out.count)
        chaos.start()
        i = 0

        def send_until(done: Callable[[], bool]) -> None:
            nonlocal i
            while not done():
                for _ in range(5):
                    v = value_of(client, i)
                    i += 1
                    with out.lock:
                        out.attempted.add(v)
                    try:
                        fut = producer.send(topic, value=v.encode())
                    except kafka.errors.KafkaError as exc:
                        out.error("send", repr(exc), bool(exc.retriable))
                        continue
                    fut.add_callback(
                        lambda md, v=v: out.ack(md.partition, md.offset, v)
                    ).add_errback(failed)
                time.sleep(0.01)

        send_until(lambda: not chaos.is_alive())
        changes = chaos.result()
        with out.lock:
            out.mark = len(out.attempted)
        deadline = time.monotonic() + 60
        send_until(
            lambda: (
                sum(index_of(v) >= out.mark for _, _, v in out.acked) >= TAIL
                or time.monotonic() > deadline
            )
        )
        producer.flush(120)
        producer.close(10)
        acked = {v for _, _, v in out.acked}
        wait_for("the live consumer", lambda: acked <= out.live, 30)
        stop.set()
        consumer.join(30)
    finally:
        stop.set()
        release()

    reader = KafkaConsumer(
        bootstrap_servers=cluster.bootstrap.split(","),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    reader.assign(tps)
    reader.seek_to_beginning()
    ends = reader.end_offsets(tps)
    deadline = time.monotonic() + 60
    while any(reader.position(tp) < ends[tp] for tp in tps) and time.monotonic() < deadline:
        for tp, records in reader.poll(timeout_ms=500).items():
            out.final.extend((tp.partition, r.offset, r.value.decode()) for r in records)
    reader.close()
    verify(client, out, changes)


# ----------------------------------------------------------------------------- aiokafka


def test_aiokafka(cluster: Cluster) -> None:
    import aiokafka.errors
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    client, topic = "aiokafka", "leaders-aiokafka"
    make_topic(cluster, topic)
    out = Outcome()
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]

    async def scenario() -> list[Change]:
        producer = AIOKafkaProducer(
            bootstrap_servers=cluster.bootstrap,
            acks="all",
            enable_idempotence=True,
            request_timeout_ms=10_000,
            linger_ms=5,
        )
        await producer.start()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=cluster.bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        consumer.assign(tps)
        await consumer.seek_to_beginning()
        stop = asyncio.Event()

        async def consume() -> None:
            while not stop.is_set():
                try:
                    batches = await consumer.getmany(timeout_ms=200)
                except aiokafka.errors.KafkaError as exc:
                    out.error("consumer", repr(exc), bool(exc.retriable))
                    continue
                for records in batches.values():
                    out.live.update(r.value.decode() for r in records)

        def done(fut: asyncio.Future, v: str) -> None:
            exc = fut.exception()
            if exc is None:
                md = fut.result()
                out.ack(md.partition, md.offset, v)
            else:
                out.error("send", repr(exc), bool(getattr(exc, "retriable", False)))

        i = 0

        async def send_until(finished: Callable[[], bool]) -> None:
            nonlocal i
            while not finished():
                for _ in range(5):
                    v = value_of(client, i)
                    out.attempted.add(v)
                    i += 1
                    try:
                        fut = await producer.send(topic, value=v.encode())
                    except aiokafka.errors.KafkaError as exc:
                        out.error("send", repr(exc), bool(exc.retriable))
                        continue
                    fut.add_done_callback(lambda f, v=v: done(f, v))
                await asyncio.sleep(0.01)

        reader = asyncio.create_task(consume())
        chaos = asyncio.create_task(
            asyncio.to_thread(change_leaders, cluster, topic, lambda: out.count)
        )
        try:
            await send_until(chaos.done)
            changes = chaos.result()
            out.mark = len(out.attempted)
            deadline = time.monotonic() + 60
            await send_until(
                lambda: (
                    sum(index_of(v) >= out.mark for _, _, v in out.acked) >= TAIL
                    or time.monotonic() > deadline
                )
            )
            await asyncio.wait_for(producer.flush(), 120)
            acked = {v for _, _, v in out.acked}
            deadline = time.monotonic() + 30
            while not acked <= out.live and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await asyncio.wait_for(reader, 30)
            await producer.stop()
            await consumer.stop()

        final = AIOKafkaConsumer(
            bootstrap_servers=cluster.bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await final.start()
        try:
            final.assign(tps)
            await final.seek_to_beginning()
            ends = await aiokafka_end_offsets(final, tps)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                positions = [await final.position(tp) for tp in tps]
                if all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True)):
                    break
                for tp, records in (await final.getmany(timeout_ms=500)).items():
                    out.final.extend((tp.partition, r.offset, r.value.decode()) for r in records)
        finally:
            await final.stop()
        return changes

    release = capture_logs("aiokafka", out, aiokafka.errors)
    try:
        changes = asyncio.run(scenario())
    finally:
        release()
    verify(client, out, changes)


# ----------------------------------------------------------------------------- kafkajs


def test_kafkajs(cluster: Cluster, tmp_path: Path) -> None:
    if not (JS_DIR / "node_modules" / "kafkajs").is_dir():
        pytest.fail("kafkajs is not installed: run `make install-test` (npm ci in tests/js)")
    client, topic = "kafkajs", "leaders-kafkajs"
    make_topic(cluster, topic)
    stop_file = tmp_path / "stop"
    config = dict(
        scenario="leader-changes",
        brokers=cluster.bootstrap,
        topic=topic,
        partitions=PARTITIONS,
        prefix=client,
        stop_file=str(stop_file),
        result_file=str(tmp_path / "result.json"),
        deadline_s=200,
    )
    proc = subprocess.Popen(
        ["node", str(JS_DIR / "scenarios.js"), json.dumps(config)],
        cwd=JS_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    progress = {"acked": 0, "next": 0}
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("acked "):
                _, acked, nxt = line.split()
                progress.update(acked=int(acked), next=int(nxt))
            else:
                lines.append(line.rstrip())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        changes = change_leaders(cluster, topic, lambda: progress["acked"])
        mark = progress["next"]
        wait_progress(lambda: progress["acked"], 2 * TAIL, "after the leader changes")
        stop_file.touch()
        proc.wait(150)
        reader.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    results = [json.loads(x[len("RESULT ") :]) for x in lines if x.startswith("RESULT ")]
    assert proc.returncode == 0 and results, "kafkajs failed:\n" + "\n".join(lines[-30:])
    res = json.loads((tmp_path / "result.json").read_text())
    assert len(res["acked"]) == results[-1]["acked"]
    out = Outcome(mark=mark)
    out.acked = [(p, o, v) for p, o, v in res["acked"]]
    out.attempted = {value_of(client, i) for i in range(progress["next"])}
    out.errors = [
        Seen(
            e["source"], f"{e['type']}: {e['text']}", e["retriable"] or e["type"] in RETRIABLE_NAMES
        )
        for e in res["errors"]
    ]
    out.live = set(res["live"])
    out.final = [(p, o, v) for p, o, v in res["final"]]
    verify(client, out, changes)


# ----------------------------------------------------------------------------- kcat

KCAT_DELIVERED = re.compile(r"Message delivered to partition (\d+) \(offset (-?\d+)\)")
KCAT_FAILED = re.compile(r"Delivery failed for message: (.*)")
# librdkafka's own log lines: %<level>|<time>|<FACILITY>|<name>| <text>
RDKAFKA_LOG = re.compile(r"^%(\d)\|[\d.]+\|(\w+)\|[^|]*\|\s*(.*)$")
RDKAFKA_NETWORK = re.compile(
    r"Connection refused|Disconnected|Connect to .* failed|connection reset|"
    r"Broker transport failure|timed out|brokers are down|Receive failed|Send failed",
    re.IGNORECASE,
)


def kcat_reports_error(line: str) -> bool:
    """kcat's own errors (``% ERROR: ...``) and librdkafka's warnings and errors (log
    level 4 or less); not kcat's informational ``% ...`` lines."""
    if line.startswith("% ERROR") or "Delivery failed" in line:
        return True
    m = RDKAFKA_LOG.match(line)
    return m is not None and int(m.group(1)) <= 4


def kcat_line_retriable(text: str) -> bool:
    m = RDKAFKA_LOG.match(text)
    body = m.group(3) if m else text
    if RDKAFKA_NETWORK.search(body):
        return True
    return any(name.lstrip("_") in body.upper().replace(" ", "_") for name in RETRIABLE_NAMES)


class KcatProducer:
    """``kcat -P -p <partition>``: the k-th delivery report is the k-th line written."""

    def __init__(self, bootstrap: str, topic: str, partition: int, out: Outcome) -> None:
        self.partition, self.out = partition, out
        self.sent: list[str] = []
        self.reports = 0
        self.proc = subprocess.Popen(
            ["kcat", "-P", "-b", bootstrap, "-t", topic, "-p", str(partition), "-v", "-v"]
            + ["-X", "enable.idempotence=true", "-X", "acks=all"]
            + ["-X", "message.timeout.ms=120000", "-X", "linger.ms=5"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def send(self, value: str) -> None:
        assert self.proc.stdin is not None
        with self.out.lock:
            self.sent.append(value)
            self.out.attempted.add(value)
        self.proc.stdin.write(value + "\n")
        self.proc.stdin.flush()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            line = line.rstrip()
            self.lines.append(line)
            if m := KCAT_DELIVERED.search(line):
                assert int(m.group(1)) == self.partition, line
                with self.out.lock:
                    value = self.sent[self.reports]
                self.reports += 1
                self.out.ack(self.partition, int(m.group(2)), value)
            elif m := KCAT_FAILED.search(line):
                self.reports += 1
                self.out.error(f"kcat -P -p {self.partition}", line, kcat_line_retriable(line))
            elif kcat_reports_error(line):
                self.out.error(f"kcat -P -p {self.partition}", line, kcat_line_retriable(line))

    def close(self, timeout: float = 120) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
            self.reader.join(10)


def test_kcat(cluster: Cluster) -> None:
    client, topic = "kcat", "leaders-kcat"
    make_topic(cluster, topic)
    out = Outcome()
    fmt = r"%p|%o|%s\n"
    live = subprocess.Popen(
        ["kcat", "-C", "-b", cluster.bootstrap, "-t", topic, "-o", "beginning", "-u", "-f", fmt],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def read_live() -> None:
        assert live.stdout is not None
        for line in live.stdout:
            out.live.add(line.rstrip("\n").split("|", 2)[2])

    def read_live_errors() -> None:
        assert live.stderr is not None
        for line in live.stderr:
            line = line.rstrip()
            if kcat_reports_error(line):
                out.error("kcat -C", line, kcat_line_retriable(line))

    readers = [threading.Thread(target=f, daemon=True) for f in (read_live, read_live_errors)]
    for t in readers:
        t.start()
    producers = [KcatProducer(cluster.bootstrap, topic, p, out) for p in range(PARTITIONS)]
    try:
        chaos = ChaosThread(cluster, topic, lambda: out.count)
        chaos.start()
        i = 0

        def send_until(done: Callable[[], bool]) -> None:
            nonlocal i
            while not done():
                for _ in range(6):
                    producers[i % PARTITIONS].send(value_of(client, i))
                    i += 1
                time.sleep(0.01)

        send_until(lambda: not chaos.is_alive())
        changes = chaos.result()
        out.mark = len(out.attempted)
        deadline = time.monotonic() + 60
        send_until(
            lambda: (
                sum(index_of(v) >= out.mark for _, _, v in out.acked) >= TAIL
                or time.monotonic() > deadline
            )
        )
        codes = [p.close() for p in producers]
        assert codes == [0] * PARTITIONS, (codes, [p.lines[-5:] for p in producers])
        assert [p.reports for p in producers] == [len(p.sent) for p in producers]
        acked = {v for _, _, v in out.acked}
        wait_for("the live consumer", lambda: acked <= out.live, 30)
    finally:
        for p in producers:
            if p.proc.poll() is None:
                p.proc.kill()
                p.proc.wait(10)
        if live.poll() is None:
            live.terminate()
            try:
                live.wait(10)
            except subprocess.TimeoutExpired:
                live.kill()
                live.wait(10)
        for t in readers:
            t.join(10)
    # kcat -e stops at each partition's high watermark: first let a new leader's catch up
    # with what was acknowledged (ListOffsets answers 78 until it has).
    from confluent_kafka import Consumer, TopicPartition

    probe = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": f"{topic}-probe"})
    try:
        for p in range(PARTITIONS):
            confluent_end_offset(probe, TopicPartition(topic, p))
    finally:
        probe.close()
    res = subprocess.run(
        ["kcat", "-C", "-b", cluster.bootstrap, "-t", topic, "-o", "beginning", "-e", "-q"]
        + ["-f", fmt],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    for line in res.stdout.splitlines():
        p, o, v = line.split("|", 2)
        out.final.append((int(p), int(o), v))
    verify(client, out, changes)
