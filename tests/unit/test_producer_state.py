"""Producer state: Kafka 4's idempotence rules, snapshots, and rebuilds from the log.

The rules and cases follow Kafka's ProducerAppendInfo / ProducerStateManager and its
ProducerStateManagerTest (storage/src/main/java/org/apache/kafka/storage/internals/log).
"""

from __future__ import annotations

import logging
import os
import struct
from pathlib import Path

import pytest
from crc32c import crc32c

from pybroker.protocol.errors import (
    InvalidProducerEpochError,
    InvalidTxnStateError,
    OutOfOrderSequenceError,
    TransactionCoordinatorFencedError,
)
from pybroker.protocol.records import (
    NewRecord,
    build_batch,
    build_control_batch,
    iter_batches,
    read_header,
)
from pybroker.storage.log import Log
from pybroker.storage.producer_state import (
    INT32_MAX,
    BatchMetadata,
    CorruptSnapshotError,
    Origin,
    ProducerAppend,
    ProducerStateEntry,
    ProducerStateManager,
    decode_snapshot,
    encode_snapshot,
    snapshot_name,
)
from tests.unit.test_storage_support import Clock, all_bytes, batch, open_log, topic_config

PID = 1000
EPOCH = 0


def pbatch(
    pid: int = PID,
    epoch: int = EPOCH,
    seq: int = 0,
    n: int = 1,
    *,
    ts: int = 1_000,
    transactional: bool = False,
    tag: int = 0,
) -> bytearray:
    records = [
        NewRecord(key=b"k%d" % i, value=b"v-%d-%d" % (tag, i), timestamp=ts + i) for i in range(n)
    ]
    return bytearray(
        build_batch(
            records,
            producer_id=pid,
            producer_epoch=epoch,
            base_sequence=seq,
            transactional=transactional,
        )
    )


def marker(pid: int, epoch: int, *, commit: bool = True, coordinator_epoch: int = 0) -> bytearray:
    return bytearray(
        build_control_batch(
            commit,
            base_offset=0,
            producer_id=pid,
            producer_epoch=epoch,
            coordinator_epoch=coordinator_epoch,
            timestamp=2_000,
        )
    )


def apply(
    psm: ProducerStateManager,
    payload: bytearray,
    offset: int,
    origin: Origin = Origin.CLIENT,
) -> ProducerAppend | BatchMetadata | None:
    headers = [h for _, h in iter_batches(payload)]
    result = psm.prepare_append(headers, payload, offset, origin)
    if isinstance(result, ProducerAppend):
        psm.commit(result)
    return result


@pytest.fixture
def psm(tmp_path: Path) -> ProducerStateManager:
    return ProducerStateManager(tmp_path, "t-0")


# -- sequence and epoch rules --------------------------------------------------------------


def test_in_sequence_appends_and_duplicates(psm: ProducerStateManager) -> None:
    offset = 0
    for seq in range(0, 30, 3):
        assert isinstance(apply(psm, pbatch(seq=seq, n=3), offset), ProducerAppend)
        offset += 3
    entry = psm.last_entry(PID)
    assert entry is not None
    assert (entry.producer_epoch, entry.first_seq, entry.last_seq) == (EPOCH, 15, 29)
    assert len(entry.batches) == 5
    assert (entry.first_data_offset, entry.last_data_offset) == (15, 29)
    # Any of the last five batches is a duplicate: its original metadata, nothing changes.
    for seq in range(15, 30, 3):
        dup = apply(psm, pbatch(seq=seq, n=3), 999)
        assert dup == BatchMetadata(seq + 2, seq + 2, 2, 1_002)
        assert (dup.first_seq, dup.first_offset) == (seq, seq)
    assert psm.last_entry(PID) == entry
    # Older than the cached five: out of order (as Kafka; the client treats it as fatal).
    with pytest.raises(OutOfOrderSequenceError):
        apply(psm, pbatch(seq=12, n=3), 999)
    # Same first sequence, different range: not a duplicate, out of order.
    with pytest.raises(OutOfOrderSequenceError):
        apply(psm, pbatch(seq=27, n=2), 999)


def test_sequence_gap_is_out_of_order(psm: ProducerStateManager) -> None:
    apply(psm, pbatch(seq=0, n=2), 0)
    with pytest.raises(OutOfOrderSequenceError, match="1 \\(current end sequence"):
        apply(psm, pbatch(seq=5), 2)
    with pytest.raises(OutOfOrderSequenceError):
        apply(psm, pbatch(seq=1), 2)  # overlaps the last batch
    apply(psm, pbatch(seq=2), 2)
    assert psm.last_entry(PID).last_seq == 2


def test_stale_epoch_is_invalid_producer_epoch(psm: ProducerStateManager) -> None:
    apply(psm, pbatch(epoch=3, seq=0), 0)
    with pytest.raises(InvalidProducerEpochError):
        apply(psm, pbatch(epoch=2, seq=1), 1)
    with pytest.raises(InvalidProducerEpochError):
        apply(psm, pbatch(epoch=2, seq=0), 1)  # a stale duplicate is no duplicate


def test_bumped_epoch_restarts_at_sequence_zero(psm: ProducerStateManager) -> None:
    apply(psm, pbatch(epoch=0, seq=0, n=5), 0)
    with pytest.raises(OutOfOrderSequenceError, match="new epoch"):
        apply(psm, pbatch(epoch=1, seq=5), 5)
    assert psm.last_entry(PID).producer_epoch == 0
    apply(psm, pbatch(epoch=1, seq=0), 5)  # KIP-360: the client bumped its epoch
    entry = psm.last_entry(PID)
    assert (entry.producer_epoch, entry.first_seq, entry.last_seq) == (1, 0, 0)
    assert len(entry.batches) == 1  # batches of the old epoch are gone
    with pytest.raises(InvalidProducerEpochError):
        apply(psm, pbatch(epoch=0, seq=5), 6)


def test_unknown_producer_may_start_at_any_sequence(psm: ProducerStateManager) -> None:
    """Kafka 2.5+ (KIP-360): no state means no check, never UNKNOWN_PRODUCER_ID."""
    apply(psm, pbatch(seq=17, n=2), 40)
    entry = psm.last_entry(PID)
    assert (entry.first_seq, entry.last_seq, entry.first_data_offset) == (17, 18, 40)
    apply(psm, pbatch(seq=19), 42)
    with pytest.raises(OutOfOrderSequenceError):
        apply(psm, pbatch(seq=30), 43)


def test_producer_known_only_by_a_marker(psm: ProducerStateManager) -> None:
    """Kafka's testAppendTxnMarkerWithNoProducerState."""
    apply(psm, marker(PID, 2), 27, Origin.COORDINATOR)
    entry = psm.last_entry(PID)
    assert (entry.producer_epoch, entry.last_seq, entry.last_timestamp) == (2, -1, 2_000)
    with pytest.raises(InvalidProducerEpochError):
        apply(psm, pbatch(epoch=0, seq=0), 28)
    with pytest.raises(OutOfOrderSequenceError):
        apply(psm, pbatch(epoch=2, seq=17), 28)
    apply(psm, pbatch(epoch=2, seq=0), 28)
    assert psm.last_entry(PID).last_seq == 0


def test_sequence_wraps_at_int32_max(psm: ProducerStateManager) -> None:
    apply(psm, pbatch(seq=INT32_MAX), 735, Origin.REPLICATION)
    with pytest.raises(OutOfOrderSequenceError):
        apply(psm, pbatch(seq=1), 736)
    apply(psm, pbatch(seq=0, n=2), 736)
    entry = psm.last_entry(PID)
    assert (entry.first_seq, entry.last_seq) == (INT32_MAX, 1)
    # A batch whose sequence range itself wraps.
    apply(psm, pbatch(pid=7, seq=INT32_MAX - 10, n=21), 2_000)
    wrapped = psm.last_entry(7)
    assert (wrapped.first_seq, wrapped.last_seq) == (INT32_MAX - 10, 9)
    assert (wrapped.first_data_offset, wrapped.last_data_offset) == (2_000, 2_020)
    assert apply(psm, pbatch(pid=7, seq=INT32_MAX - 10, n=21), 0).first_offset == 2_000
    apply(psm, pbatch(pid=7, seq=10), 2_021)


def test_replication_applies_without_checks(psm: ProducerStateManager) -> None:
    apply(psm, pbatch(epoch=5, seq=0), 0)
    apply(psm, pbatch(epoch=5, seq=3), 1, Origin.REPLICATION)  # a gap
    apply(psm, pbatch(epoch=4, seq=9), 2, Origin.REPLICATION)  # an older epoch (warned)
    entry = psm.last_entry(PID)
    assert (entry.producer_epoch, entry.last_seq, entry.last_data_offset) == (4, 9, 2)
    # Replication never answers duplicates.
    assert isinstance(apply(psm, pbatch(epoch=4, seq=9), 3, Origin.REPLICATION), ProducerAppend)


def test_coordinator_origin_checks_epochs_not_sequences(psm: ProducerStateManager) -> None:
    apply(psm, pbatch(epoch=1, seq=-1), 0, Origin.COORDINATOR)
    apply(psm, pbatch(epoch=1, seq=-1), 1, Origin.COORDINATOR)
    with pytest.raises(InvalidProducerEpochError):
        apply(psm, pbatch(epoch=0, seq=-1), 2, Origin.COORDINATOR)


def test_transactional_batches_need_an_ongoing_transaction(psm: ProducerStateManager) -> None:
    """No transaction coordinator yet: a client's transactional write is never verified."""
    with pytest.raises(InvalidTxnStateError, match="not part of an ongoing transaction"):
        apply(psm, pbatch(seq=0, transactional=True), 0)
    apply(psm, pbatch(epoch=3, seq=0), 0)
    with pytest.raises(InvalidProducerEpochError):
        apply(psm, pbatch(epoch=2, seq=1, transactional=True), 1)
    assert psm.ongoing_txns == {}


def test_transaction_state_from_replicated_batches_and_markers(psm: ProducerStateManager) -> None:
    e = 3
    apply(psm, pbatch(epoch=e, seq=0, transactional=True), 16, Origin.REPLICATION)
    apply(psm, pbatch(epoch=e, seq=1, n=5, transactional=True), 17, Origin.REPLICATION)
    entry = psm.last_entry(PID)
    assert entry.current_txn_first_offset == 16
    assert psm.ongoing_txns == {16: PID}
    assert psm.first_undecided_offset() == 16
    # Non-transactional data in the middle of a transaction.
    with pytest.raises(InvalidTxnStateError, match="Expected transactional write"):
        apply(psm, pbatch(epoch=e, seq=6), 22, Origin.COORDINATOR)
    # The marker closes it, keeps the cached batches, sets the coordinator epoch.
    commit = marker(PID, e, coordinator_epoch=4)
    pending = psm.prepare_append([read_header(commit)], commit, 40, Origin.COORDINATOR)
    assert isinstance(pending, ProducerAppend)
    (done,) = psm.commit(pending)
    assert (done.first_offset, done.last_offset, done.is_aborted) == (16, 40, False)
    entry = psm.last_entry(PID)
    assert entry.current_txn_first_offset is None and entry.coordinator_epoch == 4
    assert (entry.first_seq, entry.last_seq) == (0, 5)
    assert psm.ongoing_txns == {}
    with pytest.raises(TransactionCoordinatorFencedError):
        apply(psm, marker(PID, e, coordinator_epoch=3), 41, Origin.COORDINATOR)
    with pytest.raises(InvalidProducerEpochError):
        apply(psm, marker(PID, e - 1, coordinator_epoch=4), 41, Origin.COORDINATOR)
    # A fencing marker with a bumped epoch drops the batches of the old epoch.
    apply(psm, marker(PID, e + 1, commit=False, coordinator_epoch=4), 41, Origin.COORDINATOR)
    entry = psm.last_entry(PID)
    assert (entry.producer_epoch, entry.last_seq, entry.last_data_offset) == (e + 1, -1, -1)


def test_prepare_does_not_mutate(psm: ProducerStateManager) -> None:
    apply(psm, pbatch(seq=0), 0)
    before = ProducerStateEntry(PID, EPOCH, psm.last_entry(PID).batches, -1, 1_000)
    pending = psm.prepare_append([read_header(pbatch(seq=1))], b"", 1, Origin.CLIENT)
    assert isinstance(pending, ProducerAppend)
    assert psm.last_entry(PID) == before
    assert psm.prepare_append([read_header(batch(1))], b"", 1, Origin.CLIENT) is None


def test_expiration(psm: ProducerStateManager) -> None:
    psm.producer_id_expiration_ms = 10_000
    apply(psm, pbatch(seq=0, ts=1_000), 0)
    apply(psm, pbatch(pid=2, seq=0, ts=5_000), 1)
    apply(psm, pbatch(pid=3, seq=0, ts=1_000, transactional=True), 2, Origin.REPLICATION)
    assert psm.remove_expired_producers(10_999) == 0
    assert psm.remove_expired_producers(11_000) == 1
    assert set(psm.producers) == {2, 3}  # 3 is in a transaction: never expired
    # An expired producer comes back with any sequence.
    apply(psm, pbatch(seq=7), 3)
    assert psm.last_entry(PID).last_seq == 7


# -- snapshot files ------------------------------------------------------------------------


def sample_state(psm: ProducerStateManager) -> None:
    for seq in range(8):  # more than five batches: only the last five survive
        apply(psm, pbatch(seq=seq, ts=1_000 + seq), seq)
    apply(
        psm, pbatch(pid=5, epoch=2, seq=0, n=4, ts=3_000, transactional=True), 8, Origin.REPLICATION
    )
    apply(psm, marker(6, 9, coordinator_epoch=3), 12, Origin.COORDINATOR)


def test_snapshot_round_trip(tmp_path: Path, psm: ProducerStateManager) -> None:
    sample_state(psm)
    data = encode_snapshot(psm.producers.values())
    decoded = {e.producer_id: e for e in decode_snapshot(data)}
    assert decoded == psm.producers
    path = psm.take_snapshot(13, sync=True)
    assert path == tmp_path / snapshot_name(13) and path.read_bytes() == data
    fresh = ProducerStateManager(tmp_path, "t-0")
    assert fresh.snapshot_offsets == [13]
    fresh.load([], 0, 13, True, 3_000)
    assert fresh.producers == psm.producers
    assert fresh.ongoing_txns == {8: 5}
    assert apply(fresh, pbatch(seq=3, ts=1_003), 99) == BatchMetadata(3, 3, 0, 1_003)


def test_snapshot_is_kafkas_format(psm: ProducerStateManager) -> None:
    """version int16 1, CRC-32C of the rest, int32 count, 46-byte entries; Kafka's
    reader, which keeps the last entry per producer id, sees Kafka's own view."""
    sample_state(psm)
    data = encode_snapshot(psm.producers.values())
    version, crc, count = struct.unpack_from(">hIi", data)
    assert version == 1 and crc == crc32c(data[6:])
    assert len(data) == 10 + 46 * count and count == 5 + 1 + 1
    rows = list(struct.iter_unpack(">qhiqiqiq", data[10:]))
    kafka_view = {row[0]: row for row in rows}
    assert kafka_view[PID] == (PID, EPOCH, 7, 7, 0, 1_007, -1, -1)
    assert kafka_view[5] == (5, 2, 3, 11, 3, 3_003, -1, 8)
    assert kafka_view[6] == (6, 9, -1, -1, 0, 2_000, 3, -1)
    # And a snapshot written the way Kafka writes it (one entry per producer) loads.
    body = struct.pack(">i", 1) + struct.pack(">qhiqiqiq", 42, 1, 9, 100, 4, 5_000, -1, -1)
    kafka_file = struct.pack(">hI", 1, crc32c(body)) + body
    (entry,) = decode_snapshot(kafka_file)
    assert entry == ProducerStateEntry(42, 1, [BatchMetadata(9, 100, 4, 5_000)], -1, 5_000)
    assert (entry.first_seq, entry.first_data_offset) == (5, 96)


@pytest.mark.parametrize("damage", ["empty", "truncated", "crc", "version", "count"])
def test_corrupt_snapshots_are_rejected(psm: ProducerStateManager, damage: str) -> None:
    sample_state(psm)
    data = bytearray(encode_snapshot(psm.producers.values()))
    if damage == "empty":
        data = bytearray()
    elif damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "crc":
        data[20] ^= 0xFF
    elif damage == "version":
        data[1] = 2
    elif damage == "count":
        body = struct.pack(">i", 9) + bytes(data[10:])
        data = bytearray(struct.pack(">hI", 1, crc32c(body)) + body)
    with pytest.raises(CorruptSnapshotError):
        decode_snapshot(bytes(data))


def test_corrupt_newest_snapshot_falls_back_to_an_older_one(tmp_path: Path, caplog) -> None:
    dir = tmp_path / "t-0"
    log = idem_log(dir, segment_bytes=300)
    for seq in range(10):
        produce(log, seq)
    log.flush()  # a crash: no shutdown snapshot
    older, newest = log.producer_state.snapshot_offsets[-2:]
    (dir / snapshot_name(newest)).write_bytes(b"garbage")
    with caplog.at_level(logging.INFO):
        again = idem_log(dir, segment_bytes=300)
    assert "Failed to load producer snapshot" in caplog.text
    assert f"from offset {older} to 10" in caplog.text
    assert again.producer_state.last_entry(PID).last_seq == 9
    again.close()


def test_snapshot_bookkeeping(tmp_path: Path, psm: ProducerStateManager) -> None:
    apply(psm, pbatch(seq=0), 0)
    assert psm.take_snapshot(0) is None  # nothing below offset 0
    psm.take_snapshot(1)
    assert psm.take_snapshot(1) is None  # unchanged offset: no new file
    psm.take_snapshot(5)
    psm.take_snapshot(9, log_start_offset=6)  # older than the log start: removed
    assert psm.snapshot_offsets == [9]
    assert sorted(p.name for p in tmp_path.iterdir()) == [snapshot_name(9)]
    psm.flush_snapshots()
    psm.truncate_fully_and_start_at(50)
    assert psm.producers == {} and psm.snapshot_offsets == [] and not list(tmp_path.iterdir())
    assert psm.map_end_offset == 50


# -- the log: duplicates, restarts, torn tails, truncation -------------------------------


def idem_log(path: Path, clock: Clock | None = None, **config: object) -> Log:
    return open_log(path, topic_config(**config) if config else None, clock=clock)


def produce(log: Log, seq: int, n: int = 1, *, epoch: int = EPOCH, pid: int = PID) -> int:
    info = log.append_as_leader(pbatch(pid, epoch, seq, n, tag=seq), 0, now_ms=1_000)
    assert not info.duplicate
    return info.base_offset


def test_log_answers_duplicates_with_the_original_offsets(tmp_path: Path) -> None:
    log = idem_log(tmp_path / "t-0")
    log.append_as_leader(batch(2), 0)  # non-idempotent data in between
    assert [produce(log, s, 2) for s in (0, 2, 4)] == [2, 4, 6]
    before = all_bytes(log)
    info = log.append_as_leader(pbatch(seq=2, n=2, tag=2), 0, now_ms=1_000)
    assert info.duplicate
    assert (info.base_offset, info.last_offset, info.record_count) == (4, 5, 0)
    assert info.log_append_time == 1_001  # Kafka answers the stored batch timestamp
    assert log.log_end_offset == 8 and all_bytes(log) == before
    with pytest.raises(OutOfOrderSequenceError):
        log.append_as_leader(pbatch(seq=9), 0)  # a gap
    with pytest.raises(OutOfOrderSequenceError):
        log.append_as_leader(pbatch(seq=0, n=3), 0)  # overlaps, not a cached range
    assert log.log_end_offset == 8 and all_bytes(log) == before
    log.close()


def test_log_rejects_without_writing(tmp_path: Path) -> None:
    log = idem_log(tmp_path / "t-0")
    produce(log, 0, epoch=4)
    before = all_bytes(log)
    with pytest.raises(InvalidProducerEpochError):
        log.append_as_leader(pbatch(epoch=3, seq=1), 0)
    with pytest.raises(InvalidTxnStateError):
        log.append_as_leader(pbatch(epoch=4, seq=1, transactional=True), 0)
    assert all_bytes(log) == before and log.log_end_offset == 1
    log.close()


def test_clean_restart_loads_the_snapshot_without_scanning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dir = tmp_path / "t-0"
    log = idem_log(dir, segment_bytes=400)
    for seq in range(0, 40, 2):
        produce(log, seq, 2)
    assert len(log.segments) > 3
    log.close()
    assert (dir / snapshot_name(40)).exists()
    monkeypatch.setattr(ProducerStateManager, "_replay", lambda *a: pytest.fail("scanned the log"))
    again = idem_log(dir, segment_bytes=400)
    assert again.log_end_offset == 40
    entry = again.producer_state.last_entry(PID)
    assert [b.first_seq for b in entry.batches] == [30, 32, 34, 36, 38]
    for seq in (30, 38):  # every cached batch, not only the last, survives the restart
        info = again.append_as_leader(pbatch(seq=seq, n=2, tag=seq), 0)
        assert info.duplicate and info.base_offset == seq
    again.close()


def test_unclean_restart_replays_only_the_tail(tmp_path: Path, caplog) -> None:
    dir = tmp_path / "t-0"
    log = idem_log(dir, segment_bytes=400)
    for seq in range(0, 40, 2):
        produce(log, seq, 2)
    last_base = log.segments[-1].base_offset
    assert 0 < last_base < 40
    # Snapshots at every roll (each segment base but the first); no close: a crash.
    bases = [s.base_offset for s in log.segments[1:]]
    assert log.producer_state.snapshot_offsets == bases
    log.flush()
    with caplog.at_level(logging.INFO):
        again = idem_log(dir, segment_bytes=400)
    assert f"from offset {last_base} to 40" in caplog.text
    assert again.producer_state.last_entry(PID).last_seq == 39
    info = again.append_as_leader(pbatch(seq=36, n=2, tag=36), 0)
    assert info.duplicate and info.base_offset == 36
    assert produce(again, 40) == 40
    again.close()


def test_rebuild_after_a_torn_tail(tmp_path: Path) -> None:
    dir = tmp_path / "t-0"
    log = idem_log(dir)
    for seq in range(6):
        produce(log, seq)
    log.flush()
    seg = dir / "00000000000000000000.log"
    data = seg.read_bytes()
    last_pos = [pos for pos, _ in iter_batches(data)][-1]
    with open(seg, "r+b") as f:
        f.truncate(last_pos + 30)  # the last batch is torn
    for snap in dir.glob("*.snapshot"):
        snap.unlink()
    again = idem_log(dir)
    assert again.log_end_offset == 5
    entry = again.producer_state.last_entry(PID)
    assert (entry.first_seq, entry.last_seq, entry.last_data_offset) == (0, 4, 4)
    # The torn batch was never acknowledged durably: its retry is appended again.
    assert produce(again, 5) == 5
    assert again.append_as_leader(pbatch(seq=4, tag=4), 0).duplicate
    again.close()


def test_crash_without_any_snapshot_rebuilds_from_the_start(tmp_path: Path) -> None:
    dir = tmp_path / "t-0"
    log = idem_log(dir, segment_bytes=300)
    for seq in range(10):
        produce(log, seq)
    log.flush()
    for snap in dir.glob("*.snapshot"):
        snap.unlink()
    again = idem_log(dir, segment_bytes=300)
    assert again.producer_state.last_entry(PID).last_seq == 9
    # The rebuild leaves snapshots at the last two segment bases and the log end.
    bases = [s.base_offset for s in again.segments]
    assert again.producer_state.snapshot_offsets == sorted({*bases[-2:], 10} - {0})
    again.close()


def test_clean_log_without_snapshots_is_not_scanned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A log from before producer state existed (Kafka's upgrade path)."""
    dir = tmp_path / "t-0"
    log = idem_log(dir)
    for seq in range(3):
        produce(log, seq)
    log.close()
    for snap in dir.glob("*.snapshot"):
        snap.unlink()
    monkeypatch.setattr(ProducerStateManager, "_replay", lambda *a: pytest.fail("scanned the log"))
    again = open_log(dir, clean_shutdown=True)
    assert again.producer_state.producers == {}
    assert again.producer_state.snapshot_offsets == [3]
    again.close()


def test_stray_and_out_of_range_snapshots_are_removed(tmp_path: Path) -> None:
    dir = tmp_path / "t-0"
    log = idem_log(dir, segment_bytes=300)
    for seq in range(10):
        produce(log, seq)
    bases = [s.base_offset for s in log.segments]
    log.close()
    junk = [snapshot_name(bases[1] + 1), snapshot_name(1_000)]
    for name in junk:
        (dir / name).write_bytes(b"junk")
    again = open_log(dir, topic_config(segment_bytes=300), clean_shutdown=True)
    names = sorted(p.name for p in dir.glob("*.snapshot"))
    assert snapshot_name(bases[1] + 1) not in names  # not at a segment base: stray
    assert snapshot_name(1_000) not in names  # beyond the log end
    # The shutdown snapshot at 10 lost to the junk at 1000 (only the newest stray is kept);
    # the state was rebuilt from the roll snapshots and written at the log end again.
    (rewritten,) = decode_snapshot((dir / snapshot_name(10)).read_bytes())
    assert rewritten.last_seq == 9
    assert again.producer_state.last_entry(PID).last_seq == 9  # rebuilt from the segments
    again.close()


def test_truncation_rebuilds_the_state(tmp_path: Path) -> None:
    log = idem_log(tmp_path / "t-0", segment_bytes=300)
    for seq in range(10):
        produce(log, seq)
    log.truncate_to(6)
    entry = log.producer_state.last_entry(PID)
    assert (entry.last_seq, entry.last_data_offset) == (5, 5)
    assert all(o <= 6 for o in log.producer_state.snapshot_offsets)
    assert log.append_as_leader(pbatch(seq=5, tag=5), 0).duplicate
    assert produce(log, 6) == 6
    log.truncate_fully_and_start_at(100)
    assert log.producer_state.producers == {}
    assert log.producer_state.snapshot_offsets == []
    assert produce(log, 50) == 100  # unknown again: any sequence
    log.close()


def test_truncation_without_producers_skips_the_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = idem_log(tmp_path / "t-0")
    for _ in range(5):
        log.append_as_leader(batch(1), 0)
    monkeypatch.setattr(ProducerStateManager, "_replay", lambda *a: pytest.fail("scanned the log"))
    log.truncate_to(2)
    assert log.log_end_offset == 2
    log.close()


def test_snapshots_below_the_log_start_go_at_the_next_roll(tmp_path: Path) -> None:
    clock = Clock(10_000)
    log = idem_log(tmp_path / "t-0", clock, segment_bytes=300)
    for seq in range(10):
        produce(log, seq)
    log.high_watermark = log.log_end_offset
    first_snaps = log.producer_state.snapshot_offsets
    log.delete_records_before(log.segments[-1].base_offset)
    log.roll()
    start = log.log_start_offset
    assert all(o >= start for o in log.producer_state.snapshot_offsets)
    assert first_snaps[0] < start
    assert not (tmp_path / "t-0" / snapshot_name(first_snaps[0])).exists()
    # The in-memory state outlives the deleted data (KIP-360).
    assert log.append_as_leader(pbatch(seq=9, tag=9), 0).duplicate
    log.close()


def test_follower_appends_update_the_state(tmp_path: Path) -> None:
    leader = idem_log(tmp_path / "leader-0")
    for seq in range(3):
        produce(leader, seq)
    follower = idem_log(tmp_path / "follower-0")
    follower.append_as_follower(bytearray(all_bytes(leader)))
    assert follower.producer_state.producers == leader.producer_state.producers
    leader.close()
    follower.close()


def test_non_idempotent_appends_leave_no_state(tmp_path: Path) -> None:
    log = idem_log(tmp_path / "t-0")
    for _ in range(3):
        log.append_as_leader(batch(2), 0)
    assert log.producer_state.producers == {}
    log.close()
    assert sorted(os.listdir(tmp_path / "t-0")) == sorted(
        [
            "00000000000000000000.index",
            "00000000000000000000.log",
            "00000000000000000000.timeindex",
            "leader-epoch-checkpoint",
            snapshot_name(6),
        ]
    )
