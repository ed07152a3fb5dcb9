"""The record browser: records of one local partition from an offset, as JSON-ready dicts.

Reads go through ``Log.read`` (whole batches, page-cache reads) up to the high watermark,
and batches decode with ``protocol.records.decode_records`` (every codec). The cost is
bounded three ways: at most MAX_RECORDS records, at most READ_CHUNK bytes read per step and
MAX_RESPONSE_BYTES of keys/values in the answer (each key/value shown up to
MAX_FIELD_BYTES, its full size in ``key_size``/``value_size``), at most MAX_READ_BYTES of
batches read, and a batch may inflate to at most MAX_DECOMPRESSED bytes.
"""

from __future__ import annotations

import base64
from typing import Any

from pybroker.protocol.errors import KafkaError
from pybroker.protocol.records import BatchHeader, Record, decode_records, iter_batches

DEFAULT_RECORDS = 50
MAX_RECORDS = 500
READ_CHUNK = 512 * 1024
MAX_FIELD_BYTES = 64 * 1024
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
MAX_DECOMPRESSED = 32 * 1024 * 1024
MAX_READ_BYTES = 16 * 1024 * 1024  # batches read per answer (compacted logs can be sparse)


def bytes_view(data: bytes | None, prefix: str) -> dict[str, Any]:
    """``{prefix}_b64`` always, ``{prefix}_text`` when the (shown) bytes are UTF-8."""
    if data is None:
        return {f"{prefix}_b64": None, f"{prefix}_text": None}
    shown = data[:MAX_FIELD_BYTES]
    text: str | None
    try:
        text = shown.decode("utf-8")
    except UnicodeDecodeError as exc:
        # a character cut by the bound still counts as text: drop its first bytes
        cut = len(data) > len(shown) and exc.reason == "unexpected end of data"
        text = shown[: exc.start].decode("utf-8", "replace") if cut else None
    return {f"{prefix}_b64": base64.b64encode(shown).decode("ascii"), f"{prefix}_text": text}


def record_view(record: Record, header: BatchHeader) -> dict[str, Any]:
    out: dict[str, Any] = {
        "offset": record.offset,
        "timestamp": record.timestamp,
        "timestamp_type": "log_append" if header.timestamp_type else "create",
    }
    out.update(bytes_view(record.key, "key"))
    out["key_size"] = None if record.key is None else len(record.key)
    out.update(bytes_view(record.value, "value"))
    out["value_size"] = None if record.value is None else len(record.value)
    out["headers"] = [
        {"key": key.encode("utf-8", "surrogateescape").decode("utf-8", "replace")}
        | bytes_view(value, "value")
        for key, value in record.headers
    ]
    out["producer_id"] = header.producer_id
    out["transactional"] = header.is_transactional
    out["control"] = header.is_control
    return out


def read_records(log: Any, offset: int, max_records: int) -> dict[str, Any]:
    """Records from ``offset`` (clamped into [log start, high watermark]) of a local Log.

    Raises KafkaError when the log cannot be read (closed, storage error)."""
    start, hw = log.log_start_offset, log.high_watermark
    position = min(max(offset, start), hw)
    records: list[dict[str, Any]] = []
    budget = MAX_RESPONSE_BYTES
    next_offset = position
    error: str | None = None
    read = 0
    while next_offset < hw and len(records) < max_records and budget > 0:
        if read >= MAX_READ_BYTES:
            break
        info = log.read(next_offset, READ_CHUNK, max_offset=hw)
        if not info.slices:
            break
        read += info.total_bytes
        progressed = False
        for piece in info.slices:
            data = piece.read()
            for pos, header in iter_batches(data):
                if header.next_offset <= next_offset:
                    continue
                progressed = True
                try:
                    batch = decode_records(data, pos, max_size=MAX_DECOMPRESSED)
                except KafkaError as exc:  # CorruptRecordError, a codec's failure
                    error = f"batch at offset {header.base_offset}: {exc}"
                    next_offset = header.next_offset
                    break
                for record in batch:
                    if record.offset < next_offset or record.offset >= hw:
                        continue
                    if len(records) >= max_records or budget <= 0:
                        break
                    records.append(record_view(record, header))
                    budget -= _shown(record.key) + _shown(record.value)
                    next_offset = record.offset + 1
                else:
                    # a compacted batch may end with removed records: skip to its end
                    next_offset = max(next_offset, min(header.next_offset, hw))
                    continue
                break
            if error is not None or len(records) >= max_records or budget <= 0:
                break
        if error is not None or not progressed:
            break
    return {
        "offset": position,
        "log_start_offset": start,
        "high_watermark": hw,
        "next_offset": next_offset,
        "records": records,
        **({"error": error} if error else {}),
    }


def _shown(data: bytes | None) -> int:
    return 0 if data is None else min(len(data), MAX_FIELD_BYTES)
