"""Codecs: round trips, interop with what the clients write, corruption and bombs."""

from __future__ import annotations

import gzip
import os
import struct
import threading
import time

import cramjam
import lz4.frame
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka import codec as kafka_codec

from pybroker.protocol.compression import (
    CODEC_NAMES,
    DEFAULT_MAX_DECOMPRESSED_SIZE,
    GZIP,
    LZ4,
    NONE,
    SNAPPY,
    XERIAL_MAGIC,
    ZSTD,
    compress,
    decompress,
)
from pybroker.protocol.errors import CorruptRecordError, ErrorCode

CODECS = [NONE, GZIP, SNAPPY, LZ4, ZSTD]
COMPRESSING = [GZIP, SNAPPY, LZ4, ZSTD]
XERIAL_HEADER = XERIAL_MAGIC + struct.pack(">ii", 1, 1)

# Compressible and incompressible parts, longer than snappy-java's 32 KiB block and
# LZ4's 64 KiB block so that multi-block paths run.
SAMPLE = os.urandom(3000) + b"kafka record payload " * 8000 + os.urandom(70_000)


def _zstd_streamed(data: bytes) -> bytes:
    """A zstd frame without content size, as the Java client's ZstdOutputStream writes."""
    c = zstandard.ZstdCompressor().compressobj()
    return c.compress(data) + c.flush()


def _xerial(blocks: list[bytes], header: bytes = XERIAL_HEADER) -> bytes:
    out = [header]
    for block in blocks:
        raw = bytes(cramjam.snappy.compress_raw(block))
        out.append(struct.pack(">i", len(raw)) + raw)
    return b"".join(out)


@pytest.mark.parametrize("codec", CODECS, ids=CODEC_NAMES.get)
@pytest.mark.parametrize(
    "data", [b"", b"x", b"abc" * 1000, SAMPLE], ids=["empty", "one", "small", "large"]
)
def test_round_trip(codec: int, data: bytes) -> None:
    packed = compress(codec, data)
    assert decompress(codec, packed) == data
    assert decompress(codec, memoryview(packed)) == data
    assert decompress(codec, bytearray(packed)) == data


@pytest.mark.parametrize("codec", CODECS, ids=CODEC_NAMES.get)
def test_compress_accepts_buffers(codec: int) -> None:
    expected = decompress(codec, compress(codec, SAMPLE))
    assert decompress(codec, compress(codec, memoryview(SAMPLE))) == expected == SAMPLE
    assert decompress(codec, compress(codec, bytearray(SAMPLE))) == SAMPLE


@settings(max_examples=150, deadline=None)
@given(codec=st.sampled_from(CODECS), data=st.binary(max_size=5000))
def test_round_trip_any_bytes(codec: int, data: bytes) -> None:
    assert decompress(codec, compress(codec, data)) == data


def test_compression_actually_shrinks() -> None:
    data = b"the same sentence again and again. " * 3000
    for codec in COMPRESSING:
        assert len(compress(codec, data)) < len(data) // 5, CODEC_NAMES[codec]
    assert compress(NONE, data) == data


# --- Wire formats of what we write ---------------------------------------------


def test_gzip_writes_a_gzip_stream() -> None:
    packed = compress(GZIP, SAMPLE)
    assert packed[:3] == b"\x1f\x8b\x08"
    assert gzip.decompress(packed) == SAMPLE


def test_snappy_writes_xerial_framing_like_the_java_client() -> None:
    packed = compress(SNAPPY, SAMPLE)
    assert packed[:16] == b"\x82SNAPPY\x00" + b"\x00\x00\x00\x01" + b"\x00\x00\x00\x01"
    # Walk the blocks: each is int32 length + a raw snappy block of <= 32 KiB input.
    pos, sizes = 16, []
    while pos < len(packed):
        (n,) = struct.unpack_from(">i", packed, pos)
        block = bytes(cramjam.snappy.decompress_raw(packed[pos + 4 : pos + 4 + n]))
        sizes.append(len(block))
        pos += 4 + n
    assert pos == len(packed)
    assert sum(sizes) == len(SAMPLE)
    assert sizes[:-1] == [32 * 1024] * (len(sizes) - 1)
    # kafka-python's reader (the same framing code path as librdkafka's) agrees.
    assert kafka_codec.snappy_decode(packed) == SAMPLE


def test_lz4_writes_an_independent_block_frame() -> None:
    packed = compress(LZ4, SAMPLE)
    assert packed[:4] == b"\x04\x22\x4d\x18"  # LZ4 frame magic
    flg, bd = packed[4], packed[5]
    assert flg >> 6 == 0b01  # frame version 1
    assert flg & 0x20  # block independence: the Java client rejects linked blocks
    assert not flg & 0x08  # no content size, like KafkaLZ4BlockOutputStream
    assert (bd >> 4) & 0x7 == 4  # 64 KiB max block size, the Java default
    assert lz4.frame.decompress(packed) == SAMPLE


def test_zstd_writes_a_standard_frame() -> None:
    packed = compress(ZSTD, SAMPLE)
    assert packed[:4] == b"\x28\xb5\x2f\xfd"
    assert zstandard.ZstdDecompressor().decompress(packed) == SAMPLE


# --- Reading what others write -------------------------------------------------


def test_snappy_reads_raw_blocks_like_librdkafka_sends() -> None:
    raw = bytes(cramjam.snappy.compress_raw(SAMPLE))
    assert raw[:8] != XERIAL_MAGIC
    assert decompress(SNAPPY, raw) == SAMPLE
    assert decompress(SNAPPY, kafka_codec.snappy_encode(SAMPLE, xerial_compatible=False)) == SAMPLE


def test_snappy_reads_xerial_stream_built_by_hand() -> None:
    parts = [b"first block " * 100, b"", b"second" * 7000, b"z"]
    assert decompress(SNAPPY, _xerial(parts)) == b"".join(parts)


def test_snappy_reads_kafka_python_xerial_stream() -> None:
    packed = kafka_codec.snappy_encode(SAMPLE, xerial_compatible=True, xerial_blocksize=4096)
    assert packed[:8] == XERIAL_MAGIC
    assert decompress(SNAPPY, packed) == SAMPLE


def test_snappy_xerial_ignores_version_fields() -> None:
    # Some writers (redpanda) store version/compat little-endian; Java and librdkafka
    # only look at the magic.
    header = XERIAL_MAGIC + struct.pack("<ii", 1, 1)
    assert decompress(SNAPPY, _xerial([b"hello", b" world"], header)) == b"hello world"


def test_snappy_xerial_header_only_is_empty() -> None:
    assert decompress(SNAPPY, XERIAL_HEADER) == b""


@pytest.mark.parametrize(
    "tail",
    [b"\x00\x00", struct.pack(">i", -1) + b"x", struct.pack(">i", 100) + b"short"],
    ids=["partial-length", "negative-length", "overrun"],
)
def test_snappy_xerial_malformed_blocks(tail: bytes) -> None:
    good = _xerial([b"payload" * 10])
    with pytest.raises(CorruptRecordError):
        decompress(SNAPPY, good + tail)


def test_gzip_reads_other_writers_and_concatenated_members() -> None:
    assert decompress(GZIP, gzip.compress(SAMPLE, compresslevel=9)) == SAMPLE
    assert decompress(GZIP, kafka_codec.gzip_encode(SAMPLE)) == SAMPLE
    assert decompress(GZIP, gzip.compress(b"one ") + gzip.compress(b"two")) == b"one two"


def test_lz4_reads_linked_blocks_checksums_and_sizes() -> None:
    packed = lz4.frame.compress(
        SAMPLE, block_linked=True, content_checksum=True, store_size=True, block_checksum=True
    )
    assert decompress(LZ4, packed) == SAMPLE
    assert decompress(LZ4, kafka_codec.lz4_encode(SAMPLE)) == SAMPLE
    two = lz4.frame.compress(b"first ") + lz4.frame.compress(b"second")
    assert decompress(LZ4, two) == b"first second"


def test_zstd_reads_frames_without_content_size() -> None:
    streamed = _zstd_streamed(SAMPLE)
    params = zstandard.get_frame_parameters(streamed)
    assert params.content_size == zstandard.CONTENTSIZE_UNKNOWN
    assert decompress(ZSTD, streamed) == SAMPLE
    assert decompress(ZSTD, kafka_codec.zstd_encode(SAMPLE)) == SAMPLE


def test_zstd_reads_concatenated_frames() -> None:
    packed = _zstd_streamed(b"alpha ") + zstandard.ZstdCompressor().compress(b"beta")
    assert decompress(ZSTD, packed) == b"alpha beta"


# --- Corruption ----------------------------------------------------------------


@pytest.mark.parametrize("codec", COMPRESSING, ids=CODEC_NAMES.get)
def test_truncated_streams_are_corrupt(codec: int) -> None:
    packed = compress(codec, SAMPLE)
    for cut in (0, 1, 5, len(packed) // 2, len(packed) - 1):
        with pytest.raises(CorruptRecordError) as info:
            decompress(codec, packed[:cut])
        assert info.value.code == ErrorCode.corrupt_message


@pytest.mark.parametrize("codec", COMPRESSING, ids=CODEC_NAMES.get)
def test_garbage_is_corrupt(codec: int) -> None:
    with pytest.raises(CorruptRecordError):
        decompress(codec, b"\x00\x01garbage that is no compressed stream at all\xff" * 3)


@pytest.mark.parametrize("codec", [GZIP, LZ4, ZSTD], ids=CODEC_NAMES.get)
def test_garbage_after_a_complete_stream_is_corrupt(codec: int) -> None:
    with pytest.raises(CorruptRecordError):
        decompress(codec, compress(codec, b"payload" * 50) + b"\x07junk")


@pytest.mark.parametrize("codec", [5, 6, 7, -1, 99])
def test_unknown_codec(codec: int) -> None:
    with pytest.raises(CorruptRecordError, match="unknown compression codec"):
        decompress(codec, b"data")
    with pytest.raises(ValueError):
        compress(codec, b"data")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(codec=st.sampled_from(COMPRESSING), data=st.binary(max_size=400))
def test_fuzz_decompress_only_raises_corrupt(codec: int, data: bytes) -> None:
    try:
        out = decompress(codec, data, max_size=1 << 20)
    except CorruptRecordError:
        return
    assert len(out) <= 1 << 20


@settings(max_examples=150, deadline=None)
@given(
    codec=st.sampled_from(COMPRESSING),
    data=st.binary(min_size=1, max_size=3000),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), min_size=1, max_size=4),
)
def test_fuzz_mutated_streams_only_raise_corrupt(
    codec: int, data: bytes, flips: list[tuple[int, int]]
) -> None:
    packed = bytearray(compress(codec, data))
    for index, mask in flips:
        packed[index % len(packed)] ^= mask
    try:
        decompress(codec, packed, max_size=1 << 20)
    except CorruptRecordError:
        pass


# --- Decompression bombs -------------------------------------------------------


@pytest.mark.parametrize("codec", CODECS, ids=CODEC_NAMES.get)
def test_max_size_is_enforced_exactly(codec: int) -> None:
    packed = compress(codec, SAMPLE)
    assert decompress(codec, packed, max_size=len(SAMPLE)) == SAMPLE
    with pytest.raises(CorruptRecordError, match="decompresses to more than"):
        decompress(codec, packed, max_size=len(SAMPLE) - 1)
    assert decompress(codec, packed, max_size=None) == SAMPLE


@pytest.mark.parametrize("codec", COMPRESSING, ids=CODEC_NAMES.get)
def test_bomb_is_rejected_under_the_default_limit(codec: int) -> None:
    size = DEFAULT_MAX_DECOMPRESSED_SIZE + (16 << 20)
    zeros = bytes(size)
    if codec == ZSTD:
        bomb = _zstd_streamed(zeros)
    elif codec == SNAPPY:
        bomb = compress(SNAPPY, zeros)
    else:
        bomb = compress(codec, zeros)
    del zeros
    # A small batch that would explode (snappy's format caps the ratio near 21x).
    assert len(bomb) < size // (20 if codec == SNAPPY else 100)
    start = time.monotonic()
    with pytest.raises(CorruptRecordError, match="decompresses to more than"):
        decompress(codec, bomb)
    assert time.monotonic() - start < 30


def test_snappy_declared_size_is_checked_before_allocating() -> None:
    # A raw block that claims 4 GiB of output in its preamble: refused before any work.
    claim = bytes([0xFF, 0xFF, 0xFF, 0xFF, 0x0F]) + b"\x00" * 10
    with pytest.raises(CorruptRecordError, match="decompresses to more than 1000 bytes"):
        decompress(SNAPPY, claim, max_size=1000)
    with pytest.raises(CorruptRecordError):
        decompress(SNAPPY, bytes([0xFF] * 6))  # preamble longer than 5 bytes


def test_xerial_bomb_counts_all_blocks() -> None:
    packed = _xerial([b"a" * 30_000] * 10)
    assert len(decompress(SNAPPY, packed, max_size=300_000)) == 300_000
    with pytest.raises(CorruptRecordError, match="more than 299999 bytes"):
        decompress(SNAPPY, packed, max_size=299_999)


def test_codecs_are_safe_across_threads() -> None:
    # The cleaner thread and the event loop compress concurrently.
    errors: list[BaseException] = []
    payloads = [os.urandom(500) + bytes([i]) * 60_000 for i in range(8)]

    def work(data: bytes) -> None:
        try:
            for _ in range(30):
                for codec in CODECS:
                    assert decompress(codec, compress(codec, data)) == data
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
