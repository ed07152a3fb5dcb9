"""Checking a chaos run: what was acknowledged against what is read back, and availability.

Pure functions over plain data, so that they can be tested without a cluster.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from tests.chaos.load import Ack

# Categories that fail the run. "unacked_duplicates" is its own category: an unacknowledged
# send may legally appear once (it may have been written before its ack was lost), never
# twice under idempotence.
VIOLATIONS = (
    "acked_lost",
    "acked_wrong_offset",
    "acked_duplicated",
    "acked_out_of_order",
    "not_produced",
    "wrong_partition",
    "unacked_duplicates",
    "ack_conflict",
)


@dataclass
class Verdict:
    acked: int = 0
    read: int = 0
    unacked_present: int = 0  # unacknowledged sends that were written anyway (legal, once)
    offset_gaps: int = 0  # offsets missing between records of one partition (information)
    problems: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    @property
    def ok(self) -> bool:
        return not any(self.problems.get(k) for k in self.problems)

    def add(self, kind: str, text: str) -> None:
        self.problems[kind].append(text)


def _seq(value: bytes) -> int:
    return int(value.rsplit(b"-", 1)[1])


def verify(
    sent: dict[bytes, int],
    acked: list[Ack],
    records: dict[int, list[tuple[int, bytes]]],
) -> Verdict:
    """Every acked record read exactly once, at its offset, in order; nothing extra."""
    v = Verdict(acked=len(acked))
    where: dict[bytes, list[tuple[int, int]]] = defaultdict(list)
    at: dict[tuple[int, int], bytes] = {}
    for p, recs in records.items():
        prev_off = None
        for off, value in recs:
            v.read += 1
            if (p, off) in at:
                v.add("acked_duplicated", f"offset {p}/{off} delivered twice by the reader")
            at[(p, off)] = value
            where[value].append((p, off))
            if prev_off is not None and off > prev_off + 1:
                v.offset_gaps += off - prev_off - 1
            prev_off = off
    ack_of: dict[bytes, Ack] = {}
    for a in acked:
        if a.value in ack_of:
            v.add("ack_conflict", f"{a.value!r} acknowledged twice: {ack_of[a.value]} and {a}")
        ack_of[a.value] = a
    acked_at: dict[tuple[int, int], bytes] = {}
    for a in acked:
        key = (a.partition, a.offset)
        if key in acked_at and acked_at[key] != a.value:
            v.add(
                "ack_conflict",
                f"offset {a.partition}/{a.offset} acknowledged for {acked_at[key]!r} "
                f"and {a.value!r}",
            )
        acked_at[key] = a.value
        places = where.get(a.value, [])
        if not places:
            v.add("acked_lost", f"{a.value!r} acked at {a.partition}/{a.offset}, not read back")
            continue
        if len(places) > 1:
            v.add("acked_duplicated", f"{a.value!r} acked at {key}, read at {places}")
        if key not in places:
            found = at.get(key)
            v.add(
                "acked_wrong_offset",
                f"{a.value!r} acked at {key}, read at {places}; {key} holds {found!r}",
            )
    for value, places in where.items():
        if value not in sent:
            v.add("not_produced", f"{value!r} read at {places} was never sent")
            continue
        if any(p != sent[value] for p, _ in places):
            v.add("wrong_partition", f"{value!r} sent to {sent[value]}, read at {places}")
        if value not in ack_of:
            v.unacked_present += 1
            if len(places) > 1:
                v.add("unacked_duplicates", f"unacked {value!r} read at {places}")
    # Order: within a partition, acknowledged records appear in send order.
    for p, recs in records.items():
        last: tuple[int, bytes] | None = None
        for off, value in recs:
            if value not in ack_of or value not in sent:
                continue
            if last is not None and _seq(value) <= _seq(last[1]):
                v.add(
                    "acked_out_of_order",
                    f"partition {p}: {value!r} at {off} after {last[1]!r} at {last[0]}",
                )
            last = (off, value)
    return v


def longest_gaps(
    acked: list[Ack], partitions: int, start: float, end: float
) -> dict[int, tuple[float, float, float]]:
    """Per partition, the longest stretch of [start, end] with no acknowledgement.

    Returns partition -> (length, from, to) with times relative to ``start``.
    """
    times: dict[int, list[float]] = {p: [] for p in range(partitions)}
    for a in acked:
        if start <= a.at <= end:
            times[a.partition].append(a.at)
    out: dict[int, tuple[float, float, float]] = {}
    for p, ts in times.items():
        points = [start, *sorted(ts), end]
        best = (0.0, 0.0, 0.0)
        for a, b in zip(points, points[1:], strict=False):
            if b - a > best[0]:
                best = (b - a, a - start, b - start)
        out[p] = best
    return out
