"""A failed log dir takes only its own partitions offline (KIP-112, Kafka's JBOD).

Kafka's ``LogDirFailureChannel``: any I/O error on a log operation (append, roll, flush,
checkpoint, read, index) reports the log's dir here and surfaces to the caller as
KAFKA_STORAGE_ERROR. The first report of a dir logs one ERROR line naming it and tells
the listeners (the broker closes the dir's logs, takes its partitions offline and tells
the controller); later reports of the same dir are quiet. Reports may come from any
thread (flushes and checkpoints run in workers): listeners must hop to their loop.

A full disk (ENOSPC, EDQUOT) is not a failure of the dir, unlike in Kafka (which takes
the dir offline and, with a single dir, stops the broker): the write that did not fit
fails with KAFKA_STORAGE_ERROR, the log stays consistent (appends roll back), reads go on,
and writes succeed again once space is freed. A warning says so, at most once a minute.

``GuardedLog`` is the Log every LogManager hands out: its public operations convert an
``OSError`` into a report plus ``KafkaStorageError`` (Kafka's
``LocalLog.maybeHandleIOException``), so every handler that answers a ``KafkaError``
answers code 56 for a partition in a failed dir without knowing about dirs.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

from pybroker.protocol.errors import KafkaStorageError
from pybroker.storage.log import Log

log = logging.getLogger(__name__)

FailureListener = Callable[[str], None]
OUT_OF_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
FULL_WARNING_INTERVAL_S = 60.0


def out_of_space(exc: BaseException | None) -> bool:
    """Did ``exc`` (or what caused it) come from a full disk or an exhausted quota?"""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in OUT_OF_SPACE:
            return True
        exc = exc.__cause__
    return False


F = TypeVar("F", bound=Callable[..., Any])


def dir_key(path: Path | str) -> str:
    """How a log dir is named everywhere: its absolute path (as DescribeLogDirs shows)."""
    return os.path.abspath(path)


class LogDirFailureChannel:
    """Which log dirs are offline; thread-safe; listeners hear each dir once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offline: dict[str, str] = {}
        self._listeners: list[FailureListener] = []
        self._full_warned: dict[str, float] = {}  # dir -> when we last said it is full

    def add_listener(self, listener: FailureListener) -> None:
        self._listeners.append(listener)

    def is_offline(self, path: Path | str) -> bool:
        return dir_key(path) in self._offline

    @property
    def offline_dirs(self) -> list[str]:
        with self._lock:
            return list(self._offline)

    def report(self, path: Path | str, message: str, exc: BaseException | None = None) -> bool:
        """The dir at ``path`` failed; True when this is news (the first report)."""
        key = dir_key(path)
        if out_of_space(exc):
            self._warn_full(key, message, exc)
            return False
        with self._lock:
            if key in self._offline:
                return False
            self._offline[key] = message
        cause = f": {exc!r}" if exc is not None else ""
        log.error("Log directory %s failed and is now offline: %s%s", key, message, cause)
        for listener in list(self._listeners):
            try:
                listener(key)
            except Exception:
                log.exception("log dir failure listener failed")
        return True

    def _warn_full(self, key: str, message: str, exc: BaseException | None) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._full_warned.get(key)
            if last is not None and now - last < FULL_WARNING_INTERVAL_S:
                return
            self._full_warned[key] = now
        log.warning(
            "Log directory %s is full: %s: %r. Writes to it fail with KAFKA_STORAGE_ERROR "
            "until space is freed; it stays online and keeps serving reads.",
            key,
            message,
            exc,
        )


def _guard(method: F) -> F:
    name = method.__name__

    @wraps(method)
    def guarded(self: GuardedLog, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except OSError as exc:
            raise self.storage_failure(f"Error in {name} of {self.dir.name}", exc) from exc
        except KafkaStorageError as exc:
            # Log already turned an I/O error into KAFKA_STORAGE_ERROR: still a dir failure.
            # (Without an OSError cause it is a closed or deleted log: no news.)
            if isinstance(exc.__cause__, OSError) and self.failures is not None:
                self.failures.report(self.log_dir, str(exc), exc.__cause__)
            raise

    return guarded  # type: ignore[return-value]


class GuardedLog(Log):
    """A Log whose I/O errors take its dir offline (see the module docstring)."""

    failures: LogDirFailureChannel | None = None

    @property
    def log_dir(self) -> Path:
        """The log dir (an entry of ``log.dirs``) holding this partition."""
        return self.dir.parent

    def storage_failure(self, message: str, exc: BaseException) -> KafkaStorageError:
        if self.failures is not None:
            self.failures.report(self.log_dir, message, exc)
        return KafkaStorageError(
            f"Error while operating on {self.topic}-{self.partition} in dir {self.log_dir}: {exc}"
        )

    append_as_leader = _guard(Log.append_as_leader)
    append_as_follower = _guard(Log.append_as_follower)
    roll = _guard(Log.roll)
    read = _guard(Log.read)
    flush = _guard(Log.flush)
    truncate_to = _guard(Log.truncate_to)
    truncate_fully_and_start_at = _guard(Log.truncate_fully_and_start_at)
    delete_records_before = _guard(Log.delete_records_before)
    delete_old_segments = _guard(Log.delete_old_segments)
    remove_deleted_files = _guard(Log.remove_deleted_files)
    fetch_offset_for_timestamp = _guard(Log.fetch_offset_for_timestamp)
    assign_epoch_start_offset = _guard(Log.assign_epoch_start_offset)
    collect_aborted_txns = _guard(Log.collect_aborted_txns)
    replace_segments = _guard(Log.replace_segments)
