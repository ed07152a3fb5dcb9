"""``python -m tests.fuzz``: run the fuzzer against a fresh broker, or replay a finding."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tests.fuzz.runner import Options, main


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__)
    p.add_argument("--cases", type=int, default=10_000, help="frames to send (default 10000)")
    p.add_argument("--seed", type=int, default=1, help="the run is a function of the seed")
    p.add_argument("--workers", type=int, default=1, help="sender processes (default 1)")
    p.add_argument("--batch", type=int, default=500, help="cases per check, per worker")
    p.add_argument("--conns", type=int, default=16, help="connections per worker")
    p.add_argument(
        "--keep-going",
        action="store_true",
        help="restart the broker after a death and continue (default: stop at the first)",
    )
    p.add_argument("--findings-dir", type=Path, default=Options().findings_dir)
    p.add_argument("--rss-limit-mib", type=int, default=64)
    p.add_argument("--no-steady", action="store_true", help="no concurrent confluent client")
    p.add_argument("--no-bombs", action="store_true", help="no compression bombs")
    p.add_argument("--no-isolate", action="store_true", help="do not shrink findings")
    p.add_argument(
        "--internal-topics",
        action="store_true",
        help="let requests name __consumer_offsets and __transaction_state too",
    )
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--replay", type=Path, help="replay a findings file on a scratch broker")
    return p.parse_args(argv)


def cli(argv: list[str]) -> int:
    args = parse_args(argv)
    overrides = dict(o.split("=", 1) for o in args.override)
    if args.replay is not None:
        from tests.fuzz.isolate import replay_file

        return replay_file(args.replay, overrides)
    opts = Options(
        cases=args.cases,
        seed=args.seed,
        workers=args.workers,
        batch=args.batch,
        conns=args.conns,
        keep_going=args.keep_going,
        findings_dir=args.findings_dir,
        rss_limit_mib=args.rss_limit_mib,
        steady=not args.no_steady,
        bombs=not args.no_bombs,
        isolate=not args.no_isolate,
        overrides=overrides,
        internal_topics=args.internal_topics,
        quiet=args.quiet,
    )
    return main(opts)


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
