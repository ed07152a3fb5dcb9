"""One fuzz run: start a broker, send batches, check it after each, report what broke.

Findings, each deduplicated by a signature: process deaths (the log's last words and the
exit code), tracebacks and ERROR lines in the broker log, failed well-behaved round trips
(raw wire, after every batch), failures of the concurrent confluent-kafka client, and RSS
growth beyond the budget. The first batch that shows each new signature is written to the
findings directory as hex, so it can be replayed (``--replay``) and isolated to one frame.

On a death the run stops, unless ``keep_going``: then the broker restarts on the same log
dir (which also exercises crash recovery) and the run continues with a new baseline.
"""

from __future__ import annotations

import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pybroker.broker.handlers.all  # noqa: F401  - registers every handler
from pybroker.broker.handlers.registry import supported_apis
from tests.fuzz.batches import BatchPool
from tests.fuzz.cases import Unit, format_units, generate_batch
from tests.fuzz.health import Findings, LogScanner, WireChecker, normalize, rss_kib, setup_topics
from tests.fuzz.mutate import Mutator
from tests.fuzz.steady import SteadyClient
from tests.fuzz.templates import bind_topic_ids, build_templates
from tests.fuzz.workers import ForkedWorkers, InProcessWorkers, Sender
from tests.support.broker import ROOT, BrokerProcess
from tests.support.wire import KafkaWire

__all__ = ["Options", "Summary", "run", "FUZZ_TOPICS", "HEALTH_TOPIC", "STEADY_TOPIC"]

FUZZ_TOPICS = {"fuzz-a": 4, "fuzz-b": 2}
HEALTH_TOPIC = "fuzz-health"
STEADY_TOPIC = "fuzz-steady"
STEADY_GROUP = "fuzz-steady-group"
# Names the fuzzer's requests use (weighted by repetition). The health and steady topics
# and group are deliberately absent: the fuzzer must not delete what the checks rely on.
TOPIC_NAMES = ("fuzz-a",) * 4 + ("fuzz-b",) * 2 + ("fuzz-c", "fuzz-d", "", "bad/name", "x" * 250)
# Only with --internal-topics: today the broker lets DeleteTopics delete them, and every
# re-creation of __consumer_offsets (50 partitions) costs the broker half a second and
# takes the concurrent client's group with it.
INTERNAL_TOPICS = ("__consumer_offsets", "__transaction_state")
GROUP_NAMES = ("fuzz-g1", "fuzz-g1", "fuzz-g2", "")
TXN_IDS = ("fuzz-t1", "fuzz-t2", "")
MIB = 1024


@dataclass
class Options:
    cases: int = 10_000
    seed: int = 1
    workers: int = 1
    batch: int = 500  # cases per batch (per worker)
    conns: int = 16  # pool connections per worker
    keep_going: bool = False
    findings_dir: Path = ROOT / ".fuzz-findings"
    rss_limit_mib: int = 64
    warmup_batches: int = 2
    steady: bool = True
    bombs: bool = True
    overrides: dict[str, str] = field(default_factory=dict)
    templates_per_version: int = 6
    progress_seconds: float = 5.0
    quiet: bool = False
    isolate: bool = True
    internal_topics: bool = False


@dataclass
class Summary:
    cases: int = 0
    seconds: float = 0.0
    deaths: int = 0
    tracebacks: int = 0
    handler_errors: int = 0
    wire_failures: int = 0
    steady_failures: int = 0
    rss_baseline_mib: float = 0.0
    rss_max_mib: float = 0.0
    rss_growth_mib: float = 0.0
    rss_over_limit: bool = False
    responses: int = 0
    broker_closes: int = 0
    findings: Findings = field(default_factory=Findings)
    findings_files: list[Path] = field(default_factory=list)
    steady_messages: list[str] = field(default_factory=list)
    wire_messages: list[str] = field(default_factory=list)
    reproducers: dict[str, str] = field(default_factory=dict)
    finding_paths: dict[str, Path] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.cases / self.seconds if self.seconds else 0.0

    @property
    def failed(self) -> bool:
        return bool(
            self.deaths
            or self.tracebacks
            or self.handler_errors
            or self.wire_failures
            or self.steady_failures
            or self.rss_over_limit
        )

    def report(self) -> str:
        lines = [
            f"cases {self.cases} in {self.seconds:.1f}s ({self.rate:.0f} cases/s), "
            f"responses {self.responses}, connections closed by the broker {self.broker_closes}",
            f"deaths {self.deaths}, tracebacks {self.tracebacks}, "
            f"handler errors {self.handler_errors}, well-behaved wire failures "
            f"{self.wire_failures}, concurrent client failures {self.steady_failures}",
            f"RSS baseline {self.rss_baseline_mib:.1f} MiB, max {self.rss_max_mib:.1f} MiB, "
            f"growth {self.rss_growth_mib:.1f} MiB"
            + (" (OVER LIMIT)" if self.rss_over_limit else ""),
        ]
        if self.findings.counts:
            lines.append("distinct findings (count: signature):")
            for key, n in sorted(self.findings.counts.items(), key=lambda kv: -kv[1]):
                lines.append(f"  {n:6d}  {key}")
                if key in self.reproducers:
                    lines.append(f"          reproducer: {self.reproducers[key]}")
        for msg in self.wire_messages[:5]:
            lines.append(f"  wire check: {msg}")
        for msg in self.steady_messages[:5]:
            lines.append(f"  concurrent client: {msg}")
        for path in self.findings_files:
            lines.append(f"  findings file: {path}")
        lines.append("RESULT: " + ("FINDINGS" if self.failed else "clean"))
        return "\n".join(lines)


_DEATH_PATTERNS = ("memory allocation of", "panicked at", "Fatal Python error", "Segmentation")


def death_cause(tail: str) -> str:
    """The line that says why the process died: what follows the broker's last log line."""
    lines = [ln.strip() for ln in tail.splitlines() if ln.strip()]
    last_log = max((i for i, ln in enumerate(lines) if ln.startswith("[")), default=-1)
    after = lines[last_log + 1 :] or lines[-1:] or ["(empty log)"]
    for ln in after:
        if any(p in ln for p in _DEATH_PATTERNS):
            return normalize(ln)[:160]
    return normalize(after[0])[:160]


class Run:
    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.summary = Summary()
        self.tmp = Path(tempfile.mkdtemp(prefix="pybroker-fuzz-"))
        self.broker = BrokerProcess(self.tmp / "data", opts.overrides)
        self.scanner = LogScanner(self.broker.log_path)
        self.checker: WireChecker | None = None
        self.steady: SteadyClient | None = None
        self.steady_runs = 0
        self.rss_baseline: int | None = None
        self.batches_since_start = 0
        self.recent: list[tuple[int, list[list[Unit]]]] = []  # (batch, units per worker)
        self.port_maps: list[tuple[int, int, dict[int, list[int]]]] = []  # batch, worker, map
        self.mutator: Mutator | None = None
        self.workers: InProcessWorkers | ForkedWorkers | None = None

    def say(self, text: str) -> None:
        if not self.opts.quiet:
            print(text, flush=True)

    # -- setup -------------------------------------------------------------------------
    def _start_broker(self) -> None:
        self.broker.start()
        self.scanner.skip_to_end()
        with KafkaWire("127.0.0.1", self.broker.port) as wire:
            self.topic_ids = setup_topics(wire, {**FUZZ_TOPICS, HEALTH_TOPIC: 1, STEADY_TOPIC: 1})
        self.checker = WireChecker(self.broker.port, HEALTH_TOPIC)
        self.rss_baseline = None
        self.batches_since_start = 0

    def _start_steady(self) -> None:
        if self.opts.steady:
            self.steady_runs += 1
            self.steady = SteadyClient(
                self.broker.bootstrap, STEADY_TOPIC, STEADY_GROUP, f"run{self.steady_runs}"
            )
            self.steady.start()

    def setup(self) -> None:
        opts = self.opts
        # A native abort's message is one line without a backtrace; with one it is 100.
        os.environ["RUST_BACKTRACE"] = "0"
        t0 = time.monotonic()
        self._start_broker()
        rng = random.Random(f"pybroker-fuzz/{opts.seed}/templates")
        batches = BatchPool(rng, bombs=opts.bombs)
        templates = build_templates(
            supported_apis(),
            rng,
            batches,
            TOPIC_NAMES + (INTERNAL_TOPICS if opts.internal_topics else ()),
            GROUP_NAMES,
            TXN_IDS,
            per_version=opts.templates_per_version,
        )
        ids = [self.topic_ids.get(t, uuid.UUID(int=0)) for t in ("fuzz-a", "fuzz-b")]
        templates = bind_topic_ids(templates, ids + [uuid.uuid4()])
        max_request = int(opts.overrides.get("socket.request.max.bytes", 104857600))
        self.mutator = Mutator(templates, batches, max_request)
        senders = [
            Sender(self.mutator, self.broker.port, opts.seed, w, opts.conns, opts.batch)
            for w in range(opts.workers)
        ]
        # Fork the workers before any thread exists (the steady client's, librdkafka's).
        self.workers = InProcessWorkers(senders[0]) if opts.workers == 1 else ForkedWorkers(senders)
        self._start_steady()
        self.say(
            f"fuzz: seed {opts.seed}, {len(templates)} templates over "
            f"{len({(t.api_key, t.api_version) for t in templates})} api versions, "
            f"broker pid {self.broker.proc.pid if self.broker.proc else '?'} on port "
            f"{self.broker.port}, setup {time.monotonic() - t0:.1f}s"
        )

    # -- findings ----------------------------------------------------------------------
    def _culprits(self, port: int | None) -> list[Unit]:
        """The writes sent from the client port the broker's log line named."""
        if port is None or self.mutator is None:
            return []
        o = self.opts
        out = []
        for b, w, ports in self.port_maps:
            if port in ports:
                units = generate_batch(self.mutator, o.seed, w, b, o.batch, o.conns)
                out += [units[i] for i in ports[port]]
        return out

    def _save(self, kind: str, signature: str, batch: int, text: str, culprits: list[Unit]) -> Path:
        d = self.opts.findings_dir
        d.mkdir(parents=True, exist_ok=True)
        n = len(list(d.glob(f"{kind}-*.txt"))) + 1
        path = d / f"{kind}-s{self.opts.seed}-b{batch}-{n}.txt"
        with open(path, "w") as f:
            f.write(f"# kind: {kind}\n# signature: {signature}\n# seed: {self.opts.seed}\n")
            f.write(f"# batch: {batch}\n# replay: python -m tests.fuzz --replay {path}\n")
            for line in text.splitlines()[-80:]:
                f.write(f"# | {line}\n")
            if culprits:
                f.write("# the writes from the client port the log line names:\n")
                f.write(format_units(culprits).replace("unit ", "culprit "))
            for b, per_worker in self.recent:
                for w, units in enumerate(per_worker):
                    f.write(f"batch {b} worker {w}\n")
                    f.write(format_units(units))
        self.summary.findings_files.append(path)
        self.summary.finding_paths[f"{kind}: {signature}"] = path
        return path

    def _finding(
        self, kind: str, signature: str, batch: int, text: str, port: int | None = None
    ) -> None:
        if self.summary.findings.add(kind, signature, batch, text):
            path = self._save(kind, signature, batch, text, self._culprits(port))
            self.say(f"NEW {kind}: {signature}  -> {path}")

    # -- checks ------------------------------------------------------------------------
    def _remember(self, batch: int) -> None:
        """Rebuild the batch (and the one before) for a findings file: they are seeded."""
        assert self.mutator is not None
        mutator, o = self.mutator, self.opts
        self.recent = [
            (b, [generate_batch(mutator, o.seed, w, b, o.batch, o.conns) for w in range(o.workers)])
            for b in (batch - 1, batch)
            if b >= 0
        ]

    def _death(self, batch: int) -> None:
        proc = self.broker.proc
        code = proc.returncode if proc is not None else None
        self.broker.proc = None
        tail = self.broker.log_tail(400)
        signature = f"{death_cause(tail)} (exit {code})"
        self.summary.deaths += 1
        self._remember(batch)
        self._finding("death", signature, batch, tail)
        for event in self.scanner.scan():
            self._log_event(event, batch)

    def _log_event(self, event, batch: int) -> None:  # type: ignore[no-untyped-def]
        if event.kind == "traceback":
            self.summary.tracebacks += 1
        else:
            self.summary.handler_errors += 1
        if f"{event.kind}: {event.signature}" not in self.summary.findings.first:
            self._remember(batch)
        self._finding(event.kind, event.signature, batch, event.text, event.peer_port)

    def check(self, batch: int) -> bool:
        """Checks after one batch; False when the broker died (and was not restarted)."""
        proc = self.broker.proc
        assert proc is not None
        if proc.poll() is not None:
            self._death(batch)
            return self._after_death()
        for event in self.scanner.scan():
            self._log_event(event, batch)
        assert self.checker is not None
        problem = self.checker.check()
        if proc.poll() is not None:
            self._death(batch)
            return self._after_death()
        if problem:
            self.summary.wire_failures += 1
            self.summary.wire_messages.append(f"batch {batch}: {problem}")
            self.say(f"WIRE CHECK FAILED after batch {batch}: {problem}")
        self._check_rss(proc.pid, batch)
        self._check_steady()
        return True

    def _check_rss(self, pid: int, batch: int) -> None:
        rss = rss_kib(pid)
        if rss is None:
            return
        self.batches_since_start += 1
        if self.rss_baseline is None:
            if self.batches_since_start >= self.opts.warmup_batches:
                self.rss_baseline = rss
                if not self.summary.rss_baseline_mib:
                    self.summary.rss_baseline_mib = rss / MIB
            return
        growth = rss - self.rss_baseline
        if growth > self.opts.rss_limit_mib * MIB:
            time.sleep(0.5)  # a bomb being decompressed is a spike, not growth: re-sample
            rss = rss_kib(pid) or rss
            growth = rss - self.rss_baseline
        self.summary.rss_max_mib = max(self.summary.rss_max_mib, rss / MIB)
        self.summary.rss_growth_mib = max(self.summary.rss_growth_mib, growth / MIB)
        if growth > self.opts.rss_limit_mib * MIB and not self.summary.rss_over_limit:
            self.summary.rss_over_limit = True
            self._remember(batch)
            self._finding("rss", f"VmRSS grew {growth / MIB:.0f} MiB over the baseline", batch, "")

    def _check_steady(self) -> None:
        if self.steady is None:
            return
        with self.steady._lock:
            new = self.steady.failures[:]
            self.steady.failures.clear()
        for msg in new:
            self.summary.steady_failures += 1
            self.summary.steady_messages.append(msg)
            self.say(f"CONCURRENT CLIENT FAILED: {msg}")

    def _stop_steady(self) -> None:
        if self.steady is not None:
            self.steady.stop()
            self._check_steady()
            self.steady = None

    def _after_death(self) -> bool:
        assert self.workers is not None
        self.workers.reset()
        if self.steady is not None:  # its failures now are the death's, not new findings
            self.steady.stop()
            self.steady = None
        if self.checker is not None:
            self.checker.close()
        if not self.opts.keep_going:
            return False
        self.say("restarting the broker on the same log dir (--keep-going)")
        try:
            self._start_broker()
        except Exception as exc:
            self._finding("restart", normalize(str(exc))[:200], -1, str(exc))
            return False
        self._start_steady()
        return True

    # -- the loop ----------------------------------------------------------------------
    def fuzz(self) -> None:
        opts = self.opts
        assert self.workers is not None
        per_batch = opts.batch * opts.workers
        n_batches = (opts.cases + per_batch - 1) // per_batch
        start = last_report = time.monotonic()
        for batch in range(n_batches):
            maps = []
            for worker, stats in enumerate(self.workers.run_batch(batch)):
                maps.append((batch, worker, stats.pop("ports")))
                self.summary.cases += stats["cases"]
                self.summary.responses += stats["responses"]
                self.summary.broker_closes += stats["broker_closes"]
            self.port_maps = self.port_maps[-self.opts.workers :] + maps
            alive = self.check(batch)
            now = time.monotonic()
            self.summary.seconds = now - start
            if now - last_report >= opts.progress_seconds or not alive:
                last_report = now
                self._progress()
            if not alive:
                break

    def _progress(self) -> None:
        s = self.summary
        steady = ""
        if self.steady is not None:
            steady = f", steady {self.steady.produced}/{self.steady.consumed}"
        self.say(
            f"[{s.seconds:7.1f}s] cases {s.cases} ({s.rate:.0f}/s) responses {s.responses} "
            f"closes {s.broker_closes} deaths {s.deaths} tracebacks {s.tracebacks} "
            f"errors {s.handler_errors} wire-fail {s.wire_failures} "
            f"rss {s.rss_baseline_mib:.0f}->{s.rss_max_mib:.0f} MiB{steady}"
        )

    def close(self) -> None:
        self._stop_steady()
        if self.workers is not None:
            self.workers.close()
        if self.checker is not None:
            self.checker.close()
        if self.broker.proc is not None:
            for event in self.scanner.scan():
                self._log_event(event, -1)
            self.broker.stop()
        if self.summary.findings.counts:
            self.opts.findings_dir.mkdir(parents=True, exist_ok=True)
            shutil.copy(
                self.broker.log_path, self.opts.findings_dir / f"broker-s{self.opts.seed}.log"
            )
        shutil.rmtree(self.tmp, ignore_errors=True)


def run(opts: Options) -> Summary:
    """Run the fuzzer with ``opts``; the summary says what was found."""
    fuzz_run = Run(opts)
    try:
        fuzz_run.setup()
        fuzz_run.fuzz()
    finally:
        fuzz_run.close()
    summary = fuzz_run.summary
    if opts.isolate and summary.findings.first:
        from tests.fuzz.isolate import isolate_findings

        isolate_findings(summary, opts, say=fuzz_run.say)
    return summary


def main(opts: Options) -> int:
    summary = run(opts)
    print(summary.report(), flush=True)
    sys.stdout.flush()
    return 1 if summary.failed else 0
