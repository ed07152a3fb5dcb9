"""What /metrics costs: produce throughput with the HTTP endpoint on (and scraped) vs off.

    .venv/bin/python tests/bench/bench_metrics.py [--rounds 3] [--scale 1]

Two brokers in the same run: one with ``pybroker.http.listener`` set (request timing and
counters on; another process scrapes it once a second, 15x Prometheus' default rate), one
with it empty (counting off). Two workloads, alternated between the brokers round by round
so drift in the machine's load hits both alike; the median of each is compared:

- batches:  200,000 records of 1 KiB, librdkafka's large batches (bytes-bound);
- requests: 20,000 records of 100 B, one record per Produce request (per-request cost).

Prints records/s per workload and the on/off ratio, and the broker process's CPU time per
record (from /proc: less sensitive than throughput to other load on a shared machine).
Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from confluent_kafka import Producer  # noqa: E402

from tests.support.broker import BrokerProcess  # noqa: E402

PHASE_TIMEOUT = 60.0

WORKLOADS = {
    "batches": dict(records=200_000, size=1024, conf={"linger.ms": 5}),
    "requests": dict(
        records=20_000,
        size=100,
        conf={"linger.ms": 0, "batch.num.messages": 1, "max.in.flight": 5},
    ),
}


def produce(bootstrap: str, topic: str, records: int, size: int, conf: dict) -> float:
    """Records per second, from the first produce() to the last delivery report."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": 1, **conf})
    producer.produce(topic, b"w")  # warm-up: metadata and connection before the clock
    producer.flush(10)
    value = b"x" * size
    failed = []

    def report(err: object, _msg: object) -> None:
        if err is not None:
            failed.append(err)

    start = time.perf_counter()
    for _ in range(records):
        while True:
            try:
                producer.produce(topic, value, on_delivery=report)
                break
            except BufferError:
                producer.poll(0.01)
        if time.perf_counter() - start > PHASE_TIMEOUT:
            raise SystemExit("produce phase timed out")
    if producer.flush(PHASE_TIMEOUT):
        raise SystemExit("records still undelivered after the phase timeout")
    elapsed = time.perf_counter() - start
    if failed:
        raise SystemExit(f"{len(failed)} records failed: {failed[0]}")
    return records / elapsed


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


SCRAPER = """
import sys, time, urllib.request
url, n = sys.argv[1], 0
try:
    while True:
        time.sleep(1.0)
        with urllib.request.urlopen(url, timeout=5) as resp:
            resp.read()
        n += 1
except KeyboardInterrupt:
    print(n)
"""


def start_scraper(url: str) -> subprocess.Popen[str]:
    """Prometheus' part, in a process of its own (a thread here would take the GIL from the
    producer loop and slow the client, not the broker)."""
    return subprocess.Popen([sys.executable, "-c", SCRAPER, url], stdout=subprocess.PIPE, text=True)


def stop_scraper(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=10)
    return int(out.strip() or 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--scale", type=float, default=1.0, help="records per phase x this (longer, steadier)"
    )
    args = parser.parse_args()
    workloads = {
        name: dict(w, records=int(w["records"] * args.scale)) for name, w in WORKLOADS.items()
    }
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as tmp:
        on = BrokerProcess(Path(tmp) / "on")
        off = BrokerProcess(Path(tmp) / "off", overrides={"pybroker.http.listener": ""})
        on.start()
        off.start()
        scraper = start_scraper(f"http://127.0.0.1:{on.http_port}/metrics")
        scrapes = 0
        results: dict[tuple[str, str], list[float]] = {}
        cpu: dict[tuple[str, str], list[float]] = {}
        try:
            for r in range(args.rounds):
                for name, w in workloads.items():
                    order = (("on", on), ("off", off)) if r % 2 == 0 else (("off", off), ("on", on))
                    for label, broker in order:
                        assert broker.proc is not None
                        cpu0 = cpu_seconds(broker.proc.pid)
                        rate = produce(broker.bootstrap, f"{name}-{r}", **w)
                        used = (cpu_seconds(broker.proc.pid) - cpu0) / w["records"] * 1e6
                        results.setdefault((name, label), []).append(rate)
                        cpu.setdefault((name, label), []).append(used)
                        print(
                            f"round {r + 1} {name:8s} metrics {label:3s}: {rate:>10,.0f} rec/s, "
                            f"broker CPU {used:6.2f} us/record"
                        )
        finally:
            scrapes = stop_scraper(scraper)
            on.stop()
            off.stop()
        print(f"\n/metrics scraped {scrapes} times during the run")
        for name in WORKLOADS:
            m_on = statistics.median(results[(name, "on")])
            m_off = statistics.median(results[(name, "off")])
            c_on = statistics.median(cpu[(name, "on")])
            c_off = statistics.median(cpu[(name, "off")])
            print(
                f"{name:8s}: on {m_on:>10,.0f} rec/s, off {m_off:>10,.0f} rec/s, "
                f"on/off = {m_on / m_off:.3f}; broker CPU on {c_on:.2f} us/record, "
                f"off {c_off:.2f} us/record, on/off = {c_on / c_off:.3f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
