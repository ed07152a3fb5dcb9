"""Produce, Fetch, ListOffsets, DeleteRecords and OffsetForLeaderEpoch vs Kafka 4.1."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.differential.helpers import (
    BASE_TS,
    Cases,
    batch,
    create_topic,
    fetch,
    init_producer,
    produce_both,
    produce_request,
    topic_id,
    versions,
)
from tests.support.broker import BrokerProcess
from tests.support.differential import DifferentialPair, record_comparison, request_for
from tests.support.kafka_ref import KafkaReference
from tests.support.wire import KafkaWire

PRODUCE, FETCH, LIST_OFFSETS, DELETE_RECORDS, OFFSET_FOR_LEADER_EPOCH = 0, 1, 2, 21, 23
PREFIX = "drc-"
GZIP, SNAPPY, LZ4, ZSTD = 1, 2, 3, 4


@pytest.fixture(scope="module")
def pair(
    differential_brokers: tuple[BrokerProcess, KafkaReference],
) -> Iterator[DifferentialPair]:
    ours, kafka = differential_brokers
    with DifferentialPair(ours.port, kafka.port) as p:
        yield p


# -- Produce ------------------------------------------------------------------------------


def test_produce_every_version(pair: DifferentialPair) -> None:
    cases = Cases(pair)
    topic, small = f"{PREFIX}produce", f"{PREFIX}produce-small"
    compacted = f"{PREFIX}produce-compacted"
    create_topic(pair, topic)
    create_topic(pair, compacted, configs={"cleanup.policy": "compact"})
    create_topic(pair, small, configs={"max.message.bytes": "200"})
    for v in versions(pair, PRODUCE):

        def send(case: str, name: str, records: bytes, v: int = v, **kw: Any) -> None:
            """One case; v13+ names topics by id, which each broker chose itself."""
            transform = kw.pop("transform", None)
            if v < 13:
                request = produce_request(v, name, records, **kw)
                cases.compare(f"produce-{case}-v{v}", request, transform=transform)
                return
            cases.compare_each(
                f"produce-{case}-v{v}",
                lambda c: produce_request(v, name, records, topic_id=topic_id(c, name), **kw),
                transform=transform,
            )

        for acks in (1, -1):
            send(f"acks{acks}", topic, batch([b"a", b"b"]), acks=acks)
        for codec in (GZIP, SNAPPY, LZ4, ZSTD):
            send(f"codec{codec}", topic, batch([b"c" * 50] * 3, compression=codec))
        send("unknown-topic", f"{PREFIX}absent", batch([b"x"]))
        send("unknown-partition", topic, batch([b"x"]), partition=7)
        send("bad-acks", topic, batch([b"x"]), acks=2)
        corrupt = bytearray(batch([b"crc"]))
        corrupt[-1] ^= 0xFF  # last value byte: the CRC no longer matches
        send("bad-crc", topic, bytes(corrupt))
        send("too-large", small, batch([b"z" * 400]))
        # (Null records for a hosted partition: Kafka 4.1 never answers, so no oracle.)
        future = batch([b"ok", b"late"], ts=int(time.time() * 1000) + 10 * 3_600_000)
        send("future-timestamp", topic, future, transform=clock_bounds)
        send("compacted-without-key", compacted, batch([b"k"]))
        txn_batch = batch(
            [b"t"], transactional=True, producer_id=5, producer_epoch=0, base_sequence=0
        )
        send("transactional-without-id", topic, txn_batch)
        send("two-batches", topic, batch([b"1"]) + batch([b"2"]))
        send("empty-records", topic, b"")
        send("truncated-batch", topic, batch([b"truncated"])[:-3])
    # acks=0 gets no answer; what it wrote shows in the log end offset afterwards.
    for conn in (pair.ours, pair.kafka):
        conn.send(produce_request(9, topic, batch([b"fire", b"forget"]), acks=0))
    cases.compare(
        "produce-acks0-then-list-offsets",
        list_offsets(9, topic, [(0, -1)]),
    )
    cases.check()


def clock_bounds(plain: Any) -> Any:
    """Timestamp errors quote now-relative bounds, which differ by the brokers' clocks."""
    text = json.dumps(plain)
    return json.loads(re.sub(r"within \[-?\d+, -?\d+\]", "within [<now bounds>]", text))


def idempotent(
    conn: KafkaWire, pids: dict[int, tuple[int, int]], topic: str, seq: int, n: int = 1, **kw: Any
) -> Any:
    """A Produce v9 of ``n`` records from this broker's idempotent producer at ``seq``."""
    pid, epoch = pids[id(conn)]
    pid = kw.pop("pid", pid)
    epoch = kw.pop("epoch", epoch)
    records = batch(
        [b"i%d" % i for i in range(n)], producer_id=pid, producer_epoch=epoch, base_sequence=seq
    )
    return produce_request(kw.pop("version", 9), topic, records)


def test_produce_idempotent_sequences(pair: DifferentialPair) -> None:
    cases = Cases(pair)
    topic = f"{PREFIX}idempotent"
    create_topic(pair, topic)
    pids = {id(conn): init_producer(conn) for conn in (pair.ours, pair.kafka)}
    steps = [
        ("first", dict(seq=0, n=2)),
        ("next", dict(seq=2, n=1)),
        ("duplicate-last", dict(seq=2, n=1)),
        ("duplicate-older", dict(seq=0, n=2)),
        ("gap", dict(seq=7, n=1)),
        ("future-epoch", dict(seq=0, n=1, epoch=9)),
        ("unknown-producer-nonzero-seq", dict(seq=5, n=1, pid=123456789)),
        ("unknown-producer-zero-seq", dict(seq=0, n=1, pid=123456790)),
    ]
    for name, kw in steps:
        cases.compare_each(
            f"produce-idempotent-{name}", lambda c, kw=kw: idempotent(c, pids, topic, **kw)
        )
    cases.check()


# -- Fetch --------------------------------------------------------------------------------


def test_fetch_every_version(pair: DifferentialPair) -> None:
    cases = Cases(pair)
    topic = f"{PREFIX}fetch"
    create_topic(pair, topic, partitions=2)
    produce_both(pair, topic, batch([b"one", b"two"]))
    produce_both(pair, topic, batch([b"three"] * 4, compression=GZIP, ts=BASE_TS + 10))
    produce_both(pair, topic, batch([b"four"], compression=ZSTD, ts=BASE_TS + 20))
    produce_both(pair, topic, batch([b"p1"]), partition=1)
    for v in versions(pair, FETCH):

        def each(case: str, v: int = v, **kw: Any) -> None:
            parts = kw.pop("parts", {0: 0, 1: 0})
            name = kw.pop("topic", topic)
            cases.compare_each(
                f"fetch-{case}-v{v}",
                lambda c, v=v: fetch(v, c, name, parts, **kw),
                keep={"timestamp"},
            )

        each("from-start")
        each("middle", parts={0: 3})
        each("end", parts={0: 7})
        each("out-of-range", parts={0: 100, 1: 0})
        each("negative-offset", parts={0: -5})
        each("one-byte-max", max_bytes=1)
        each("one-byte-partition-max", partition_max_bytes=1)
        each("read-committed", isolation_level=1)
        each("unknown-partition", parts={5: 0})
        if v >= 9:
            each("fenced-leader-epoch", current_leader_epoch=7)
        if v < 13:
            each("unknown-topic", topic=f"{PREFIX}absent")
        else:
            cases.compare(
                f"fetch-unknown-topic-id-v{v}",
                request_for(
                    FETCH,
                    v,
                    replica_id=-1,
                    max_bytes=1 << 20,
                    session_epoch=-1,
                    topics=[
                        {
                            "topic_id": uuid.UUID(int=99),
                            "partitions": [
                                {
                                    "partition": 0,
                                    "fetch_offset": 0,
                                    "current_leader_epoch": -1,
                                    "log_start_offset": -1,
                                    "last_fetched_epoch": -1,
                                    "partition_max_bytes": 1000,
                                }
                            ],
                        }
                    ],
                    rack_id="",
                ),
            )
    cases.check()


def test_fetch_sessions(pair: DifferentialPair) -> None:
    cases = Cases(pair)
    topic = f"{PREFIX}session"
    create_topic(pair, topic, partitions=2)
    produce_both(pair, topic, batch([b"s1"]))
    for v in [v for v in versions(pair, FETCH) if v >= 7]:
        # A full fetch at epoch 0 asks for a session (KIP-227).
        cases.compare_each(
            f"fetch-session-open-v{v}",
            lambda c, v=v: fetch(v, c, topic, {0: 0, 1: 0}, session_epoch=0),
        )
        # An incremental fetch on a session the broker does not have.
        cases.compare(
            f"fetch-session-unknown-id-v{v}",
            fetch_unknown_session(v, session_id=987654, session_epoch=1),
        )
        # Epoch -1 without a session: sessionless full fetches.
        cases.compare_each(
            f"fetch-sessionless-v{v}",
            lambda c, v=v: fetch(v, c, topic, {0: 0}, session_epoch=-1),
        )
        if v < 13:  # (v13+ forgets by topic id; ids differ per broker)
            cases.compare(
                f"fetch-session-forget-unknown-v{v}",
                fetch_unknown_session(
                    v,
                    session_id=987655,
                    session_epoch=3,
                    forgotten_topics_data=[{"topic": topic, "partitions": [0]}],
                ),
            )
    cases.check()


class _SessionSteps:
    """Fetches sent to both brokers, each on its own session id, compared and recorded."""

    def __init__(self, pair: DifferentialPair, cases: Cases, version: int, topic: str) -> None:
        self.pair, self.cases, self.v, self.topic = pair, cases, version, topic
        self.sid = {"ours": 0, "kafka": 0}

    def step(self, case: str, make: Any) -> dict[str, Any]:
        requests = {side: make(getattr(self.pair, side), side) for side in self.sid}
        answers = {side: self.pair.ask(side, requests[side]) for side in self.sid}
        self.cases.add(record_comparison(case, requests["ours"], answers["ours"], answers["kafka"]))
        return answers

    def full(self, case: str, parts: dict[int, int], epoch: int, version: int = 0) -> None:
        v = version or self.v
        answers = self.step(
            case,
            lambda c, side: fetch(
                v, c, self.topic, parts, session_id=self.sid[side], session_epoch=epoch
            ),
        )
        self.sid = {side: int(answers[side].session_id) for side in self.sid}

    def incremental(
        self, case: str, parts: dict[int, int], epoch: int, forget: list[int] | None = None
    ) -> None:
        def make(conn: KafkaWire, side: str) -> Any:
            forgotten = None
            if forget is not None:
                key = (
                    {"topic_id": topic_id(conn, self.topic)}
                    if self.v >= 13
                    else {"topic": self.topic}
                )
                forgotten = [{**key, "partitions": forget}]
            return fetch(
                self.v,
                conn,
                self.topic,
                parts,
                session_id=self.sid[side],
                session_epoch=epoch,
                forgotten=forgotten,
            )

        self.step(case, make)


def test_incremental_fetch_sessions(pair: DifferentialPair) -> None:
    """KIP-227 sessions through their life: opened by a full fetch, then incremental
    fetches that name only what changed and are answered only what changed, forgetting a
    partition, a stale epoch, closing, and a session used in the other topic-id mode."""
    cases = Cases(pair)
    advertised = versions(pair, FETCH)
    for v in [v for v in (7, 11, 12, 13, 16, 17) if v in advertised]:
        topic = f"{PREFIX}incr-v{v}"
        create_topic(pair, topic, partitions=3)
        produce_both(pair, topic, batch([b"i0"]))
        s = _SessionSteps(pair, cases, v, topic)
        s.full(f"fetch-incremental-open-v{v}", {0: 0, 1: 0, 2: 0}, 0)
        assert all(s.sid.values()), s.sid  # both opened a session
        opened = dict(s.sid)
        s.incremental(f"fetch-incremental-nothing-new-v{v}", {}, 1)
        produce_both(pair, topic, batch([b"i1"]))
        s.incremental(f"fetch-incremental-new-records-v{v}", {0: 1}, 2)
        s.incremental(f"fetch-incremental-stale-epoch-v{v}", {}, 2)
        s.incremental(f"fetch-incremental-forget-v{v}", {}, 3, forget=[1])
        produce_both(pair, topic, batch([b"i2"]), partition=1)
        produce_both(pair, topic, batch([b"i3"]), partition=2)
        s.incremental(f"fetch-incremental-forgotten-stays-out-v{v}", {}, 4)
        s.incremental(f"fetch-incremental-add-back-v{v}", {1: 0}, 5)
        s.full(f"fetch-incremental-close-v{v}", {0: 2}, -1)
        assert s.sid == {"ours": 0, "kafka": 0}
        s.sid = opened
        s.incremental(f"fetch-incremental-after-close-v{v}", {}, 6)
        if v == 12 and 13 in advertised:
            s.full("fetch-incremental-reopen-v12", {0: 0}, 0)
            s.v = 13
            s.incremental("fetch-incremental-topic-id-mode-v13", {}, 1)
    cases.check()


def fetch_unknown_session(version: int, **kw: Any) -> Any:
    return request_for(
        FETCH, version, replica_id=-1, max_bytes=1 << 20, topics=[], rack_id="", **kw
    )


# -- ListOffsets --------------------------------------------------------------------------


def list_offsets(
    version: int,
    topic: str,
    queries: list[tuple[int, int]],
    *,
    isolation_level: int = 0,
    current_leader_epoch: int = -1,
) -> Any:
    return request_for(
        LIST_OFFSETS,
        version,
        replica_id=-1,
        isolation_level=isolation_level,
        timeout=5000,
        topics=[
            {
                "name": topic,
                "partitions": [
                    {
                        "partition_index": p,
                        "timestamp": ts,
                        "current_leader_epoch": current_leader_epoch,
                    }
                    for p, ts in queries
                ],
            }
        ],
    )


def test_list_offsets_every_version(pair: DifferentialPair) -> None:
    cases = Cases(pair)
    topic, empty = f"{PREFIX}offsets", f"{PREFIX}offsets-empty"
    create_topic(pair, topic)
    create_topic(pair, empty)
    produce_both(pair, topic, batch([b"a", b"b", b"c"], ts=BASE_TS))
    produce_both(pair, topic, batch([b"d", b"e"], ts=BASE_TS + 100))
    produce_both(pair, topic, batch([b"f"], ts=BASE_TS + 50))
    for v in versions(pair, LIST_OFFSETS):

        def compare(case: str, *args: Any, v: int = v, **kw: Any) -> None:
            request = list_offsets(v, *args, **kw)
            cases.compare(f"list-offsets-{case}-v{v}", request, keep={"timestamp"})

        compare("earliest", topic, [(0, -2)])
        compare("latest", topic, [(0, -1)])
        compare("by-time-first", topic, [(0, BASE_TS)])
        compare("by-time-middle", topic, [(0, BASE_TS + 1)])
        compare("by-time-second-batch", topic, [(0, BASE_TS + 60)])
        compare("by-time-future", topic, [(0, BASE_TS + 10_000)])
        compare("empty-latest", empty, [(0, -1)])
        compare("empty-by-time", empty, [(0, BASE_TS)])
        compare("unknown-topic", f"{PREFIX}absent", [(0, -1)])
        compare("unknown-partition", topic, [(3, -1)])
        compare("bad-timestamp", topic, [(0, -9)])
        if v >= 2:
            compare("duplicate-partition", topic, [(0, -1), (0, -2)])
            compare("read-committed", topic, [(0, -1)], isolation_level=1)
        if v >= 4:
            compare("fenced-epoch", topic, [(0, -1)], current_leader_epoch=5)
            compare("current-epoch", topic, [(0, -1)], current_leader_epoch=0)
        if v >= 7:
            compare("max-timestamp", topic, [(0, -3)])
            compare("empty-max-timestamp", empty, [(0, -3)])
        if v >= 8:
            compare("earliest-local", topic, [(0, -4)])
        if v >= 9:
            compare("latest-tiered", topic, [(0, -5)])
        if v >= 10:
            compare("earliest-pending-upload", topic, [(0, -6)])
    cases.check()


# -- DeleteRecords and OffsetForLeaderEpoch -----------------------------------------------


def delete_records(version: int, topic: str, parts: dict[int, int]) -> Any:
    return request_for(
        DELETE_RECORDS,
        version,
        timeout=5000,
        topics=[
            {
                "name": topic,
                "partitions": [{"partition_index": p, "offset": o} for p, o in parts.items()],
            }
        ],
    )


def test_delete_records_every_version(pair: DifferentialPair) -> None:
    cases = Cases(pair)
    for v in versions(pair, DELETE_RECORDS):
        topic = f"{PREFIX}delete-v{v}"
        create_topic(pair, topic, partitions=2)
        produce_both(pair, topic, batch([b"a", b"b", b"c", b"d"]))
        produce_both(pair, topic, batch([b"e", b"f"]))
        cases.compare(f"delete-records-mid-batch-v{v}", delete_records(v, topic, {0: 2}))
        cases.compare(f"delete-records-backwards-v{v}", delete_records(v, topic, {0: 1}))
        cases.compare(f"delete-records-list-earliest-v{v}", list_offsets(9, topic, [(0, -2)]))
        cases.compare_each(
            f"delete-records-fetch-below-v{v}",
            lambda c, topic=topic: fetch(12, c, topic, {0: 0}),
        )
        cases.compare(f"delete-records-beyond-hw-v{v}", delete_records(v, topic, {0: 50}))
        cases.compare(f"delete-records-to-hw-v{v}", delete_records(v, topic, {0: -1, 1: 0}))
        cases.compare(f"delete-records-bad-offset-v{v}", delete_records(v, topic, {0: -7}))
        cases.compare(
            f"delete-records-unknown-topic-v{v}", delete_records(v, f"{PREFIX}absent", {0: 0})
        )
        cases.compare(f"delete-records-unknown-partition-v{v}", delete_records(v, topic, {4: 0}))
    cases.check()


def offset_for_leader_epoch(
    version: int, topic: str, parts: list[tuple[int, int, int]], replica_id: int = -1
) -> Any:
    return request_for(
        OFFSET_FOR_LEADER_EPOCH,
        version,
        replica_id=replica_id,
        topics=[
            {
                "topic": topic,
                "partitions": [
                    {"partition": p, "current_leader_epoch": cur, "leader_epoch": epoch}
                    for p, cur, epoch in parts
                ],
            }
        ],
    )


def test_offset_for_leader_epoch_every_version(pair: DifferentialPair) -> None:
    cases = Cases(pair)
    topic = f"{PREFIX}epochs"
    create_topic(pair, topic)
    produce_both(pair, topic, batch([b"a", b"b", b"c"]))
    for v in versions(pair, OFFSET_FOR_LEADER_EPOCH):

        def compare(case: str, *args: Any, v: int = v, **kw: Any) -> None:
            cases.compare(f"leader-epoch-{case}-v{v}", offset_for_leader_epoch(v, *args, **kw))

        compare("epoch0", topic, [(0, -1, 0)])
        compare("epoch0-current0", topic, [(0, 0, 0)])
        compare("future-epoch", topic, [(0, -1, 4)])
        compare("negative-epoch", topic, [(0, -1, -1)])
        compare("fenced-current", topic, [(0, 5, 0)])
        compare("unknown-topic", f"{PREFIX}absent", [(0, -1, 0)])
        compare("unknown-partition", topic, [(2, -1, 0)])
        if v >= 3:
            compare("as-follower", topic, [(0, -1, 0)], replica_id=1)
    cases.check()


# -- DescribeLogDirs ------------------------------------------------------------------------

DESCRIBE_LOG_DIRS = 35
LOG_DIR_VOLATILE = {"log_dir", "total_bytes", "usable_bytes"}


def test_describe_log_dirs_every_version(pair: DifferentialPair) -> None:
    cases = Cases(pair)
    topic = f"{PREFIX}logdirs"
    create_topic(pair, topic, partitions=2)
    produce_both(pair, topic, batch([b"size", b"matters"]))

    def this_topic(plain: Any) -> Any:
        for result in plain["results"]:
            result["topics"] = [t for t in result["topics"] if t["name"].startswith(topic)]
        return plain

    for v in versions(pair, DESCRIBE_LOG_DIRS):

        def compare(case: str, topics: Any, v: int = v) -> None:
            cases.compare(
                f"describe-log-dirs-{case}-v{v}",
                request_for(DESCRIBE_LOG_DIRS, v, topics=topics),
                volatile=LOG_DIR_VOLATILE,
                unordered={"topics"},
                transform=this_topic,
            )

        compare("all", None)
        compare("partitions", [{"topic": topic, "partitions": [0, 1]}])
        compare("unknown-partition", [{"topic": topic, "partitions": [7]}])
        compare("unknown-topic", [{"topic": f"{topic}-absent", "partitions": [0]}])
        compare("none", [])
    cases.check()


ALTER_REPLICA_LOG_DIRS = 34


def log_dir(conn: KafkaWire) -> str:
    """This broker's (single) log dir, from DescribeLogDirs."""
    (result,) = conn.request(request_for(DESCRIBE_LOG_DIRS, 4, topics=[])).results
    return str(result.log_dir)


def test_alter_replica_log_dirs_every_version(pair: DifferentialPair) -> None:
    cases = Cases(pair)
    topic = f"{PREFIX}move"
    create_topic(pair, topic)

    def move(version: int, path: str, name: str, partitions: list[int]) -> Any:
        return request_for(
            ALTER_REPLICA_LOG_DIRS,
            version,
            dirs=[{"path": path, "topics": [{"name": name, "partitions": partitions}]}],
        )

    for v in versions(pair, ALTER_REPLICA_LOG_DIRS):
        cases.compare_each(
            f"alter-replica-log-dirs-same-dir-v{v}",
            lambda c, v=v: move(v, log_dir(c), topic, [0]),
        )
        cases.compare_each(
            f"alter-replica-log-dirs-unknown-partition-v{v}",
            lambda c, v=v: move(v, log_dir(c), topic, [9]),
        )
        cases.compare_each(
            f"alter-replica-log-dirs-unknown-topic-v{v}",
            lambda c, v=v: move(v, log_dir(c), f"{topic}-absent", [0]),
        )
        cases.compare(
            f"alter-replica-log-dirs-unknown-dir-v{v}",
            move(v, "/nonexistent/pybroker-differential", topic, [0]),
        )
        cases.compare(
            f"alter-replica-log-dirs-relative-dir-v{v}", move(v, "relative/dir", topic, [0])
        )
    cases.check()
