"""``python -m tests.chaos --seed S --faults N --client confluent|kafka-python``.

Prints the fault timeline and a summary; exits 0 when every acknowledged record was read
back exactly once at its offset, in order, with nothing extra, and the cluster recovered;
1 on any violation. Needs root (network namespaces), iproute2, nft and ZooKeeper.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from tests.chaos.runner import KINDS, ChaosConfig, run_chaos
from tests.support.netns import netns_available
from tests.support.zookeeper import zookeeper_available


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the runner's cleanup


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--faults", type=int, default=30)
    ap.add_argument("--client", choices=("confluent", "kafka-python"), default="confluent")
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--rate", type=float, default=200.0, help="records/s, all partitions")
    ap.add_argument("--kinds", default=",".join(KINDS), help="comma-separated fault kinds")
    ap.add_argument("--recovery-timeout", type=float, default=90.0)
    ap.add_argument("--dir", type=Path, default=None, help="run directory (kept)")
    ap.add_argument("--keep", action="store_true", help="keep the run directory on success")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    kinds = tuple(k for k in args.kinds.split(",") if k)
    if unknown := set(kinds) - set(KINDS):
        ap.error(f"unknown fault kinds {sorted(unknown)}; choose from {KINDS}")
    if not netns_available() or not zookeeper_available():
        print("needs root, iproute2, nft and ZooKeeper", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    report = run_chaos(
        ChaosConfig(
            seed=args.seed,
            faults=args.faults,
            client=args.client,
            partitions=args.partitions,
            rate=args.rate,
            recovery_timeout=args.recovery_timeout,
            kinds=kinds,
            root=args.dir,
            keep=args.keep,
            verbose=not args.quiet,
        )
    )
    print(report.summary(), flush=True)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
