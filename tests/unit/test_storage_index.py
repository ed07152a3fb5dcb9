"""Offset and time indexes: Kafka's entry layout, binary search, sizing, verification."""

from __future__ import annotations

import bisect
import os
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pybroker.storage.errors import CorruptIndexError
from pybroker.storage.handles import HandleCache
from pybroker.storage.index import OffsetIndex, TimeIndex


def new_offset_index(path: Path, base: int = 100, max_size: int = 8 * 64, cache_cap: int = 10):
    idx = OffsetIndex(path, base, max_size, writable=True, handles=HandleCache(cache_cap))
    idx.create()
    return idx


def new_time_index(path: Path, base: int = 100, max_size: int = 12 * 64):
    idx = TimeIndex(path, base, max_size, writable=True, handles=HandleCache(10))
    idx.create()
    return idx


def test_offset_index_preallocates_and_stores_kafka_entries(tmp_path: Path) -> None:
    path = tmp_path / "00000000000000000100.index"
    idx = new_offset_index(path, max_size=8 * 64 + 5)  # rounded down to whole entries
    assert os.path.getsize(path) == 8 * 64
    assert idx.max_entries == 64 and idx.entries == 0
    idx.append(110, 4096)
    idx.append(125, 8300)
    raw = path.read_bytes()[:16]
    # relative offset int32 then position int32, big-endian, exactly Kafka's layout
    assert raw == struct.pack(">iiii", 10, 4096, 25, 8300)
    idx.trim()
    assert path.read_bytes() == raw
    assert idx.last_entry() == (125, 8300)


def test_offset_index_lookup_semantics(tmp_path: Path) -> None:
    idx = new_offset_index(tmp_path / "a.index")
    assert idx.lookup(500) == (100, 0)  # empty: the segment start
    for i in range(1, 21):
        idx.append(100 + i * 10, i * 1000)
    assert idx.lookup(99) == (100, 0)
    assert idx.lookup(109) == (100, 0)  # below the first entry
    assert idx.lookup(110) == (110, 1000)
    assert idx.lookup(119) == (110, 1000)
    assert idx.lookup(155) == (150, 5000)
    assert idx.lookup(300) == (300, 20000)
    assert idx.lookup(10**12) == (300, 20000)
    assert idx.lookup_position(999) is None
    assert idx.lookup_position(1000) == (110, 1000)
    assert idx.lookup_position(7500) == (170, 7000)


@settings(max_examples=60, deadline=None)
@given(
    deltas=st.lists(st.integers(1, 1000), min_size=0, max_size=200),
    queries=st.lists(st.integers(-50, 250_000), min_size=1, max_size=30),
)
def test_offset_index_binary_search_matches_bisect(
    tmp_path_factory: pytest.TempPathFactory, deltas: list[int], queries: list[int]
) -> None:
    path = tmp_path_factory.mktemp("idx") / "x.index"
    idx = new_offset_index(path, base=0, max_size=8 * 256)
    offsets, positions = [], []
    off = pos = 0
    for d in deltas:
        off += d
        pos += d * 3
        offsets.append(off)
        positions.append(pos)
        idx.append(off, pos)
    for q in queries:
        i = bisect.bisect_right(offsets, q) - 1
        expected = (offsets[i], positions[i]) if i >= 0 else (0, 0)
        assert idx.lookup(q) == expected
        j = bisect.bisect_right(positions, q) - 1
        assert idx.lookup_position(q) == ((offsets[j], positions[j]) if j >= 0 else None)


def test_offset_index_truncate_and_full(tmp_path: Path) -> None:
    idx = new_offset_index(tmp_path / "b.index", max_size=8 * 4)
    for i in range(4):
        idx.append(100 + (i + 1) * 10, (i + 1) * 100)
    assert idx.is_full()
    with pytest.raises(CorruptIndexError):
        idx.append(200, 900)
    idx.truncate_to(130)  # drops entries with offset >= 130
    assert idx.entries == 2 and idx.last_entry() == (120, 200)
    idx.truncate_to(125)
    assert idx.entries == 2
    idx.truncate_to(0)
    assert idx.entries == 0 and idx.lookup(150) == (100, 0)


def test_offset_index_reload_and_resize(tmp_path: Path) -> None:
    path = tmp_path / "c.index"
    idx = new_offset_index(path)
    for i in range(5):
        idx.append(101 + i, 50 * (i + 1))
    idx.close()  # active index trims on close
    assert os.path.getsize(path) == 40
    again = OffsetIndex(path, 100, 8 * 64, writable=True, handles=HandleCache(4))
    again.load()
    assert again.entries == 5 and again.max_entries == 64
    assert os.path.getsize(path) == 8 * 64  # re-preallocated for appends
    assert [again.entry(i) for i in range(5)] == [(101 + i, 50 * (i + 1)) for i in range(5)]
    again.append(200, 1000)
    assert again.lookup(300) == (200, 1000)


@pytest.mark.parametrize(
    "content, why",
    [
        (b"\x00" * 13, "size not a multiple of 8"),
        (struct.pack(">iiii", 5, 100, 3, 200), "offsets out of order"),
        (struct.pack(">iiii", 5, 100, 6, 50), "positions out of order"),
        (struct.pack(">iiii", 5, 100, 0, 0), "zero tail of a preallocated file"),
        (struct.pack(">ii", -1, 0), "negative relative offset"),
    ],
)
def test_offset_index_load_rejects_corrupt_files(tmp_path: Path, content: bytes, why: str) -> None:
    path = tmp_path / "d.index"
    path.write_bytes(content)
    idx = OffsetIndex(path, 0, 1024, writable=False, handles=HandleCache(4))
    with pytest.raises(CorruptIndexError):
        idx.load()


def test_missing_index_is_corrupt(tmp_path: Path) -> None:
    idx = TimeIndex(tmp_path / "none.timeindex", 0, 1024, writable=False, handles=HandleCache(4))
    with pytest.raises(CorruptIndexError):
        idx.load()


def test_time_index_maybe_append_lookup_and_slot_reserve(tmp_path: Path) -> None:
    path = tmp_path / "00000000000000000100.timeindex"
    idx = new_time_index(path, max_size=12 * 4)
    assert idx.lookup(5) == (-1, 100)
    idx.maybe_append(1000, 105)
    idx.maybe_append(1000, 107)  # not newer: ignored
    idx.maybe_append(999, 108)  # older: ignored
    idx.maybe_append(2000, 110)
    assert idx.entries == 2
    assert path.read_bytes()[:24] == struct.pack(">qiqi", 1000, 5, 2000, 10)
    idx.maybe_append(3000, 120)
    # Kafka keeps the last slot for the entry written when the segment rolls
    assert idx.is_full() and idx.entries == 3
    idx.maybe_append(4000, 130)
    assert idx.entries == 3
    idx.maybe_append(4000, 130, skip_full_check=True)
    assert idx.entries == 4
    assert idx.lookup(999) == (-1, 100)
    assert idx.lookup(1000) == (1000, 105)
    assert idx.lookup(2999) == (2000, 110)
    assert idx.lookup(10**15) == (4000, 130)
    idx.truncate_to(120)
    assert idx.entries == 2 and idx.last_entry() == (2000, 110)
    idx.trim()
    assert os.path.getsize(path) == 24


def test_time_index_rejects_out_of_order(tmp_path: Path) -> None:
    path = tmp_path / "e.timeindex"
    path.write_bytes(struct.pack(">qiqi", 2000, 1, 1000, 2))
    idx = TimeIndex(path, 0, 1024, writable=False, handles=HandleCache(4))
    with pytest.raises(CorruptIndexError):
        idx.load()
    path.write_bytes(struct.pack(">qi", 2000, 1) + b"\x00" * 5)
    with pytest.raises(CorruptIndexError):
        TimeIndex(path, 0, 1024, writable=False, handles=HandleCache(4)).load()


def test_index_maps_are_evicted_past_the_cap_and_remapped(tmp_path: Path) -> None:
    cache = HandleCache(2)
    indexes = []
    for i in range(5):
        idx = OffsetIndex(tmp_path / f"{i}.index", 0, 8 * 16, writable=True, handles=cache)
        idx.create()
        idx.append(10 + i, 100 + i)
        indexes.append(idx)
    assert len(cache) == 2
    mapped = [idx._mm is not None for idx in indexes]
    assert mapped == [False, False, False, True, True]
    # an evicted index maps itself again on use and still has its entries
    assert indexes[0].lookup(50) == (10, 100)
    indexes[0].append(20, 200)
    assert indexes[0].lookup(50) == (20, 200)
    assert len(cache) == 2


def test_handle_cache_is_lru() -> None:
    released: list[str] = []

    class Owner:
        def __init__(self, name: str) -> None:
            self.name = name

        def release_handle(self) -> None:
            released.append(self.name)

    cache = HandleCache(2)
    a, b, c = Owner("a"), Owner("b"), Owner("c")
    cache.touch(a)
    cache.touch(b)
    cache.touch(a)  # a is now most recent
    cache.touch(c)
    assert released == ["b"]
    cache.forget(a)
    cache.touch(b)
    assert released == ["b"] and len(cache) == 2


def test_pages_are_allocated_before_the_map_stores_and_a_full_disk_skips_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A store into an unallocatable mapped page is a SIGBUS: each new page is written
    (zeros) first; when the disk is full the entry is skipped instead, and later entries
    go in once there is room again. Existing entries are never overwritten."""
    import errno

    from pybroker.storage import index as index_module

    page = index_module._PAGE
    per_page = page // 8
    idx = new_offset_index(tmp_path / "a.index", base=0, max_size=8 * per_page * 3)
    assert os.stat(idx.path).st_blocks == 0  # sparse until used
    for i in range(per_page + 1):  # fills page 0, starts page 1
        idx.append(i, i * 10)
    assert os.stat(idx.path).st_blocks * 512 >= 2 * page
    real = index_module._write_zeros

    def disk_full(fd: int, position: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(index_module, "_write_zeros", disk_full)
    for i in range(per_page + 1, 2 * per_page):  # the rest of page 1: already allocated
        idx.append(i, i * 10)
    idx.append(2 * per_page, 2 * per_page * 10)  # page 2: cannot be allocated, skipped
    assert idx.entries == 2 * per_page and "cannot allocate index space" in caplog.text
    monkeypatch.setattr(index_module, "_write_zeros", real)
    idx.append(2 * per_page + 1, (2 * per_page + 1) * 10)
    assert idx.entries == 2 * per_page + 1
    assert idx.lookup(2 * per_page) == (2 * per_page - 1, (2 * per_page - 1) * 10)
    assert idx.lookup(2 * per_page + 1) == (2 * per_page + 1, (2 * per_page + 1) * 10)
    assert [idx.entry(i) for i in range(3)] == [(0, 0), (1, 10), (2, 20)]


def test_reopened_active_index_keeps_its_entries_when_it_grows(tmp_path: Path) -> None:
    path = tmp_path / "00000000000000000000.index"
    idx = new_offset_index(path, base=0, max_size=8 * 1024)
    for i in range(10):
        idx.append(i, i * 100)
    idx.trim()  # a clean close leaves 80 bytes
    again = OffsetIndex(path, 0, 8 * 1024, writable=True, handles=HandleCache(10))
    again.load()  # active again: grows to 8 KiB, the partial page holds entries
    again.append(10, 1000)
    assert [again.entry(i) for i in range(11)] == [(i, i * 100) for i in range(11)]
