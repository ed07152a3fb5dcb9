"""The aborted-transaction index (.txnindex) and the last stable offset of a Log.

Cases follow Kafka's TransactionIndexTest and the LSO / aborted-transaction parts of
UnifiedLogTest (storage/src/test/java/org/apache/kafka/storage/internals/log and
core/src/test/scala/unit/kafka/log).
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from pybroker.protocol.errors import InvalidTxnStateError
from pybroker.storage.errors import CorruptIndexError
from pybroker.storage.log import Log
from pybroker.storage.txn_index import (
    ENTRY_SIZE,
    AbortedTxn,
    TransactionIndex,
    decode_entries,
    encode_entries,
)
from tests.unit.test_producer_state import marker, pbatch
from tests.unit.test_storage_support import batch, open_log, topic_config

# -- the index file ----------------------------------------------------------------------


def test_entry_format_is_kafkas_aborted_txn(tmp_path: Path) -> None:
    index = TransactionIndex(tmp_path / "00000000000000000000.txnindex", 0)
    assert not index.path.exists()  # created by the first append, as in Kafka
    index.append(AbortedTxn(7, 3, 10, 11))
    raw = index.path.read_bytes()
    assert len(raw) == ENTRY_SIZE == 34
    assert raw == struct.pack(">hqqqq", 0, 7, 3, 10, 11)
    assert decode_entries(raw) == [AbortedTxn(7, 3, 10, 11)]
    assert encode_entries([AbortedTxn(7, 3, 10, 11)]) == raw


def test_appends_must_follow_marker_order(tmp_path: Path) -> None:
    index = TransactionIndex(tmp_path / "x.txnindex", 0)
    index.append(AbortedTxn(1, 0, 10, 11))
    with pytest.raises(ValueError, match="must increase"):
        index.append(AbortedTxn(2, 5, 10, 11))
    index.append(AbortedTxn(2, 5, 12, 13))
    again = TransactionIndex(index.path, 0)
    assert again.entries() == [AbortedTxn(1, 0, 10, 11), AbortedTxn(2, 5, 12, 13)]


def test_collect_aborted_txns(tmp_path: Path) -> None:
    # Kafka's TransactionIndexTest.testCollectAbortedTransactions
    index = TransactionIndex(tmp_path / "x.txnindex", 0)
    txns = [
        AbortedTxn(0, 0, 10, 11),
        AbortedTxn(1, 5, 15, 13),
        AbortedTxn(2, 18, 35, 25),
        AbortedTxn(3, 32, 50, 40),
    ]
    for t in txns:
        index.append(t)
    assert index.collect(0, 32) == (txns[:3], True)  # the last entry's LSO is 40 >= 32
    assert index.collect(0, 33) == (txns, True)
    # the LSO of the third entry (25) reaches the upper bound: the search is complete
    assert index.collect(0, 25) == (txns[:3], True)
    assert index.collect(16, 25) == (txns[2:3], True)
    assert index.collect(51, 60) == ([], False)


def test_truncate_reset_and_sanity(tmp_path: Path) -> None:
    path = tmp_path / "00000000000000000010.txnindex"
    index = TransactionIndex(path, 10)
    for t in (AbortedTxn(0, 10, 12, 13), AbortedTxn(1, 11, 20, 21), AbortedTxn(2, 15, 30, 31)):
        index.append(t)
    index.truncate_to(20)  # drops the entries whose marker is at 20 or later
    assert index.entries() == [AbortedTxn(0, 10, 12, 13)]
    assert path.stat().st_size == ENTRY_SIZE
    index.sanity_check()
    index.truncate_to(5)
    assert index.entries() == [] and not path.exists()
    path.write_bytes(b"torn")
    with pytest.raises(CorruptIndexError, match="multiple"):
        TransactionIndex(path, 10).sanity_check()
    path.write_bytes(struct.pack(">hqqqq", 1, 0, 10, 12, 13))
    with pytest.raises(CorruptIndexError, match="version"):
        TransactionIndex(path, 10).sanity_check()
    path.write_bytes(struct.pack(">hqqqq", 0, 0, 1, 5, 6))
    with pytest.raises(CorruptIndexError, match="less than start offset"):
        TransactionIndex(path, 10).sanity_check()


# -- the last stable offset and the log ---------------------------------------------------

PID, OTHER = 1000, 2000


def txn_data(log: Log, pid: int, seq: int, n: int = 1, tag: int = 0) -> int:
    info = log.append_as_leader(
        pbatch(pid, 0, seq, n, transactional=True, tag=tag), 0, verified_txn=(pid, 0)
    )
    log.high_watermark = log.log_end_offset
    return info.base_offset


def end_txn(log: Log, pid: int, *, commit: bool) -> int:
    info = log.append_as_leader(marker(pid, 0, commit=commit), 0, client=False)
    log.high_watermark = log.log_end_offset
    return info.base_offset


def plain(log: Log) -> int:
    info = log.append_as_leader(batch(1), 0)
    log.high_watermark = log.log_end_offset
    return info.base_offset


def test_first_transactional_batch_needs_verification(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    with pytest.raises(InvalidTxnStateError):
        log.append_as_leader(pbatch(PID, 0, 0, transactional=True), 0)
    with pytest.raises(InvalidTxnStateError):  # verified for another producer
        log.append_as_leader(pbatch(PID, 0, 0, transactional=True), 0, verified_txn=(OTHER, 0))
    assert log.log_end_offset == 0
    txn_data(log, PID, 0)
    # once ongoing, later batches of the transaction need no verification
    log.append_as_leader(pbatch(PID, 0, 1, transactional=True), 0)
    assert log.producer_state.verified_txn is None
    log.close()


def test_last_stable_offset_and_aborted_index(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    assert log.last_stable_offset == 0 and log.first_unstable_offset is None
    plain(log)  # 0
    a = txn_data(log, PID, 0, 2)  # 1-2
    assert log.first_unstable_offset == a == 1
    assert log.last_stable_offset == 1 and log.high_watermark == 3
    b = txn_data(log, OTHER, 0)  # 3
    plain(log)  # 4
    assert log.last_stable_offset == 1
    marker_a = end_txn(log, PID, commit=False)  # 5: abort; OTHER still open at 3
    assert log.last_stable_offset == b == 3
    assert log.all_aborted_txns() == [AbortedTxn(PID, a, marker_a, b)]
    marker_b = end_txn(log, OTHER, commit=True)  # 6: commits are not indexed
    assert log.first_unstable_offset is None
    assert log.last_stable_offset == log.high_watermark == marker_b + 1 == 7
    assert log.all_aborted_txns() == [AbortedTxn(PID, a, marker_a, b)]
    # the LSO never passes the high watermark
    txn_data(log, PID, 2)
    log.high_watermark = 7
    assert log.last_stable_offset == 7

    info = log.read(0, 1 << 20, max_offset=log.last_stable_offset, collect_aborted=True)
    assert info.aborted_transactions == [AbortedTxn(PID, 1, 5, 3)]
    info = log.read(6, 1 << 20, max_offset=7, collect_aborted=True)
    assert info.aborted_transactions == []  # the abort ended before offset 6
    assert log.read(0, 1 << 20).aborted_transactions is None  # read_uncommitted
    log.close()


def test_aborted_entry_lands_in_the_markers_segment_and_survives_restart(tmp_path: Path) -> None:
    dir = tmp_path / "t-0"
    log = open_log(dir, topic_config(segment_bytes=400))
    first = txn_data(log, PID, 0)
    for _ in range(8):
        plain(log)
    assert len(log.segments) > 2
    abort_at = end_txn(log, PID, commit=False)
    marker_segment = log.segments[-1]
    assert marker_segment.txn_index.entries() == [AbortedTxn(PID, first, abort_at, abort_at + 1)]
    assert all(not s.txn_index.path.exists() for s in log.segments[:-1])
    # a fetch from the transaction's first offset sees it, one after the marker does not
    found = log.read(first, 200, collect_aborted=True)
    assert found.aborted_transactions == [AbortedTxn(PID, first, abort_at, abort_at + 1)]
    assert log.read(abort_at + 1 - 1, 1 << 20, collect_aborted=True).aborted_transactions == [
        AbortedTxn(PID, first, abort_at, abort_at + 1)
    ]
    log.close()
    again = open_log(dir, topic_config(segment_bytes=400), clean_shutdown=True)
    assert again.all_aborted_txns() == [AbortedTxn(PID, first, abort_at, abort_at + 1)]
    again.close()


def test_recovery_rebuilds_txn_indexes(tmp_path: Path) -> None:
    """An unclean start rebuilds the .txnindex of every recovered segment, including an
    abort whose transaction started in a segment before the recovery point."""
    dir = tmp_path / "t-0"
    config = topic_config(segment_bytes=400)
    log = open_log(dir, config)
    first = txn_data(log, PID, 0)
    for _ in range(6):
        plain(log)
    other = txn_data(log, OTHER, 0)
    abort_pid = end_txn(log, PID, commit=False)
    abort_other = end_txn(log, OTHER, commit=False)
    expected = [
        AbortedTxn(PID, first, abort_pid, other),
        AbortedTxn(OTHER, other, abort_other, abort_other + 1),
    ]
    assert log.all_aborted_txns() == expected
    last_base = log.segments[-1].base_offset
    log.flush(last_base)  # recovery point: the last segment
    assert log.recovery_point == last_base
    rp = log.recovery_point
    for seg in log.segments:
        seg.txn_index.path.unlink(missing_ok=True)  # as a crash could lose them
    log._closed = True  # crash: no close, no shutdown snapshot
    again = open_log(dir, config, recovery_point=rp)
    assert again.all_aborted_txns() == [e for e in expected if e.last_offset >= last_base]
    assert again.producer_state.first_undecided_offset() is None
    again.close()
    # a truncation drops the entries of markers it removes
    third = open_log(dir, config, clean_shutdown=True)
    third.truncate_to(abort_other)
    assert all(e.last_offset < abort_other for e in third.all_aborted_txns())
    third.close()


def test_corrupt_txn_index_is_rebuilt_on_a_clean_start(tmp_path: Path) -> None:
    dir = tmp_path / "t-0"
    log = open_log(dir)
    first = txn_data(log, PID, 0, 3)
    abort_at = end_txn(log, PID, commit=False)
    log.close()
    path = log.segments[0].txn_index.path
    path.write_bytes(path.read_bytes()[:-3])
    again = open_log(dir, clean_shutdown=True)
    assert again.all_aborted_txns() == [AbortedTxn(PID, first, abort_at, abort_at + 1)]
    again.close()


def test_compaction_keeps_the_aborted_transaction_index(tmp_path: Path) -> None:
    """A cleaned segment takes over the .txnindex entries of the segments it replaces
    (follower appends index aborted transactions too)."""
    from pybroker.storage.cleaner import LogCleaner
    from tests.unit.test_storage_cleaner import NOW, append, compact_config
    from tests.unit.test_storage_cleaner import marker as follower_marker
    from tests.unit.test_storage_support import Clock

    clock = Clock(NOW)
    log = open_log(tmp_path / "t-0", compact_config(), clock=clock)
    append(log, [(b"a", b"kept")], pid=7, epoch=0, seq=0, txn=True)  # 0
    append(log, [(b"b", b"gone")], pid=8, epoch=0, seq=0, txn=True)  # 1
    follower_marker(log, True, pid=7)  # 2
    follower_marker(log, False, pid=8)  # 3
    log.roll()
    append(log, [(b"a", b"newer")])  # 4
    log.roll()
    assert log.all_aborted_txns() == [AbortedTxn(8, 1, 3, 4)]
    first = log.segments[0]
    assert LogCleaner(now_ms=clock).clean_once([log], clock.now) is not None
    assert log.segments[0] is not first  # swapped for the cleaned segment
    assert log.segments[0].txn_index.entries() == [AbortedTxn(8, 1, 3, 4)]
    assert log.read(0, 1 << 20, collect_aborted=True).aborted_transactions == [
        AbortedTxn(8, 1, 3, 4)
    ]
    log.close()
    again = open_log(tmp_path / "t-0", compact_config(), clock=clock, clean_shutdown=True)
    assert again.all_aborted_txns() == [AbortedTxn(8, 1, 3, 4)]
    again.close()
