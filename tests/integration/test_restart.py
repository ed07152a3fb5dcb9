"""Records survive a broker restart; producing continues at the next offsets.

- SIGTERM: the broker exits 0; on restart over the same log dir every record is there
  byte for byte (key, value, headers, timestamp, offset), the watermarks and
  by-timestamp lookups are the same, and new records get the next offsets.
- SIGKILL with ``log.flush.interval.messages=1``: every record acknowledged with
  acks=all is there after restart, at the offset it was acknowledged with, both when the
  broker is killed idle and when it is killed in the middle of a stream of produces.
"""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from tests.support.broker import BrokerProcess
from tests.support.clients import (
    Consumed,
    Produced,
    confluent_consume,
    confluent_create_topic,
    confluent_produce,
    confluent_producer_conf,
    expected_offset_for_time,
    headers_of,
    index_of_value,
    key_of,
    new_base_ts,
    timestamp_of,
    timestamp_queries,
    value_of,
    verify_consumed,
)

pytestmark = pytest.mark.timeout(300)

TOPIC = "restart"
PARTS = 3
FIRST = 20_000
MORE = 2_000


def produced_view(base_ts: int, acked: dict[int, tuple[int, int]], count: int) -> Produced:
    return Produced(TOPIC, "mixed", count, base_ts, [acked.get(i) for i in range(count)])


def watermarks_and_times(bootstrap: str, base_ts: int, count: int) -> tuple[dict, dict]:
    """Watermarks per partition and the by-timestamp answers for a set of timestamps."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "restart-check", "enable.auto.commit": False}
    )
    try:
        marks = {
            p: consumer.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=10, cached=False)
            for p in range(PARTS)
        }
        times = {}
        for ts in timestamp_queries(base_ts, count):
            got = consumer.offsets_for_times(
                [TopicPartition(TOPIC, p, ts) for p in range(PARTS)], timeout=10
            )
            times[ts] = {tp.partition: tp.offset for tp in got}
        return marks, times
    finally:
        consumer.close()


def check_times_exact(times: dict, records: list[Consumed]) -> None:
    stamps: dict[int, list[int]] = {p: [] for p in range(PARTS)}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        stamps[r.partition].append(r.timestamp)
    for ts, got in times.items():
        want = {}
        for p in range(PARTS):
            off = expected_offset_for_time(stamps[p], ts)
            want[p] = -1 if off is None else off
        assert got == want, f"offsets_for_times({ts})"


def produce_continues(bootstrap: str, base_ts: int, start: int, marks: dict) -> dict:
    """Produce MORE records after a restart: each partition continues at its old end."""
    acked = confluent_produce(bootstrap, TOPIC, range(start, start + MORE), "lz4", base_ts)
    by_part: dict[int, list[int]] = {}
    for _, (p, o) in acked.items():
        by_part.setdefault(p, []).append(o)
    for p, offs in by_part.items():
        high = marks[p][1]
        assert sorted(offs) == list(range(high, high + len(offs))), (
            f"partition {p}: new records at offsets {sorted(offs)[:5]}..., "
            f"expected to continue at {high}"
        )
    return acked


def test_sigterm_restart_keeps_everything(fresh_broker: BrokerProcess) -> None:
    broker = fresh_broker.start()
    confluent_create_topic(broker.bootstrap, TOPIC, partitions=PARTS)
    base_ts = new_base_ts()
    acked = confluent_produce(broker.bootstrap, TOPIC, range(FIRST // 2), "none", base_ts)
    acked |= confluent_produce(broker.bootstrap, TOPIC, range(FIRST // 2, FIRST), "zstd", base_ts)
    before = confluent_consume(broker.bootstrap, TOPIC, PARTS)
    verify_consumed(produced_view(base_ts, acked, FIRST), before, PARTS)
    marks, times = watermarks_and_times(broker.bootstrap, base_ts, FIRST)

    code = broker.stop()
    assert code == 0, f"SIGTERM exit code {code}\n{broker.log_tail()}"
    broker.start()

    after = confluent_consume(broker.bootstrap, TOPIC, PARTS)
    assert sorted(after, key=lambda r: (r.partition, r.offset)) == sorted(
        before, key=lambda r: (r.partition, r.offset)
    )
    assert watermarks_and_times(broker.bootstrap, base_ts, FIRST) == (marks, times)
    check_times_exact(times, after)

    acked |= produce_continues(broker.bootstrap, base_ts, FIRST, marks)
    verify_consumed(
        produced_view(base_ts, acked, FIRST + MORE),
        confluent_consume(broker.bootstrap, TOPIC, PARTS),
        PARTS,
    )


def test_sigkill_idle_keeps_acked_records(fresh_broker: BrokerProcess) -> None:
    fresh_broker.overrides["log.flush.interval.messages"] = "1"
    broker = fresh_broker.start()
    confluent_create_topic(broker.bootstrap, TOPIC, partitions=PARTS)
    base_ts = new_base_ts()
    acked = confluent_produce(broker.bootstrap, TOPIC, range(FIRST), "gzip", base_ts)
    marks, times = watermarks_and_times(broker.bootstrap, base_ts, FIRST)

    broker.kill()
    broker.start()

    records = confluent_consume(broker.bootstrap, TOPIC, PARTS)
    verify_consumed(produced_view(base_ts, acked, FIRST), records, PARTS)
    assert watermarks_and_times(broker.bootstrap, base_ts, FIRST) == (marks, times)
    check_times_exact(times, records)

    acked |= produce_continues(broker.bootstrap, base_ts, FIRST, marks)
    verify_consumed(
        produced_view(base_ts, acked, FIRST + MORE),
        confluent_consume(broker.bootstrap, TOPIC, PARTS),
        PARTS,
    )


def test_sigkill_mid_stream_keeps_acked_records(fresh_broker: BrokerProcess) -> None:
    """Kill the broker while a producer streams small acks=all batches; every record
    acknowledged before the kill is on disk afterwards at its acknowledged offset, the
    partitions have no gaps, and nothing is there twice."""
    fresh_broker.overrides["log.flush.interval.messages"] = "1"
    broker = fresh_broker.start()
    confluent_create_topic(broker.bootstrap, TOPIC, partitions=PARTS)
    base_ts = new_base_ts()
    producer = Producer(
        confluent_producer_conf(
            broker.bootstrap,
            "snappy",
            **{"linger.ms": 2, "batch.num.messages": 50, "message.timeout.ms": 5000},
        )
    )
    acked: dict[int, tuple[int, int]] = {}
    failed: list[int] = []

    def on_delivery(err, msg) -> None:
        i = index_of_value(msg.value())
        if err is None:
            acked[i] = (msg.partition(), msg.offset())
        else:
            failed.append(i)

    stop = threading.Event()
    sent = [0]

    def stream() -> None:
        deadline = time.monotonic() + 60
        i = 0
        while not stop.is_set() and time.monotonic() < deadline and i < 1_000_000:
            try:
                producer.produce(
                    TOPIC,
                    value=value_of(i),
                    key=key_of(i),
                    headers=headers_of(i),
                    timestamp=timestamp_of(base_ts, i),
                    on_delivery=on_delivery,
                )
                i += 1
                sent[0] = i
            except BufferError:
                pass
            producer.poll(0.001 if i % 100 == 0 else 0)

    thread = threading.Thread(target=stream, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while len(acked) < 5_000:
            assert thread.is_alive() and time.monotonic() < deadline, (
                f"only {len(acked)} acks\n{broker.log_tail()}"
            )
            time.sleep(0.01)
        broker.kill()
    finally:
        stop.set()
        thread.join(30)
    # Every outstanding record now fails (the broker is down past message.timeout.ms)
    # before the broker comes back, so nothing is retried into the restarted log.
    assert producer.flush(30) == 0
    acked_before_restart = dict(acked)
    assert len(acked_before_restart) + len(failed) == sent[0]
    broker.start()

    records = confluent_consume(broker.bootstrap, TOPIC, PARTS)
    by_index: dict[int, Consumed] = {}
    for r in records:
        i = index_of_value(r.value or b"")
        assert i not in by_index, f"record {i} stored twice"
        by_index[i] = r
        assert (r.key, r.value, r.headers, r.timestamp) == (
            key_of(i),
            value_of(i),
            headers_of(i),
            timestamp_of(base_ts, i),
        )
    missing = [i for i in acked_before_restart if i not in by_index]
    assert not missing, f"{len(missing)} acknowledged records lost, e.g. {missing[:5]}"
    for i, place in acked_before_restart.items():
        assert (by_index[i].partition, by_index[i].offset) == place, f"record {i}"
    marks = {}
    for p in range(PARTS):
        offs = sorted(r.offset for r in records if r.partition == p)
        assert offs == list(range(len(offs))), f"partition {p} has gaps"
        marks[p] = (0, len(offs))
    produce_continues(broker.bootstrap, base_ts, sent[0], marks)
