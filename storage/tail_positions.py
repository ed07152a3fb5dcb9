"""Where a segment's most recently appended batches start, so tail reads skip the scan.

A consumer or follower at the end of the log fetches from an offset that was appended a
moment ago. Without this, finding its batch means reading headers from the last sparse
index entry (up to ``index.interval.bytes`` of small batches) on every fetch, and the
high-watermark bound of the same read scans to the end of the file.

The entries always describe consecutive batches ending at the segment's end: appends add
to the right, and anything else that changes the file (truncation, recovery, a cleaner
swap) clears them. Offsets rise with position, so when ``offset`` is at or past the first
remembered base offset, no batch before the remembered ones can hold it.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable

# A tail fetch is answered within the last few batches; 64 covers bursts of small ones.
TAIL_BATCHES = 64

NOT_COVERED = -2  # the offset is before the remembered batches: scan as before
NO_BATCH = -1  # no batch at or after ``start`` holds an offset >= the one asked for


class TailPositions:
    """``(base offset, last offset, position)`` of the last appended batches."""

    __slots__ = ("_end", "_entries")

    def __init__(self, size: int = TAIL_BATCHES) -> None:
        self._entries: collections.deque[tuple[int, int, int]] = collections.deque(maxlen=size)
        self._end = -1  # where the last remembered batch ends

    def add(
        self,
        payload: bytes | bytearray | memoryview,
        position: int,
        batches: Iterable[tuple[int, int, int]],
    ) -> None:
        """Remember the batches of ``payload``, just written at ``position``.

        ``batches`` holds (last offset, max timestamp, size) per batch, as the segment's
        append takes them; each base offset is read from its batch's first 8 bytes.
        """
        entries = self._entries
        if position != self._end:
            entries.clear()  # not right after the remembered batches: they cannot be trusted
        p = 0
        for last_offset, _ts, size in batches:
            base = int.from_bytes(payload[p : p + 8], "big")
            entries.append((base, last_offset, position + p))
            p += size
        self._end = position + p

    def clear(self) -> None:
        self._entries.clear()
        self._end = -1

    def find(self, offset: int, start: int = 0) -> int:
        """Position of the first batch at or after ``start`` whose last offset >= ``offset``.

        NO_BATCH when none is (the offset is past the end), NOT_COVERED when the answer
        may lie before the remembered batches.
        """
        entries = self._entries
        if not entries or offset < entries[0][0]:
            return NOT_COVERED
        found = NO_BATCH
        for i in range(len(entries) - 1, -1, -1):
            _base, last, position = entries[i]
            if last < offset or position < start:
                break
            found = position
        return found
