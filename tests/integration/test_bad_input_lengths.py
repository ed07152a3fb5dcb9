"""Declared lengths and counts that do not fit the frame: one connection closes, nothing else.

kio's native reader allocates by a declared array count before checking that the bytes
exist: a 10-byte frame with a huge count would abort the whole broker process (Rust OOM,
no exception). protocol/validate.py walks every body first. Apache Kafka (4.x) throws from
its generated readers on these frames ("Tried to allocate a collection of size N, but there
are only M bytes remaining", "non-nullable field was serialized as null"), and
``SocketServer.Processor.processCompletedReceives`` closes that one channel.

Each test sends one such frame on a fresh connection and checks, over the wire and in the
broker's log, that:
- the broker closes that connection without answering;
- it logs exactly one WARNING line for it, naming the peer, the API, the version and the
  field at fault;
- the process is alive and still serves a connection opened before the bad frame and a
  new one.

The broker runs with a 4 GiB address-space limit, as on a small host: without the
validator, the non-flexible int32 counts below (2**31 - 1 entries = a 16 GiB Vec) abort
it too, not only the 5-byte varint counts (2**35 - 1 entries).
"""

from __future__ import annotations

import re
import struct
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from kio.schema.metadata.v4.request import MetadataRequest

from tests.support.broker import BrokerProcess
from tests.support.wire import KafkaWire, encode_header, frame

HUGE_UVARINT = b"\xff\xff\xff\xff\x7f"  # 2**35 - 1
HUGE_I32 = struct.pack(">i", 0x7FFFFFFF)
CLOSE_TIMEOUT = 10.0
ADDRESS_SPACE = 4 << 30

_LIMIT_AND_EXEC = (
    "import os, resource, sys; "
    "resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[1]), int(sys.argv[1]))); "
    "os.execv(sys.argv[2], sys.argv[2:])"
)


class SmallHostBroker(BrokerProcess):
    """A broker whose address space is capped, so a huge allocation fails as it would on
    a host with little memory (here, a 16 GiB reservation would quietly succeed)."""

    def command(self) -> list[str]:
        return [sys.executable, "-c", _LIMIT_AND_EXEC, str(ADDRESS_SPACE), *super().command()]


@pytest.fixture(scope="module")
def kbroker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    proc = SmallHostBroker(tmp_path_factory.mktemp("bad-lengths") / "data").start()
    try:
        yield proc
    finally:
        if proc.proc is not None:
            proc.stop()


def connect(broker: BrokerProcess) -> KafkaWire:
    return KafkaWire("127.0.0.1", broker.port, timeout=15.0)


def served(conn: KafkaWire, broker: BrokerProcess) -> None:
    """A Metadata request gets a sensible answer on ``conn``."""
    md = conn.request(
        MetadataRequest(
            topics=None,
            allow_auto_topic_creation=False,
        )
    )
    assert ("127.0.0.1", broker.port) in {(b.host, int(b.port)) for b in md.brokers}, md


@contextmanager
def still_serving(broker: BrokerProcess) -> Iterator[None]:
    """Around bad input: the process lives, an existing and a new connection are served."""
    bystander = connect(broker)
    bystander.api_versions()
    try:
        yield
        assert broker.proc is not None and broker.proc.poll() is None, (
            f"broker process died:\n{broker.log_tail()}"
        )
        for conn in (bystander, connect(broker)):
            with conn:
                served(conn, broker)
    finally:
        bystander.close()


def warnings_for(log: Path, peer: str, deadline: float) -> list[str]:
    """The broker's WARNING lines naming ``peer``, once at least one has been written."""
    pattern = re.compile(rf"\bWARNING\b.*\b{re.escape(peer)}\b")
    while True:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if pattern.search(ln)]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def send_bad_frame(broker: BrokerProcess, payload: bytes) -> str:
    """Send ``payload`` (header + body) on a new connection; check that the broker closes
    it without answering and logs one WARNING line for it, which is returned."""
    with connect(broker) as conn:
        host, port = conn.sock.getsockname()[:2]
        conn.send_raw(frame(payload))
        data = conn.read_until_closed(CLOSE_TIMEOUT)
        assert data == b"", f"broker answered before closing: {data!r:.200}"
    # Other lines may follow for this peer only by mistake: give them a moment to show.
    lines = warnings_for(broker.log_path, f"{host}:{port}", time.monotonic() + CLOSE_TIMEOUT)
    time.sleep(0.2)
    lines = warnings_for(broker.log_path, f"{host}:{port}", time.monotonic())
    assert len(lines) == 1, lines
    return lines[0]


CREATE_TOPICS_V5_TOPIC = b"\x02t" + struct.pack(">ih", 1, 1)  # name "t", 1 partition, rf 1

CASES = {
    # The issue: CreateTopics v5, configs count = the varint ff ff ff ff 7f.
    "create-topics-v5-configs-count": (
        19,
        5,
        b"\x02" + CREATE_TOPICS_V5_TOPIC + b"\x01" + HUGE_UVARINT,
        "topics[0].configs: count 34359738366",
    ),
    # The issue: Metadata v9, a topic name whose length is huge ...
    "metadata-v9-topic-name-length": (
        3,
        9,
        b"\x02" + HUGE_UVARINT,
        "topics[0].name: length 34359738366",
    ),
    # ... and the topics count itself, which is what makes kio allocate.
    "metadata-v9-topics-count": (3, 9, HUGE_UVARINT, "topics: count 34359738366"),
    # Non-flexible: an int32 array count.
    "metadata-v4-int32-topics-count": (3, 4, HUGE_I32, "topics: count 2147483647"),
    # Nested: the broker ids of one manual assignment (CreateTopics v5), and the
    # partitions of one topic in a non-flexible Fetch v11 (fixed-size entries).
    "create-topics-v5-nested-broker-ids": (
        19,
        5,
        b"\x02" + CREATE_TOPICS_V5_TOPIC + b"\x02" + struct.pack(">i", 0) + HUGE_UVARINT,
        "topics[0].assignments[0].broker_ids: count 34359738366",
    ),
    "fetch-v11-nested-int32-partitions-count": (
        1,
        11,
        struct.pack(">iiiibii", -1, 0, 1, 1000, 0, 0, -1)
        + struct.pack(">i", 1)
        + b"\x00\x01t"
        + HUGE_I32,
        "topics[0].partitions: count 2147483647",
    ),
    # A null where the schema does not allow one (Kafka: "non-nullable field was
    # serialized as null"): the topics of CreateTopics v5.
    "create-topics-v5-null-topics": (
        19,
        5,
        b"\x00" + b"\x00" * 16,
        "topics: non-nullable field was serialized as null",
    ),
}
API_NAMES = {1: "Fetch", 3: "Metadata", 19: "CreateTopics"}
FLEXIBLE_FROM = {1: 12, 3: 9, 19: 5}


@pytest.mark.parametrize("case", sorted(CASES))
def test_length_that_does_not_fit_closes_one_connection(kbroker: BrokerProcess, case: str) -> None:
    api_key, version, body, reason = CASES[case]
    header = encode_header(api_key, version, 77, flexible=version >= FLEXIBLE_FROM[api_key])
    with still_serving(kbroker):
        line = send_bad_frame(kbroker, header + body)
    assert f"{API_NAMES[api_key]} (key {api_key}) v{version}" in line, line
    assert reason in line, line


def test_many_bad_frames_in_a_row_leave_the_broker_whole(kbroker: BrokerProcess) -> None:
    # Every crasher again, back to back, on connections of their own: nothing accumulates.
    with still_serving(kbroker):
        for api_key, version, body, _ in CASES.values():
            header = encode_header(api_key, version, 5, flexible=version >= FLEXIBLE_FROM[api_key])
            with connect(kbroker) as conn:
                conn.send_raw(frame(header + body))
                assert conn.read_until_closed(CLOSE_TIMEOUT) == b""
