"""All partition logs of a broker across its ``log.dirs``.

Start-up locks each dir, reads the per-dir checkpoints and the clean-shutdown marker,
opens every ``<topic>-<partition>`` dir (recovering after a crash) and then removes the
marker, so a crash from then on is seen as unclean at the next start. Shutdown flushes,
checkpoints, closes and writes the markers again.

JBOD (KIP-112): a dir that cannot be used at start-up, or whose I/O fails later (see
``log_dir_failure``), is offline: its logs are closed and forgotten, no new log goes
there, and the broker keeps serving from the others. With every dir offline the broker
cannot run (start-up refuses; later the broker halts, as Kafka does).

Moving a replica between dirs (KIP-113): a ``<topic>-<p>.<uuid>-future`` log in the
target dir is filled by the replication layer (``replication.log_dir_mover``) and then
swapped in: ``swap_ready`` marks it complete on disk, the current dir is renamed away
(``-delete``) and the future renamed to ``<topic>-<p>`` and reopened. At start-up a
leftover future is deleted when its current log exists (the move did not finish; it
must be asked again) and promoted when it was marked complete and the current is gone
(a crash between the renames).
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
from dataclasses import dataclass
from pathlib import Path

from pybroker.config.topic_config import TopicConfig
from pybroker.protocol.errors import ErrorCode, KafkaError, KafkaStorageError
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
from pybroker.storage.kraft_metadata import METADATA_DIR as KRAFT_METADATA_DIR
from pybroker.storage.log import Log, log_dir_name, parse_log_dir_name, wall_ms
from pybroker.storage.log_dir_failure import GuardedLog, LogDirFailureChannel, dir_key
from pybroker.storage.producer_state import DEFAULT_PRODUCER_ID_EXPIRATION_MS

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
FUTURE_SUFFIX = "-future"
# Written (fsynced) into a future log's dir once it holds everything the current log has:
# from then on the future, not the current, is the replica (see swap_future).
SWAP_READY = "swap-ready"
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
        "bootstrap.checkpoint",  # Kafka KRaft's bootstrap metadata (migrated log dirs)
    }
)


class _LogDir:
    """One entry of log.dirs: its lock and the checkpoints read at start-up."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.key = dir_key(path)
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


@dataclass(frozen=True, slots=True)
class ReplicaOnDisk:
    """One partition's log as DescribeLogDirs reports it."""

    topic: str
    partition: int
    size_bytes: int
    # How far the log end lags the high watermark (Kafka: max(HW - LEO, 0); 0 for a leader);
    # for a future replica how far it lags the current one.
    offset_lag: int
    is_future: bool = False


@dataclass(frozen=True, slots=True)
class LogDirDescription:
    """A log dir: its absolute path, its volume's total and usable bytes, its replicas."""

    path: str
    total_bytes: int
    usable_bytes: int
    replicas: tuple[ReplicaOnDisk, ...]
    offline: bool = False  # a failed dir: KAFKA_STORAGE_ERROR, no replicas, sizes -1


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
        # Replicas being moved to another dir (KIP-113): tp -> (future log, its dir).
        self._futures: dict[TopicPartition, tuple[Log, _LogDir]] = {}
        self._lock = threading.Lock()  # guards _logs against a checkpointing thread
        self._loaded = False
        self.failures = LogDirFailureChannel()

    # -- dirs --------------------------------------------------------------------------

    def is_online(self, d: _LogDir) -> bool:
        return not self.failures.is_offline(d.key)

    @property
    def offline_dirs(self) -> list[str]:
        return self.failures.offline_dirs

    def find_dir(self, path: str) -> _LogDir:
        """The configured dir at ``path`` (absolute), else LOG_DIR_NOT_FOUND."""
        key = dir_key(path)
        for d in self._dirs:
            if d.key == key:
                return d
        raise KafkaError(f"Log dir {key} is not found in the config.", ErrorCode.log_dir_not_found)

    def dir_of(self, topic: str, partition: int) -> str | None:
        d = self._dir_of.get((topic, partition))
        return d.key if d is not None else None

    # -- start-up ----------------------------------------------------------------------

    def load(self) -> None:
        """Lock every usable dir, open every partition log in it, then drop the clean
        markers. A dir that cannot be created, locked or read is offline (Kafka's
        createAndValidateLogDirs / loadLogs); none usable at all refuses to start."""
        locked: list[_LogDir] = []
        futures: list[tuple[_LogDir, Path, TopicPartition]] = []
        try:
            for d in self._dirs:
                try:
                    d.lock()
                except LogDirLockedError:
                    raise
                except OSError as e:
                    self.failures.report(
                        d.path, f"Failed to create or validate data dir {d.key}", e
                    )
                    continue
                locked.append(d)
            for d in locked:
                try:
                    futures += self._load_dir(d)
                except KafkaStorageError as e:
                    self._drop_dir_logs(d)
                    self.failures.report(d.path, f"Error while loading log dir {d.key}", e)
                except OSError as e:
                    self._drop_dir_logs(d)
                    self.failures.report(d.path, f"Error while loading log dir {d.key}", e)
            if not any(self.is_online(d) for d in self._dirs):
                raise KafkaStorageError(
                    "None of the specified log dirs from "
                    f"{', '.join(d.key for d in self._dirs)} can be created or validated"
                )
            self._settle_futures(futures)
        except BaseException:
            for d in locked:
                d.unlock()
            raise
        for d in self._dirs:
            marker = d.path / CLEAN_SHUTDOWN_MARKER
            if d.lock_fd >= 0 and self.is_online(d) and marker.exists():
                marker.unlink()
                with contextlib.suppress(OSError):
                    fsync_dir(d.path)
        self._loaded = True

    def _drop_dir_logs(self, d: _LogDir) -> list[TopicPartition]:
        with self._lock:
            gone = [tp for tp, owner in self._dir_of.items() if owner is d]
            logs = [self._logs.pop(tp) for tp in gone]
            for tp in gone:
                del self._dir_of[tp]
        for lg in logs:
            _drop_handles(lg)
        return gone

    def _open(self, path: Path, config: TopicConfig, **kwargs: object) -> Log:
        lg = GuardedLog.open(
            path,
            config,
            now_ms=self._now,
            handles=self.handles,
            producer_id_expiration_ms=self.producer_id_expiration_ms,
            **kwargs,  # type: ignore[arg-type]
        )
        assert isinstance(lg, GuardedLog)
        lg.failures = self.failures
        return lg

    def _load_dir(self, d: _LogDir) -> list[tuple[_LogDir, Path, TopicPartition]]:
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
        futures = []
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
            if name == KRAFT_METADATA_DIR:
                # Kafka's own KRaft metadata log (a log dir copied from Kafka): not a
                # partition of ours; read by kraft_metadata at start-up, left untouched.
                log.info("Leaving Kafka's metadata log %s in %s untouched", name, d.path)
                continue
            if name.endswith(FUTURE_SUFFIX):
                future_of = parse_log_dir_name(name.rsplit(".", 1)[0])
                if future_of is not None:
                    futures.append((d, Path(entry.path), future_of))
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
            lg = self._open(
                Path(entry.path),
                self.topic_config_for(topic),
                recovery_point=recovery_points.get(parsed, 0),
                log_start_offset=start_offsets.get(parsed),
                high_watermark=high_watermarks.get(parsed),
                clean_shutdown=clean,
            )
            with self._lock:
                self._logs[parsed] = lg
                self._dir_of[parsed] = d
        return futures

    def _settle_futures(self, futures: list[tuple[_LogDir, Path, TopicPartition]]) -> None:
        """Leftover ``-future`` logs of a move interrupted by a crash (see the module)."""
        for d, path, tp in futures:
            if not self.is_online(d):
                continue
            if tp in self._logs:
                log.warning(
                    "Deleting future log %s of an unfinished move of %s-%d (its current log "
                    "%s is intact; ask AlterReplicaLogDirs again to move it)",
                    path,
                    tp[0],
                    tp[1],
                    self._logs[tp].dir,
                )
                shutil.rmtree(path, ignore_errors=True)
                continue
            if not (path / SWAP_READY).exists():
                if self.offline_dirs:
                    log.warning("Keeping future log %s: its current log may be offline", path)
                else:
                    log.warning("Deleting incomplete future log %s (no current log)", path)
                    shutil.rmtree(path, ignore_errors=True)
                continue
            final = path.with_name(log_dir_name(*tp))
            log.info("Completing the move of %s-%d into %s", tp[0], tp[1], d.path)
            os.rename(path, final)
            (final / SWAP_READY).unlink()
            fsync_dir(d.path)
            lg = self._open(final, self.topic_config_for(tp[0]))
            with self._lock:
                self._logs[tp] = lg
                self._dir_of[tp] = d

    # -- lookup and creation -----------------------------------------------------------

    def get_log(self, topic: str, partition: int) -> Log | None:
        return self._logs.get((topic, partition))

    def all_logs(self) -> list[Log]:
        return list(self._logs.values())

    def get_or_create_log(
        self, topic: str, partition: int, topic_id: uuid.UUID, config: TopicConfig
    ) -> Log:
        """The partition's log, created in the online dir holding the fewest partitions."""
        tp = (topic, partition)
        existing = self._logs.get(tp)
        if existing is not None:
            return existing
        online = [d for d in self._dirs if self.is_online(d)]
        if not online:
            raise KafkaStorageError(f"Can not create log for {topic}-{partition}: no log dir")
        if len(online) == 1:
            d = online[0]  # (counting is O(partitions): 10,000 creations would be O(n^2))
        else:
            counts = {id(d): 0 for d in online}
            for owner in self._dir_of.values():
                if id(owner) in counts:
                    counts[id(owner)] += 1
            d = min(online, key=lambda x: counts[id(x)])
        try:
            lg = self._open(d.path / log_dir_name(topic, partition), config, topic_id=topic_id)
        except OSError as e:
            self.failures.report(d.path, f"Error while creating log for {topic}-{partition}", e)
            raise KafkaStorageError(f"Error while creating log for {topic}-{partition}") from e
        with self._lock:
            self._logs[tp] = lg
            self._dir_of[tp] = d
        log.info("Created log for partition %s-%d in %s", topic, partition, d.path)
        return lg

    def describe_dirs(
        self, wanted: Callable[[str, int], bool] | None = None
    ) -> list[LogDirDescription]:
        """Every log dir with the replicas it holds (those ``wanted`` accepts; None: all).

        Sizes are the segment files' current sizes; total and usable bytes come from the
        file system of each dir (statvfs), as Kafka's DescribeLogDirs v4 reports them. An
        offline dir is listed with no replicas (Kafka answers it KAFKA_STORAGE_ERROR).
        Future replicas (a move in progress) are listed in their target dir.
        """
        with self._lock:
            placed = [(tp, self._dir_of[tp], lg, False) for tp, lg in self._logs.items()]
            placed += [(tp, d, lg, True) for tp, (lg, d) in self._futures.items()]
        out = []
        for d in self._dirs:
            if not self.is_online(d):
                out.append(LogDirDescription(d.key, -1, -1, (), offline=True))
                continue
            replicas = []
            for (topic, partition), owner, lg, future in placed:
                if owner is not d or not (wanted is None or wanted(topic, partition)):
                    continue
                if future:
                    current = self._logs.get((topic, partition))
                    leo = current.log_end_offset if current is not None else lg.log_end_offset
                    lag = max(leo - lg.log_end_offset, 0)
                else:
                    lag = max(lg.high_watermark - lg.log_end_offset, 0)
                replicas.append(ReplicaOnDisk(topic, partition, lg.size_bytes(), lag, future))
            try:
                st = os.statvfs(d.path)
                total, usable = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
            except OSError:
                total = usable = -1
            out.append(LogDirDescription(d.key, total, usable, tuple(replicas)))
        return out

    def delete_log(self, topic: str, partition: int) -> None:
        """Remove the partition's log and its files (Kafka's ``.<uuid>-delete`` rename)."""
        with self._lock:
            lg = self._logs.pop((topic, partition), None)
            self._dir_of.pop((topic, partition), None)
        if lg is not None:
            _detach(lg)
            lg.delete()
        self.abort_future(topic, partition)

    def update_config(self, topic: str, config: TopicConfig) -> None:
        for (t, _), lg in list(self._logs.items()):
            if t == topic:
                lg.update_config(config)
        for (t, _), (lg, _d) in list(self._futures.items()):
            if t == topic:
                lg.update_config(config)

    # -- failures ----------------------------------------------------------------------

    def handle_dir_failure(self, key: str) -> tuple[list[TopicPartition], list[TopicPartition]]:
        """The dir ``key`` failed: close and forget its logs and future logs (Kafka's
        LogManager.handleLogDirFailure). Returns (current replicas, future replicas)."""
        d = self.find_dir(key)
        gone = self._drop_dir_logs(d)
        with self._lock:
            futures = [tp for tp, (_, owner) in self._futures.items() if owner is d]
            future_logs = [self._futures.pop(tp)[0] for tp in futures]
        for lg in future_logs:
            _drop_handles(lg)
        d.unlock()
        log.warning(
            "Logs for partitions %s are offline and logs for future partitions %s are offline "
            "due to failure on log directory %s",
            ",".join(f"{t}-{p}" for t, p in sorted(gone)),
            ",".join(f"{t}-{p}" for t, p in sorted(futures)),
            d.key,
        )
        return gone, futures

    @property
    def loaded(self) -> bool:
        return self._loaded

    @property
    def all_dirs_offline(self) -> bool:
        return not any(self.is_online(d) for d in self._dirs)

    # -- moving replicas between dirs (KIP-113) ---------------------------------------

    def future_log(self, topic: str, partition: int) -> tuple[Log, str] | None:
        got = self._futures.get((topic, partition))
        return (got[0], got[1].key) if got is not None else None

    def create_future_log(self, topic: str, partition: int, dest: str) -> Log:
        """An empty ``<topic>-<p>.<uuid>-future`` log in ``dest`` for the current log."""
        tp = (topic, partition)
        current = self._logs[tp]
        d = self.find_dir(dest)
        if not self.is_online(d):
            raise KafkaStorageError(f"Log directory {d.key} is offline")
        path = d.path / f"{log_dir_name(topic, partition)}.{uuid.uuid4().hex}{FUTURE_SUFFIX}"
        try:
            lg = self._open(path, current.config, topic_id=current.topic_id)
        except OSError as e:
            self.failures.report(
                d.path, f"Error while creating future log for {topic}-{partition}", e
            )
            raise KafkaStorageError(
                f"Error while creating future log for {topic}-{partition}"
            ) from e
        with self._lock:
            self._futures[tp] = (lg, d)
        log.info("Created future log for %s-%d in %s", topic, partition, d.path)
        return lg

    def abort_future(self, topic: str, partition: int) -> None:
        with self._lock:
            got = self._futures.pop((topic, partition), None)
        if got is not None:
            lg, d = got
            _detach(lg)
            lg.delete()
            log.info("Removed future log of %s-%d from %s", topic, partition, d.key)

    def swap_future(self, topic: str, partition: int) -> tuple[Log, Log, Path]:
        """Make the (caught-up, flushed) future log the partition's log: (old, new, the
        old log's renamed dir, to remove once the old log is closed).

        Runs on the event loop with no append in between: the caller copied the last
        batches and flushed. Order on disk: mark the future complete, rename the current
        away, rename the future into place. The old Log object keeps its open files (reads
        in flight finish) and is detached from failure reporting; the caller closes it.
        """
        tp = (topic, partition)
        future, d = self._futures[tp]
        old = self._logs[tp]
        old_dir = self._dir_of[tp]
        write_atomic(future.dir / SWAP_READY, b"")
        fsync_dir(future.dir)
        _detach(old)
        retired = old.dir.with_name(f"{old.dir.name}.{uuid.uuid4().hex}-delete")
        try:
            os.rename(old.dir, retired)
            fsync_dir(old_dir.path)
        except OSError as e:
            self.failures.report(old_dir.path, f"Error while retiring {old.dir}", e)
            raise KafkaStorageError(f"Error while retiring {old.dir}") from e
        final = d.path / log_dir_name(topic, partition)
        future_dir = future.dir
        hw, start = old.high_watermark, old.log_start_offset
        _close_quietly(future)
        os.rename(future_dir, final)
        (final / SWAP_READY).unlink()
        fsync_dir(d.path)
        new = self._open(
            final,
            old.config,
            recovery_point=future.recovery_point,
            log_start_offset=start,
            high_watermark=hw,
            clean_shutdown=True,
        )
        with self._lock:
            self._futures.pop(tp, None)
            self._logs[tp] = new
            self._dir_of[tp] = d
        log.info("Moved %s-%d from %s to %s", topic, partition, old_dir.key, d.key)
        return old, new, retired

    # -- periodic work -----------------------------------------------------------------

    def checkpoint(self) -> None:
        """Write recovery points, log start offsets and high watermarks of every dir."""
        with self._lock:
            items = [(tp, lg, self._dir_of[tp]) for tp, lg in self._logs.items()]
        for d in self._dirs:
            if d.lock_fd < 0 or not self.is_online(d):
                continue  # not ours (never locked, or another process holds it), or failed
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
                self.failures.report(
                    d.path, f"Disk error while writing offset checkpoints in directory {d.key}", e
                )

    def flush_dirty_logs(self, now_ms: int | None = None) -> int:
        """Flush the logs whose flush.messages / flush.ms policy says so."""
        now = self._now() if now_ms is None else now_ms
        flushed = 0
        for lg in self.all_logs():
            if not lg.closed and lg.needs_flush(now):
                with contextlib.suppress(KafkaStorageError):  # reported: its dir is offline
                    lg.flush()
                    flushed += 1
        return flushed

    def cleanup_logs(self, now_ms: int | None = None) -> int:
        """Retention pass over every log; returns the number of segments deleted."""
        now = self._now() if now_ms is None else now_ms
        deleted = 0
        for lg in self.all_logs():
            if not lg.closed:
                with contextlib.suppress(KafkaStorageError):
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
        removed = 0
        for lg in self.all_logs():
            with contextlib.suppress(KafkaStorageError):
                removed += lg.remove_deleted_files(now)
        return removed

    # -- shutdown ----------------------------------------------------------------------

    def shutdown(self) -> None:
        """Flush and close every log, checkpoint, write clean markers, release locks."""
        failed: set[int] = set()

        def flush(item: tuple[TopicPartition, Log]) -> None:
            tp, lg = item
            try:
                lg.flush()
            except (OSError, KafkaStorageError) as e:
                log.error("Failed to flush %s at shutdown: %s", lg.dir, e)
                failed.add(id(self._dir_of[tp]))

        with self._lock:
            futures = [lg for lg, _ in self._futures.values()]
        for lg in futures:
            _close_quietly(lg)  # an unfinished move is deleted at the next start
        with ThreadPoolExecutor(SHUTDOWN_THREADS, thread_name_prefix="log-shutdown") as pool:
            list(pool.map(flush, list(self._logs.items())))
            self.checkpoint()
            list(pool.map(_close_quietly, self.all_logs()))
        for d in self._dirs:
            if d.lock_fd >= 0 and id(d) not in failed and self.is_online(d):
                with contextlib.suppress(OSError):
                    write_atomic(d.path / CLEAN_SHUTDOWN_MARKER, b"")
            d.unlock()
        self._loaded = False


def _detach(lg: Log) -> None:
    """A log being deleted or replaced: errors from work still running on it (a flush or
    cleaning in a worker) are expected and must not take its dir offline."""
    if isinstance(lg, GuardedLog):
        lg.failures = None


def _drop_handles(lg: Log) -> None:
    """Kafka's closeHandlers for a log in a failed dir: close its files, write nothing."""
    _detach(lg)
    lg._closed = True  # stale references get "closed" (KAFKA_STORAGE_ERROR), not I/O errors
    for seg in lg.segments:
        with contextlib.suppress(Exception):
            seg.close()


def _close_quietly(lg: Log) -> None:
    """Close a log whose dir may have failed: errors are expected and not news."""
    try:
        lg.close()
    except Exception as e:
        log.debug("Error closing %s: %r", lg.dir, e)
