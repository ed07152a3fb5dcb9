"""Record batches for Produce requests: valid ones in every codec, broken ones, bombs.

Valid batches come from two independent builders (ours and kafka-python's) so that the
fuzzer does not only feed the broker what its own code writes. Broken batches are valid
ones with one thing wrong; where the CRC covers the damaged bytes it is recomputed, so the
damage reaches the checks behind the CRC (magic, counts, codecs, record varints).
Compression bombs are a few KiB that decompress to hundreds of MiB.
"""

from __future__ import annotations

import random
import struct
import zlib

import lz4.frame
import zstandard
from crc32c import crc32c
from kafka.record.default_records import DefaultRecordBatchBuilder

from pybroker.protocol.records import NewRecord, build_batch

__all__ = ["BatchPool"]

_MIB = 1 << 20
_CODECS = (0, 1, 2, 3, 4)  # none, gzip, snappy, lz4, zstd


def _fix_crc(buf: bytearray) -> None:
    struct.pack_into(">I", buf, 17, crc32c(bytes(buf[21:])))


def _header(codec: int, records: int, body: bytes) -> bytes:
    """A v2 batch header (base offset 0) around an already compressed records section."""
    batch = bytearray(61) + body
    struct.pack_into(">qib", batch, 0, 0, len(batch) - 12, -1)
    batch[16] = 2
    ts = 1_700_000_000_000
    struct.pack_into(">hiqqqhii", batch, 21, codec, records - 1, ts, ts, -1, -1, -1, records)
    _fix_crc(batch)
    return bytes(batch)


def _gzip_bomb(mib: int) -> bytes:
    """gzip of ``mib`` MiB of zeros, built from one flushed deflate block repeated."""
    chunk = bytes(_MIB)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
    tail = c.flush(zlib.Z_FINISH)
    crc = 0
    for _ in range(mib):
        crc = zlib.crc32(chunk, crc)
    head = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    return head + block * mib + tail + struct.pack("<II", crc, (mib * _MIB) & 0xFFFFFFFF)


def _zstd_bomb(mib: int, declare_size: bool) -> bytes:
    chunk = bytes(_MIB)
    z = zstandard.ZstdCompressor(level=3, write_content_size=declare_size)
    co = z.compressobj(size=mib * _MIB if declare_size else -1)
    return b"".join(co.compress(chunk) for _ in range(mib)) + co.flush()


def _lz4_bomb(mib: int) -> bytes:
    chunk = bytes(_MIB)
    c = lz4.frame.LZ4FrameCompressor(block_linked=False)
    return c.begin() + b"".join(c.compress(chunk) for _ in range(mib)) + c.flush()


class BatchPool:
    """Valid batches (built once) and the operators that break them."""

    def __init__(self, rng: random.Random, bombs: bool = True) -> None:
        valid: list[bytes] = []
        for codec in _CODECS:
            for n in (1, 3):
                valid.append(self._ours(rng, codec, n))
                valid.append(self._kafka_python(rng, codec, n))
        self.valid = tuple(valid)
        self.bombs: tuple[bytes, ...] = ()
        if bombs:
            self.bombs = (
                _header(1, 1, _gzip_bomb(256)),
                _header(4, 1, _zstd_bomb(512, declare_size=True)),
                _header(4, 1, _zstd_bomb(256, declare_size=False)),
                _header(4, 1, _zstd_bomb(100, declare_size=False)),
                _header(3, 1, _lz4_bomb(64)),
            )

    @staticmethod
    def _record_values(rng: random.Random, n: int) -> list[NewRecord]:
        return [
            NewRecord(
                key=None if rng.random() < 0.3 else rng.randbytes(rng.randrange(8)),
                value=None if rng.random() < 0.1 else rng.randbytes(rng.randrange(200)),
                headers=tuple(("h" + str(i), rng.randbytes(3)) for i in range(rng.randrange(0, 3))),
                timestamp=1_700_000_000_000 + i,
            )
            for i in range(n)
        ]

    def _ours(self, rng: random.Random, codec: int, n: int) -> bytes:
        return build_batch(self._record_values(rng, n), compression=codec)

    def _kafka_python(self, rng: random.Random, codec: int, n: int) -> bytes:
        builder = DefaultRecordBatchBuilder(
            magic=2,
            compression_type=codec,
            is_transactional=0,
            producer_id=-1,
            producer_epoch=-1,
            base_sequence=-1,
            batch_size=1 << 20,
        )
        for i, rec in enumerate(self._record_values(rng, n)):
            builder.append(i, rec.timestamp, rec.key, rec.value, list(rec.headers))
        return bytes(builder.build())

    def pick_valid(self, rng: random.Random) -> bytes:
        return self.valid[rng.randrange(len(self.valid))]

    def broken(self, rng: random.Random) -> bytes:
        """A records field value that is wrong in one way (or a bomb, rarely)."""
        op = rng.randrange(13)
        buf = bytearray(self.pick_valid(rng))
        if op == 0:  # CRC mismatch
            pos = rng.randrange(21, len(buf))
            buf[pos] ^= 1 << rng.randrange(8)
        elif op == 1:  # batch length (outside the CRC)
            struct.pack_into(">i", buf, 8, _odd_int(rng, len(buf) - 12))
        elif op == 2:  # magic (outside the CRC)
            buf[16] = rng.choice((0, 1, 3, 0x7F, 0xFF))
        elif op == 3:  # attributes: unknown codec, control, transactional, timestamp type
            attrs = rng.choice((5, 6, 7, 0x20, 0x10, 0x08, 0x40, 0xFFFF, 0x20 | 4))
            struct.pack_into(">h", buf, 21, attrs - 0x10000 if attrs > 0x7FFF else attrs)
            _fix_crc(buf)
        elif op == 4:  # last offset delta
            struct.pack_into(">i", buf, 23, _odd_int(rng, struct.unpack_from(">i", buf, 23)[0]))
            _fix_crc(buf)
        elif op == 5:  # records count
            struct.pack_into(">i", buf, 57, _odd_int(rng, struct.unpack_from(">i", buf, 57)[0]))
            _fix_crc(buf)
        elif op == 6:  # producer id / epoch / sequence
            struct.pack_into(
                ">qhi",
                buf,
                43,
                rng.choice((-1, 0, 7, 2**63 - 1)),
                rng.choice((-1, 0, 32767)),
                rng.choice((-1, 0, 2**31 - 1)),
            )
            _fix_crc(buf)
        elif op == 7:  # timestamps
            struct.pack_into(">qq", buf, 27, _odd_int(rng, 0, 64), _odd_int(rng, 0, 64))
            _fix_crc(buf)
        elif op == 8:  # damage behind a valid CRC: record varints / compressed stream
            for _ in range(rng.randrange(1, 4)):
                pos = rng.randrange(61, len(buf)) if len(buf) > 61 else 60
                buf[pos] = rng.choice((0xFF, 0x80, 0x00, 0x7F, rng.randrange(256)))
            _fix_crc(buf)
        elif op == 9:  # truncation
            del buf[rng.randrange(len(buf)) :]
        elif op == 10:  # several batches, maybe a torn one at the end
            buf += self.pick_valid(rng)
            if rng.random() < 0.5:
                buf += self.pick_valid(rng)[: rng.randrange(1, 61)]
        elif op == 11:  # not a batch at all
            return rng.choice((b"", b"\x00" * rng.randrange(1, 70), rng.randbytes(80)))
        elif op == 12 and self.bombs:
            return self.bombs[rng.randrange(len(self.bombs))]
        return bytes(buf)


def _odd_int(rng: random.Random, around: int, bits: int = 32) -> int:
    """A value near ``around`` or at a boundary of a signed ``bits`` integer."""
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    value = rng.choice((around + 1, around - 1, 0, -1, hi, lo, around * 2 + 1, 48, 49))
    return max(lo, min(hi, value))
