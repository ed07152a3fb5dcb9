"""Request validation (protocol/validate.py) beside kio's own decode of the same bodies.

    .venv/bin/python tests/bench/bench_decode.py [--seconds 0.5]

Every request body is walked by the validator before kio decodes it (kio aborts the
process on a declared count that does not fit), so the walk must cost well under the
decode. Bodies: Produce v9 and v12 with one 1 MiB record batch, Fetch v11 (non-flexible)
and v12/v17 (flexible) with 1,000 partitions (10 topics x 100), a small Metadata v12.
Prints microseconds per request for validate and for kio decode, and their ratio. Exits
non-zero if validation is not faster than decoding for every body.
"""

from __future__ import annotations

import argparse
import datetime
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kio.serial import entity_reader, entity_writer  # noqa: E402

from pybroker.protocol.codec import build, request_type  # noqa: E402
from pybroker.protocol.validate import validator  # noqa: E402


def encode(entity: Any) -> bytes:
    buf = io.BytesIO()
    entity_writer(type(entity))(buf, entity)
    return buf.getvalue()


def produce(version: int) -> bytes:
    batch = bytes(61) + b"\x5a" * ((1 << 20) - 61)  # contents do not matter to either
    req = build(
        request_type(0, version),
        transactional_id=None,
        acks=-1,
        timeout=30_000,
        topic_data=[{"name": "bench", "partition_data": [{"index": 0, "records": batch}]}],
    )
    return encode(req)


def fetch(version: int, topics: int = 10, partitions: int = 100) -> bytes:
    req = build(
        request_type(1, version),
        replica_id=-1,
        max_wait=500,
        min_bytes=1,
        max_bytes=50 << 20,
        session_id=0,
        session_epoch=-1,
        topics=[
            {
                "topic": f"topic-{t}",
                "partitions": [
                    {"partition": p, "fetch_offset": 1000 + p, "partition_max_bytes": 1 << 20}
                    for p in range(partitions)
                ],
            }
            for t in range(topics)
        ],
        forgotten_topics_data=[],
        rack_id="",
    )
    return encode(req)


def metadata() -> bytes:
    req = build(
        request_type(3, 12),
        topics=[{"topic_id": None, "name": "orders"}, {"topic_id": None, "name": "payments"}],
        allow_auto_topic_creation=False,
        include_topic_authorized_operations=False,
    )
    return encode(req)


def best_us(fns: list[Callable[[], object]], seconds: float) -> list[float]:
    """Best per-call time of each function; rounds interleave them so that load from
    other processes hits both alike."""
    loops = []
    for fn in fns:
        n = 1
        while True:
            start = time.perf_counter()
            for _ in range(n):
                fn()
            took = time.perf_counter() - start
            if took > seconds / 50:
                break
            n *= 2
        loops.append(max(1, int(seconds / 10 / (took / n))))
    best = [float("inf")] * len(fns)
    for _ in range(10):
        for k, (fn, n) in enumerate(zip(fns, loops, strict=True)):
            start = time.perf_counter()
            for _ in range(n):
                fn()
            best[k] = min(best[k], (time.perf_counter() - start) / n * 1e6)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="time per measurement")
    args = parser.parse_args()
    cases = [
        ("Produce v9, one 1 MiB batch", 0, 9, produce(9)),
        ("Produce v12, one 1 MiB batch", 0, 12, produce(12)),
        ("Fetch v11, 10 x 100 partitions", 1, 11, fetch(11)),
        ("Fetch v12, 10 x 100 partitions", 1, 12, fetch(12)),
        ("Fetch v17, 10 x 100 partitions", 1, 17, fetch(17)),
        ("Metadata v12, 2 topics", 3, 12, metadata()),
    ]
    print(f"{'request':34} {'bytes':>9} {'validate us':>12} {'kio us':>10} {'ratio':>7}")
    ok = True
    for name, api_key, version, body in cases:
        cls = request_type(api_key, version)
        view = memoryview(body).toreadonly()
        check = validator(cls)
        read = entity_reader(cls)
        assert check(view, 0) == read(view, 0)[1] == len(body), name
        v_us, k_us = best_us(
            [lambda: check(view, 0), lambda: read(view, 0)],  # noqa: B023
            args.seconds,
        )
        ok &= v_us < k_us
        print(f"{name:34} {len(body):>9} {v_us:>12.2f} {k_us:>10.2f} {v_us / k_us:>7.2f}")
    stamp = datetime.datetime.now().isoformat(timespec="seconds")
    print(f"({stamp}, Python {sys.version.split()[0]})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
