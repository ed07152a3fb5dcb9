"""Batches of write units: the deterministic part of a run.

A batch is a function of (seed, worker, batch index) and the templates alone, so any
batch can be rebuilt exactly for a findings file or a replay, whatever the broker did with
the batches before it. A write unit is one or more frames written together (pipelining)
to one pool connection, sometimes split in two writes with a pause between (a partial
frame the broker must buffer).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from tests.fuzz.mutate import Mutator

__all__ = ["Unit", "generate_batch", "format_units", "parse_units"]

_FRAMES_PER_WRITE = (1, 1, 1, 1, 2, 2, 3, 4, 8)


@dataclass(frozen=True, slots=True)
class Unit:
    conn: int  # index of the pool connection
    data: bytes  # one or more size-prefixed frames
    cases: int  # how many frames (cases) ``data`` holds
    split: int  # 0, or the offset where the write pauses (a partial frame)
    last: bool  # the connection is expected to end here (the last frame is a hard case)


def generate_batch(
    mutator: Mutator, seed: int, worker: int, batch: int, cases: int, conns: int
) -> list[Unit]:
    rng = random.Random(f"pybroker-fuzz/{seed}/{worker}/{batch}")
    units: list[Unit] = []
    done = 0
    while done < cases:
        # Up to k frames per write, ending at the first hard case: the broker is expected
        # to close the connection there, so nothing is written behind it.
        k = min(rng.choice(_FRAMES_PER_WRITE), cases - done)
        frames = []
        while len(frames) < k and not (frames and frames[-1][1]):
            frames.append(mutator.case(rng))
        k = len(frames)
        data = b"".join(f for f, _ in frames)
        split = rng.randrange(1, len(data)) if len(data) > 1 and rng.random() < 0.04 else 0
        units.append(Unit(rng.randrange(conns), data, k, split, frames[-1][1]))
        done += k
    return units


def format_units(units: list[Unit]) -> str:
    """One line per unit: ``unit <conn> <cases> <split> <last> <hex>``."""
    return "".join(
        f"unit {u.conn} {u.cases} {u.split} {int(u.last)} {u.data.hex()}\n" for u in units
    )


def parse_units(text: str, prefix: str = "unit ") -> list[Unit]:
    """Units of a findings file (``prefix`` "culprit " for the named suspects)."""
    units = []
    for line in text.splitlines():
        if line.startswith(prefix):
            _, conn, cases, split, last, data = line.split()
            units.append(Unit(int(conn), bytes.fromhex(data), int(cases), int(split), last == "1"))
    return units
