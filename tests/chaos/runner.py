"""A seeded chaos run against a 3-broker cluster (issue 9, first "Done when" bullet).

Three brokers, each in its own network namespace, one ZooKeeper, a topic with RF=3 and
min.insync.replicas=2. An idempotent acks=all producer runs the whole time while a seeded
loop injects faults one at a time: kill -9 (then restart), SIGSTOP (then SIGCONT),
ZooKeeper restart, and a network cut of one broker (then heal), aimed at a partition's
leader, a follower or the controller as read from Metadata at that moment. After each
fault the loop waits (bounded) for every broker to be registered and every ISR to be full
again, then pauses a little. Afterwards everything is healed, the producer is flushed and
closed, every partition is read from offset 0 and checked against the acknowledgements.

The seed fixes the sequence of fault kinds, roles, partitions and durations; the brokers
they land on depend on the cluster's state at the time (which the seed does not fix).
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kio.schema.errors import ErrorCode

from tests.chaos.load import LOADS, Load, LoadResult, read_back
from tests.chaos.verify import Verdict, longest_gaps, verify
from tests.support.cluster import Cluster
from tests.support.netns import NetnsBrokerProcess

KINDS = ("kill", "pause", "netcut", "zk_restart")
ROLES = ("leader", "follower", "controller")
TOPIC = "chaos"
# How long a fault lasts, by kind (seconds; uniform). Pauses and cuts sometimes outlast the
# 6 s ZooKeeper session, so that a broker comes back to find itself replaced.
HOLD = {"kill": (1.0, 8.0), "pause": (1.0, 9.0), "netcut": (2.0, 12.0), "zk_restart": (0.5, 5.0)}
GAP = (0.5, 3.0)


@dataclass
class ChaosConfig:
    seed: int
    faults: int = 30
    client: str = "confluent"
    partitions: int = 3
    rate: float = 200.0  # records per second, all partitions together
    recovery_timeout: float = 90.0
    kinds: tuple[str, ...] = KINDS
    root: Path | None = None  # run directory; a fresh temporary one by default
    keep: bool = False  # keep the run directory even when the run passes
    verbose: bool = True


@dataclass
class Fault:
    n: int
    kind: str
    role: str  # leader / follower / controller, or "zookeeper"
    partition: int
    hold: float
    pick: float = 0.0  # the draw that picks among several candidate brokers
    gap: float = 0.0  # seconds to wait after recovery, before the next fault
    target: int = 0  # broker id (0 for ZooKeeper)
    target_roles: str = ""  # everything the target was at the time, e.g. "controller,leader p1"
    at: float = 0.0  # seconds since the fault phase began
    healed_at: float = 0.0
    recovered_in: float | None = None  # seconds from heal to full ISRs (None: timed out)
    note: str = ""


def plan_faults(cfg: ChaosConfig) -> list[Fault]:
    """The seed's faults, in order. Drawn up front (the same draws, in the same order, as
    when each was drawn just before its turn) so that a seed names the same faults whatever
    happens during the run, and a slice's coverage can be checked without a cluster."""
    rng = random.Random(cfg.seed)
    faults = []
    for n in range(1, cfg.faults + 1):
        kind = rng.choice(cfg.kinds)
        role = rng.choice(ROLES)
        partition = rng.randrange(cfg.partitions)
        pick = rng.random()
        lo, hi = HOLD[kind]
        hold = round(rng.uniform(lo, hi), 2)
        gap = round(rng.uniform(*GAP), 2)
        target_role = "zookeeper" if kind == "zk_restart" else role
        faults.append(Fault(n, kind, target_role, partition, hold, pick, gap))
    return faults


@dataclass
class ChaosReport:
    config: dict[str, Any]
    run_dir: str
    faults: list[Fault] = field(default_factory=list)
    sent: int = 0
    acked: int = 0
    failed: int = 0
    unresolved: int = 0
    failures_sample: list[str] = field(default_factory=list)
    producer_errors: list[str] = field(default_factory=list)
    read: int = 0
    unacked_present: int = 0
    offset_gaps: int = 0
    gaps: dict[int, tuple[float, float, float]] = field(default_factory=dict)
    problems: dict[str, list[str]] = field(default_factory=dict)  # violations
    liveness: list[str] = field(default_factory=list)  # hangs, timeouts, unreadable data
    divergence: list[str] = field(default_factory=list)  # replicas whose logs differ at the end
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems and not self.liveness and not self.divergence

    def summary(self) -> str:
        kinds = Counter(f.kind for f in self.faults)
        roles = Counter(f.role for f in self.faults if f.kind != "zk_restart")
        cfg = self.config
        lines = [
            f"chaos seed={cfg['seed']} client={cfg['client']} partitions={cfg['partitions']} "
            f"duration={self.duration:.0f}s run_dir={self.run_dir}",
            f"faults: {len(self.faults)} ("
            + ", ".join(f"{k} {kinds[k]}" for k in KINDS if kinds[k])
            + "); targets: "
            + ", ".join(f"{r} {roles[r]}" for r in ROLES if roles[r]),
            f"records: sent {self.sent}, acked {self.acked}, failed {self.failed}, "
            f"unresolved {self.unresolved}, read back {self.read} "
            f"(unacked but present {self.unacked_present}, offset gaps {self.offset_gaps})",
        ]
        hit = Counter()
        for f in self.faults:
            if f.kind != "zk_restart":
                hit.update(
                    r.split()[0] for r in f.target_roles.split("; ") if r and r != "follower only"
                )
                hit["follower-only broker"] += f.target_roles == "follower only"
        lines.append("brokers hit while: " + ", ".join(f"{k} {v}" for k, v in sorted(hit.items())))
        recov = [f.recovered_in for f in self.faults if f.recovered_in is not None]
        stuck = [f.n for f in self.faults if f.recovered_in is None]
        lines.append(
            f"recovery after heal: max {max(recov, default=0):.1f}s, "
            f"mean {sum(recov) / max(len(recov), 1):.1f}s, timed out: {stuck or 'none'}"
        )
        lines.append(
            "longest unavailability (no acked produce): "
            + ", ".join(
                f"p{p} {g[0]:.1f}s (at {g[1]:.0f}-{g[2]:.0f}s)"
                for p, g in sorted(self.gaps.items())
            )
        )
        if self.failures_sample:
            lines.append(f"failed sends (sample): {self.failures_sample[:3]}")
        if self.producer_errors:
            lines.append(
                f"producer errors: {len(self.producer_errors)}, e.g. {self.producer_errors[:3]}"
            )
        for kind, items in self.problems.items():
            lines.append(f"VIOLATION {kind}: {len(items)}, e.g. {items[:3]}")
        for item in self.liveness:
            lines.append(f"LIVENESS {item}")
        for item in self.divergence:
            lines.append(f"DIVERGENCE {item}")
        lines.append("verdict: " + ("PASS" if self.ok else "FAIL"))
        return "\n".join(lines)


class ChaosRun:
    def __init__(self, config: ChaosConfig) -> None:
        self.cfg = config
        self.plan = plan_faults(config)
        self._own_root = config.root is None
        self.root = Path(
            config.root or tempfile.mkdtemp(prefix=f"pybroker-chaos-{config.seed}-{config.client}-")
        )
        self.report = ChaosReport(
            {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
            str(self.root),
        )
        self.cluster: Cluster | None = None
        self.load: Load | None = None
        self.t0 = time.monotonic()
        self.phase_start = self.t0

    # ------------------------------------------------------------------ helpers
    def log(self, text: str) -> None:
        if self.cfg.verbose:
            print(f"[{time.monotonic() - self.t0:7.1f}s] {text}", flush=True)

    @property
    def c(self) -> Cluster:
        assert self.cluster is not None
        return self.cluster

    def broker(self, i: int) -> NetnsBrokerProcess:
        b = self.c.brokers[i]
        assert isinstance(b, NetnsBrokerProcess)
        return b

    def state(self) -> tuple[int, dict[int, tuple[int, tuple[int, ...], tuple[int, ...]]]]:
        """(controller, partition -> (leader, replicas, isr)) as a live broker sees it."""
        md = self.c.metadata([TOPIC])
        parts: dict[int, tuple[int, tuple[int, ...], tuple[int, ...]]] = {}
        for t in md.topics:
            for p in t.partitions:
                parts[int(p.partition_index)] = (
                    int(p.leader_id),
                    tuple(int(r) for r in p.replica_nodes),
                    tuple(int(r) for r in p.isr_nodes),
                )
        return int(md.controller_id), parts

    def healthy(self) -> bool:
        ids = set(self.c.brokers)
        for i in ids:
            md = self.c.metadata([TOPIC], via=i)
            if {int(x.node_id) for x in md.brokers} != ids:
                return False
            for t in md.topics:
                if t.error_code != ErrorCode.none:
                    return False
                for p in t.partitions:
                    if p.error_code != ErrorCode.none or int(p.leader_id) < 0:
                        return False
                    if {int(r) for r in p.isr_nodes} != ids:
                        return False
        return True

    def wait_healthy(self, timeout: float) -> float | None:
        start = time.monotonic()
        try:
            self.c.wait_until("full ISRs", self.healthy, timeout, interval=0.25)
        except AssertionError as exc:
            self.log(f"not healthy after {timeout:.0f}s: {exc}")
            return None
        return time.monotonic() - start

    # ------------------------------------------------------------------ faults
    def aim(self, fault: Fault) -> None:
        ids = sorted(self.c.brokers)
        pick = fault.pick
        try:
            controller, parts = self.state()
            leader, replicas, _ = parts[fault.partition]
        except Exception as exc:  # no metadata: aim at a broker by the draw alone
            fault.target = ids[int(pick * len(ids))]
            fault.note = f"no metadata ({exc!r}), target by draw"
            return
        if fault.role == "leader":
            target = leader
        elif fault.role == "controller":
            target = controller
        else:
            followers = sorted(r for r in replicas if r != leader)
            target = followers[int(pick * len(followers))] if followers else -1
        if target not in self.c.brokers:
            target = ids[int(pick * len(ids))]
            fault.note = "role unresolved, target by draw"
        fault.target = target
        roles = []
        if target == controller:
            roles.append("controller")
        led = [p for p, (ld, _, _) in sorted(parts.items()) if ld == target]
        if led:
            roles.append("leader " + ",".join(f"p{p}" for p in led))
        if not roles:
            roles.append("follower only")
        fault.target_roles = "; ".join(roles)

    def inject(self, fault: Fault) -> None:
        fault.at = time.monotonic() - self.phase_start
        if fault.kind == "zk_restart":
            self.log(f"#{fault.n} zk_restart, down {fault.hold}s")
            self.c.zk.stop()
            time.sleep(fault.hold)
            self.c.zk.start()
        else:
            self.aim(fault)
            b = self.broker(fault.target)
            self.log(
                f"#{fault.n} {fault.kind} broker {fault.target} ({fault.role} of "
                f"p{fault.partition}; is {fault.target_roles}) for {fault.hold}s"
            )
            if fault.kind == "kill":
                b.kill()
                time.sleep(fault.hold)
                self.restart(b)
            elif fault.kind == "pause":
                b.pause()
                try:
                    time.sleep(fault.hold)
                finally:
                    b.resume()
            elif fault.kind == "netcut":
                assert self.c.network is not None
                self.c.network.cut(fault.target)
                try:
                    time.sleep(fault.hold)
                finally:
                    self.c.network.heal(fault.target)
        fault.healed_at = time.monotonic() - self.phase_start

    def restart(self, b: NetnsBrokerProcess) -> None:
        for attempt in range(3):
            try:
                b.start(60)
                return
            except RuntimeError as exc:
                self.report.liveness.append(
                    f"broker {b.member} restart attempt {attempt + 1} failed: {str(exc)[-500:]}"
                )
                time.sleep(2)

    def heal_everything(self) -> None:
        c = self.c
        if c.network is not None:
            c.network.heal_all()
        for b in c.brokers.values():
            if isinstance(b, NetnsBrokerProcess):
                b.resume()
        if not c.zk.running:
            c.zk.start()
        self.check_crashes()
        for b in c.brokers.values():
            if b.proc is None:
                self.restart(b)  # type: ignore[arg-type]

    def check_crashes(self) -> None:
        """A broker that exited without being killed is a finding; note it and its log."""
        for i, b in self.c.brokers.items():
            if b.proc is not None and b.proc.poll() is not None:
                self.report.liveness.append(
                    f"broker {i} exited by itself with code {b.proc.returncode}; log tail:\n"
                    + b.log_tail(30)
                )
                self.log(f"broker {i} exited by itself with code {b.proc.returncode}")
                b.proc = None

    # ------------------------------------------------------------------ checks
    def replica_digests(self) -> None:
        """At the end every replica of a partition must hold the same bytes."""
        for p in range(self.cfg.partitions):
            digests: dict[int, tuple[str, int]] = {}
            for i, b in self.c.brokers.items():
                d = b.data_dir / f"{TOPIC}-{p}"
                h = hashlib.sha256()
                size = 0
                for seg in sorted(d.glob("*.log")):
                    data = seg.read_bytes()
                    h.update(data)
                    size += len(data)
                digests[i] = (h.hexdigest()[:16], size)
            if len({dg for dg, _ in digests.values()}) > 1:
                self.report.divergence.append(f"p{p} replica logs differ: {digests}")

    # ------------------------------------------------------------------ the run
    def run(self) -> ChaosReport:
        cfg = self.cfg
        rep = self.report
        try:
            self.cluster = Cluster(
                self.root, 3, overrides={"unclean.leader.election.enable": "false"}, netns=True
            )
            self.log(f"starting cluster in {self.root}")
            self.c.start(90)
            self.c.create_topic(TOPIC, cfg.partitions, 3, {"min.insync.replicas": "2"})
            if self.wait_healthy(60) is None:
                raise RuntimeError("cluster not healthy after topic creation")
            tag = f"s{cfg.seed}{cfg.client[0]}"
            self.load = LOADS[cfg.client](
                self.c.bootstrap, TOPIC, cfg.partitions, tag, cfg.rate, self.root / "client.log"
            ).start()
            time.sleep(3)  # steady state before the first fault
            self.phase_start = time.monotonic()
            for fault in self.plan:
                n = fault.n
                rep.faults.append(fault)
                self.inject(fault)
                self.check_crashes()
                fault.recovered_in = self.wait_healthy(cfg.recovery_timeout)
                if fault.recovered_in is None:
                    rep.liveness.append(
                        f"fault #{n} ({fault.kind} broker {fault.target}): no full ISRs "
                        f"{cfg.recovery_timeout:.0f}s after heal"
                    )
                    self.heal_everything()
                else:
                    self.log(f"#{n} recovered {fault.recovered_in:.1f}s after heal")
                time.sleep(fault.gap)
            phase_end = time.monotonic()
            self.log("faults done; healing everything, flushing the producer")
            self.heal_everything()
            result = self.load.stop(flush_timeout=60)
            if self.load.crashed is not None:
                rep.liveness.append(f"producer thread crashed: {self.load.crashed!r}")
            self.load = None
            if self.wait_healthy(120) is None:
                rep.liveness.append("no full ISRs 120s after the end of the faults")
            self.log("reading everything back")
            records, _high, problems = read_back(self.c.bootstrap, TOPIC, cfg.partitions)
            rep.liveness.extend(problems)
            self.record(result, records, phase_end)
            self.replica_digests()
        except BaseException as exc:
            rep.liveness.append(f"run aborted: {exc!r}")
            raise
        finally:
            if self.load is not None:
                self.load.stop(flush_timeout=5)
            if self.cluster is not None:
                self.heal_quietly()
                self.cluster.stop()
            rep.duration = time.monotonic() - self.t0
            self.write_report()
            if rep.ok and self._own_root and not cfg.keep:
                shutil.rmtree(self.root, ignore_errors=True)
        return rep

    def heal_quietly(self) -> None:
        try:
            if self.c.network is not None:
                self.c.network.heal_all()
            for b in self.c.brokers.values():
                if isinstance(b, NetnsBrokerProcess):
                    b.resume()
        except Exception:
            pass

    def record(
        self, result: LoadResult, records: dict[int, list[tuple[int, bytes]]], phase_end: float
    ) -> None:
        rep = self.report
        verdict: Verdict = verify(result.sent, result.acked, records)
        rep.sent = len(result.sent)
        rep.acked = len(result.acked)
        rep.failed = len(result.failed)
        rep.unresolved = result.unresolved
        rep.failures_sample = [f"{v!r}: {e}" for v, e in result.failed[:10]]
        rep.producer_errors = result.errors[:50]
        rep.read = verdict.read
        rep.unacked_present = verdict.unacked_present
        rep.offset_gaps = verdict.offset_gaps
        rep.problems = {k: v for k, v in verdict.problems.items() if v}
        rep.gaps = longest_gaps(result.acked, self.cfg.partitions, self.phase_start, phase_end)

    def write_report(self) -> None:
        rep = self.report
        data = asdict(rep)
        data["problems"] = {k: v[:50] for k, v in rep.problems.items()}
        data["ok"] = rep.ok
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            (self.root / "chaos-report.json").write_text(json.dumps(data, indent=1, default=str))
        except OSError:
            pass


def run_chaos(config: ChaosConfig) -> ChaosReport:
    return ChaosRun(config).run()
