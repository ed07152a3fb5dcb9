"""All partition logs of a broker across its ``log.dirs``.

Start-up locks each dir, reads the per-dir checkpoints and the clean-shutdown marker,
opens every ``<topic>-<partition>`` dir (recovering after a crash) and then removes the
marker, so a crash from then on is seen as unclean at the next start. Shutdown flushes,
checkpoints, closes and writes the markers again.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pybroker.config.topic_config import TopicConfig
from pybroker.storage.checkpoints import (
    CLEAN_SHUTDOWN_MARKER,
    LOG_START_OFFSET_CHECKPOINT,
    RECOVERY_POINT_CHECKPOINT,
    REPLICATION_OFFSET_CHECKPOINT,
    TopicPartition,
    read_offset_checkpoint,
    write_offset_checkpoint,
)
from pybroker.storage.errors import CorruptCheckpointError, LogDirLockedError
from pybroker.storage.fileio import fsync_dir, write_atomic
from pybroker.storage.handles import DEFAULT_MAX_MAPPED_INDEXES, DEFAULT_MAX_OPEN_FILES, Handles
from pybroker.storage.log import Log, log_dir_name, parse_log_dir_name, wall_ms
from pybroker.storage.producer_state import DEFAULT_PRODUCER_ID_EXPIRATION_MS

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
# Threads that flush and close logs at shutdown (Kafka uses num.recovery.threads.per.data.dir
# per dir): each log costs a few fsyncs, which run in parallel (they release the GIL), so
# 10,000 partitions shut down in seconds rather than minutes.
SHUTDOWN_THREADS = 8
# Files of a log dir that are not partitions but are expected there.
_KNOWN_FILES = frozenset(
    {
        LOCK_FILE,
        CLEAN_SHUTDOWN_MARKER,
        RECOVERY_POINT_CHECKPOINT,
        LOG_START_OFFSET_CHECKPOINT,
        REPLICATION_OFFSET_CHECKPOINT,
        "meta.properties",
        "cleaner-offset-checkpoint",
    }
)


class _LogDir:
    """One entry of log.dirs: its lock and the checkpoints read at start-up."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_fd = -1

    def lock(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LogDirLockedError(
                f"Failed to acquire lock on file .lock in {self.path}. A Kafka instance in "
                f"another process or thread is using this directory."
            ) from None
        self.lock_fd = fd

    def unlock(self) -> None:
        fd, self.lock_fd = self.lock_fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def read_checkpoint(self, name: str) -> tuple[dict[TopicPartition, int], bool]:
        """(offsets, ok): a garbled file is logged and read as empty with ok=False."""
        path = self.path / name
        try:
            return read_offset_checkpoint(path), True
        except (CorruptCheckpointError, OSError) as e:
            log.warning("Ignoring corrupt checkpoint file %s: %s", path, e)
            return {}, False


class LogManager:
    """Creates, finds, checkpoints and deletes the logs of every partition."""

    def __init__(
        self,
        log_dirs: list[Path],
        topic_config_for: Callable[[str], TopicConfig],
        *,
        max_open_files: int = DEFAULT_MAX_OPEN_FILES,
        max_mapped_indexes: int = DEFAULT_MAX_MAPPED_INDEXES,
        now_ms: Callable[[], int] = wall_ms,
        reserved_files: frozenset[str] = frozenset(),
        producer_id_expiration_ms: int = DEFAULT_PRODUCER_ID_EXPIRATION_MS,
    ) -> None:
        """``reserved_files``: names other layers keep in a log dir (not stray files)."""
        if not log_dirs:
            raise ValueError("at least one log dir is required")
        self.log_dirs = [Path(d) for d in log_dirs]
        self.topic_config_for = topic_config_for
        self.handles = Handles(max_open_files, max_mapped_indexes)
        self._now = now_ms
        self.producer_id_expiration_ms = producer_id_expiration_ms
        self._known_files = _KNOWN_FILES | reserved_files
        self._dirs = [_LogDir(d) for d in self.log_dirs]
        self._logs: dict[TopicPartition, Log] = {}
        self._dir_of: dict[TopicPartition, _LogDir] = {}
        self._lock = threading.Lock()  # guards _logs against a checkpointing thread
        self._loaded = False

    # -- start-up ----------------------------------------------------------------------

    def load(self) -> None:
        """Lock every dir, open every partition log in it, then drop the clean markers."""
        locked: list[_LogDir] = []
        try:
            for d in self._dirs:
                d.lock()
                locked.append(d)
            for d in self._dirs:
                self._load_dir(d)
        except BaseException:
            for d in locked:
                d.unlock()
            raise
        for d in self._dirs:
            marker = d.path / CLEAN_SHUTDOWN_MARKER
            if marker.exists():
                marker.unlink()
                with contextlib.suppress(OSError):
                    fsync_dir(d.path)
        self._loaded = True

    def _load_dir(self, d: _LogDir) -> None:
        clean = (d.path / CLEAN_SHUTDOWN_MARKER).exists()
        recovery_points, rp_ok = d.read_checkpoint(RECOVERY_POINT_CHECKPOINT)
        start_offsets, _ = d.read_checkpoint(LOG_START_OFFSET_CHECKPOINT)
        high_watermarks, _ = d.read_checkpoint(REPLICATION_OFFSET_CHECKPOINT)
        if not rp_ok:
            clean = False  # recover everything from offset 0
        if not clean and not (d.path / RECOVERY_POINT_CHECKPOINT).exists():
            log.info("Loading logs from %s (new log dir, or no checkpoints)", d.path)
        else:
            state = "clean" if clean else "unclean"
            log.info("Loading logs from %s (%s shutdown)", d.path, state)
        for entry in sorted(os.scandir(d.path), key=lambda e: e.name):
            name = entry.name
            if not entry.is_dir():
                if name not in self._known_files and not name.endswith(".tmp"):
                    log.warning("Ignoring stray file %s in log dir %s", name, d.path)
                continue
            if name.endswith("-delete"):
                log.info("Finishing deletion of %s", entry.path)
                shutil.rmtree(entry.path, ignore_errors=True)
                continue
            parsed = parse_log_dir_name(name)
            if parsed is None or name.endswith(("-future", "-stray")):
                log.warning("Ignoring stray directory %s in log dir %s", name, d.path)
                continue
            if parsed in self._logs:
                raise RuntimeError(
                    f"Duplicate log directories for {name} are found in both "
                    f"{self._logs[parsed].dir} and {entry.path}. It is likely because log "
                    f"directory failure happened while broker was replacing current replica "
                    f"with future replica. Recover broker from this failure by manually "
                    f"deleting one of the two directories for this partition."
                )
            topic, _ = parsed
            lg = Log.open(
                Path(entry.path),
                self.topic_config_for(topic),
                recovery_point=recovery_points.get(parsed, 0),
                log_start_offset=start_offsets.get(parsed),
                high_watermark=high_watermarks.get(parsed),
                clean_shutdown=clean,
                now_ms=self._now,
                handles=self.handles,
                producer_id_expiration_ms=self.producer_id_expiration_ms,
            )
            self._logs[parsed] = lg
            self._dir_of[parsed] = d

    # -- lookup and creation -----------------------------------------------------------

    def get_log(self, topic: str, partition: int) -> Log | None:
        return self._logs.get((topic, partition))

    def all_logs(self) -> list[Log]:
        return list(self._logs.values())

    def get_or_create_log(
        self, topic: str, partition: int, topic_id: uuid.UUID, config: TopicConfig
    ) -> Log:
        """The partition's log, created in the dir holding the fewest partitions."""
        tp = (topic, partition)
        existing = self._logs.get(tp)
        if existing is not None:
            return existing
        if len(self._dirs) == 1:
            d = self._dirs[0]  # (counting is O(partitions): 10,000 creations would be O(n^2))
        else:
            counts = {id(d): 0 for d in self._dirs}
            for owner in self._dir_of.values():
                counts[id(owner)] += 1
            d = min(self._dirs, key=lambda x: counts[id(x)])
        lg = Log.open(
            d.path / log_dir_name(topic, partition),
            config,
            topic_id=topic_id,
            now_ms=self._now,
            handles=self.handles,
            producer_id_expiration_ms=self.producer_id_expiration_ms,
        )
        with self._lock:
            self._logs[tp] = lg
            self._dir_of[tp] = d
        log.info("Created log for partition %s-%d in %s", topic, partition, d.path)
        return lg

    def delete_log(self, topic: str, partition: int) -> None:
        """Remove the partition's log and its files (Kafka's ``.<uuid>-delete`` rename)."""
        with self._lock:
            lg = self._logs.pop((topic, partition), None)
            self._dir_of.pop((topic, partition), None)
        if lg is not None:
            lg.delete()

    def update_config(self, topic: str, config: TopicConfig) -> None:
        for (t, _), lg in list(self._logs.items()):
            if t == topic:
                lg.update_config(config)

    # -- periodic work -----------------------------------------------------------------

    def checkpoint(self) -> None:
        """Write recovery points, log start offsets and high watermarks of every dir."""
        with self._lock:
            items = [(tp, lg, self._dir_of[tp]) for tp, lg in self._logs.items()]
        for d in self._dirs:
            if d.lock_fd < 0:
                continue  # not ours (never locked, or another process holds it)
            mine = [(tp, lg) for tp, lg, owner in items if owner is d and not lg.closed]
            try:
                write_offset_checkpoint(
                    d.path / RECOVERY_POINT_CHECKPOINT, {tp: lg.recovery_point for tp, lg in mine}
                )
                write_offset_checkpoint(
                    d.path / LOG_START_OFFSET_CHECKPOINT,
                    {tp: lg.log_start_offset for tp, lg in mine},
                )
                write_offset_checkpoint(
                    d.path / REPLICATION_OFFSET_CHECKPOINT,
                    {tp: lg.high_watermark for tp, lg in mine},
                )
            except OSError as e:
                log.error("Failed to write checkpoints in %s: %s", d.path, e)

    def flush_dirty_logs(self, now_ms: int | None = None) -> int:
        """Flush the logs whose flush.messages / flush.ms policy says so."""
        now = self._now() if now_ms is None else now_ms
        flushed = 0
        for lg in self.all_logs():
            if not lg.closed and lg.needs_flush(now):
                lg.flush()
                flushed += 1
        return flushed

    def cleanup_logs(self, now_ms: int | None = None) -> int:
        """Retention pass over every log; returns the number of segments deleted."""
        now = self._now() if now_ms is None else now_ms
        deleted = 0
        for lg in self.all_logs():
            if not lg.closed:
                deleted += lg.delete_old_segments(now)
        return deleted

    def remove_expired_producers(self, now_ms: int | None = None) -> int:
        """producer.id.expiration.ms: forget idle producers (on the loop, like appends)."""
        now = self._now() if now_ms is None else now_ms
        return sum(
            lg.producer_state.remove_expired_producers(now)
            for lg in self.all_logs()
            if not lg.closed
        )

    def remove_deleted_files(self, now_ms: int | None = None) -> int:
        now = self._now() if now_ms is None else now_ms
        return sum(lg.remove_deleted_files(now) for lg in self.all_logs())

    # -- shutdown ----------------------------------------------------------------------

    def shutdown(self) -> None:
        """Flush and close every log, checkpoint, write clean markers, release locks."""
        failed: set[int] = set()

        def flush(item: tuple[TopicPartition, Log]) -> None:
            tp, lg = item
            try:
                lg.flush()
            except OSError as e:
                log.error("Failed to flush %s at shutdown: %s", lg.dir, e)
                failed.add(id(self._dir_of[tp]))

        with ThreadPoolExecutor(SHUTDOWN_THREADS, thread_name_prefix="log-shutdown") as pool:
            list(pool.map(flush, list(self._logs.items())))
            self.checkpoint()
            list(pool.map(Log.close, self.all_logs()))
        for d in self._dirs:
            if d.lock_fd >= 0 and id(d) not in failed:
                with contextlib.suppress(OSError):
                    write_atomic(d.path / CLEAN_SHUTDOWN_MARKER, b"")
            d.unlock()
        self._loaded = False
