"""One log segment: ``<base>.log`` plus its ``.index`` and ``.timeindex``.

Batches are stored exactly as validated and stamped by the Log. Appends are one
positional write (``pwrite`` at the segment's logical size) straight to the page cache;
the sparse indexes get an entry every ``index.interval.bytes`` (Kafka's rule: the
entry is ``(last offset of the batch, position of the batch)``, written when more than
the interval has been appended since the previous entry). The file descriptor is opened
lazily and held through a HandleCache so idle segments give theirs back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
from collections.abc import Iterator
from pathlib import Path

from pybroker.protocol.errors import CorruptRecordError
from pybroker.protocol.records import (
    HEADER_SIZE,
    LOG_OVERHEAD,
    MAGIC,
    MIN_BATCH_LENGTH,
    BatchHeader,
    batch_crc,
    decode_records,
    read_header,
)
from pybroker.storage.errors import CorruptIndexError
from pybroker.storage.file_slice import FileSlice, SegmentFile
from pybroker.storage.fileio import fsync_path
from pybroker.storage.handles import Handles
from pybroker.storage.index import OffsetIndex, TimeIndex
from pybroker.storage.tail_positions import NO_BATCH, NOT_COVERED, TailPositions
from pybroker.storage.txn_index import TXN_INDEX_SUFFIX, TransactionIndex

log = logging.getLogger(__name__)

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIME_INDEX_SUFFIX = ".timeindex"
DELETED_SUFFIX = ".deleted"
INT32_MAX = 0x7FFFFFFF

_SCAN_CHUNK = 64 * 1024  # header scans read this much at a time
_RECOVERY_CHUNK = 8 * 1024 * 1024  # recovery validates CRCs over windows this large

# The write seam: tests replace it to simulate ENOSPC or short writes.
_pwrite = os.pwrite


def segment_name(base_offset: int) -> str:
    return f"{base_offset:020d}"


def _write_all(fd: int, data: bytes | bytearray | memoryview, position: int) -> None:
    view = memoryview(data)
    while view:
        written = _pwrite(fd, view, position)
        if written <= 0:
            raise OSError(f"pwrite wrote {written} bytes")
        view = view[written:]
        position += written


# An entry the Log hands to append: (last offset, max timestamp, size) per batch.
BatchEntry = tuple[int, int, int]


class LogSegment:
    """A contiguous run of batches starting at ``base_offset``."""

    def __init__(
        self,
        dir: Path,
        base_offset: int,
        *,
        index_interval_bytes: int,
        max_index_size: int,
        handles: Handles,
        active: bool,
        size: int,
        created_ms: int,
        roll_jitter_ms: int = 0,
    ) -> None:
        name = segment_name(base_offset)
        self.dir = dir
        self.base_offset = base_offset
        self.log_path = dir / (name + LOG_SUFFIX)
        self.index_interval_bytes = index_interval_bytes
        self.size = size
        self.active = active
        self._tail = TailPositions()
        self.created_ms = created_ms
        self.roll_jitter_ms = roll_jitter_ms
        # Base offset of the next segment (known once inactive): bounds index checks.
        self.next_base: int | None = None
        self._handles = handles
        self._file: SegmentFile | None = None
        self.offset_index = OffsetIndex(
            dir / (name + INDEX_SUFFIX),
            base_offset,
            max_index_size,
            writable=active,
            handles=handles.indexes,
        )
        self.time_index = TimeIndex(
            dir / (name + TIME_INDEX_SUFFIX),
            base_offset,
            max_index_size,
            writable=active,
            handles=handles.indexes,
        )
        # Aborted transactions whose markers are in this segment (created on first use).
        self.txn_index = TransactionIndex(dir / (name + TXN_INDEX_SUFFIX), base_offset)
        self._indexes_ok = False
        self._bytes_since_last_index_entry = 0
        self._max_ts: int | None = None  # None = not computed yet (lazy after load)
        self._offset_of_max_ts = -1
        self._rolling_ts: int | None = None

    # -- construction -------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        dir: Path,
        base_offset: int,
        *,
        index_interval_bytes: int,
        max_index_size: int,
        handles: Handles,
        now_ms: int,
        roll_jitter_ms: int = 0,
    ) -> LogSegment:
        """A new, empty, active segment (files created now)."""
        seg = cls(
            dir,
            base_offset,
            index_interval_bytes=index_interval_bytes,
            max_index_size=max_index_size,
            handles=handles,
            active=True,
            size=0,
            created_ms=now_ms,
            roll_jitter_ms=roll_jitter_ms,
        )
        fd = os.open(seg.log_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        os.close(fd)
        seg.offset_index.create()
        seg.time_index.create()
        seg._indexes_ok = True
        seg._max_ts = -1
        seg._rolling_ts = -1
        return seg

    @classmethod
    def open_existing(
        cls,
        dir: Path,
        base_offset: int,
        *,
        index_interval_bytes: int,
        max_index_size: int,
        handles: Handles,
        active: bool,
        now_ms: int,
        roll_jitter_ms: int = 0,
    ) -> LogSegment:
        """A segment found on disk; its indexes are verified lazily (or by the Log)."""
        size = os.stat(dir / (segment_name(base_offset) + LOG_SUFFIX)).st_size
        return cls(
            dir,
            base_offset,
            index_interval_bytes=index_interval_bytes,
            max_index_size=max_index_size,
            handles=handles,
            active=active,
            size=size,
            created_ms=now_ms,
            roll_jitter_ms=roll_jitter_ms,
        )

    def __repr__(self) -> str:
        return f"LogSegment({self.log_path}, size={self.size})"

    # -- the file ----------------------------------------------------------------------

    def file(self) -> SegmentFile:
        """The open log file (opened on demand; counted against the fd cap)."""
        f = self._file
        if f is None:
            f = self._file = SegmentFile(self.log_path)
        self._handles.files.touch(self)
        return f

    def release_handle(self) -> None:
        """Evicted from the fd LRU: drop our reference; slices keep the fd alive."""
        self._file = None

    def _pread(self, n: int, position: int) -> bytes:
        return os.pread(self.file().fd, n, position)

    def header_at(self, position: int) -> BatchHeader | None:
        """The batch header at ``position``, None if fewer than 61 bytes remain."""
        if position + HEADER_SIZE > self.size:
            return None
        return read_header(self._pread(HEADER_SIZE, position))

    def iter_headers(
        self, start: int = 0, end: int | None = None
    ) -> Iterator[tuple[int, BatchHeader]]:
        """``(position, header)`` of each complete batch in [start, end), reading in chunks.

        Raises CorruptRecordError at a header that cannot be a v2 batch.
        """
        end = self.size if end is None else min(end, self.size)
        fd = self.file().fd
        buf = b""
        buf_pos = start
        pos = start
        while end - pos >= HEADER_SIZE:
            off = pos - buf_pos
            if off + HEADER_SIZE > len(buf):
                buf = os.pread(fd, min(_SCAN_CHUNK, end - pos), pos)
                buf_pos, off = pos, 0
                if len(buf) < HEADER_SIZE:
                    return
            header = read_header(buf, off)
            if header.batch_length < MIN_BATCH_LENGTH or header.magic != MAGIC:
                raise CorruptRecordError(
                    f"{self.log_path}: no valid record batch at position {pos}"
                )
            size = header.batch_length + LOG_OVERHEAD
            if pos + size > end:
                return
            yield pos, header
            pos += size

    # -- indexes -----------------------------------------------------------------------

    def ensure_indexes(self) -> None:
        """Load and sanity-check the indexes once; rebuild them if they are bad."""
        if self._indexes_ok:
            return
        try:
            self._sanity_check()
        except (CorruptIndexError, CorruptRecordError, OSError) as e:
            log.warning("Rebuilding indexes of %s: %s", self.log_path, e)
            self.rebuild_indexes()
        self._indexes_ok = True

    def _sanity_check(self) -> None:
        oi, ti = self.offset_index, self.time_index
        oi.ensure_loaded()
        ti.ensure_loaded()
        if oi.entries:
            offset, position = oi.last_entry()
            header = self.header_at(position)
            if header is None or header.last_offset != offset:
                raise CorruptIndexError(
                    f"{oi.path}: last entry ({offset}, {position}) is not a batch of the log"
                )
        if ti.entries:
            _, offset = ti.last_entry()
            upper = self.next_base
            if upper is None:
                upper = self._scan_from(oi.last_entry()[1])[0]
            if offset >= max(upper, self.base_offset + 1):
                raise CorruptIndexError(f"{ti.path}: last entry offset {offset} beyond the log")

    def rebuild_indexes(self) -> None:
        """Rebuild both indexes from the batch headers (no CRC checks, no truncation)."""
        self._rebuild(validate=False)

    def recover(self) -> int:
        """Validate every batch (structure, CRC, offsets), truncate at the first bad one.

        Rebuilds the indexes on the way. Returns the number of bytes truncated.
        """
        self._tail.clear()
        valid = self._rebuild(validate=True)
        truncated = self.size - valid
        if truncated:
            log.warning(
                "Truncating %s from %d to %d bytes: torn or corrupt batch at the end",
                self.log_path,
                self.size,
                valid,
            )
            os.ftruncate(self.file().fd, valid)
            self.size = valid
        return truncated

    def _rebuild(self, *, validate: bool) -> int:
        oi, ti = self.offset_index, self.time_index
        oi.create()
        ti.create()
        file_size = os.fstat(self.file().fd).st_size if validate else self.size
        self.size = file_size
        interval = self.index_interval_bytes
        since_last = 0
        max_ts, offset_of_max = -1, -1
        first_ts: int | None = None
        next_min = self.base_offset
        valid = 0
        try:
            for pos, header, ok in self._walk(file_size, validate):
                last = header.base_offset + header.last_offset_delta
                if validate and (
                    not ok
                    or header.base_offset < next_min
                    or header.last_offset_delta < 0
                    or last - self.base_offset > INT32_MAX
                ):
                    break
                if first_ts is None:
                    first_ts = header.max_timestamp
                if header.max_timestamp > max_ts:
                    max_ts, offset_of_max = header.max_timestamp, last
                if since_last > interval and not oi.is_full():
                    oi.append(last, pos)
                    ti.maybe_append(max_ts, offset_of_max)
                    since_last = 0
                size = header.batch_length + LOG_OVERHEAD
                since_last += size
                next_min = last + 1
                valid = pos + size
        except CorruptRecordError as e:
            log.warning("%s: %s", self.log_path, e)
        self._bytes_since_last_index_entry = since_last
        self._max_ts, self._offset_of_max_ts = max_ts, offset_of_max
        self._rolling_ts = first_ts if first_ts is not None else -1
        if not self.active:
            ti.maybe_append(max_ts, offset_of_max, skip_full_check=True)
            oi.trim()
            ti.trim()
        self._indexes_ok = True
        return valid

    def _walk(self, end: int, validate: bool) -> Iterator[tuple[int, BatchHeader, bool]]:
        """Every batch up to ``end`` with its CRC verdict (header-only when not validating)."""
        if not validate:
            for pos, header in self.iter_headers(0, end):
                yield pos, header, True
            return
        fd = self.file().fd
        pos = 0
        while end - pos >= HEADER_SIZE:
            window = os.pread(fd, min(_RECOVERY_CHUNK, end - pos), pos)
            off = 0
            while len(window) - off >= HEADER_SIZE:
                header = read_header(window, off)
                if header.batch_length < MIN_BATCH_LENGTH or header.magic != MAGIC:
                    return
                size = header.batch_length + LOG_OVERHEAD
                if pos + off + size > end:
                    return
                if off + size > len(window):
                    if off == 0:  # a batch larger than the window: read it alone
                        window = os.pread(fd, size, pos)
                        if len(window) < size:
                            return
                    else:
                        break
                yield pos + off, header, batch_crc(window, off, header) == header.crc
                off += size
            if off == 0:
                return
            pos += off

    # -- appends -----------------------------------------------------------------------

    def append(self, payload: bytes | bytearray | memoryview, batches: list[BatchEntry]) -> None:
        """Write ``payload`` (whole batches, offsets assigned) at the end; update indexes.

        On OSError the partial write is cut off again and the segment is unchanged.
        """
        position = self.size
        fd = self.file().fd
        try:
            _write_all(fd, payload, position)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, position)
            raise
        if position == 0:
            self._rolling_ts = max(b[1] for b in batches)
        max_ts = self._max_ts if self._max_ts is not None else self.max_timestamp()
        offset_of_max = self._offset_of_max_ts
        since_last = self._bytes_since_last_index_entry
        interval = self.index_interval_bytes
        oi = self.offset_index
        for last_offset, timestamp, size in batches:
            if timestamp > max_ts:
                max_ts, offset_of_max = timestamp, last_offset
            if since_last > interval and not oi.is_full():
                oi.append(last_offset, position)
                self.time_index.maybe_append(max_ts, offset_of_max)
                since_last = 0
            position += size
            since_last += size
        self._max_ts, self._offset_of_max_ts = max_ts, offset_of_max
        self._bytes_since_last_index_entry = since_last
        self._tail.add(payload, self.size, batches)
        self.size = position

    def should_roll(
        self,
        *,
        incoming_bytes: int,
        max_timestamp: int,
        last_offset: int,
        now_ms: int,
        segment_bytes: int,
        segment_ms: int,
    ) -> bool:
        """Kafka's LogSegment.shouldRoll."""
        size = self.size
        if size > segment_bytes - incoming_bytes:
            return True
        if size > 0 and self.time_waited_for_roll(now_ms, max_timestamp) > (
            segment_ms - self.roll_jitter_ms
        ):
            return True
        if self.offset_index.is_full() or self.time_index.is_full():
            return True
        return last_offset - self.base_offset > INT32_MAX

    def time_waited_for_roll(self, now_ms: int, message_timestamp: int) -> int:
        """Age by record time since the first batch, or by wall time if it had none."""
        ts = self.rolling_timestamp()
        if ts >= 0:
            return message_timestamp - ts
        return now_ms - self.created_ms

    def rolling_timestamp(self) -> int:
        if self._rolling_ts is None:
            header = self.header_at(0)
            self._rolling_ts = header.max_timestamp if header is not None else -1
        return self._rolling_ts

    def on_become_inactive(self, next_base: int) -> None:
        """Rolled: write the final time index entry and trim both indexes (Kafka's rule)."""
        self.ensure_indexes()
        max_ts, offset = self.max_timestamp_and_offset()
        self.time_index.maybe_append(max_ts, offset, skip_full_check=True)
        self.offset_index.trim()
        self.time_index.trim()
        self.active = False
        self.next_base = next_base

    def make_active(self, max_index_size: int) -> None:
        """Truncation made this the last segment again: indexes take appends."""
        self.ensure_indexes()
        self.offset_index.resize(max_index_size)
        self.time_index.resize(max_index_size)
        self.active = True
        self.next_base = None

    # -- lookups -----------------------------------------------------------------------

    def translate_offset(self, offset: int, start: int = 0) -> tuple[int, BatchHeader] | None:
        """Position and header of the first batch whose last offset is >= ``offset``."""
        known = self._tail.find(offset, start)
        if known == NO_BATCH:
            return None
        if known != NOT_COVERED:
            header = self.header_at(known)
            if header is not None:
                return known, header
        self.ensure_indexes()
        position = max(self.offset_index.lookup(offset)[1], start)
        for pos, header in self.iter_headers(position):
            if header.base_offset + header.last_offset_delta >= offset:
                return pos, header
        return None

    def read(
        self, offset: int, max_bytes: int, max_offset: int | None, min_one_batch: bool
    ) -> tuple[FileSlice | None, bool]:
        """Whole batches from the one holding ``offset``, within the byte/offset limits.

        Returns the slice (None if nothing fits) and whether the read reached this
        segment's end (the Log then continues in the next segment).
        """
        found = self.translate_offset(offset)
        if found is None:
            return None, True
        start, first = found
        end = self.size
        if max_offset is not None:
            if first.base_offset + first.last_offset_delta >= max_offset:
                return None, False
            bound = self.translate_offset(max_offset, start)
            if bound is not None:
                end = bound[0]
        first_size = first.batch_length + LOG_OVERHEAD
        if first_size > max_bytes:
            if min_one_batch:
                return FileSlice(self.file(), start, first_size), False
            return None, False
        limit = start + max_bytes
        if limit >= end:
            stop = end
        else:
            stop = start + first_size
            entry = self.offset_index.lookup_position(limit)
            scan_from = stop
            if entry is not None and entry[1] > stop:
                stop = scan_from = entry[1]
            for pos, header in self.iter_headers(scan_from, end):
                nxt = pos + header.batch_length + LOG_OVERHEAD
                if nxt > limit:
                    break
                stop = nxt
        return FileSlice(self.file(), start, stop - start), stop >= self.size

    def max_timestamp(self) -> int:
        return self.max_timestamp_and_offset()[0]

    def max_timestamp_and_offset(self) -> tuple[int, int]:
        """Largest batch max_timestamp and the last offset of that batch (-1, -1 if none)."""
        if self._max_ts is None:
            self.ensure_indexes()
            if self._max_ts is None:
                ts, offset = self.time_index.last_entry()
                position = self.offset_index.lookup(offset)[1] if ts >= 0 else 0
                if ts < 0:
                    offset = -1
                for _, header in self.iter_headers(position):
                    if header.max_timestamp > ts:
                        ts = header.max_timestamp
                        offset = header.base_offset + header.last_offset_delta
                self._max_ts, self._offset_of_max_ts = ts, offset
        return self._max_ts, self._offset_of_max_ts

    def largest_timestamp(self) -> int:
        """For retention.ms: the max timestamp, or the file's mtime if it has none."""
        ts = self.max_timestamp()
        if ts >= 0:
            return ts
        try:
            return int(os.stat(self.log_path).st_mtime * 1000)
        except FileNotFoundError:
            return -1

    def read_next_offset(self) -> int:
        """Offset after the last batch (base_offset if empty), via the index + short scan."""
        return self.scan_tail()[0]

    def scan_tail(self) -> tuple[int, int]:
        """(next offset, end of the last complete batch) scanning from the last index entry.

        An end short of ``size`` means a torn or garbage tail.
        """
        self.ensure_indexes()
        return self._scan_from(self.offset_index.last_entry()[1])

    def _scan_from(self, position: int) -> tuple[int, int]:
        next_offset, end = self.base_offset, position
        try:
            for pos, header in self.iter_headers(position):
                next_offset = header.base_offset + header.last_offset_delta + 1
                end = pos + header.batch_length + LOG_OVERHEAD
        except CorruptRecordError:
            pass
        return next_offset, end

    def find_offset_by_timestamp(
        self, timestamp: int, starting_offset: int
    ) -> tuple[int, int, int] | None:
        """(offset, timestamp, leader epoch) of the first record with ts >= ``timestamp``."""
        self.ensure_indexes()
        _, ts_offset = self.time_index.lookup(timestamp)
        position = self.offset_index.lookup(max(ts_offset, starting_offset))[1]
        for pos, header in self.iter_headers(position):
            if header.max_timestamp < timestamp:
                continue
            if header.base_offset + header.last_offset_delta < starting_offset:
                continue
            for record in decode_records(self._pread(header.batch_length + LOG_OVERHEAD, pos)):
                if record.timestamp >= timestamp and record.offset >= starting_offset:
                    return record.offset, record.timestamp, header.partition_leader_epoch
        return None

    def offset_of_max_timestamp_record(self) -> tuple[int, int, int] | None:
        """(offset, timestamp, epoch) of the first record carrying the segment's max ts."""
        ts, offset = self.max_timestamp_and_offset()
        if ts < 0:
            return None
        found = self.translate_offset(offset)
        if found is None:
            return None
        pos, header = found
        for record in decode_records(self._pread(header.batch_length + LOG_OVERHEAD, pos)):
            if record.timestamp == header.max_timestamp:
                return record.offset, header.max_timestamp, header.partition_leader_epoch
        return offset, header.max_timestamp, header.partition_leader_epoch

    # -- truncation, flush, lifecycle --------------------------------------------------

    def truncate_to(self, offset: int, now_ms: int) -> tuple[int, int | None]:
        """Drop every batch whose last offset is >= ``offset``.

        Returns (bytes truncated, base offset of the first dropped batch or None).
        """
        self._tail.clear()
        found = self.translate_offset(offset)
        if found is None:
            return 0, None
        position, header = found
        self.offset_index.truncate_to(offset)
        self.time_index.truncate_to(offset)
        self.txn_index.truncate_to(offset)
        truncated = self.size - position
        os.ftruncate(self.file().fd, position)
        self.size = position
        if position == 0:
            self.created_ms = now_ms
            self._rolling_ts = -1
        self._bytes_since_last_index_entry = 0
        self._max_ts = None
        self.max_timestamp_and_offset()
        return truncated, header.base_offset

    def fsync(self) -> None:
        """fsync log and indexes; safe from a flush thread (never touches the maps)."""
        f = self._file
        if f is not None and not f.closed:
            os.fsync(f.fd)
        elif not fsync_path(self.log_path):
            return
        self.offset_index.fsync()
        self.time_index.fsync()
        self.txn_index.fsync()

    def close(self) -> None:
        """Shutdown: final time index entry, trim, unmap, close the fd."""
        if self.active and self._indexes_ok:
            max_ts, offset = self.max_timestamp_and_offset()
            self.time_index.maybe_append(max_ts, offset, skip_full_check=True)
        self.offset_index.close()
        self.time_index.close()
        self._handles.files.forget(self)
        f, self._file = self._file, None
        if f is not None:
            f.close()

    def drop_handles(self) -> None:
        """Forget the fd (without closing: slices may use it) and unmap the indexes."""
        self._handles.files.forget(self)
        self._file = None
        self.offset_index.close()
        self.time_index.close()

    def rename_deleted(self) -> list[Path]:
        """Kafka's async delete, step one: ``.log`` -> ``.log.deleted`` etc."""
        self.drop_handles()
        self.txn_index.forget()
        paths = []
        for path in (
            self.log_path,
            self.offset_index.path,
            self.time_index.path,
            self.txn_index.path,
        ):
            target = path.with_name(path.name + DELETED_SUFFIX)
            with contextlib.suppress(FileNotFoundError):
                os.rename(path, target)
                paths.append(target)
        return paths

    def take_files_from(self, suffix: str) -> None:
        """Rename ``<file><suffix>`` to each of this segment's files (a cleaned segment's
        ``.swap`` files going live): the indexes first, the log last, so a crash in between
        leaves the ``.log.swap`` that load-time recovery finishes from."""
        self._tail.clear()
        for path in (self.offset_index.path, self.time_index.path, self.log_path):
            os.rename(path.with_name(path.name + suffix), path)

    def delete_files(self) -> None:
        self.drop_handles()
        self.txn_index.forget()
        for path in (
            self.log_path,
            self.offset_index.path,
            self.time_index.path,
            self.txn_index.path,
        ):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def random_jitter(jitter_ms: int, segment_ms: int) -> int:
    """Kafka's randomSegmentJitter: spread segment rolls of many partitions."""
    if jitter_ms <= 0:
        return 0
    return random.randrange(min(jitter_ms, segment_ms))
