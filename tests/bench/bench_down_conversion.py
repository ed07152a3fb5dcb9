"""What Fetch v0-3 costs: down-converting stored v2 batches to message sets (magic 0/1).

    .venv/bin/python tests/bench/bench_down_conversion.py [--mib 16]

Two measurements, in records/s and MB/s of stored (v2) record bytes:

1. In process: ``down_convert`` over v2 batches (100 records of 100-byte values each;
   the same records uncompressed, lz4 and gzip) to magic 1 and 0, beside a plain copy
   of the same bytes (a modern fetch does not even copy: it is sendfile).
2. End to end: a real broker on 127.0.0.1, the same partition read whole with Fetch v4
   (sendfile, no conversion) and with Fetch v3 (down-converted to magic 1), 1 MiB per
   partition per request, over one connection.
"""

from __future__ import annotations

import argparse
import struct
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pybroker.protocol.codec import build  # noqa: E402
from pybroker.protocol.compression import GZIP, LZ4, NONE  # noqa: E402
from pybroker.protocol.legacy import decode_response, encode_request  # noqa: E402
from pybroker.protocol.legacy.message_set import down_convert  # noqa: E402
from pybroker.protocol.records import NewRecord, build_batch  # noqa: E402
from tests.support.broker import BrokerProcess  # noqa: E402
from tests.support.wire import KafkaWire, encode_header, frame, request_module  # noqa: E402

RECORDS_PER_BATCH = 100
VALUE = bytes(range(100))


def batches(mib: int, codec: int) -> tuple[bytes, int]:
    """v2 batches holding ``mib`` MiB of uncompressed records; (bytes, record count)."""
    out = bytearray()
    raw = 0
    offset = 0
    recs = [NewRecord(b"key-%d" % i, VALUE, (), 1_700_000_000_000 + i) for i in range(100)]
    size = len(build_batch(recs))
    while raw < mib * 1024 * 1024:
        out += build_batch(recs, base_offset=offset, compression=codec)
        offset += RECORDS_PER_BATCH
        raw += size
    return bytes(out), offset


def in_process(mib: int) -> None:
    print(f"in process, {mib} MiB of v2 batches ({RECORDS_PER_BATCH} x 100 B records each)")
    for codec, name in ((NONE, "none"), (LZ4, "lz4"), (GZIP, "gzip")):
        data, count = batches(mib, codec)
        t0 = time.perf_counter()
        copy = bytes(bytearray(data))
        plain = time.perf_counter() - t0
        assert len(copy) == len(data)
        for magic in (1, 0):
            t0 = time.perf_counter()
            converted = down_convert(data, magic, 0)
            took = time.perf_counter() - t0
            mb = len(data) / 1e6
            print(
                f"  {name:5} -> magic {magic}: {count / took / 1e3:7.1f} k records/s, "
                f"{mb / took:8.1f} MB/s stored (plain copy {mb / plain:8.0f} MB/s; "
                f"output {len(converted) / len(data):.2f}x)"
            )


def _fetch_all(w: KafkaWire, version: int, topic: str, end: int) -> tuple[int, float]:
    offset, total = 0, 0
    t0 = time.perf_counter()
    m4 = request_module(1, 4)
    while offset < end:
        part = dict(partition=0, fetch_offset=offset, partition_max_bytes=1 << 20)
        if version == 4:
            r = w.request(
                build(
                    m4.FetchRequest,
                    replica_id=-1,
                    max_wait=0,
                    min_bytes=1,
                    max_bytes=1 << 20,
                    isolation_level=0,
                    topics=[dict(topic=topic, partitions=[part])],
                )
            )
            records = bytes(r.responses[0].partitions[0].records or b"")
            last = _last_offset_v2(records)
        else:
            cid = w.next_correlation_id()
            fields = dict(
                replica_id=-1,
                max_wait=0,
                min_bytes=1,
                max_bytes=1 << 20,
                topics=[dict(topic=topic, partitions=[part])],
            )
            w.send_raw(
                frame(encode_header(1, 3, cid, flexible=False) + encode_request(1, 3, fields))
            )
            resp = decode_response(1, 3, w.recv_frame()[4:])
            records = resp["responses"][0]["partitions"][0]["records"] or b""
            last = _last_offset_msgset(records)
        total += len(records)
        offset = last + 1
    return total, time.perf_counter() - t0


def _last_offset_v2(data: bytes) -> int:
    pos, last = 0, -1
    while pos + 61 <= len(data):
        base, length = struct.unpack_from(">qi", data, pos)
        if pos + 12 + length > len(data):
            break
        (delta,) = struct.unpack_from(">i", data, pos + 23)
        last = base + delta
        pos += 12 + length
    return last


def _last_offset_msgset(data: bytes) -> int:
    pos, last = 0, -1
    while pos + 12 <= len(data):
        offset, size = struct.unpack_from(">qi", data, pos)
        if pos + 12 + size > len(data):
            break
        last = offset
        pos += 12 + size
    return last


def end_to_end(mib: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        broker = BrokerProcess(Path(tmp) / "data").start()
        try:
            topic = "bench-down-conversion"
            with KafkaWire(port=broker.port) as w:
                m = request_module(19, 4)
                w.request(
                    build(
                        m.CreateTopicsRequest,
                        topics=[dict(name=topic, num_partitions=1, replication_factor=1)],
                        timeout=10_000,
                    )
                )
                time.sleep(1.0)
                pm = request_module(0, 9)
                recs = [NewRecord(b"k", VALUE, (), None) for _ in range(RECORDS_PER_BATCH)]
                produced, end = 0, 0
                while produced < mib * 1024 * 1024:
                    batch = build_batch(recs)
                    w.request(
                        build(
                            pm.ProduceRequest,
                            transactional_id=None,
                            acks=1,
                            timeout=10_000,
                            topic_data=[
                                dict(name=topic, partition_data=[dict(index=0, records=batch)])
                            ],
                        )
                    )
                    produced += len(batch)
                    end += RECORDS_PER_BATCH
                print(f"end to end, {produced / 1e6:.1f} MB stored uncompressed, 1 MiB per fetch")
                for version, label in ((4, "Fetch v4 (sendfile)"), (3, "Fetch v3 (magic 1)")):
                    total, took = _fetch_all(w, version, topic, end)
                    print(f"  {label:20}: {produced / 1e6 / took:8.1f} MB/s of stored bytes")
        finally:
            broker.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=16)
    args = parser.parse_args()
    in_process(args.mib)
    end_to_end(args.mib)
    return 0


if __name__ == "__main__":
    sys.exit(main())
