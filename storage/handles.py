"""An LRU of open OS resources (segment fds, index mmaps) with a cap.

10,000 partitions with a few segments each would exhaust file descriptors and
``vm.max_map_count`` if every segment kept its file and indexes open. Owners register
on use; past the cap the least recently used owner is asked to release its resource.
Releasing a log file only drops the reference (see file_slice), never closes it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Protocol


class HandleOwner(Protocol):
    def release_handle(self) -> None: ...


# Budget: up to DEFAULT_MAX_OPEN_FILES log fds plus (before Python 3.13, where an mmap
# keeps a dup of its fd) DEFAULT_MAX_MAPPED_INDEXES index fds; raise RLIMIT_NOFILE.
DEFAULT_MAX_OPEN_FILES = 1000
DEFAULT_MAX_MAPPED_INDEXES = 1000


class HandleCache:
    """Least-recently-used set of owners holding an open handle."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("handle cache capacity must be >= 1")
        self.capacity = capacity
        self._owners: OrderedDict[int, HandleOwner] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._owners)

    def touch(self, owner: HandleOwner) -> None:
        """Mark ``owner`` as just used (it holds an open handle); evict past the cap."""
        key = id(owner)
        evicted: list[HandleOwner] = []
        with self._lock:
            owners = self._owners
            if key in owners:
                owners.move_to_end(key)
                return
            owners[key] = owner
            while len(owners) > self.capacity:
                evicted.append(owners.popitem(last=False)[1])
        for victim in evicted:
            victim.release_handle()

    def forget(self, owner: HandleOwner) -> None:
        """``owner`` released its handle itself (closed, deleted)."""
        with self._lock:
            self._owners.pop(id(owner), None)


class Handles:
    """The two caps a set of logs shares: open log files and mapped index files."""

    def __init__(
        self,
        max_open_files: int = DEFAULT_MAX_OPEN_FILES,
        max_mapped_indexes: int = DEFAULT_MAX_MAPPED_INDEXES,
    ) -> None:
        self.files = HandleCache(max_open_files)
        self.indexes = HandleCache(max_mapped_indexes)


_default: Handles | None = None


def default_handles() -> Handles:
    """The process-wide caps used by logs opened without a LogManager."""
    global _default
    if _default is None:
        _default = Handles()
    return _default
