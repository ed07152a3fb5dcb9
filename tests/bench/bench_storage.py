"""`make bench`, storage part: the log layer beside raw file I/O, recovery, 10,000 partitions.

    .venv/bin/python tests/bench/bench_storage.py [--mib 256] [--recovery-mib 1024]
                                                  [--topics 100 --partitions 100]

1. Append and sequential read of the storage layer (``Log.append_as_leader`` with its
   CRC validation, offset stamping, index upkeep and segment rolls; ``Log.read`` slices
   read back with ``pread``) beside a raw-file ``pwrite``/``pread`` of the same bytes in
   the same run. Batches of 16 records x 1 KiB, 1 MiB reads; each write phase ends with
   an fsync; reads come from the page cache (the data was just written).
2. Recovery of a 1 GiB log after an unclean stop (every batch's CRC re-validated,
   indexes rebuilt) beside reading the same file and CRC-ing it; a clean open too.
3. 10,000 partitions on one broker process (100 topics x 100 partitions): create them,
   produce one record to each, restart cleanly and after kill -9; start-up times, open
   file descriptors (``/proc/<pid>/fd``) and resident memory at each step; every
   partition's high watermark and a sample of records are checked after each restart.

Exits non-zero when anything is lost or corrupted or a phase times out.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from crc32c import crc32c  # noqa: E402

from pybroker.config.topic_config import TopicConfig  # noqa: E402
from pybroker.protocol.records import NewRecord, build_batch, iter_batches  # noqa: E402
from pybroker.storage.handles import Handles  # noqa: E402
from pybroker.storage.log import Log  # noqa: E402

MIB = 1 << 20
RECORDS_PER_BATCH = 16
RECORD_SIZE = 1024


class BenchFailure(Exception):
    """The storage did not do its job; the run exits non-zero."""


@dataclass
class Rate:
    name: str
    seconds: float
    nbytes: int

    @property
    def mb_per_s(self) -> float:
        return self.nbytes / self.seconds / 1e6


def make_batches(total: int) -> list[bytes]:
    """Distinct producer batches (incompressible values) adding up to ``total`` bytes."""
    out: list[bytes] = []
    size = 0
    ts = int(time.time() * 1000)
    pool = os.urandom(RECORD_SIZE * 64)
    i = 0
    while size < total:
        records = [
            NewRecord(
                b"key-%d" % (i * RECORDS_PER_BATCH + j),
                pool[(i + j) % 63 * RECORD_SIZE : ((i + j) % 63 + 1) * RECORD_SIZE],
                (),
                ts,
            )
            for j in range(RECORDS_PER_BATCH)
        ]
        batch = build_batch(records)
        out.append(batch)
        size += len(batch)
        i += 1
    return out


def open_log(dir: Path, **kw: object) -> Log:
    config = TopicConfig(overrides={"segment.bytes": str(128 * MIB)})
    return Log.open(dir, config, handles=Handles(), **kw)  # type: ignore[arg-type]


# -- 1. append and read ------------------------------------------------------------------


def bench_append_read(workdir: Path, total: int, trials: int = 3) -> list[tuple[Rate, Rate]]:
    """Best of ``trials`` for each of the four measurements (a shared machine is noisy)."""
    batches = make_batches(total)
    best: list[list[Rate]] = [[], [], [], []]
    for trial in range(trials):
        for i, r in enumerate(_append_read_once(workdir / f"trial-{trial}", batches)):
            best[i].append(r)
        shutil.rmtree(workdir / f"trial-{trial}")
    top = [max(rs, key=lambda r: r.mb_per_s) for rs in best]
    return [(top[0], top[1]), (top[2], top[3])]


def _append_read_once(workdir: Path, batches: list[bytes]) -> list[Rate]:
    workdir.mkdir()
    nbytes = sum(len(b) for b in batches)
    payloads = [bytearray(b) for b in batches]

    # Storage layer: validate, stamp, write, index, roll; one fsync at the end.
    log = open_log(workdir / "bench-0")
    start = time.perf_counter()
    for p in payloads:
        log.append_as_leader(p, 0)
    log.flush()
    append = Rate("Log.append_as_leader + flush", time.perf_counter() - start, nbytes)

    # Raw file: the same bytes, one pwrite per batch, one fsync.
    raw_path = workdir / "raw.bin"
    fd = os.open(raw_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    start = time.perf_counter()
    pos = 0
    for b in batches:
        os.pwrite(fd, b, pos)
        pos += len(b)
    os.fsync(fd)
    raw_write = Rate("raw pwrite + fsync", time.perf_counter() - start, nbytes)

    # Sequential reads, 1 MiB at a time (a consumer's fetch), from the page cache.
    start = time.perf_counter()
    offset, got = 0, 0
    leo = log.log_end_offset
    while offset < leo:
        info = log.read(offset, MIB)
        last = None
        for s in info.slices:
            data = os.pread(s.fileno(), s.length, s.position)
            got += len(data)
            last = data
        if last is None:
            raise BenchFailure(f"Log.read returned nothing at offset {offset}")
        for _, h in iter_batches(last):  # continue after the last batch read
            offset = h.next_offset
    read = Rate("Log.read + pread of the slices", time.perf_counter() - start, got)
    if got != nbytes:
        raise BenchFailure(f"read back {got} bytes of {nbytes}")

    start = time.perf_counter()
    pos, got_raw = 0, 0
    while True:
        data = os.pread(fd, MIB, pos)
        if not data:
            break
        got_raw += len(data)
        pos += len(data)
    raw_read = Rate("raw pread 1 MiB", time.perf_counter() - start, got_raw)
    os.close(fd)
    log.close()
    return [append, raw_write, read, raw_read]


# -- 2. recovery of a 1 GiB log ------------------------------------------------------------


def bench_recovery(workdir: Path, total: int) -> dict[str, float]:
    dir = workdir / "recovery-0"
    batches = make_batches(64 * MIB)  # reused, with fresh offsets
    log = open_log(dir)
    written = 0
    while written < total:
        for b in batches:
            log.append_as_leader(bytearray(b), 0)
            written += len(b)
            if written >= total:
                break
    leo = log.log_end_offset
    log.flush()
    log.close()
    size = sum(p.stat().st_size for p in dir.glob("*.log"))

    start = time.perf_counter()
    again = open_log(dir, recovery_point=0, clean_shutdown=False)
    unclean = time.perf_counter() - start
    if again.log_end_offset != leo:
        raise BenchFailure(f"recovery ended at {again.log_end_offset}, expected {leo}")
    again.close()

    start = time.perf_counter()
    clean_log = open_log(dir, recovery_point=leo, clean_shutdown=True)
    clean = time.perf_counter() - start
    clean_log.close()

    # Reference: read every byte of the segments and CRC it.
    start = time.perf_counter()
    for path in sorted(dir.glob("*.log")):
        fd = os.open(path, os.O_RDONLY)
        pos = 0
        crc = 0
        while True:
            data = os.pread(fd, 8 * MIB, pos)
            if not data:
                break
            crc = crc32c(data, crc)
            pos += len(data)
        os.close(fd)
    raw = time.perf_counter() - start
    shutil.rmtree(dir)
    return {"bytes": size, "unclean": unclean, "clean": clean, "raw": raw}


# -- 3. 10,000 partitions --------------------------------------------------------------------


def bench_partitions(workdir: Path, topics: int, partitions: int) -> list[str]:
    from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

    from tests.support.broker import BrokerProcess

    total = topics * partitions
    names = [f"many-{t:03d}" for t in range(topics)]
    broker = BrokerProcess(workdir / "many")
    lines: list[str] = []

    def fds() -> int:
        assert broker.proc is not None
        return len(os.listdir(f"/proc/{broker.proc.pid}/fd"))

    def rss_mib() -> float:
        assert broker.proc is not None
        for line in Path(f"/proc/{broker.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def note(what: str, seconds: float | None = None) -> None:
        took = f"{seconds:7.1f} s" if seconds is not None else " " * 9
        lines.append(f"  {what:44} {took}   fds {fds():5d}   rss {rss_mib():6.0f} MiB")

    def timed_start() -> float:
        start = time.perf_counter()
        broker.start(timeout=600)
        return time.perf_counter() - start

    def check(label: str) -> None:
        """Every partition has its one record; a sample is read back."""
        # log_level 0: the broker restarts on purpose; librdkafka would log every reconnect.
        admin = AdminClient({"bootstrap.servers": broker.bootstrap, "log_level": 0})
        request = {
            TopicPartition(n, p): OffsetSpec.latest() for n in names for p in range(partitions)
        }
        futures = admin.list_offsets(request, request_timeout=120)
        bad = [tp for tp, f in futures.items() if f.result(120).offset != 1]
        if bad:
            raise BenchFailure(f"{label}: {len(bad)} partitions without their record: {bad[:3]}")
        sample = random.Random(7).sample(
            [TopicPartition(n, p, 0) for n in names for p in range(partitions)], 200
        )
        consumer = Consumer(
            {
                "bootstrap.servers": broker.bootstrap,
                "group.id": f"bench-{label}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            }
        )
        try:
            consumer.assign(sample)
            got, eof = {}, set()
            deadline = time.monotonic() + 120
            while len(eof) < len(sample) and time.monotonic() < deadline:
                for msg in consumer.consume(1000, 1.0):
                    err = msg.error()
                    if err is not None:
                        if err.code() != KafkaError._PARTITION_EOF:
                            raise BenchFailure(f"{label}: consume error {err}")
                        eof.add((msg.topic(), msg.partition()))
                        continue
                    got[(msg.topic(), msg.partition())] = msg.value()
            want = {
                (tp.topic, tp.partition): f"{tp.topic}/{tp.partition}".encode() for tp in sample
            }
            if got != want:
                raise BenchFailure(f"{label}: read back {len(got)} of {len(want)} sampled records")
        finally:
            consumer.close()

    try:
        broker.start()
        # log_level 0: the broker restarts on purpose; librdkafka would log every reconnect.
        admin = AdminClient({"bootstrap.servers": broker.bootstrap, "log_level": 0})
        start = time.perf_counter()
        futures = admin.create_topics(
            [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names],
            operation_timeout=600,
            request_timeout=600,
        )
        for f in futures.values():
            f.result(600)
        note(f"create {total:,} partitions", time.perf_counter() - start)

        producer = Producer(
            {"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 20, "log_level": 0}
        )
        errors: list = []
        start = time.perf_counter()
        for n in names:
            for p in range(partitions):
                producer.produce(
                    n,
                    value=f"{n}/{p}".encode(),
                    partition=p,
                    on_delivery=lambda e, m: errors.append(e) if e else None,
                )
            producer.poll(0)
        if producer.flush(300) or errors:
            raise BenchFailure(f"produce to every partition: {errors[:3]}")
        note("produce 1 record to each (acks=all)", time.perf_counter() - start)

        start = time.perf_counter()
        code = broker.stop(timeout=300)
        stop_s = time.perf_counter() - start
        if code != 0:
            raise BenchFailure(f"clean shutdown exited {code}")
        lines.append(f"  {'clean shutdown (flush, checkpoints, close)':44} {stop_s:7.1f} s")

        note("start-up after a clean shutdown", timed_start())
        check("clean")
        note("after reading 10,000 offsets + 200 partitions")

        broker.kill()
        note("start-up after kill -9 (recovery)", timed_start())
        check("unclean")
        note("after reading 10,000 offsets + 200 partitions")
        code = broker.stop(timeout=300)
        if code != 0:
            raise BenchFailure(f"final shutdown exited {code}")
    except BenchFailure:
        print(broker.log_tail(), file=sys.stderr)
        raise
    finally:
        broker.kill()
    return lines


# -- report ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=256, help="bytes appended and read (MiB)")
    parser.add_argument("--recovery-mib", type=int, default=1024, help="log size to recover")
    parser.add_argument("--topics", type=int, default=100)
    parser.add_argument("--partitions", type=int, default=100, help="per topic")
    parser.add_argument("--skip-partitions", action="store_true")
    args = parser.parse_args(argv)
    total_start = time.monotonic()
    with tempfile.TemporaryDirectory(
        prefix="pybroker-bench-storage-", dir=os.environ.get("TMPDIR")
    ) as tmp:
        workdir = Path(tmp)
        print(
            f"storage layer: {args.mib} MiB in batches of {RECORDS_PER_BATCH} x "
            f"{RECORD_SIZE} B records, cpus={os.cpu_count()}"
        )
        try:
            pairs = bench_append_read(workdir, args.mib * MIB)
            header = f"  {'':36} {'MB/s':>8}   {'raw file MB/s':>13} {'ratio':>7}"
            print(header)
            for ours, raw in pairs:
                print(
                    f"  {ours.name:36} {ours.mb_per_s:8.1f}   {raw.mb_per_s:13.1f} "
                    f"{ours.mb_per_s / raw.mb_per_s:6.2f}x   ({raw.name})"
                )

            rec = bench_recovery(workdir, args.recovery_mib * MIB)
            gib = rec["bytes"] / (1 << 30)
            print(f"\nrecovery of a {gib:.2f} GiB log (128 MiB segments, page cache warm)")
            print(
                f"  unclean (validate every batch, rebuild indexes) {rec['unclean']:7.2f} s  "
                f"= {rec['bytes'] / rec['unclean'] / 1e6:7.1f} MB/s"
            )
            print(
                f"  raw read + CRC32C of the same bytes             {rec['raw']:7.2f} s  "
                f"= {rec['bytes'] / rec['raw'] / 1e6:7.1f} MB/s"
            )
            print(f"  clean open (no recovery)                        {rec['clean']:7.2f} s")

            if not args.skip_partitions:
                total = args.topics * args.partitions
                print(
                    f"\n{total:,} partitions on one broker ({args.topics} topics x "
                    f"{args.partitions}); fd caps: 1000 log files + 1000 mapped indexes"
                )
                for line in bench_partitions(workdir, args.topics, args.partitions):
                    print(line, flush=True)
        except BenchFailure as exc:
            print(f"BENCH FAILED: {exc}", file=sys.stderr)
            return 1
    print(f"\nstorage bench total {time.monotonic() - total_start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
