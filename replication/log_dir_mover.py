"""Moving a replica between this broker's log dirs while it keeps serving (KIP-113).

Kafka's ``ReplicaManager.alterReplicaLogDirs`` and ``ReplicaAlterLogDirsThread``: a
future log ``<topic>-<p>.<uuid>-future`` in the target dir is filled from the current
log, and once caught up the two are swapped. Here the catch-up is simpler than Kafka's
fetcher thread but keeps its guarantees:

- copy: on the event loop the current log names the next batches as file slices (a cheap
  index lookup); a worker thread reads their bytes and appends them to the future log
  with their offsets (``append_as_follower``), so the loop never waits on the disk. Only
  this task touches the future log. A truncation of the current log (a follower
  truncating to its leader) is seen through ``Log.generation`` and the copy starts over;
  retention moving the log start forward is followed by the future;
- once the future lags by less than ``SWAP_LAG_BYTES`` it is fsynced in the worker, and
  then, synchronously on the loop, where no append can interleave, the last batches are
  copied, the leader-epoch entries carried over, the tail fsynced and the logs swapped
  (``LogManager.swap_future``). Every reference is switched in the same step: the
  Partition's ``log`` (fetch, produce, purgatory and fetchers all go through it) and the
  LogManager's maps. The old log keeps its open files for ``RETIRE_DELAY_S`` so reads in
  flight (sendfile of slices already handed out) finish, then it is closed and its
  renamed dir removed.

A crash at any point leaves the current log intact until the future is complete and
marked so on disk; the LogManager settles leftovers at start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pybroker.protocol.errors import ErrorCode, KafkaError, KafkaStorageError
from pybroker.replication.replica_manager import ReplicaManager
from pybroker.storage.log import Log
from pybroker.storage.log_manager import LogManager

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]
CHUNK_BYTES = 1 << 20
SWAP_LAG_BYTES = 256 * 1024
MAX_SYNC_BYTES = 4 * SWAP_LAG_BYTES  # the most the final step copies on the loop
RETIRE_DELAY_S = 10.0


@dataclass
class _Move:
    dest: str
    task: asyncio.Task[None] | None = None
    generation: int | None = None  # the current log's truncation count the copy is from
    done: asyncio.Event = field(default_factory=asyncio.Event)


class LogDirMover:
    """Kafka's ReplicaAlterLogDirsManager: one task per partition being moved."""

    def __init__(
        self,
        replica_manager: ReplicaManager,
        log_manager: LogManager,
        notify: Callable[[str, int], None],
        *,
        retire_delay_s: float = RETIRE_DELAY_S,
        io_max_bytes_per_second: float = math.inf,
    ) -> None:
        """``io_max_bytes_per_second``: Kafka's
        replica.alter.log.dirs.io.max.bytes.per.second, over all moves of the broker."""
        self.rm = replica_manager
        self.lm = log_manager
        self.notify = notify
        self.retire_delay_s = retire_delay_s
        # (Kafka's default, Long.MAX_VALUE, means no quota.)
        self.rate = io_max_bytes_per_second if io_max_bytes_per_second < 2**62 else math.inf
        self._budget_at = 0.0  # monotonic time by which the bytes copied so far are "paid"
        self._moves: dict[TopicPartition, _Move] = {}
        self._retiring: set[asyncio.Task[None]] = set()

    def moving(self, topic: str, partition: int) -> str | None:
        move = self._moves.get((topic, partition))
        return move.dest if move is not None else None

    # -- requests ----------------------------------------------------------------------
    def alter(self, topic: str, partition: int, dest: str, *, exists: bool = True) -> None:
        """Start moving the replica to ``dest`` (absolute dir), or raise the Kafka error
        ReplicaManager.alterReplicaLogDirs answers: LOG_DIR_NOT_FOUND for a dir not in
        log.dirs, KAFKA_STORAGE_ERROR for an offline dir or partition (or while any dir is
        offline, when Kafka creates no future log), UNKNOWN_TOPIC_OR_PARTITION for a
        partition the cluster does not have (``exists``), REPLICA_NOT_AVAILABLE for one
        this broker has no replica of; the dir is checked first, as Kafka does."""
        tp = (topic, partition)
        d = self.lm.find_dir(dest)
        if not self.lm.is_online(d):
            raise KafkaStorageError(f"Log directory {d.key} is offline")
        if not exists:
            raise KafkaError(
                f"Partition {topic}-{partition} does not exist",
                ErrorCode.unknown_topic_or_partition,
            )
        self.rm.offline.check(topic, partition)
        move = self._moves.get(tp)
        if move is not None and move.dest != d.key:
            self.cancel(topic, partition)  # Kafka: the destination changed, start over
        if self.rm.partition(topic, partition) is None or self.lm.get_log(*tp) is None:
            raise KafkaError(
                f"Replica of {topic}-{partition} is not available on this broker",
                ErrorCode.replica_not_available,
            )
        if tp in self._moves or self.lm.dir_of(topic, partition) == d.key:
            return  # already moving there, or already there
        if self.lm.offline_dirs:
            raise KafkaStorageError(
                f"Can not create the future log of {topic}-{partition}: log dirs "
                f"{self.lm.offline_dirs} are offline"
            )
        self.lm.create_future_log(topic, partition, d.key)
        move = _Move(d.key)
        self._moves[tp] = move
        move.task = asyncio.get_running_loop().create_task(
            self._run(tp, move), name=f"alter-log-dir-{topic}-{partition}"
        )
        log.info("Moving %s-%d to log dir %s", topic, partition, d.key)

    def cancel(self, topic: str, partition: int) -> None:
        move = self._moves.pop((topic, partition), None)
        if move is not None and move.task is not None:
            move.task.cancel()
        self.lm.abort_future(topic, partition)

    def on_dir_failure(self, gone: list[TopicPartition], futures: list[TopicPartition]) -> None:
        """A dir failed: moves of its replicas, or into it, stop (their futures are gone)."""
        for tp in {*gone, *futures}:
            move = self._moves.pop(tp, None)
            if move is not None and move.task is not None:
                move.task.cancel()
            with contextlib.suppress(Exception):
                self.lm.abort_future(*tp)

    async def wait(self, topic: str, partition: int) -> None:
        move = self._moves.get((topic, partition))
        if move is not None:
            await move.done.wait()

    async def stop(self) -> None:
        moves, self._moves = list(self._moves.values()), {}
        for move in moves:
            if move.task is not None:
                move.task.cancel()
        for task in [m.task for m in moves if m.task is not None] + list(self._retiring):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- the copy ----------------------------------------------------------------------
    async def _run(self, tp: TopicPartition, move: _Move) -> None:
        try:
            while True:
                lag = await self._copy_some(tp, move)
                if lag > SWAP_LAG_BYTES:
                    continue
                future = self._future(tp)
                await asyncio.get_running_loop().run_in_executor(None, future.flush)
                if self._swap(tp, move):
                    break
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("Moving %s-%d to %s failed: %r", tp[0], tp[1], move.dest, exc)
            if self._moves.get(tp) is move:
                with contextlib.suppress(Exception):
                    self.lm.abort_future(*tp)
        finally:
            if self._moves.get(tp) is move:
                del self._moves[tp]
            move.done.set()

    def _future(self, tp: TopicPartition) -> Log:
        got = self.lm.future_log(*tp)
        if got is None:
            raise KafkaStorageError(f"The future log of {tp[0]}-{tp[1]} is gone")
        return got[0]

    def _current(self, tp: TopicPartition) -> Log:
        lg = self.lm.get_log(*tp)
        if lg is None:
            raise KafkaStorageError(f"The log of {tp[0]}-{tp[1]} is gone")
        return lg

    @staticmethod
    def _align(source: Log, future: Log) -> None:
        """Make the future a prefix of the source again (truncation, retention)."""
        if future.log_end_offset > source.log_end_offset:
            future.truncate_to(source.log_end_offset)
        if future.log_end_offset < source.log_start_offset:
            future.truncate_fully_and_start_at(source.log_start_offset)
        elif future.log_start_offset < source.log_start_offset:
            # Retention or DeleteRecords ran meanwhile (only offsets below the HW go).
            future.high_watermark = min(source.high_watermark, future.log_end_offset)
            future.delete_records_before(min(source.log_start_offset, future.high_watermark))

    @staticmethod
    def _check_truncation(source: Log, future: Log, move: _Move) -> None:
        """The current log was truncated since the last copy (a follower truncating to a
        new leader): what the future holds past the truncation point may differ, so the
        copy starts over (rare; Kafka truncates the future by leader epoch instead)."""
        if move.generation is not None and move.generation != source.generation:
            log.info("%s was truncated during its move: copying it again", source.dir.name)
            future.truncate_fully_and_start_at(source.log_start_offset)
        move.generation = source.generation

    async def _copy_some(self, tp: TopicPartition, move: _Move) -> int:
        """Copy up to CHUNK_BYTES; returns how many bytes the future still lags by."""
        source, future = self._current(tp), self._future(tp)
        self._check_truncation(source, future, move)
        self._align(source, future)
        generation = source.generation
        res = source.read(
            future.log_end_offset, _chunk(source), max_offset=None, min_one_batch=True
        )
        slices = list(res.slices)
        if not slices:
            return 0
        loop = asyncio.get_running_loop()
        data = await loop.run_in_executor(None, lambda: b"".join(s.read() for s in slices))
        if source.generation != generation or self.lm.get_log(*tp) is not source:
            return SWAP_LAG_BYTES + 1  # truncated meanwhile: align and read again
        await loop.run_in_executor(None, future.append_as_follower, bytearray(data))
        await self._throttle(len(data))
        return max(source.size_bytes() - future.size_bytes(), res.total_bytes - len(data), 0)

    async def _throttle(self, copied: int) -> None:
        if self.rate == math.inf:
            return
        now = time.monotonic()
        self._budget_at = max(self._budget_at, now) + copied / self.rate
        if self._budget_at > now:
            await asyncio.sleep(self._budget_at - now)

    def _swap(self, tp: TopicPartition, move: _Move) -> bool:
        """On the loop, no await: copy the tail, carry epochs over, swap, re-point.
        False (nothing swapped) when the tail is over MAX_SYNC_BYTES after all: the lag
        estimate was off (retention, compaction); the copy goes on in the background."""
        source, future = self._current(tp), self._future(tp)
        if move.generation != source.generation:
            self._check_truncation(source, future, move)
            return False
        self._align(source, future)
        copied = 0
        while future.log_end_offset < source.log_end_offset:
            if copied > MAX_SYNC_BYTES:
                return False
            res = source.read(
                future.log_end_offset, _chunk(source), max_offset=None, min_one_batch=True
            )
            if not res.slices:
                break
            data = b"".join(s.read() for s in res.slices)
            future.append_as_follower(bytearray(data))
            copied += len(data)
        if future.log_end_offset != source.log_end_offset:
            raise KafkaStorageError(
                f"future log of {tp[0]}-{tp[1]} ends at {future.log_end_offset}, "
                f"the current at {source.log_end_offset}"
            )
        for epoch, start in source.epoch_cache.entries():
            if epoch > future.epoch_cache.latest_epoch:
                future.assign_epoch_start_offset(epoch, start)
        future.flush()
        old, new, retired = self.lm.swap_future(*tp)
        part = self.rm.partitions.get(tp)
        if part is not None:
            part.log = new
        self.notify(*tp)
        task = asyncio.get_running_loop().create_task(self._retire(old, retired))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        return True

    async def _retire(self, old: Log, retired: Path) -> None:
        """Close the replaced log once reads in flight are done, then remove its files."""
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(self.retire_delay_s)
        loop = asyncio.get_running_loop()

        def close_and_remove() -> None:
            # Not old.close(): its files were renamed away, a snapshot there would fail.
            for seg in old.segments:
                with contextlib.suppress(Exception):
                    seg.drop_handles()
            shutil.rmtree(retired, ignore_errors=True)

        await loop.run_in_executor(None, close_and_remove)


def _chunk(source: Log) -> int:
    """Bytes per copy: one follower append may not exceed a segment (Log._write)."""
    return max(min(CHUNK_BYTES, source.config.segment_bytes), 1)
