"""The log survives what a disk and an operator can do to it, at process level.

- kill -9 mid-stream, ten times: produce with acks=1 to a topic with
  ``flush.messages=1`` while the broker is killed and restarted; every acknowledged
  record is read back byte-identical at its acknowledged offset, nothing twice, offsets
  without gaps (an unacknowledged record may or may not be there).
- Bad files: stray and foreign files and dirs, indexes of the wrong size or with garbage,
  truncated or garbage checkpoints: the broker starts, logs each, serves correct data.
- A full disk (a tmpfs log dir): the produce fails with KAFKA_STORAGE_ERROR, the broker
  stays up and serves reads, and produces succeed again once there is room.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.support.broker import BrokerProcess
from tests.support.clients import (
    Consumed,
    confluent_consume,
    headers_of,
    index_of_value,
    key_of,
    timestamp_of,
    value_of,
)

pytestmark = pytest.mark.timeout(240)

TIMEOUT = 30


def create(bootstrap: str, topic: str, partitions: int = 1, **configs: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    fut = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1, config=configs)],
        operation_timeout=TIMEOUT,
    )[topic]
    fut.result(TIMEOUT)


def check_record(r: Consumed, base_ts: int) -> int:
    """The record is one the tests produced, byte for byte; returns its index."""
    i = index_of_value(r.value or b"")
    assert (r.key, r.value, r.headers, r.timestamp) == (
        key_of(i),
        value_of(i),
        headers_of(i),
        timestamp_of(base_ts, i),
    ), f"record {i} at {r.partition}/{r.offset} differs from what was produced"
    return i


# ------------------------------------------------------------------------ kill -9


def test_kill_9_mid_stream_ten_times_keeps_every_acked_record(
    fresh_broker: BrokerProcess,
) -> None:
    rounds, per_round, parts = 10, 1000, 2
    topic = "crash-rounds"
    broker = fresh_broker.start()
    create(broker.bootstrap, topic, parts, **{"flush.messages": "1", "segment.bytes": "16384"})
    base_ts = int(time.time() * 1000) - 600_000
    acked: dict[int, tuple[int, int]] = {}
    next_index = 0
    codecs = ["none", "lz4", "zstd", "gzip", "snappy"]
    for round_ in range(rounds):
        producer = Producer(
            {
                "bootstrap.servers": broker.bootstrap,
                "acks": 1,
                "enable.idempotence": False,
                "retries": 0,  # a retry after the kill could store a record twice
                "linger.ms": 2,
                "batch.num.messages": 20,
                "compression.type": codecs[round_ % len(codecs)],
                "message.timeout.ms": 1000,  # unsent records fail fast once it is down
            }
        )
        round_acked: dict[int, tuple[int, int]] = {}
        failed: list[int] = []

        def on_delivery(err, msg, round_acked=round_acked, failed=failed) -> None:  # noqa: ANN001
            i = index_of_value(msg.value())
            if err is None:
                round_acked[i] = (msg.partition(), msg.offset())
            else:
                failed.append(i)

        stop = threading.Event()
        start_index = next_index
        sent = [start_index]

        def stream(producer=producer, stop=stop, sent=sent, on_delivery=on_delivery) -> None:  # noqa: ANN001
            i = sent[0]
            deadline = time.monotonic() + 60
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    producer.produce(
                        topic,
                        key=key_of(i),
                        value=value_of(i),
                        headers=headers_of(i),
                        timestamp=timestamp_of(base_ts, i),
                        on_delivery=on_delivery,
                    )
                    i += 1
                    sent[0] = i
                except BufferError:
                    pass
                producer.poll(0.001 if i % 50 == 0 else 0)

        thread = threading.Thread(target=stream, daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 60
            while len(round_acked) < per_round:
                assert thread.is_alive() and time.monotonic() < deadline, (
                    f"round {round_}: only {len(round_acked)} acks\n{broker.log_tail()}"
                )
                time.sleep(0.005)
            broker.kill()  # SIGKILL while the producer keeps sending
        finally:
            stop.set()
            thread.join(30)
        # Every outstanding record fails before the broker returns: none is retried.
        assert producer.flush(30) == 0
        assert len(round_acked) + len(failed) == sent[0] - start_index
        acked.update(round_acked)
        next_index = sent[0]
        broker.start()

    records = confluent_consume(broker.bootstrap, topic, parts)
    by_index: dict[int, Consumed] = {}
    for r in records:
        i = check_record(r, base_ts)
        assert i not in by_index, f"record {i} stored twice"
        by_index[i] = r
    missing = [i for i in acked if i not in by_index]
    assert not missing, f"{len(missing)} acknowledged records lost, e.g. {missing[:5]}"
    for i, place in acked.items():
        assert (by_index[i].partition, by_index[i].offset) == place, f"record {i}"
    for p in range(parts):
        mine = sorted((r for r in records if r.partition == p), key=lambda r: r.offset)
        assert [r.offset for r in mine] == list(range(len(mine))), f"partition {p} has gaps"
        indices = [index_of_value(r.value or b"") for r in mine]
        assert indices == sorted(indices), f"partition {p} is out of produce order"
    assert len(acked) >= rounds * per_round
    segments = list((broker.data_dir / f"{topic}-0").glob("*.log"))
    assert len(segments) > 1  # recovery crossed segment boundaries


# ------------------------------------------------------------------------ bad files


def produce_indices(bootstrap: str, topic: str, indices: range, base_ts: int) -> None:
    producer = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, "batch.size": 4000}
    )
    errors: list = []
    for i in indices:
        producer.produce(
            topic,
            key=key_of(i),
            value=value_of(i),
            headers=headers_of(i),
            timestamp=timestamp_of(base_ts, i),
            on_delivery=lambda e, m: errors.append(e) if e else None,
        )
    assert producer.flush(TIMEOUT) == 0 and not errors, errors[:3]


def watermarks(bootstrap: str, topic: str, partition: int = 0) -> tuple[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "storage-marks"})
    try:
        return consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=10, cached=False
        )
    finally:
        consumer.close()


def sorted_records(records: list[Consumed]) -> list[Consumed]:
    return sorted(records, key=lambda r: (r.partition, r.offset))


@pytest.mark.parametrize("stop", ["clean", "kill"])
def test_bad_files_in_the_log_dir(fresh_broker: BrokerProcess, stop: str) -> None:
    topic, parts = "bad-files", 2
    broker = fresh_broker.start()
    create(broker.bootstrap, topic, parts, **{"segment.bytes": "8192"})
    base_ts = int(time.time() * 1000) - 600_000
    produce_indices(broker.bootstrap, topic, range(600), base_ts)
    before = sorted_records(confluent_consume(broker.bootstrap, topic, parts))
    assert len(before) == 600
    assert broker.stop() == 0

    # 1. Stray and foreign entries, damaged indexes (after a clean stop, so the indexes
    #    are sanity-checked rather than rebuilt by a full recovery).
    data = broker.data_dir
    p0, p1 = data / f"{topic}-0", data / f"{topic}-1"
    (data / "notes.txt").write_text("an operator's notes")
    (data / "not-a-partition").mkdir()
    (data / "lost+found").mkdir()
    (p0 / "junk.bin").write_bytes(os.urandom(100))
    (p0 / "00000000000000000007.log.bak").write_bytes(b"old copy")
    (p0 / "subdir").mkdir()
    first = sorted(p0.glob("*.index"))[0]
    with open(first, "r+b") as f:
        f.truncate(5)  # not a whole number of entries
    with open(sorted(p0.glob("*.timeindex"))[0], "ab") as f:
        f.write(b"1234567")
    second = sorted(p1.glob("*.index"))[0]
    second.write_bytes(os.urandom(max(second.stat().st_size, 64) // 8 * 8))  # garbage
    (data / "cleaner-offset-checkpoint").write_text("7\nnot a checkpoint")
    (p1 / "leader-epoch-checkpoint").write_text("0\n1\nnot numbers\n")
    broker.start()
    after = sorted_records(confluent_consume(broker.bootstrap, topic, parts))
    assert after == before
    for r in after:
        check_record(r, base_ts)
    produce_indices(broker.bootstrap, topic, range(600, 700), base_ts)
    if stop == "clean":
        assert broker.stop() == 0
    else:
        broker.kill()

    # 2. Checkpoints: truncated, garbage, wrong counts (a full recovery follows).
    rp = data / "recovery-point-offset-checkpoint"
    if rp.exists():
        rp.write_bytes(rp.read_bytes()[: len(rp.read_bytes()) // 2])
    else:
        rp.write_text("0\n3\n")
    (data / "log-start-offset-checkpoint").write_bytes(os.urandom(64))
    (data / "replication-offset-checkpoint").write_text("0\n5\nbad-files 0 3\n")
    broker.start()
    everything = sorted_records(confluent_consume(broker.bootstrap, topic, parts))
    assert len(everything) == 700
    assert [r for r in everything if index_of_value(r.value or b"") < 600] == before
    for p in range(parts):
        offsets = [r.offset for r in everything if r.partition == p]
        assert offsets == list(range(len(offsets)))
    for r in everything:
        check_record(r, base_ts)
    produce_indices(broker.bootstrap, topic, range(700, 710), base_ts)
    assert len(confluent_consume(broker.bootstrap, topic, parts)) == 710

    log_text = broker.log_path.read_text(errors="replace")
    for needle in (
        "notes.txt",
        "not-a-partition",
        "junk.bin",
        "00000000000000000007.log.bak",
        f"Rebuilding indexes of {first.with_suffix('.log')}",
        f"Rebuilding indexes of {second.with_suffix('.log')}",
        "cleaner-offset-checkpoint",
        "leader-epoch-checkpoint",
        "recovery-point-offset-checkpoint",
        "log-start-offset-checkpoint",
        "replication-offset-checkpoint",
    ):
        assert needle in log_text, f"the broker log does not mention {needle}"
    assert broker.stop() == 0


# ------------------------------------------------------------------------ full disk


@pytest.fixture
def tmpfs_dir(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs, so the log dir really fills up (needs root, as on CI and dev machines)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        for _ in range(20):
            if subprocess.run(["umount", str(mount)], check=False).returncode == 0:
                break
            time.sleep(0.2)


def test_full_disk_fails_produce_with_storage_error_and_serves_reads(tmpfs_dir: Path) -> None:
    """Tiny segments (two records each) with an index entry per batch make the disk run
    out at every step of an append: the log write, a segment roll, or an index page the
    log write left no room for (a store into an unallocatable mapped page would be a
    SIGBUS). Each time: KAFKA_STORAGE_ERROR, the broker stays up and keeps serving."""
    broker = BrokerProcess(tmpfs_dir)  # its own log goes to the parent dir, not the tmpfs
    try:
        broker.start()
        topic = "full-disk"
        create(
            broker.bootstrap,
            topic,
            1,
            **{"segment.bytes": "2400", "index.interval.bytes": "0", "segment.index.bytes": "4096"},
        )
        base_ts = int(time.time() * 1000) - 600_000
        # Read once before the disk fills (the group coordinator creates its topic).
        produce_indices(broker.bootstrap, topic, range(1), base_ts)
        confluent_consume(broker.bootstrap, topic, 1)
        # Ballast to free, piece by piece, so the disk fills up again and again.
        ballast = []
        for n in range(24):
            path = tmpfs_dir / f"ballast-{n}"
            try:
                path.write_bytes(b"\0" * (128 * 1024))
            except OSError:
                break
            ballast.append(path)
        producer = Producer(
            {
                "bootstrap.servers": broker.bootstrap,
                "acks": "all",
                "retries": 0,
                "linger.ms": 0,
                "enable.idempotence": False,
            }
        )
        acked: dict[int, int] = {}
        errors: list[KafkaError] = []

        def on_delivery(err, msg) -> None:  # noqa: ANN001
            if err is None:
                acked[index_of_value(msg.value())] = msg.offset()
            else:
                errors.append(err)

        i = 1

        def fill_up() -> None:
            """Single ~1 KB records until the disk is full."""
            nonlocal i
            errors.clear()
            for _ in range(2000):
                producer.produce(
                    topic,
                    key=key_of(i),
                    value=value_of(i) + os.urandom(900),
                    timestamp=timestamp_of(base_ts, i),
                    on_delivery=on_delivery,
                )
                i += 1
                producer.flush(TIMEOUT)
                if errors:
                    return
            raise AssertionError("the disk never filled up")

        for _ in range(min(len(ballast), 12)):
            fill_up()
            assert [e.code() for e in errors] == [KafkaError.KAFKA_STORAGE_ERROR], errors
            assert broker.proc is not None and broker.proc.poll() is None, broker.log_tail()
            assert watermarks(broker.bootstrap, topic)[1] == max(acked.values()) + 1
            ballast.pop().unlink()

        # Reads still work: every acked record, byte for byte, contiguous offsets.
        records = confluent_consume(broker.bootstrap, topic, 1)
        assert [r.offset for r in records] == list(range(len(records)))
        assert len(records) == len(acked) + 1
        for r in records[1:]:
            n = index_of_value(r.value or b"")
            assert r.offset == acked[n] and r.key == key_of(n) and r.value.startswith(value_of(n))
        # Room again: produces succeed at the next offset.
        high = len(records)
        for path in ballast:
            path.unlink()
        acked.clear()
        errors.clear()
        producer.produce(topic, key=key_of(i), value=value_of(i), on_delivery=on_delivery)
        producer.flush(TIMEOUT)
        assert not errors and acked == {i: high}, (errors, acked)
        assert "No space left on device" in broker.log_path.read_text(errors="replace")
        assert broker.stop() == 0
    finally:
        broker.kill()
