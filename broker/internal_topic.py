"""Reading an internal topic partition back, batch by batch, to rebuild coordinator state.

The group and transaction coordinators both replay their partitions of
``__consumer_offsets`` / ``__transaction_state`` at start-up; this is the one loop that
walks a log from its start offset to its end in bounded chunks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from pybroker.protocol.records import BatchHeader, iter_batches
from pybroker.storage.log import Log

log = logging.getLogger(__name__)


def read_batches(lg: Log, chunk_bytes: int) -> Iterator[tuple[bytes, int, BatchHeader, int]]:
    """(chunk, position, header, first wanted offset) of every batch from the log start.

    Records of a yielded batch below ``first wanted offset`` were already returned with
    the previous chunk (a chunk can start inside a batch after compaction gaps).
    """
    offset = lg.log_start_offset
    end = lg.log_end_offset
    chunk_bytes = max(chunk_bytes, 65536)
    while offset < end:
        info = lg.read(offset, chunk_bytes)
        data = b"".join(s.read() for s in info.slices)
        next_offset = offset
        for pos, header in iter_batches(data):
            next_offset = header.base_offset + header.last_offset_delta + 1
            if next_offset <= offset:
                continue
            yield data, pos, header, offset
        if next_offset <= offset:
            log.error("Cannot read %s-%d past offset %d", lg.topic, lg.partition, offset)
            return
        offset = next_offset
