"""Per-partition producer state: Kafka's ProducerStateManager, ProducerAppendInfo and snapshots.

For every producer id that wrote to the partition we keep its epoch, the metadata of its
last five batches (first/last sequence, first/last offset, timestamp), the coordinator
epoch of its last transaction marker and the first offset of its open transaction. The
leader checks each client batch against that state before anything is written
(``prepare_append``) and applies it after the write (``commit``). Rules, from Kafka 4's
``UnifiedLog.analyzeAndValidateProducerState`` and ``ProducerAppendInfo``:

- A client batch whose epoch and exact sequence range equal one of the last five batches
  of its producer is a duplicate: nothing is written and the original offsets are
  answered (``BatchMetadata``), with NONE.
- A transactional batch (client or coordinator origin) needs an ongoing transaction of
  that producer and epoch; otherwise an older epoch is INVALID_PRODUCER_EPOCH and
  anything else INVALID_TXN_STATE ("not part of an ongoing transaction": there is no
  transaction coordinator yet, so no write is ever verified).
- An epoch older than the producer's is INVALID_PRODUCER_EPOCH (client, coordinator).
- Client sequences: a new (bumped) epoch must start at 0 unless the producer's epoch is
  unknown; within an epoch the first sequence must follow the last one (int32 wrap to 0);
  a producer with no known epoch (new, expired, or only a cleaned-away history) may
  start at any sequence (KIP-360: Kafka 2.5+ never answers UNKNOWN_PRODUCER_ID for this).
  Anything else is OUT_OF_ORDER_SEQUENCE_NUMBER.
- A non-transactional batch while the producer has an open transaction: INVALID_TXN_STATE.
- Transaction markers (control batches): an older epoch is INVALID_PRODUCER_EPOCH, an
  older coordinator epoch TRANSACTION_COORDINATOR_FENCED; the marker closes the
  transaction and may bump the epoch (which drops the cached batches).
- Replicated (follower) and rebuilt-from-log batches are applied without any check.

Snapshots ``<20-digit offset>.snapshot`` hold the state of every offset below that one.
The file is Kafka's producer snapshot format, version 1, big-endian::

    version int16 (1) | crc uint32 (CRC-32C of everything after it) | count int32 |
    count x (producer_id int64, epoch int16, last_sequence int32, last_offset int64,
             offset_delta int32, timestamp int64, coordinator_epoch int32,
             current_txn_first_offset int64)

Kafka writes one entry per producer (its last batch). We write one entry per cached batch,
oldest first, all with the producer's epoch, coordinator epoch and open-transaction
offset; the last one carries the producer's last timestamp. Kafka's reader keeps the last
entry of each producer, which is exactly what Kafka would have written; ours rebuilds all
five batches, so a retry of any in-flight batch is still recognised after a restart. A
producer without cached batches is one entry with last_offset -1.

Snapshots are taken at each segment roll (named after the new segment's base offset,
fsynced later by the log flush), at clean shutdown (at the log end, fsynced), and after
loading. Loading reads the newest valid snapshot and replays the batches after it, so a
restart scans at most the tail of the log; with a clean shutdown and no snapshot at all
(a log from before producer state existed) nothing is scanned, as in Kafka.

Threading: everything runs on the event loop except ``flush_snapshots``, which the log's
flush thread calls; it only touches the list of unflushed files under a lock.
"""

from __future__ import annotations

import bisect
import contextlib
import enum
import logging
import os
import struct
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from crc32c import crc32c

from pybroker.protocol.errors import (
    CorruptRecordError,
    InvalidProducerEpochError,
    InvalidTxnStateError,
    OutOfOrderSequenceError,
    TransactionCoordinatorFencedError,
)
from pybroker.protocol.records import (
    CONTROL_ABORT,
    CONTROL_COMMIT,
    LOG_OVERHEAD,
    BatchHeader,
    decode_records,
)
from pybroker.storage.fileio import fsync_dir, fsync_path, write_atomic

if TYPE_CHECKING:
    from pybroker.storage.segment import LogSegment

log = logging.getLogger(__name__)

NUM_BATCHES_TO_RETAIN = 5
NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1
NO_SEQUENCE = -1
NO_TIMESTAMP = -1
INT32_MAX = 0x7FFFFFFF
DEFAULT_PRODUCER_ID_EXPIRATION_MS = 86_400_000  # producer.id.expiration.ms

SNAPSHOT_SUFFIX = ".snapshot"
SNAPSHOT_VERSION = 1
_SNAP_HEAD = struct.Struct(">hIi")  # version, crc, entry count
_SNAP_ENTRY = struct.Struct(">qhiqiqiq")
_CRC_START = 6  # the CRC covers everything after version and crc
_CONTROL_KEY = struct.Struct(">hh")
_CONTROL_VALUE = struct.Struct(">hi")


class Origin(enum.Enum):
    """Kafka's AppendOrigin: how much of the producer state an append is checked against."""

    CLIENT = "client"  # Produce requests: epochs, sequences, duplicates, transactions
    COORDINATOR = "coordinator"  # the broker's own appends: epochs and transactions
    REPLICATION = "replication"  # followers and log loading: no checks


class CorruptSnapshotError(Exception):
    """A snapshot file that cannot be used; the loader deletes it and tries an older one."""


def in_sequence(last_seq: int, next_seq: int) -> bool:
    return next_seq == last_seq + 1 or (next_seq == 0 and last_seq == INT32_MAX)


def decrement_sequence(sequence: int, decrement: int) -> int:
    """Kafka's DefaultRecordBatch.decrementSequence (sequences wrap at int32 max)."""
    if sequence < decrement:
        return INT32_MAX - (decrement - sequence) + 1
    return sequence - decrement


def snapshot_name(offset: int) -> str:
    return f"{offset:020d}{SNAPSHOT_SUFFIX}"


def parse_snapshot_name(name: str) -> int | None:
    stem = name[: -len(SNAPSHOT_SUFFIX)]
    if name.endswith(SNAPSHOT_SUFFIX) and stem.isdigit() and stem.isascii():
        return int(stem)
    return None


class BatchMetadata(NamedTuple):
    """One cached batch of a producer (Kafka's BatchMetadata)."""

    last_seq: int
    last_offset: int
    offset_delta: int
    timestamp: int

    @property
    def first_seq(self) -> int:
        return decrement_sequence(self.last_seq, self.offset_delta)

    @property
    def first_offset(self) -> int:
        return self.last_offset - self.offset_delta


class TxnMarker(NamedTuple):
    """The record of a control batch: COMMIT or ABORT, by which coordinator epoch."""

    commit: bool
    coordinator_epoch: int
    timestamp: int


class CompletedTxn(NamedTuple):
    producer_id: int
    first_offset: int
    last_offset: int  # the marker's offset
    is_aborted: bool


class ProducerStateEntry:
    """Kafka's ProducerStateEntry: one producer's epoch and its last batches."""

    __slots__ = (
        "producer_id",
        "producer_epoch",
        "batches",
        "coordinator_epoch",
        "last_timestamp",
        "current_txn_first_offset",
    )

    def __init__(
        self,
        producer_id: int,
        producer_epoch: int = NO_PRODUCER_EPOCH,
        batches: Iterable[BatchMetadata] = (),
        coordinator_epoch: int = -1,
        last_timestamp: int = NO_TIMESTAMP,
        current_txn_first_offset: int | None = None,
    ) -> None:
        self.producer_id = producer_id
        self.producer_epoch = producer_epoch
        self.batches: deque[BatchMetadata] = deque(batches, NUM_BATCHES_TO_RETAIN)
        self.coordinator_epoch = coordinator_epoch
        self.last_timestamp = last_timestamp
        self.current_txn_first_offset = current_txn_first_offset

    def __repr__(self) -> str:
        return (
            f"ProducerStateEntry(producer_id={self.producer_id}, epoch={self.producer_epoch}, "
            f"batches={list(self.batches)}, coordinator_epoch={self.coordinator_epoch}, "
            f"last_timestamp={self.last_timestamp}, "
            f"current_txn_first_offset={self.current_txn_first_offset})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ProducerStateEntry):
            return NotImplemented
        return all(getattr(self, s) == getattr(other, s) for s in self.__slots__)

    @property
    def is_empty(self) -> bool:
        return not self.batches

    @property
    def first_seq(self) -> int:
        return self.batches[0].first_seq if self.batches else NO_SEQUENCE

    @property
    def last_seq(self) -> int:
        return self.batches[-1].last_seq if self.batches else NO_SEQUENCE

    @property
    def first_data_offset(self) -> int:
        return self.batches[0].first_offset if self.batches else -1

    @property
    def last_data_offset(self) -> int:
        return self.batches[-1].last_offset if self.batches else -1

    def find_duplicate(self, header: BatchHeader) -> BatchMetadata | None:
        """The cached batch with this batch's epoch and exact sequence range, if any."""
        if header.producer_epoch != self.producer_epoch:
            return None
        first, last = header.base_sequence, header.last_sequence
        for b in self.batches:
            if b.last_seq == last and b.first_seq == first:
                return b
        return None

    def maybe_update_epoch(self, epoch: int) -> None:
        if self.producer_epoch != epoch:
            self.batches.clear()
            self.producer_epoch = epoch

    def add_batch(
        self, epoch: int, last_seq: int, last_offset: int, offset_delta: int, timestamp: int
    ) -> None:
        self.maybe_update_epoch(epoch)
        self.batches.append(BatchMetadata(last_seq, last_offset, offset_delta, timestamp))
        self.last_timestamp = timestamp

    def fork(self) -> ProducerStateEntry:
        """What ProducerAppendInfo starts from: everything but the cached batches."""
        return ProducerStateEntry(
            self.producer_id,
            self.producer_epoch,
            (),
            self.coordinator_epoch,
            self.last_timestamp,
            self.current_txn_first_offset,
        )

    def update(self, nxt: ProducerStateEntry) -> None:
        """Apply an append's result (Kafka's ProducerStateEntry.update)."""
        self.maybe_update_epoch(nxt.producer_epoch)
        self.batches.extend(nxt.batches)
        self.coordinator_epoch = nxt.coordinator_epoch
        self.current_txn_first_offset = nxt.current_txn_first_offset
        self.last_timestamp = nxt.last_timestamp


class ProducerAppend:
    """The validated effect of one append on the producer state, applied by ``commit``."""

    __slots__ = ("updated", "started_txns", "completed_txns")

    def __init__(self) -> None:
        self.updated: dict[int, ProducerStateEntry] = {}
        self.started_txns: list[tuple[int, int]] = []  # (first offset, producer id)
        self.completed_txns: list[CompletedTxn] = []


def read_control_marker(buf: bytes | bytearray | memoryview, pos: int) -> TxnMarker | None:
    """The COMMIT/ABORT record of the control batch at ``pos`` (None if it has none)."""
    records = decode_records(buf, pos)
    if not records:
        return None
    r = records[0]
    if r.key is None or len(r.key) < _CONTROL_KEY.size:
        raise CorruptRecordError("control record without a valid key")
    _, kind = _CONTROL_KEY.unpack_from(r.key)
    if kind not in (CONTROL_ABORT, CONTROL_COMMIT):
        raise CorruptRecordError(f"control record of unknown type {kind}")
    if r.value is None or len(r.value) < _CONTROL_VALUE.size:
        raise CorruptRecordError("transaction marker without a valid value")
    _, coordinator_epoch = _CONTROL_VALUE.unpack_from(r.value)
    return TxnMarker(kind == CONTROL_COMMIT, coordinator_epoch, r.timestamp)


# -- snapshot files ----------------------------------------------------------------------


def encode_snapshot(entries: Iterable[ProducerStateEntry]) -> bytes:
    rows: list[bytes] = []
    pack = _SNAP_ENTRY.pack
    for e in sorted(entries, key=lambda x: x.producer_id):
        txn = -1 if e.current_txn_first_offset is None else e.current_txn_first_offset
        batches = list(e.batches)
        if not batches:
            rows.append(
                pack(
                    e.producer_id,
                    e.producer_epoch,
                    NO_SEQUENCE,
                    -1,
                    0,
                    e.last_timestamp,
                    e.coordinator_epoch,
                    txn,
                )
            )
            continue
        for i, b in enumerate(batches):
            ts = e.last_timestamp if i == len(batches) - 1 else b.timestamp
            rows.append(
                pack(
                    e.producer_id,
                    e.producer_epoch,
                    b.last_seq,
                    b.last_offset,
                    b.offset_delta,
                    ts,
                    e.coordinator_epoch,
                    txn,
                )
            )
    body = struct.pack(">i", len(rows)) + b"".join(rows)
    return struct.pack(">hI", SNAPSHOT_VERSION, crc32c(body)) + body


def decode_snapshot(data: bytes) -> list[ProducerStateEntry]:
    """Entries of a snapshot (ours or Kafka's); raises CorruptSnapshotError."""
    if len(data) < _SNAP_HEAD.size:
        raise CorruptSnapshotError(f"snapshot of {len(data)} bytes is truncated")
    version, crc, count = _SNAP_HEAD.unpack_from(data)
    if version != SNAPSHOT_VERSION:
        raise CorruptSnapshotError(f"Snapshot contained an unknown file version {version}")
    computed = crc32c(data[_CRC_START:])
    if computed != crc:
        raise CorruptSnapshotError(
            f"Snapshot is corrupt (CRC is no longer valid). Stored crc: {crc}. "
            f"Computed crc: {computed}"
        )
    if count < 0 or len(data) != _SNAP_HEAD.size + count * _SNAP_ENTRY.size:
        raise CorruptSnapshotError(f"snapshot size {len(data)} does not hold {count} entries")
    by_id: dict[int, ProducerStateEntry] = {}
    for row in _SNAP_ENTRY.iter_unpack(data[_SNAP_HEAD.size :]):
        pid, epoch, seq, offset, delta, ts, coord, txn = row
        entry = by_id.get(pid)
        if entry is None or entry.producer_epoch != epoch:
            entry = by_id[pid] = ProducerStateEntry(pid, epoch)
        if offset >= 0:
            entry.batches.append(BatchMetadata(seq, offset, delta, ts))
        entry.last_timestamp = ts
        entry.coordinator_epoch = coord
        entry.current_txn_first_offset = txn if txn >= 0 else None
    return list(by_id.values())


# -- the manager -------------------------------------------------------------------------


class ProducerStateManager:
    """The producer state of one partition, and its snapshot files in the log dir."""

    def __init__(
        self,
        dir: Path,
        name: str,
        *,
        producer_id_expiration_ms: int = DEFAULT_PRODUCER_ID_EXPIRATION_MS,
    ) -> None:
        self.dir = dir
        self.name = name
        self.producer_id_expiration_ms = producer_id_expiration_ms
        self.producers: dict[int, ProducerStateEntry] = {}
        self.ongoing_txns: dict[int, int] = {}  # first offset -> producer id
        # KIP-890: the (producer id, epoch) the transaction coordinator just confirmed
        # this partition is part of; set by the Log for the duration of one append.
        self.verified_txn: tuple[int, int] | None = None
        # Called with (completed transaction, last stable offset once it completed) by
        # every commit that ends transactions: the Log keeps its .txnindex with it.
        self.txn_listener: Callable[[CompletedTxn, int], None] | None = None
        self.map_end_offset = 0  # state covers offsets below this
        self.last_snap_offset = 0
        self._snapshots: list[int] = self._list_snapshots()
        self._unflushed: list[Path] = []
        self._unflushed_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ProducerStateManager({self.name}, producers={len(self.producers)})"

    # -- lookups -----------------------------------------------------------------------

    def last_entry(self, producer_id: int) -> ProducerStateEntry | None:
        return self.producers.get(producer_id)

    @property
    def is_empty(self) -> bool:
        return not self.producers and not self.ongoing_txns

    @property
    def snapshot_offsets(self) -> list[int]:
        return list(self._snapshots)

    def last_records_of_active_producers(self) -> dict[int, tuple[int | None, int]]:
        """For the cleaner (Kafka's lastRecordsOfActiveProducers): producer id -> (offset
        of its last data batch or None, epoch). Compaction keeps those batches (emptied
        if need be) so the state can still be rebuilt from the log. Safe from a worker
        thread: it copies the map in one step."""
        producers = dict(self.producers)
        return {
            pid: (e.last_data_offset if e.batches else None, e.producer_epoch)
            for pid, e in producers.items()
        }

    def first_undecided_offset(self) -> int | None:
        return min(self.ongoing_txns) if self.ongoing_txns else None

    def has_ongoing_txn(self, producer_id: int, epoch: int) -> bool:
        """Whether this producer and epoch has an open transaction in the partition (a
        transactional write then needs no KIP-890 verification)."""
        return self._has_ongoing_txn(producer_id, epoch)

    def _has_ongoing_txn(self, producer_id: int, epoch: int) -> bool:
        e = self.producers.get(producer_id)
        return (
            e is not None and e.current_txn_first_offset is not None and e.producer_epoch == epoch
        )

    def _verified(self, producer_id: int, epoch: int) -> bool:
        """KIP-890: the coordinator verified that this partition is in the producer's
        transaction, so a first transactional batch may start it here."""
        return self.verified_txn == (producer_id, epoch)

    def last_stable_offset_after(self, txn: CompletedTxn) -> int:
        """Kafka's ProducerStateManager.lastStableOffset(completedTxn), once ``txn`` is no
        longer ongoing: the first offset of the earliest other open transaction, else the
        offset after its marker."""
        first = self.first_undecided_offset()
        return txn.last_offset + 1 if first is None else min(first, txn.last_offset + 1)

    # -- appends -----------------------------------------------------------------------

    def prepare_append(
        self,
        headers: Sequence[BatchHeader],
        payload: bytes | bytearray | memoryview,
        first_offset: int | None,
        origin: Origin,
        append_time: int | None = None,
    ) -> ProducerAppend | BatchMetadata | None:
        """Check the batches about to be appended; nothing changes until ``commit``.

        ``first_offset`` is the offset the first batch will get (None: the batches carry
        their offsets, as in replication). ``append_time`` replaces batch timestamps on
        LogAppendTime topics. Returns None when no batch has a producer id, the original
        batch's metadata for a client duplicate, else the pending update. Raises
        OutOfOrderSequenceError, InvalidProducerEpochError, InvalidTxnStateError or
        TransactionCoordinatorFencedError.
        """
        pending: ProducerAppend | None = None
        current: dict[int, ProducerStateEntry] = {}
        offset = first_offset
        pos = 0
        for h in headers:
            base = h.base_offset if offset is None else offset
            last = base + h.last_offset_delta
            pid = h.producer_id
            if pid >= 0:
                committed = self.producers.get(pid)
                if origin is Origin.CLIENT and committed is not None:
                    duplicate = committed.find_duplicate(h)
                    if duplicate is not None:
                        return duplicate
                if (
                    origin is not Origin.REPLICATION
                    and h.is_transactional
                    and not h.is_control
                    and not self._has_ongoing_txn(pid, h.producer_epoch)
                ):
                    if committed is not None and h.producer_epoch < committed.producer_epoch:
                        raise InvalidProducerEpochError(
                            f"Epoch of producer {pid} is {h.producer_epoch}, which is smaller "
                            f"than the last seen epoch {committed.producer_epoch}"
                        )
                    if not self._verified(pid, h.producer_epoch):
                        raise InvalidTxnStateError("Record was not part of an ongoing transaction")
                if pending is None:
                    pending = ProducerAppend()
                updated = pending.updated.get(pid)
                if updated is None:
                    cur = committed if committed is not None else ProducerStateEntry(pid)
                    current[pid] = cur
                    updated = pending.updated[pid] = cur.fork()
                if h.is_control:
                    marker = read_control_marker(payload, pos) if h.records_count else None
                    if marker is not None:
                        self._append_marker(pending, updated, h, marker, base, origin)
                else:
                    ts = h.max_timestamp if append_time is None else append_time
                    self._append_data(pending, current[pid], updated, h, base, last, ts, origin)
            if offset is not None:
                offset = last + 1
            pos += h.batch_length + LOG_OVERHEAD
        return pending

    def _where(self, offset: int) -> str:
        return f"at offset {offset} in partition {self.name}"

    def _append_data(
        self,
        pending: ProducerAppend,
        current: ProducerStateEntry,
        updated: ProducerStateEntry,
        h: BatchHeader,
        first_offset: int,
        last_offset: int,
        timestamp: int,
        origin: Origin,
    ) -> None:
        pid, epoch = h.producer_id, h.producer_epoch
        if epoch < updated.producer_epoch:
            message = (
                f"Epoch of producer {pid} {self._where(first_offset)} is {epoch}, which is "
                f"smaller than the last seen epoch {updated.producer_epoch}"
            )
            if origin is not Origin.REPLICATION:
                raise InvalidProducerEpochError(message)
            log.warning("%s", message)
        if origin is Origin.CLIENT:
            first_seq = h.base_sequence
            if epoch != updated.producer_epoch:
                if first_seq != 0 and updated.producer_epoch != NO_PRODUCER_EPOCH:
                    raise OutOfOrderSequenceError(
                        f"Invalid sequence number for new epoch of producer {pid} "
                        f"{self._where(first_offset)}: {epoch} (request epoch), "
                        f"{first_seq} (seq. number), {updated.producer_epoch} "
                        f"(current producer epoch)"
                    )
            else:
                if updated.batches:
                    current_last = updated.last_seq
                elif epoch == current.producer_epoch:
                    current_last = current.last_seq
                else:
                    current_last = NO_SEQUENCE
                if not (
                    current.producer_epoch == NO_PRODUCER_EPOCH
                    or in_sequence(current_last, first_seq)
                ):
                    raise OutOfOrderSequenceError(
                        f"Out of order sequence number for producer {pid} "
                        f"{self._where(first_offset)}: {first_seq} (incoming seq. number), "
                        f"{current_last} (current end sequence number)"
                    )
        updated.add_batch(
            epoch, h.last_sequence, last_offset, last_offset - first_offset, timestamp
        )
        if updated.current_txn_first_offset is not None:
            if not h.is_transactional:
                raise InvalidTxnStateError(
                    f"Expected transactional write from producer {pid} {self._where(first_offset)}"
                )
        elif h.is_transactional:
            updated.current_txn_first_offset = first_offset
            pending.started_txns.append((first_offset, pid))

    def _append_marker(
        self,
        pending: ProducerAppend,
        updated: ProducerStateEntry,
        h: BatchHeader,
        marker: TxnMarker,
        offset: int,
        origin: Origin,
    ) -> None:
        pid, epoch = h.producer_id, h.producer_epoch
        if epoch < updated.producer_epoch:
            message = (
                f"Epoch of producer {pid} at offset {offset} in {self.name} is {epoch}, "
                f"which is < the last seen epoch {updated.producer_epoch} (TV0)"
            )
            if origin is not Origin.REPLICATION:
                raise InvalidProducerEpochError(message)
            log.warning("%s", message)
        if updated.coordinator_epoch > marker.coordinator_epoch:
            message = (
                f"Invalid coordinator epoch for producerId {pid} at offset {offset} in "
                f"partition {self.name}: {marker.coordinator_epoch} (zombie), "
                f"{updated.coordinator_epoch} (current)"
            )
            if origin is not Origin.REPLICATION:
                raise TransactionCoordinatorFencedError(message)
            log.info("%s", message)
        if updated.current_txn_first_offset is not None:
            pending.completed_txns.append(
                CompletedTxn(pid, updated.current_txn_first_offset, offset, not marker.commit)
            )
        updated.maybe_update_epoch(epoch)
        updated.coordinator_epoch = marker.coordinator_epoch
        updated.current_txn_first_offset = None
        updated.last_timestamp = marker.timestamp

    def commit(self, pending: ProducerAppend) -> list[CompletedTxn]:
        """Apply a prepared append once its batches are in the log."""
        producers = self.producers
        for pid, updated in pending.updated.items():
            entry = producers.get(pid)
            if entry is None:
                producers[pid] = updated
            else:
                entry.update(updated)
        for first, pid in pending.started_txns:
            self.ongoing_txns[first] = pid
        for txn in pending.completed_txns:
            self.ongoing_txns.pop(txn.first_offset, None)
        listener = self.txn_listener
        if listener is not None:
            for txn in pending.completed_txns:
                listener(txn, self.last_stable_offset_after(txn))
        return pending.completed_txns

    def apply_replicated(
        self, headers: Sequence[BatchHeader], payload: bytes | bytearray | memoryview
    ) -> None:
        """Follower appends and log loading: batches with their own offsets, no checks."""
        pending = self.prepare_append(headers, payload, None, Origin.REPLICATION)
        if pending is not None:
            self.commit(pending)  # type: ignore[arg-type]

    # -- expiration --------------------------------------------------------------------

    def _is_expired(self, now_ms: int, entry: ProducerStateEntry) -> bool:
        return (
            entry.current_txn_first_offset is None
            and now_ms - entry.last_timestamp >= self.producer_id_expiration_ms
        )

    def remove_expired_producers(self, now_ms: int) -> int:
        """Forget producers idle for producer.id.expiration.ms (not those mid-transaction)."""
        expired = [pid for pid, e in self.producers.items() if self._is_expired(now_ms, e)]
        for pid in expired:
            del self.producers[pid]
        return len(expired)

    # -- snapshots ---------------------------------------------------------------------

    def _path(self, offset: int) -> Path:
        return self.dir / snapshot_name(offset)

    def _list_snapshots(self) -> list[int]:
        found = []
        try:
            with os.scandir(self.dir) as it:
                for entry in it:
                    offset = parse_snapshot_name(entry.name)
                    if offset is not None and entry.is_file():
                        found.append(offset)
        except FileNotFoundError:
            pass
        return sorted(found)

    def _delete_snapshot(self, offset: int) -> None:
        i = bisect.bisect_left(self._snapshots, offset)
        if i < len(self._snapshots) and self._snapshots[i] == offset:
            del self._snapshots[i]
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(offset))

    def take_snapshot(
        self, offset: int, *, sync: bool = False, log_start_offset: int | None = None
    ) -> Path | None:
        """Write the state of everything below ``offset`` unless a snapshot covers it.

        ``sync`` fsyncs now; otherwise the next ``flush_snapshots`` does. Snapshots below
        ``log_start_offset`` (whose segments retention deleted) are removed.
        """
        self.map_end_offset = offset
        path = None
        if offset > self.last_snap_offset:
            path = self._path(offset)
            write_atomic(path, encode_snapshot(self.producers.values()), sync=sync)
            if not sync:
                with self._unflushed_lock:
                    self._unflushed.append(path)
            if offset not in self._snapshots:
                bisect.insort(self._snapshots, offset)
            self.last_snap_offset = offset
            log.debug("Wrote producer snapshot %s with %d producer ids", path, len(self.producers))
        if log_start_offset is not None:
            for old in [o for o in self._snapshots if o < log_start_offset and o != offset]:
                self._delete_snapshot(old)
        return path

    def flush_snapshots(self) -> None:
        """fsync snapshots written since the last call (the log's flush thread)."""
        with self._unflushed_lock:
            paths, self._unflushed = self._unflushed, []
        if not paths:
            return
        for path in paths:
            fsync_path(path)
        with contextlib.suppress(OSError):
            fsync_dir(self.dir)

    def _load_latest_snapshot(self, log_start_offset: int, now_ms: int) -> None:
        while self._snapshots:
            offset = self._snapshots[-1]
            path = self._path(offset)
            try:
                entries = decode_snapshot(path.read_bytes())
            except (CorruptSnapshotError, OSError) as e:
                log.warning("Failed to load producer snapshot from %s: %s", path, e)
                self._delete_snapshot(offset)
                continue
            log.info("Loading producer state from snapshot file %s", path)
            for entry in entries:
                if not self._is_expired(now_ms, entry):
                    self.producers[entry.producer_id] = entry
                    if entry.current_txn_first_offset is not None:
                        self.ongoing_txns[entry.current_txn_first_offset] = entry.producer_id
            self.last_snap_offset = self.map_end_offset = offset
            return
        self.last_snap_offset = self.map_end_offset = log_start_offset

    def _truncate_and_reload(self, log_start_offset: int, log_end_offset: int, now: int) -> None:
        """Kafka's truncateAndReload: drop out-of-range snapshots, reload the newest."""
        for offset in list(self._snapshots):
            if offset > log_end_offset or offset <= log_start_offset:
                self._delete_snapshot(offset)
        self.producers.clear()
        self.ongoing_txns.clear()
        self._load_latest_snapshot(log_start_offset, now)

    def _remove_stray_snapshots(self, segment_bases: Sequence[int]) -> None:
        """Drop snapshots not at a segment base, except the newest one above every base
        (the clean-shutdown snapshot at the log end)."""
        bases = set(segment_bases)
        top = max(segment_bases) if segment_bases else None
        strays = [o for o in self._snapshots if o not in bases]
        keep = strays[-1] if strays and (top is None or strays[-1] > top) else None
        for offset in strays:
            if offset != keep:
                self._delete_snapshot(offset)

    def load(
        self,
        segments: Sequence[LogSegment],
        log_start_offset: int,
        log_end_offset: int,
        clean_shutdown: bool,
        now_ms: int,
    ) -> None:
        """Start-up: newest snapshot plus the batches after it (Kafka's rebuildProducerState)."""
        self._snapshots = self._list_snapshots()
        self._remove_stray_snapshots([s.base_offset for s in segments])
        bases = [s.base_offset for s in segments[-2:]]
        if not self._snapshots and clean_shutdown:
            # A clean log without snapshots predates producer state (or never had a
            # producer): skip the scan, leave snapshots so the next start needs none.
            self.last_snap_offset = 0
            for offset in sorted({*bases, log_end_offset}):
                self.take_snapshot(offset, sync=True)
            self.map_end_offset = log_end_offset
            return
        self._rebuild(segments, log_start_offset, log_end_offset, now_ms, set(bases), False)

    def truncate_and_rebuild(
        self,
        segments: Sequence[LogSegment],
        log_start_offset: int,
        log_end_offset: int,
        now_ms: int,
    ) -> None:
        """After the log was truncated to ``log_end_offset``. Without any producer state
        before the truncation there is nothing to rebuild (Kafka skips the scan too)."""
        self._rebuild(segments, log_start_offset, log_end_offset, now_ms, set(), True)

    def _rebuild(
        self,
        segments: Sequence[LogSegment],
        log_start_offset: int,
        log_end_offset: int,
        now_ms: int,
        snapshot_at: set[int],
        skip_scan_if_empty: bool,
    ) -> None:
        was_empty = skip_scan_if_empty and self.is_empty
        self._truncate_and_reload(log_start_offset, log_end_offset, now_ms)
        if log_end_offset > self.map_end_offset and not was_empty:
            start = max(self.map_end_offset, log_start_offset)
            log.info(
                "Rebuilding producer state of %s from offset %d to %d",
                self.name,
                start,
                log_end_offset,
            )
            self._replay(segments, start, log_end_offset, snapshot_at)
        self.take_snapshot(log_end_offset, sync=True)

    def _replay(
        self,
        segments: Sequence[LogSegment],
        start: int,
        end: int,
        snapshot_at: set[int],
    ) -> None:
        for i, seg in enumerate(segments):
            nxt = segments[i + 1].base_offset if i + 1 < len(segments) else None
            if nxt is not None and nxt <= start:
                continue
            if seg.base_offset >= end:
                break
            begin = max(seg.base_offset, start)
            if seg.base_offset in snapshot_at:
                self.take_snapshot(begin, sync=True)
            try:
                found = seg.translate_offset(begin)
                if found is None:
                    continue
                for pos, h in seg.iter_headers(found[0]):
                    if h.base_offset >= end:
                        break
                    if h.producer_id < 0:
                        continue
                    payload: bytes = b""
                    if h.is_control:
                        payload = os.pread(seg.file().fd, h.size, pos)
                    self.apply_replicated((h,), payload)
            except (CorruptRecordError, OSError) as e:
                log.warning("Stopped reading %s for producer state: %s", seg.log_path, e)

    def open_txns_at(self, segments: Sequence[LogSegment], offset: int) -> dict[int, int]:
        """Producer id -> first offset of each transaction open just below ``offset``
        (before ``load``): the newest valid snapshot at or below it, then the batch
        headers up to it. The Log rebuilds the .txnindex of recovered segments from here."""
        start, open_txns = 0, {}
        for snap in reversed(self._list_snapshots()):
            if snap > offset:
                continue
            try:
                entries = decode_snapshot(self._path(snap).read_bytes())
            except (CorruptSnapshotError, OSError):
                continue
            start = snap
            open_txns = {
                e.producer_id: e.current_txn_first_offset
                for e in entries
                if e.current_txn_first_offset is not None
            }
            break
        for i, seg in enumerate(segments):
            nxt = segments[i + 1].base_offset if i + 1 < len(segments) else None
            if nxt is not None and nxt <= start:
                continue
            if seg.base_offset >= offset:
                break
            try:
                found = seg.translate_offset(max(seg.base_offset, start))
                if found is None:
                    continue
                for _, h in seg.iter_headers(found[0]):
                    if h.base_offset >= offset:
                        break
                    if h.base_offset < start or not h.is_transactional:
                        continue
                    if h.is_control:
                        open_txns.pop(h.producer_id, None)
                    else:
                        open_txns.setdefault(h.producer_id, h.base_offset)
            except (CorruptRecordError, OSError) as e:
                log.warning("Stopped reading %s for open transactions: %s", seg.log_path, e)
        return open_txns

    def truncate_fully_and_start_at(self, offset: int) -> None:
        """The log restarts empty at ``offset``: no producers, no snapshots."""
        self.producers.clear()
        self.ongoing_txns.clear()
        for old in list(self._snapshots):
            self._delete_snapshot(old)
        self.last_snap_offset = 0
        self.map_end_offset = offset


__all__ = [
    "BatchMetadata",
    "CompletedTxn",
    "CorruptSnapshotError",
    "NUM_BATCHES_TO_RETAIN",
    "Origin",
    "ProducerAppend",
    "ProducerStateEntry",
    "ProducerStateManager",
    "SNAPSHOT_SUFFIX",
    "TxnMarker",
    "decode_snapshot",
    "encode_snapshot",
    "in_sequence",
    "read_control_marker",
    "snapshot_name",
]
