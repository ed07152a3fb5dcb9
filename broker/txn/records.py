"""Record keys and values of ``__transaction_state``, byte-compatible with Kafka's.

Kafka's transaction coordinator stores one record per state change of a transactional
id (Kafka 4's ``transaction-coordinator/src/main/resources/common/message``):

- ``TransactionLogKey`` v0: an int16 version prefix (0) and the transactional id (int16
  length + UTF-8). The key never changes: compaction keeps each id's latest state.
- ``TransactionLogValue`` v0-v1, prefixed by its int16 version: producerId int64,
  producerEpoch int16, transactionTimeoutMs int32, transactionStatus int8,
  transactionPartitions (nullable array of topic + int32 partition ids; null in state
  Empty), transactionLastUpdateTimestampMs int64, transactionStartTimestampMs int64. v1 is
  flexible (compact strings and arrays, tagged fields) and adds the tagged fields
  PreviousProducerId (tag 0), NextProducerId (tag 1) and ClientTransactionVersion (tag 2).
- A null value is a tombstone: the transactional id expired.

Kafka 4 writes v0 while the ``transaction.version`` feature is 0 and v1 above; this
broker writes v0 unless a field only v1 can carry is set (a KIP-890 part-2 client), and
reads both. Pure bytes in and out, so Kafka's own tools can read the topic.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

TXN_KEY_VERSION = 0
TXN_VALUE_VERSION_CLASSIC = 0
TXN_VALUE_VERSION_FLEXIBLE = 1

_H = struct.Struct(">h")
_I = struct.Struct(">i")
_Q = struct.Struct(">q")
_VALUE_HEAD = struct.Struct(">qhib")  # producer id, epoch, timeout, status
_TIMES = struct.Struct(">qq")  # last update, start


class TxnRecordError(ValueError):
    """A key or value that does not parse as any version of Kafka's schemas."""


@dataclass(frozen=True, slots=True)
class TxnLogValue:
    producer_id: int
    producer_epoch: int
    timeout_ms: int
    status: int
    partitions: tuple[tuple[str, int], ...] = field(default_factory=tuple)
    last_update_ms: int = -1
    start_ms: int = -1
    previous_producer_id: int = -1
    next_producer_id: int = -1
    client_transaction_version: int = 0


def _uvarint(out: bytearray, v: int) -> None:
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        self.pos = 0

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise TxnRecordError("record is truncated")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, st: struct.Struct) -> tuple:
        return st.unpack(self.take(st.size))

    def uvarint(self) -> int:
        result = shift = 0
        while True:
            b = self.take(1)[0]
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
            if shift > 35:
                raise TxnRecordError("varint too long")

    def string(self, flexible: bool) -> str:
        n = self.uvarint() - 1 if flexible else self.unpack(_H)[0]
        if n < 0:
            raise TxnRecordError("null string where a string is required")
        try:
            return bytes(self.take(n)).decode("utf-8")
        except UnicodeDecodeError as e:
            raise TxnRecordError(f"string is not UTF-8: {e}") from e

    def array_len(self, flexible: bool) -> int:
        """-1 for a null array."""
        return self.uvarint() - 1 if flexible else self.unpack(_I)[0]

    def tagged(self) -> dict[int, memoryview]:
        out = {}
        for _ in range(self.uvarint()):
            tag = self.uvarint()
            out[tag] = self.take(self.uvarint())
        return out

    def done(self) -> bool:
        return self.pos == len(self.data)


def encode_txn_key(transactional_id: str) -> bytes:
    data = transactional_id.encode("utf-8")
    if len(data) > 0x7FFF:
        raise TxnRecordError(f"transactional id of {len(data)} bytes does not fit an int16")
    return _H.pack(TXN_KEY_VERSION) + _H.pack(len(data)) + data


def decode_txn_key(data: bytes) -> str:
    r = _Reader(data)
    (version,) = r.unpack(_H)
    if version != TXN_KEY_VERSION:
        raise TxnRecordError(f"unknown TransactionLogKey version {version}")
    txn_id = r.string(False)
    if not r.done():
        raise TxnRecordError("trailing bytes after TransactionLogKey")
    return txn_id


def _grouped(partitions: tuple[tuple[str, int], ...]) -> dict[str, list[int]]:
    by_topic: dict[str, list[int]] = {}
    for topic, p in sorted(partitions):
        by_topic.setdefault(topic, []).append(p)
    return by_topic


def encode_txn_value(value: TxnLogValue, version: int | None = None) -> bytes:
    """Kafka's TransactionLog.valueToBytes; partitions are null in state Empty (0)."""
    if version is None:
        needs_v1 = (
            value.previous_producer_id != -1
            or value.next_producer_id != -1
            or value.client_transaction_version != 0
        )
        version = TXN_VALUE_VERSION_FLEXIBLE if needs_v1 else TXN_VALUE_VERSION_CLASSIC
    if version not in (TXN_VALUE_VERSION_CLASSIC, TXN_VALUE_VERSION_FLEXIBLE):
        raise TxnRecordError(f"TransactionLogValue v{version} does not exist")
    flexible = version >= 1
    out = bytearray(_H.pack(version))
    out += _VALUE_HEAD.pack(value.producer_id, value.producer_epoch, value.timeout_ms, value.status)
    if value.status == 0:  # Empty: a null array
        out += b"\x00" if flexible else _I.pack(-1)
    else:
        by_topic = _grouped(value.partitions)
        if flexible:
            _uvarint(out, len(by_topic) + 1)
        else:
            out += _I.pack(len(by_topic))
        for topic, ids in by_topic.items():
            name = topic.encode("utf-8")
            if flexible:
                _uvarint(out, len(name) + 1)
                out += name
                _uvarint(out, len(ids) + 1)
            else:
                out += _H.pack(len(name)) + name + _I.pack(len(ids))
            for p in ids:
                out += _I.pack(p)
            if flexible:
                out.append(0)  # tagged fields of the partitions entry
    out += _TIMES.pack(value.last_update_ms, value.start_ms)
    if flexible:
        tags: list[tuple[int, bytes]] = []
        if value.previous_producer_id != -1:
            tags.append((0, _Q.pack(value.previous_producer_id)))
        if value.next_producer_id != -1:
            tags.append((1, _Q.pack(value.next_producer_id)))
        if value.client_transaction_version != 0:
            tags.append((2, _H.pack(value.client_transaction_version)))
        _uvarint(out, len(tags))
        for tag, data in tags:
            _uvarint(out, tag)
            _uvarint(out, len(data))
            out += data
    return bytes(out)


def decode_txn_value(data: bytes) -> TxnLogValue:
    """A TransactionLogValue (v0 or v1); raises TxnRecordError for anything else."""
    try:
        return _decode_txn_value(data)
    except struct.error as e:
        raise TxnRecordError(f"malformed TransactionLogValue: {e}") from e


def _decode_txn_value(data: bytes) -> TxnLogValue:
    r = _Reader(data)
    (version,) = r.unpack(_H)
    if version not in (TXN_VALUE_VERSION_CLASSIC, TXN_VALUE_VERSION_FLEXIBLE):
        raise TxnRecordError(f"unknown TransactionLogValue version {version}")
    flexible = version >= 1
    producer_id, epoch, timeout, status = r.unpack(_VALUE_HEAD)
    partitions: list[tuple[str, int]] = []
    n = r.array_len(flexible)
    for _ in range(max(n, 0)):
        topic = r.string(flexible)
        count = r.array_len(flexible)
        for _ in range(max(count, 0)):
            partitions.append((topic, r.unpack(_I)[0]))
        if flexible:
            r.tagged()
    last_update, start = r.unpack(_TIMES)
    previous = next_pid = -1
    client_version = 0
    if flexible:
        tags = r.tagged()
        if 0 in tags:
            (previous,) = _Q.unpack(tags[0])
        if 1 in tags:
            (next_pid,) = _Q.unpack(tags[1])
        if 2 in tags:
            (client_version,) = _H.unpack(tags[2])
    if not r.done():
        raise TxnRecordError("trailing bytes after TransactionLogValue")
    return TxnLogValue(
        producer_id,
        epoch,
        timeout,
        status,
        tuple(partitions),
        last_update,
        start,
        previous,
        next_pid,
        client_version,
    )


__all__ = [
    "TxnLogValue",
    "TxnRecordError",
    "decode_txn_key",
    "decode_txn_value",
    "encode_txn_key",
    "encode_txn_value",
]
