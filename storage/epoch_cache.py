"""The leader epoch cache (KIP-101/279): which epoch started at which offset.

Backed by Kafka's ``leader-epoch-checkpoint`` file, rewritten atomically on every
change (changes are rare: once per leader election plus truncations). A new epoch seen
by an append is written without fsync (it survives a process crash; KAFKA-15046: the
first append to each of 10,000 partitions must not cost two fsyncs on the event loop);
the next ``flush_if_dirty`` (called by Log.flush in a worker thread) makes it durable.
If a write fails (disk full) the in-memory cache stays right, the error is logged and
``flush_if_dirty`` retries: an append that already reached the log must not be reported
as failed because of its epoch bookkeeping.
"""

from __future__ import annotations

import bisect
import logging
import threading
from pathlib import Path

from pybroker.storage.checkpoints import read_epoch_checkpoint, write_epoch_checkpoint
from pybroker.storage.errors import CorruptCheckpointError

log = logging.getLogger(__name__)

UNDEFINED_EPOCH = -1
UNDEFINED_EPOCH_OFFSET = -1


class LeaderEpochCache:
    """Sorted ``(epoch, start_offset)`` entries, both strictly increasing."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            entries = read_epoch_checkpoint(path)
        except (CorruptCheckpointError, OSError) as e:
            log.warning("Ignoring unreadable leader epoch checkpoint %s: %s", path, e)
            entries = []
        self._epochs: list[int] = []
        self._offsets: list[int] = []
        self._lock = threading.Lock()  # a flush thread may snapshot while the loop assigns
        self._write_lock = threading.Lock()  # one writer of the file (loop or flush thread)
        self._dirty = False
        self._unsynced = False  # written without fsync since the last durable write
        for epoch, offset in entries:
            self._add(epoch, offset)

    def entries(self) -> list[tuple[int, int]]:
        with self._lock:
            return list(zip(self._epochs, self._offsets, strict=True))

    @property
    def latest_epoch(self) -> int:
        return self._epochs[-1] if self._epochs else UNDEFINED_EPOCH

    @property
    def earliest(self) -> tuple[int, int] | None:
        return (self._epochs[0], self._offsets[0]) if self._epochs else None

    def _add(self, epoch: int, offset: int) -> bool:
        """Kafka's assign(): drop entries the new one contradicts, keep both monotonic."""
        if epoch < 0 or offset < 0:
            return False
        if self._epochs and self._epochs[-1] == epoch and self._offsets[-1] <= offset:
            return False
        while self._epochs and (self._epochs[-1] >= epoch or self._offsets[-1] >= offset):
            self._epochs.pop()
            self._offsets.pop()
        self._epochs.append(epoch)
        self._offsets.append(offset)
        return True

    def assign(self, epoch: int, start_offset: int) -> None:
        """Record that ``epoch`` starts at ``start_offset`` (only if it is news)."""
        with self._lock:
            changed = self._add(epoch, start_offset)
        if changed:
            self._flush(sync=False)

    def epoch_for_offset(self, offset: int) -> int:
        """The epoch of the latest entry starting at or before ``offset`` (-1 if none)."""
        i = bisect.bisect_right(self._offsets, offset)
        return self._epochs[i - 1] if i else UNDEFINED_EPOCH

    def end_offset_for(self, epoch: int, log_end_offset: int) -> tuple[int, int]:
        """OffsetForLeaderEpoch: (largest epoch <= requested, end offset of that epoch)."""
        if epoch == UNDEFINED_EPOCH or not self._epochs:
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        if self._epochs[-1] == epoch:
            return epoch, log_end_offset
        hi = bisect.bisect_right(self._epochs, epoch)
        if hi == len(self._epochs):
            return UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
        if hi == 0:
            return epoch, self._offsets[0]
        return self._epochs[hi - 1], self._offsets[hi]

    def truncate_from_end(self, end_offset: int) -> None:
        """Forget epochs that start at or after ``end_offset`` (log truncated there)."""
        with self._lock:
            i = bisect.bisect_left(self._offsets, end_offset)
            if i >= len(self._offsets):
                return
            del self._epochs[i:], self._offsets[i:]
        self._flush()

    def truncate_from_start(self, start_offset: int) -> None:
        """The log now starts at ``start_offset``: the epoch covering it starts there."""
        with self._lock:
            i = bisect.bisect_right(self._offsets, start_offset)
            if i == 0 or (i == 1 and self._offsets[0] == start_offset):
                return
            del self._epochs[: i - 1], self._offsets[: i - 1]
            self._offsets[0] = start_offset
        self._flush()

    def clear(self) -> None:
        with self._lock:
            self._epochs.clear()
            self._offsets.clear()
        self._flush()

    def flush_if_dirty(self) -> None:
        if self._dirty or self._unsynced:
            self._flush()

    def _flush(self, sync: bool = True) -> None:
        self._dirty = True
        with self._write_lock:
            try:
                write_epoch_checkpoint(self.path, self.entries(), sync=sync)
            except OSError as e:
                log.error("Failed to write %s (will retry at the next flush): %s", self.path, e)
                return
            self._dirty = False
            self._unsynced = not sync
