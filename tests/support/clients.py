"""Shared pieces for the stock-client integration tests.

Every record the tests produce is derived from its index ``i`` (key, value, headers,
timestamp), so whatever a client consumes can be checked byte for byte, and its index
recovered from the value alone. Keys repeat (``KEYS`` distinct keys) so that
"same key -> same partition" is a real check. Values and header values are plain
ASCII without ``|``, ``,``, ``=``, ``:`` or newlines, so kcat's text formats can carry
them unambiguously.
"""

from __future__ import annotations

import bisect
import re
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

N_RECORDS = 100_000
PARTITIONS = 4
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
KEYS = 1000
_FILLER = b"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ" * 2
_VALUE_PREFIX = re.compile(rb"^value-(\d{6})-")

Header = tuple[str, bytes]


def key_of(i: int) -> bytes:
    return b"key-%04d" % (i % KEYS)


def value_of(i: int) -> bytes:
    """Distinct per index, variable length (12..134 bytes), compressible."""
    return b"value-%06d-%s" % (i, _FILLER[: (i * 7) % 123])


def headers_of(i: int) -> list[Header]:
    """Per-record headers; a repeated name and an empty value on purpose."""
    return [
        ("idx", b"%06d" % i),
        ("tag", b"t%d" % (i % 7)),
        ("tag", b"dup"),
        ("empty", b""),
    ]


def timestamp_of(base_ts: int, i: int) -> int:
    """Strictly increasing, with gaps so that odd timestamps fall between records."""
    return base_ts + 2 * i


def new_base_ts() -> int:
    """Ten minutes ago: inside any retention and timestamp-difference limit."""
    return int(time.time() * 1000) - 600_000


def index_of_value(value: bytes) -> int:
    m = _VALUE_PREFIX.match(value)
    if m is None:
        raise AssertionError(f"value not produced by these tests: {value[:40]!r}")
    return int(m.group(1))


@dataclass
class Produced:
    """What a test produced to one topic, for the consume and offset checks."""

    topic: str
    codec: str
    count: int
    base_ts: int | None  # None: the client chose the timestamps (kcat)
    placements: list[tuple[int, int] | None] | None = None  # i -> (partition, offset) acked
    headers: Callable[[int], list[Header]] = headers_of

    def expected_layout(self) -> dict[int, list[int]]:
        """partition -> record indices in offset order, from the delivery reports."""
        assert self.placements is not None
        by_part: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for i, place in enumerate(self.placements):
            assert place is not None, f"record {i} was never acknowledged"
            by_part[place[0]].append((place[1], i))
        layout = {}
        for p, pairs in by_part.items():
            pairs.sort()
            offsets = [o for o, _ in pairs]
            assert offsets == list(range(len(pairs))), (
                f"delivery reports for partition {p} are not offsets 0..{len(pairs) - 1}: "
                f"first={offsets[:5]} last={offsets[-5:]}"
            )
            layout[p] = [i for _, i in pairs]
        return layout


@dataclass(frozen=True)
class Consumed:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[Header]
    timestamp: int


@dataclass
class Layout:
    """What was consumed, per partition, in offset order."""

    indices: dict[int, list[int]] = field(default_factory=dict)
    timestamps: dict[int, list[int]] = field(default_factory=dict)

    def counts(self) -> dict[int, int]:
        return {p: len(v) for p, v in self.indices.items()}


def _first_mismatches(items: Iterable[str], limit: int = 8) -> list[str]:
    out = []
    for item in items:
        out.append(item)
        if len(out) >= limit:
            break
    return out


def verify_consumed(
    produced: Produced, records: Sequence[Consumed], partitions: int = PARTITIONS
) -> Layout:
    """Check every consumed record against what was produced; return the layout.

    - exactly ``produced.count`` records, each index once;
    - key, value, headers byte-identical (timestamp too when the test set it);
    - per partition: offsets 0..n-1 with no gap, indices strictly increasing (the
      order produced), every partition used;
    - one partition per key;
    - when delivery reports exist: each record at the (partition, offset) acked.
    """
    assert len(records) == produced.count, (
        f"{produced.topic}: consumed {len(records)} records, produced {produced.count}"
    )
    seen: dict[int, Consumed] = {}
    problems: list[str] = []
    for r in records:
        assert r.value is not None, f"null value at {r.partition}/{r.offset}"
        i = index_of_value(r.value)
        if i in seen:
            problems.append(f"index {i} consumed twice: {seen[i]} and {r}")
            continue
        seen[i] = r
        if r.key != key_of(i):
            problems.append(f"index {i}: key {r.key!r} != {key_of(i)!r}")
        if r.value != value_of(i):
            problems.append(f"index {i}: value {r.value!r} != {value_of(i)!r}")
        want_headers = produced.headers(i)
        if list(r.headers) != want_headers:
            problems.append(f"index {i}: headers {r.headers!r} != {want_headers!r}")
        if produced.base_ts is not None and r.timestamp != timestamp_of(produced.base_ts, i):
            problems.append(
                f"index {i}: timestamp {r.timestamp} != {timestamp_of(produced.base_ts, i)}"
            )
        if produced.placements is not None and produced.placements[i] != (
            r.partition,
            r.offset,
        ):
            problems.append(
                f"index {i}: consumed at {r.partition}/{r.offset}, "
                f"acked at {produced.placements[i]}"
            )
        if len(problems) >= 8:
            break
    assert not problems, "\n".join(problems)
    assert sorted(seen) == list(range(produced.count)), "consumed indices are not 0..count-1"

    key_part: dict[bytes | None, int] = {}
    by_part: dict[int, list[Consumed]] = defaultdict(list)
    for r in records:
        by_part[r.partition].append(r)
        prev = key_part.setdefault(r.key, r.partition)
        if prev != r.partition:
            problems.append(f"key {r.key!r} in partitions {prev} and {r.partition}")
    assert not problems, "\n".join(_first_mismatches(problems))
    assert sorted(by_part) == list(range(partitions)), (
        f"records landed in partitions {sorted(by_part)}, expected all of 0..{partitions - 1}"
    )

    layout = Layout()
    for p, recs in sorted(by_part.items()):
        recs.sort(key=lambda r: r.offset)
        offsets = [r.offset for r in recs]
        assert offsets == list(range(len(recs))), (
            f"partition {p}: offsets are not 0..{len(recs) - 1} without gaps "
            f"(first {offsets[:5]}, last {offsets[-5:]})"
        )
        idx = [index_of_value(r.value or b"") for r in recs]
        bad = [(a, b) for a, b in zip(idx, idx[1:], strict=False) if b <= a]
        assert not bad, f"partition {p}: produced order broken, e.g. index {bad[0]}"
        layout.indices[p] = idx
        layout.timestamps[p] = [r.timestamp for r in recs]
    return layout


def expected_offset_for_time(timestamps: Sequence[int], target: int) -> int | None:
    """Kafka's ListOffsets-by-timestamp answer for one partition: the earliest offset
    whose timestamp is >= target, or None (the broker says offset -1) when there is
    none. ``timestamps`` are the partition's record timestamps in offset order and must
    be non-decreasing."""
    assert all(a <= b for a, b in zip(timestamps, timestamps[1:], strict=False))
    pos = bisect.bisect_left(timestamps, target)
    return pos if pos < len(timestamps) else None


def timestamp_queries(base_ts: int, count: int) -> list[int]:
    """Timestamps to look up: before everything, exact record timestamps, timestamps
    between two records, the last record's, and after everything."""
    picks = [0, 1, 2, 3, 997, count // 3, count // 2, count - 2, count - 1]
    picks += [(k * 7919) % count for k in range(1, 12)]
    queries = {base_ts - 5000, timestamp_of(base_ts, count - 1) + 1}
    for i in picks:
        queries.add(timestamp_of(base_ts, i))
        queries.add(timestamp_of(base_ts, i) - 1)
    return sorted(queries)


def layout_from_placements(produced: Produced) -> Layout:
    """The layout implied by delivery reports and the explicit timestamps."""
    assert produced.base_ts is not None
    base = produced.base_ts
    layout = Layout()
    for p, idx in produced.expected_layout().items():
        layout.indices[p] = idx
        layout.timestamps[p] = [timestamp_of(base, i) for i in idx]
    return layout


# ---------------------------------------------------------------------------------
# confluent-kafka helpers (also used to create topics for kcat and the restart tests)


def confluent_create_topic(
    bootstrap: str, topic: str, partitions: int = PARTITIONS, timeout: float = 30.0
) -> None:
    """Create a topic with confluent's AdminClient and wait until metadata shows every
    partition with a leader."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1)],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    assert futures[topic].result(timeout) is None
    wait_confluent_topic(admin, topic, partitions, timeout)


def wait_confluent_topic(admin, topic: str, partitions: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        md = admin.list_topics(topic=topic, timeout=10)
        tmd = md.topics.get(topic)
        last = tmd
        if (
            tmd is not None
            and tmd.error is None
            and sorted(tmd.partitions) == list(range(partitions))
            and all(pm.leader >= 0 for pm in tmd.partitions.values())
        ):
            return
        time.sleep(0.1)
    raise AssertionError(f"topic {topic} not ready with {partitions} partitions: {last}")


RTT_RE = re.compile(r"Received FetchResponse \(v\d+, \d+ bytes, CorrId \d+, rtt ([\d.]+)ms\)")


def fetch_rtts_ms(log_lines: Iterable[str]) -> list[float]:
    """Round-trip times of the Fetch requests in librdkafka ``debug=protocol`` lines."""
    out = []
    for line in log_lines:
        m = RTT_RE.search(line)
        if m:
            out.append(float(m.group(1)))
    return out


# ---------------------------------------------------------------------------------
# kcat


def run_kcat(args: list[str], timeout: float = 120.0, **kw) -> subprocess.CompletedProcess:
    """Run kcat to completion with a bounded wait; the caller checks the result."""
    return subprocess.run(["kcat", *args], capture_output=True, timeout=timeout, check=False, **kw)


# ---------------------------------------------------------------------------------
# long poll


LONG_POLL_WAIT_MS = 2000  # fetch.max.wait.ms for the long-poll tests
PROMPT_S = 0.5  # a parked fetch must answer this soon after an append
ROUND_GAP_S = 0.6  # scenario: produce this long after the previous round's record


def check_idle_fetches(rtts_ms: Sequence[float], max_wait_ms: int = LONG_POLL_WAIT_MS) -> None:
    """Fetches on an empty partition each waited out (most of) max wait."""
    assert len(rtts_ms) >= 2, f"expected at least 2 completed idle fetches, saw {rtts_ms}"
    short = [r for r in rtts_ms if r < 0.9 * max_wait_ms]
    assert not short, (
        f"idle fetches returned before fetch max wait {max_wait_ms} ms: {short} (all {rtts_ms})"
    )
    assert all(r < max_wait_ms + 1500 for r in rtts_ms), (
        f"idle fetches held far longer than max wait {max_wait_ms} ms: {rtts_ms}"
    )


def check_prompt(latencies_s: Sequence[float]) -> None:
    assert latencies_s, "no long-poll rounds measured"
    assert all(0 <= x < PROMPT_S for x in latencies_s), (
        f"records reached a long-polling consumer after {latencies_s} s "
        f"(want < {PROMPT_S} s each; the fetch max wait is {LONG_POLL_WAIT_MS} ms)"
    )


def confluent_producer_conf(bootstrap: str, codec: str = "none", **extra) -> dict:
    conf = {
        "bootstrap.servers": bootstrap,
        "compression.type": codec,
        "acks": "all",
        "linger.ms": 20,
        "batch.num.messages": 10_000,
        "batch.size": 1_000_000,
        "queue.buffering.max.messages": 500_000,
        "queue.buffering.max.kbytes": 1_048_576,
    }
    conf.update(extra)
    return conf


def confluent_produce(
    bootstrap: str,
    topic: str,
    indices: Iterable[int],
    codec: str = "none",
    base_ts: int | None = None,
    timeout: float = 120.0,
    **extra_conf,
) -> dict[int, tuple[int, int]]:
    """Produce records ``indices`` (keys, values, headers from the index; explicit
    timestamps when base_ts is given) and return index -> (partition, offset) from the
    delivery reports. Fails on any delivery error."""
    from confluent_kafka import Producer

    producer = Producer(confluent_producer_conf(bootstrap, codec, **extra_conf))
    acked: dict[int, tuple[int, int]] = {}
    errors: list[str] = []

    def on_delivery(err, msg) -> None:
        if err is not None:
            errors.append(f"{err} for {msg.value()[:20]!r}")
        else:
            acked[index_of_value(msg.value())] = (msg.partition(), msg.offset())

    deadline = time.monotonic() + timeout
    sent = 0
    for i in indices:
        kwargs = {"timestamp": timestamp_of(base_ts, i)} if base_ts is not None else {}
        while True:
            try:
                producer.produce(
                    topic,
                    value=value_of(i),
                    key=key_of(i),
                    headers=headers_of(i),
                    on_delivery=on_delivery,
                    **kwargs,
                )
                break
            except BufferError:
                assert time.monotonic() < deadline, "producer queue stayed full"
                producer.poll(0.05)
        sent += 1
        if sent % 1000 == 0:
            producer.poll(0)
    remaining = producer.flush(max(1.0, deadline - time.monotonic()))
    assert remaining == 0, f"{remaining} records still unacknowledged after {timeout}s"
    assert not errors, f"{len(errors)} delivery errors, e.g. {errors[:3]}"
    assert len(acked) == sent, f"{sent} produced, {len(acked)} delivery reports"
    return acked


def confluent_consume(
    bootstrap: str, topic: str, partitions: int = PARTITIONS, timeout: float = 120.0
) -> list[Consumed]:
    """Read every partition of ``topic`` from the beginning to its end (partition EOF)."""
    from confluent_kafka import (
        OFFSET_BEGINNING,
        TIMESTAMP_CREATE_TIME,
        Consumer,
        KafkaError,
        TopicPartition,
    )

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"verify-{topic}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.max.bytes": 52_428_800,
            "max.partition.fetch.bytes": 10_485_760,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        out: list[Consumed] = []
        at_end: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(at_end) < partitions:
            assert time.monotonic() < deadline, (
                f"{topic}: consumed {len(out)} records, partitions at end {sorted(at_end)} "
                f"after {timeout}s"
            )
            for msg in consumer.consume(num_messages=10_000, timeout=1.0):
                err = msg.error()
                if err is not None:
                    assert err.code() == KafkaError._PARTITION_EOF, f"consume error: {err}"
                    at_end.add(msg.partition())
                    continue
                at_end.discard(msg.partition())
                ts_type, ts = msg.timestamp()
                assert ts_type == TIMESTAMP_CREATE_TIME, f"timestamp type {ts_type}"
                out.append(
                    Consumed(
                        msg.partition(),
                        msg.offset(),
                        msg.key(),
                        msg.value(),
                        list(msg.headers() or []),
                        ts,
                    )
                )
        return out
    finally:
        consumer.close()


def confluent_roundtrip(conf: dict[str, str], topic: str, count: int = 200) -> None:
    """Produce ``count`` records of growing size (acks=all) with confluent-kafka and read
    exactly them back, in order, both with the settings in ``conf`` (bootstrap and
    security included)."""
    from confluent_kafka import Consumer, Producer

    producer = Producer({**conf, "acks": "all"})
    values = [f"{topic}-{i}".encode() + b"x" * (i % 500) for i in range(count)]
    for v in values:
        producer.produce(topic, v)
    assert producer.flush(30) == 0
    consumer = Consumer(
        {**conf, "group.id": topic, "auto.offset.reset": "earliest", "enable.auto.commit": False}
    )
    consumer.subscribe([topic])
    got: list[bytes] = []
    deadline = time.monotonic() + 30
    try:
        while len(got) < count and time.monotonic() < deadline:
            m = consumer.poll(0.5)
            if m is not None and m.error() is None:
                got.append(m.value())
    finally:
        consumer.close()
    assert got == values
