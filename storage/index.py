"""Kafka's sparse, memory-mapped segment indexes, entry for entry.

``.index``: 8-byte entries ``(relative offset int32, position int32)``: the last offset
of a batch and the byte position where that batch starts. ``.timeindex``: 12-byte
entries ``(timestamp int64, relative offset int32)``: the largest timestamp seen so far
and the offset it was seen at. Both are big-endian like Kafka's, so Kafka's
DumpLogSegments reads them.

An active index is preallocated to ``segment.index.bytes`` (sparse file) and mapped
read-write; it is trimmed to its used size when the segment rolls or closes, so on disk
an index's size is its entry count times the entry size, as in Kafka. Inactive indexes
are mapped lazily (read-only) and every map is held through a HandleCache, so 10,000
partitions exhaust neither ``vm.max_map_count`` nor fds (before Python 3.13 an mmap
object keeps a dup of its fd). Only the event loop touches the maps; ``fsync`` opens the file by
path so a flush thread never races an unmap.

A store into a mapped page the filesystem cannot allocate (full disk) is a SIGBUS that kills
the process, so before an append first touches a page of the (sparse) file, the page is
allocated by writing zeros to it; when that fails the entry is skipped (the index is
sparse anyway: lookups just scan a little further) and the broker stays up.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import operator
import os
import struct
import sys
from array import array
from pathlib import Path

from pybroker.storage.errors import CorruptIndexError
from pybroker.storage.fileio import fsync_path
from pybroker.storage.handles import HandleCache

log = logging.getLogger(__name__)
_PAGE = mmap.PAGESIZE
_ZEROS = bytes(_PAGE)


def _write_zeros(fd: int, position: int, length: int) -> None:
    while length > 0:
        written = os.pwrite(fd, _ZEROS[: min(length, _PAGE)], position)
        if written <= 0:
            raise OSError(f"pwrite wrote {written} bytes")
        position += written
        length -= written


# CPython < 3.13 dups the fd inside every mmap object, so each mapped index costs an fd
# until it is unmapped; 3.13 can map without keeping one.
_MMAP_KWARGS: dict[str, bool] = {"trackfd": False} if sys.version_info >= (3, 13) else {}

_OFFSET_ENTRY = struct.Struct(">ii")
_TIME_ENTRY = struct.Struct(">qi")


def _strictly_increasing(values: list[int]) -> bool:
    return all(map(operator.lt, values, values[1:]))


def _non_decreasing(values: list[int]) -> bool:
    return all(map(operator.le, values, values[1:]))


class _Index:
    """Shared machinery: file sizing, lazy mapping, entry count, truncation, fsync."""

    ENTRY: struct.Struct
    entry_size: int

    def __init__(
        self,
        path: Path,
        base_offset: int,
        max_index_size: int,
        *,
        writable: bool,
        handles: HandleCache,
    ) -> None:
        self.path = path
        self.base_offset = base_offset
        self.max_index_size = max_index_size
        self.writable = writable
        self._handles = handles
        self._mm: mmap.mmap | None = None
        self._entries = -1  # -1 = not loaded yet
        self._max_entries = 0
        self._file_size = 0
        self._reserved = 0  # bytes of the file known to be allocated (safe to store into)

    # -- loading and mapping -------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._entries >= 0

    def create(self) -> None:
        """Start an empty index (new segment, or before a rebuild)."""
        self._unmap()
        self.writable = True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            size = self._rounded(self.max_index_size)
            os.ftruncate(fd, size)
        finally:
            os.close(fd)
        self._file_size = size
        self._max_entries = size // self.entry_size
        self._entries = 0
        self._reserved = 0

    def load(self) -> None:
        """Read and verify an existing index; CorruptIndexError if it must be rebuilt."""
        try:
            size = os.stat(self.path).st_size
        except FileNotFoundError:
            raise CorruptIndexError(f"index file {self.path} is missing") from None
        if size % self.entry_size:
            raise CorruptIndexError(
                f"index file {self.path} has size {size}, not a multiple of {self.entry_size}"
            )
        self._file_size = size
        self._entries = size // self.entry_size
        self._max_entries = self._entries
        self._reserved = size // _PAGE * _PAGE
        if self._entries:
            data = self._map()[: self._entries * self.entry_size]
            try:
                self._verify(data)
            except CorruptIndexError:
                self._unmap()
                self._entries = -1
                raise
        if self.writable:
            self.resize(self.max_index_size)

    def ensure_loaded(self) -> None:
        if self._entries < 0:
            self.load()

    def _verify(self, data: bytes) -> None:
        raise NotImplementedError

    def _rounded(self, size: int) -> int:
        return max(size, 0) // self.entry_size * self.entry_size

    def _map(self) -> mmap.mmap:
        mm = self._mm
        if mm is None:
            flags = os.O_RDWR if self.writable else os.O_RDONLY
            fd = os.open(self.path, flags)
            try:
                access = mmap.ACCESS_WRITE if self.writable else mmap.ACCESS_READ
                mm = mmap.mmap(fd, self._file_size, access=access, **_MMAP_KWARGS)
            finally:
                os.close(fd)
            self._mm = mm
        self._handles.touch(self)
        return mm

    def _unmap(self) -> None:
        mm, self._mm = self._mm, None
        if mm is not None:
            self._handles.forget(self)
            mm.close()

    def release_handle(self) -> None:
        """HandleCache eviction: unmap; the next lookup maps the file again."""
        mm, self._mm = self._mm, None
        if mm is not None:
            mm.close()

    def resize(self, max_index_size: int) -> None:
        """Make room for appends (active segment): file and map grow to the cap."""
        self.ensure_loaded()
        self._unmap()
        size = max(self._rounded(max_index_size), self._entries * self.entry_size)
        fd = os.open(self.path, os.O_RDWR)
        try:
            os.ftruncate(fd, size)
        finally:
            os.close(fd)
        self.max_index_size = max_index_size
        self.writable = True
        self._file_size = size
        self._max_entries = size // self.entry_size

    def trim(self) -> None:
        """Cut the file to its entries (segment became inactive or closes), as Kafka does."""
        if self._entries < 0 or not self.writable:
            return
        self._unmap()
        size = self._entries * self.entry_size
        with contextlib.suppress(FileNotFoundError):
            os.truncate(self.path, size)
        self.writable = False
        self._file_size = size
        self._max_entries = self._entries
        self._reserved = min(self._reserved, size // _PAGE * _PAGE)

    # -- entries ------------------------------------------------------------------------

    @property
    def entries(self) -> int:
        self.ensure_loaded()
        return self._entries

    @property
    def max_entries(self) -> int:
        self.ensure_loaded()
        return self._max_entries

    def is_full(self) -> bool:
        self.ensure_loaded()
        return self._entries >= self._max_entries

    def _entry(self, i: int) -> tuple[int, int]:
        return self.ENTRY.unpack_from(self._map(), i * self.entry_size)

    def _reserve(self, end: int) -> bool:
        """Allocate the file's pages below ``end`` before the map stores there (see the
        module doc); False (entry to be skipped) when the filesystem is out of space.

        The pages are written with zeros by ``pwrite`` (never over existing entries): that
        allocates them like ``posix_fallocate`` would, and also puts them in the page cache,
        so the store through the map is a minor fault (microseconds) instead of a
        block-allocating one (milliseconds on ext4).
        """
        if end <= self._reserved:
            return True
        start = max(self._reserved, self._entries * self.entry_size)
        stop = min(-(-end // _PAGE) * _PAGE, self._file_size)
        try:
            fd = os.open(self.path, os.O_RDWR)
            try:
                _write_zeros(fd, start, stop - start)
            finally:
                os.close(fd)
        except OSError as e:
            log.warning("Skipping an entry of %s: cannot allocate index space: %s", self.path, e)
            return False
        self._reserved = stop
        return True

    def _truncate_entries(self, n: int) -> None:
        if n < self._entries:
            self._entries = n

    # -- files --------------------------------------------------------------------------

    def fsync(self) -> None:
        """Durably write the index; opens by path so it is safe from a flush thread."""
        fsync_path(self.path)

    def close(self) -> None:
        """Trim (if active) and unmap."""
        if self.writable and self._entries >= 0:
            self.trim()
        self._unmap()

    def rename(self, path: Path) -> None:
        os.rename(self.path, path)
        self.path = path

    def delete(self) -> None:
        self._unmap()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


class OffsetIndex(_Index):
    """Maps an offset to the file position of the batch holding (or preceding) it."""

    ENTRY = _OFFSET_ENTRY
    entry_size = 8

    def _verify(self, data: bytes) -> None:
        values = array("i")
        values.frombytes(data)
        if sys.byteorder == "little":
            values.byteswap()
        offsets = values[0::2].tolist()
        positions = values[1::2].tolist()
        if offsets[0] < 0 or positions[0] < 0:
            raise CorruptIndexError(f"index {self.path} has a negative first entry")
        if not (_strictly_increasing(offsets) and _strictly_increasing(positions)):
            raise CorruptIndexError(f"index {self.path} has entries out of order")

    def last_entry(self) -> tuple[int, int]:
        """(offset, position) of the last entry, or (base_offset, 0) if empty."""
        n = self.entries
        if n == 0:
            return self.base_offset, 0
        rel, pos = self._entry(n - 1)
        return self.base_offset + rel, pos

    def entry(self, i: int) -> tuple[int, int]:
        rel, pos = self._entry(i)
        return self.base_offset + rel, pos

    def append(self, offset: int, position: int) -> None:
        n = self.entries
        if n >= self._max_entries:
            raise CorruptIndexError(f"attempt to append to a full index {self.path}")
        if not self._reserve(n * 8 + 8):
            return
        mm = self._map()
        _OFFSET_ENTRY.pack_into(mm, n * 8, offset - self.base_offset, position)
        self._entries = n + 1

    def _floor_slot(self, key: int, field: int) -> int:
        """Largest slot whose ``field`` (0 offset, 1 position) is <= key, or -1."""
        n = self.entries
        if n == 0:
            return -1
        mm = self._map()
        unpack = _OFFSET_ENTRY.unpack_from
        if unpack(mm, 0)[field] > key:
            return -1
        lo, hi = 0, n - 1
        while lo < hi:
            mid = (lo + hi + 1) >> 1
            if unpack(mm, mid * 8)[field] <= key:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def lookup(self, offset: int) -> tuple[int, int]:
        """The entry with the largest offset <= ``offset``; (base_offset, 0) if none."""
        slot = self._floor_slot(offset - self.base_offset, 0)
        if slot < 0:
            return self.base_offset, 0
        rel, pos = _OFFSET_ENTRY.unpack_from(self._map(), slot * 8)
        return self.base_offset + rel, pos

    def lookup_position(self, position: int) -> tuple[int, int] | None:
        """The entry with the largest position <= ``position`` (to cut reads at max_bytes)."""
        slot = self._floor_slot(position, 1)
        if slot < 0:
            return None
        rel, pos = _OFFSET_ENTRY.unpack_from(self._map(), slot * 8)
        return self.base_offset + rel, pos

    def truncate_to(self, offset: int) -> None:
        """Drop entries for offsets >= ``offset``."""
        slot = self._floor_slot(offset - self.base_offset, 0)
        if slot < 0:
            self._truncate_entries(0)
            return
        rel, _ = _OFFSET_ENTRY.unpack_from(self._map(), slot * 8)
        self._truncate_entries(slot if self.base_offset + rel == offset else slot + 1)


class TimeIndex(_Index):
    """Maps a timestamp to the offset where the log's max timestamp first reached it."""

    ENTRY = _TIME_ENTRY
    entry_size = 12

    def _verify(self, data: bytes) -> None:
        entries = list(_TIME_ENTRY.iter_unpack(data))
        timestamps = [e[0] for e in entries]
        offsets = [e[1] for e in entries]
        if offsets[0] < 0:
            raise CorruptIndexError(f"time index {self.path} has a negative first offset")
        if not (_strictly_increasing(timestamps) and _non_decreasing(offsets)):
            raise CorruptIndexError(f"time index {self.path} has entries out of order")

    def is_full(self) -> bool:
        # Kafka keeps the last slot for the entry written when the segment rolls.
        self.ensure_loaded()
        return self._entries >= self._max_entries - 1

    def last_entry(self) -> tuple[int, int]:
        """(timestamp, offset) of the last entry, or (-1, base_offset) if empty."""
        n = self.entries
        if n == 0:
            return -1, self.base_offset
        ts, rel = self._entry(n - 1)
        return ts, self.base_offset + rel

    def entry(self, i: int) -> tuple[int, int]:
        ts, rel = self._entry(i)
        return ts, self.base_offset + rel

    def maybe_append(self, timestamp: int, offset: int, skip_full_check: bool = False) -> None:
        """Append if ``timestamp`` is newer than the last entry (Kafka's maybeAppend)."""
        n = self.entries
        if n >= self._max_entries or (not skip_full_check and self.is_full()):
            return
        last_ts, last_offset = self.last_entry()
        if timestamp <= last_ts or (n and offset < last_offset):
            return
        if not self._reserve(n * 12 + 12):
            return
        _TIME_ENTRY.pack_into(self._map(), n * 12, timestamp, offset - self.base_offset)
        self._entries = n + 1

    def _floor_slot(self, key: int, field: int) -> int:
        n = self.entries
        if n == 0:
            return -1
        mm = self._map()
        unpack = _TIME_ENTRY.unpack_from
        if unpack(mm, 0)[field] > key:
            return -1
        lo, hi = 0, n - 1
        while lo < hi:
            mid = (lo + hi + 1) >> 1
            if unpack(mm, mid * 12)[field] <= key:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def lookup(self, timestamp: int) -> tuple[int, int]:
        """The entry with the largest timestamp <= ``timestamp``; (-1, base_offset) if none."""
        slot = self._floor_slot(timestamp, 0)
        if slot < 0:
            return -1, self.base_offset
        ts, rel = _TIME_ENTRY.unpack_from(self._map(), slot * 12)
        return ts, self.base_offset + rel

    def truncate_to(self, offset: int) -> None:
        """Drop entries whose offset is >= ``offset`` (offsets never decrease: bisect)."""
        n = self.entries
        if n == 0:
            return
        mm = self._map()
        rel_target = offset - self.base_offset
        lo, hi = 0, n
        while lo < hi:
            mid = (lo + hi) >> 1
            if _TIME_ENTRY.unpack_from(mm, mid * 12)[1] >= rel_target:
                hi = mid
            else:
                lo = mid + 1
        self._truncate_entries(lo)
