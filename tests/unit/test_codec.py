"""Request header parsing, body decoding and entity building over kio."""

from __future__ import annotations

import io
import struct

import pytest
from kio.schema.metadata.v12.request import MetadataRequest, MetadataRequestTopic
from kio.schema.request_header.v2.header import RequestHeader as KioHeaderV2
from kio.serial import entity_writer

from pybroker.protocol.codec import (
    FrameError,
    build,
    decode_request_body,
    encode_body,
    parse_request_header,
    response_header_flexible,
    response_type,
)


def metadata_frame(extra_header_tags: bytes = b"\x00") -> bytes:
    buf = io.BytesIO()
    entity_writer(KioHeaderV2)(
        buf,
        KioHeaderV2(request_api_key=3, request_api_version=12, correlation_id=42, client_id="c1"),
    )
    head = buf.getvalue()
    assert head.endswith(b"\x00")
    head = head[:-1] + extra_header_tags
    body = io.BytesIO()
    entity_writer(MetadataRequest)(
        body,
        MetadataRequest(
            topics=(MetadataRequestTopic(topic_id=None, name="orders"),),
            allow_auto_topic_creation=False,
            include_topic_authorized_operations=False,
        ),
    )
    return head + body.getvalue()


def test_header_and_body_round_trip() -> None:
    frame = memoryview(metadata_frame())
    header = parse_request_header(frame)
    assert (header.api_key, header.api_version, header.correlation_id) == (3, 12, 42)
    assert header.client_id == "c1"
    body = decode_request_body(3, 12, frame, header.size)
    assert body.topics[0].name == "orders"
    assert body.allow_auto_topic_creation is False


def test_unknown_header_tags_are_skipped() -> None:
    # two tagged fields: tag 5 with 3 bytes, tag 9 with 0 bytes (KIP-482: ignore unknown)
    frame = memoryview(metadata_frame(b"\x02\x05\x03abc\x09\x00"))
    header = parse_request_header(frame)
    body = decode_request_body(3, 12, frame, header.size)
    assert body.topics[0].name == "orders"


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\x00\x03\x00\x0c\x00\x00",  # shorter than a header
        struct.pack(">hhih", 3, 12, 1, 10) + b"abc",  # client id runs past the frame
        struct.pack(">hhih", 3, 12, 1, -7),  # negative client id length other than -1
        struct.pack(">hhih", 3, 12, 1, 2) + b"\xff\xfe" + b"\x00",  # client id not UTF-8
        struct.pack(">hhih", 3, 12, 1, -1) + b"\x05",  # tagged field count with no tags
    ],
)
def test_malformed_headers(frame: bytes) -> None:
    with pytest.raises(FrameError):
        parse_request_header(memoryview(frame))


def test_truncated_body_fails_and_trailing_bytes_are_ignored() -> None:
    frame = metadata_frame()
    header = parse_request_header(memoryview(frame))
    with pytest.raises(FrameError):
        decode_request_body(3, 12, memoryview(frame[:-2]), header.size)
    # Kafka ignores bytes after the body (librdkafka sends some): so do we.
    body = decode_request_body(3, 12, memoryview(frame + b"\x00\x00\x00"), header.size)
    assert body.topics[0].name == "orders"


def test_build_fills_version_specific_fields() -> None:
    v0 = build(response_type(3, 0), brokers=[], topics=[], cluster_id="ignored-in-v0")
    v12 = build(response_type(3, 12), brokers=[], topics=[], cluster_id="abc")
    assert not hasattr(v0, "cluster_id")
    assert v12.cluster_id == "abc"
    assert encode_body(v0) == b"\x00\x00\x00\x00" * 2  # two empty arrays


def test_response_header_versions() -> None:
    assert response_header_flexible(3, 12)
    assert not response_header_flexible(18, 3)  # ApiVersions always uses header v0


def test_unknown_body_tags_are_skipped_at_every_depth() -> None:
    from kio.schema.produce.v9.request import (
        PartitionProduceData,
        ProduceRequest,
        TopicProduceData,
    )

    body = io.BytesIO()
    entity_writer(ProduceRequest)(
        body,
        ProduceRequest(
            transactional_id=None,
            acks=1,
            timeout=__import__("datetime").timedelta(milliseconds=500),
            topic_data=(
                TopicProduceData(
                    name="t",
                    partition_data=(PartitionProduceData(index=3, records=b"\x01\x02\x03"),),
                ),
            ),
        ),
    )
    raw = body.getvalue()
    # Layout ends: ... records(compact bytes) partition-tags topic-tags top-tags.
    assert raw.endswith(b"\x04\x01\x02\x03\x00\x00\x00")
    tagged = raw[:-3] + b"\x01\x63\x02\xab\xcd" + b"\x00" + b"\x02\x07\x00\x08\x01\xff"
    header = struct.pack(">hhih", 0, 9, 5, -1) + b"\x00"
    frame = memoryview(header + tagged)
    got = decode_request_body(0, 9, frame, parse_request_header(frame).size)
    assert got.acks == 1
    part = got.topic_data[0].partition_data[0]
    assert (got.topic_data[0].name, part.index, bytes(part.records)) == ("t", 3, b"\x01\x02\x03")


def test_truncated_tagged_body_is_a_frame_error() -> None:
    header = struct.pack(">hhih", 3, 12, 5, -1) + b"\x00"
    frame = memoryview(header + b"\x02\x02t\x00\x01\x00\x00\x05\x63\x09ab")
    with pytest.raises(FrameError):
        decode_request_body(3, 12, frame, parse_request_header(frame).size)
