"""A segment answers tail lookups from the batches it just appended, and answers them right.

Every lookup is checked against the same file opened fresh (no remembered batches, so the
index-and-scan path) after appends, truncations, recovery and a cleaner swap.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from pybroker.protocol.records import set_base_offset
from pybroker.storage.handles import Handles
from pybroker.storage.segment import LogSegment
from pybroker.storage.tail_positions import NO_BATCH, NOT_COVERED, TailPositions
from tests.unit.test_storage_support import batch

INTERVAL = 200


def make_segment(dir: Path, base: int = 0) -> LogSegment:
    return LogSegment.create(
        dir,
        base,
        index_interval_bytes=INTERVAL,
        max_index_size=4096,
        handles=Handles(),
        now_ms=1_000,
    )


def reopened(seg: LogSegment) -> LogSegment:
    """The same file as a segment that remembers nothing (lookups scan from the index)."""
    return LogSegment.open_existing(
        seg.dir,
        seg.base_offset,
        index_interval_bytes=INTERVAL,
        max_index_size=4096,
        handles=Handles(),
        active=True,
        now_ms=1_000,
    )


def append_calls(seg: LogSegment, rng: random.Random, calls: int, first: int) -> list[int]:
    """``calls`` appends of 1-3 batches each, 1-4 records per batch, offsets with gaps
    (as a follower copies a compacted leader's log). Returns every batch's base offset."""
    offset, bases = first, []
    for _ in range(calls):
        payload, entries = bytearray(), []
        for _ in range(rng.randint(1, 3)):
            n = rng.randint(1, 4)
            one = batch(n, ts=1_000 + offset, tag=offset % 200)
            set_base_offset(one, 0, offset)
            entries.append((offset + n - 1, 1_000 + offset + n - 1, len(one)))
            bases.append(offset)
            payload += one
            offset += n + rng.choice((0, 0, 0, 2))
        seg.append(payload, entries)
    return bases


def lookups(seg: LogSegment, starts: list[int]) -> list[tuple[int, int, int] | None]:
    """translate_offset for every offset up to past the end, from each start position."""
    out = []
    for start in starts:
        for offset in range(seg.base_offset, seg.read_next_offset() + 3):
            found = seg.translate_offset(offset, start)
            out.append(None if found is None else (found[0], found[1].base_offset, offset))
    return out


def positions(seg: LogSegment) -> list[int]:
    return [0] + [pos for pos, _ in seg.iter_headers()][-25::4] + [seg.size]


def assert_same_as_fresh(seg: LogSegment) -> None:
    fresh = reopened(seg)
    starts = positions(fresh)
    assert lookups(seg, starts) == lookups(fresh, starts)


def scans_forbidden(seg: LogSegment, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_scan(*_args: object, **_kw: object) -> None:
        raise AssertionError("the lookup scanned headers")

    monkeypatch.setattr(seg, "iter_headers", no_scan)


# -- TailPositions alone ----------------------------------------------------------------


def test_find_answers_within_and_past_the_remembered_batches() -> None:
    tail = TailPositions(size=3)
    payload = bytearray(30)
    for p, base in ((0, 10), (10, 13), (20, 20)):
        payload[p : p + 8] = base.to_bytes(8, "big")
    tail.add(payload, 500, [(12, 0, 10), (15, 0, 10), (20, 0, 10)])
    assert tail.find(9) == NOT_COVERED
    assert [tail.find(o) for o in (10, 12, 13, 15, 16, 19, 20)] == [
        500,
        500,
        510,
        510,
        520,
        520,
        520,
    ]
    assert tail.find(21) == NO_BATCH
    assert tail.find(10, start=505) == 510  # the first batch at or after ``start``
    assert tail.find(16, start=521) == NO_BATCH
    one = bytearray((30).to_bytes(8, "big") + bytes(2))
    tail.add(one, 530, [(31, 0, 10)])  # the oldest of the three is dropped
    assert tail.find(12) == NOT_COVERED
    assert tail.find(13) == 510
    tail.clear()
    assert tail.find(31) == NOT_COVERED
    tail.add(one, 530, [(31, 0, 10)])
    tail.add(bytearray((40).to_bytes(8, "big") + bytes(2)), 600, [(40, 0, 10)])
    assert tail.find(30) == NOT_COVERED  # not contiguous with 530..540: forgotten
    assert tail.find(40) == 600


# -- a segment's lookups ----------------------------------------------------------------


def test_tail_lookups_skip_the_scan_and_match_a_fresh_segment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(7)
    seg = make_segment(tmp_path, base=100)
    bases = append_calls(seg, rng, 60, 100)
    assert_same_as_fresh(seg)
    # the newest batch, the next offset and the high watermark bound: no header scan
    scans_forbidden(seg, monkeypatch)
    newest = bases[-1]
    found = seg.translate_offset(newest)
    assert found is not None and found[1].base_offset == newest
    assert seg.translate_offset(newest + 1_000) is None
    fetched, at_end = seg.read(newest, 1 << 20, newest + 1_000, min_one_batch=True)
    assert fetched is not None and at_end
    assert fetched.position == found[0] and fetched.position + fetched.length == seg.size


def test_lookups_after_truncation_and_new_appends_match_a_fresh_segment(
    tmp_path: Path,
) -> None:
    rng = random.Random(11)
    seg = make_segment(tmp_path)
    bases = append_calls(seg, rng, 40, 0)
    cut = bases[-10]
    seg.truncate_to(cut, now_ms=2_000)
    assert seg.translate_offset(cut) is None
    assert_same_as_fresh(seg)
    # a new leader's batches over the truncated offsets, sized differently
    append_calls(seg, rng, 15, cut)
    assert_same_as_fresh(seg)


def test_lookups_after_recovery_of_a_corrupt_tail_match_a_fresh_segment(tmp_path: Path) -> None:
    rng = random.Random(13)
    seg = make_segment(tmp_path)
    append_calls(seg, rng, 30, 0)
    # a batch a few from the end fails its CRC: recovery cuts the log there
    tail = list(seg.iter_headers())
    bad_pos, bad = tail[-5]
    with open(seg.log_path, "r+b") as f:
        f.seek(bad_pos + bad.batch_length + 12 - 1)
        last_byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([last_byte[0] ^ 0xFF]))
    before = seg.size
    assert seg.recover() == before - bad_pos
    assert seg.size == bad_pos
    assert seg.translate_offset(bad.base_offset) is None
    assert_same_as_fresh(seg)
    append_calls(seg, rng, 5, seg.read_next_offset())
    assert_same_as_fresh(seg)


def test_lookups_after_a_cleaner_swap_read_the_new_file(tmp_path: Path) -> None:
    rng = random.Random(17)
    seg = make_segment(tmp_path)
    bases = append_calls(seg, rng, 30, 0)
    # the cleaned copy keeps every other batch: positions and offsets no longer line up
    swap_dir = tmp_path / "cleaned"
    swap_dir.mkdir()
    cleaned = make_segment(swap_dir)
    for pos, header in seg.iter_headers():
        if header.base_offset in bases[::2]:
            raw = bytearray(seg._pread(header.batch_length + 12, pos))
            last = header.base_offset + header.last_offset_delta
            cleaned.append(raw, [(last, header.max_timestamp, len(raw))])
    cleaned.close()
    seg.close()
    for path in (seg.offset_index.path, seg.time_index.path, seg.log_path):
        (swap_dir / path.name).rename(path.with_name(path.name + ".swap"))
    seg.take_files_from(".swap")
    seg.size = cleaned.size
    seg.rebuild_indexes()
    removed = bases[-1] if bases[-1] not in bases[::2] else bases[-2]
    found = seg.translate_offset(removed)
    assert found is None or found[1].base_offset > removed
    assert_same_as_fresh(seg)
