"""`make bench`: how pybroker uses more cores: one broker process per core, as a cluster.

    .venv/bin/python tests/bench/bench_cores.py [--brokers N] [--rounds 3] [--seconds 8]

One Python process runs Python on one core at a time (the GIL), and pybroker does not
share a broker's state between processes. It uses a machine's cores the way Kafka scales
across machines: several broker processes on one host, a local cluster (`make cluster`),
each leading its share of the partitions, with clients spreading their requests over
them through Metadata. Nothing is shared but ZooKeeper, so there is no lock to contend
and a crashed process takes only its own partitions' leadership with it.

This measures it on this machine: the same librdkafka load (tests/bench/rdkperf.c, 1 KiB
records, acks=1, 12 partitions, RF=1, records spread evenly over the partitions) against
a one-broker cluster and against an N-broker cluster (N defaults to the core count), both
with ZooKeeper on 127.0.0.1, alternating rounds, the page cache settled before each
phase. Prints MB/s per round, the ratio N brokers / 1 broker (median, min..max), the
brokers' and the load generator's CPU: the load generator shares these cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.bench import vs_kafka_load as load  # noqa: E402
from tests.bench.bench_vs_kafka import end_offsets  # noqa: E402
from tests.support.cluster import Cluster  # noqa: E402

PARTITIONS = 12  # divides evenly over 1, 2, 3, 4 and 6 brokers
WARMUP_SECONDS = 3.0
# Null keys: librdkafka's sticky partitioner would feed one partition (one broker) for
# sticky.partitioning.linger.ms at a time; 0 spreads every record at random.
SPREAD = {"sticky.partitioning.linger.ms": "0"}


def one_phase(brokers: int, seconds: float, work: Path) -> dict[str, float]:
    """Start a ``brokers``-broker cluster, produce for ``seconds``, stop it; the figures."""
    cluster = Cluster(work, brokers, {"default.replication.factor": "1"})
    try:
        cluster.start()
        cluster.create_topic("cores", PARTITIONS, 1)
        leaders = set()
        for p in range(PARTITIONS):
            leaders.add(cluster.wait_for_leader("cores", p).leader)
        if len(leaders) != brokers:
            raise load.BenchFailure(f"leaders {sorted(leaders)} do not cover {brokers} brokers")
        load.produce(cluster.bootstrap, "cores", WARMUP_SECONDS, 1024, "1", settings=SPREAD)
        load.settle_page_cache()
        pids = [b.proc.pid for b in cluster.brokers.values() if b.proc is not None]
        before = [load.proc_cpu(pid) for pid in pids]
        run = load.produce(cluster.bootstrap, "cores", seconds, 1024, "1", settings=SPREAD)
        used = [load.proc_cpu(pid) - b for pid, b in zip(pids, before, strict=True)]
        acked = int(run.result["acked"])
        warmup_and_run = end_offsets(cluster, "cores", PARTITIONS)  # type: ignore[arg-type]
        if warmup_and_run < acked:
            raise load.BenchFailure(f"end offsets {warmup_and_run} < acknowledged {acked}")
        wall = float(run.result["seconds"])
        return {
            "MB/s": float(run.result["bytes"]) / 1e6 / wall,
            "broker CPU %": sum(c.user + c.system for c in used) / wall * 100,
            "busiest broker CPU %": max(c.user + c.system for c in used) / wall * 100,
            "load generator CPU %": (run.cpu.user + run.cpu.system) / run.wall * 100,
        }
    finally:
        cluster.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--brokers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=8.0)
    args = ap.parse_args(argv)
    if args.brokers < 2:
        raise SystemExit("--brokers must be at least 2 (one broker is the reference)")
    single: list[dict[str, float]] = []
    many: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="pybroker-bench-cores-") as tmp:
        for r in range(args.rounds):
            single.append(one_phase(1, args.seconds, Path(tmp) / f"one-{r}"))
            many.append(one_phase(args.brokers, args.seconds, Path(tmp) / f"many-{r}"))
            print(
                f"round {r + 1}: 1 broker {single[-1]['MB/s']:.0f} MB/s, "
                f"{args.brokers} brokers {many[-1]['MB/s']:.0f} MB/s",
                flush=True,
            )
    ratios = [m["MB/s"] / s["MB/s"] for s, m in zip(single, many, strict=True)]
    print(
        f"produce 1 KiB acks=1, {PARTITIONS} partitions RF=1, {os.cpu_count()} cores: "
        f"{args.brokers} brokers / 1 broker = {statistics.median(ratios):.2f}x "
        f"({min(ratios):.2f}..{max(ratios):.2f})"
    )
    for label, phases in (("1 broker", single), (f"{args.brokers} brokers", many)):
        figures = ", ".join(f"{k} {statistics.median(p[k] for p in phases):.0f}" for k in phases[0])
        print(f"  {label}: {figures} (medians)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
