"""LogManager: dirs, locks, checkpoints, clean/unclean restarts, deletion, fd caps."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest

from pybroker.config.topic_config import TopicConfig
from pybroker.storage.checkpoints import read_offset_checkpoint
from pybroker.storage.errors import LogDirLockedError
from pybroker.storage.log_manager import LogManager
from tests.unit.test_storage_support import (
    Clock,
    all_bytes,
    batch,
    fd_count,
    fill,
    topic_config,
)

TID = uuid.UUID("0f0e0d0c-0b0a-0908-0706-050403020100")


def manager(dirs: list[Path], config: TopicConfig | None = None, **kwargs: object) -> LogManager:
    cfg = config or topic_config()
    return LogManager(dirs, lambda topic: cfg, now_ms=Clock(), **kwargs)  # type: ignore[arg-type]


def crash(mgr: LogManager) -> None:
    """Simulate a kill -9: release the dir locks, write nothing."""
    for d in mgr._dirs:
        d.unlock()


def test_new_logs_go_to_the_dir_with_fewest_partitions(tmp_path: Path) -> None:
    dirs = [tmp_path / "d1", tmp_path / "d2", tmp_path / "d3"]
    mgr = manager(dirs)
    mgr.load()
    cfg = topic_config()
    logs = [mgr.get_or_create_log("t", p, TID, cfg) for p in range(6)]
    assert [lg.dir.parent for lg in logs] == dirs * 2
    assert mgr.get_or_create_log("t", 0, TID, cfg) is logs[0]
    assert mgr.get_log("t", 5) is logs[5] and mgr.get_log("t", 6) is None
    assert (dirs[0] / "t-0" / "partition.metadata").exists()
    mgr.shutdown()


def test_shutdown_and_clean_restart(tmp_path: Path) -> None:
    dirs = [tmp_path / "a", tmp_path / "b"]
    mgr = manager(dirs)
    mgr.load()
    cfg = topic_config()
    stored = {}
    for p in range(4):
        lg = mgr.get_or_create_log("orders", p, TID, cfg)
        stored[p] = fill(lg, p + 1, epoch=p)
        lg.high_watermark = lg.log_end_offset
    mgr.get_log("orders", 3).delete_records_before(2)  # type: ignore[union-attr]
    mgr.shutdown()
    for d in dirs:
        assert (d / ".kafka_cleanshutdown").exists()
    a = read_offset_checkpoint(dirs[0] / "recovery-point-offset-checkpoint")
    assert a == {("orders", 0): 1, ("orders", 2): 3}
    assert (dirs[1] / "recovery-point-offset-checkpoint").read_text() == (
        "0\n2\norders 1 2\norders 3 4\n"
    )
    assert read_offset_checkpoint(dirs[1] / "log-start-offset-checkpoint") == {
        ("orders", 1): 0,
        ("orders", 3): 2,
    }
    assert read_offset_checkpoint(dirs[1] / "replication-offset-checkpoint") == {
        ("orders", 1): 2,
        ("orders", 3): 4,
    }

    again = manager(dirs)
    again.load()
    for d in dirs:  # removed once loaded: a crash from now on is unclean
        assert not (d / ".kafka_cleanshutdown").exists()
    assert len(again.all_logs()) == 4
    for p in range(4):
        lg = again.get_log("orders", p)
        assert lg is not None and lg.topic_id == TID
        assert lg.log_end_offset == p + 1 == lg.high_watermark == lg.recovery_point
        # offset 3 had its records before offset 2 deleted
        assert all_bytes(lg) == b"".join(stored[p][2:] if p == 3 else stored[p])
    assert again.get_log("orders", 3).log_start_offset == 2  # type: ignore[union-attr]
    again.shutdown()


def test_second_manager_on_the_same_dir_fails(tmp_path: Path) -> None:
    first = manager([tmp_path / "d"])
    first.load()
    second = manager([tmp_path / "other", tmp_path / "d"])
    with pytest.raises(LogDirLockedError, match="another process"):
        second.load()
    first.shutdown()
    second.load()  # the lock is free again
    second.shutdown()


def test_unclean_restart_recovers_torn_tail(tmp_path: Path) -> None:
    d = tmp_path / "d"
    mgr = manager([d])
    mgr.load()
    lg = mgr.get_or_create_log("t", 0, TID, topic_config())
    stored = fill(lg, 5)
    mgr.checkpoint()
    crash(mgr)
    with open(d / "t-0" / "00000000000000000000.log", "ab") as f:
        f.write(stored[0][:25])  # the write in progress at the crash
    again = manager([d])
    again.load()
    lg2 = again.get_log("t", 0)
    assert lg2 is not None and lg2.log_end_offset == 5
    assert all_bytes(lg2) == b"".join(stored)
    again.shutdown()


@pytest.mark.parametrize("garbage", [b"", b"0\n3\nt 0 5\n", b"\x00\x01\x02", b"0\n1\nt 0 x\n"])
def test_garbage_checkpoint_means_full_recovery(
    tmp_path: Path, garbage: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    d = tmp_path / "d"
    mgr = manager([d])
    mgr.load()
    lg = mgr.get_or_create_log("t", 0, TID, topic_config())
    stored = fill(lg, 4)
    mgr.shutdown()
    (d / "recovery-point-offset-checkpoint").write_bytes(garbage)
    (d / "log-start-offset-checkpoint").write_bytes(garbage)
    log_file = d / "t-0" / "00000000000000000000.log"
    data = bytearray(log_file.read_bytes())
    data[-1] ^= 0x55  # damage the last batch: only a full recovery notices
    log_file.write_bytes(bytes(data))
    again = manager([d])
    with caplog.at_level(logging.WARNING):
        again.load()
    assert "recovery-point-offset-checkpoint" in caplog.text
    lg2 = again.get_log("t", 0)
    assert lg2 is not None and lg2.log_end_offset == 3
    assert all_bytes(lg2) == b"".join(stored[:3])
    again.shutdown()


def test_stray_entries_in_a_log_dir_are_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    d = tmp_path / "d"
    d.mkdir()
    (d / "README").write_text("hi")
    (d / "not-a-partition").mkdir()
    (d / "lost+found").mkdir()
    (d / "t-0.0123456789abcdef0123456789abcdef-delete").mkdir()
    (d / "t-0.0123456789abcdef0123456789abcdef-delete" / "00000000000000000000.log").write_bytes(
        b"x"
    )
    (d / "meta.properties").write_text("version=1\n")
    mgr = manager([d])
    with caplog.at_level(logging.WARNING):
        mgr.load()
    assert mgr.all_logs() == []
    assert "README" in caplog.text and "not-a-partition" in caplog.text
    assert "lost+found" in caplog.text and "meta.properties" not in caplog.text
    assert not (d / "t-0.0123456789abcdef0123456789abcdef-delete").exists()
    assert (d / "README").exists() and (d / "not-a-partition").is_dir()
    mgr.shutdown()


def test_delete_log(tmp_path: Path) -> None:
    d = tmp_path / "d"
    mgr = manager([d])
    mgr.load()
    lg = mgr.get_or_create_log("gone", 0, TID, topic_config())
    fill(lg, 3)
    keep = mgr.get_or_create_log("gone", 1, TID, topic_config())
    fill(keep, 1)
    mgr.delete_log("gone", 0)
    assert mgr.get_log("gone", 0) is None
    assert sorted(p.name for p in d.iterdir() if p.is_dir()) == ["gone-1"]
    mgr.checkpoint()
    assert read_offset_checkpoint(d / "recovery-point-offset-checkpoint") == {("gone", 1): 0}
    mgr.delete_log("gone", 0)  # idempotent
    mgr.shutdown()


def test_update_config_applies_to_the_topic(tmp_path: Path) -> None:
    mgr = manager([tmp_path / "d"])
    mgr.load()
    a = mgr.get_or_create_log("a", 0, TID, topic_config())
    b = mgr.get_or_create_log("b", 0, TID, topic_config())
    one = len(batch(1))
    mgr.update_config("a", topic_config(segment_bytes=one))
    fill(a, 3)
    fill(b, 3)
    assert len(a.segments) == 3 and len(b.segments) == 1
    mgr.shutdown()


def test_retention_and_flush_passes(tmp_path: Path) -> None:
    one = len(batch(1))
    cfg = topic_config(
        segment_bytes=one, retention_ms=1_000, file_delete_delay_ms=0, flush_messages=2
    )
    mgr = manager([tmp_path / "d"], cfg)
    mgr.load()
    lg = mgr.get_or_create_log("t", 0, TID, cfg)
    fill(lg, 3)
    lg.high_watermark = 3
    assert mgr.flush_dirty_logs(now_ms=5_000) == 1 and lg.recovery_point == 3
    assert mgr.cleanup_logs(now_ms=1_000_000) == 3
    assert lg.log_start_offset == 3 and lg.size_bytes() == 0
    mgr.shutdown()


def test_thousands_of_partitions_with_a_low_fd_cap(tmp_path: Path) -> None:
    dirs = [tmp_path / "d1", tmp_path / "d2"]
    before = fd_count()
    # before Python 3.13 every mapped index holds an fd too: budget both caps
    budget = before + 50 + 100 + 2 + 5  # the caps, the two dir locks, slack

    def open_manager() -> LogManager:
        return manager(dirs, max_open_files=50, max_mapped_indexes=100)

    mgr = open_manager()
    mgr.load()
    cfg = topic_config(segment_index_bytes=4096, index_interval_bytes=0)
    logs = [mgr.get_or_create_log(f"topic{p % 7}", p, TID, cfg) for p in range(2000)]
    payloads: dict[int, list[bytes]] = {}
    for round_ in range(3):  # from the second append on, every batch is indexed
        for lg in logs:
            payload = batch(1, tag=lg.partition + round_, ts=1_000 + round_)
            lg.append_as_leader(payload, 0, now_ms=1_000)
            payloads.setdefault(lg.partition, []).append(bytes(payload))
        assert fd_count() <= budget
    for lg in logs[::37]:
        assert all_bytes(lg) == b"".join(payloads[lg.partition])
        assert lg.fetch_offset_for_timestamp(1_002)[0] == 2  # type: ignore[index]
    assert fd_count() <= budget
    assert len(mgr.handles.files) <= 50 and len(mgr.handles.indexes) <= 100
    mgr.shutdown()
    assert fd_count() <= before + 2
    again = open_manager()
    again.load()
    assert len(again.all_logs()) == 2000
    assert fd_count() <= budget
    for lg in again.all_logs()[::13]:
        assert all_bytes(lg) == b"".join(payloads[lg.partition])
        lg.append_as_leader(batch(1, tag=7), 1, now_ms=1_000)
    assert fd_count() <= budget
    again.shutdown()
