"""`make bench`: pybroker beside Apache Kafka 4.1 on this machine, in the same run.

    .venv/bin/python tests/bench/bench_vs_kafka.py [--rounds 5] [--quick] [--out DIR]

Alternating rounds (pybroker, Kafka, pybroker, Kafka, ...), one broker running at a time,
each on free 127.0.0.1 ports with a fresh data dir under the results dir (same disk).
Kafka runs as a normal single-node KRaft install would: kafka-server-start.sh's JVM
settings (1 GiB heap, G1) and the distribution's server.properties; see KAFKA_JVM_OPTS and
KAFKA_SETTINGS. The load generator is librdkafka for both (tests/bench/vs_kafka_load.py).

Per round and broker: start-up time and idle RSS; produce 1 KiB and 100 B records with
acks=1 and acks=all; consume; end-to-end latency at a fixed rate; produce to 1,000
partitions; one busy producer beside 200 idle connections (and alone just before it, for
the ratio); start-up and shutdown with 10,000 partitions (first round only: it takes
minutes). Broker CPU (user and system, from /proc/<pid>/stat, the JVM's threads
included) is read before and after each phase.
Before each measured phase the page cache is settled (every dirty page written back,
untimed; see vs_kafka_load.settle_page_cache), so neither broker is throttled for the
writeback of the phase before it.
Every phase checks its counts (each record acknowledged, end offsets match, consume reads
exactly N) and pybroker's log must hold no error. Writes results.json and results.md (a
table per scenario: figures, ratio pybroker/Kafka with min..max over rounds, CPU per MB),
both brokers' logs and, with py-spy installed, a flame graph of pybroker producing 1 KiB
records (an extra, uncounted run) into the results dir.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from confluent_kafka import KafkaException, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec  # noqa: E402

from tests.bench import vs_kafka_load as load  # noqa: E402
from tests.bench.vs_kafka_load import BenchFailure, Cpu  # noqa: E402
from tests.support.broker import BrokerProcess, wait_for_port  # noqa: E402
from tests.support.kafka_ref import LOG4J_CONFIG, KafkaReference, require_kafka_lib  # noqa: E402

# kafka-server-start.sh (KAFKA_HEAP_OPTS) and kafka-run-class.sh (KAFKA_JVM_PERFORMANCE_OPTS).
KAFKA_JVM_OPTS = [
    "-Xmx1G",
    "-Xms1G",
    "-server",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:MaxInlineLevel=15",
    "-Djava.awt.headless=true",
]
# config/server.properties of the Kafka 4.1 distribution (the thread and buffer settings).
KAFKA_SETTINGS = {
    "num.network.threads": "3",
    "num.io.threads": "8",
    "socket.send.buffer.bytes": "102400",
    "socket.receive.buffer.bytes": "102400",
    "socket.request.max.bytes": "104857600",
    "num.recovery.threads.per.data.dir": "1",
    "log.retention.hours": "168",
    "log.segment.bytes": "1073741824",
    "log.retention.check.interval.ms": "300000",
    "metric.reporters": "org.apache.kafka.common.metrics.JmxReporter",  # Kafka's default
}
PARTITIONS = 6  # of every throughput topic


@dataclass(frozen=True)
class Plan:
    rounds: int
    seconds: float  # per throughput phase
    e2e_rate: float
    e2e_seconds: float
    many_partitions: int


FULL = Plan(rounds=5, seconds=8.0, e2e_rate=1000.0, e2e_seconds=10.0, many_partitions=10_000)
# --quick: one round, short phases, 1,000 partitions for the start-up/shutdown scenario.
QUICK = Plan(rounds=1, seconds=2.0, e2e_rate=1000.0, e2e_seconds=3.0, many_partitions=1_000)
WARMUP_SECONDS = 4.0  # unmeasured produce before the phases: JIT, page cache, connections


# -- the two brokers ---------------------------------------------------------------------------


class BenchKafka(KafkaReference):
    """The reference node with a normal install's JVM settings instead of the test ones."""

    def start(self, timeout: float = 90.0) -> BenchKafka:
        if not (self.data_dir / "meta.properties").exists():
            self.format()
        self.write_config()
        cmd = ["java", *KAFKA_JVM_OPTS, f"-Dlog4j2.configurationFile={LOG4J_CONFIG}"]
        cmd += ["-Dpybroker.kafka.level=INFO", "-cp", f"{require_kafka_lib()}/*", "kafka.Kafka"]
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen([*cmd, str(self.config_path)], stdout=log, stderr=log)
        log.close()
        try:
            wait_for_port(self.port, timeout, self.proc)
        except TimeoutError:
            self.kill()
            raise BenchFailure(f"Kafka failed to start:\n{self.log_tail()}") from None
        return self


Broker = BrokerProcess | BenchKafka


def make_broker(name: str, data_dir: Path) -> Broker:
    if name == "kafka":
        return BenchKafka(data_dir, overrides=dict(KAFKA_SETTINGS))
    return BrokerProcess(data_dir, overrides={"group.initial.rebalance.delay.ms": "0"})


def pid_of(broker: Broker) -> int:
    assert broker.proc is not None
    return broker.proc.pid


def admin(broker: Broker) -> AdminClient:
    # socket.timeout.ms: creating thousands of partitions may take minutes on a busy box.
    config = {"bootstrap.servers": broker.bootstrap, "log_level": 0, "socket.timeout.ms": 300_000}
    return AdminClient(config)


def wait_ready(broker: Broker, topics: dict[str, int], timeout: float = 180.0) -> None:
    """Until Metadata lists the broker and every partition of ``topics`` with a leader."""
    client = admin(broker)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            md = client.list_topics(timeout=5)
        except Exception:  # noqa: BLE001 - not up yet: retry until the deadline
            time.sleep(0.05)
            continue
        ok = bool(md.brokers)
        for name, count in topics.items():
            t = md.topics.get(name)
            if t is None or t.error is not None or len(t.partitions) != count:
                ok = False
                break
            if any(p.leader < 0 or p.error is not None for p in t.partitions.values()):
                ok = False
                break
        if ok:
            return
        time.sleep(0.05)
    raise BenchFailure(f"{broker.bootstrap} not ready with {len(topics)} topics in {timeout}s")


def create_topics(broker: Broker, topics: dict[str, int]) -> None:
    client = admin(broker)
    for name, count in topics.items():  # one request per topic: none runs into a timeout
        futures = client.create_topics([NewTopic(name, count, 1)], request_timeout=300)
        for future in futures.values():
            future.result(330)
    wait_ready(broker, topics, timeout=300)


def end_offsets(broker: Broker, topic: str, partitions: int) -> int:
    """The sum of the topic's log-end offsets (ListOffsets latest)."""
    request = {TopicPartition(topic, p): OffsetSpec.latest() for p in range(partitions)}
    client = admin(broker)  # kept alive until the futures resolve
    futures = client.list_offsets(request, request_timeout=60)
    return sum(f.result(60).offset for f in futures.values())


# -- one broker, one round ---------------------------------------------------------------------


@dataclass
class Phase:
    """One scenario's figures for one broker in one round."""

    metrics: dict[str, float]
    cpu: Cpu | None = None
    mb: float = 0.0  # record bytes moved, 10^6
    client_cpu: Cpu | None = None
    client_wall: float = 0.0


@dataclass
class Round:
    broker: str
    index: int
    phases: dict[str, Phase] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


ALONE = "produce 1 KiB acks=1, alone (before the next)"
WITH_IDLE = "produce 1 KiB acks=1, + 200 idle connections"
PRODUCE_SCENARIOS = [
    ("produce 1 KiB acks=1", 1024, "1"),
    ("produce 1 KiB acks=all", 1024, "all"),
    ("produce 100 B acks=1", 100, "1"),
    ("produce 100 B acks=all", 100, "all"),
]


def progress(message: str) -> None:
    print(f"  {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def measured(pid: int, run: Callable[[], load.ClientRun]) -> tuple[load.ClientRun, Cpu]:
    load.settle_page_cache()  # untimed: the previous phase's dirty pages are written back
    before = load.proc_cpu(pid)
    result = run()
    progress(f"{result.wall:.1f}s {json.dumps(result.result)}")
    return result, load.proc_cpu(pid) - before


def throughput_phase(run: load.ClientRun, cpu: Cpu) -> Phase:
    r = run.result
    mb = float(r["bytes"]) / 1e6
    seconds = float(r["seconds"])
    records = float(r.get("acked", r.get("records", 0)))
    return Phase(
        {"MB/s": mb / seconds, "k rec/s": records / seconds / 1e3},
        cpu=cpu,
        mb=mb,
        client_cpu=run.cpu,
        client_wall=run.wall,
    )


def topic_name(scenario: str) -> str:
    return scenario.replace(" ", "-").replace("=", "").replace("-KiB", "k").replace("-B", "b")


def run_round(name: str, index: int, plan: Plan, work: Path) -> Round:
    data_dir = work / f"{name}-r{index}"
    shutil.rmtree(data_dir, ignore_errors=True)
    out = Round(name, index)
    broker = make_broker(name, data_dir)
    if isinstance(broker, BenchKafka):
        broker.format()  # kafka-storage format: an install step, not start-up
    try:
        # start-up time (to a listening port; to a Metadata answer) and idle RSS
        t0 = time.monotonic()
        broker.start(timeout=120)
        listening = time.monotonic() - t0
        wait_ready(broker, {})
        startup = time.monotonic() - t0
        time.sleep(2.0)
        pid = pid_of(broker)
        out.phases["start-up, idle"] = Phase(
            {
                "listening s": listening,
                "Metadata answered s": startup,
                "idle RSS MB": load.proc_rss_mb(pid),
            }
        )

        topics = {topic_name(s): PARTITIONS for s, _, _ in PRODUCE_SCENARIOS}
        topics |= {"warmup": PARTITIONS, "e2e": 1, "parts-1000": 1000, "busy-idle": PARTITIONS}
        create_topics(broker, topics)
        progress(f"{name} up in {startup:.1f}s; topics created")
        # Unmeasured: Kafka's JIT compiles its hot paths during the first seconds of load.
        load.produce(broker.bootstrap, "warmup", WARMUP_SECONDS, 1024, "1")
        load.produce(broker.bootstrap, "warmup", 1.0, 100, "all")

        for scenario, size, acks in PRODUCE_SCENARIOS:
            topic = topic_name(scenario)
            run, cpu = measured(
                pid,
                lambda t=topic, s=size, a=acks: load.produce(
                    broker.bootstrap, t, plan.seconds, s, a
                ),
            )
            ends = end_offsets(broker, topic, PARTITIONS)
            if ends != run.result["acked"]:
                raise BenchFailure(f"{name}: {topic} end offsets {ends} != {run.result}")
            out.phases[scenario] = throughput_phase(run, cpu)

        first = topic_name(PRODUCE_SCENARIOS[0][0])
        count = end_offsets(broker, first, PARTITIONS)
        run, cpu = measured(
            pid, lambda: load.consume(broker.bootstrap, first, PARTITIONS, count, timeout=120)
        )
        out.phases["consume 1 KiB"] = throughput_phase(run, cpu)

        run, cpu = measured(
            pid, lambda: load.end_to_end(broker.bootstrap, "e2e", plan.e2e_rate, plan.e2e_seconds)
        )
        r = run.result
        out.phases[f"end-to-end latency, {plan.e2e_rate:.0f} rec/s, acks=all"] = Phase(
            {"p50 ms": float(r["p50"]), "p99 ms": float(r["p99"]), "p999 ms": float(r["p999"])},
            cpu=cpu,
            client_cpu=run.cpu,
            client_wall=run.wall,
        )

        run, cpu = measured(
            pid, lambda: load.produce(broker.bootstrap, "parts-1000", plan.seconds, 1024, "1")
        )
        if end_offsets(broker, "parts-1000", 1000) != run.result["acked"]:
            raise BenchFailure(f"{name}: end offsets of parts-1000 != acknowledged records")
        out.phases["produce 1 KiB acks=1, 1,000 partitions"] = throughput_phase(run, cpu)

        # The same load alone, right before: the idle connections' cost is the ratio of
        # two adjacent phases (phases further apart differ by the page cache's state).
        run, cpu = measured(
            pid, lambda: load.produce(broker.bootstrap, "busy-idle", plan.seconds, 1024, "1")
        )
        out.phases[ALONE] = throughput_phase(run, cpu)
        idle = load.open_idle_connections(broker.port, 200)
        try:
            run, cpu = measured(
                pid, lambda: load.produce(broker.bootstrap, "busy-idle", plan.seconds, 1024, "1")
            )
        finally:
            for conn in idle:
                conn.close()  # type: ignore[attr-defined]
        out.phases[WITH_IDLE] = throughput_phase(run, cpu)

        if index == 1:  # minutes with 10,000 partitions: once per broker, not every round
            many_phase(broker, plan.many_partitions, out)
        broker.kill()  # the data dir is discarded: no need to wait for a clean stop
    finally:
        if broker.proc is not None:
            broker.stop()
        logs = work.parent / "logs"
        logs.mkdir(exist_ok=True)
        if broker.log_path.exists():
            shutil.copy(broker.log_path, logs / f"{name}-r{index}.log")
    if isinstance(broker, BrokerProcess):
        errors = broker_errors(broker.log_path)
        if errors:
            raise BenchFailure(f"pybroker logged errors in round {index}:\n" + "\n".join(errors))
    else:
        out.notes.append(f"Kafka ERROR lines: {len(broker_errors(broker.log_path))}")
    shutil.rmtree(data_dir, ignore_errors=True)
    return out


def many_phase(broker: Broker, partitions: int, out: Round) -> None:
    """Create ``partitions`` (10 topics), then time a clean stop and a start until every
    partition has its leader again."""
    per_topic = partitions // 10
    topics = {f"many-{i}": per_topic for i in range(10)}
    # Untimed: write back the throughput phases' dirty pages, which would otherwise land
    # on whichever broker fsyncs next.
    load.settle_page_cache()
    t0 = time.monotonic()
    create_topics(broker, topics)
    create_s = time.monotonic() - t0
    load.settle_page_cache()
    t0 = time.monotonic()
    code = broker.stop(timeout=120)
    shutdown_s = time.monotonic() - t0
    if code not in (0, 143):
        raise BenchFailure(f"{out.broker} exited {code} on SIGTERM")
    t0 = time.monotonic()
    broker.start(timeout=300)
    listening_s = time.monotonic() - t0
    wait_ready(broker, topics, timeout=300)
    startup_s = time.monotonic() - t0
    progress(
        f"{partitions} partitions: create {create_s:.1f}s, stop {shutdown_s:.1f}s, "
        f"listening {listening_s:.1f}s, all leaders {startup_s:.1f}s"
    )
    cpu = load.proc_cpu(pid_of(broker))  # the restarted process: its start-up's CPU
    out.phases[f"{partitions:,} partitions"] = Phase(
        {
            "create s": create_s,
            "shutdown s": shutdown_s,
            "start-up: listening s": listening_s,
            "start-up: every leader in Metadata s": startup_s,
            "start-up CPU s": cpu.user + cpu.system,
        }
    )


def broker_errors(log_path: Path) -> list[str]:
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [ln for ln in lines if " ERROR " in ln or "CRITICAL" in ln or "Traceback" in ln][:20]


# -- ceiling and flame graph -------------------------------------------------------------------


def client_ceiling(plan: Plan) -> dict[str, dict[str, float]]:
    """The load generator against librdkafka's in-memory mock broker (nothing on disk)."""
    out = {}
    with load.MockBroker() as bootstrap:
        for scenario, size, acks in PRODUCE_SCENARIOS[::2]:
            run = load.produce(bootstrap, f"ceiling-{size}", plan.seconds, size, acks)
            out[scenario] = throughput_phase(run, Cpu(0, 0)).metrics
    return out


def flame_graph(plan: Plan, work: Path, results: Path) -> str:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        return "py-spy not installed: no flame graph"
    broker = make_broker("pybroker", work / "pybroker-flame")
    broker.start()
    try:
        create_topics(broker, {"flame": PARTITIONS})
        svg = results / "pybroker-produce-1KiB-flame.svg"
        duration = int(plan.seconds) + 2
        cmd = [spy, "record", "--pid", str(pid_of(broker)), "--duration", str(duration)]
        cmd += ["--rate", "200", "--nonblocking", "--output", str(svg)]
        spy_proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.5)
        load.produce(broker.bootstrap, "flame", plan.seconds, 1024, "1")
        _, err = spy_proc.communicate(timeout=duration + 60)
        if spy_proc.returncode != 0:
            return f"py-spy failed: {err.decode()[-500:]}"
        return svg.name
    finally:
        broker.stop()
        shutil.rmtree(work / "pybroker-flame", ignore_errors=True)


# -- report ------------------------------------------------------------------------------------


def fmt(x: float) -> str:
    if x != x:  # NaN
        return "-"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}" if abs(x) >= 0.1 else f"{x:.3f}"


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} ({min(values):.0f}..{max(values):.0f})"


def per_mb(phases: list[Phase]) -> str:
    cpus = [(p.cpu, p.mb) for p in phases if p.cpu is not None and p.mb > 0]
    if not cpus:
        return "-"
    user = statistics.median(c.user / mb * 1e3 for c, mb in cpus)
    system = statistics.median(c.system / mb * 1e3 for c, mb in cpus)
    return f"{user:.2f} / {system:.2f}"


def report(rounds: list[Round], header: dict[str, Any]) -> str:
    lines = [f"# pybroker vs Apache Kafka 4.1 ({header['started']})", ""]
    lines += [f"- {k}: {v}" for k, v in header.items() if k != "started"]
    lines += [
        "",
        "Figures are medians over rounds; ratio = pybroker / Kafka per round, median (min..max).",
        "For latencies, start-up, shutdown and RSS lower is better; for throughput higher.",
        "CPU: broker user / system CPU ms per MB of record values (median over rounds).",
        "Each measured phase starts with the page cache settled (dirty pages written back).",
        "",
    ]
    ours = [r for r in rounds if r.broker == "pybroker"]
    theirs = [r for r in rounds if r.broker == "kafka"]
    for scenario in ours[0].phases:
        lines += [f"### {scenario}", ""]
        lines += [
            "| metric | pybroker | Kafka 4.1 | ratio (min..max) |",
            "| --- | ---: | ---: | ---: |",
        ]
        for metric in ours[0].phases[scenario].metrics:
            a = [r.phases[scenario].metrics[metric] for r in ours if scenario in r.phases]
            b = [r.phases[scenario].metrics[metric] for r in theirs if scenario in r.phases]
            ratios = [x / y for x, y in zip(a, b, strict=True) if y]
            ratio = (
                f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}..{max(ratios):.2f})"
                if ratios
                else "-"
            )
            med_a, med_b = fmt(statistics.median(a)), fmt(statistics.median(b))
            lines.append(f"| {metric} | {med_a} | {med_b} | {ratio} |")
        a_cpu = per_mb([r.phases[scenario] for r in ours if scenario in r.phases])
        b_cpu = per_mb([r.phases[scenario] for r in theirs if scenario in r.phases])
        if a_cpu != "-":
            lines.append(f"| CPU ms/MB user / sys | {a_cpu} | {b_cpu} | |")
        clients = [r.phases[scenario] for r in rounds if scenario in r.phases]
        clients = [p for p in clients if p.client_cpu]
        if clients and clients[0].mb:
            load_pct = max(
                (p.client_cpu.user + p.client_cpu.system) / p.client_wall * 100  # type: ignore[union-attr]
                for p in clients
            )
            lines.append(f"| load generator CPU, max % of one core | {load_pct:.0f}% | | |")
        lines.append("")
    lines += ["### 200 idle connections: busy producer with them / alone, same broker", ""]
    for name, label in (("pybroker", "pybroker"), ("kafka", "Kafka 4.1")):
        ratios = [
            r.phases[WITH_IDLE].metrics["MB/s"] / r.phases[ALONE].metrics["MB/s"]
            for r in rounds
            if r.broker == name and WITH_IDLE in r.phases and ALONE in r.phases
        ]
        if ratios:
            spread_ = f"{min(ratios):.2f}..{max(ratios):.2f}"
            lines.append(f"- {label}: {statistics.median(ratios):.2f}x ({spread_})")
    lines.append("")
    notes = [f"{r.broker} round {r.index}: {n}" for r in rounds for n in r.notes]
    if notes:
        lines += ["Notes:", *[f"- {n}" for n in notes], ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round, short phases (< 3 min)")
    parser.add_argument("--rounds", type=int, help="rounds per broker (default 5; quick 1)")
    parser.add_argument("--seconds", type=float, help="seconds per throughput phase")
    parser.add_argument("--many-partitions", type=int, help="start-up/shutdown partitions")
    parser.add_argument("--out", type=Path, help="results dir (default bench-results/<time>)")
    parser.add_argument("--no-flame", action="store_true", help="skip the py-spy flame graph")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    plan = Plan(
        rounds=args.rounds or plan.rounds,
        seconds=args.seconds or plan.seconds,
        e2e_rate=plan.e2e_rate,
        e2e_seconds=plan.e2e_seconds,
        many_partitions=args.many_partitions or plan.many_partitions,
    )
    started = datetime.now(UTC)
    results = args.out or ROOT / "bench-results" / started.strftime("%Y%m%dT%H%M%SZ")
    work = results / "data"
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    load.build_rdkperf()
    ceilings: list[dict[str, dict[str, float]]] = []
    rounds: list[Round] = []
    for i in range(1, plan.rounds + 1):
        ceilings.append(client_ceiling(plan))  # every round: the box's load moves
        print(f"load generator ceiling: {json.dumps(ceilings[-1])}", flush=True)
        for name in ("pybroker", "kafka"):
            t0 = time.monotonic()
            rounds.append(run_round(name, i, plan, work))
            print(f"round {i} {name}: {time.monotonic() - t0:.0f}s", flush=True)
    flame = "skipped" if args.no_flame else flame_graph(plan, work, results)
    shutil.rmtree(work, ignore_errors=True)
    header = {
        "started": started.isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPUs",
        "plan": (
            f"{plan.rounds} round(s), {plan.seconds:.0f} s per throughput phase, "
            f"{PARTITIONS} partitions, e2e {plan.e2e_rate:.0f} rec/s for {plan.e2e_seconds:.0f} s"
        ),
        "load generator": (
            "librdkafka (confluent-kafka's wheel) via tests/bench/rdkperf.c; producer "
            + ", ".join(f"{k}={v}" for k, v in load.PRODUCER_SETTINGS.items())
        ),
        "load generator ceiling (librdkafka mock broker, each round, median (min..max))": "; ".join(
            f"{s}: {spread([c[s]['MB/s'] for c in ceilings])} MB/s, "
            f"{spread([c[s]['k rec/s'] for c in ceilings])}k rec/s"
            for s in ceilings[0]
        ),
        "Kafka JVM": " ".join(KAFKA_JVM_OPTS),
        "Kafka settings": ", ".join(f"{k}={v}" for k, v in KAFKA_SETTINGS.items()),
        "pybroker": "config/server.properties",
        "flame graph": flame,
        "wall time s": f"{time.monotonic() - t_start:.0f}",
    }
    md = report(rounds, header)
    (results / "results.md").write_text(md + "\n")
    payload = {
        "header": header,
        "ceiling": ceilings,
        "rounds": [
            {
                "broker": r.broker,
                "round": r.index,
                "notes": r.notes,
                "phases": {
                    k: {
                        "metrics": p.metrics,
                        "broker_cpu_user_s": p.cpu.user if p.cpu else None,
                        "broker_cpu_system_s": p.cpu.system if p.cpu else None,
                        "mb": p.mb,
                        "client_cpu_s": (p.client_cpu.user + p.client_cpu.system)
                        if p.client_cpu
                        else None,
                        "client_wall_s": p.client_wall,
                    }
                    for k, p in r.phases.items()
                },
            }
            for r in rounds
        ],
    }
    (results / "results.json").write_text(json.dumps(payload, indent=2) + "\n")
    print(md)
    print(f"\nresults in {results}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BenchFailure, KafkaException) as exc:
        print(f"BENCH FAILED: {exc}", file=sys.stderr)
        sys.exit(1)
