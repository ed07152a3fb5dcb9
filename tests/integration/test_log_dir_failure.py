"""A failed log dir takes only its own partitions offline (KIP-112, Kafka's JBOD).

Failure is injected as Kafka's own tests do (``TestUtils.causeLogDirFailure``): the log
dir is replaced by a file, then something must touch it — a checkpoint (every
``log.flush.offset.checkpoint.interval.ms``) or a segment roll (small ``segment.bytes``).
Stock clients then see KAFKA_STORAGE_ERROR for the partitions in that dir only.
"""

from __future__ import annotations

import datetime
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka.admin import KafkaAdminClient
from kio.static.primitive import i8, i32, i64

from tests.support.broker import BrokerProcess
from tests.support.txn_wire import fetch
from tests.support.wire import KafkaWire, request_module

LIST_OFFSETS, DELETE_RECORDS = 2, 21

STORAGE_ERROR = 56


def fail_dir(path: Path) -> None:
    """Kafka's TestUtils.causeLogDirFailure: the dir becomes a file."""
    shutil.rmtree(path)
    path.write_bytes(b"")


def partition_dirs(dirs: list[Path], topic: str) -> dict[int, Path]:
    found = {}
    for d in dirs:
        for part in d.glob(f"{topic}-*"):
            found[int(part.name.rsplit("-", 1)[1])] = d
    return found


def produce_one(bootstrap: str, topic: str, partition: int, value: bytes) -> KafkaError | None:
    """Produce one record; the delivery error (None when acknowledged)."""
    errors: list[KafkaError | None] = []
    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "message.timeout.ms": 4000,
            "retries": 0,
            "acks": "all",
        }
    )
    p.produce(topic, value=value, partition=partition, on_delivery=lambda e, m: errors.append(e))
    p.flush(15)
    assert len(errors) == 1, "no delivery report"
    return errors[0]


def list_offsets(topic: str, partitions: list[int]) -> Any:
    m = request_module(LIST_OFFSETS, 7)
    return m.ListOffsetsRequest(
        replica_id=i32(-1),
        isolation_level=i8(0),
        topics=(
            m.ListOffsetsTopic(
                name=topic,
                partitions=tuple(
                    m.ListOffsetsPartition(
                        partition_index=i32(p), timestamp=i64(-1), current_leader_epoch=i32(-1)
                    )
                    for p in partitions
                ),
            ),
        ),
    )


def delete_records(topic: str, partitions: list[int]) -> Any:
    """Delete nothing (offset 0): only the per-partition error matters."""
    m = request_module(DELETE_RECORDS, 2)
    return m.DeleteRecordsRequest(
        topics=(
            m.DeleteRecordsTopic(
                name=topic,
                partitions=tuple(
                    m.DeleteRecordsPartition(partition_index=i32(p), offset=i64(0))
                    for p in partitions
                ),
            ),
        ),
        timeout=datetime.timedelta(seconds=5),
    )


def wait_for(what: str, check, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


@pytest.fixture
def two_dir_broker(tmp_path: Path):  # type: ignore[no-untyped-def]
    dirs = [tmp_path / "dir-a", tmp_path / "dir-b"]
    broker = BrokerProcess(
        tmp_path / "data",
        overrides={
            "log.dirs": ",".join(map(str, dirs)),
            "num.partitions": "2",
            "log.flush.offset.checkpoint.interval.ms": "300",
            "offsets.topic.num.partitions": "1",
        },
    ).start()
    try:
        yield broker, dirs
    finally:
        broker.kill()


def test_failed_dir_takes_only_its_partitions_offline(two_dir_broker) -> None:  # type: ignore[no-untyped-def]
    broker, dirs = two_dir_broker
    topic = f"jbod-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=2, config={"segment.bytes": "2000"})])[
        topic
    ].result(15)
    for i in range(20):
        for p in (0, 1):
            assert produce_one(broker.bootstrap, topic, p, f"before-{p}-{i}".encode()) is None
    placed = partition_dirs(dirs, topic)
    assert set(placed) == {0, 1} and placed[0] != placed[1]
    bad_p = next(p for p, d in placed.items() if d == dirs[1])  # dirs[0] holds metadata
    good_p = 1 - bad_p

    fail_dir(dirs[1])
    # The checkpoint (every 300 ms) finds the dir gone; the broker logs it once.
    wait_for("the failure logged", lambda: "failed and is now offline" in broker.log_tail(400))

    err = produce_one(broker.bootstrap, topic, bad_p, b"after-bad")
    assert err is not None and err.code() == KafkaError.KAFKA_STORAGE_ERROR, err
    assert produce_one(broker.bootstrap, topic, good_p, b"after-good") is None

    # Fetch: the good partition reads everything, the failed one answers storage error.
    c = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": f"g-{uuid.uuid4().hex[:6]}",
            "enable.auto.commit": False,
        }
    )
    try:
        c.assign([TopicPartition(topic, good_p, 0)])
        values = []
        deadline = time.monotonic() + 20
        while len(values) < 21 and time.monotonic() < deadline:
            m = c.poll(1)
            if m is not None and m.error() is None:
                values.append(m.value())
        assert values == [f"before-{good_p}-{i}".encode() for i in range(20)] + [b"after-good"]
    finally:
        c.close()

    # Fetch, ListOffsets and DeleteRecords on the wire: storage error for the failed partition only.
    with KafkaWire(port=broker.port) as conn:
        assert fetch(conn, topic, bad_p).error_code == STORAGE_ERROR
        good = fetch(conn, topic, good_p)
        assert good.error_code == 0 and len(good.values) == 21
        resp = conn.request(list_offsets(topic, [bad_p, good_p]))
        codes = {int(p.partition_index): int(p.error_code) for p in resp.topics[0].partitions}
        assert codes == {bad_p: STORAGE_ERROR, good_p: 0}
        resp = conn.request(delete_records(topic, [bad_p, good_p]))
        codes = {int(p.partition_index): int(p.error_code) for p in resp.topics[0].partitions}
        assert codes == {bad_p: STORAGE_ERROR, good_p: 0}

    # DescribeLogDirs: the failed dir is KAFKA_STORAGE_ERROR with no topics.
    ka = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        (answer,) = ka.describe_log_dirs()
        by_dir = {r["log_dir"]: r for r in answer["log_dirs"]}
        bad = by_dir[os.path.abspath(dirs[1])]
        assert bad["error_code"] == STORAGE_ERROR and bad["topics"] == []
        good = by_dir[os.path.abspath(dirs[0])]
        assert good["error_code"] == 0
        assert topic in {t["name"] for t in good["topics"]}
    finally:
        ka.close()

    errors = [line for line in broker.log_tail(2000).splitlines() if " ERROR " in line]
    naming = [line for line in errors if os.path.abspath(dirs[1]) in line]
    assert len(naming) == 1, errors
    assert broker.proc is not None and broker.proc.poll() is None  # still serving


def test_roll_in_failed_dir_and_all_dirs_failing_halts(two_dir_broker) -> None:  # type: ignore[no-untyped-def]
    broker, dirs = two_dir_broker
    broker.kill()
    # No periodic checkpoint this time: only a segment roll can find the failure.
    broker.overrides["log.flush.offset.checkpoint.interval.ms"] = "600000"
    broker.start()
    topic = f"roll-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=2, config={"segment.bytes": "1000"})])[
        topic
    ].result(15)
    for p in (0, 1):
        assert produce_one(broker.bootstrap, topic, p, b"x" * 100) is None
    placed = partition_dirs(dirs, topic)
    bad_p = next(p for p, d in placed.items() if d == dirs[1])
    fail_dir(dirs[1])
    # Appends land in the open segment until it must roll; the roll fails.
    codes = []
    for _ in range(30):
        err = produce_one(broker.bootstrap, topic, bad_p, b"y" * 300)
        codes.append(None if err is None else err.code())
        if err is not None:
            break
    assert codes[-1] == KafkaError.KAFKA_STORAGE_ERROR, codes
    assert "failed and is now offline" in broker.log_tail(400)

    # The last dir failing halts the broker as Kafka does.
    fail_dir(dirs[0])
    good_p = 1 - bad_p
    for _ in range(30):
        if broker.proc.poll() is not None:
            break
        try:
            produce_one(broker.bootstrap, topic, good_p, b"z" * 300)
        except (AssertionError, KafkaException):
            pass
    code = broker.proc.wait(20)
    assert code == 1
    tail = broker.log_tail(200)
    assert "Shutdown broker because" in tail and "failed" in tail
    broker.proc = None


def test_unusable_dir_at_start_up(tmp_path: Path) -> None:
    """A dir that cannot be used at start-up is offline; the broker starts with the others;
    with no usable dir it refuses to start."""
    dirs = [tmp_path / "dir-a", tmp_path / "dir-b"]
    dirs[1].write_bytes(b"not a dir")
    broker = BrokerProcess(
        tmp_path / "data",
        overrides={"log.dirs": ",".join(map(str, dirs)), "num.partitions": "2"},
    ).start()
    try:
        topic = f"start-{uuid.uuid4().hex[:8]}"
        for p in (0, 1):
            assert produce_one(broker.bootstrap, topic, p, b"v") is None
        assert set(partition_dirs([dirs[0]], topic)) == {0, 1}
        ka = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        try:
            (answer,) = ka.describe_log_dirs()
            codes = {r["log_dir"]: r["error_code"] for r in answer["log_dirs"]}
            assert codes == {os.path.abspath(dirs[0]): 0, os.path.abspath(dirs[1]): STORAGE_ERROR}
        finally:
            ka.close()
    finally:
        broker.stop()

    only_bad = BrokerProcess(tmp_path / "data2", overrides={"log.dirs": str(dirs[1])})
    with pytest.raises(RuntimeError, match="can be created or validated"):
        only_bad.start(timeout=15)
