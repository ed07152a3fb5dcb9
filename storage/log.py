"""One partition's log: an ordered list of segments plus offsets and the epoch cache.

Threading: every method runs on the event loop except ``flush`` and
``remove_deleted_files``, which a worker thread may call while the loop appends. The
segment list is replaced, never mutated (copy-on-write), so a flush thread can take a
snapshot without a lock; a small lock guards the recovery point against truncations.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pybroker.config.topic_config import TopicConfig
from pybroker.protocol.compression import MAX_DECOMPRESSION_RATIO
from pybroker.protocol.errors import (
    CorruptRecordError,
    InvalidRecordError,
    InvalidTimestampError,
    KafkaStorageError,
    OffsetOutOfRangeError,
)
from pybroker.protocol.records import (
    LOG_OVERHEAD,
    decode_records,
    set_base_offset,
    set_log_append_time,
    set_partition_leader_epoch,
    validate_batches,
)
from pybroker.storage.checkpoints import (
    LEADER_EPOCH_CHECKPOINT,
    PARTITION_METADATA,
    read_partition_metadata,
    write_partition_metadata,
)
from pybroker.storage.cleaner import SWAP_SUFFIX, complete_swaps
from pybroker.storage.epoch_cache import UNDEFINED_EPOCH, LeaderEpochCache
from pybroker.storage.errors import (
    CorruptCheckpointError,
    CorruptIndexError,
    InconsistentTopicIdError,
    RecordBatchTooLargeError,
    UnexpectedAppendOffsetError,
)
from pybroker.storage.file_slice import FileSlice
from pybroker.storage.fileio import fsync_dir
from pybroker.storage.flush_stats import LOG_FLUSH_STATS
from pybroker.storage.handles import Handles, default_handles
from pybroker.storage.producer_state import (
    DEFAULT_PRODUCER_ID_EXPIRATION_MS,
    BatchMetadata,
    CompletedTxn,
    Origin,
    ProducerStateManager,
    read_control_marker,
)
from pybroker.storage.segment import (
    DELETED_SUFFIX,
    INDEX_SUFFIX,
    LOG_SUFFIX,
    TIME_INDEX_SUFFIX,
    BatchEntry,
    LogSegment,
    random_jitter,
)
from pybroker.storage.txn_index import TXN_INDEX_SUFFIX, AbortedTxn

log = logging.getLogger(__name__)

# ListOffsets special timestamps.
LATEST_TIMESTAMP = -1
EARLIEST_TIMESTAMP = -2
MAX_TIMESTAMP = -3
EARLIEST_LOCAL_TIMESTAMP = -4

ZERO_UUID = uuid.UUID(int=0)
_DIR_NAME = re.compile(r"^([a-zA-Z0-9._-]{1,249})-(\d+)$")  # Kafka's legal topic names
# A replica being moved between log dirs (KIP-113): ``<topic>-<p>.<uuid>-future``.
_FUTURE_SUFFIX = re.compile(r"\.[0-9a-f]{32}-future$")
# Files other storage modules (producer state, txn index, cleaner) keep in a log dir.
_KNOWN_SUFFIXES = (".snapshot", ".txnindex", ".swap")
_CLEANUP_SUFFIXES = (DELETED_SUFFIX, ".cleaned", ".tmp")


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def parse_log_dir_name(name: str) -> tuple[str, int] | None:
    """``<topic>-<partition>`` -> (topic, partition); None for anything else."""
    m = _DIR_NAME.match(name)
    if m is None or m.group(1) in (".", ".."):
        return None
    return m.group(1), int(m.group(2))


def log_dir_name(topic: str, partition: int) -> str:
    return f"{topic}-{partition}"


@dataclass(frozen=True, slots=True)
class AppendInfo:
    base_offset: int
    last_offset: int
    log_append_time: int
    log_start_offset: int
    max_timestamp: int
    offset_of_max_timestamp: int
    record_count: int
    duplicate: bool = False  # a retried idempotent batch: offsets are the original append's


@dataclass(frozen=True, slots=True)
class ReadInfo:
    slices: list[FileSlice]
    total_bytes: int
    log_start_offset: int
    log_end_offset: int
    high_watermark: int
    # read(collect_aborted=True): the aborted transactions overlapping the fetched batches
    aborted_transactions: list[AbortedTxn] | None = None


def _runs_within(entries: list[BatchEntry], limit: int) -> list[tuple[int, int, tuple[int, int]]]:
    """Consecutive batches grouped so that each group's bytes stay within ``limit`` (a
    batch larger than that alone is its own group): (first entry, end entry, (byte start,
    byte end)) per group."""
    runs = []
    start, pos, run_start = 0, 0, 0
    for i, (_, _, size) in enumerate(entries):
        if i > start and pos + size - run_start > limit:
            runs.append((start, i, (run_start, pos)))
            start, run_start = i, pos
        pos += size
    runs.append((start, len(entries), (run_start, pos)))
    return runs


class Log:
    """A partition's segments; offsets ``log_start_offset`` <= HW <= ``log_end_offset``."""

    def __init__(
        self,
        dir: Path,
        topic: str,
        partition: int,
        config: TopicConfig,
        topic_id: uuid.UUID,
        handles: Handles,
        now_ms: Callable[[], int],
        producer_id_expiration_ms: int = DEFAULT_PRODUCER_ID_EXPIRATION_MS,
    ) -> None:
        self.dir = dir
        self.topic = topic
        self.partition = partition
        self.config = config
        self.topic_id = topic_id
        self._handles = handles
        self._now = now_ms
        self._segments: list[LogSegment] = []
        self._bases: list[int] = []
        self.log_start_offset = 0
        self.log_end_offset = 0
        self._high_watermark = 0
        self.recovery_point = 0
        self.epoch_cache = LeaderEpochCache(dir / LEADER_EPOCH_CHECKPOINT)
        self.producer_state = ProducerStateManager(
            dir, f"{topic}-{partition}", producer_id_expiration_ms=producer_id_expiration_ms
        )
        self.producer_state.txn_listener = self._on_txn_completed
        self._txn_index_found: set[int] = set()  # segment bases with a .txnindex file
        self.last_flush_ms = now_ms()
        self._closed = False
        self._dir_dirty = False  # a segment file was created since the last flush
        self._generation = 0  # bumped by truncations so a racing flush cannot lie
        self._state_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._delete_lock = threading.Lock()
        self._pending_deletes: list[tuple[int, list[Path]]] = []

    def __repr__(self) -> str:
        return (
            f"Log({self.topic}-{self.partition}, start={self.log_start_offset}, "
            f"end={self.log_end_offset}, segments={len(self._segments)})"
        )

    # -- opening -----------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        dir: Path,
        config: TopicConfig,
        *,
        topic_id: uuid.UUID | None = None,
        recovery_point: int = 0,
        log_start_offset: int | None = None,
        high_watermark: int | None = None,
        clean_shutdown: bool = False,
        now_ms: Callable[[], int] = wall_ms,
        handles: Handles | None = None,
        producer_id_expiration_ms: int = DEFAULT_PRODUCER_ID_EXPIRATION_MS,
    ) -> Log:
        """Open (creating if needed) the log in ``dir`` (named ``<topic>-<partition>``).

        Unclean start: every batch from the recovery point's segment to the end is
        re-validated and the log truncated at the first bad one. Any index that is
        missing or fails its sanity check is rebuilt (lazily for old segments).
        """
        parsed = parse_log_dir_name(_FUTURE_SUFFIX.sub("", dir.name))
        if parsed is None:
            raise ValueError(f"{dir} is not named <topic>-<partition>")
        dir.mkdir(parents=True, exist_ok=True)
        stored = None
        meta = dir / PARTITION_METADATA
        try:
            stored = read_partition_metadata(meta)
        except (CorruptCheckpointError, OSError) as e:
            log.warning("Ignoring unreadable %s: %s", meta, e)
        if topic_id is None:
            topic_id = stored or ZERO_UUID
        elif stored is not None and stored != topic_id:
            raise InconsistentTopicIdError(
                f"Tried to assign topic ID {topic_id} to log for {dir.name}, "
                f"but log already contained topic ID {stored}"
            )
        if stored is None and topic_id != ZERO_UUID:
            write_partition_metadata(meta, topic_id)
        self = cls(
            dir,
            parsed[0],
            parsed[1],
            config,
            topic_id,
            handles or default_handles(),
            now_ms,
            producer_id_expiration_ms,
        )
        self._load(recovery_point, log_start_offset, high_watermark, clean_shutdown)
        return self

    def _scan_dir(self) -> list[int]:
        bases: set[int] = set()
        index_bases: dict[int, list[Path]] = {}
        for entry in os.scandir(self.dir):
            name = entry.name
            path = Path(entry.path)
            stem, _, suffix = name.partition(".")
            if name.endswith(_CLEANUP_SUFFIXES):
                log.info("Removing leftover file %s", path)
                with contextlib.suppress(OSError):
                    os.unlink(path)
            elif stem.isdigit() and stem.isascii() and entry.is_file():
                if "." + suffix == LOG_SUFFIX:
                    bases.add(int(stem))
                elif "." + suffix in (INDEX_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX):
                    index_bases.setdefault(int(stem), []).append(path)
                    if "." + suffix == TXN_INDEX_SUFFIX:
                        self._txn_index_found.add(int(stem))
                elif not name.endswith(_KNOWN_SUFFIXES):
                    log.warning("Ignoring stray file %s in log dir", path)
            elif name in (PARTITION_METADATA, LEADER_EPOCH_CHECKPOINT):
                pass
            else:
                log.warning(
                    "Ignoring stray %s %s in log dir", "file" if entry.is_file() else "entry", path
                )
        for base, paths in index_bases.items():
            if base not in bases:
                for path in paths:
                    log.warning("Deleting orphaned index file %s", path)
                    with contextlib.suppress(OSError):
                        os.unlink(path)
        return sorted(bases)

    def _load(
        self,
        recovery_point: int,
        log_start_offset: int | None,
        high_watermark: int | None,
        clean: bool,
    ) -> None:
        now = self._now()
        config = self.config
        if complete_swaps(self.dir):  # a crash interrupted the cleaner's swap
            clean = False
        bases = self._scan_dir()
        segments = [
            LogSegment.open_existing(
                self.dir,
                base,
                index_interval_bytes=config.index_interval_bytes,
                max_index_size=config.segment_index_bytes,
                handles=self._handles,
                active=i == len(bases) - 1,
                now_ms=now,
                roll_jitter_ms=self._jitter(),
            )
            for i, base in enumerate(bases)
        ]
        for seg, nxt in zip(segments, bases[1:], strict=False):
            seg.next_base = nxt
        # Segments whose .txnindex is rebuilt from the log (Kafka rebuilds it with every
        # segment it recovers): from this base on.
        rebuild_txn_from: int | None = None
        if not clean and segments:
            rebuild_txn_from = bases[max(bisect.bisect_right(bases, recovery_point) - 1, 0)]
            segments = self._recover(segments, recovery_point)
        elif segments:
            last = segments[-1]
            last.ensure_indexes()
            _, end = last.scan_tail()
            if end != last.size:
                log.warning("%s has a torn tail despite a clean shutdown", last.log_path)
                last.recover()
                rebuild_txn_from = last.base_offset
        start = log_start_offset if log_start_offset is not None else 0
        if not segments:
            segments = [self._new_segment(start, now)]
        self._set_segments(segments)
        active = segments[-1]
        if not active.active:
            active.make_active(config.segment_index_bytes)
        leo = active.read_next_offset()
        self.log_end_offset = leo
        self.log_start_offset = max(start, segments[0].base_offset)
        if self.log_start_offset > leo:
            log.warning(
                "%s: log start offset %d is beyond the log end %d, starting empty there",
                self.dir.name,
                self.log_start_offset,
                leo,
            )
            self.truncate_fully_and_start_at(self.log_start_offset)
        leo = self.log_end_offset
        self.recovery_point = leo if clean else min(recovery_point, leo)
        self.epoch_cache.truncate_from_end(self.log_end_offset)
        self.epoch_cache.truncate_from_start(self.log_start_offset)
        self.high_watermark = self.log_start_offset if high_watermark is None else high_watermark
        self._check_txn_indexes(rebuild_txn_from)
        self.producer_state.load(self._segments, self.log_start_offset, leo, clean, now)

    def _check_txn_indexes(self, rebuild_from: int | None) -> None:
        """Sanity-check the .txnindex files of the segments kept as they are; rebuild the
        ones of recovered segments (and any that fail the check) from the log, as Kafka
        does for every segment it recovers."""
        for seg in self._segments:
            base = seg.base_offset
            if rebuild_from is not None and base >= rebuild_from:
                break
            if base in self._txn_index_found:
                try:
                    seg.txn_index.sanity_check()
                except CorruptIndexError as e:
                    log.warning("Rebuilding transaction indexes of %s: %s", self.dir.name, e)
                    rebuild_from = base
                    break
        self._txn_index_found.clear()
        if rebuild_from is None:
            return
        segments = [seg for seg in self._segments if seg.base_offset >= rebuild_from]
        for seg in segments:
            seg.txn_index.reset()
        open_txns = self.producer_state.open_txns_at(self._segments, rebuild_from)
        end = self.log_end_offset
        for seg in segments:
            try:
                for pos, h in seg.iter_headers():
                    if h.base_offset >= end:
                        break
                    if not h.is_transactional:
                        continue
                    pid = h.producer_id
                    if not h.is_control:
                        open_txns.setdefault(pid, h.base_offset)
                        continue
                    first = open_txns.pop(pid, None)
                    marker = read_control_marker(os.pread(seg.file().fd, h.size, pos), 0)
                    if first is None or marker is None or marker.commit:
                        continue
                    lso = min(open_txns.values(), default=h.base_offset + 1)
                    seg.txn_index.append(
                        AbortedTxn(pid, first, h.base_offset, min(lso, h.base_offset + 1))
                    )
            except (CorruptRecordError, OSError) as e:
                log.warning("Cannot rebuild the transaction index of %s: %s", seg.log_path, e)

    def _recover(self, segments: list[LogSegment], recovery_point: int) -> list[LogSegment]:
        bases = [s.base_offset for s in segments]
        first = max(bisect.bisect_right(bases, recovery_point) - 1, 0)
        for i in range(first, len(segments)):
            seg = segments[i]
            truncated = seg.recover()
            if truncated and i + 1 < len(segments):
                for later in segments[i + 1 :]:
                    log.warning("Deleting %s after a truncated segment", later.log_path)
                    later.delete_files()
                seg.next_base = None
                return segments[: i + 1]
        return segments

    def _jitter(self) -> int:
        return random_jitter(int(self.config.get("segment.jitter.ms")), self.config.segment_ms)

    def _new_segment(self, base_offset: int, now: int) -> LogSegment:
        seg = LogSegment.create(
            self.dir,
            base_offset,
            index_interval_bytes=self.config.index_interval_bytes,
            max_index_size=self.config.segment_index_bytes,
            handles=self._handles,
            now_ms=now,
            roll_jitter_ms=self._jitter(),
        )
        self._dir_dirty = True
        return seg

    def _set_segments(self, segments: list[LogSegment]) -> None:
        self._segments = segments
        self._bases = [s.base_offset for s in segments]

    # -- properties --------------------------------------------------------------------

    @property
    def segments(self) -> list[LogSegment]:
        return list(self._segments)

    @property
    def active_segment(self) -> LogSegment:
        return self._segments[-1]

    @property
    def high_watermark(self) -> int:
        return self._high_watermark

    @high_watermark.setter
    def high_watermark(self, value: int) -> None:
        self._high_watermark = min(max(value, self.log_start_offset), self.log_end_offset)

    @property
    def generation(self) -> int:
        """Bumped by every truncation: the cleaner's commit checks it is unchanged."""
        return self._generation

    @property
    def latest_epoch(self) -> int:
        return self.epoch_cache.latest_epoch

    @property
    def first_unstable_offset(self) -> int | None:
        """The first offset of the earliest open transaction (at least the log start)."""
        first = self.producer_state.first_undecided_offset()
        return None if first is None else max(first, self.log_start_offset)

    @property
    def last_stable_offset(self) -> int:
        """Kafka's LSO: the first unstable offset if it is below the high watermark, else
        the high watermark. read_committed consumers never read at or beyond it."""
        first = self.first_unstable_offset
        hw = self._high_watermark
        return first if first is not None and first < hw else hw

    def size_bytes(self) -> int:
        return sum(s.size for s in self._segments)

    def assign_topic_id(self, topic_id: uuid.UUID) -> None:
        """Give a log opened without ``partition.metadata`` its topic id (and write it)."""
        if self.topic_id == topic_id:
            return
        if self.topic_id != ZERO_UUID:
            raise InconsistentTopicIdError(
                f"Tried to assign topic ID {topic_id} to log for {self.dir.name}, "
                f"but log already contained topic ID {self.topic_id}"
            )
        write_partition_metadata(self.dir / PARTITION_METADATA, topic_id)
        self.topic_id = topic_id

    def update_config(self, config: TopicConfig) -> None:
        """New topic config: applies to appends now, to index sizes at the next roll."""
        self.config = config
        self._segments[-1].index_interval_bytes = config.index_interval_bytes

    def _check_open(self) -> None:
        if self._closed:
            raise KafkaStorageError(f"log {self.dir.name} is closed or deleted")

    # -- appends -----------------------------------------------------------------------

    def append_as_leader(
        self,
        payload: bytearray | memoryview,
        leader_epoch: int,
        now_ms: int | None = None,
        *,
        client: bool = True,
        verified_txn: tuple[int, int] | None = None,
    ) -> AppendInfo:
        """Validate, assign offsets and epoch in place, write with one pwrite.

        ``client=False`` is for the broker's own appends (coordinators, markers): any
        number of batches, control batches allowed, no client-only checks.
        ``verified_txn`` (producer id, epoch): the transaction coordinator confirmed this
        partition is in that producer's transaction (KIP-890), so its first transactional
        batch may start the transaction here.
        """
        state = self.producer_state
        state.verified_txn = verified_txn
        try:
            return self._append_as_leader(payload, leader_epoch, now_ms, client)
        finally:
            state.verified_txn = None

    def _append_as_leader(
        self, payload: bytearray | memoryview, leader_epoch: int, now_ms: int | None, client: bool
    ) -> AppendInfo:
        self._check_open()
        config = self.config
        headers = validate_batches(payload, config.max_message_bytes, client=client)
        if not headers:
            raise InvalidRecordError("an append needs at least one record batch")
        now = self._now() if now_ms is None else now_ms
        append_time = config.log_append_time
        lo = now - config.timestamp_before_max_ms
        hi = now + config.timestamp_after_max_ms
        offset = first = self.log_end_offset
        pos = 0
        entries: list[BatchEntry] = []
        max_ts = -1
        offset_of_max = first
        count = 0
        for h in headers:
            if client and h.attributes & 0x08:
                raise InvalidTimestampError(
                    "Invalid timestamp type in record batch: producers must not set LogAppendTime"
                )
            if append_time:
                ts = now
            else:
                ts = h.max_timestamp
                bt = h.base_timestamp
                if (ts != -1 and not lo <= ts <= hi) or (bt != -1 and not lo <= bt <= hi):
                    raise self._timestamp_error(payload, pos, offset, lo, hi, ts, bt)
            last = offset + h.last_offset_delta
            set_base_offset(payload, pos, offset)
            set_partition_leader_epoch(payload, pos, leader_epoch)
            if append_time:
                set_log_append_time(payload, pos, now)
            if ts > max_ts:
                max_ts, offset_of_max = ts, last
            size = h.batch_length + LOG_OVERHEAD
            entries.append((last, ts, size))
            count += h.records_count
            offset = last + 1
            pos += size
        if config.compact and client:
            self._check_keys(payload, len(headers))
        pending = None
        if headers[0].producer_id >= 0 or not client:
            # Idempotence/transactions (Kafka's order: after record validation, before the
            # write). A retried batch already in the log is answered with its offsets.
            origin = Origin.CLIENT if client else Origin.COORDINATOR
            pending = self.producer_state.prepare_append(
                headers, payload, first, origin, now if append_time else None
            )
            if isinstance(pending, BatchMetadata):
                return AppendInfo(
                    pending.first_offset,
                    pending.last_offset,
                    pending.timestamp,
                    self.log_start_offset,
                    pending.timestamp,
                    pending.last_offset,
                    0,
                    duplicate=True,
                )
        self._write(payload, entries, first, offset - 1, max_ts, now)
        if pending is not None:
            self.producer_state.commit(pending)
        if leader_epoch >= 0 and leader_epoch > self.epoch_cache.latest_epoch:
            self.epoch_cache.assign(leader_epoch, first)
        return AppendInfo(
            first,
            offset - 1,
            now if append_time else -1,
            self.log_start_offset,
            max_ts,
            first if append_time else offset_of_max,
            count,
        )

    def _timestamp_error(
        self,
        payload: bytearray | memoryview,
        pos: int,
        offset: int,
        lo: int,
        hi: int,
        ts: int,
        bt: int,
    ) -> InvalidTimestampError:
        """Kafka's LogValidator: one record error per out-of-range record (its index in the
        batch and absolute offset), under one summary message (RecordValidationException)."""

        def message(stamp: int, at: int) -> str:
            return (
                f"Timestamp {stamp} of message with offset {at} is out of range. "
                f"The timestamp should be within [{lo}, {hi}]"
            )

        limit = MAX_DECOMPRESSION_RATIO * self.config.max_message_bytes
        try:
            records = decode_records(payload, pos, max_size=limit)
            # Kafka quotes the offset the producer gave the record (before assignment).
            errors = [
                (i, message(r.timestamp, r.offset))
                for i, r in enumerate(records)
                if not lo <= r.timestamp <= hi
            ]
        except CorruptRecordError:
            errors = []
        if not errors:
            errors = [(0, message(ts if ts != -1 and not lo <= ts <= hi else bt, 0))]
        err = InvalidTimestampError(
            "One or more records have been rejected due to invalid timestamp"
        )
        err.record_errors = errors  # type: ignore[attr-defined]
        return err

    def _check_keys(self, payload: bytearray | memoryview, batches: int) -> None:
        """Compacted topics reject records without a key (Kafka's INVALID_RECORD, one
        record error per keyless record, summarised as Kafka's processRecordErrors does)."""
        pos = 0
        limit = MAX_DECOMPRESSION_RATIO * self.config.max_message_bytes
        for _ in range(batches):
            records = decode_records(payload, pos, max_size=limit)
            errors = [
                (
                    i,
                    "Compacted topic cannot accept message without key in topic partition "
                    f"{self.topic}-{self.partition}",
                )
                for i, r in enumerate(records)
                if r.key is None
            ]
            if errors:
                shown = ", ".join(
                    f"RecordError(batchIndex={i}, message='{m}')" for i, m in errors[:3]
                )
                err = InvalidRecordError(
                    f"One or more records have been rejected due to {len(errors)} record errors "
                    f"in total, and only showing the first three errors at most: [{shown}]"
                )
                err.record_errors = errors  # type: ignore[attr-defined]
                raise err
            pos += int.from_bytes(payload[pos + 8 : pos + 12], "big", signed=True) + LOG_OVERHEAD

    def append_as_follower(self, payload: bytearray) -> AppendInfo:
        """Append batches whose offsets the leader assigned (replication)."""
        self._check_open()
        headers = validate_batches(payload, None, client=False)
        leo = self.log_end_offset
        if not headers:
            return AppendInfo(leo, leo - 1, -1, self.log_start_offset, -1, -1, 0)
        first = headers[0].base_offset
        if first < leo:
            raise UnexpectedAppendOffsetError(
                f"Unexpected offset in append to {self.topic}-{self.partition}. First offset "
                f"{first} is less than the next offset {leo}.",
                first,
                headers[-1].base_offset + headers[-1].last_offset_delta,
            )
        entries: list[BatchEntry] = []
        next_min = first
        max_ts, offset_of_max, count = -1, first, 0
        epochs: list[tuple[int, int]] = []
        latest_epoch = self.epoch_cache.latest_epoch
        for h in headers:
            last = h.base_offset + h.last_offset_delta
            if h.base_offset < next_min or h.last_offset_delta < 0:
                raise InvalidRecordError(
                    f"Out of order offsets in follower append to {self.topic}-{self.partition}: "
                    f"batch at {h.base_offset} after offset {next_min - 1}"
                )
            if h.max_timestamp > max_ts:
                max_ts, offset_of_max = h.max_timestamp, last
            if h.partition_leader_epoch > latest_epoch:
                latest_epoch = h.partition_leader_epoch
                epochs.append((latest_epoch, h.base_offset))
            entries.append((last, h.max_timestamp, h.batch_length + LOG_OVERHEAD))
            count += h.records_count
            next_min = last + 1
        now = self._now()
        if len(payload) <= self.config.segment_bytes:
            self._write(payload, entries, first, next_min - 1, max_ts, now)
        else:
            # A fetch may bring more bytes than one segment holds (a small segment.bytes):
            # write it in runs of whole batches that each fit a segment.
            for start, end, run in _runs_within(entries, self.config.segment_bytes):
                self._write(
                    payload[run[0] : run[1]],
                    entries[start:end],
                    headers[start].base_offset,
                    entries[end - 1][0],
                    max(e[1] for e in entries[start:end]),
                    now,
                )
        self.producer_state.apply_replicated(headers, payload)
        for epoch, start in epochs:
            self.epoch_cache.assign(epoch, start)
        return AppendInfo(
            first, next_min - 1, -1, self.log_start_offset, max_ts, offset_of_max, count
        )

    def _write(
        self,
        payload: bytearray | memoryview,
        entries: list[BatchEntry],
        first: int,
        last: int,
        max_ts: int,
        now: int,
    ) -> None:
        size = len(payload)
        config = self.config
        if size > config.segment_bytes:
            raise RecordBatchTooLargeError(
                f"Message batch size is {size} bytes in append to partition "
                f"{self.topic}-{self.partition} which exceeds the maximum configured "
                f"segment size of {config.segment_bytes}."
            )
        try:
            seg = self._segments[-1]
            if seg.should_roll(
                incoming_bytes=size,
                max_timestamp=max_ts,
                last_offset=last,
                now_ms=now,
                segment_bytes=config.segment_bytes,
                segment_ms=config.segment_ms,
            ):
                seg = self._roll(first, now)
            seg.append(payload, entries)
        except OSError as e:
            # The log dir failure channel logs the one ERROR line for the dir.
            log.warning("Error appending to %s: %s", self.dir, e)
            raise KafkaStorageError(
                f"Error while appending records to {self.topic}-{self.partition} in dir "
                f"{self.dir.parent}: {e}"
            ) from e
        self.log_end_offset = last + 1

    def roll(self, now_ms: int | None = None) -> LogSegment:
        """Force a new active segment at the log end offset."""
        self._check_open()
        return self._roll(self.log_end_offset, self._now() if now_ms is None else now_ms)

    def _roll(self, new_base: int, now: int) -> LogSegment:
        active = self._segments[-1]
        if active.size == 0 and active.base_offset == new_base:
            return active
        if new_base < active.base_offset:
            raise KafkaStorageError(
                f"Trying to roll a new segment at {new_base} below the active segment "
                f"{active.base_offset} of {self.dir.name}"
            )
        new = self._new_segment(new_base, now)
        active.on_become_inactive(new_base)
        self._set_segments([*self._segments, new])
        self.producer_state.take_snapshot(new_base, log_start_offset=self.log_start_offset)
        log.debug("Rolled new log segment at offset %d in %s", new_base, self.dir)
        return new

    # -- transactions ------------------------------------------------------------------

    def _on_txn_completed(self, txn: CompletedTxn, last_stable_offset: int) -> None:
        """A marker ended a transaction (append or replay): index it if it aborted.

        The entry goes to the segment holding the marker. A replay meets markers that
        are indexed already (the segment's last entry is at or after them): skipped.
        """
        if not txn.is_aborted:
            return
        i = bisect.bisect_right(self._bases, txn.last_offset) - 1
        if i < 0:
            return
        index = self._segments[i].txn_index
        last = index.last_offset
        if last is not None and last >= txn.last_offset:
            return
        try:
            index.append(
                AbortedTxn(txn.producer_id, txn.first_offset, txn.last_offset, last_stable_offset)
            )
        except OSError as e:
            log.error("Cannot write the transaction index of %s: %s", self.dir.name, e)
            raise KafkaStorageError(f"Error writing {index.path}: {e}") from e

    def collect_aborted_txns(self, start: int, upper_bound: int) -> list[AbortedTxn]:
        """Aborted transactions overlapping [start, upper_bound) (Kafka's
        collectAbortedTransactions), from the segment holding ``start`` onwards."""
        segments = self._segments
        i = max(bisect.bisect_right(self._bases, start) - 1, 0)
        found: list[AbortedTxn] = []
        for seg in segments[i:]:
            result = seg.txn_index.collect(start, upper_bound)
            found += result.aborted
            if result.complete:
                break
        return found

    def all_aborted_txns(self) -> list[AbortedTxn]:
        return [e for seg in self._segments for e in seg.txn_index.entries()]

    # -- reads -------------------------------------------------------------------------

    def read(
        self,
        offset: int,
        max_bytes: int,
        *,
        max_offset: int | None = None,
        min_one_batch: bool = True,
        collect_aborted: bool = False,
    ) -> ReadInfo:
        """Whole batches from the one holding ``offset``: at most ``max_bytes`` (but the
        first batch whole if ``min_one_batch``), none at or beyond ``max_offset``.

        ``collect_aborted`` (read_committed): also the aborted transactions overlapping
        the batches read, up to the offset after the last one (Kafka's fetch upper bound)."""
        self._check_open()
        start, leo = self.log_start_offset, self.log_end_offset
        if offset < start or offset > leo:
            raise OffsetOutOfRangeError(
                f"Received request for offset {offset} for partition "
                f"{self.topic}-{self.partition}, but we only have log segments in the range "
                f"{start} to {leo}."
            )
        limit = leo if max_offset is None else min(max_offset, leo)
        slices: list[FileSlice] = []
        total = 0
        requested = offset
        upper = offset  # the offset after the last batch read
        if offset < limit:
            segments, bases = self._segments, self._bases
            i = max(bisect.bisect_right(bases, offset) - 1, 0)
            n = len(segments)
            try:
                while i < n:
                    nxt = bases[i + 1] if i + 1 < n else None
                    bound = limit if limit < leo and (nxt is None or limit < nxt) else None
                    piece, more = segments[i].read(
                        offset, max_bytes - total, bound, min_one_batch and not slices
                    )
                    if piece is not None and piece.length:
                        slices.append(piece)
                        total += piece.length
                        if collect_aborted:
                            upper = self._offset_after(segments[i], piece, nxt)
                    if not more or nxt is None or nxt >= limit:
                        break
                    offset = nxt
                    i += 1
            except (OSError, CorruptRecordError) as e:
                log.error("Error reading %s at offset %d: %s", self.dir, offset, e)
                raise KafkaStorageError(f"Error reading {self.dir.name}: {e}") from e
        aborted = None
        if collect_aborted:
            aborted = self.collect_aborted_txns(requested, upper) if slices else []
        return ReadInfo(slices, total, start, leo, self._high_watermark, aborted)

    def _offset_after(self, seg: LogSegment, piece: FileSlice, next_base: int | None) -> int:
        """The offset of the batch after ``piece`` (the next segment's base, or the log
        end, when the piece reaches the end of ``seg``)."""
        end = piece.position + piece.length
        header = seg.header_at(end) if end < seg.size else None
        if header is not None:
            return header.base_offset
        return next_base if next_base is not None else self.log_end_offset

    def fetch_offset_for_timestamp(self, timestamp: int) -> tuple[int, int, int] | None:
        """ListOffsets: (offset, timestamp, leader epoch) of the first record with a
        timestamp >= ``timestamp`` (-1 for unknown fields); EARLIEST (-2), LATEST (-1),
        MAX_TIMESTAMP (-3) and EARLIEST_LOCAL (-4) as Kafka answers them."""
        self._check_open()
        cache = self.epoch_cache
        if timestamp in (EARLIEST_TIMESTAMP, EARLIEST_LOCAL_TIMESTAMP):
            earliest = cache.earliest
            epoch = earliest[0] if earliest and earliest[1] <= self.log_start_offset else -1
            return self.log_start_offset, -1, epoch
        if timestamp == LATEST_TIMESTAMP:
            return self.log_end_offset, -1, cache.latest_epoch
        segments = self._segments
        if timestamp == MAX_TIMESTAMP:
            best = None
            for seg in segments:
                if seg.size and (best is None or seg.max_timestamp() > best.max_timestamp()):
                    best = seg
            if best is None or best.max_timestamp() < 0:
                return None
            found = best.offset_of_max_timestamp_record()
            return None if found is None else (found[0], found[1], max(found[2], -1))
        if timestamp < 0:
            return None
        for seg in segments:
            if seg.size and seg.max_timestamp() >= timestamp:
                found = seg.find_offset_by_timestamp(timestamp, self.log_start_offset)
                if found is not None:
                    return found[0], found[1], max(found[2], -1)
        return None

    # -- leader epochs -----------------------------------------------------------------

    def assign_epoch_start_offset(self, epoch: int, start_offset: int | None = None) -> None:
        """A new leader epoch begins (at the log end by default)."""
        self.epoch_cache.assign(
            epoch, self.log_end_offset if start_offset is None else start_offset
        )

    def leader_epoch_for_offset(self, offset: int) -> int:
        return self.epoch_cache.epoch_for_offset(offset)

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        """OffsetForLeaderEpoch: (epoch, end offset), (-1, -1) if unknown."""
        return self.epoch_cache.end_offset_for(epoch, self.log_end_offset)

    # -- truncation and deletion -------------------------------------------------------

    def truncate_to(self, offset: int) -> None:
        """Drop everything at and after ``offset`` (follower truncation)."""
        self._check_open()
        if offset < 0:
            raise ValueError(f"cannot truncate to negative offset {offset}")
        if offset >= self.log_end_offset:
            return
        if offset < self._segments[0].base_offset:
            self.truncate_fully_and_start_at(offset)
            return
        now = self._now()
        i = bisect.bisect_right(self._bases, offset) - 1
        doomed = self._segments[i + 1 :]
        keep = self._segments[: i + 1]
        seg = keep[-1]
        with self._state_lock:
            self._generation += 1
            try:
                if doomed:
                    self._set_segments(keep)
                    self._schedule_delete(doomed, now)
                    if not seg.active:
                        seg.make_active(self.config.segment_index_bytes)
                _, cut_base = seg.truncate_to(offset, now)
            except OSError as e:
                raise KafkaStorageError(f"Error truncating {self.dir.name}: {e}") from e
            leo = offset if cut_base is None else min(offset, cut_base)
            self.log_end_offset = leo
            self.recovery_point = min(self.recovery_point, leo)
        self.log_start_offset = min(self.log_start_offset, leo)
        self.epoch_cache.truncate_from_end(leo)
        if self._high_watermark > leo:
            self._high_watermark = leo
        self.producer_state.truncate_and_rebuild(self._segments, self.log_start_offset, leo, now)

    def truncate_fully_and_start_at(self, offset: int) -> None:
        """Delete every segment; the log restarts empty at ``offset``."""
        self._check_open()
        now = self._now()
        with self._state_lock:
            self._generation += 1
            doomed = self._segments
            self._set_segments([])
            try:
                self._schedule_delete(doomed, now)
                self._set_segments([self._new_segment(offset, now)])
            except OSError as e:
                raise KafkaStorageError(f"Error truncating {self.dir.name}: {e}") from e
            self.log_end_offset = offset
            self.recovery_point = offset
        self.log_start_offset = offset
        self._high_watermark = offset
        self.epoch_cache.clear()
        self.producer_state.truncate_fully_and_start_at(offset)

    def replace_segments(
        self, old: list[LogSegment], new_base: int, new_size: int, generation: int
    ) -> bool:
        """Compaction (event loop): swap one cleaned segment in for the run ``old``.

        The cleaned files wait, fsynced, as ``<name>.swap``. The old segments go the way of
        retention (renamed ``.deleted``; a FileSlice being sent keeps its open file), then
        the swap files take the segment names. False, changing nothing, when the log is
        no longer what the cleaner read: closed, truncated, or ``old`` is not a run of
        inactive segments any more (retention or DeleteRecords took one).
        """
        segments = self._segments
        if self._closed or generation != self._generation or not old:
            return False
        i = next((k for k, seg in enumerate(segments) if seg is old[0]), -1)
        j = i + len(old)
        if i < 0 or j >= len(segments) or old[0].base_offset != new_base:
            return False
        if any(a is not b for a, b in zip(segments[i:j], old, strict=True)):
            return False
        now = self._now()
        config = self.config
        new = LogSegment(
            self.dir,
            new_base,
            index_interval_bytes=config.index_interval_bytes,
            max_index_size=config.segment_index_bytes,
            handles=self._handles,
            active=False,
            size=new_size,
            created_ms=now,
        )
        new.next_base = segments[j].base_offset
        # The aborted-transaction entries of the replaced segments move to the new one
        # (Kafka rebuilds the cleaned segment's .txnindex the same way).
        aborted = [e for seg in old for e in seg.txn_index.entries()]
        self._set_segments([*segments[:i], new, *segments[j:]])
        try:
            self._schedule_delete(old, now)
            new.take_files_from(SWAP_SUFFIX)
            new.txn_index.write_all(aborted)
        except OSError as e:
            raise KafkaStorageError(
                f"Error swapping cleaned segments of {self.dir.name}: {e}"
            ) from e
        self._dir_dirty = True
        return True

    def delete_records_before(self, offset: int) -> int:
        """DeleteRecords: move the log start offset up (-1 means the high watermark).

        Returns the new log start offset (the low watermark)."""
        self._check_open()
        if offset == -1:
            offset = self._high_watermark
        if offset > self._high_watermark or offset < 0:
            raise OffsetOutOfRangeError(
                f"Cannot increment the log start offset to {offset} of partition "
                f"{self.topic}-{self.partition} since it is larger than the high watermark "
                f"{self._high_watermark}"
            )
        if offset > self.log_start_offset:
            self.log_start_offset = offset
            self.epoch_cache.truncate_from_start(offset)
            self._delete_segments(self._start_offset_breached, self._now(), "log start offset")
        return self.log_start_offset

    def _start_offset_breached(self, seg: LogSegment, nxt: LogSegment | None) -> bool:
        return nxt is not None and nxt.base_offset <= self.log_start_offset

    def delete_old_segments(self, now_ms: int) -> int:
        """Retention: delete segments past retention.ms / retention.bytes or below the log
        start offset. Returns how many segments were deleted."""
        self._check_open()
        deleted = self._delete_segments(self._start_offset_breached, now_ms, "log start offset")
        config = self.config
        if "delete" not in config.cleanup_policy:
            return deleted
        if config.retention_bytes >= 0:
            excess = self.size_bytes() - config.retention_bytes

            def size_breached(seg: LogSegment, nxt: LogSegment | None) -> bool:
                nonlocal excess
                if excess - seg.size >= 0:
                    excess -= seg.size
                    return True
                return False

            deleted += self._delete_segments(size_breached, now_ms, "retention.bytes")
        if config.retention_ms >= 0:
            retention_ms = config.retention_ms

            def time_breached(seg: LogSegment, nxt: LogSegment | None) -> bool:
                return now_ms - seg.largest_timestamp() > retention_ms

            deleted += self._delete_segments(time_breached, now_ms, "retention.ms")
        return deleted

    def _delete_segments(
        self,
        predicate: Callable[[LogSegment, LogSegment | None], bool],
        now: int,
        reason: str,
    ) -> int:
        """Kafka's deleteOldSegments: a prefix of segments wholly below the HW."""
        segments = self._segments
        deletable: list[LogSegment] = []
        for i, seg in enumerate(segments):
            nxt = segments[i + 1] if i + 1 < len(segments) else None
            upper = nxt.base_offset if nxt is not None else self.log_end_offset
            if nxt is None and seg.size == 0:
                break
            if self._high_watermark >= upper and predicate(seg, nxt):
                deletable.append(seg)
            else:
                break
        if not deletable:
            return 0
        try:
            if len(deletable) == len(segments):
                self._roll(self.log_end_offset, now)
            remaining = self._segments[len(deletable) :]
            self._set_segments(remaining)
            self._schedule_delete(deletable, now)
        except OSError as e:
            raise KafkaStorageError(f"Error deleting segments of {self.dir.name}: {e}") from e
        log.info(
            "Deleting %d segment(s) of %s (%s): %s",
            len(deletable),
            self.dir.name,
            reason,
            ", ".join(str(s.base_offset) for s in deletable),
        )
        new_start = remaining[0].base_offset
        if new_start > self.log_start_offset:
            self.log_start_offset = new_start
            self.epoch_cache.truncate_from_start(new_start)
            if self._high_watermark < new_start:
                self._high_watermark = new_start
        return len(deletable)

    def _schedule_delete(self, segments: list[LogSegment], now: int) -> None:
        """Rename to ``.deleted`` now; remove after file.delete.delay.ms."""
        delay = self.config.file_delete_delay_ms
        for seg in segments:
            if delay <= 0:
                seg.delete_files()
                continue
            paths = seg.rename_deleted()
            with self._delete_lock:
                self._pending_deletes.append((now + delay, paths))

    def remove_deleted_files(self, now_ms: int) -> int:
        """Scheduler hook: unlink ``.deleted`` files past their delay. Thread-safe."""
        with self._delete_lock:
            due = [p for deadline, p in self._pending_deletes if deadline <= now_ms]
            self._pending_deletes = [e for e in self._pending_deletes if e[0] > now_ms]
        removed = 0
        for paths in due:
            for path in paths:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                    removed += 1
        return removed

    # -- durability --------------------------------------------------------------------

    def flush(self, up_to: int | None = None) -> None:
        """fsync segments holding offsets below ``up_to`` (default: everything) and move
        the recovery point there. Safe to call from a worker thread."""
        with self._flush_lock:
            with self._state_lock:
                leo = self.log_end_offset
                end = leo if up_to is None else min(up_to, leo)
                rp = self.recovery_point
                generation = self._generation
                segments = self._segments
                dir_dirty, self._dir_dirty = self._dir_dirty, False
            if end > rp:
                started = time.perf_counter()
                for i, seg in enumerate(segments):
                    upper = segments[i + 1].base_offset if i + 1 < len(segments) else None
                    if (upper is None or upper > rp) and seg.base_offset < end:
                        seg.fsync()
                LOG_FLUSH_STATS.observe((time.perf_counter() - started) * 1000)
            if dir_dirty:
                with contextlib.suppress(FileNotFoundError):
                    fsync_dir(self.dir)
            self.epoch_cache.flush_if_dirty()
            self.producer_state.flush_snapshots()
            with self._state_lock:
                if self._generation == generation and end > self.recovery_point:
                    self.recovery_point = end
            self.last_flush_ms = self._now()

    def needs_flush(self, now_ms: int) -> bool:
        """flush.messages / flush.ms policy (Kafka's defaults never flush: replication
        and the page cache are the durability story)."""
        unflushed = self.log_end_offset - self.recovery_point
        if unflushed <= 0:
            return False
        config = self.config
        return unflushed >= config.flush_messages or now_ms - self.last_flush_ms >= config.flush_ms

    # -- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        """Trim the indexes and close every file (shutdown)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.producer_state.take_snapshot(self.log_end_offset, sync=True)
        except OSError as e:
            log.warning("Could not write the producer snapshot of %s: %s", self.dir.name, e)
        for seg in self._segments:
            try:
                seg.close()
            except OSError as e:
                log.warning("Error closing %s: %s", seg.log_path, e)

    def delete(self) -> None:
        """Delete the whole log: rename the dir Kafka-style, then remove it."""
        self._closed = True
        for seg in self._segments:
            seg.drop_handles()
        target = self.dir.with_name(f"{self.dir.name}.{uuid.uuid4().hex}-delete")
        try:
            os.rename(self.dir, target)
        except OSError as e:
            log.warning("Could not rename %s for deletion: %s", self.dir, e)
            target = self.dir
        shutil.rmtree(target, ignore_errors=True)
        with self._delete_lock:
            self._pending_deletes.clear()

    @property
    def closed(self) -> bool:
        return self._closed


__all__ = [
    "AppendInfo",
    "EARLIEST_LOCAL_TIMESTAMP",
    "EARLIEST_TIMESTAMP",
    "LATEST_TIMESTAMP",
    "Log",
    "MAX_TIMESTAMP",
    "ReadInfo",
    "UNDEFINED_EPOCH",
    "log_dir_name",
    "parse_log_dir_name",
    "wall_ms",
]
