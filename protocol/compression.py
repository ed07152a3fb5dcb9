"""Kafka's record-batch compression codecs (attribute bits 0-2 of a v2 batch).

Sans-IO. Every decoder is bounded by ``max_size`` so that a small hostile batch cannot
make the broker allocate gigabytes (a decompression bomb), and every malformed input,
truncated stream or unknown codec surfaces as :class:`CorruptRecordError`, the error a
Kafka broker answers with, never as a library-specific exception.

Wire formats, as the stock clients write them:

- gzip: an RFC 1952 gzip stream (Java ``GZIPOutputStream``, librdkafka zlib).
- snappy: the Java client writes snappy-java's "xerial" framing
  (``b"\\x82SNAPPY\\x00"``, int32 version, int32 compatible version, then blocks of
  int32 big-endian length + raw snappy block of at most 32 KiB input); librdkafka writes
  one raw snappy block with no framing. Both clients read both, so we read both and
  write the xerial framing like the Java client.
- lz4: the standard LZ4 frame format with independent blocks (Java's
  ``KafkaLZ4BlockOutputStream`` refuses linked blocks).
- zstd: standard zstd frames; the Java client streams them, so frames usually carry no
  content size.
"""

from __future__ import annotations

import struct
import threading
import zlib

import cramjam
import lz4.frame
import zstandard

from pybroker.protocol.errors import CorruptRecordError, ErrorCode

__all__ = [
    "NONE",
    "GZIP",
    "SNAPPY",
    "LZ4",
    "ZSTD",
    "CODEC_NAMES",
    "DEFAULT_MAX_DECOMPRESSED_SIZE",
    "XERIAL_MAGIC",
    "compress",
    "decompress",
]

NONE, GZIP, SNAPPY, LZ4, ZSTD = 0, 1, 2, 3, 4
CODEC_NAMES: dict[int, str] = {
    NONE: "none",
    GZIP: "gzip",
    SNAPPY: "snappy",
    LZ4: "lz4",
    ZSTD: "zstd",
}

#: A produced batch may decompress to at most this many times the topic's
#: max.message.bytes (64 MiB at the default) where the broker has to decompress it
#: (compacted topics check keys). Kafka streams records and has no bound; we hold a
#: batch in memory, so a few KB of zeros must not become gigabytes (a compression bomb).
MAX_DECOMPRESSION_RATIO = 64


class DecompressedTooLargeError(CorruptRecordError):
    """Decompression would exceed its bound: MESSAGE_TOO_LARGE, so that producers
    split the batch (the Java client does) rather than treat it as corrupt."""

    code = ErrorCode.message_too_large


#: Upper bound on one batch's decompressed records section unless the caller says
#: otherwise. Far above anything a producer builds (batch.size defaults to 16 KiB in
#: Java and 1 MB in librdkafka), far below what would hurt the process.
DEFAULT_MAX_DECOMPRESSED_SIZE = 128 * 1024 * 1024

XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER = XERIAL_MAGIC + struct.pack(">ii", 1, 1)  # version 1, compatible 1
_XERIAL_HEADER_SIZE = 16
_XERIAL_BLOCK_SIZE = 32 * 1024  # snappy-java's default block size
_I32 = struct.Struct(">i")

_GZIP_LEVEL = 6  # zlib's and Java's Deflater default
_ZSTD_LEVEL = 3  # zstd's default, what the Java client and librdkafka use
# zstandard's (de)compressor objects must not be used by two threads at once, and the
# broker compresses on the event loop and in the cleaner thread: one pair per thread.
_zstd_local = threading.local()
# A zstd block decodes to at most 128 KiB and costs at least ~4 input bytes, so one
# input byte yields at most ~32 KiB of output: feeding (budget >> 15) input bytes at a
# time keeps a bomb from overshooting the budget by more than about 2x.
_ZSTD_RATIO_SHIFT = 15
_ZSTD_MIN_FEED = 64


def compress(codec: int, data: bytes | bytearray | memoryview) -> bytes:
    """Compress a batch's records section with ``codec`` as a Kafka client would.

    Raises ValueError for a codec id Kafka does not define (a programming error: we
    only compress with codecs we chose).
    """
    if codec == NONE:
        return bytes(data)
    if codec == GZIP:
        c = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        return c.compress(data) + c.flush()
    if codec == SNAPPY:
        return _xerial_compress(data)
    if codec == LZ4:
        return lz4.frame.compress(
            data,
            block_size=lz4.frame.BLOCKSIZE_MAX64KB,
            block_linked=False,
            content_checksum=False,
            store_size=False,
        )
    if codec == ZSTD:
        return _zstd_compressor().compress(data)
    raise ValueError(f"unknown compression codec {codec}")


def decompress(
    codec: int,
    data: bytes | bytearray | memoryview,
    max_size: int | None = DEFAULT_MAX_DECOMPRESSED_SIZE,
) -> bytes:
    """Decompress a batch's records section; ``max_size=None`` lifts the size bound.

    Raises CorruptRecordError on malformed or truncated input, an unknown codec, or
    output larger than ``max_size``.
    """
    limit = -1 if max_size is None else max_size
    try:
        if codec == NONE:
            out = bytes(data)
        elif codec == GZIP:
            out = _gzip_decompress(data, limit)
        elif codec == SNAPPY:
            out = _snappy_decompress(data, limit)
        elif codec == LZ4:
            out = _lz4_decompress(data, limit)
        elif codec == ZSTD:
            out = _zstd_decompress(data, limit)
        else:
            raise CorruptRecordError(f"unknown compression codec {codec}")
    except CorruptRecordError:
        raise
    except (
        zlib.error,
        cramjam.DecompressionError,
        zstandard.ZstdError,
        RuntimeError,  # lz4.frame reports bad frames as RuntimeError
        ValueError,
        struct.error,
        MemoryError,
    ) as exc:
        raise CorruptRecordError(f"{CODEC_NAMES[codec]} decompression failed: {exc}") from exc
    if limit >= 0 and len(out) > limit:
        raise DecompressedTooLargeError(_too_large(codec, limit))
    return out


def _too_large(codec: int, limit: int) -> str:
    return f"{CODEC_NAMES.get(codec, codec)} data decompresses to more than {limit} bytes"


def _gzip_decompress(data: bytes | bytearray | memoryview, limit: int) -> bytes:
    """Decode one or more concatenated gzip members (Java's GZIPInputStream reads all)."""
    out: list[bytes] = []
    total = 0
    rest: bytes | bytearray | memoryview = data
    while True:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        chunk_in = rest
        while True:
            budget = 0 if limit < 0 else limit - total + 1
            chunk = d.decompress(chunk_in, budget)
            out.append(chunk)
            total += len(chunk)
            if limit >= 0 and total > limit:
                raise DecompressedTooLargeError(_too_large(GZIP, limit))
            if d.eof or not d.unconsumed_tail:
                break
            chunk_in = d.unconsumed_tail
        if not d.eof:
            raise CorruptRecordError("gzip data is truncated")
        rest = d.unused_data
        if not rest:
            return b"".join(out)


def _snappy_raw_decompress(
    block: bytes | bytearray | memoryview, remaining: int, limit: int
) -> bytes:
    """Decode one raw snappy block once its declared size fits the ``remaining`` budget."""
    declared = _snappy_declared_size(block)
    if remaining >= 0 and declared > remaining:
        raise DecompressedTooLargeError(_too_large(SNAPPY, limit))
    return bytes(cramjam.snappy.decompress_raw(block))


def _snappy_declared_size(block: bytes | bytearray | memoryview) -> int:
    """The uncompressed length a raw snappy block starts with (a uvarint, max 32 bits)."""
    result = 0
    shift = 0
    for i in range(min(5, len(block))):
        b = block[i]
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result
        shift += 7
    raise CorruptRecordError("snappy block has a malformed length preamble")


def _snappy_decompress(data: bytes | bytearray | memoryview, limit: int) -> bytes:
    """Decode the xerial-framed stream (Java) or a raw snappy block (librdkafka)."""
    view = memoryview(data).cast("B") if not isinstance(data, bytes) else data
    if len(view) < _XERIAL_HEADER_SIZE or view[:8] != XERIAL_MAGIC:
        return _snappy_raw_decompress(view, limit, limit)
    # Version and compatible-version are not checked: there is only one framing, and
    # some writers (redpanda) store them little-endian.
    out: list[bytes] = []
    total = 0
    pos = _XERIAL_HEADER_SIZE
    end = len(view)
    while pos < end:
        if end - pos < 4:
            raise CorruptRecordError("xerial snappy stream ends inside a block length")
        (block_len,) = _I32.unpack_from(view, pos)
        pos += 4
        if block_len < 0 or block_len > end - pos:
            raise CorruptRecordError(f"xerial snappy block length {block_len} overruns the data")
        remaining = -1 if limit < 0 else limit - total
        block = _snappy_raw_decompress(view[pos : pos + block_len], remaining, limit)
        out.append(block)
        total += len(block)
        pos += block_len
    return b"".join(out)


def _xerial_compress(data: bytes | bytearray | memoryview) -> bytes:
    """Encode like snappy-java's SnappyOutputStream: header + 32 KiB blocks."""
    view = memoryview(data).cast("B") if not isinstance(data, bytes) else data
    parts = [_XERIAL_HEADER]
    pack = _I32.pack
    compress_raw = cramjam.snappy.compress_raw
    for i in range(0, len(view), _XERIAL_BLOCK_SIZE):
        block = bytes(compress_raw(view[i : i + _XERIAL_BLOCK_SIZE]))
        parts.append(pack(len(block)))
        parts.append(block)
    return b"".join(parts)


def _lz4_decompress(data: bytes | bytearray | memoryview, limit: int) -> bytes:
    """Decode one or more LZ4 frames, bounded by ``limit``."""
    out: list[bytes] = []
    total = 0
    rest: bytes | bytearray | memoryview = data
    while True:
        d = lz4.frame.LZ4FrameDecompressor()
        chunk_in = rest
        while True:
            budget = -1 if limit < 0 else limit - total + 1
            chunk = d.decompress(chunk_in, max_length=budget)
            out.append(chunk)
            total += len(chunk)
            if limit >= 0 and total > limit:
                raise DecompressedTooLargeError(_too_large(LZ4, limit))
            if d.eof or d.needs_input:
                break
            chunk_in = b""
        if not d.eof:
            raise CorruptRecordError("lz4 frame is truncated")
        rest = d.unused_data
        if not rest:
            return b"".join(out)


def _zstd_compressor() -> zstandard.ZstdCompressor:
    try:
        return _zstd_local.compressor
    except AttributeError:
        _zstd_local.compressor = zstandard.ZstdCompressor(level=_ZSTD_LEVEL)
        return _zstd_local.compressor


def _zstd_decompressor() -> zstandard.ZstdDecompressor:
    try:
        return _zstd_local.decompressor
    except AttributeError:
        _zstd_local.decompressor = zstandard.ZstdDecompressor()
        return _zstd_local.decompressor


def _zstd_decompress(data: bytes | bytearray | memoryview, limit: int) -> bytes:
    """Decode one or more zstd frames, with or without a content size, bounded by ``limit``.

    ``ZstdDecompressor.decompress`` ignores ``max_output_size`` when a frame declares its
    size and stops silently after the first frame, and the stream readers accept a
    truncated frame; a decompression object fed in bounded slices does neither.
    """
    view = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
    out: list[bytes] = []
    total = 0
    pos = 0
    end = len(view)
    if end == 0:
        raise CorruptRecordError("zstd data is empty")
    while pos < end:
        d = _zstd_decompressor().decompressobj()
        while True:
            if limit < 0:
                feed = end - pos
            else:
                feed = max(_ZSTD_MIN_FEED, (limit - total) >> _ZSTD_RATIO_SHIFT)
            chunk_in = view[pos : pos + feed]
            pos += len(chunk_in)
            chunk = d.decompress(chunk_in)
            out.append(chunk)
            total += len(chunk)
            if limit >= 0 and total > limit:
                raise DecompressedTooLargeError(_too_large(ZSTD, limit))
            if d.eof:
                pos -= len(d.unused_data)
                break
            if pos >= end:
                raise CorruptRecordError("zstd frame is truncated")
    return b"".join(out)
