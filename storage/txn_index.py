"""The aborted-transaction index of a segment: Kafka's ``TransactionIndex`` (``.txnindex``).

When a transaction is aborted, the ABORT marker's append adds one entry to the index of
the segment that holds the marker. A ``read_committed`` Fetch collects the entries that
overlap the fetched offsets, so the consumer knows which producer's batches to skip.
The file is a sequence of 34-byte big-endian entries (Kafka's ``AbortedTxn``)::

    version int16 (0) | producer_id int64 | first_offset int64 | last_offset int64 |
    last_stable_offset int64

``first_offset`` is the transaction's first data offset, ``last_offset`` the marker's offset
and ``last_stable_offset`` the partition's LSO once the marker was written (the first
offset of the earliest other open transaction, else the marker's offset + 1). A search
can stop at the first entry whose LSO reaches the upper bound of the fetched range: any
transaction starting before that bound was complete when that entry was written.

As in Kafka the file exists only once a segment has an aborted transaction (it is created
by the first append), entries are appended in marker order, truncation drops the entries
whose marker is at or after the truncation offset, and a missing file is an empty index.
Entries are kept in memory once read (these files are tiny); appends are one ``pwrite``.
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from pybroker.storage.errors import CorruptIndexError
from pybroker.storage.fileio import fsync_path, write_atomic

TXN_INDEX_SUFFIX = ".txnindex"
ABORTED_TXN_VERSION = 0
_ENTRY = struct.Struct(">hqqqq")
ENTRY_SIZE = _ENTRY.size  # 34


class AbortedTxn(NamedTuple):
    producer_id: int
    first_offset: int
    last_offset: int
    last_stable_offset: int


class TxnIndexSearch(NamedTuple):
    aborted: list[AbortedTxn]
    complete: bool  # no later segment can hold an entry overlapping the range


def encode_entries(entries: Iterable[AbortedTxn]) -> bytes:
    return b"".join(_ENTRY.pack(ABORTED_TXN_VERSION, *e) for e in entries)


def decode_entries(data: bytes, path: Path | str = "<txnindex>") -> list[AbortedTxn]:
    """Entries of an index file; raises CorruptIndexError for a torn or foreign file."""
    if len(data) % ENTRY_SIZE:
        raise CorruptIndexError(
            f"{path}: size {len(data)} is not a multiple of the entry size {ENTRY_SIZE}"
        )
    out = []
    for version, *fields in _ENTRY.iter_unpack(data):
        if version != ABORTED_TXN_VERSION:
            raise CorruptIndexError(f"{path}: unexpected aborted transaction version {version}")
        out.append(AbortedTxn(*fields))
    return out


class TransactionIndex:
    """The ``.txnindex`` of one segment. Event loop only, except ``fsync``."""

    __slots__ = ("path", "base_offset", "_entries", "_dirty")

    def __init__(self, path: Path, base_offset: int) -> None:
        self.path = path
        self.base_offset = base_offset
        self._entries: list[AbortedTxn] | None = None  # None: not read yet
        self._dirty = False

    def __repr__(self) -> str:
        return f"TransactionIndex({self.path})"

    # -- reading -----------------------------------------------------------------------

    def entries(self) -> list[AbortedTxn]:
        """All entries in marker order (Kafka's allAbortedTxns)."""
        if self._entries is None:
            try:
                data = self.path.read_bytes()
            except FileNotFoundError:
                data = b""
            self._entries = decode_entries(data, self.path)
        return self._entries

    @property
    def last_offset(self) -> int | None:
        entries = self.entries()
        return entries[-1].last_offset if entries else None

    def sanity_check(self) -> None:
        """Kafka's TransactionIndex.sanityCheck: readable entries, none before the base."""
        self._entries = None
        for e in self.entries():
            if e.last_offset < self.base_offset:
                self._entries = None
                raise CorruptIndexError(
                    f"Last offset of aborted transaction {e} in index {self.path} is less "
                    f"than start offset {self.base_offset}"
                )

    def collect(self, fetch_offset: int, upper_bound: int) -> TxnIndexSearch:
        """Kafka's collectAbortedTxns: entries overlapping [fetch_offset, upper_bound)."""
        found = []
        for e in self.entries():
            if e.last_offset >= fetch_offset and e.first_offset < upper_bound:
                found.append(e)
            if e.last_stable_offset >= upper_bound:
                return TxnIndexSearch(found, True)
        return TxnIndexSearch(found, False)

    # -- writing -----------------------------------------------------------------------

    def append(self, entry: AbortedTxn) -> None:
        """Add an entry; its marker must come after the last one (as Kafka requires)."""
        entries = self.entries()
        if entries and entries[-1].last_offset >= entry.last_offset:
            raise ValueError(
                f"The last offset of appended transactions must increase sequentially, but "
                f"{entry.last_offset} is not greater than current last offset "
                f"{entries[-1].last_offset} of index {self.path}"
            )
        data = encode_entries((entry,))
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            position = len(entries) * ENTRY_SIZE
            os.ftruncate(fd, position)  # drop a torn tail a crash may have left
            written = os.pwrite(fd, data, position)
            if written != len(data):
                os.ftruncate(fd, position)
                raise OSError(f"short write of {written} bytes to {self.path}")
        finally:
            os.close(fd)
        entries.append(entry)
        self._dirty = True

    def write_all(self, entries: Iterable[AbortedTxn]) -> None:
        """Replace the file with ``entries`` (compaction's merged index); empty: no file."""
        new = list(entries)
        if not new:
            self.delete()
            return
        write_atomic(self.path, encode_entries(new))
        self._entries = new
        self._dirty = False

    def truncate_to(self, offset: int) -> None:
        """Drop the entries whose marker is at or after ``offset``."""
        entries = self.entries()
        keep = len(entries)
        while keep and entries[keep - 1].last_offset >= offset:
            keep -= 1
        if keep == len(entries):
            return
        if keep == 0:
            self.delete()
            return
        with contextlib.suppress(FileNotFoundError):
            os.truncate(self.path, keep * ENTRY_SIZE)
        del entries[keep:]
        self._dirty = True

    def reset(self) -> None:
        """Empty the index (a segment being recovered rebuilds it)."""
        self.delete()

    def delete(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self._entries = []
        self._dirty = False

    def forget(self) -> None:
        """Drop the cached entries (the file was renamed or replaced behind our back)."""
        self._entries = None
        self._dirty = False

    def fsync(self) -> None:
        """Make appended entries durable; safe from a flush thread."""
        if not self._dirty:
            return
        self._dirty = False
        fsync_path(self.path)


__all__ = [
    "ABORTED_TXN_VERSION",
    "AbortedTxn",
    "ENTRY_SIZE",
    "TXN_INDEX_SUFFIX",
    "TransactionIndex",
    "TxnIndexSearch",
    "decode_entries",
    "encode_entries",
]
