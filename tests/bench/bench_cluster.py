"""`make bench`: what replication costs, measured on one 3-broker cluster in one run.

    .venv/bin/python tests/bench/bench_cluster.py [--records 100000] [--rounds 2]

Starts ZooKeeper and three pybroker processes on 127.0.0.1 (tests/support/cluster.py),
then alternates rounds of:

- produce, RF=1, acks=1 (the reference: no replication), 6 partitions spread over the
  three brokers;
- produce, RF=3, min.insync.replicas=2, acks=all, idempotent: every record is on the
  three brokers' logs before it is acknowledged;

with confluent-kafka (librdkafka) and 1 KiB records, and prints each round's MB/s, the
ratio RF=3/RF=1 per round (min..max), then end-to-end latency at RF=3 acks=all and, as
the reference, RF=1 acks=1: records sent at about 1,000/s with librdkafka's default
linger, each stamped with its send time, received by a consumer on the same machine;
p50/p99/p999 of receive time minus send time, after a one-second warm-up. All three
brokers and the client share this machine's cores, so the ratios are the figures to
compare across machines.
"""

from __future__ import annotations

import argparse
import statistics
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402

from tests.support.cluster import Cluster  # noqa: E402

PARTITIONS = 6
PHASE_TIMEOUT = 120.0
WARM_UP_S = 1.0


def produce(bootstrap: str, topic: str, records: int, value: bytes, acks: str) -> float:
    """MB/s of record values acknowledged."""
    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": acks,
            "enable.idempotence": acks == "all",
            "linger.ms": 5,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
        }
    )
    failed: list[str] = []

    def done(err: object, _msg: object) -> None:
        if err is not None:
            failed.append(str(err))

    start = time.perf_counter()
    for i in range(records):
        while True:
            try:
                p.produce(topic, value=value, partition=i % PARTITIONS, callback=done)
                break
            except BufferError:
                p.poll(0.01)
        if i % 1000 == 0:
            p.poll(0)
    left = p.flush(PHASE_TIMEOUT)
    seconds = time.perf_counter() - start
    if left or failed:
        raise SystemExit(f"produce to {topic} failed: {left} unacknowledged, {failed[:3]}")
    return records * len(value) / seconds / 1e6


def latency(
    bootstrap: str, topic: str, seconds: float, rate: int, acks: str = "all"
) -> list[float]:
    """Milliseconds from send to receive, at about ``rate`` records/s for ``seconds``."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "latency",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 100,
        }
    )
    c.assign([TopicPartition(topic, p, -1) for p in range(PARTITIONS)])  # -1: the end
    c.poll(1.0)
    samples: list[float] = []
    stop = threading.Event()
    measure_from = time.time() + WARM_UP_S

    def consume() -> None:
        while not stop.is_set():
            m = c.poll(0.1)
            if m is not None and not m.error():
                (sent,) = struct.unpack(">d", m.value()[:8])
                if sent >= measure_from:  # the first second warms up both clients
                    samples.append((time.time() - sent) * 1000)

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    # librdkafka's defaults otherwise (linger.ms 5): what an application gets.
    p = Producer(
        {"bootstrap.servers": bootstrap, "acks": acks, "enable.idempotence": acks == "all"}
    )
    pad = bytes(100)
    end = time.monotonic() + seconds + WARM_UP_S
    interval = 1 / rate
    nxt = time.monotonic()
    while time.monotonic() < end:
        p.produce(topic, value=struct.pack(">d", time.time()) + pad)
        p.poll(0)
        nxt += interval
        delay = nxt - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    p.flush(30)
    time.sleep(1.0)
    stop.set()
    t.join(5)
    c.close()
    return samples


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--latency-seconds", type=float, default=10.0)
    args = ap.parse_args(argv)
    value = bytes(args.size)
    with tempfile.TemporaryDirectory(prefix="pybroker-bench-cluster-") as tmp:
        cluster = Cluster(Path(tmp), 3, {"replica.lag.time.max.ms": "10000"})
        try:
            cluster.start()
            rf1 = []
            rf3 = []
            for r in range(args.rounds):
                t1, t3 = f"rf1-{r}", f"rf3-{r}"
                cluster.create_topic(t1, PARTITIONS, 1)
                cluster.create_topic(t3, PARTITIONS, 3, {"min.insync.replicas": "2"})
                for p in range(PARTITIONS):
                    cluster.wait_for_isr(t3, p, {1, 2, 3})
                rf1.append(produce(cluster.bootstrap, t1, args.records, value, "1"))
                rf3.append(produce(cluster.bootstrap, t3, args.records, value, "all"))
                print(
                    f"round {r + 1}: RF=1 acks=1 {rf1[-1]:.1f} MB/s, "
                    f"RF=3 acks=all {rf3[-1]:.1f} MB/s, ratio {rf3[-1] / rf1[-1]:.2f}"
                )
            ratios = [b / a for a, b in zip(rf1, rf3, strict=True)]
            print(
                f"produce {args.records} x {args.size} B, 3 brokers on one machine: "
                f"RF=1 acks=1 {statistics.median(rf1):.1f} MB/s, "
                f"RF=3 acks=all {statistics.median(rf3):.1f} MB/s, "
                f"ratio {statistics.median(ratios):.2f} "
                f"({min(ratios):.2f}..{max(ratios):.2f})"
            )
            cluster.create_topic("latency-rf3", PARTITIONS, 3, {"min.insync.replicas": "2"})
            cluster.create_topic("latency-rf1", PARTITIONS, 1)
            for p in range(PARTITIONS):
                cluster.wait_for_isr("latency-rf3", p, {1, 2, 3})
            for topic, label, acks in (
                ("latency-rf3", "RF=3 acks=all", "all"),
                ("latency-rf1", "RF=1 acks=1", "1"),
            ):
                samples = latency(cluster.bootstrap, topic, args.latency_seconds, 1000, acks)
                if not samples:
                    raise SystemExit(f"no latency samples received from {topic}")
                print(
                    f"end-to-end latency, {label}, ~1,000 rec/s, {len(samples)} records: "
                    f"p50 {pct(samples, 0.5):.2f} ms, p99 {pct(samples, 0.99):.2f} ms, "
                    f"p999 {pct(samples, 0.999):.2f} ms"
                )
        finally:
            cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
