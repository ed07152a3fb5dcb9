"""The one way this broker replaces a small file and makes a file or a rename durable.

Checkpoints, ``partition.metadata``, producer-state snapshots, compacted ``.txnindex`` files
and the replication layer's metadata files are all written with :func:`write_atomic`
(Kafka's ``Utils.atomicMoveWithFallback`` after writing a temp file): the bytes go to
``<name>.tmp`` next to the target, every byte is written (``os.write`` may write fewer
than asked), the file is fsynced, renamed over the target, and the directory is fsynced so
the rename itself survives a power loss. A crash therefore leaves the old file or the new
one, never a torn one; at worst a ``<name>.tmp`` stays behind, which the log-dir loader
ignores and partition recovery deletes (both key on the ``.tmp`` suffix).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

TMP_SUFFIX = ".tmp"


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """Write every byte of ``data`` to ``fd``: one ``os.write`` may stop short."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_dir(path: Path) -> None:
    """Make a rename, creation or deletion of a file in directory ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_path(path: Path) -> bool:
    """fsync the file at ``path`` through a fresh fd; False if it no longer exists.

    Opening by path lets a flush thread sync a file whose owner may close, rename or
    delete it meanwhile (a deleted file needs no sync).
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def write_atomic(path: Path, data: bytes, *, sync: bool = True) -> None:
    """Replace ``path`` with ``data`` so a crash leaves either the old or the new file.

    ``sync=False`` skips both fsyncs: the new file survives a process crash but maybe not a
    power loss (for hot-path writes whose durable copy a later flush makes). On any failure
    before the rename the temp file is removed and the old file is untouched. A failing
    directory fsync is ignored, as some filesystems refuse it: the file's bytes are durable
    already and only the rename might be lost, which leaves the old file.
    """
    tmp = path.with_name(path.name + TMP_SUFFIX)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            write_all(fd, data)
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if sync:
        with contextlib.suppress(OSError):
            fsync_dir(path.parent)


__all__ = ["TMP_SUFFIX", "fsync_dir", "fsync_path", "write_all", "write_atomic"]
