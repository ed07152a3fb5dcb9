"""The log cleaner: latest value per key, tombstones and their delete horizon, dirty
ratio and compaction lags, transactions and producer state, segment merging, the
cleaner checkpoint, crash-safe swaps and FileSlices that outlive a swap."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybroker.protocol.records import (
    GZIP,
    LZ4,
    NONE,
    ZSTD,
    BatchHeader,
    NewRecord,
    batch_crc,
    build_batch,
    build_control_batch,
    decode_records,
    iter_batches,
)
from pybroker.storage.cleaner import (
    CLEANED_SUFFIX,
    CLEANER_CHECKPOINT,
    SWAP_SUFFIX,
    LogCleaner,
    complete_swaps,
)
from pybroker.storage.log import Log
from tests.unit.test_storage_support import Clock, all_bytes, open_log, topic_config

NOW = 10_000_000
DAY = 86_400_000


def compact_config(**extra: object):
    settings_ = dict(
        cleanup_policy="compact",
        segment_bytes=4096,
        min_cleanable_dirty_ratio=0.01,
        delete_retention_ms=1000,
        file_delete_delay_ms=0,
    )
    settings_.update(extra)
    return topic_config(**settings_)


def append(
    log: Log,
    records: list[tuple[bytes | None, bytes | None]],
    ts: int = NOW,
    *,
    codec: int = NONE,
    pid: int = -1,
    epoch: int = -1,
    seq: int = -1,
    txn: bool = False,
) -> int:
    """Append one batch at the log end (offsets assigned here); returns its base offset."""
    base = log.log_end_offset
    data = build_batch(
        [NewRecord(k, v, (("h", b"x"),), ts) for k, v in records],
        base_offset=base,
        compression=codec,
        producer_id=pid,
        producer_epoch=epoch,
        base_sequence=seq,
        transactional=txn,
    )
    log.append_as_follower(bytearray(data))
    log.high_watermark = log.log_end_offset
    return base


def marker(log: Log, commit: bool, pid: int, epoch: int = 0, ts: int = NOW) -> int:
    base = log.log_end_offset
    data = build_control_batch(
        commit,
        base_offset=base,
        producer_id=pid,
        producer_epoch=epoch,
        coordinator_epoch=0,
        timestamp=ts,
    )
    log.append_as_follower(bytearray(data))
    log.high_watermark = log.log_end_offset
    return base


def batches(log: Log) -> list[tuple[BatchHeader, bytes]]:
    data = all_bytes(log)
    out = []
    for pos, h in iter_batches(data):
        assert batch_crc(data, pos, h) == h.crc, f"bad CRC at offset {h.base_offset}"
        out.append((h, data[pos : pos + h.size]))
    return out


def records(log: Log) -> list[tuple[int, bytes | None, bytes | None]]:
    out = []
    for h, raw in batches(log):
        if h.is_control:
            continue
        for r in decode_records(raw):
            out.append((r.offset, r.key, r.value))
    return out


def clean(log: Log, clock: Clock, cleaner: LogCleaner | None = None):
    cleaner = cleaner or LogCleaner(now_ms=clock)
    return cleaner.clean_once([log], clock.now)


def test_keeps_the_latest_value_per_key_at_its_offset(tmp_path: Path) -> None:
    clock = Clock(NOW)
    log = open_log(tmp_path / "t-0", compact_config(segment_bytes=1000), clock=clock)
    for round_ in range(5):
        for k in range(10):
            append(log, [(b"k%d" % k, b"v%d-%d" % (k, round_))])
    log.roll()
    leo = log.log_end_offset
    before = len(log.segments)
    cleaner = LogCleaner(now_ms=clock)
    task = cleaner.clean_once([log], clock.now)
    assert task is not None and task.end == leo
    got = records(log)
    assert got == [(40 + k, b"k%d" % k, b"v%d-4" % k) for k in range(10)]
    assert log.log_end_offset == leo and log.log_start_offset == 0
    assert len(log.segments) == before  # merging goes by the sizes before cleaning
    assert cleaner.clean_once([log], clock.now) is None  # nothing dirty any more
    restarted = LogCleaner(now_ms=clock)
    restarted.load_checkpoints([tmp_path])
    assert restarted.clean_once([log], clock.now) is None
    # Without a checkpoint everything counts as dirty: the small segments get merged.
    assert clean(log, clock) is not None
    assert len(log.segments) == 2 and records(log) == got
    # A fetch from the start (offset 0 is gone) gets the first surviving batch.
    assert batches(log)[0][0].base_offset == 40
    # Everything survives a reopen: indexes of the cleaned segments are valid.
    log.close()
    again = open_log(tmp_path / "t-0", compact_config(segment_bytes=1000), clock=clock)
    assert records(again) == got
    assert again.read(3, 1 << 20).slices  # offset 3 falls in a gap: served from 40
    assert (tmp_path / CLEANER_CHECKPOINT).read_text() == f"0\n1\nt 0 {leo}\n"


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    ops=st.lists(
        st.lists(
            st.tuples(st.integers(0, 7), st.one_of(st.none(), st.binary(min_size=0, max_size=30))),
            min_size=1,
            max_size=6,
        ),
        min_size=1,
        max_size=40,
    ),
    codecs=st.lists(st.sampled_from([NONE, GZIP, LZ4, ZSTD]), min_size=1, max_size=4),
    segment_bytes=st.sampled_from([300, 700, 2000]),
)
def test_cleaning_yields_exactly_the_latest_record_per_key(
    tmp_path_factory: pytest.TempPathFactory,
    ops: list[list[tuple[int, bytes | None]]],
    codecs: list[int],
    segment_bytes: int,
) -> None:
    """Random keys, values and tombstones: after cleaning, every key's latest record is
    there at its original offset (tombstones too, until their delete horizon) and nothing
    else of the cleaned range; after the horizon the tombstones are gone as well."""
    dir = tmp_path_factory.mktemp("prop") / "p-0"
    clock = Clock(NOW)
    log = open_log(dir, compact_config(segment_bytes=segment_bytes), clock=clock)
    latest: dict[bytes, tuple[int, bytes | None]] = {}
    for i, batch_ops in enumerate(ops):
        base = append(
            log,
            [(b"key-%d" % k, v) for k, v in batch_ops],
            ts=NOW - 100 + i,
            codec=codecs[i % len(codecs)],
        )
        for j, (k, v) in enumerate(batch_ops):
            latest[b"key-%d" % k] = (base + j, v)
    log.roll()
    leo = log.log_end_offset
    cleaner = LogCleaner(now_ms=clock)
    task = cleaner.clean_once([log], clock.now)
    expected = sorted((o, k, v) for k, (o, v) in latest.items())
    assert task is not None  # everything is in inactive segments: all of it is dirty
    assert records(log) == expected
    for h, raw in batches(log):
        if any(r.value is None for r in decode_records(raw)):
            assert h.delete_horizon_ms == NOW + 1000
    assert log.log_end_offset == leo
    offsets = [o for o, _, _ in records(log)]
    assert offsets == sorted(set(offsets))
    # Past the delete horizon the tombstones go (the horizon alone triggers a cleaning).
    clock.now = NOW + 1000
    cleaner.clean_once([log], clock.now)
    assert records(log) == [(o, k, v) for o, k, v in expected if v is not None]
    log.close()
    again = open_log(dir, compact_config(segment_bytes=segment_bytes), clock=clock)
    assert again.log_end_offset == leo
    again.close()


def test_tombstone_kept_until_delete_horizon_then_removed(tmp_path: Path) -> None:
    clock = Clock(NOW)
    log = open_log(tmp_path / "t-0", compact_config(delete_retention_ms=5000), clock=clock)
    append(log, [(b"a", b"1"), (b"b", b"1")])
    append(log, [(b"a", None)])
    log.roll()
    cleaner = LogCleaner(now_ms=clock)
    assert cleaner.clean_once([log], clock.now) is not None
    assert records(log) == [(1, b"b", b"1"), (2, b"a", None)]
    tomb = [h for h, _ in batches(log) if h.base_offset == 2][0]
    assert tomb.has_delete_horizon and tomb.delete_horizon_ms == NOW + 5000
    clock.now = NOW + 4999
    assert cleaner.clean_once([log], clock.now) is None  # nothing due
    assert records(log)[-1] == (2, b"a", None)
    clock.now = NOW + 5000
    assert cleaner.clean_once([log], clock.now) is not None
    assert records(log) == [(1, b"b", b"1")]


def test_active_segment_and_dirty_ratio_and_lags(tmp_path: Path) -> None:
    clock = Clock(NOW)
    config = compact_config(min_cleanable_dirty_ratio=0.9, segment_bytes=100_000)
    log = open_log(tmp_path / "t-0", config, clock=clock)
    for i in range(4):
        append(log, [(b"k", b"%d" % i)])
    cleaner = LogCleaner(now_ms=clock)
    assert cleaner.clean_once([log], clock.now) is None  # all in the active segment
    log.roll()
    assert cleaner.clean_once([log], clock.now) is not None  # ratio 1.0 > 0.9
    assert records(log) == [(3, b"k", b"3")]
    for i in range(4, 6):
        append(log, [(b"k", b"%d" % i)])
    log.roll()
    # Dirty ratio is about 2/3 < 0.9: not cleaned...
    assert cleaner.clean_once([log], clock.now) is None
    # ...unless the oldest dirty batch is past max.compaction.lag.ms.
    log.update_config(compact_config(min_cleanable_dirty_ratio=0.9, max_compaction_lag_ms=1000))
    clock.now = NOW + 999
    assert cleaner.clean_once([log], clock.now) is None
    clock.now = NOW + 1001
    assert cleaner.clean_once([log], clock.now) is not None
    assert records(log) == [(5, b"k", b"5")]
    # min.compaction.lag.ms keeps young segments out of reach.
    log.update_config(compact_config(min_compaction_lag_ms=60_000))
    append(log, [(b"k", b"6")], ts=clock.now)
    log.roll()
    append(log, [(b"k", b"7")], ts=clock.now)
    log.roll()
    assert cleaner.clean_once([log], clock.now) is None
    clock.now += 60_001
    assert cleaner.clean_once([log], clock.now) is not None
    assert records(log) == [(7, b"k", b"7")]


def test_cleaned_batches_keep_codec_producer_state_and_offset_range(tmp_path: Path) -> None:
    clock = Clock(NOW)
    log = open_log(tmp_path / "t-0", compact_config(), clock=clock)
    append(log, [(b"a", b"1"), (b"b", b"1"), (b"c", b"1")], codec=ZSTD, pid=7, epoch=3, seq=0)
    append(log, [(b"a", b"2"), (b"c", b"2")], codec=GZIP, pid=7, epoch=3, seq=3)
    append(log, [(b"x", b"1")], codec=LZ4, pid=8, epoch=0, seq=0)
    untouched = batches(log)[2][1]
    log.roll()
    assert clean(log, clock) is not None
    got = batches(log)
    first, second, third = (h for h, _ in got)
    assert (first.base_offset, first.last_offset, first.records_count) == (0, 2, 1)
    assert (first.compression, first.producer_id, first.producer_epoch) == (ZSTD, 7, 3)
    assert first.base_sequence == 0 and first.last_sequence == 2
    assert [r.key for r in decode_records(got[0][1])] == [b"b"]
    assert (second.compression, second.base_sequence, second.records_count) == (GZIP, 3, 2)
    assert got[2][1] == untouched and third.compression == LZ4  # left whole: byte-identical


def test_emptied_batch_of_an_active_producer_stays_as_an_empty_batch(tmp_path: Path) -> None:
    clock = Clock(NOW)
    log = open_log(tmp_path / "t-0", compact_config(), clock=clock)
    append(log, [(b"a", b"1")], pid=5, epoch=1, seq=0)  # superseded, but pid 5's last batch
    append(log, [(b"b", b"1")], pid=6, epoch=0, seq=0)
    append(log, [(b"b", b"2")], pid=6, epoch=0, seq=1)
    append(log, [(b"a", b"2")])  # no producer id
    log.roll()
    assert clean(log, clock) is not None
    got = [
        (h.base_offset, h.records_count, h.producer_id, h.base_sequence) for h, _ in batches(log)
    ]
    assert got == [(0, 0, 5, 0), (2, 1, 6, 1), (3, 1, -1, -1)]
    # Once the producer has expired its state need not survive.
    clock.now = NOW + DAY + 1
    append(log, [(b"b", b"3")], ts=clock.now)
    log.roll()
    assert clean(log, clock) is not None
    assert [h.base_offset for h, _ in batches(log)] == [3, 4]


def test_transactions_aborted_records_removed_markers_kept_then_dropped(tmp_path: Path) -> None:
    clock = Clock(NOW)
    log = open_log(tmp_path / "t-0", compact_config(delete_retention_ms=1000), clock=clock)
    append(log, [(b"a", b"committed")], pid=1, epoch=0, seq=0, txn=True)  # 0
    append(log, [(b"b", b"aborted")], pid=2, epoch=0, seq=0, txn=True)  # 1
    marker(log, True, pid=1)  # 2
    marker(log, False, pid=2)  # 3
    append(log, [(b"b", b"plain")])  # 4
    log.roll()
    append(log, [(b"c", b"open")], pid=3, epoch=0, seq=0, txn=True)  # 5: still open
    log.roll()
    append(log, [(b"a", b"x")])  # 6
    log.roll()
    cleaner = LogCleaner(now_ms=clock)
    # The open transaction at offset 5 bounds the cleaning to its segment's base.
    task = cleaner.clean_once([log], clock.now)
    assert task is not None
    assert task.end == 5
    hdrs = {h.base_offset: h for h, _ in batches(log)}
    # Aborted data gone except pid 2's last batch, kept empty for its producer state.
    assert hdrs[1].records_count == 0 and hdrs[1].producer_id == 2
    assert hdrs[2].is_control and hdrs[3].is_control  # markers still guard their batches
    assert (0, b"a", b"committed") in records(log) and (5, b"c", b"open") in records(log)
    marker(log, True, pid=3)
    log.roll()
    append(log, [(b"a", b"y")])
    log.roll()
    clock.now += 2000
    cleaner.clean_once([log], clock.now)
    clock.now += 2000
    cleaner.clean_once([log], clock.now)
    got = records(log)
    assert (0, b"a", b"committed") not in got  # superseded by a later "a"
    assert (5, b"c", b"open") in got  # committed and latest for "c"


def test_small_segments_are_merged_up_to_segment_bytes(tmp_path: Path) -> None:
    clock = Clock(NOW)
    log = open_log(tmp_path / "t-0", compact_config(segment_bytes=2000), clock=clock)
    for i in range(40):
        append(log, [(b"k%d" % i, b"v" * 20)])
        log.roll()
    assert len(log.segments) == 41
    assert clean(log, clock) is not None
    sizes = [s.size for s in log.segments[:-1]]
    assert len(sizes) < 10 and all(s <= 2000 for s in sizes)
    assert [o for o, _, _ in records(log)] == list(range(40))


def test_small_dedupe_buffer_cleans_in_several_passes(tmp_path: Path) -> None:
    clock = Clock(NOW)
    log = open_log(tmp_path / "t-0", compact_config(segment_bytes=1000), clock=clock)
    for i in range(60):
        append(log, [(b"k%d" % (i % 30), b"v%d" % i)])
    log.roll()
    cleaner = LogCleaner(now_ms=clock, dedupe_buffer_size=1000, io_buffer_load_factor=1.0)
    assert cleaner.max_map_entries == 10
    passes = 0
    while cleaner.clean_once([log], clock.now) is not None:
        passes += 1
        assert passes < 20
    assert passes > 1
    assert records(log) == [(30 + k, b"k%d" % k, b"v%d" % (30 + k)) for k in range(30)]


def test_slice_being_sent_survives_the_swap(tmp_path: Path) -> None:
    clock = Clock(NOW)
    log = open_log(tmp_path / "t-0", compact_config(), clock=clock)
    for i in range(20):
        append(log, [(b"k", b"%d" % i)])
    log.roll()
    info = log.read(0, 1 << 20)
    before = [s.read() for s in info.slices]
    assert clean(log, clock) is not None  # file.delete.delay.ms=0: old files unlinked
    assert not (tmp_path / "t-0" / "00000000000000000000.log.deleted").exists()
    assert [s.read() for s in info.slices] == before


def test_log_changed_under_the_cleaner_drops_the_cleaning(tmp_path: Path) -> None:
    clock = Clock(NOW)
    config = compact_config(cleanup_policy="compact,delete", segment_bytes=200)
    log = open_log(tmp_path / "t-0", config, clock=clock)
    for i in range(30):
        append(log, [(b"k%d" % (i % 3), b"%d" % i)])
    log.roll()
    cleaner = LogCleaner(now_ms=clock)
    task = cleaner.plan([log], clock.now)
    assert task is not None and cleaner.prepare(task)
    group = cleaner.build_group(task, 0)
    swaps = sorted(p.name for p in (tmp_path / "t-0").iterdir() if p.name.endswith(SWAP_SUFFIX))
    assert len(swaps) == 3
    before = all_bytes(log)
    log.delete_records_before(log.segments[1].base_offset)  # retention races the cleaner
    assert not cleaner.commit_group(task, group)
    assert not [p for p in (tmp_path / "t-0").iterdir() if p.name.endswith(SWAP_SUFFIX)]
    assert before.endswith(all_bytes(log))
    assert cleaner.checkpointed_offset(("t", 0)) is None


@pytest.mark.parametrize("crash_at", ["cleaned", "swap", "old-deleted", "half-promoted"])
def test_crash_during_swap_recovers_at_load(tmp_path: Path, crash_at: str) -> None:
    """A crash at each step of the swap leaves either the old or the cleaned segments."""
    clock = Clock(NOW)
    dir = tmp_path / "t-0"
    config = compact_config(segment_bytes=100_000, file_delete_delay_ms=60_000)
    log = open_log(dir, config, clock=clock)
    for i in range(3):
        for k in range(4):
            append(log, [(b"k%d" % k, b"v%d" % i)])
        log.roll()
    append(log, [(b"tail", b"t")])
    original = records(log)
    leo = log.log_end_offset
    cleaner = LogCleaner(now_ms=clock)
    task = cleaner.plan([log], clock.now)
    assert task is not None and cleaner.prepare(task)
    assert len(task.groups) == 1 and len(task.groups[0]) == 3
    cleaner.build_group(task, 0)
    name = "00000000000000000000"
    files = [".log", ".index", ".timeindex"]
    if crash_at == "cleaned":  # before the rename to .swap
        for f in files:
            os.rename(dir / (name + f + SWAP_SUFFIX), dir / (name + f + CLEANED_SUFFIX))
    elif crash_at in ("old-deleted", "half-promoted"):
        for seg in task.groups[0]:
            for f in files:
                p = dir / (seg.path.name[:-4] + f)
                os.rename(p, p.with_name(p.name + ".deleted"))
        if crash_at == "half-promoted":
            os.rename(dir / (name + ".index" + SWAP_SUFFIX), dir / (name + ".index"))
    # Simulate the crash: drop the in-memory log without closing it cleanly.
    for seg in log.segments:
        seg.drop_handles()
    again = open_log(dir, config, clock=clock)
    assert again.log_end_offset == leo
    got = records(again)
    if crash_at == "cleaned":
        assert got == original
        assert not [p for p in dir.iterdir() if p.name.endswith(CLEANED_SUFFIX)]
    else:
        latest = {k: (o, v) for o, k, v in original}
        assert got == sorted((o, k, v) for k, (o, v) in latest.items())
        assert len(again.segments) == 2
    assert not [p for p in dir.iterdir() if p.name.endswith((SWAP_SUFFIX, ".deleted"))]
    assert again.read(0, 1 << 20).slices


def test_complete_swaps_deletes_orphan_index_swaps(tmp_path: Path) -> None:
    (tmp_path / "00000000000000000000.index.swap").write_bytes(b"\0" * 8)
    (tmp_path / "00000000000000000000.log").write_bytes(b"")
    assert complete_swaps(tmp_path) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["00000000000000000000.log"]


def test_checkpoint_garbage_and_out_of_range(tmp_path: Path, caplog) -> None:
    clock = Clock(NOW)
    log = open_log(tmp_path / "t-0", compact_config(), clock=clock)
    for i in range(6):
        append(log, [(b"k", b"%d" % i)])
    log.roll()
    (tmp_path / CLEANER_CHECKPOINT).write_bytes(b"\xff\xfegarbage")
    cleaner = LogCleaner(now_ms=clock)
    cleaner.load_checkpoints([tmp_path])
    assert "Ignoring corrupt cleaner checkpoint" in caplog.text
    assert cleaner.clean_once([log], clock.now) is not None
    assert (tmp_path / CLEANER_CHECKPOINT).read_text() == "0\n1\nt 0 6\n"
    # A checkpoint beyond the log end (say, after a truncation) restarts from the start.
    (tmp_path / CLEANER_CHECKPOINT).write_text("0\n1\nt 0 999\n")
    cleaner = LogCleaner(now_ms=clock)
    cleaner.load_checkpoints([tmp_path])
    append(log, [(b"k", b"new")])
    log.roll()
    assert cleaner.clean_once([log], clock.now) is not None
    assert "beyond the log end offset" in caplog.text
    assert records(log) == [(6, b"k", b"new")]


def test_delete_only_topics_are_never_cleaned(tmp_path: Path) -> None:
    clock = Clock(NOW)
    log = open_log(tmp_path / "t-0", compact_config(cleanup_policy="delete"), clock=clock)
    for i in range(6):
        append(log, [(b"k", b"%d" % i)])
    log.roll()
    assert clean(log, clock) is None
    assert len(records(log)) == 6
