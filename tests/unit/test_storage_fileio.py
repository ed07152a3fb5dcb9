"""storage.fileio: the one atomic file write and fsync-by-path every metadata file uses."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from pybroker.storage import fileio
from pybroker.storage.fileio import fsync_dir, fsync_path, write_all, write_atomic


def _fsynced(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, bool]]:
    """Record each fsync as (inode, is a directory), then really fsync."""
    calls: list[tuple[int, bool]] = []
    real = os.fsync

    def spy(fd: int) -> None:
        st = os.fstat(fd)
        calls.append((st.st_ino, stat.S_ISDIR(st.st_mode)))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return calls


def _short_writes(monkeypatch: pytest.MonkeyPatch, limit: int = 3) -> list[int]:
    """Make os.write write at most ``limit`` bytes a call, as a pipe or full disk may."""
    sizes: list[int] = []
    real = os.write

    def short(fd: int, data: bytes | memoryview) -> int:
        n = real(fd, bytes(data[:limit]))
        sizes.append(n)
        return n

    monkeypatch.setattr(os, "write", short)
    return sizes


def test_write_atomic_writes_exact_content_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "recovery-point-offset-checkpoint"
    path.write_bytes(b"old contents that are longer than the new ones")
    write_atomic(path, b"0\n1\nt 0 42\n")
    assert path.read_bytes() == b"0\n1\nt 0 42\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_write_atomic_empty_file(tmp_path: Path) -> None:
    path = tmp_path / ".kafka_cleanshutdown"
    write_atomic(path, b"")
    assert path.read_bytes() == b""


def test_write_atomic_completes_short_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = bytes(range(256)) * 5
    sizes = _short_writes(monkeypatch)
    path = tmp_path / "snap"
    write_atomic(path, data)
    assert path.read_bytes() == data
    assert max(sizes) == 3 and sum(sizes) == len(data)


def test_write_all_completes_short_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _short_writes(monkeypatch, limit=1)
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
    try:
        write_all(fd, b"hello world")
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == b"hello world"


def _fail_second_write(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first write lands 4 bytes in the temp file, the next finds the disk full."""
    real = os.write
    calls = 0

    def failing(fd: int, data: bytes | memoryview) -> int:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise OSError(28, "No space left on device")
        return real(fd, bytes(data[:4]))

    monkeypatch.setattr(os, "write", failing)


def _fail_fsync(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing)


@pytest.mark.parametrize("fail", [_fail_second_write, _fail_fsync], ids=["write", "fsync"])
def test_failure_keeps_old_file_and_removes_temp(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fail: Callable[[pytest.MonkeyPatch], None],
) -> None:
    path = tmp_path / "leader-epoch-checkpoint"
    path.write_bytes(b"0\n1\n0 0\n")
    fail(monkeypatch)
    with pytest.raises(OSError):
        write_atomic(path, b"0\n2\n0 0\n5 100\n")
    assert path.read_bytes() == b"0\n1\n0 0\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_write_atomic_fsyncs_file_then_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _fsynced(monkeypatch)
    path = tmp_path / "replication-offset-checkpoint"
    write_atomic(path, b"0\n0\n")
    assert calls == [(path.stat().st_ino, False), (tmp_path.stat().st_ino, True)]


def test_write_atomic_without_sync_fsyncs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _fsynced(monkeypatch)
    path = tmp_path / "00000000000000000042.snapshot"
    write_atomic(path, b"snap", sync=False)
    assert path.read_bytes() == b"snap"
    assert calls == []


def test_directory_fsync_failure_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some filesystems refuse a directory fsync; the file is written and renamed anyway."""

    def refuse(path: Path) -> None:
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(fileio, "fsync_dir", refuse)
    path = tmp_path / "f"
    write_atomic(path, b"data")
    assert path.read_bytes() == b"data"


def test_write_atomic_replaces_a_stale_temp_file(tmp_path: Path) -> None:
    """A .tmp left by a crash is overwritten, not appended to."""
    path = tmp_path / "pybroker-cluster-metadata.json"
    (tmp_path / (path.name + fileio.TMP_SUFFIX)).write_bytes(b"x" * 100)
    write_atomic(path, b"{}")
    assert path.read_bytes() == b"{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_fsync_path_and_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "00000000000000000000.index"
    path.write_bytes(b"\0" * 8)
    calls = _fsynced(monkeypatch)
    assert fsync_path(path) is True
    assert fsync_path(tmp_path / "gone") is False
    fsync_dir(tmp_path)
    assert calls == [(path.stat().st_ino, False), (tmp_path.stat().st_ino, True)]
