"""The buffered receive path end to end (issue 14): large Produce requests, read straight
into pooled buffers and decoded as views of them, come back byte for byte, over plaintext
and over TLS (asyncio's SSL transport feeding a BufferedProtocol); pipelined raw Produce
requests of mixed sizes sent in one write are answered in order with consecutive offsets.
"""

from __future__ import annotations

import os
import socket
import struct
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from pybroker.protocol.records import NewRecord, build_batch
from tests.support.broker import BrokerProcess, free_port
from tests.support.tls_certs import PASSWORD, CertSet, make_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertSet:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def rbroker(tmp_path_factory: pytest.TempPathFactory, certs: CertSet) -> Iterator[BrokerProcess]:
    plain, ssl_port = free_port(), free_port()
    listeners = f"PLAINTEXT://127.0.0.1:{plain},SSL://127.0.0.1:{ssl_port}"
    overrides = {
        "listeners": listeners,
        "advertised.listeners": listeners,
        "ssl.keystore.type": "PKCS12",
        "ssl.keystore.location": str(certs.broker_p12),
        "ssl.keystore.password": PASSWORD,
        "ssl.truststore.type": "PKCS12",
        "ssl.truststore.location": str(certs.ca_p12),
        "ssl.truststore.password": PASSWORD,
        "num.partitions": "1",
        "offsets.topic.num.partitions": "1",
        "group.initial.rebalance.delay.ms": "0",
    }
    proc = BrokerProcess(tmp_path_factory.mktemp("recv") / "data", overrides, port=plain)
    proc.ssl_port = ssl_port  # type: ignore[attr-defined]
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def roundtrip(conf: dict[str, str], values: list[bytes]) -> None:
    topic = f"recv-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(conf)
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=15)
    producer = Producer({**conf, "acks": "all", "linger.ms": 20, "batch.size": 1_000_000})
    errors: list[object] = []
    for v in values:
        producer.produce(topic, v, on_delivery=lambda err, _m: err and errors.append(err))
    assert producer.flush(30) == 0 and errors == []
    consumer = Consumer(
        {**conf, "group.id": topic, "auto.offset.reset": "earliest", "enable.auto.commit": False}
    )
    consumer.subscribe([topic])
    got: list[bytes] = []
    try:
        for _ in range(120):
            if len(got) >= len(values):
                break
            m = consumer.poll(0.5)
            if m is not None and m.error() is None:
                got.append(m.value())
    finally:
        consumer.close()
    assert got == values


def big_values() -> list[bytes]:
    return [os.urandom(100_000 + 37 * i) for i in range(40)]  # ~4 MB in ~1 MB requests


def test_large_produce_requests_round_trip_over_plaintext(rbroker: BrokerProcess) -> None:
    roundtrip({"bootstrap.servers": rbroker.bootstrap}, big_values())


def test_large_produce_requests_round_trip_over_tls(rbroker: BrokerProcess, certs: CertSet) -> None:
    conf = {
        "bootstrap.servers": f"127.0.0.1:{rbroker.ssl_port}",  # type: ignore[attr-defined]
        "security.protocol": "SSL",
        "ssl.ca.location": str(certs.ca_cert),
    }
    roundtrip(conf, big_values())


def produce_frame(cid: int, topic: bytes, batch: bytes) -> bytes:
    body = struct.pack(">hhih", 0, 8, cid, -1) + struct.pack(">hhi", -1, 1, 10_000)
    body += struct.pack(">ih", 1, len(topic)) + topic + struct.pack(">iii", 1, 0, len(batch))
    return struct.pack(">i", len(body) + len(batch)) + body + batch


def read_frame(s: socket.socket) -> bytes:
    def exact(n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            chunk = s.recv(n - len(out))
            assert chunk, "broker closed the connection"
            out += chunk
        return bytes(out)

    return exact(struct.unpack(">i", exact(4))[0])


def test_pipelined_produce_requests_of_mixed_sizes_in_one_write(
    rbroker: BrokerProcess,
) -> None:
    topic = f"pipe-{uuid.uuid4().hex[:8]}".encode()
    counts = [1 if i % 3 else 200 for i in range(30)]  # small and ~200 KB requests
    frames = [
        produce_frame(i, topic, build_batch([NewRecord(b"k", os.urandom(1000))] * n))
        for i, n in enumerate(counts)
    ]
    admin = AdminClient({"bootstrap.servers": rbroker.bootstrap})
    admin.create_topics([NewTopic(topic.decode(), 1, 1)])[topic.decode()].result(timeout=15)
    with socket.create_connection(("127.0.0.1", rbroker.port), timeout=20) as s:
        s.sendall(b"".join(frames))
        offsets = []
        for i in range(len(frames)):
            resp = read_frame(s)
            cid = struct.unpack_from(">i", resp, 0)[0]
            # v8 response: cid, [topic: name, [partition: index, error, base offset, ...]]
            name_len = struct.unpack_from(">h", resp, 8)[0]
            index, error, base = struct.unpack_from(">ihq", resp, 10 + name_len + 4)
            assert (cid, index, error) == (i, 0, 0), (cid, index, error)
            offsets.append(base)
    expected, nxt = [], 0
    for n in counts:
        expected.append(nxt)
        nxt += n
    assert offsets == expected and offsets[0] == 0
