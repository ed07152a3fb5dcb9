"""Log compaction: Kafka's log cleaner (``cleanup.policy=compact`` and ``compact,delete``).

One cleaning of one log, the dirtiest that qualifies, in three kinds of step:

1. ``plan`` (event loop, cheap): pick the log with the highest cleanable ratio
   ``dirty bytes / (clean + dirty bytes)`` above ``min.cleanable.dirty.ratio``, or one whose
   oldest dirty batch is past ``max.compaction.lag.ms``, or (our addition) one holding
   tombstones or markers whose delete horizon has passed. The dirty range starts at the
   ``cleaner-offset-checkpoint`` offset and ends at the first uncleanable offset: the
   active segment, the high watermark, the first segment younger than
   ``min.compaction.lag.ms`` and the first open transaction (the producer state's LSO,
   checked again against the batches in step 2), each rounded down to a segment boundary.
   The plan is a snapshot: segment objects, paths and sizes.
2. ``prepare`` and ``build_group`` (the cleaner's worker thread, with file descriptors of
   its own; inactive segments never change under it): scan batch headers for
   transactions and producers, map every key of the dirty range to its last offset, then
   rewrite the log from its first segment to the end of the dirty range, one group of
   adjacent segments at a time (merged while they fit ``segment.bytes``, the index size
   and the int32 offset range), into ``<base>.log|.index|.timeindex.cleaned`` files;
   fsync them and rename them to ``.swap``.
3. ``commit_group`` (event loop, a few renames): ``Log.replace_segments`` checks that the
   log still holds exactly those segments and swaps the new one in; the old files are
   renamed ``.deleted`` (a FileSlice being sent keeps its open file) and removed after
   ``file.delete.delay.ms``. A crash leaves either ``.cleaned`` files (deleted at load) or a
   complete ``.swap`` (finished at load by :func:`complete_swaps`).

What a cleaned batch keeps (Kafka's ``MemoryRecords.filterTo`` with the cleaner's filter):
the latest record of each key; a tombstone until its batch's delete horizon (KIP-534: the
first cleaning that keeps a tombstone stamps ``now + delete.retention.ms`` into the
batch's base timestamp and sets attribute bit 6); the batch's codec, timestamp type,
leader epoch, producer id/epoch/base sequence and offset range (offsets never change,
gaps are fine); records of aborted transactions are dropped; a transaction marker stays
until no batch of its transaction is left and then until its own delete horizon; a batch
that would become empty but is the last of an active producer is kept as an empty batch
so the producer's sequence state survives. Batches left whole are copied byte for byte.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pybroker.protocol.errors import CorruptRecordError
from pybroker.protocol.records import (
    CONTROL_ABORT,
    CONTROL_COMMIT,
    HEADER_SIZE,
    BatchHeader,
    NewRecord,
    Record,
    batch_crc,
    build_batch,
    build_empty_batch,
    decode_records,
    iter_batches,
    read_header,
)
from pybroker.storage.checkpoints import (
    TopicPartition,
    read_offset_checkpoint,
    write_offset_checkpoint,
)
from pybroker.storage.errors import CorruptCheckpointError
from pybroker.storage.fileio import fsync_dir
from pybroker.storage.segment import INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX, segment_name

if TYPE_CHECKING:
    from pybroker.storage.log import Log
    from pybroker.storage.segment import LogSegment

log = logging.getLogger(__name__)

CLEANER_CHECKPOINT = "cleaner-offset-checkpoint"
CLEANED_SUFFIX = ".cleaned"
SWAP_SUFFIX = ".swap"
INT32_MAX = 0x7FFFFFFF
LONG_MAX = 2**63 - 1

_READ_CHUNK = 1024 * 1024
_WRITE_CHUNK = 1024 * 1024
_OFFSET_ENTRY = struct.Struct(">ii")
_TIME_ENTRY = struct.Struct(">qi")
_CONTROL_KEY = struct.Struct(">hh")
# A Python dict entry (key bytes object, int, slot) costs about this much: the dedupe
# buffer bounds the offset map by memory as Kafka's does (Kafka: 24 bytes a slot).
_MAP_ENTRY_BYTES = 100


class CleanerStopped(Exception):
    """The broker is shutting down: the cleaning in progress is abandoned."""


class CleaningAborted(Exception):
    """The log changed or disappeared under the cleaner; this cleaning is dropped."""


# -- reading segment files on the cleaner's own descriptors ---------------------------


def iter_file_batches(
    path: Path | str, size: int | None = None, chunk: int = _READ_CHUNK
) -> Iterator[tuple[bytes, int, BatchHeader]]:
    """``(buffer, position in buffer, header)`` of each complete batch of a log file.

    Reads with its own descriptor (never the segment's, which the loop may evict), in
    ``chunk``-sized windows; a batch larger than a window is read alone. Stops at a torn
    tail; raises CorruptRecordError where no v2 batch can start.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        end = os.fstat(fd).st_size if size is None else size
        pos = 0
        while end - pos >= HEADER_SIZE:
            window = os.pread(fd, min(chunk, end - pos), pos)
            if len(window) < HEADER_SIZE:
                return
            used = 0
            for off, header in iter_batches(window):
                yield window, off, header
                used = off + header.size
            if used == 0:  # a valid header, but the batch is longer than the window
                header = read_header(window)
                if header.size <= len(window) or pos + header.size > end:
                    return
                big = os.pread(fd, header.size, pos)
                if len(big) < header.size:
                    return
                for off, h in iter_batches(big):
                    yield big, off, h
                used = header.size
            pos += used
    finally:
        os.close(fd)


def control_type(buf: bytes | memoryview, pos: int, header: BatchHeader) -> int | None:
    """COMMIT (1) or ABORT (0) of a control batch; None when it holds no record."""
    if header.records_count <= 0:
        return None
    records = decode_records(buf, pos)
    key = records[0].key if records else None
    if key is None or len(key) < 4:
        return -1
    return _CONTROL_KEY.unpack_from(key)[1]


# -- crash recovery of an interrupted swap ---------------------------------------------


def _next_offset_of(path: Path) -> int | None:
    """Offset after the last complete batch of a log file (None if it holds none)."""
    nxt = None
    try:
        for _, _, header in iter_file_batches(path):
            nxt = header.last_offset + 1
    except CorruptRecordError as e:
        log.warning("%s: %s", path, e)
    return nxt


def complete_swaps(dir: Path) -> int:
    """Finish (or drop) replacements a crash interrupted, before a log dir is loaded.

    ``<base>.log.swap`` means a cleaned segment was complete and fsynced: the segments it
    replaces (every one whose base offset lies in its offset range) are deleted and the
    swap files take the segment names (an index file without its swap is rebuilt later).
    Index ``.swap`` files without a log swap belong to a swap that never committed.
    Returns the number of segments swapped in.
    """
    names = os.listdir(dir)
    swaps = [n for n in names if n.endswith(SWAP_SUFFIX)]
    if not swaps:
        return 0
    log_swaps = {}
    for name in swaps:
        stem = name.partition(".")[0]
        if name == stem + LOG_SUFFIX + SWAP_SUFFIX and stem.isdigit():
            log_swaps[int(stem)] = dir / name
    for name in swaps:
        stem = name.partition(".")[0]
        if not (stem.isdigit() and int(stem) in log_swaps):
            log.info("Deleting %s of a swap that never completed", dir / name)
            with contextlib.suppress(OSError):
                os.unlink(dir / name)
    done = 0
    for base, swap in sorted(log_swaps.items()):
        nxt = _next_offset_of(swap)
        upper = max(nxt if nxt is not None else base, base + 1)
        for name in os.listdir(dir):
            stem, _, suffix = name.partition(".")
            if not stem.isdigit() or "." + suffix not in (
                LOG_SUFFIX,
                INDEX_SUFFIX,
                TIME_INDEX_SUFFIX,
            ):
                continue
            if base <= int(stem) < upper:
                log.info("Deleting %s, replaced by %s", dir / name, swap.name)
                os.unlink(dir / name)
        name = segment_name(base)
        for suffix in (INDEX_SUFFIX, TIME_INDEX_SUFFIX, LOG_SUFFIX):
            src = dir / (name + suffix + SWAP_SUFFIX)
            if src.exists():
                os.rename(src, dir / (name + suffix))
        log.warning("Completed the interrupted swap of cleaned segment %s", swap)
        done += 1
    with contextlib.suppress(OSError):
        fsync_dir(dir)
    return done


# -- transactions and producers, from the batch headers --------------------------------


@dataclass(slots=True)
class _ProducerScan:
    """What one pass over every batch header of a log tells the cleaner."""

    # (first offset, producer id, marker offset) of each aborted transaction, by first offset
    aborted: list[tuple[int, int, int]] = field(default_factory=list)
    # producer id -> (last offset of its last data batch or None, latest epoch)
    last_records: dict[int, tuple[int | None, int]] = field(default_factory=dict)
    first_unstable_offset: int | None = None


class _TxnTracker:
    """Kafka's CleanedTransactionMetadata: which batches belong to aborted transactions
    and which markers no longer guard any batch (so may go after their horizon)."""

    def __init__(self, aborted: list[tuple[int, int, int]]) -> None:
        self._aborted = aborted
        self._next = 0
        self._ongoing_committed: set[int] = set()
        self._ongoing_aborted: dict[int, list[int | None]] = {}

    def _consume_up_to(self, offset: int) -> None:
        aborted = self._aborted
        while self._next < len(aborted) and aborted[self._next][0] <= offset:
            _, pid, _ = aborted[self._next]
            self._ongoing_aborted.setdefault(pid, [None])
            self._next += 1

    def on_control(self, header: BatchHeader, ctype: int | None) -> bool:
        """A marker: True when it may be discarded (its transaction left no batch)."""
        self._consume_up_to(header.last_offset)
        if ctype is None:
            return True  # an empty control batch was cleaned before
        pid = header.producer_id
        if ctype == CONTROL_ABORT:
            meta = self._ongoing_aborted.pop(pid, None)
            return not (meta is not None and meta[0] is not None)
        if ctype == CONTROL_COMMIT:
            if pid in self._ongoing_committed:
                self._ongoing_committed.discard(pid)
                return False
            return True
        return False

    def on_batch(self, header: BatchHeader) -> bool:
        """A data batch: True when it belongs to an aborted transaction."""
        self._consume_up_to(header.last_offset)
        if header.is_transactional:
            meta = self._ongoing_aborted.get(header.producer_id)
            if meta is not None:
                meta[0] = header.last_offset
                return True
            self._ongoing_committed.add(header.producer_id)
        return False


# -- the plan and its result -----------------------------------------------------------


@dataclass(slots=True)
class SegmentSnapshot:
    """One segment as the loop saw it when planning."""

    segment: LogSegment
    base: int
    path: Path
    size: int
    next_base: int  # the next segment's base (the log end offset for the active one)


@dataclass(slots=True)
class CleanedGroup:
    """A cleaned segment waiting as ``.swap`` files to replace ``old``."""

    old: list[LogSegment]
    base: int
    size: int
    read_bytes: int
    written_bytes: int


@dataclass
class CleaningTask:
    log: Log
    tp: TopicPartition
    dir: Path
    generation: int
    now: int
    first_dirty: int
    end: int  # first uncleanable offset (a segment base)
    segments: list[SegmentSnapshot]  # every segment, active last
    segment_bytes: int
    max_index_size: int
    index_interval_bytes: int
    delete_retention_ms: int
    ratio: float
    # Filled in by prepare() on the cleaner thread:
    offset_map: dict[bytes, int] = field(default_factory=dict)
    latest_mapped: int = -1
    scan: _ProducerScan = field(default_factory=_ProducerScan)
    groups: list[list[SegmentSnapshot]] = field(default_factory=list)
    txn: _TxnTracker | None = None
    min_horizon: int | None = None  # earliest delete horizon of a retained tombstone/marker
    records_removed: int = 0
    committed: int = 0
    started: float = field(default_factory=time.monotonic)


# -- the cleaner -----------------------------------------------------------------------


class LogCleaner:
    """Plans, performs (off the loop) and commits (on the loop) the cleaning of logs."""

    def __init__(
        self,
        *,
        dedupe_buffer_size: int = 134_217_728,
        io_buffer_load_factor: float = 0.9,
        io_max_bytes_per_second: float = math.inf,
        producer_id_expiration_ms: int = 86_400_000,
        now_ms: Callable[[], int] | None = None,
    ) -> None:
        budget = int(dedupe_buffer_size * io_buffer_load_factor)
        self.max_map_entries = max(budget // _MAP_ENTRY_BYTES, 1)
        self.io_max_bytes_per_second = io_max_bytes_per_second
        self.producer_id_expiration_ms = producer_id_expiration_ms
        self._now = now_ms or (lambda: time.time_ns() // 1_000_000)
        self._lock = threading.Lock()
        self._offsets: dict[TopicPartition, int] = {}
        self._dir_of: dict[TopicPartition, Path] = {}
        self._horizons: dict[TopicPartition, int] = {}
        self._uncleanable: set[TopicPartition] = set()
        # Logs a plan chose but prepare found nothing to clean in (an open transaction):
        # skipped until their log end offset moves, so they do not starve the others.
        self._idle: dict[TopicPartition, int] = {}
        self._stop = threading.Event()
        self._throttle_start = time.monotonic()
        self._throttle_bytes = 0
        self.cleanings = 0

    # -- checkpoints -------------------------------------------------------------------

    def load_checkpoints(self, log_dirs: Iterable[Path]) -> None:
        """Read ``cleaner-offset-checkpoint`` of every dir (a garbled one is ignored)."""
        for d in log_dirs:
            path = Path(d) / CLEANER_CHECKPOINT
            try:
                offsets = read_offset_checkpoint(path)
            except (CorruptCheckpointError, OSError) as e:
                log.warning("Ignoring corrupt cleaner checkpoint %s: %s", path, e)
                continue
            with self._lock:
                for tp, offset in offsets.items():
                    self._offsets[tp] = offset
                    self._dir_of[tp] = Path(d)

    def checkpointed_offset(self, tp: TopicPartition) -> int | None:
        with self._lock:
            return self._offsets.get(tp)

    def write_checkpoint(self, dir: Path) -> None:
        """Write the first dirty offsets of the logs in ``dir`` (atomic; thread-safe)."""
        with self._lock:
            entries = {tp: o for tp, o in self._offsets.items() if self._dir_of.get(tp) == dir}
        try:
            write_offset_checkpoint(dir / CLEANER_CHECKPOINT, entries)
        except OSError as e:
            log.error("Failed to write %s: %s", dir / CLEANER_CHECKPOINT, e)

    # -- stopping ----------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise CleanerStopped("the log cleaner is shutting down")

    def _throttle(self, nbytes: int) -> None:
        """log.cleaner.io.max.bytes.per.second (read + write), as Kafka's Throttler."""
        rate = self.io_max_bytes_per_second
        if not math.isfinite(rate) or rate <= 0:
            return
        self._throttle_bytes += nbytes
        elapsed = time.monotonic() - self._throttle_start
        if elapsed > 1.0:
            self._throttle_start, self._throttle_bytes = time.monotonic(), 0
            return
        wait = self._throttle_bytes / rate - elapsed
        if wait > 0.001:
            self._stop.wait(wait)

    # -- step 1: plan (event loop) -----------------------------------------------------

    def plan(self, logs: Iterable[Log], now: int | None = None) -> CleaningTask | None:
        """The dirtiest compacted log that should be cleaned now, as a snapshot."""
        now = self._now() if now is None else now
        best: tuple[float, Log, int, int] | None = None
        live: set[TopicPartition] = set()
        for lg in logs:
            tp = (lg.topic, lg.partition)
            live.add(tp)
            if lg.closed or not lg.config.compact or tp in self._uncleanable:
                continue
            if self._idle.get(tp) == lg.log_end_offset:
                continue
            try:
                found = self._cleanable_range(lg, tp, now)
            except Exception:
                log.exception("Cannot compute the cleanable range of %s", lg.dir.name)
                continue
            if found is not None and (best is None or found[0] > best[0]):
                best = (found[0], lg, found[1], found[2])
        with self._lock:
            for tp in [tp for tp in self._offsets if tp not in live]:
                del self._offsets[tp]
            for tp in [tp for tp in self._horizons if tp not in live]:
                del self._horizons[tp]
        for tp in [tp for tp in self._idle if tp not in live]:
            del self._idle[tp]
        if best is None:
            return None
        ratio, lg, first_dirty, end = best
        segments = lg.segments
        snaps = []
        for i, seg in enumerate(segments):
            nxt = segments[i + 1].base_offset if i + 1 < len(segments) else lg.log_end_offset
            snaps.append(SegmentSnapshot(seg, seg.base_offset, seg.log_path, seg.size, nxt))
        config = lg.config
        return CleaningTask(
            log=lg,
            tp=(lg.topic, lg.partition),
            dir=lg.dir.parent,
            generation=lg.generation,
            now=now,
            first_dirty=first_dirty,
            end=end,
            segments=snaps,
            segment_bytes=config.segment_bytes,
            max_index_size=config.segment_index_bytes,
            index_interval_bytes=config.index_interval_bytes,
            delete_retention_ms=config.delete_retention_ms,
            ratio=ratio,
        )

    def _cleanable_range(
        self, lg: Log, tp: TopicPartition, now: int
    ) -> tuple[float, int, int] | None:
        """(ratio, first dirty offset, end) if ``lg`` should be cleaned now (Kafka's
        cleanableOffsets and grabFilthiestCompactedLog)."""
        segments = lg.segments
        if len(segments) < 2:
            return None
        start = lg.log_start_offset
        with self._lock:
            checkpoint = self._offsets.get(tp)
            self._dir_of[tp] = lg.dir.parent
        first_dirty = start if checkpoint is None else checkpoint
        if first_dirty < start:
            first_dirty = start
        elif first_dirty > lg.log_end_offset:
            log.warning(
                "Resetting first dirty offset of %s to the log start offset %d: the "
                "checkpointed offset %d is beyond the log end offset %d",
                lg.dir.name,
                start,
                first_dirty,
                lg.log_end_offset,
            )
            first_dirty = start
        active = segments[-1]
        uncleanable = min(active.base_offset, lg.high_watermark)
        unstable = lg.first_unstable_offset  # the earliest open transaction (the LSO)
        if unstable is not None:
            uncleanable = min(uncleanable, unstable)
        config = lg.config
        lag = max(config.min_compaction_lag_ms, 0)
        max_lag = max(int(config.get("max.compaction.lag.ms")), 0)
        earliest_dirty_ts = LONG_MAX
        for i, seg in enumerate(segments[:-1]):
            nxt = segments[i + 1].base_offset
            if nxt <= first_dirty:
                continue
            if lag > 0 and seg.base_offset < uncleanable and seg.largest_timestamp() > now - lag:
                uncleanable = min(uncleanable, max(seg.base_offset, first_dirty))
            first_ts = seg.rolling_timestamp()
            if first_ts > 0:
                earliest_dirty_ts = min(earliest_dirty_ts, first_ts)
        # Round down to the base of the segment holding the first uncleanable offset.
        end = segments[0].base_offset
        for seg in segments:
            if seg.base_offset <= uncleanable:
                end = seg.base_offset
        clean_bytes = sum(s.size for s in segments if s.base_offset < first_dirty)
        lo = min(first_dirty, end)
        cleanable_bytes = 0
        for i, seg in enumerate(segments):
            upper = segments[i + 1].base_offset if i + 1 < len(segments) else lg.log_end_offset
            if seg.base_offset < end and upper > lo:
                cleanable_bytes += seg.size
        total = clean_bytes + cleanable_bytes
        if total == 0 or end <= segments[0].base_offset:
            return None
        ratio = cleanable_bytes / total
        need_now = earliest_dirty_ts < now - max_lag if max_lag < now else False
        with self._lock:
            horizon = self._horizons.get(tp)
        horizon_due = horizon is not None and now >= horizon
        if (
            (need_now and cleanable_bytes > 0)
            or ratio > config.min_cleanable_dirty_ratio
            or horizon_due
        ):
            return ratio, first_dirty, end
        return None

    # -- step 2: prepare and clean groups (cleaner thread) -----------------------------

    def prepare(self, task: CleaningTask) -> bool:
        """Scan transactions, build the offset map and group the segments to rewrite.

        False when, after all, there is nothing to clean."""
        try:
            self._scan_producers(task)
            scan = task.scan
            if scan.first_unstable_offset is not None and scan.first_unstable_offset < task.end:
                end = task.segments[0].base
                for s in task.segments:
                    if s.base <= scan.first_unstable_offset:
                        end = s.base
                task.end = end
            if task.end <= task.segments[0].base:
                self._idle[task.tp] = task.segments[-1].next_base
                return False
            if task.first_dirty > task.end:
                task.first_dirty = task.end
            self._build_offset_map(task)
            task.groups = self._group_segments(task)
            task.txn = _TxnTracker(task.scan.aborted)
            return bool(task.groups)
        except (OSError, CorruptRecordError) as e:
            self._give_up(task, e)
            return False

    def _give_up(self, task: CleaningTask, error: Exception) -> None:
        if isinstance(error, FileNotFoundError):
            # Retention, DeleteRecords or a topic deletion took a segment away: try later.
            raise CleaningAborted(f"{task.log.dir.name}: {error}") from error
        log.error(
            "Cannot clean %s, marking it uncleanable until restart: %s", task.log.dir.name, error
        )
        self._uncleanable.add(task.tp)
        raise CleaningAborted(str(error)) from error

    def _batches(self, snap: SegmentSnapshot) -> Iterator[tuple[bytes, int, BatchHeader]]:
        for buf, pos, header in iter_file_batches(snap.path, snap.size):
            self._check_stop()
            yield buf, pos, header

    def _scan_producers(self, task: CleaningTask) -> None:
        """Aborted transactions, the first open one, and each producer's last batch."""
        scan = _ProducerScan()
        open_txns: dict[int, int] = {}
        last_data: dict[int, int] = {}
        epochs: dict[int, int] = {}
        last_ts: dict[int, int] = {}
        for snap in task.segments:
            for buf, pos, h in self._batches(snap):
                self._throttle(HEADER_SIZE)
                pid = h.producer_id
                if pid < 0:
                    continue
                epochs[pid] = h.producer_epoch
                last_ts[pid] = h.max_timestamp
                if h.is_control:
                    ctype = control_type(buf, pos, h)
                    first = open_txns.pop(pid, None)
                    if ctype == CONTROL_ABORT and first is not None:
                        scan.aborted.append((first, pid, h.last_offset))
                else:
                    last_data[pid] = h.last_offset
                    if h.is_transactional:
                        open_txns.setdefault(pid, h.base_offset)
        scan.aborted.sort()
        if open_txns:
            scan.first_unstable_offset = min(open_txns.values())
        expire_before = task.now - self.producer_id_expiration_ms
        for pid, epoch in epochs.items():
            if pid not in open_txns and last_ts.get(pid, -1) < expire_before:
                continue  # expired producer: its state need not survive
            scan.last_records[pid] = (last_data.get(pid), epoch)
        task.scan = scan

    def _build_offset_map(self, task: CleaningTask) -> None:
        """Key -> last offset over [first dirty, end) (Kafka's buildOffsetMap); stops
        early, at a batch boundary, when the dedupe buffer is full."""
        omap = task.offset_map
        cap = self.max_map_entries
        txn = _TxnTracker(task.scan.aborted)
        first, end = task.first_dirty, task.end
        latest = end - 1
        full = False
        for snap in task.segments:
            if snap.base >= end or full:
                break
            if snap.next_base <= first:
                continue
            for buf, pos, h in self._batches(snap):
                if h.base_offset >= end:
                    break
                if h.is_control:
                    txn.on_control(h, control_type(buf, pos, h))
                    continue
                if txn.on_batch(h) or h.last_offset < first:
                    continue
                records = decode_records(buf, pos)
                self._throttle(h.size)
                new_keys = sum(1 for r in records if r.key is not None and r.key not in omap)
                if len(omap) + new_keys > cap and omap:
                    latest = h.base_offset - 1
                    full = True
                    break
                for r in records:
                    if r.key is not None and r.offset >= first:
                        omap[r.key] = r.offset
        if full:
            if latest < first:
                raise CorruptRecordError("the dedupe buffer cannot hold a single batch")
            log.info(
                "Offset map of %s is full (%d keys): cleaning up to offset %d this time",
                task.log.dir.name,
                len(omap),
                latest,
            )
            task.end = latest + 1
        task.latest_mapped = latest

    def _group_segments(self, task: CleaningTask) -> list[list[SegmentSnapshot]]:
        """Kafka's groupSegmentsBySize over the segments below ``end``."""
        segs = [s for s in task.segments[:-1] if s.base < task.end]
        max_size = task.segment_bytes
        max_index = task.max_index_size

        def index_sizes(s: SegmentSnapshot) -> tuple[int, int]:
            name = s.path.name[: -len(LOG_SUFFIX)]
            sizes = []
            for suffix in (INDEX_SUFFIX, TIME_INDEX_SUFFIX):
                try:
                    sizes.append(os.stat(s.path.with_name(name + suffix)).st_size)
                except OSError:
                    sizes.append(0)
            return sizes[0], sizes[1]

        groups: list[list[SegmentSnapshot]] = []
        i = 0
        while i < len(segs):
            group = [segs[i]]
            log_size = segs[i].size
            index_size, time_size = index_sizes(segs[i])
            i += 1
            while i < len(segs):
                s = segs[i]
                oi, ti = index_sizes(s)
                if (
                    log_size + s.size <= max_size
                    and index_size + oi <= max_index
                    and time_size + ti <= max_index
                    and (s.size == 0 or s.next_base - 1 - group[0].base <= INT32_MAX)
                ):
                    group.append(s)
                    log_size += s.size
                    index_size += oi
                    time_size += ti
                    i += 1
                else:
                    break
            groups.append(group)
        return groups

    def build_group(self, task: CleaningTask, i: int) -> CleanedGroup:
        """Write group ``i`` as a cleaned segment, fsync it, rename it to ``.swap``."""
        group = task.groups[i]
        base = group[0].base
        name = segment_name(base)
        dir = task.log.dir
        finals = [dir / (name + s) for s in (LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX)]
        cleaned = [p.with_name(p.name + CLEANED_SUFFIX) for p in finals]
        writer = None
        try:
            last_mtime = os.stat(group[-1].path).st_mtime_ns
            writer = _SegmentWriter(cleaned, base, task.index_interval_bytes, task.max_index_size)
            read_bytes = 0
            for snap in group:
                for buf, pos, h in self._batches(snap):
                    read_bytes += h.size
                    self._throttle(h.size)
                    out = self._filter_batch(task, buf, pos, h)
                    if out is not None:
                        writer.append(out)
            size = writer.finish()
            os.utime(cleaned[0], ns=(last_mtime, last_mtime))
            writer = None
            self._check_stop()
            for src, dst in zip(cleaned[1:] + cleaned[:1], finals[1:] + finals[:1], strict=True):
                os.rename(src, dst.with_name(dst.name + SWAP_SUFFIX))
            fsync_dir(dir)
        except (OSError, CorruptRecordError, CleanerStopped) as e:
            if writer is not None:
                writer.close()
            for p in cleaned:
                with contextlib.suppress(OSError):
                    os.unlink(p)
            if isinstance(e, CleanerStopped):
                raise
            self._give_up(task, e)
            raise  # unreachable: _give_up raises
        return CleanedGroup([s.segment for s in group], base, size, read_bytes, size)

    def _filter_batch(
        self, task: CleaningTask, buf: bytes, pos: int, h: BatchHeader
    ) -> bytes | memoryview | None:
        """One batch through the cleaner's filter: the bytes to keep, or None."""
        txn = task.txn
        assert txn is not None
        now = task.now
        control = h.is_control
        if control:
            can_discard = txn.on_control(h, control_type(buf, pos, h))
            horizon = h.delete_horizon_ms
            discard_records = can_discard and horizon is not None and horizon <= now
        else:
            can_discard = txn.on_batch(h)
            discard_records = can_discard
        retain_empty = h.producer_id >= 0 and self._last_of_producer(task, h)
        if discard_records and not retain_empty:
            task.records_removed += h.records_count
            return None
        if batch_crc(buf, pos, h) != h.crc:
            raise CorruptRecordError(f"batch at offset {h.base_offset} fails its CRC")
        if discard_records:
            records: list[Record] = []
            retained: list[Record] = []
        else:
            records = decode_records(buf, pos)
            retained = records if control else [r for r in records if self._retain(task, h, r)]
        task.records_removed += h.records_count - len(retained)
        if retained:
            tombstones = not control and any(r.value is None for r in retained)
            marker_pending = control and can_discard
            need_horizon = (tombstones or marker_pending) and not h.has_delete_horizon
            horizon = now + task.delete_retention_ms if need_horizon else h.delete_horizon_ms
            if (tombstones or marker_pending) and horizon is not None:
                earliest = task.min_horizon
                task.min_horizon = horizon if earliest is None else min(earliest, horizon)
            if len(retained) == len(records) and not need_horizon:
                return memoryview(buf)[pos : pos + h.size]
            return build_batch(
                [NewRecord(r.key, r.value, r.headers, r.timestamp) for r in retained],
                base_offset=h.base_offset,
                compression=h.compression,
                producer_id=h.producer_id,
                producer_epoch=h.producer_epoch,
                base_sequence=h.base_sequence,
                transactional=h.is_transactional,
                partition_leader_epoch=h.partition_leader_epoch,
                timestamp_type=h.timestamp_type,
                offset_deltas=[r.offset - h.base_offset for r in retained],
                delete_horizon_ms=horizon,
                last_offset_delta=h.last_offset_delta,
                control=control,
            )
        if retain_empty:
            return build_empty_batch(
                base_offset=h.base_offset,
                last_offset_delta=h.last_offset_delta,
                timestamp=h.max_timestamp,
                producer_id=h.producer_id,
                producer_epoch=h.producer_epoch,
                base_sequence=h.base_sequence,
                transactional=h.is_transactional,
                control=control,
                partition_leader_epoch=h.partition_leader_epoch,
                timestamp_type=h.timestamp_type,
            )
        return None

    @staticmethod
    def _last_of_producer(task: CleaningTask, h: BatchHeader) -> bool:
        last = task.scan.last_records.get(h.producer_id)
        if last is None:
            return False
        last_data, epoch = last
        if last_data is not None:
            return h.last_offset == last_data
        return h.is_control and h.producer_epoch == epoch

    @staticmethod
    def _retain(task: CleaningTask, h: BatchHeader, r: Record) -> bool:
        """Kafka's shouldRetainRecord for a v2 batch."""
        if r.offset > task.latest_mapped:
            return True
        if r.key is None:
            return False
        if r.offset < task.offset_map.get(r.key, -1):
            return False
        if r.value is not None:
            return True
        horizon = h.delete_horizon_ms
        return horizon is None or task.now < horizon

    def discard_group(self, group: CleanedGroup, dir: Path) -> None:
        """Remove the swap files of a group that was not committed."""
        name = segment_name(group.base)
        for suffix in (LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX):
            for extra in (SWAP_SUFFIX, CLEANED_SUFFIX):
                with contextlib.suppress(OSError):
                    os.unlink(dir / (name + suffix + extra))

    # -- step 3: commit (event loop) and finish (thread) -------------------------------

    def commit_group(self, task: CleaningTask, group: CleanedGroup) -> bool:
        """Swap a cleaned segment into the log (event loop). False: the log changed, the
        group's files are removed and the cleaning should stop."""
        ok = task.log.replace_segments(group.old, group.base, group.size, task.generation)
        if not ok:
            log.info("Log %s changed while being cleaned; dropping the cleaning", task.log.dir.name)
            self.discard_group(group, task.log.dir)
            return False
        task.committed += 1
        return True

    def finish(self, task: CleaningTask) -> None:
        """After every group is swapped in: record the new first dirty offset and the
        earliest delete horizon, make the renames durable, write the checkpoint."""
        with contextlib.suppress(OSError):
            fsync_dir(task.log.dir)
        with self._lock:
            self._offsets[task.tp] = task.end
            self._dir_of[task.tp] = task.dir
            if task.min_horizon is None:
                self._horizons.pop(task.tp, None)
            else:
                self._horizons[task.tp] = task.min_horizon
        self.write_checkpoint(task.dir)
        self.cleanings += 1
        log.info(
            "Cleaned %s up to offset %d (dirty ratio %.2f): %d segment group(s), %d record(s) "
            "removed, %d key(s) mapped, in %.3f s",
            task.log.dir.name,
            task.end,
            task.ratio,
            task.committed,
            task.records_removed,
            len(task.offset_map),
            time.monotonic() - task.started,
        )

    # -- everything in the calling thread (tests, tools) -------------------------------

    def clean_once(self, logs: Iterable[Log], now: int | None = None) -> CleaningTask | None:
        """Plan, clean and commit one log synchronously; the task, or None if none was due."""
        task = self.plan(logs, now)
        if task is None:
            return None
        try:
            if not self.prepare(task):
                return None
            for i in range(len(task.groups)):
                if not self.commit_group(task, self.build_group(task, i)):
                    return None
        except CleaningAborted:
            return None
        self.finish(task)
        return task


class _SegmentWriter:
    """Writes a cleaned ``.log`` plus its indexes with the Log's own index rules."""

    def __init__(self, paths: list[Path], base: int, interval: int, max_index_size: int) -> None:
        self.paths = paths
        self.base = base
        self.interval = interval
        self.max_offset_entries = max_index_size // 8
        self.max_time_entries = max_index_size // 12
        self.fd = os.open(paths[0], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self.buf = bytearray()
        self.flushed = 0
        self.position = 0
        self.since_last = 0
        self.offset_entries = bytearray()
        self.time_entries = bytearray()
        self.n_offset = 0
        self.n_time = 0
        self.last_time_entry = (-1, base)
        self.max_ts = -1
        self.offset_of_max = -1

    def _time_append(self, ts: int, offset: int, skip_full_check: bool = False) -> None:
        limit = self.max_time_entries if skip_full_check else self.max_time_entries - 1
        last_ts, last_offset = self.last_time_entry
        if self.n_time >= limit or ts <= last_ts or (self.n_time and offset < last_offset):
            return
        self.time_entries += _TIME_ENTRY.pack(ts, offset - self.base)
        self.n_time += 1
        self.last_time_entry = (ts, offset)

    def append(self, data: bytes | memoryview) -> None:
        h = read_header(data)
        last = h.last_offset
        if h.max_timestamp > self.max_ts:
            self.max_ts, self.offset_of_max = h.max_timestamp, last
        if self.since_last > self.interval and self.n_offset < self.max_offset_entries:
            self.offset_entries += _OFFSET_ENTRY.pack(last - self.base, self.position)
            self.n_offset += 1
            self._time_append(self.max_ts, self.offset_of_max)
            self.since_last = 0
        self.buf += data
        size = len(data)
        self.position += size
        self.since_last += size
        if len(self.buf) >= _WRITE_CHUNK:
            self._flush()

    def _flush(self) -> None:
        view = memoryview(self.buf)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
        self.buf = bytearray()

    def finish(self) -> int:
        """Flush and fsync everything; returns the log size."""
        self._flush()
        os.fsync(self.fd)
        os.close(self.fd)
        self.fd = -1
        self._time_append(self.max_ts, self.offset_of_max, skip_full_check=True)
        indexes = ((self.paths[1], self.offset_entries), (self.paths[2], self.time_entries))
        for path, data in indexes:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
        return self.position

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1


__all__ = [
    "CLEANED_SUFFIX",
    "CLEANER_CHECKPOINT",
    "SWAP_SUFFIX",
    "CleanedGroup",
    "CleanerStopped",
    "CleaningAborted",
    "CleaningTask",
    "LogCleaner",
    "complete_swaps",
    "iter_file_batches",
]
