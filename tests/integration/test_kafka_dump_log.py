"""Apache Kafka 4.1's kafka-dump-log reading pybroker's own segment files.

pybroker writes plain, keyed, compressed (gzip, snappy, lz4, zstd), idempotent and
transactional (committed and aborted) data into small segments, then stops cleanly so
producer snapshots exist. kafka-dump-log must read every .log (deep iteration, data
printed), .index and .timeindex (sanity check, verification against the log), .snapshot
and .txnindex file without any complaint, and what it prints must be exactly what clients
read back: offsets, keys, payloads, header keys, producer ids and sequences, COMMIT/ABORT
markers, aborted-transaction ranges and each producer's last state.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.support.broker import BrokerProcess
from tests.support.kafka_ref import run_tool

pytestmark = pytest.mark.timeout(300)

TOPIC = "dump-log"
CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
PROBLEMS = re.compile(r"exception|mismatch|corrupt|non-consecutive|isvalid: false", re.I)
BATCH = re.compile(
    r"^baseOffset: (\d+) lastOffset: (\d+) count: (\d+) baseSequence: (-?\d+) "
    r"lastSequence: (-?\d+) producerId: (-?\d+) producerEpoch: (-?\d+) "
    r"partitionLeaderEpoch: (-?\d+) isTransactional: (\w+) isControl: (\w+) "
    r"deleteHorizonMs: \S+ position: (\d+) (?:CreateTime|LogAppendTime): (-?\d+) "
    r"size: (\d+) magic: (\d+) compresscodec: (\w+) crc: (\d+) isvalid: (\w+)$"
)
RECORD = re.compile(
    r"^\| offset: (\d+) (?:CreateTime|LogAppendTime): (-?\d+) keySize: (-?\d+) "
    r"valueSize: (-?\d+) sequence: (-?\d+) headerKeys: \[(.*?)\]"
    r"(?: key: (\S+))?(?: payload: (\S*)| endTxnMarker: (\w+) coordinatorEpoch: (\d+))?$"
)
SNAPSHOT_ENTRY = re.compile(
    r"^producerId: (\d+) producerEpoch: (\d+) coordinatorEpoch: (-?\d+) "
    r"currentTxnFirstOffset: \S+ lastTimestamp: (-?\d+) firstSequence: (-?\d+) "
    r"lastSequence: (-?\d+) lastOffset: (-?\d+) offsetDelta: (\d+) timestamp: (-?\d+)$"
)
TXN_ENTRY = re.compile(
    r"^version: 0 producerId: (\d+) firstOffset: (\d+) lastOffset: (\d+) "
    r"lastStableOffset: (\d+)$"
)


@dataclass
class Written:
    """pybroker's partition dir after a clean stop, and what clients read from it."""

    dir: Path
    uncommitted: list[tuple[int, bytes | None, bytes | None, int, list[str]]]
    committed_offsets: list[int]
    idempotent_pid: int
    txn_pid: int


def produce_everything(bootstrap: str) -> tuple[int, int]:
    """All kinds of batches into partition 0; returns (idempotent pid, transactional pid)."""
    for codec in CODECS:
        p = Producer({"bootstrap.servers": bootstrap, "compression.type": codec, "linger.ms": 20})
        for i in range(12):
            key = f"{codec}-k{i}".encode() if i % 3 else None  # some records have no key
            headers = [("h", b"x"), ("codec", codec.encode())] if i % 2 else None
            p.produce(TOPIC, key=key, value=f"{codec}-v{i}".encode() * 4, headers=headers)
        assert p.flush(30) == 0
    idem = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 0})
    for i in range(10):
        idem.produce(TOPIC, key=b"idem", value=b"idem-%d" % i)
        assert idem.flush(30) == 0  # one batch each: sequences 0..9
    txn = Producer({"bootstrap.servers": bootstrap, "transactional.id": "dump-log-txn"})
    txn.init_transactions(30)
    for name, commit in (("first", True), ("aborted", False), ("second", True)):
        txn.begin_transaction()
        for j in range(3):
            txn.produce(TOPIC, key=b"txn", value=f"{name}-{j}".encode())
        assert txn.flush(30) == 0
        if commit:
            txn.commit_transaction(30)
        else:
            txn.abort_transaction(30)
    out = run_tool(
        "kafka-transactions",
        "--bootstrap-server",
        bootstrap,
        "describe-producers",
        "--topic",
        TOPIC,
        "--partition",
        "0",
    ).check()
    rows = [ln.split() for ln in out.stdout.splitlines()[1:] if ln.strip()]
    by_seq = {int(r[3]): int(r[0]) for r in rows}  # LastSequence -> ProducerId
    return by_seq[9], by_seq[8]  # idempotent: last seq 9; transactional: 9 records, seq 8


def read_back(bootstrap: str, isolation: str) -> list:
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"dump-{isolation}",
            "isolation.level": isolation,
            "enable.partition.eof": True,
        }
    )
    c.assign([TopicPartition(TOPIC, 0, 0)])
    out = []
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error() is not None:
                assert m.error().code() == -191, m.error()  # _PARTITION_EOF
                return out
            keys = [k for k, _ in (m.headers() or [])]
            out.append((m.offset(), m.key(), m.value(), m.timestamp()[1], keys))
    finally:
        c.close()
    raise AssertionError("no end of partition within 20 s")


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Written]:
    broker = BrokerProcess(tmp_path_factory.mktemp("dump-log") / "data").start()
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        configs = {"segment.bytes": "1000", "index.interval.bytes": "200"}
        admin.create_topics([NewTopic(TOPIC, 1, 1, config=configs)])[TOPIC].result(30)
        idem_pid, txn_pid = produce_everything(broker.bootstrap)
        uncommitted = read_back(broker.bootstrap, "read_uncommitted")
        committed = [r[0] for r in read_back(broker.bootstrap, "read_committed")]
        assert broker.stop() == 0
        yield Written(broker.data_dir / f"{TOPIC}-0", uncommitted, committed, idem_pid, txn_pid)
    finally:
        broker.kill()


def dump(files: list[Path], *options: str) -> dict[str, list[str]]:
    """One kafka-dump-log run over ``files``: its output lines per file, checked clean."""
    out = run_tool(
        "kafka-dump-log", "--files", ",".join(map(str, files)), *options, timeout=180
    ).check()
    text = out.stdout + out.stderr
    assert not PROBLEMS.search(text), PROBLEMS.search(text)
    per_file: dict[str, list[str]] = {}
    current: list[str] = []
    for line in out.stdout.splitlines():
        if line.startswith("Dumping "):
            current = per_file.setdefault(Path(line.removeprefix("Dumping ").strip()).name, [])
        elif line.strip():
            current.append(line)
    assert set(per_file) == {f.name for f in files}
    return per_file


def files_of(d: Path, suffix: str) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.name.endswith(suffix))


def test_segments_and_files_exist(written: Written) -> None:
    logs = files_of(written.dir, ".log")
    assert len(logs) >= 3, logs
    for log in logs:
        assert log.with_suffix(".index").exists() and log.with_suffix(".timeindex").exists()
    assert files_of(written.dir, ".snapshot") and files_of(written.dir, ".txnindex")


def test_log_files_print_exactly_what_clients_read(written: Written) -> None:
    logs = files_of(written.dir, ".log")
    per_file = dump(logs, "--print-data-log", "--deep-iteration")
    data: list[tuple[int, bytes | None, bytes | None, int, list[str]]] = []
    markers: dict[int, tuple[str, int]] = {}
    codecs_seen: dict[str, set[str]] = {}
    next_offset = 0
    for log in logs:
        batch = None
        assert int(log.stem) == next_offset  # segments are contiguous
        for line in per_file[log.name]:
            if line.startswith("Log starting offset:"):
                assert int(line.split(":")[1]) == int(log.stem)
                continue
            if (b := BATCH.match(line)) is not None:
                batch = b
                assert int(b.group(1)) == next_offset, line  # no gap between batches
                next_offset = int(b.group(2)) + 1
                assert b.group(17) == "true" and b.group(14) == "2"
                continue
            r = RECORD.match(line)
            assert r is not None and batch is not None, line
            offset = int(r.group(1))
            assert int(batch.group(1)) <= offset <= int(batch.group(2))
            if batch.group(10) == "true":
                markers[offset] = (r.group(9), int(batch.group(6)))
                continue
            key = None if int(r.group(3)) < 0 else r.group(7).encode()
            value = r.group(8).encode()
            headers = [h for h in r.group(6).split(",") if h]
            data.append((offset, key, value, int(r.group(2)), headers))
            codecs_seen.setdefault(batch.group(15), set()).add(value.decode().split("-")[0])
            if batch.group(6) != "-1":
                pid, seq = int(batch.group(6)), int(r.group(5))
                assert seq == int(batch.group(4)) + offset - int(batch.group(1))
                assert pid in (written.idempotent_pid, written.txn_pid)
                assert (batch.group(9) == "true") == (pid == written.txn_pid)
    # Every data record, at its offset, as the consumer read it.
    assert data == written.uncommitted
    # Each codec's batches are stored with that codec.
    for codec in ("gzip", "snappy", "lz4", "zstd"):
        assert codecs_seen[codec] == {codec}
    # Three markers by the transactional producer: COMMIT, ABORT, COMMIT.
    assert [m for _, m in sorted(markers.items())] == [
        ("COMMIT", written.txn_pid),
        ("ABORT", written.txn_pid),
        ("COMMIT", written.txn_pid),
    ]
    # read_committed skips exactly the aborted records (and the markers).
    aborted = {r[0] for r in written.uncommitted if r[2].startswith(b"aborted")}
    assert len(aborted) == 3
    assert written.committed_offsets == [r[0] for r in written.uncommitted if r[0] not in aborted]
    abort_marker = next(o for o, (kind, _) in markers.items() if kind == "ABORT")
    assert max(aborted) < abort_marker


def test_index_files_pass_sanity_check_and_verification(written: Written) -> None:
    indexes = files_of(written.dir, ".index") + files_of(written.dir, ".timeindex")
    checked = dump(indexes, "--index-sanity-check")
    for index in indexes:
        assert checked[index.name][0] == f"{index} passed sanity check.", checked[index.name]
    verified = dump(indexes, "--verify-index-only")
    for index in indexes:
        assert verified[index.name] == [], verified[index.name]
    # The offset indexes have entries (index.interval.bytes=200), in increasing order.
    listed = dump(files_of(written.dir, ".index"))
    total = 0
    for name, lines in listed.items():
        entries = [
            (int(m.group(1)), int(m.group(2)))
            for line in lines
            if (m := re.match(r"^offset: (\d+) position: (\d+)$", line))
        ]
        assert len(entries) == len(lines), lines
        assert entries == sorted(set(entries)), name
        assert all(o >= int(Path(name).stem) for o, _ in entries)
        total += len(entries)
    assert total >= 5


def test_snapshots_and_txn_index(written: Written) -> None:
    snapshots = files_of(written.dir, ".snapshot")
    txnindexes = files_of(written.dir, ".txnindex")
    per_file = dump(snapshots + txnindexes)
    # The newest snapshot (at the log end, written at shutdown): each producer's state.
    newest = per_file[snapshots[-1].name]
    last: dict[int, re.Match[str]] = {}
    for line in newest:
        m = SNAPSHOT_ENTRY.match(line)
        assert m is not None, line
        last[int(m.group(1))] = m  # Kafka's reader keeps the last entry of a producer
    assert set(last) == {written.idempotent_pid, written.txn_pid}
    idem_offsets = [r[0] for r in written.uncommitted if r[1] == b"idem"]
    idem = last[written.idempotent_pid]
    assert (int(idem.group(6)), int(idem.group(7))) == (9, idem_offsets[-1])
    txn_offsets = [r[0] for r in written.uncommitted if r[1] == b"txn"]
    txn = last[written.txn_pid]
    assert (int(txn.group(6)), int(txn.group(7))) == (8, txn_offsets[-1])
    assert int(txn.group(3)) >= 0  # a transactional producer's coordinator epoch
    # Snapshot names are offsets; the newest one is the log end offset.
    log_end = written.uncommitted[-1][0] + 2  # the last record, then its COMMIT marker
    assert int(snapshots[-1].stem) == log_end

    # The aborted transaction: first aborted record to its ABORT marker.
    entries = [TXN_ENTRY.match(line) for f in txnindexes for line in per_file[f.name]]
    assert all(entries) and len(entries) == 1
    (e,) = entries
    aborted = [r[0] for r in written.uncommitted if r[2].startswith(b"aborted")]
    assert int(e.group(1)) == written.txn_pid
    assert int(e.group(2)) == aborted[0]
    assert int(e.group(3)) == aborted[-1] + 1  # the ABORT marker follows the last record
    assert int(e.group(4)) == int(e.group(3)) + 1  # nothing else open: LSO after the marker
