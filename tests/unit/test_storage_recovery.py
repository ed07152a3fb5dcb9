"""Crash recovery: torn and corrupt tails, rebuilt indexes, bad files found at start-up."""

from __future__ import annotations

import logging
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybroker.protocol.records import BatchHeader, decode_records, iter_batches
from pybroker.storage.log import Log
from tests.unit.test_storage_support import (
    all_bytes,
    batch,
    fill,
    headers_of,
    open_log,
    slices_bytes,
    topic_config,
)


@dataclass
class Stored:
    segment: Path
    position: int
    raw: bytes
    header: BatchHeader


def stored_batches(dir: Path) -> list[Stored]:
    out = []
    for path in sorted(dir.glob("*.log")):
        data = path.read_bytes()
        for pos, h in iter_batches(data):
            out.append(Stored(path, pos, data[pos : pos + h.size], h))
    return out


def build_log(dir: Path, sizes: list[tuple[int, int]], segment_bytes: int, interval: int) -> None:
    cfg = topic_config(segment_bytes=segment_bytes, index_interval_bytes=interval)
    log = open_log(dir, cfg)
    ts = 10_000
    for i, (records, value_size) in enumerate(sizes):
        log.append_as_leader(batch(records, ts=ts, tag=i, value_size=value_size), i // 4, now_ms=ts)
        ts += records
    log.close()


def check_recovered(log: Log, kept: list[Stored]) -> None:
    """The log holds exactly ``kept`` and every index lookup agrees with the data."""
    assert all_bytes(log) == b"".join(s.raw for s in kept)
    expected_end = kept[-1].header.next_offset if kept else log.segments[-1].base_offset
    assert log.log_end_offset == expected_end
    for s in kept:
        for offset in {s.header.base_offset, s.header.last_offset}:
            got = headers_of(slices_bytes(log.read(offset, 1)))
            assert got[0] == s.header
    # every index entry points at a real batch and ends with it
    for seg in log.segments:
        oi = seg.offset_index
        for i in range(oi.entries):
            offset, position = oi.entry(i)
            header = seg.header_at(position)
            assert header is not None and header.last_offset == offset
        ti = seg.time_index
        stamps = [ti.entry(i) for i in range(ti.entries)]
        assert stamps == sorted(stamps)
    # timestamp lookups: timestamps rise with offsets, so the answer is the first record
    records = [r for s in kept for r in decode_records(s.raw)]
    for r in records[:: max(1, len(records) // 8)]:
        assert log.fetch_offset_for_timestamp(r.timestamp)[:2] == (r.offset, r.timestamp)
    if records:
        assert log.fetch_offset_for_timestamp(records[-1].timestamp + 1) is None
    info = log.append_as_leader(batch(1, ts=10**6), 99, now_ms=10**6)
    assert info.base_offset == log.log_end_offset - 1 == expected_end


layouts = st.tuples(
    st.lists(st.tuples(st.integers(1, 3), st.integers(0, 200)), min_size=1, max_size=20),
    st.integers(800, 3_000),  # always above the largest batch (about 750 bytes)
    st.integers(0, 600),
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(layout=layouts, data=st.data())
def test_cut_anywhere_keeps_exactly_the_complete_prefix(layout, data) -> None:
    sizes, segment_bytes, interval = layout
    with tempfile.TemporaryDirectory() as tmp:
        dir = Path(tmp) / "t-0"
        build_log(dir, sizes, segment_bytes, interval)
        stored = stored_batches(dir)
        segments = sorted(dir.glob("*.log"))
        victim = segments[data.draw(st.integers(0, len(segments) - 1), label="segment")]
        cut = data.draw(st.integers(0, victim.stat().st_size), label="cut")
        os.truncate(victim, cut)
        boundaries = {0} | {s.position + s.header.size for s in stored if s.segment == victim}
        torn = cut not in boundaries
        # Kafka's rule: later segments go only if this one had to be truncated (a cut
        # exactly at a batch boundary leaves nothing to detect, like a compaction gap)
        kept = [
            s
            for s in stored
            if s.segment < victim
            or (s.segment == victim and s.position + s.header.size <= cut)
            or (s.segment > victim and not torn)
        ]
        log = open_log(
            dir, topic_config(segment_bytes=segment_bytes, index_interval_bytes=interval)
        )
        check_recovered(log, kept)
        if torn:
            assert sorted(dir.glob("*.log"))[-1] == victim  # later segments were dropped
        log.close()
        again = open_log(dir, log.config, clean_shutdown=True)
        assert again.log_end_offset == log.log_end_offset
        assert all_bytes(again)[: sum(len(s.raw) for s in kept)] == b"".join(s.raw for s in kept)
        again.close()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(layout=layouts, data=st.data())
def test_flipped_byte_truncates_at_the_corrupt_batch(layout, data) -> None:
    sizes, segment_bytes, interval = layout
    with tempfile.TemporaryDirectory() as tmp:
        dir = Path(tmp) / "t-0"
        build_log(dir, sizes, segment_bytes, interval)
        stored = stored_batches(dir)
        k = data.draw(st.integers(0, len(stored) - 1), label="batch")
        victim = stored[k]
        # base offset (0..7) and leader epoch (12..15) are outside the CRC; see below
        rel = data.draw(
            st.integers(0, victim.header.size - 1).filter(lambda r: not (r < 8 or 12 <= r < 16)),
            label="byte",
        )
        flip = data.draw(st.integers(1, 255), label="xor")
        with open(victim.segment, "r+b") as f:
            f.seek(victim.position + rel)
            original = f.read(1)[0]
            f.seek(victim.position + rel)
            f.write(bytes([original ^ flip]))
        kept = stored[:k]
        log = open_log(
            dir, topic_config(segment_bytes=segment_bytes, index_interval_bytes=interval)
        )
        check_recovered(log, kept)
        log.close()


def test_flipped_leader_epoch_is_not_corruption(tmp_path: Path) -> None:
    dir = tmp_path / "t-0"
    build_log(dir, [(2, 10)] * 5, 10_000, 0)
    path = dir / "00000000000000000000.log"
    data = bytearray(path.read_bytes())
    size = len(data) // 5
    data[size + 15] ^= 0x01  # the epoch of batch 1 (not covered by the CRC)
    path.write_bytes(bytes(data))
    log = open_log(dir)
    assert all_bytes(log) == bytes(data)


def test_base_offset_going_backwards_is_truncated(tmp_path: Path) -> None:
    dir = tmp_path / "t-0"
    build_log(dir, [(2, 10)] * 5, 10_000, 0)
    path = dir / "00000000000000000000.log"
    data = bytearray(path.read_bytes())
    size = len(data) // 5
    struct.pack_into(">q", data, 3 * size, 1)  # batch 3 claims offset 1 again
    path.write_bytes(bytes(data))
    log = open_log(dir)
    assert all_bytes(log) == bytes(data[: 3 * size])
    assert log.log_end_offset == 6


def test_recovery_starts_at_the_recovery_point_segment(tmp_path: Path) -> None:
    one = len(batch(1))
    dir = tmp_path / "t-0"
    cfg = topic_config(segment_bytes=one * 2)
    log = open_log(dir, cfg)
    fill(log, 6)  # segments 0, 2, 4
    log.close()
    first = dir / "00000000000000000000.log"
    data = bytearray(first.read_bytes())
    data[-1] ^= 0xFF  # corrupt a batch below the recovery point
    first.write_bytes(bytes(data))
    trusted = open_log(dir, cfg, recovery_point=4)  # fsynced data is not re-validated
    assert trusted.log_end_offset == 6
    trusted.close()
    full = open_log(dir, cfg, recovery_point=0)
    assert full.log_end_offset == 1 and [s.base_offset for s in full.segments] == [0]


def test_clean_start_with_torn_tail_still_recovers(tmp_path: Path) -> None:
    dir = tmp_path / "t-0"
    log = open_log(dir)
    stored = fill(log, 3)
    log.close()
    with open(dir / "00000000000000000000.log", "ab") as f:
        f.write(stored[0][:40])
    again = open_log(dir, clean_shutdown=True)
    assert all_bytes(again) == b"".join(stored) and again.log_end_offset == 3


@pytest.mark.parametrize(
    "damage",
    ["wrong_size", "out_of_order", "beyond_log", "missing", "zero_tail", "time_beyond"],
)
def test_bad_index_is_rebuilt_on_clean_start(tmp_path: Path, damage: str) -> None:
    one = len(batch(1))
    dir = tmp_path / "t-0"
    cfg = topic_config(segment_bytes=one * 6, index_interval_bytes=1)
    log = open_log(dir, cfg)
    stored = fill(log, 10)  # segments 0 (6 batches) and 6 (active)
    log.close()
    good = {p.name: p.read_bytes() for p in dir.glob("*index")}
    for name in ("00000000000000000000", "00000000000000000006"):
        index = dir / f"{name}.index"
        time_index = dir / f"{name}.timeindex"
        if damage == "wrong_size":
            index.write_bytes(index.read_bytes() + b"\x01\x02\x03")
        elif damage == "out_of_order":
            raw = index.read_bytes()
            index.write_bytes(raw[8:16] + raw[0:8] + raw[16:])
        elif damage == "beyond_log":
            index.write_bytes(index.read_bytes() + struct.pack(">ii", 50, 10**6))
        elif damage == "missing":
            index.unlink()
            time_index.unlink()
        elif damage == "zero_tail":  # a preallocated index never trimmed (crash)
            index.write_bytes(index.read_bytes() + b"\x00" * 80)
        elif damage == "time_beyond":
            time_index.write_bytes(time_index.read_bytes() + struct.pack(">qi", 10**12, 99))
    again = open_log(dir, cfg, clean_shutdown=True)
    assert all_bytes(again) == b"".join(stored)
    for i, raw in enumerate(stored):
        assert slices_bytes(again.read(i, 1)) == raw
        ts = decode_records(raw)[0].timestamp
        assert again.fetch_offset_for_timestamp(ts)[:2] == (i, ts)
    again.close()
    assert {p.name: p.read_bytes() for p in dir.glob("*index")} == good


def test_stray_files_and_leftovers_in_a_log_dir(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dir = tmp_path / "t-0"
    log = open_log(dir)
    stored = fill(log, 2)
    log.close()
    (dir / "notes.txt").write_text("hello")
    (dir / "subdir").mkdir()
    (dir / "00000000000000000000.txnindex").write_bytes(b"aborted txns")
    (dir / "00000000000000000099.index").write_bytes(b"\x00" * 8)  # orphaned index
    (dir / "00000000000000000005.log.deleted").write_bytes(b"old")
    (dir / "leader-epoch-checkpoint.tmp").write_text("half")
    (dir / "abc.log").write_bytes(b"not a segment name")
    with caplog.at_level(logging.INFO):
        again = open_log(dir, clean_shutdown=True)
    assert all_bytes(again) == b"".join(stored)
    assert "notes.txt" in caplog.text and "subdir" in caplog.text and "abc.log" in caplog.text
    names = {p.name for p in dir.iterdir()}
    assert {"notes.txt", "subdir", "abc.log"} <= names
    # A .txnindex that fails its sanity check is rebuilt (no aborted transactions: gone).
    assert "Rebuilding transaction indexes" in caplog.text
    assert "00000000000000000000.txnindex" not in names
    assert "00000000000000000099.index" not in names
    assert "00000000000000000005.log.deleted" not in names
    assert "leader-epoch-checkpoint.tmp" not in names


def test_garbage_partition_metadata_and_epoch_checkpoint(tmp_path: Path) -> None:
    dir = tmp_path / "t-0"
    log = open_log(dir)
    stored = fill(log, 2, epoch=4)
    log.close()
    (dir / "partition.metadata").write_bytes(b"\xff\xfe garbage")
    (dir / "leader-epoch-checkpoint").write_text("0\n9\n")
    again = open_log(dir, clean_shutdown=True)
    assert all_bytes(again) == b"".join(stored)
    assert again.epoch_cache.entries() == []
