"""Transactions with stock clients: confluent-kafka (librdkafka), aiokafka and kafkajs.

For each client (issue #5's definition of done):
- one transaction committed and one aborted: a read_committed consumer sees exactly the
  committed records, a read_uncommitted one sees both;
- a second producer with the same transactional id fences the first;
- a consume-transform-produce loop with send_offsets_to_transaction copies a topic
  exactly once although the broker is killed (SIGKILL) and restarted in the middle.

What was written is always checked a second way too, independently of the client: a
read_committed Fetch over the wire with KIP-98's client-side filter applied
(tests/support/txn_wire.read_committed_values). kafkajs comes from npm
(tests/js/package.json, installed by ``make install-test``); its scenarios are
tests/js/scenarios.js.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kio.schema.errors import ErrorCode

from tests.support.broker import ROOT, BrokerProcess
from tests.support.clients import confluent_produce, key_of, value_of
from tests.support.txn_wire import create_topic, offset_fetch, read_committed_values
from tests.support.wire import KafkaWire

pytestmark = pytest.mark.timeout(180)

JS_DIR = ROOT / "tests" / "js"
CLIENTS = ["confluent-kafka", "aiokafka", "kafkajs"]
EOS_RECORDS = 300


def kafkajs_installed() -> bool:
    return shutil.which("node") is not None and (JS_DIR / "node_modules" / "kafkajs").is_dir()


def require_client(client: str) -> None:
    """A missing client is a set-up defect, never a skip: `make test` installs kafkajs."""
    if client == "kafkajs" and not kafkajs_installed():
        pytest.fail("kafkajs is not installed: run `make install-test` (npm ci in tests/js)")


def run_node(
    config: dict[str, Any], on_line: Callable[[str], None] | None = None, timeout: float = 120
) -> dict[str, Any]:
    """Run one kafkajs scenario; its RESULT line as a dict (fails on ERROR or timeout)."""
    proc = subprocess.Popen(
        ["node", str(JS_DIR / "scenarios.js"), json.dumps(config)],
        cwd=JS_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip())
            if on_line is not None:
                on_line(line.rstrip())
        proc.wait()
    finally:
        timer.cancel()
    results = [json.loads(x[len("RESULT ") :]) for x in lines if x.startswith("RESULT ")]
    assert proc.returncode == 0 and results, "kafkajs scenario failed:\n" + "\n".join(lines[-30:])
    return results[-1]


def connect(broker: BrokerProcess) -> KafkaWire:
    return KafkaWire("127.0.0.1", broker.port, timeout=15)


def new_topics(broker: BrokerProcess, *names: str) -> None:
    with connect(broker) as conn:
        for name in names:
            create_topic(conn, name)


# -- one committed, one aborted transaction ------------------------------------------------

COMMITTED = [b"committed-%d" % i for i in range(5)]
ABORTED = [b"aborted-%d" % i for i in range(4)]


def confluent_read(bootstrap: str, topic: str, isolation: str, expected: int) -> list[bytes]:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"read-{topic}-{isolation}",
            "isolation.level": isolation,
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        values: list[bytes] = []
        deadline = time.monotonic() + 20
        quiet_until = None
        while time.monotonic() < deadline:
            msgs = consumer.consume(100, 0.2)
            values += [m.value() for m in msgs if m.error() is None]
            if len(values) >= expected:
                quiet_until = quiet_until or time.monotonic() + 0.5  # nothing more may come
                if time.monotonic() > quiet_until:
                    break
        return values
    finally:
        consumer.close()


def confluent_commit_abort(bootstrap: str, topic: str) -> tuple[list[bytes], list[bytes]]:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"{topic}-txn"})
    producer.init_transactions(30)
    producer.begin_transaction()
    for v in COMMITTED:
        producer.produce(topic, value=v)
    producer.commit_transaction(30)
    producer.begin_transaction()
    for v in ABORTED:
        producer.produce(topic, value=v)
    producer.flush(30)  # written to the log, then aborted
    producer.abort_transaction(30)
    return (
        confluent_read(bootstrap, topic, "read_committed", len(COMMITTED)),
        confluent_read(bootstrap, topic, "read_uncommitted", len(COMMITTED) + len(ABORTED)),
    )


async def aiokafka_read(bootstrap: str, topic: str, isolation: str, expected: int) -> list[bytes]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level=isolation, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        values: list[bytes] = []
        deadline = time.monotonic() + 20
        quiet_until = None
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            values += [m.value for msgs in batch.values() for m in msgs]
            if len(values) >= expected:
                quiet_until = quiet_until or time.monotonic() + 0.5
                if time.monotonic() > quiet_until:
                    break
        return values
    finally:
        await consumer.stop()


def aiokafka_commit_abort(bootstrap: str, topic: str) -> tuple[list[bytes], list[bytes]]:
    from aiokafka import AIOKafkaProducer

    async def run() -> tuple[list[bytes], list[bytes]]:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{topic}-txn")
        await producer.start()
        try:
            async with producer.transaction():
                for v in COMMITTED:
                    await producer.send(topic, v)
            await producer.begin_transaction()
            futures = [await producer.send(topic, v) for v in ABORTED]
            await asyncio.gather(*futures)  # in the log before the abort
            await producer.abort_transaction()
        finally:
            await producer.stop()
        return (
            await aiokafka_read(bootstrap, topic, "read_committed", len(COMMITTED)),
            await aiokafka_read(
                bootstrap, topic, "read_uncommitted", len(COMMITTED) + len(ABORTED)
            ),
        )

    return asyncio.run(run())


def kafkajs_commit_abort(bootstrap: str, topic: str) -> tuple[list[bytes], list[bytes]]:
    result = run_node(
        dict(
            scenario="commit-abort",
            brokers=bootstrap,
            topic=topic,
            txn_id=f"{topic}-txn",
            committed=[v.decode() for v in COMMITTED],
            aborted=[v.decode() for v in ABORTED],
            deadline_s=60,
        )
    )
    return (
        [v.encode() for v in result["readCommitted"]],
        [v.encode() for v in result["readUncommitted"]],
    )


@pytest.mark.parametrize("client", CLIENTS)
def test_read_committed_sees_only_the_committed_transaction(
    broker: BrokerProcess, client: str
) -> None:
    require_client(client)
    topic = f"txn-visibility-{client}"
    new_topics(broker, topic)
    run = {
        "confluent-kafka": confluent_commit_abort,
        "aiokafka": aiokafka_commit_abort,
        "kafkajs": kafkajs_commit_abort,
    }[client]
    committed, uncommitted = run(broker.bootstrap, topic)
    assert committed == COMMITTED
    assert uncommitted == COMMITTED + ABORTED
    with connect(broker) as conn:
        assert [v for _, v in read_committed_values(conn, topic)] == COMMITTED


# -- fencing ------------------------------------------------------------------------------


def confluent_fence(bootstrap: str, topic: str) -> str:
    from confluent_kafka import KafkaException, Producer

    conf = {"bootstrap.servers": bootstrap, "transactional.id": f"{topic}-txn"}
    first = Producer(conf)
    first.init_transactions(30)
    first.begin_transaction()
    first.produce(topic, value=b"zombie")
    first.flush(30)
    second = Producer(conf)
    second.init_transactions(30)  # fences the first, aborting its transaction
    fenced = ""
    try:
        first.produce(topic, value=b"zombie-2")
        first.commit_transaction(30)
    except KafkaException as e:
        err = e.args[0]
        assert err.fatal(), err
        fenced = err.name()
    second.begin_transaction()
    second.produce(topic, value=b"successor")
    second.commit_transaction(30)
    return fenced


def aiokafka_fence(bootstrap: str, topic: str) -> str:
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    async def run() -> str:
        first = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{topic}-txn")
        second = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{topic}-txn")
        await first.start()
        fenced = ""
        try:
            await first.begin_transaction()
            await (await first.send(topic, b"zombie"))
            await second.start()  # InitProducerId: fences the first
            try:
                await (await first.send(topic, b"zombie-2"))
                await first.commit_transaction()
            except KafkaError as e:
                fenced = type(e).__name__
            async with second.transaction():
                await second.send(topic, b"successor")
        finally:
            for p in (first, second):
                try:
                    await asyncio.wait_for(p.stop(), 10)
                except Exception:  # the fenced producer may refuse to stop cleanly
                    pass
        return fenced

    return asyncio.run(run())


def kafkajs_fence(bootstrap: str, topic: str) -> str:
    result = run_node(dict(scenario="fence", brokers=bootstrap, topic=topic, txn_id=f"{topic}-txn"))
    return result["fencedError"] or ""


@pytest.mark.parametrize("client", CLIENTS)
def test_second_producer_fences_the_first(broker: BrokerProcess, client: str) -> None:
    require_client(client)
    topic = f"txn-fence-{client}"
    new_topics(broker, topic)
    run = {
        "confluent-kafka": confluent_fence,
        "aiokafka": aiokafka_fence,
        "kafkajs": kafkajs_fence,
    }[client]
    fenced = run(broker.bootstrap, topic)
    # librdkafka: _FENCED; aiokafka: ProducerFenced; kafkajs: the partition's answer
    assert fenced in ("_FENCED", "ProducerFenced", "INVALID_PRODUCER_EPOCH", "PRODUCER_FENCED")
    with connect(broker) as conn:
        assert [v for _, v in read_committed_values(conn, topic)] == [b"successor"]


# -- exactly once across a broker crash --------------------------------------------------


class Progress:
    def __init__(self) -> None:
        self.copied = 0
        self.restarts = 0
        self.errors: list[str] = []


def confluent_eos(
    bootstrap: str, src: str, dst: str, group: str, count: int, progress: Progress
) -> None:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
            "reconnect.backoff.max.ms": 500,
        }
    )
    consumer.subscribe([src])
    producer = None
    rewind = False
    deadline = time.monotonic() + 120
    try:
        while progress.copied < count and time.monotonic() < deadline:
            try:
                if producer is None:
                    producer = Producer(
                        {
                            "bootstrap.servers": bootstrap,
                            "transactional.id": f"{group}-txn",
                            "transaction.timeout.ms": 30_000,
                            "reconnect.backoff.max.ms": 500,
                            # With the only broker gone librdkafka (2.16) re-bootstraps
                            # (KIP-899) and decommissions its handle of broker 0, which its
                            # group-coordinator cache still holds: the next TxnOffsetCommit
                            # then waits for that handle forever (send_offsets_to_transaction
                            # ignores its timeout). Kafka would see the same client hang.
                            "metadata.recovery.strategy": "none",
                        }
                    )
                    producer.init_transactions(30)
                if rewind:  # back to the committed offsets after an aborted transaction
                    for tp in consumer.committed(consumer.assignment(), 10):
                        tp.offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
                        consumer.seek(tp)
                    rewind = False
                msgs = [m for m in consumer.consume(20, 0.3) if m.error() is None]
                if not msgs:
                    continue
                producer.begin_transaction()
                for m in msgs:
                    producer.produce(dst, key=m.key(), value=b"copy-" + m.value())
                positions = consumer.position(consumer.assignment())
                producer.send_offsets_to_transaction(
                    positions, consumer.consumer_group_metadata(), 10
                )
                producer.commit_transaction(30)
                progress.copied = max(tp.offset for tp in positions)
            except KafkaException as e:
                # Abort what can be aborted, then start over with a new producer (its
                # init fences the old one and aborts a transaction left open) from the
                # committed offsets.
                progress.errors.append(str(e))
                progress.restarts += 1
                rewind = True
                if producer is not None:
                    try:
                        producer.abort_transaction(5)
                    except KafkaException:
                        pass
                    producer = None
                time.sleep(0.2)
    finally:
        consumer.close()


def aiokafka_eos(
    bootstrap: str, src: str, dst: str, group: str, count: int, progress: Progress
) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    async def stop(client: Any) -> None:
        try:
            await asyncio.wait_for(client.stop(), 10)
        except Exception:
            pass

    async def run() -> None:
        consumer = AIOKafkaConsumer(
            src,
            bootstrap_servers=bootstrap,
            group_id=group,
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=6000,
            heartbeat_interval_ms=500,
            max_poll_records=20,
        )
        await consumer.start()
        producer = None
        rewind = False
        deadline = time.monotonic() + 120
        try:
            while progress.copied < count and time.monotonic() < deadline:
                try:
                    if producer is None:
                        producer = AIOKafkaProducer(
                            bootstrap_servers=bootstrap,
                            transactional_id=f"{group}-txn",
                            transaction_timeout_ms=30_000,
                            request_timeout_ms=10_000,
                        )
                        await producer.start()
                    if rewind:
                        for tp in consumer.assignment():
                            offset = await consumer.committed(tp)
                            consumer.seek(tp, offset if offset is not None else 0)
                        rewind = False
                    batch = await consumer.getmany(timeout_ms=300, max_records=20)
                    if not batch:
                        continue
                    offsets = {tp: msgs[-1].offset + 1 for tp, msgs in batch.items() if msgs}
                    async with producer.transaction():
                        for msgs in batch.values():
                            for m in msgs:
                                await producer.send(dst, key=m.key, value=b"copy-" + m.value)
                        await producer.send_offsets_to_transaction(offsets, group)
                    progress.copied = max(offsets.values())
                except Exception as e:  # noqa: BLE001 - any failure: start over
                    progress.errors.append(f"{type(e).__name__}: {e}")
                    progress.restarts += 1
                    rewind = True
                    if producer is not None:
                        await stop(producer)
                        producer = None
                    await asyncio.sleep(0.2)
        finally:
            if producer is not None:
                await stop(producer)
            await stop(consumer)

    asyncio.run(run())


def kafkajs_eos(
    bootstrap: str, src: str, dst: str, group: str, count: int, progress: Progress
) -> None:
    def on_line(line: str) -> None:
        if line.startswith("progress "):
            progress.copied = int(line.split()[1])
        elif line.startswith("restart "):
            progress.restarts += 1
            progress.errors.append(line)

    result = run_node(
        dict(
            scenario="eos",
            brokers=bootstrap,
            in_topic=src,
            out_topic=dst,
            group=group,
            txn_id=f"{group}-txn",
            count=count,
            deadline_s=120,
        ),
        on_line,
        timeout=150,
    )
    progress.copied = result["copied"]


@pytest.mark.parametrize("client", CLIENTS)
def test_exactly_once_copy_across_a_broker_kill(fresh_broker: BrokerProcess, client: str) -> None:
    require_client(client)
    fresh_broker.overrides.update(
        {
            "transaction.state.log.num.partitions": "3",
            "offsets.topic.num.partitions": "3",
        }
    )
    fresh_broker.start()
    src, dst, group = f"eos-in-{client}", f"eos-out-{client}", f"eos-{client}"
    new_topics(fresh_broker, src, dst)
    confluent_produce(
        fresh_broker.bootstrap,
        src,
        range(EOS_RECORDS),
        **{"linger.ms": 0, "batch.num.messages": 10},
    )
    loop = {
        "confluent-kafka": confluent_eos,
        "aiokafka": aiokafka_eos,
        "kafkajs": kafkajs_eos,
    }[client]
    progress = Progress()
    failure: list[BaseException] = []

    def work() -> None:
        try:
            loop(fresh_broker.bootstrap, src, dst, group, EOS_RECORDS, progress)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            failure.append(e)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    deadline = time.monotonic() + 60
    while progress.copied < EOS_RECORDS // 3:
        assert worker.is_alive() and time.monotonic() < deadline, (progress.copied, failure)
        time.sleep(0.005)
    copied_at_kill = progress.copied
    fresh_broker.kill()  # SIGKILL, mid-loop
    time.sleep(0.3)
    fresh_broker.start()
    worker.join(150)
    assert not worker.is_alive(), f"the copy loop did not finish: {progress.copied}"
    assert not failure, failure
    assert copied_at_kill < EOS_RECORDS, "the broker was killed after the copy had finished"
    assert progress.copied == EOS_RECORDS, (progress.copied, progress.errors[-5:])
    expected = [(key_of(i), b"copy-" + value_of(i)) for i in range(EOS_RECORDS)]
    with connect(fresh_broker) as conn:
        assert read_committed_values(conn, dst) == expected  # each record exactly once
        assert offset_fetch(conn, group, [(src, 0)], require_stable=True) == {
            (src, 0): (EOS_RECORDS, ErrorCode.none)
        }


def test_kafkajs_is_installed_by_make() -> None:
    """The Makefile's install-test installs the pinned kafkajs (npm ci in tests/js)."""
    makefile = (ROOT / "Makefile").read_text()
    assert "npm ci" in makefile and "tests/js" in makefile
    package = json.loads((JS_DIR / "package.json").read_text())
    assert package["dependencies"]["kafkajs"] == "2.2.4"
    assert Path(JS_DIR / "package-lock.json").is_file()
