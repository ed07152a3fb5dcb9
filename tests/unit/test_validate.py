"""protocol/validate.py: declared lengths and counts are checked before kio sees a body.

kio's native reader allocates by a declared array count before checking that the bytes
exist, so a few bytes with a huge count abort the process (Rust OOM, no exception). Every
request the broker advertises must pass the validator when well-formed and be rejected
with a ``FrameError`` naming the field when a count, length or null does not fit. kio is
only ever handed bytes that passed the validator in this process; the inputs that do crash
it are run in throwaway subprocesses.
"""

from __future__ import annotations

import datetime
import io
import os
import struct
import subprocess
import sys
import textwrap
import typing
import uuid
from dataclasses import fields
from functools import cache
from typing import Any

import pytest
from kio.schema.errors import ErrorCode
from kio.serial import entity_reader, entity_writer

import pybroker.broker.handlers.all  # noqa: F401 - registers every handler
from pybroker.broker.handlers.registry import REGISTRY
from pybroker.protocol.codec import (
    FrameError,
    build,
    decode_request_body,
    parse_request_header,
    request_type,
)
from pybroker.protocol.validate import layout, validate_body

ADVERTISED = [
    (spec.api_key, v)
    for spec in sorted(REGISTRY.values(), key=lambda s: s.api_key)
    for v in range(spec.min_version, spec.max_version + 1)
]
IDS = [f"{REGISTRY[k].name}-v{v}" for k, v in ADVERTISED]

HUGE_UVARINT = b"\xff\xff\xff\xff\x7f"  # 2**35 - 1, the largest 5-byte varint
HUGE_I32 = struct.pack(">i", 0x7FFFFFFF)

SAMPLE_VALUES: dict[str, Any] = {
    "bool": True,
    "int8": 1,
    "int16": 2,
    "uint16": 3,
    "int32": 4,
    "int64": 5,
    "float64": 1.5,
    "uuid": uuid.UUID(int=0x1234),
    "error_code": ErrorCode.none,
    "timedelta_i32": datetime.timedelta(milliseconds=7),
    "timedelta_i64": datetime.timedelta(milliseconds=8),
    "datetime_i64": datetime.datetime(2024, 1, 2, tzinfo=datetime.UTC),
    "string": "ab",
    "bytes": b"xyz",
    "records": b"rec",
}


def sample(cls: type, entries: int = 2) -> Any:
    """An instance with every field set: arrays hold ``entries`` entries, tags are present."""
    lay = layout(cls)
    values = {}
    for f in (*lay.positional, *lay.tagged.values()):
        if f.entity is not None:
            one = sample(f.entity, entries)
            values[f.name] = (one,) * entries if f.is_array else one
        else:
            one = SAMPLE_VALUES[f.kafka_type or ""]
            values[f.name] = (one,) * entries if f.is_array else one
    return cls(**values)


def encode(entity: Any) -> bytes:
    buf = io.BytesIO()
    entity_writer(type(entity))(buf, entity)
    return buf.getvalue()


@cache
def sample_body(api_key: int, version: int) -> bytes:
    cls = request_type(api_key, version)
    assert cls is not None
    return encode(sample(cls))


def check(api_key: int, version: int, body: bytes) -> int:
    cls = request_type(api_key, version)
    assert cls is not None
    return validate_body(cls, memoryview(body).toreadonly(), 0)


def rejected(api_key: int, version: int, body: bytes) -> str:
    with pytest.raises(FrameError) as info:
        check(api_key, version, body)
    return str(info.value)


# -- well-formed requests pass, and end where kio ends --------------------------------------


@pytest.mark.parametrize(("api_key", "version"), ADVERTISED, ids=IDS)
def test_every_advertised_request_passes(api_key: int, version: int) -> None:
    cls = request_type(api_key, version)
    assert cls is not None
    for body in (encode(build(cls, {})), sample_body(api_key, version)):
        view = memoryview(body).toreadonly()
        _, kio_size = entity_reader(cls)(view, 0)
        assert validate_body(cls, view, 0) == kio_size == len(body)
        # Trailing bytes are the caller's business (Kafka ignores them).
        assert check(api_key, version, body + b"\xff" * 7) == len(body)


@pytest.mark.parametrize(("api_key", "version"), ADVERTISED, ids=IDS)
def test_every_truncation_is_rejected(api_key: int, version: int) -> None:
    body = sample_body(api_key, version)
    for cut in range(len(body)):
        rejected(api_key, version, body[:cut])


def test_layout_follows_nullable_versions() -> None:
    # MetadataRequestTopic.name became nullable in v10; kio makes one class per version.
    def name_field(version: int) -> Any:
        topic = layout(request_type(3, version)).positional[0].entity
        return next(f for f in layout(topic).positional if f.name == "name")

    assert not name_field(9).nullable
    assert name_field(10).nullable
    assert layout(request_type(3, 9)).positional[0].nullable  # topics: null = all topics


# -- huge counts and lengths ------------------------------------------------------------------

CREATE_TOPICS_V5_HEAD = b"\x02" + b"\x02t" + struct.pack(">ih", 1, 1)  # one topic "t"


def test_create_topics_v5_huge_configs_count() -> None:
    body = CREATE_TOPICS_V5_HEAD + b"\x01" + HUGE_UVARINT  # assignments [], configs huge
    msg = rejected(19, 5, body)
    assert msg.startswith("topics[0].configs: count 34359738366 needs at least"), msg


def test_create_topics_v5_huge_nested_broker_ids() -> None:
    # assignments: one entry (partition 0) whose broker_ids count is huge.
    body = CREATE_TOPICS_V5_HEAD + b"\x02" + struct.pack(">i", 0) + HUGE_UVARINT
    msg = rejected(19, 5, body)
    assert msg.startswith("topics[0].assignments[0].broker_ids: count"), msg


def test_second_entry_is_named() -> None:
    first = b"\x02t" + struct.pack(">ih", 1, 1) + b"\x01\x01\x00"  # a complete topic
    second = b"\x02u" + struct.pack(">ih", 1, 1) + b"\x01" + HUGE_UVARINT
    msg = rejected(19, 5, b"\x03" + first + second)
    assert msg.startswith("topics[1].configs: count"), msg


@pytest.mark.parametrize(
    ("version", "body", "path"),
    [
        (9, HUGE_UVARINT, "topics: count"),  # topics array
        (9, b"\x02" + HUGE_UVARINT, "topics[0].name: length"),  # topic name
        (12, b"\x02" + b"\x00" * 16 + HUGE_UVARINT, "topics[0].name: length"),
        (1, HUGE_I32, "topics: count"),  # non-flexible int32 count
        (1, struct.pack(">ih", 1, 0x7FFF), "topics[0].name: length 32767"),  # int16 length
    ],
)
def test_metadata_huge_counts_and_lengths(version: int, body: bytes, path: str) -> None:
    msg = rejected(3, version, body)
    assert msg.startswith(path), msg


def test_non_flexible_fixed_size_entries_are_counted() -> None:
    # Fetch v11: one topic "t" whose partitions count (fixed 28-byte entries) is huge.
    head = struct.pack(">iiiibii", -1, 0, 1, 1000, 0, 0, -1)
    body = head + struct.pack(">i", 1) + b"\x00\x01t" + HUGE_I32
    msg = rejected(1, 11, body)
    assert msg.startswith("topics[0].partitions: count 2147483647 needs at least"), msg
    # The same count with the bytes present is fine (kio is not asked here).
    ok = head + struct.pack(">i", 1) + b"\x00\x01t" + struct.pack(">i", 2) + b"\x00" * 56
    ok += struct.pack(">i", 0) + b"\x00\x00"  # forgotten topics [], rack id ""
    assert check(1, 11, ok) == len(ok)


def test_produce_v3_huge_records_length() -> None:
    topic = struct.pack(">h", 1) + b"t" + struct.pack(">i", 1) + struct.pack(">i", 0)
    body = struct.pack(">hhi", -1, 1, 1000) + struct.pack(">i", 1) + topic + HUGE_I32
    msg = rejected(0, 3, body)
    assert msg.startswith("topic_data[0].partition_data[0].records: length 2147483647"), msg


# -- negative lengths and nulls ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("api_key", "version", "body", "path"),
    [
        (3, 1, struct.pack(">i", -2), "topics: negative length -2"),
        (3, 1, struct.pack(">ih", 1, -3), "topics[0].name: negative length -3"),
        (19, 2, struct.pack(">ih", 1, -1), "topics[0].name: non-nullable field was serialized"),
        (19, 2, struct.pack(">i", -1), "topics: non-nullable field was serialized as null"),
        (19, 5, b"\x00", "topics: non-nullable field was serialized as null"),
        (3, 9, b"\x02\x00", "topics[0].name: non-nullable field was serialized as null"),
    ],
)
def test_negative_and_null_are_rejected(api_key: int, version: int, body: bytes, path: str) -> None:
    msg = rejected(api_key, version, body + b"\x00" * 32)
    assert msg.startswith(path), msg


def test_nulls_where_the_version_allows_them() -> None:
    # Metadata topics null = all topics (v1+); topic name nullable from v10 (by topic id).
    assert check(3, 1, struct.pack(">i", -1)) == 4
    v9 = b"\x00" + b"\x01\x00\x00" + b"\x00"  # topics null, 3 bools, no tags
    assert check(3, 9, v9) == len(v9)
    v10 = b"\x02" + bytes(16) + b"\x00" + b"\x00" + b"\x01\x00\x00" + b"\x00"
    assert check(3, 10, v10) == len(v10)


def test_produce_null_records_is_allowed_by_the_schema() -> None:
    topic = struct.pack(">h", 1) + b"t" + struct.pack(">i", 1) + struct.pack(">ii", 0, -1)
    body = struct.pack(">hhi", -1, 1, 1000) + struct.pack(">i", 1) + topic
    assert check(0, 3, body) == len(body)
    msg = rejected(0, 3, body[:-4] + struct.pack(">i", -9))
    assert msg.endswith("records: negative length -9"), msg


# -- tagged fields --------------------------------------------------------------------------


def produce_v9_with_tags(partition_tags: bytes, top_tags: bytes) -> bytes:
    # transactional_id null, acks 1, timeout, one topic "t", one partition 3, records 3 bytes
    head = b"\x00" + struct.pack(">hi", 1, 500) + b"\x02\x02t" + b"\x02" + struct.pack(">i", 3)
    return head + b"\x04\x01\x02\x03" + partition_tags + b"\x00" + top_tags


def test_unknown_tags_are_skipped_at_every_depth() -> None:
    body = produce_v9_with_tags(b"\x01\x63\x02\xab\xcd", b"\x02\x07\x00\x08\x01\xff")
    assert check(0, 9, body) == len(body)
    # ... and the codec still decodes it (kio's KeyError -> strip -> decode).
    header = struct.pack(">hhih", 0, 9, 5, -1) + b"\x00"
    frame = memoryview(header + body).toreadonly()
    got = decode_request_body(0, 9, frame, parse_request_header(frame).size)
    assert bytes(got.topic_data[0].partition_data[0].records) == b"\x01\x02\x03"


def test_unknown_tag_next_to_a_nullable_array_decodes() -> None:
    # Metadata v12: topics is a nullable array; the strip fallback walks it by layout.
    body = b"\x02" + bytes(16) + b"\x02t" + b"\x00" + b"\x01\x00" + b"\x01\x09\x01z"
    header = struct.pack(">hhih", 3, 12, 5, -1) + b"\x00"
    frame = memoryview(header + body).toreadonly()
    got = decode_request_body(3, 12, frame, parse_request_header(frame).size)
    assert [t.name for t in got.topics] == ["t"] and got.allow_auto_topic_creation
    null_topics = b"\x00" + b"\x01\x00" + b"\x01\x09\x01z"
    frame = memoryview(header + null_topics).toreadonly()
    assert decode_request_body(3, 12, frame, parse_request_header(frame).size).topics is None


@pytest.mark.parametrize(
    ("partition_tags", "top_tags", "path"),
    [
        (b"\x01\x63" + HUGE_UVARINT, b"\x00", "topic_data[0].partition_data[0].tag 99: length"),
        (b"\x00", b"\x01\x07\x05ab", "tag 7: length 5 exceeds the 2 bytes left"),
        (b"\x00", HUGE_UVARINT, "tagged fields: count"),
    ],
)
def test_tagged_sections_must_fit(partition_tags: bytes, top_tags: bytes, path: str) -> None:
    msg = rejected(0, 9, produce_v9_with_tags(partition_tags, top_tags))
    assert msg.startswith(path), msg


def test_known_tag_contents_are_walked() -> None:
    # BrokerHeartbeat v2, tag 0 = offline_log_dirs (uuid array), read by kio by its schema.
    head = struct.pack(">iqqbb", 1, 2, 3, 0, 0)
    ok = head + b"\x01\x00\x11\x02" + bytes(16)
    assert check(63, 2, ok) == len(ok)
    huge = head + b"\x01\x00\x05" + HUGE_UVARINT
    msg = rejected(63, 2, huge)
    assert msg.startswith("offline_log_dirs: count 34359738366 needs at least"), msg
    # The tag's size must match what its value takes, or kio and Kafka would disagree.
    msg = rejected(63, 2, head + b"\x01\x00\x12\x02" + bytes(17))
    assert msg.startswith("tag 0: size 18 but the value takes 17 bytes"), msg
    # Fetch v12: cluster_id (tag 0) is a nullable string.
    fetch_tag = _fetch_v12_with_top_tags(b"\x01\x00\x05" + HUGE_UVARINT)
    assert rejected(1, 12, fetch_tag).startswith("cluster_id: length"), fetch_tag


def _fetch_v12_with_top_tags(tags: bytes) -> bytes:
    fixed = struct.pack(">iiiibii", -1, 0, 1, 1000, 0, 0, -1)
    return fixed + b"\x01" + b"\x01" + b"\x01" + tags  # topics [], forgotten [], rack ""


def test_flexible_fixed_entries_with_tags_fall_back_to_the_slow_walk() -> None:
    # Fetch v12 partitions are 32 fixed bytes and a tag section: all-empty sections are
    # skipped at once, otherwise each partition is walked and a bad one is named.
    def body(second_tags: bytes) -> bytes:
        fixed = struct.pack(">iiiibii", -1, 0, 1, 1000, 0, 0, -1)
        parts = bytes(32) + b"\x00" + bytes(32) + second_tags + bytes(32) + b"\x00"
        return fixed + b"\x02" + b"\x02t" + b"\x04" + parts + b"\x00" + b"\x01\x01\x00"

    for tags in (b"\x00", b"\x01\x05\x02ab"):
        assert check(1, 12, body(tags)) == len(body(tags))
    msg = rejected(1, 12, body(b"\x01\x05" + HUGE_UVARINT))
    assert msg.startswith("topics[0].partitions[1].tag 5: length"), msg
    # Fetch v17 samples carry a known tag in every partition.
    sample_v17 = encode(sample(request_type(1, 17), entries=3))
    assert check(1, 17, sample_v17) == len(sample_v17)


# -- the inputs above really do crash kio without the validator ------------------------------

_CRASH = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))  # as on a small host
from kio.serial import entity_reader
from pybroker.protocol.codec import request_type
api_key, version, body = int(sys.argv[1]), int(sys.argv[2]), bytes.fromhex(sys.argv[3])
try:
    entity_reader(request_type(api_key, version))(memoryview(body).toreadonly(), 0)
except Exception as exc:
    print("raised", type(exc).__name__)
"""


def _run(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, RUST_BACKTRACE="0")
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.mark.parametrize(
    ("api_key", "version", "body"),
    [
        (19, 5, CREATE_TOPICS_V5_HEAD + b"\x01" + HUGE_UVARINT),
        (3, 9, HUGE_UVARINT),
        (3, 1, HUGE_I32),
    ],
    ids=["create-topics-v5-configs", "metadata-v9-topics", "metadata-v1-int32-topics"],
)
def test_kio_alone_aborts_on_these_bodies(api_key: int, version: int, body: bytes) -> None:
    """Documents why the validator exists: if kio is fixed, this test says so."""
    done = _run(_CRASH, str(api_key), str(version), body.hex())
    assert done.returncode != 0 and "memory allocation" in done.stderr, (done.stdout, done.stderr)
    rejected(api_key, version, body)


_FUZZ = """
import random, resource, struct, sys
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
from kio.serial import entity_reader
from pybroker.protocol.codec import FrameError, request_type
from pybroker.protocol.validate import validate_body
rng = random.Random(int(sys.argv[1]))
HUGE = [bytes.fromhex(h) for h in ("ffffffff7f", "7fffffff", "ffff", "8080808008")]
passed = rejected = 0
for line in sys.stdin:
    api_key, version, hexbody = (line.split() + [""])[:3]
    cls = request_type(int(api_key), int(version))
    body = bytes.fromhex(hexbody)
    for _ in range(int(sys.argv[2])):
        b = bytearray(body)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(b) + 1)
            if rng.random() < 0.5:
                b[at:at + 4] = rng.choice(HUGE)
            elif b:
                b[at % len(b)] = rng.randrange(256)
        view = memoryview(bytes(b)).toreadonly()
        try:
            end = validate_body(cls, view, 0)
        except FrameError:
            rejected += 1
            continue
        passed += 1
        try:
            _, size = entity_reader(cls)(view, 0)
        except Exception:
            continue
        assert size == end, (api_key, version, b.hex(), size, end)
print(passed, rejected)
"""


def test_mutated_bodies_never_abort_kio() -> None:
    """Random huge lengths and byte flips in every advertised request: what the validator
    lets through, kio decodes (or rejects) without aborting, and ends where we said."""
    lines = "".join(f"{k} {v} {sample_body(k, v).hex()}\n" for k, v in ADVERTISED)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_FUZZ), "20240611", "150"],
        input=lines,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    passed, rejected_count = map(int, done.stdout.split())
    assert passed > 1000 and rejected_count > 1000, done.stdout


def test_sample_covers_nested_and_tagged_fields() -> None:
    # Guard the sample builder: nested arrays and tags really are on the wire.
    body = sample_body(1, 17)
    cls = request_type(1, 17)
    decoded, _ = entity_reader(cls)(memoryview(body).toreadonly(), 0)
    assert len(decoded.topics) == 2 and len(decoded.topics[0].partitions) == 2
    assert decoded.cluster_id == "ab"
    assert decoded.topics[0].partitions[0].replica_directory_id == SAMPLE_VALUES["uuid"]
    assert typing.get_type_hints(cls) and fields(cls)
