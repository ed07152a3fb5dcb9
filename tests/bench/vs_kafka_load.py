"""Load generation and process accounting for tests/bench/bench_vs_kafka.py.

Every client here is librdkafka (the C library inside confluent-kafka's wheel), the same
build and settings against both brokers:

- throughput: ``rdkperf`` (tests/bench/rdkperf.c, compiled on first use with gcc), a C loop
  over rd_kafka_produce / rd_kafka_consumer_poll in its own process, so no Python loop
  caps the rate; its ceiling is measured against librdkafka's in-memory mock broker;
- end-to-end latency: confluent-kafka in its own process (run this file with ``e2e``) at a
  fixed, low rate, where the client's per-record cost is far below the gap between records.

Also here: broker CPU and RSS from /proc, and idle client connections.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RDKPERF_SOURCE = ROOT / "tests" / "bench" / "rdkperf.c"
RDKPERF_BIN = ROOT / "build" / "bench" / "rdkperf"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SETTLED_DIRTY_KB = 32 * 1024  # dirty + under writeback below this: the page cache is settled

# librdkafka producer settings for every throughput phase, on both brokers: linger 5 ms and
# ~1 MB batches (bytes-bound for 1 KiB and 100 B records), a deep local queue, no compression.
PRODUCER_SETTINGS = {
    "linger.ms": "5",
    "batch.size": "1000000",
    "batch.num.messages": "100000",
    "queue.buffering.max.messages": "500000",
    "queue.buffering.max.kbytes": "65536",
    "compression.type": "none",
}


class BenchFailure(Exception):
    """A broker or the load generator did not do its job; the run exits non-zero."""


# -- /proc accounting ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Cpu:
    user: float
    system: float

    def __sub__(self, other: Cpu) -> Cpu:
        return Cpu(self.user - other.user, self.system - other.system)


def proc_cpu(pid: int) -> Cpu:
    """User and system CPU seconds of process ``pid`` (all its threads: the JVM's too)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # After "pid (comm) ": state is field 3, utime 14, stime 15 (1-based, man 5 proc).
    return Cpu(int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK)


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise BenchFailure(f"no VmRSS for pid {pid}")


def settle_page_cache(timeout: float = 120.0) -> None:
    """Write back every dirty page and wait until the kernel reports (almost) none.

    Each throughput phase writes gigabytes. Left dirty, they are written back during the
    next phase, and the kernel throttles whichever process is writing then (vmstat shows
    whole seconds with the broker blocked and both CPUs idle). Measured on this machine,
    the same pybroker build ranged from 289 to 457 MB/s with the previous phase's pages
    dirty, and from 517 to 550 MB/s settled. So every measured phase starts from the same
    clean page cache, for both brokers; the phase's own writeback still falls inside it."""
    t0 = time.monotonic()
    os.sync()
    while time.monotonic() - t0 < timeout:
        meminfo = dict(
            line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines()
        )
        dirty_kb = int(meminfo["Dirty"].split()[0]) + int(meminfo["Writeback"].split()[0])
        if dirty_kb < SETTLED_DIRTY_KB:
            break
        time.sleep(0.1)


# -- rdkperf ------------------------------------------------------------------------------------


def librdkafka_dir() -> Path:
    import confluent_kafka

    return Path(confluent_kafka.__file__).resolve().parents[1] / "confluent_kafka.libs"


def build_rdkperf() -> Path:
    """Compile rdkperf.c against the wheel's librdkafka (again only when the source changed)."""
    if RDKPERF_BIN.exists() and RDKPERF_BIN.stat().st_mtime >= RDKPERF_SOURCE.stat().st_mtime:
        return RDKPERF_BIN
    libdir = librdkafka_dir()
    libs = sorted(libdir.glob("librdkafka*.so*"))
    if not libs:
        raise BenchFailure(f"no librdkafka in {libdir}: is confluent-kafka installed?")
    RDKPERF_BIN.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["gcc", "-O2", "-Wall", "-o", str(RDKPERF_BIN), str(RDKPERF_SOURCE)]
    cmd += [f"-L{libdir}", f"-l:{libs[0].name}", f"-Wl,-rpath,{libdir}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise BenchFailure(f"gcc failed: {done.stderr}")
    return RDKPERF_BIN


@dataclass
class ClientRun:
    result: dict[str, float | int | str]
    cpu: Cpu  # the load generator's own CPU (all its threads)
    wall: float


def run_client(cmd: list[str], timeout: float) -> ClientRun:
    """Run a load-generator process; its JSON line, CPU (wait4) and wall time."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - start
    out = proc.stdout.read().decode() if proc.stdout else ""
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0 or not out.strip():
        raise BenchFailure(f"{cmd[:3]} exited {proc.returncode} after {wall:.1f}s: {err[-2000:]}")
    line = out.strip().splitlines()[-1]
    return ClientRun(json.loads(line), Cpu(usage.ru_utime, usage.ru_stime), wall)


def produce(
    bootstrap: str,
    topic: str,
    seconds: float,
    size: int,
    acks: str,
    max_records: int = 10**10,
    settings: dict[str, str] | None = None,
) -> ClientRun:
    """Produce ``size``-byte records for ``seconds``; every sent record must be acknowledged.
    ``settings`` add to (or override) PRODUCER_SETTINGS."""
    extra = [f"{k}={v}" for k, v in {**PRODUCER_SETTINGS, **(settings or {})}.items()]
    cmd = [str(build_rdkperf()), "produce", bootstrap, topic, str(seconds), str(max_records)]
    run = run_client([*cmd, str(size), acks, *extra], timeout=seconds + 90)
    r = run.result
    if r["failed"] or r["unflushed"] or r["acked"] != r["sent"] or not r["sent"]:
        raise BenchFailure(f"produce to {topic} lost acknowledgements: {r}")
    return run


def consume(bootstrap: str, topic: str, partitions: int, records: int, timeout: float) -> ClientRun:
    """Read the topic from the beginning; exactly ``records`` records must arrive."""
    cmd = [str(build_rdkperf()), "consume", bootstrap, topic, str(partitions), str(records)]
    run = run_client([*cmd, str(timeout)], timeout=timeout + 30)
    if run.result["records"] != records or run.result["errors"]:
        raise BenchFailure(f"consume of {topic} read {run.result}, expected {records} records")
    return run


# -- librdkafka's mock broker: the load generator's ceiling --------------------------------------

MOCK_SCRIPT = """
import sys
from confluent_kafka.admin import AdminClient
admin = AdminClient({"test.mock.num.brokers": 1, "log_level": 0})
brokers = admin.list_topics(timeout=10).brokers
b = next(iter(brokers.values()))
print(f"{b.host}:{b.port}", flush=True)
sys.stdin.read()
"""


class MockBroker:
    """librdkafka's in-memory C mock broker in a process of its own (no disk, no Python)."""

    def __enter__(self) -> str:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", MOCK_SCRIPT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if ":" not in line:
            self.__exit__()
            raise BenchFailure("librdkafka's mock broker did not start")
        return line

    def __exit__(self, *exc: object) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


# -- idle connections ------------------------------------------------------------------------------


def open_idle_connections(port: int, count: int) -> list[object]:
    """``count`` connections that did a producer's ApiVersions handshake, then stay idle."""
    from tests.support.wire import KafkaWire

    conns = []
    for _ in range(count):
        wire = KafkaWire(port=port, timeout=20.0, client_id="idle-producer")
        wire.api_versions()
        conns.append(wire)
    return conns


# -- end-to-end latency (run as a process: ``python vs_kafka_load.py e2e ...``) ------------------


def e2e_main(bootstrap: str, topic: str, rate: float, seconds: float) -> None:
    """Send ``rate`` records/s for ``seconds`` (paced on absolute times), each carrying its
    send time; a consumer in this process stamps arrival. Prints percentiles (ms) as JSON
    after dropping the first 10% (connection warm-up). Fails unless every record arrives."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

    total = int(rate * seconds)
    latencies: list[int] = []
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "e2e",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    done = threading.Event()

    def receive() -> None:
        deadline = time.monotonic() + seconds + 60
        while len(latencies) < total and time.monotonic() < deadline:
            msg = consumer.poll(0.1)  # returns at the first record (consume() waits for a batch)
            if msg is not None and msg.error() is None:
                latencies.append(time.monotonic_ns() - int(msg.value()[:20]))
        done.set()

    producer = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0, "log_level": 3}
    )
    producer.produce(topic, b"%020d" % time.monotonic_ns())  # warm: metadata, connection
    producer.flush(10)
    latencies.clear()
    thread = threading.Thread(target=receive, daemon=True)
    # The warm-up record must be consumed before counting starts.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is not None and msg.error() is None:
            break
    thread.start()
    start = time.monotonic()
    for i in range(total):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        producer.produce(topic, b"%020d" % time.monotonic_ns() + b"x" * 80)
        producer.poll(0)
    producer.flush(30)
    done.wait(seconds + 90)
    consumer.close()
    got = len(latencies)
    kept = sorted(latencies[total // 10 :])

    def pct(q: float) -> float:
        return kept[min(len(kept) - 1, int(q * len(kept)))] / 1e6 if kept else float("nan")

    out = {"sent": total, "received": got, "p50": pct(0.5), "p99": pct(0.99), "p999": pct(0.999)}
    print(json.dumps(out))


def end_to_end(bootstrap: str, topic: str, rate: float, seconds: float) -> ClientRun:
    cmd = [sys.executable, __file__, "e2e", bootstrap, topic, str(rate), str(seconds)]
    run = run_client(cmd, timeout=seconds + 120)
    if run.result["received"] != run.result["sent"]:
        raise BenchFailure(f"end-to-end on {topic}: {run.result}")
    return run


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "e2e":
        e2e_main(sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5]))
    else:
        sys.exit("usage: vs_kafka_load.py e2e BOOTSTRAP TOPIC RATE SECONDS")
