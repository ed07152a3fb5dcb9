"""Log: offsets, rolls, reads, timestamps, truncation, retention, flush, reload, errors."""

from __future__ import annotations

import errno
import os
import threading
import uuid
from pathlib import Path

import pytest

from pybroker.protocol.errors import (
    CorruptRecordError,
    ErrorCode,
    InvalidRecordError,
    InvalidTimestampError,
    KafkaError,
    KafkaStorageError,
    MessageTooLargeError,
    OffsetOutOfRangeError,
)
from pybroker.protocol.records import (
    GZIP,
    LOG_APPEND_TIME,
    ZSTD,
    NewRecord,
    build_batch,
    build_control_batch,
    decode_records,
    read_header,
    set_base_offset,
)
from pybroker.storage import segment as segment_module
from pybroker.storage.errors import (
    InconsistentTopicIdError,
    RecordBatchTooLargeError,
    UnexpectedAppendOffsetError,
)
from pybroker.storage.log import Log
from tests.unit.test_storage_support import (
    Clock,
    all_bytes,
    batch,
    fill,
    headers_of,
    open_log,
    slices_bytes,
    stamped,
    topic_config,
)


def segment_bases(log: Log) -> list[int]:
    return [s.base_offset for s in log.segments]


def test_append_assigns_offsets_and_stores_exact_bytes(tmp_path: Path) -> None:
    log = open_log(tmp_path / "orders-3")
    assert (log.topic, log.partition) == ("orders", 3)
    originals = [bytes(batch(n, tag=n)) for n in (3, 1, 5)]
    infos = []
    for raw in originals:
        payload = bytearray(raw)
        infos.append(log.append_as_leader(payload, 7, now_ms=1_000))
    assert [(i.base_offset, i.last_offset, i.record_count) for i in infos] == [
        (0, 2, 3),
        (3, 3, 1),
        (4, 8, 5),
    ]
    assert infos[0].log_append_time == -1 and infos[0].log_start_offset == 0
    assert infos[2].max_timestamp == 1_004 and infos[2].offset_of_max_timestamp == 8
    assert log.log_end_offset == 9
    expected = b"".join(stamped(r, i.base_offset, 7) for r, i in zip(originals, infos, strict=True))
    assert all_bytes(log) == expected
    assert (tmp_path / "orders-3" / "00000000000000000000.log").read_bytes() == expected
    assert log.latest_epoch == 7
    assert (tmp_path / "orders-3" / "leader-epoch-checkpoint").read_text() == "0\n1\n7 0\n"


def test_roll_on_segment_bytes(tmp_path: Path) -> None:
    one = len(batch(1))
    log = open_log(tmp_path / "t-0", topic_config(segment_bytes=one * 3))
    stored = fill(log, 10)
    assert segment_bases(log) == [0, 3, 6, 9]
    assert all(s.size <= one * 3 for s in log.segments)
    assert all_bytes(log) == b"".join(stored)
    # every inactive segment's indexes were trimmed to their entries on roll
    for seg in log.segments[:-1]:
        assert os.path.getsize(seg.offset_index.path) == 8 * seg.offset_index.entries
        assert os.path.getsize(seg.time_index.path) == 12 * seg.time_index.entries
        assert seg.time_index.last_entry() == (seg.max_timestamp(), seg.base_offset + 2)


def test_roll_on_segment_ms_uses_first_batch_timestamp(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", topic_config(segment_ms=1_000))
    log.append_as_leader(batch(1, ts=10_000), 0, now_ms=10_000)
    log.append_as_leader(batch(1, ts=11_000), 0, now_ms=11_000)  # waited exactly 1000: no
    assert segment_bases(log) == [0]
    log.append_as_leader(batch(1, ts=11_001), 0, now_ms=11_001)
    assert segment_bases(log) == [0, 2]
    # record time decides, not wall time
    log.append_as_leader(batch(1, ts=11_500), 0, now_ms=99_000)
    assert segment_bases(log) == [0, 2]


def test_roll_when_index_is_full(tmp_path: Path) -> None:
    # 48 bytes: 6 offset index entries, 4 time index slots (one kept for the roll)
    cfg = topic_config(segment_index_bytes=48, index_interval_bytes=0)
    log = open_log(tmp_path / "t-0", cfg)
    stored = fill(log, 20, ts_step=0)  # equal timestamps: one time index entry only
    # a segment's first batch is never indexed: 7 batches fill an offset index
    assert segment_bases(log) == [0, 7, 14]
    assert all_bytes(log) == b"".join(stored)
    for seg in log.segments[:-1]:
        assert seg.offset_index.entries == 6 and seg.time_index.entries == 1


def test_roll_when_time_index_is_full(tmp_path: Path) -> None:
    cfg = topic_config(segment_index_bytes=48, index_interval_bytes=0)
    log = open_log(tmp_path / "t-0", cfg)
    stored = fill(log, 10)  # rising timestamps: a time index entry per indexed batch
    assert segment_bases(log) == [0, 4, 8]
    assert all_bytes(log) == b"".join(stored)
    for seg in log.segments[:-1]:
        assert seg.offset_index.entries == 3 and seg.time_index.entries == 3


def test_roll_when_relative_offset_would_overflow(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    first = batch(1)
    set_base_offset(first, 0, 0)
    log.append_as_follower(first)
    far = batch(1, tag=1)
    set_base_offset(far, 0, 2**31 + 5)
    info = log.append_as_follower(far)
    assert info.base_offset == 2**31 + 5
    assert segment_bases(log) == [0, 2**31 + 5]
    assert log.log_end_offset == 2**31 + 6
    assert headers_of(slices_bytes(log.read(1, 10**6)))[0].base_offset == 2**31 + 5


def test_read_spans_segments_with_one_slice_each(tmp_path: Path) -> None:
    one = len(batch(1))
    log = open_log(tmp_path / "t-0", topic_config(segment_bytes=one * 4, index_interval_bytes=1))
    stored = fill(log, 11)
    info = log.read(2, 10**6)
    assert len(info.slices) == 3
    assert slices_bytes(info) == b"".join(stored[2:])
    assert (info.log_start_offset, info.log_end_offset) == (0, 11)
    for s in info.slices:
        assert s.fileno() >= 0
    assert log.read(11, 1000).slices == []  # at the log end: nothing, no error


def test_read_max_bytes_and_min_one_batch(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", topic_config(index_interval_bytes=1))
    stored = fill(log, 8)
    size = len(stored[0])
    info = log.read(1, size * 3 + size // 2)
    assert slices_bytes(info) == b"".join(stored[1:4])  # whole batches only
    info = log.read(1, size - 1)
    assert slices_bytes(info) == stored[1]  # KIP-74: the first batch whole
    assert log.read(1, size - 1, min_one_batch=False).slices == []
    assert log.read(1, 0, min_one_batch=False).total_bytes == 0


def test_read_never_returns_batches_at_or_beyond_max_offset(tmp_path: Path) -> None:
    one = len(batch(2))
    log = open_log(tmp_path / "t-0", topic_config(segment_bytes=one * 2))
    stored = []
    for i in range(6):
        payload = batch(2, tag=i)
        log.append_as_leader(payload, 0, now_ms=1_000)
        stored.append(bytes(payload))
    # offsets: batch i holds 2i, 2i+1; max_offset 7 cuts the batch 6..7
    assert slices_bytes(log.read(0, 10**6, max_offset=7)) == b"".join(stored[:3])
    assert slices_bytes(log.read(0, 10**6, max_offset=8)) == b"".join(stored[:4])
    assert slices_bytes(log.read(3, 10**6, max_offset=4)) == stored[1]
    assert log.read(4, 10**6, max_offset=4).slices == []
    assert log.read(6, 10**6, max_offset=4).slices == []
    log.high_watermark = 6
    assert log.read(0, 1).high_watermark == 6


def test_read_out_of_range(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    fill(log, 3)
    with pytest.raises(OffsetOutOfRangeError):
        log.read(4, 100)
    with pytest.raises(OffsetOutOfRangeError):
        log.read(-1, 100)
    log.high_watermark = 3
    log.delete_records_before(2)
    with pytest.raises(OffsetOutOfRangeError):
        log.read(1, 100)
    assert headers_of(slices_bytes(log.read(2, 10**6)))[0].base_offset == 2


def test_fetch_offset_for_timestamp(tmp_path: Path) -> None:
    one = len(batch(3))
    log = open_log(tmp_path / "t-0", topic_config(segment_bytes=one * 2, index_interval_bytes=1))
    # batch i: offsets 3i..3i+2, timestamps 1000+10*(3i)+{0,10,20}
    for i in range(6):
        log.append_as_leader(batch(3, ts=1_000 + 30 * i, ts_step=10, tag=i), 2, now_ms=1_000)
    assert log.fetch_offset_for_timestamp(0) == (0, 1_000, 2)
    assert log.fetch_offset_for_timestamp(1_000) == (0, 1_000, 2)
    assert log.fetch_offset_for_timestamp(1_001) == (1, 1_010, 2)  # record precision
    assert log.fetch_offset_for_timestamp(1_095) == (10, 1_100, 2)
    assert log.fetch_offset_for_timestamp(1_170) == (17, 1_170, 2)
    assert log.fetch_offset_for_timestamp(1_171) is None
    assert log.fetch_offset_for_timestamp(-2) == (0, -1, 2)
    assert log.fetch_offset_for_timestamp(-1) == (18, -1, 2)
    assert log.fetch_offset_for_timestamp(-3) == (17, 1_170, 2)


def test_timestamp_lookup_with_log_append_time(tmp_path: Path) -> None:
    clock = Clock(50_000)
    log = open_log(
        tmp_path / "t-0", topic_config(message_timestamp_type="LogAppendTime"), clock=clock
    )
    originals = []
    for i in range(4):
        clock.now = 50_000 + 100 * i
        payload = batch(2, ts=5, tag=i)  # producer timestamps are ignored
        originals.append(bytes(payload))
        info = log.append_as_leader(payload, 0)
        assert info.log_append_time == clock.now and info.max_timestamp == clock.now
    data = all_bytes(log)
    for i, h in enumerate(headers_of(data)):
        assert h.timestamp_type == LOG_APPEND_TIME and h.max_timestamp == 50_000 + 100 * i
    records = decode_records(data, 0)
    assert [r.timestamp for r in records] == [50_000, 50_000]
    assert [r.value for r in records] == [r.value for r in decode_records(originals[0])]
    assert log.fetch_offset_for_timestamp(50_150) == (4, 50_200, 0)
    assert log.fetch_offset_for_timestamp(-3) == (6, 50_300, 0)


def test_timestamp_lookup_in_compressed_batch(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    records = [NewRecord(b"k", b"v" * 100, timestamp=1_000 + 7 * i) for i in range(20)]
    log.append_as_leader(bytearray(build_batch(records, compression=GZIP)), 0, now_ms=1_000)
    assert log.fetch_offset_for_timestamp(1_050) == (8, 1_056, 0)


def test_truncate_to_batch_boundary_and_mid_batch(tmp_path: Path) -> None:
    one = len(batch(2))
    log = open_log(tmp_path / "t-0", topic_config(segment_bytes=one * 2, index_interval_bytes=1))
    stored = []
    for i in range(6):  # offsets 0..11, 2 per batch, 2 batches per segment
        payload = batch(2, tag=i)
        log.append_as_leader(payload, i, now_ms=1_000)
        stored.append(bytes(payload))
    log.high_watermark = 12
    log.flush()
    log.truncate_to(6)
    assert log.log_end_offset == 6 and segment_bases(log) == [0, 4]
    assert all_bytes(log) == b"".join(stored[:3])
    assert log.high_watermark == 6 and log.recovery_point == 6
    assert log.epoch_cache.entries() == [(0, 0), (1, 2), (2, 4)]
    log.truncate_to(3)  # inside batch 2..3: that batch goes too
    assert log.log_end_offset == 2 and segment_bases(log) == [0]
    assert all_bytes(log) == stored[0]
    info = log.append_as_leader(batch(1, tag=9), 5, now_ms=1_000)
    assert info.base_offset == 2
    assert [h.base_offset for h in headers_of(all_bytes(log))] == [0, 2]
    assert log.end_offset_for_epoch(0) == (0, 2)
    assert log.end_offset_for_epoch(5) == (5, 3)


def test_truncate_fully_and_start_at(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", topic_config(file_delete_delay_ms=0))
    fill(log, 5)
    log.truncate_fully_and_start_at(100)
    assert (log.log_start_offset, log.log_end_offset, log.high_watermark) == (100, 100, 100)
    assert segment_bases(log) == [100]
    assert sorted(p.name for p in (tmp_path / "t-0").glob("*.log")) == ["00000000000000000100.log"]
    info = log.append_as_leader(batch(1), 1, now_ms=1_000)
    assert info.base_offset == 100
    with pytest.raises(OffsetOutOfRangeError):
        log.read(99, 100)


def test_delete_records_before(tmp_path: Path) -> None:
    one = len(batch(1))
    cfg = topic_config(segment_bytes=one * 3, file_delete_delay_ms=0)
    log = open_log(tmp_path / "t-0", cfg)
    stored = fill(log, 10)
    log.high_watermark = 8
    with pytest.raises(OffsetOutOfRangeError):
        log.delete_records_before(9)  # beyond the high watermark
    assert log.delete_records_before(7) == 7
    # segments wholly below the new start are gone; the one holding 7 stays
    assert segment_bases(log) == [6, 9]
    assert log.log_start_offset == 7
    assert slices_bytes(log.read(7, 10**6)) == b"".join(stored[7:])
    assert log.delete_records_before(3) == 7  # never moves back
    assert log.delete_records_before(-1) == 8  # -1 means the high watermark


def test_retention_by_time(tmp_path: Path) -> None:
    one = len(batch(1))
    cfg = topic_config(segment_bytes=one * 2, retention_ms=10_000, file_delete_delay_ms=5_000)
    log = open_log(tmp_path / "t-0", cfg)
    for i in range(6):  # segments [0,1] [2,3] [4,5], ts 1000*i
        log.append_as_leader(batch(1, ts=1_000 * i, tag=i), 0, now_ms=1_000 * i)
    log.high_watermark = log.log_end_offset
    assert log.delete_old_segments(now_ms=11_000) == 0  # largest ts 1000: 10000 old, not >
    assert log.delete_old_segments(now_ms=11_001) == 1
    assert segment_bases(log) == [2, 4] and log.log_start_offset == 2
    d = tmp_path / "t-0"
    deleted = sorted(p.name for p in d.glob("*.deleted"))
    assert deleted == [
        "00000000000000000000.index.deleted",
        "00000000000000000000.log.deleted",
        "00000000000000000000.timeindex.deleted",
    ]
    assert log.remove_deleted_files(now_ms=16_000) == 0
    assert log.remove_deleted_files(now_ms=16_001) == 3
    assert list(d.glob("*.deleted")) == []
    # everything expired: Kafka rolls a new empty segment and deletes the old active one
    assert log.delete_old_segments(now_ms=100_000) == 2
    assert segment_bases(log) == [6]
    assert (log.log_start_offset, log.log_end_offset) == (6, 6)
    assert log.read(6, 100).slices == []


def test_retention_respects_high_watermark(tmp_path: Path) -> None:
    one = len(batch(1))
    cfg = topic_config(segment_bytes=one * 2, retention_ms=1, file_delete_delay_ms=0)
    log = open_log(tmp_path / "t-0", cfg)
    fill(log, 6)
    log.high_watermark = 3
    assert log.delete_old_segments(now_ms=10**9) == 1  # [2,3] holds offset 3 >= HW
    assert segment_bases(log) == [2, 4]


def test_retention_by_size(tmp_path: Path) -> None:
    one = len(batch(1))
    cfg = topic_config(segment_bytes=one * 2, retention_bytes=one * 3, file_delete_delay_ms=0)
    log = open_log(tmp_path / "t-0", cfg)
    stored = fill(log, 7)  # 4 segments: 2+2+2+1 batches
    log.high_watermark = 7
    assert log.delete_old_segments(now_ms=2_000) == 2
    assert segment_bases(log) == [4, 6]
    assert log.size_bytes() == one * 3
    assert all_bytes(log) == b"".join(stored[4:])
    assert log.delete_old_segments(now_ms=2_000) == 0


def test_compact_only_topic_keeps_old_segments(tmp_path: Path) -> None:
    one = len(batch(1))
    cfg = topic_config(segment_bytes=one, retention_ms=1, cleanup_policy="compact")
    log = open_log(tmp_path / "t-0", cfg)
    fill(log, 3)
    log.high_watermark = 3
    assert log.delete_old_segments(now_ms=10**9) == 0


def test_reload_after_clean_close_is_identical(tmp_path: Path) -> None:
    one = len(batch(2))
    cfg = topic_config(segment_bytes=one * 3, index_interval_bytes=1)
    tid = uuid.uuid4()
    log = open_log(tmp_path / "t-5", cfg, topic_id=tid)
    for i in range(10):
        log.append_as_leader(batch(2, ts=1_000 + 10 * i, tag=i), i // 3, now_ms=1_000)
    log.high_watermark = 20
    log.flush()
    state = (segment_bases(log), log.log_end_offset, log.epoch_cache.entries(), all_bytes(log))
    index_files = {
        p.name: p.read_bytes()
        for seg in log.segments[:-1]
        for p in (seg.offset_index.path, seg.time_index.path)
    }
    lookups = [log.fetch_offset_for_timestamp(t) for t in range(990, 1_100, 7)]
    log.close()
    active_index = (tmp_path / "t-5" / "00000000000000000018.index").read_bytes()
    again = open_log(tmp_path / "t-5", cfg, clean_shutdown=True, recovery_point=20)
    assert again.topic_id == tid
    assert (
        segment_bases(again),
        again.log_end_offset,
        again.epoch_cache.entries(),
        all_bytes(again),
    ) == state
    assert again.recovery_point == 20
    for name, raw in index_files.items():
        assert (tmp_path / "t-5" / name).read_bytes() == raw
    assert [again.fetch_offset_for_timestamp(t) for t in range(990, 1_100, 7)] == lookups
    again.append_as_leader(batch(1, tag=99), 4, now_ms=1_000)
    assert again.log_end_offset == 21
    assert (tmp_path / "t-5" / "00000000000000000018.index").read_bytes()[: len(active_index)] == (
        active_index
    )
    with pytest.raises(InconsistentTopicIdError):
        open_log(tmp_path / "t-5", cfg, topic_id=uuid.uuid4())


def test_append_validation_errors_write_nothing(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", topic_config(max_message_bytes=500, segment_bytes=2_000))
    fill(log, 1)
    before = all_bytes(log)
    corrupt = batch(1)
    corrupt[-1] ^= 0xFF
    with pytest.raises(CorruptRecordError):
        log.append_as_leader(corrupt, 0, now_ms=1_000)
    with pytest.raises(MessageTooLargeError):
        log.append_as_leader(batch(1, value_size=600), 0, now_ms=1_000)
    with pytest.raises(InvalidTimestampError):
        log.append_as_leader(batch(1, ts=1_000 + 3_600_001), 0, now_ms=1_000)
    lat = bytearray(build_batch([NewRecord(b"k", b"v", timestamp=1_000)], timestamp_type=1))
    with pytest.raises(InvalidTimestampError):
        log.append_as_leader(lat, 0, now_ms=1_000)
    marker = bytearray(
        build_control_batch(
            True,
            base_offset=0,
            producer_id=1,
            producer_epoch=0,
            coordinator_epoch=0,
            timestamp=1_000,
        )
    )
    with pytest.raises(InvalidRecordError):
        log.append_as_leader(marker, 0, now_ms=1_000)
    with pytest.raises(InvalidRecordError):
        log.append_as_leader(bytearray(), 0, now_ms=1_000)
    assert all_bytes(log) == before and log.log_end_offset == 1
    # internal (non-client) appends may write markers and several batches
    two = bytearray(bytes(batch(1)) + bytes(marker))
    info = log.append_as_leader(two, 0, now_ms=1_000, client=False)
    assert (info.base_offset, info.last_offset) == (1, 2)
    big = topic_config(max_message_bytes=5_000, segment_bytes=1_000)
    small_segments = open_log(tmp_path / "t-1", big)
    with pytest.raises(RecordBatchTooLargeError):
        small_segments.append_as_leader(batch(1, value_size=1_500), 0, now_ms=1_000)


def test_timestamp_bounds(tmp_path: Path) -> None:
    cfg = topic_config(message_timestamp_before_max_ms=1_000, message_timestamp_after_max_ms=10)
    log = open_log(tmp_path / "t-0", cfg)
    with pytest.raises(InvalidTimestampError):
        log.append_as_leader(batch(1, ts=8_999), 0, now_ms=10_000)
    with pytest.raises(InvalidTimestampError):
        log.append_as_leader(batch(1, ts=10_011), 0, now_ms=10_000)
    log.append_as_leader(batch(1, ts=9_000), 0, now_ms=10_000)
    log.append_as_leader(batch(1, ts=10_010), 0, now_ms=10_000)
    assert log.log_end_offset == 2


def test_compacted_topic_rejects_null_keys(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", topic_config(cleanup_policy="compact"))
    with pytest.raises(InvalidRecordError):
        log.append_as_leader(batch(2, keys=False), 0, now_ms=1_000)
    log.append_as_leader(batch(2), 0, now_ms=1_000)
    assert log.log_end_offset == 2


def test_compacted_topic_refuses_a_decompression_bomb(tmp_path: Path) -> None:
    """Checking keys decompresses: at most 64 x max.message.bytes, else MESSAGE_TOO_LARGE
    (a few KB of zstd zeros must not make the broker allocate gigabytes)."""
    cfg = topic_config(cleanup_policy="compact", max_message_bytes=10_000)
    log = open_log(tmp_path / "t-0", cfg)
    bomb = build_batch([NewRecord(b"k", bytes(2_000_000), timestamp=1_000)], compression=ZSTD)
    assert len(bomb) < 10_000
    with pytest.raises(KafkaError) as e:
        log.append_as_leader(bytearray(bomb), 0, now_ms=1_000)
    assert e.value.code == ErrorCode.message_too_large
    assert log.log_end_offset == 0
    fine = build_batch([NewRecord(b"k", bytes(500_000), timestamp=1_000)], compression=ZSTD)
    log.append_as_leader(bytearray(fine), 0, now_ms=1_000)
    assert log.log_end_offset == 1


def test_enospc_on_append_keeps_log_consistent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(tmp_path / "t-0")
    stored = fill(log, 3)

    def disk_full(fd: int, data: memoryview, position: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(segment_module, "_pwrite", disk_full)
    with pytest.raises(KafkaStorageError):
        log.append_as_leader(batch(1, tag=7), 0, now_ms=1_000)
    assert log.log_end_offset == 3
    assert all_bytes(log) == b"".join(stored)
    assert (tmp_path / "t-0" / "00000000000000000000.log").read_bytes() == b"".join(stored)
    monkeypatch.undo()
    payload = batch(1, tag=8)
    assert log.append_as_leader(payload, 0, now_ms=1_000).base_offset == 3
    assert all_bytes(log) == b"".join(stored) + bytes(payload)


def test_follower_append_keeps_offsets_and_epochs(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    leader = open_log(tmp_path / "t-1")
    for epoch in (0, 0, 2, 5):
        leader.append_as_leader(batch(2, tag=epoch), epoch, now_ms=1_000)
    data = bytearray(all_bytes(leader))
    info = log.append_as_follower(data)
    assert (info.base_offset, info.last_offset, info.record_count) == (0, 7, 8)
    assert all_bytes(log) == bytes(data)
    assert log.epoch_cache.entries() == [(0, 0), (2, 4), (5, 6)]
    with pytest.raises(UnexpectedAppendOffsetError):
        log.append_as_follower(bytearray(all_bytes(leader)))
    assert log.append_as_follower(bytearray()).record_count == 0


def test_follower_append_larger_than_a_segment_is_split_by_batches(tmp_path: Path) -> None:
    """A fetch may carry more than segment.bytes: whole batches go to successive segments."""
    one = len(batch(2))
    cfg = topic_config(segment_bytes=one * 2 + 10)
    leader = open_log(tmp_path / "t-1", topic_config())
    for epoch in (0, 0, 1, 1, 1, 3, 3):
        leader.append_as_leader(batch(2, tag=epoch), epoch, now_ms=1_000)
    data = bytearray(all_bytes(leader))
    assert len(data) > cfg.segment_bytes
    log = open_log(tmp_path / "t-0", cfg)
    info = log.append_as_follower(data)
    assert (info.base_offset, info.last_offset, info.record_count) == (0, 13, 14)
    assert all_bytes(log) == bytes(data)
    assert [s.base_offset for s in log.segments] == [0, 4, 8, 12]
    assert all(s.size <= cfg.segment_bytes for s in log.segments)
    assert log.epoch_cache.entries() == [(0, 0), (1, 4), (3, 10)]
    assert log.log_end_offset == 14


def test_flush_moves_recovery_point_and_policy(tmp_path: Path) -> None:
    clock = Clock(1_000)
    cfg = topic_config(flush_messages=3, flush_ms=500)
    log = open_log(tmp_path / "t-0", cfg, clock=clock)
    assert not log.needs_flush(1_000)
    fill(log, 2)
    assert not log.needs_flush(1_000)
    assert log.needs_flush(1_500)  # flush.ms since the last flush
    fill(log, 1)
    assert log.needs_flush(1_000)  # flush.messages unflushed
    log.flush(up_to=2)
    assert log.recovery_point == 2
    log.flush()
    assert log.recovery_point == 3 and not log.needs_flush(10**9)


def test_flush_from_a_thread_while_appending(tmp_path: Path) -> None:
    one = len(batch(1))
    log = open_log(tmp_path / "t-0", topic_config(segment_bytes=one * 5))
    stop = threading.Event()
    errors: list[BaseException] = []

    def flusher() -> None:
        try:
            while not stop.is_set():
                log.flush()
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    t = threading.Thread(target=flusher)
    t.start()
    try:
        stored = fill(log, 60)
    finally:
        stop.set()
        t.join()
    assert not errors
    log.flush()
    assert log.recovery_point == 60
    assert all_bytes(log) == b"".join(stored)


def test_delete_removes_the_directory(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    fill(log, 2)
    piece = log.read(0, 10**6).slices[0]
    log.delete()
    assert not (tmp_path / "t-0").exists()
    assert list(tmp_path.iterdir()) == []
    assert read_header(piece.read()).base_offset == 0  # in-flight slices still readable
    with pytest.raises(KafkaStorageError):
        log.append_as_leader(batch(1), 0)


def test_epoch_checkpoint_write_failure_does_not_fail_the_append(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pybroker.storage import epoch_cache

    log = open_log(tmp_path / "t-0")
    fill(log, 1, epoch=1)
    real = epoch_cache.write_epoch_checkpoint

    def disk_full(path: Path, entries: object, *, sync: bool = True) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(epoch_cache, "write_epoch_checkpoint", disk_full)
    info = log.append_as_leader(batch(1), 2, now_ms=1_000)
    assert info.base_offset == 1 and log.epoch_cache.entries() == [(1, 0), (2, 1)]
    checkpoint = tmp_path / "t-0" / "leader-epoch-checkpoint"
    assert checkpoint.read_text() == "0\n1\n1 0\n"
    monkeypatch.setattr(epoch_cache, "write_epoch_checkpoint", real)
    log.flush()
    assert checkpoint.read_text() == "0\n2\n1 0\n2 1\n"


def test_new_epoch_written_at_once_and_made_durable_by_flush(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An append with a new epoch writes the checkpoint (no fsync on the loop); the
    next flush writes it durably."""
    from pybroker.storage import epoch_cache

    calls: list[bool] = []
    real = epoch_cache.write_epoch_checkpoint

    def spy(path: Path, entries: object, *, sync: bool = True) -> None:
        calls.append(sync)
        real(path, entries, sync=sync)  # type: ignore[arg-type]

    monkeypatch.setattr(epoch_cache, "write_epoch_checkpoint", spy)
    log = open_log(tmp_path / "t-0")
    fill(log, 1, epoch=3)
    assert calls == [False]
    assert (tmp_path / "t-0" / "leader-epoch-checkpoint").read_text() == "0\n1\n3 0\n"
    log.flush()
    assert calls == [False, True]
    log.flush()
    assert calls == [False, True]  # nothing new: no rewrite


@pytest.mark.parametrize(
    "name, parsed",
    [
        ("orders-0", ("orders", 0)),
        ("my-topic.v2-17", ("my-topic.v2", 17)),
        ("__consumer_offsets-49", ("__consumer_offsets", 49)),
        ("orders", None),
        ("orders-", None),
        ("orders-x", None),
        ("orders-0.0123456789abcdef0123456789abcdef-delete", None),
        ("orders-0-future", None),
        ("bad topic-0", None),
        ("lost+found", None),
    ],
)
def test_parse_log_dir_name(name: str, parsed: tuple[str, int] | None) -> None:
    from pybroker.storage.log import parse_log_dir_name

    assert parse_log_dir_name(name) == parsed
