"""JBOD in the LogManager: failed dirs (KIP-112) and future logs of moves (KIP-113)."""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from pathlib import Path

import pytest

from pybroker.protocol.errors import ErrorCode, KafkaError, KafkaStorageError
from pybroker.storage.log_manager import SWAP_READY, LogManager
from tests.unit.test_storage_support import Clock, all_bytes, fill, topic_config

TID = uuid.UUID("0f0e0d0c-0b0a-0908-0706-050403020100")


def manager(dirs: list[Path], **overrides: object) -> LogManager:
    cfg = topic_config(**overrides)
    return LogManager(dirs, lambda topic: cfg, now_ms=Clock())


def break_dir(path: Path) -> None:
    """Kafka's TestUtils.causeLogDirFailure: the dir becomes a file."""
    shutil.rmtree(path)
    path.write_bytes(b"")


def test_roll_in_a_failed_dir_reports_it_once(tmp_path: Path) -> None:
    dirs = [tmp_path / "a", tmp_path / "b"]
    mgr = manager(dirs, segment_bytes=300)
    heard: list[str] = []
    mgr.failures.add_listener(heard.append)
    mgr.load()
    cfg = topic_config(segment_bytes=300)
    good, bad = (mgr.get_or_create_log("t", p, TID, cfg) for p in range(2))
    assert bad.dir.parent == dirs[1]
    break_dir(dirs[1])
    with pytest.raises(KafkaStorageError):
        fill(bad, 20)  # the first roll cannot create its segment
    with pytest.raises(KafkaStorageError):
        bad.roll()
    assert heard == [os.path.abspath(dirs[1])]  # once, however many errors
    fill(good, 20)  # the other dir is untouched

    gone, futures = mgr.handle_dir_failure(heard[0])
    assert gone == [("t", 1)] and futures == []
    assert mgr.get_log("t", 1) is None and mgr.get_log("t", 0) is good
    described = {d.path: d for d in mgr.describe_dirs()}
    assert described[os.path.abspath(dirs[1])].offline
    assert described[os.path.abspath(dirs[1])].replicas == ()
    assert [r.partition for r in described[os.path.abspath(dirs[0])].replicas] == [0]
    # New logs go to the dirs still online only.
    assert mgr.get_or_create_log("u", 0, TID, cfg).dir.parent == dirs[0]
    mgr.checkpoint()  # skips the failed dir without reporting it again
    assert len(heard) == 1
    mgr.shutdown()


def test_a_full_disk_fails_the_write_but_not_the_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC is not a dir failure (unlike Kafka): the append fails, the dir stays online
    and the next append after space is freed succeeds."""
    from pybroker.storage import segment as segment_module

    mgr = manager([tmp_path / "a"])
    heard: list[str] = []
    mgr.failures.add_listener(heard.append)
    mgr.load()
    lg = mgr.get_or_create_log("t", 0, TID, topic_config())
    fill(lg, 2)

    def disk_full(fd: int, data: memoryview, position: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(segment_module, "_pwrite", disk_full)
    with pytest.raises(KafkaStorageError):
        fill(lg, 1)
    assert heard == [] and mgr.failures.offline_dirs == []
    monkeypatch.undo()
    fill(lg, 1)
    assert lg.log_end_offset == 3
    assert mgr.get_log("t", 0) is lg


def test_checkpoint_reports_a_failed_dir(tmp_path: Path) -> None:
    dirs = [tmp_path / "a", tmp_path / "b"]
    mgr = manager(dirs)
    mgr.load()
    mgr.get_or_create_log("t", 0, TID, topic_config())
    break_dir(dirs[1])
    mgr.checkpoint()
    assert mgr.offline_dirs == [os.path.abspath(dirs[1])]
    assert not mgr.all_dirs_offline
    mgr.shutdown()


def test_unusable_dir_at_start_up_is_offline(tmp_path: Path) -> None:
    dirs = [tmp_path / "a", tmp_path / "b"]
    dirs[1].write_bytes(b"")
    mgr = manager(dirs)
    mgr.load()
    assert mgr.offline_dirs == [os.path.abspath(dirs[1])]
    mgr.shutdown()
    with pytest.raises(KafkaStorageError, match="can be created or validated"):
        manager([dirs[1]]).load()


def test_unknown_dir_is_log_dir_not_found(tmp_path: Path) -> None:
    mgr = manager([tmp_path / "a"])
    mgr.load()
    with pytest.raises(KafkaError) as info:
        mgr.find_dir(str(tmp_path / "z"))
    assert info.value.code == ErrorCode.log_dir_not_found
    mgr.shutdown()


def test_future_log_swap_keeps_every_batch(tmp_path: Path) -> None:
    dirs = [tmp_path / "a", tmp_path / "b"]
    mgr = manager(dirs)
    mgr.load()
    cfg = topic_config()
    lg = mgr.get_or_create_log("t", 0, TID, cfg)
    fill(lg, 30)
    lg.high_watermark = lg.log_end_offset
    future = mgr.create_future_log("t", 0, str(dirs[1]))
    assert future.dir.name.startswith("t-0.") and future.dir.name.endswith("-future")
    (described,) = [d for d in mgr.describe_dirs() if d.path == os.path.abspath(dirs[1])]
    (r,) = described.replicas
    assert r.is_future and r.offset_lag == 30
    future.append_as_follower(bytearray(all_bytes(lg)))
    future.flush()
    old, new, retired = mgr.swap_future("t", 0)
    assert old is lg and mgr.get_log("t", 0) is new
    assert new.dir == dirs[1] / "t-0" and retired.name.endswith("-delete")
    assert not (dirs[0] / "t-0").exists() and not (new.dir / SWAP_READY).exists()
    assert all_bytes(new) == all_bytes(old)
    assert new.high_watermark == 30 and new.log_end_offset == 30
    mgr.shutdown()


def test_start_up_settles_leftover_futures(tmp_path: Path) -> None:
    dirs = [tmp_path / "a", tmp_path / "b"]
    mgr = manager(dirs)
    mgr.load()
    cfg = topic_config()
    for p in range(2):
        lg = mgr.get_or_create_log("t", p, TID, cfg)
        fill(lg, 10)
        future = mgr.create_future_log(
            "t", p, str(dirs[1] if lg.dir.parent == dirs[0] else dirs[0])
        )
        future.append_as_follower(bytearray(all_bytes(lg)))
        future.flush()
    expected = all_bytes(mgr.get_log("t", 1))
    f1 = mgr.future_log("t", 1)
    assert f1 is not None
    f1_dir = f1[0].dir
    current1 = mgr.get_log("t", 1).dir  # type: ignore[union-attr]
    mgr.shutdown()
    # t-0: crashed mid-copy (current intact). t-1: crashed between the swap's renames.
    (f1_dir / SWAP_READY).write_bytes(b"")
    os.rename(current1, current1.with_name(f"t-1.{uuid.uuid4().hex}-delete"))

    again = manager(dirs)
    again.load()
    assert again.future_log("t", 0) is None and again.future_log("t", 1) is None
    assert sorted(p.name for d in dirs for p in d.glob("t-*")) == ["t-0", "t-1"]
    assert again.get_log("t", 1).dir == f1_dir.with_name("t-1")  # type: ignore[union-attr]
    assert all_bytes(again.get_log("t", 1)) == expected  # type: ignore[arg-type]
    again.shutdown()
