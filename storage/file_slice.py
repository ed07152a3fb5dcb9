"""Open segment files and the slices of them that Fetch responses send with sendfile.

A ``SegmentFile`` owns one OS file descriptor. Segments drop their reference when they
evict an idle file (fd cap) or delete a segment; CPython refcounting then closes the fd
once the last ``FileSlice`` that still points at it is gone, so an in-flight sendfile
never races a close() or a reused fd number. Only shutdown closes explicitly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


class SegmentFile:
    """A raw fd with ``fileno()``; closed when explicitly closed or garbage collected."""

    __slots__ = ("fd", "path", "__weakref__")

    def __init__(self, path: Path, flags: int = os.O_RDWR) -> None:
        # No O_CREAT: segments create their file once; reopening a deleted one must fail.
        self.path = path
        self.fd = -1
        self.fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0), 0o644)

    def fileno(self) -> int:
        if self.fd < 0:
            raise ValueError(f"I/O operation on closed segment file {self.path}")
        return self.fd

    @property
    def closed(self) -> bool:
        return self.fd < 0

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def __del__(self) -> None:
        try:
            self.close()
        except OSError:
            pass

    def __repr__(self) -> str:
        return f"SegmentFile({str(self.path)!r}, fd={self.fd})"


@dataclass(frozen=True, slots=True)
class FileSlice:
    """``length`` bytes of ``file`` starting at ``position``: whole record batches."""

    file: SegmentFile
    position: int
    length: int

    def fileno(self) -> int:
        return self.file.fileno()

    def read(self) -> bytes:
        """The bytes of the slice (tests, replication fallbacks; Fetch uses sendfile)."""
        return os.pread(self.file.fileno(), self.length, self.position)
