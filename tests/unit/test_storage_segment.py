"""LogSegment: appends, Kafka's sparse indexing rule, reads, recovery, fd handling."""

from __future__ import annotations

import errno
import gc
import os
from pathlib import Path

import pytest

from pybroker.protocol.records import NewRecord, build_batch, iter_batches, set_base_offset
from pybroker.storage import segment as segment_module
from pybroker.storage.handles import Handles
from pybroker.storage.segment import LogSegment
from tests.unit.test_storage_support import batch, headers_of


def make_segment(dir: Path, base: int = 0, interval: int = 100, handles: Handles | None = None):
    return LogSegment.create(
        dir,
        base,
        index_interval_bytes=interval,
        max_index_size=4096,
        handles=handles or Handles(),
        now_ms=1_000,
    )


def append_batches(seg: LogSegment, count: int, first_offset: int, records: int = 1):
    """Append ``count`` batches one per call; returns (offset, position, bytes) for each."""
    out = []
    offset = first_offset
    for i in range(count):
        payload = batch(records, ts=1_000 + offset, tag=i)
        set_base_offset(payload, 0, offset)
        last = offset + records - 1
        position = seg.size
        seg.append(payload, [(last, 1_000 + last, len(payload))])
        out.append((offset, position, bytes(payload)))
        offset = last + 1
    return out


def test_append_writes_bytes_and_sparse_index_entries(tmp_path: Path) -> None:
    seg = make_segment(tmp_path, base=50, interval=300)
    written = append_batches(seg, 12, 50)
    data = (tmp_path / "00000000000000000050.log").read_bytes()
    assert data == b"".join(b for _, _, b in written)
    assert seg.size == len(data)
    # Kafka's rule: an entry (last offset, position) for a batch appended once more than
    # index.interval.bytes were written since the previous entry
    expected, since = [], 0
    for offset, position, raw in written:
        if since > 300:
            expected.append((offset, position))
            since = 0
        since += len(raw)
    assert expected
    oi = seg.offset_index
    assert [oi.entry(i) for i in range(oi.entries)] == expected
    ti = seg.time_index
    assert [ti.entry(i) for i in range(ti.entries)] == [(1_000 + o, o) for o, _ in expected]


def test_translate_and_read_limits(tmp_path: Path) -> None:
    seg = make_segment(tmp_path, interval=1)
    written = append_batches(seg, 10, 0, records=3)  # offsets 0..29, 3 per batch
    size = len(written[0][2])
    found = seg.translate_offset(7)
    assert found is not None and found[0] == 2 * size and found[1].base_offset == 6
    assert seg.translate_offset(30) is None
    piece, at_end = seg.read(7, 3 * size + 5, None, True)
    assert piece is not None and (piece.position, piece.length) == (2 * size, 3 * size)
    assert not at_end
    assert piece.read() == b"".join(w[2] for w in written[2:5])
    piece, at_end = seg.read(0, 10**9, None, True)
    assert piece is not None and piece.length == seg.size and at_end
    # max_offset: batches with any offset >= 13 are excluded (batch 12..14 too)
    piece, _ = seg.read(0, 10**9, 13, True)
    assert piece is not None and piece.length == 4 * size
    piece, _ = seg.read(12, 10**9, 13, True)
    assert piece is None
    # a first batch larger than max_bytes: whole if min_one_batch, else nothing
    piece, _ = seg.read(3, 10, None, True)
    assert piece is not None and piece.length == size
    assert seg.read(3, 10, None, False)[0] is None


def test_find_offset_by_timestamp_is_record_precise(tmp_path: Path) -> None:
    seg = make_segment(tmp_path)
    records = [NewRecord(b"k", b"v", timestamp=t) for t in (100, 300, 200, 500)]
    payload = bytearray(build_batch(records))
    seg.append(payload, [(3, 500, len(payload))])
    assert seg.find_offset_by_timestamp(250, 0) == (1, 300, -1)
    assert seg.find_offset_by_timestamp(301, 0) == (3, 500, -1)
    assert seg.find_offset_by_timestamp(50, 2) == (2, 200, -1)
    assert seg.find_offset_by_timestamp(501, 0) is None
    assert seg.offset_of_max_timestamp_record() == (3, 500, -1)


def test_roll_trims_indexes_and_recover_rebuilds_them(tmp_path: Path) -> None:
    seg = make_segment(tmp_path, interval=250)
    append_batches(seg, 20, 0)
    oi_entries = [seg.offset_index.entry(i) for i in range(seg.offset_index.entries)]
    ti_entries = [seg.time_index.entry(i) for i in range(seg.time_index.entries)]
    seg.on_become_inactive(20)
    assert os.path.getsize(seg.offset_index.path) == 8 * len(oi_entries)
    # the roll adds the segment's max timestamp as the final time index entry
    assert seg.time_index.last_entry() == (1_019, 19)
    assert os.path.getsize(seg.time_index.path) == 12 * seg.time_index.entries
    assert seg.recover() == 0
    assert [seg.offset_index.entry(i) for i in range(seg.offset_index.entries)] == oi_entries
    assert ti_entries[-1] != (1_019, 19)  # the last batch was not indexed by the append
    rebuilt = [seg.time_index.entry(i) for i in range(seg.time_index.entries)]
    assert rebuilt == [*ti_entries, (1_019, 19)]


def test_recover_truncates_torn_tail(tmp_path: Path) -> None:
    seg = make_segment(tmp_path, interval=1)
    written = append_batches(seg, 5, 0)
    with open(seg.log_path, "ab") as f:
        f.write(written[0][2][:30])  # a torn partial batch
    reopened = LogSegment.open_existing(
        tmp_path,
        0,
        index_interval_bytes=1,
        max_index_size=4096,
        handles=Handles(),
        active=True,
        now_ms=0,
    )
    assert reopened.recover() == 30
    assert reopened.log_path.read_bytes() == b"".join(w[2] for w in written)
    assert reopened.read_next_offset() == 5


def test_enospc_leaves_segment_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seg = make_segment(tmp_path)
    written = append_batches(seg, 3, 0)
    before = seg.log_path.read_bytes()
    real = os.pwrite
    calls = []

    def short_then_full(fd: int, data: memoryview, position: int) -> int:
        calls.append(len(data))
        if len(calls) == 1:
            return real(fd, data[:10], position)  # a short write lands on disk...
        raise OSError(errno.ENOSPC, "No space left on device")  # ...then the disk is full

    monkeypatch.setattr(segment_module, "_pwrite", short_then_full)
    payload = batch(1, tag=9)
    set_base_offset(payload, 0, 3)
    with pytest.raises(OSError):
        seg.append(payload, [(3, 1_003, len(payload))])
    assert seg.size == len(before)
    assert seg.log_path.read_bytes() == before  # the partial write was cut off
    monkeypatch.undo()
    seg.append(payload, [(3, 1_003, len(payload))])
    got = seg.read(0, 10**6, None, True)[0]
    assert got is not None
    assert got.read() == b"".join(w[2] for w in written) + bytes(payload)
    assert [h.base_offset for h in headers_of(got.read())] == [0, 1, 2, 3]


def test_evicted_fd_stays_open_while_a_slice_uses_it(tmp_path: Path) -> None:
    handles = Handles(max_open_files=1)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = make_segment(tmp_path / "a", 0, handles=handles)
    b = make_segment(tmp_path / "b", 0, handles=handles)
    append_batches(a, 2, 0)
    piece, _ = a.read(0, 10**6, None, True)
    assert piece is not None
    fd = piece.fileno()
    append_batches(b, 1, 0)  # b takes the only fd slot: a drops its reference
    assert a._file is None and len(handles.files) == 1
    assert [h.base_offset for _, h in iter_batches(piece.read())] == [0, 1]
    os.fstat(fd)  # still open: the slice holds the file object
    del piece
    gc.collect()
    with pytest.raises(OSError):
        os.fstat(fd)
    # a reopens lazily on the next use
    again, _ = a.read(1, 10**6, None, True)
    assert again is not None and headers_of(again.read())[0].base_offset == 1
