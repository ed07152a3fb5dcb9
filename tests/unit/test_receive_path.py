"""The buffered receive path (issue 14): framing across reads, large requests read into
pooled buffers of their own, buffer reuse, and Produce records decoded as frame views.

Reads are driven the way a transport drives a BufferedProtocol: get_buffer, copy at most
that many bytes, buffer_updated. Handlers are held back (the loop is not run between
reads), so the queued frames can be compared byte for byte with what was sent.
"""

from __future__ import annotations

import asyncio
import io
import struct
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kio.static.primitive import Records

from pybroker.broker.connection import DIRECT_FRAME, MAX_QUEUED_FRAMES, READ_BUFFER, KafkaConnection
from pybroker.broker.connection_limits import NetworkContext, RequestBudget
from pybroker.broker.handlers.registry import ApiSpec
from pybroker.broker.memory_pool import MemoryPool
from pybroker.broker.receive_buffers import BufferPool, capacity_for, unreferenced
from pybroker.protocol.codec import _reader, _writer, decode_request_body, request_type
from pybroker.protocol.produce_decode import decode_produce

METADATA = 3


class Transport:
    def __init__(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol
        self.written = bytearray()
        self.reading = True
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 5556) if name == "peername" else default

    def set_write_buffer_limits(self, high: int = 0, low: int = 0) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def write(self, data: bytes) -> None:
        self.written += data

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def responses(self) -> list[int]:
        out, pos, buf = [], 0, bytes(self.written)
        while pos < len(buf):
            size, cid = struct.unpack_from(">ii", buf, pos)
            out.append(cid)
            pos += 4 + size
        return out


def request(correlation_id: int, pad: int = 0) -> bytes:
    """Metadata v1 (all topics) with ``pad`` trailing bytes (tolerated, as Kafka does);
    the padding carries a pattern so a misplaced byte shows."""
    body = struct.pack(">hhih", METADATA, 1, correlation_id, -1) + struct.pack(">i", 0)
    body += bytes((correlation_id + i) % 251 for i in range(pad))
    return struct.pack(">i", len(body)) + body


async def answer(ctx: Any, body: Any) -> bytes:
    return b"ok"


def connect(
    pool: BufferPool | None = None, max_request: int = 1 << 22
) -> tuple[KafkaConnection, Transport]:
    network = NetworkContext(max_request, RequestBudget(500, MemoryPool(-1, max_request)))
    if pool is not None:
        network.buffers = pool
    registry = {METADATA: ApiSpec(METADATA, "Metadata", 0, 12, answer)}
    conn = KafkaConnection(None, network, registry=registry)  # type: ignore[arg-type]
    transport = Transport(conn)
    conn.connection_made(transport)  # type: ignore[arg-type]
    return conn, transport


def feed(conn: KafkaConnection, data: bytes, cuts: list[int]) -> None:
    """Deliver ``data`` as reads ending at ``cuts`` (and its end), each read as large as
    the offered buffer allows, as a socket read would be."""
    pos = 0
    for stop in [*cuts, len(data)]:
        while pos < stop:
            buf = conn.get_buffer(-1)
            assert len(buf) > 0
            n = min(len(buf), stop - pos)
            buf[:n] = data[pos : pos + n]
            del buf
            pos += n
            conn.buffer_updated(n)


def queued(conn: KafkaConnection) -> list[bytes]:
    return [bytes(f) for f in conn._frames]


async def settle(rounds: int = 20) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


STREAM = [request(1), request(2, pad=DIRECT_FRAME + 100), request(3, pad=30), request(4)]


async def test_a_two_read_split_at_every_byte_boundary_yields_the_same_frames() -> None:
    data = b"".join(STREAM)
    expected = [f[4:] for f in STREAM]
    for cut in range(len(data) + 1):
        conn, _ = connect()
        feed(conn, data, [cut])
        assert queued(conn) == expected, cut
        conn.close()
        if cut % 500 == 0:
            await settle(2)
    await settle()


async def test_one_byte_reads_and_one_big_read_yield_the_same_frames() -> None:
    data = b"".join(STREAM)
    expected = [f[4:] for f in STREAM]
    for cuts in (list(range(1, len(data))), []):
        conn, _ = connect()
        feed(conn, data, cuts)
        assert queued(conn) == expected
        conn.close()
    await settle()


async def test_a_large_request_lands_in_a_pooled_buffer_of_its_own() -> None:
    pool = BufferPool()
    conn, _ = connect(pool)
    big = request(9, pad=300_000)  # far larger than the read buffer
    assert len(big) > 4 * READ_BUFFER
    feed(conn, big, [10, 5000])
    (frame,) = conn._frames
    assert isinstance(frame, memoryview) and bytes(frame) == big[4:]
    assert len(frame.obj) == capacity_for(len(big) - 4) and pool.allocated == 1
    conn.close()
    await settle()


async def test_large_requests_reuse_one_buffer_and_all_are_answered() -> None:
    pool = BufferPool()
    conn, transport = connect(pool)
    for i in range(6):
        feed(conn, request(i, pad=200_000 + i), [3])
        await settle()
    assert transport.responses() == list(range(6))
    assert pool.allocated == 1 and len(pool.idle) == 1  # one buffer served all six
    feed(conn, request(6, pad=900_000), [])  # bigger than the pooled one: a second buffer
    await settle()
    assert transport.responses() == list(range(7)) and pool.allocated == 2
    conn.close()
    await settle()


async def test_many_pipelined_requests_in_one_read_are_answered_in_order() -> None:
    conn, transport = connect()
    frames = [request(i, pad=(DIRECT_FRAME * 2 if i % 50 == 7 else i % 40)) for i in range(300)]
    assert len(frames) > MAX_QUEUED_FRAMES  # reading pauses and resumes on the way
    conn.data_received(b"".join(frames))
    await settle(3000)
    assert transport.responses() == list(range(300))
    assert transport.reading and not conn._frames
    conn.close()
    await settle()


async def test_a_request_over_socket_request_max_bytes_closes_before_buffering() -> None:
    pool = BufferPool()
    conn, transport = connect(pool, max_request=100_000)
    feed(conn, struct.pack(">i", 100_001) + b"x" * 5000, [])
    await settle()
    assert transport.closed and pool.allocated == 0


def test_the_pool_keeps_only_buffers_nothing_views() -> None:
    pool = BufferPool(max_bytes=1 << 20)
    buf = pool.take(100_000)
    view = memoryview(buf)[:10]
    assert not unreferenced(buf)
    pool.give(buf)
    assert pool.idle == []  # still viewed: dropped, not reused
    view.release()
    assert unreferenced(buf) and len(buf) == capacity_for(100_000)
    pool.give(buf)
    assert pool.take(90_000) is buf and pool.idle == []
    for _ in range(20):  # the idle reserve stays within max_bytes
        pool.give(bytearray(300_000))
    assert pool.idle_bytes <= 1 << 20


def test_capacity_rounds_up_at_most_an_eighth() -> None:
    for size in (1, 65_536, 65_537, 1_000_000, 1 << 20, (1 << 20) + 1, 99_999_999):
        cap = capacity_for(size)
        assert size <= cap and (cap <= 65_536 or cap <= size * 1.125 + 1)


# ------------------------------------------------------------------ Produce decoding

st.register_type_strategy(Records, st.binary(max_size=200))


def encoded(cls: type, req: Any) -> memoryview:
    out = io.BytesIO()
    _writer(cls)(out, req)
    return memoryview(out.getvalue()).toreadonly()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_produce_decodes_like_kio_with_records_as_views(data: st.DataObject) -> None:
    version = data.draw(st.integers(3, 13))
    cls = request_type(0, version)
    req = data.draw(st.from_type(cls))
    frame = encoded(cls, req)
    ours = decode_request_body(0, version, frame, 0)
    assert ours == _reader(cls)(frame, 0)[0] == req
    for topic in ours.topic_data:
        for part in topic.partition_data:
            if part.records is not None:
                assert isinstance(part.records, memoryview) and part.records.readonly
                assert part.records.obj is frame.obj  # a view of the frame, not a copy


def one_partition_produce(cls: type, records: bytes) -> Any:
    """A ProduceRequest (kio's ``cls``) with ``records`` for partition 0 of topic t."""
    mod = __import__(cls.__module__, fromlist=["x"])
    partition = mod.PartitionProduceData(index=0, records=records)
    return cls(
        transactional_id=None,
        acks=1,
        timeout=__import__("datetime").timedelta(milliseconds=500),
        topic_data=(mod.TopicProduceData(name="t", partition_data=(partition,)),),
    )


def test_produce_with_tagged_fields_falls_back_to_kio() -> None:
    cls = request_type(0, 9)
    req = one_partition_produce(cls, b"abc")
    plain = bytes(encoded(cls, req))
    assert plain[-1] == 0  # the body's empty tagged-field section
    tagged = memoryview(plain[:-1] + b"\x01\x05\x02hi").toreadonly()  # one unknown tag
    assert decode_produce(cls, 9, tagged, 0) is None
    decoded = decode_request_body(0, 9, tagged, 0)  # kio, with unknown tags stripped
    assert decoded == req and isinstance(decoded.topic_data[0].partition_data[0].records, bytes)


def test_produce_records_are_writable_views_of_a_writable_frame() -> None:
    """With the frame's writable view, the log stamps offsets into the request's own
    buffer: the records are views of it, writes land in it, nothing is copied."""
    cls = request_type(0, 9)
    req = one_partition_produce(cls, b"abcdef")
    buf = bytearray(encoded(cls, req))
    decoded = decode_request_body(0, 9, memoryview(buf).toreadonly(), 0, memoryview(buf))
    records = decoded.topic_data[0].partition_data[0].records
    assert isinstance(records, memoryview) and not records.readonly and records.obj is buf
    records[0:1] = b"X"
    assert bytes(records) == b"Xbcdef" and b"Xbcdef" in buf
