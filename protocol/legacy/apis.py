"""The request/response versions Kafka 3.9 served and KIP-896 removed in Kafka 4.0.

For each (api key, legacy version): the wire schema of the request and of the response,
and the kio version ("proxy") whose request class the handlers receive. A decoded legacy
request becomes an instance of the proxy's kio request class (fields the old version
lacks get the values Kafka 3.9 implied), so handlers serve it like any other version
while ``ctx.version`` still tells them the real one. Responses are built on a subclass of
the proxy's kio response class and written back in the legacy layout (see codec).

Versions, from Kafka 3.9's JSON schemas against Kafka 4.1's ApiVersions: Produce 0-2,
Fetch 0-3, ListOffsets 0, OffsetCommit 0-1, OffsetFetch 0, CreateTopics 0-1,
DeleteTopics 0, WriteTxnMarkers 0, OffsetForLeaderEpoch 0-1, DescribeConfigs 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pybroker.protocol.legacy.wire import Schema, array, nullable_array

Translate = Callable[[dict[str, Any]], dict[str, Any]]
Prepare = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class LegacyVersion:
    api_key: int
    version: int
    proxy: int  # the kio version the handlers see
    request: Schema
    response: Schema
    translate: Translate | None = None  # request dict -> proxy request fields
    prepare: Prepare | None = None  # proxy response -> what ``response`` writes


def _same(d: dict[str, Any]) -> dict[str, Any]:
    return d


# -- Produce 0-2 (records are message sets, converted by the Produce handler) -----------

_PRODUCE_REQ: Schema = (
    ("acks", "int16"),
    ("timeout", "int32"),
    (
        "topic_data",
        array(
            (
                ("name", "string"),
                ("partition_data", array((("index", "int32"), ("records", "records")))),
            )
        ),
    ),
)


def _produce_response(version: int) -> Schema:
    part: list[tuple[str, Any]] = [
        ("index", "int32"),
        ("error_code", "int16"),
        ("base_offset", "int64"),
    ]
    if version >= 2:
        part.append(("log_append_time", "int64"))
    top: list[tuple[str, Any]] = [
        ("responses", array((("name", "string"), ("partition_responses", array(tuple(part))))))
    ]
    if version >= 1:
        top.append(("throttle_time", "int32"))
    return tuple(top)


def _produce_translate(d: dict[str, Any]) -> dict[str, Any]:
    return dict(d, transactional_id=None)


# -- Fetch 0-3 (the Fetch handler writes the response itself: it down-converts) ---------


def _fetch_request(version: int) -> Schema:
    top: list[tuple[str, Any]] = [
        ("replica_id", "int32"),
        ("max_wait", "int32"),
        ("min_bytes", "int32"),
    ]
    if version >= 3:
        top.append(("max_bytes", "int32"))
    part = (("partition", "int32"), ("fetch_offset", "int64"), ("partition_max_bytes", "int32"))
    top.append(("topics", array((("topic", "string"), ("partitions", array(part))))))
    return tuple(top)


def _fetch_response(version: int) -> Schema:
    """Written by fetch_encoder (records as file slices or down-converted bytes); this
    schema serves clients (tests) and documents the layout."""
    part = (
        ("partition_index", "int32"),
        ("error_code", "int16"),
        ("high_watermark", "int64"),
        ("records", "records"),
    )
    top: list[tuple[str, Any]] = [("throttle_time", "int32")] if version >= 1 else []
    top.append(("responses", array((("topic", "string"), ("partitions", array(part))))))
    return tuple(top)


def _fetch_translate(d: dict[str, Any]) -> dict[str, Any]:
    return dict(d, isolation_level=0, max_bytes=d.get("max_bytes", 2**31 - 1))


# -- ListOffsets 0 -----------------------------------------------------------------------

_LIST_OFFSETS_REQ: Schema = (
    ("replica_id", "int32"),
    (
        "topics",
        array(
            (
                ("name", "string"),
                (
                    "partitions",
                    array(
                        (
                            ("partition_index", "int32"),
                            ("timestamp", "int64"),
                            ("max_num_offsets", "int32"),
                        )
                    ),
                ),
            )
        ),
    ),
)
_LIST_OFFSETS_RESP: Schema = (
    (
        "topics",
        array(
            (
                ("name", "string"),
                (
                    "partitions",
                    array(
                        (
                            ("partition_index", "int32"),
                            ("error_code", "int16"),
                            ("old_style_offsets", array("int64")),
                        )
                    ),
                ),
            )
        ),
    ),
)


def _list_offsets_prepare(resp: Any) -> Any:
    """v0 answers a list of offsets; Kafka 3.9 gave the one offset found (the log end or
    start for -1/-2), and none on error."""
    return {
        "topics": [
            {
                "name": t.name,
                "partitions": [
                    {
                        "partition_index": p.partition_index,
                        "error_code": p.error_code,
                        "old_style_offsets": (
                            [p.offset] if not p.error_code and p.offset >= 0 else []
                        ),
                    }
                    for p in t.partitions
                ],
            }
            for t in resp.topics
        ]
    }


# -- OffsetCommit 0-1, OffsetFetch 0 -----------------------------------------------------


def _offset_commit_request(version: int) -> Schema:
    part: list[tuple[str, Any]] = [("partition_index", "int32"), ("committed_offset", "int64")]
    if version == 1:
        part.append(("commit_timestamp", "int64"))
    part.append(("committed_metadata", "nullable_string"))
    top: list[tuple[str, Any]] = [("group_id", "string")]
    if version == 1:
        top += [("generation_id_or_member_epoch", "int32"), ("member_id", "string")]
    top.append(("topics", array((("name", "string"), ("partitions", array(tuple(part)))))))
    return tuple(top)


def _offset_commit_translate(d: dict[str, Any]) -> dict[str, Any]:
    d.setdefault("generation_id_or_member_epoch", -1)
    d.setdefault("member_id", "")
    return dict(d, retention_time=-1)


_OFFSET_COMMIT_RESP: Schema = (
    (
        "topics",
        array(
            (
                ("name", "string"),
                ("partitions", array((("partition_index", "int32"), ("error_code", "int16")))),
            )
        ),
    ),
)
_OFFSET_FETCH_REQ: Schema = (
    ("group_id", "string"),
    ("topics", array((("name", "string"), ("partition_indexes", array("int32"))))),
)
_OFFSET_FETCH_RESP: Schema = (
    (
        "topics",
        array(
            (
                ("name", "string"),
                (
                    "partitions",
                    array(
                        (
                            ("partition_index", "int32"),
                            ("committed_offset", "int64"),
                            ("metadata", "nullable_string"),
                            ("error_code", "int16"),
                        )
                    ),
                ),
            )
        ),
    ),
)

# -- CreateTopics 0-1, DeleteTopics 0 ----------------------------------------------------


def _create_topics_request(version: int) -> Schema:
    topic = (
        ("name", "string"),
        ("num_partitions", "int32"),
        ("replication_factor", "int16"),
        ("assignments", array((("partition_index", "int32"), ("broker_ids", array("int32"))))),
        ("configs", array((("name", "string"), ("value", "nullable_string")))),
    )
    top: list[tuple[str, Any]] = [("topics", array(topic)), ("timeout", "int32")]
    if version == 1:
        top.append(("validate_only", "bool"))
    return tuple(top)


def _create_topics_response(version: int) -> Schema:
    result: list[tuple[str, Any]] = [("name", "string"), ("error_code", "int16")]
    if version == 1:
        result.append(("error_message", "nullable_string"))
    return (("topics", array(tuple(result))),)


def _create_topics_translate(d: dict[str, Any]) -> dict[str, Any]:
    d.setdefault("validate_only", False)
    return d


_DELETE_TOPICS_REQ: Schema = (("topic_names", array("string")), ("timeout", "int32"))
_DELETE_TOPICS_RESP: Schema = (("responses", array((("name", "string"), ("error_code", "int16")))),)

# -- WriteTxnMarkers 0 (inter-broker; v1 is the same, flexible) ---------------------------

_WTM_REQ: Schema = (
    (
        "markers",
        array(
            (
                ("producer_id", "int64"),
                ("producer_epoch", "int16"),
                ("transaction_result", "bool"),
                ("topics", array((("name", "string"), ("partition_indexes", array("int32"))))),
                ("coordinator_epoch", "int32"),
            )
        ),
    ),
)
_WTM_RESP: Schema = (
    (
        "markers",
        array(
            (
                ("producer_id", "int64"),
                (
                    "topics",
                    array(
                        (
                            ("name", "string"),
                            (
                                "partitions",
                                array((("partition_index", "int32"), ("error_code", "int16"))),
                            ),
                        )
                    ),
                ),
            )
        ),
    ),
)

# -- OffsetForLeaderEpoch 0-1 ------------------------------------------------------------

_OFFSET_FOR_LEADER_EPOCH_REQ: Schema = (
    (
        "topics",
        array(
            (
                ("topic", "string"),
                ("partitions", array((("partition", "int32"), ("leader_epoch", "int32")))),
            )
        ),
    ),
)


def _ofle_response(version: int) -> Schema:
    part: list[tuple[str, Any]] = [("error_code", "int16"), ("partition", "int32")]
    if version == 1:
        part.append(("leader_epoch", "int32"))
    part.append(("end_offset", "int64"))
    return (("topics", array((("topic", "string"), ("partitions", array(tuple(part)))))),)


def _ofle_translate(d: dict[str, Any]) -> dict[str, Any]:
    for t in d["topics"]:
        for p in t["partitions"]:
            p["current_leader_epoch"] = -1
    return d


# -- DescribeConfigs 0 -------------------------------------------------------------------

_DESCRIBE_CONFIGS_REQ: Schema = (
    (
        "resources",
        array(
            (
                ("resource_type", "int8"),
                ("resource_name", "string"),
                ("configuration_keys", nullable_array("string")),
            )
        ),
    ),
)
_DESCRIBE_CONFIGS_RESP: Schema = (
    ("throttle_time", "int32"),
    (
        "results",
        array(
            (
                ("error_code", "int16"),
                ("error_message", "nullable_string"),
                ("resource_type", "int8"),
                ("resource_name", "string"),
                (
                    "configs",
                    array(
                        (
                            ("name", "string"),
                            ("value", "nullable_string"),
                            ("read_only", "bool"),
                            ("is_default", "bool"),
                            ("is_sensitive", "bool"),
                        )
                    ),
                ),
            )
        ),
    ),
)


def _describe_configs_prepare(resp: Any) -> Any:
    """v0 has is_default where v1 has config_source. Kafka 3.9 never set it (its
    ConfigHelper fills ConfigSource only), so v0 clients always read false."""
    return {
        "throttle_time": resp.throttle_time,
        "results": [
            {
                "error_code": r.error_code,
                "error_message": r.error_message,
                "resource_type": r.resource_type,
                "resource_name": r.resource_name,
                "configs": [
                    {
                        "name": c.name,
                        "value": c.value,
                        "read_only": c.read_only,
                        "is_default": False,
                        "is_sensitive": c.is_sensitive,
                    }
                    for c in r.configs
                ],
            }
            for r in resp.results
        ],
    }


def _describe_configs_translate(d: dict[str, Any]) -> dict[str, Any]:
    return dict(d, include_synonyms=False)


def _table() -> dict[tuple[int, int], LegacyVersion]:
    specs = [
        *(
            LegacyVersion(0, v, 3, _PRODUCE_REQ, _produce_response(v), _produce_translate)
            for v in range(3)
        ),
        *(
            LegacyVersion(1, v, 4, _fetch_request(v), _fetch_response(v), _fetch_translate)
            for v in range(4)
        ),
        LegacyVersion(2, 0, 1, _LIST_OFFSETS_REQ, _LIST_OFFSETS_RESP, None, _list_offsets_prepare),
        *(
            LegacyVersion(
                8, v, 2, _offset_commit_request(v), _OFFSET_COMMIT_RESP, _offset_commit_translate
            )
            for v in range(2)
        ),
        LegacyVersion(9, 0, 1, _OFFSET_FETCH_REQ, _OFFSET_FETCH_RESP),
        *(
            LegacyVersion(
                19,
                v,
                2,
                _create_topics_request(v),
                _create_topics_response(v),
                _create_topics_translate,
            )
            for v in range(2)
        ),
        LegacyVersion(20, 0, 1, _DELETE_TOPICS_REQ, _DELETE_TOPICS_RESP),
        *(
            LegacyVersion(
                23, v, 2, _OFFSET_FOR_LEADER_EPOCH_REQ, _ofle_response(v), _ofle_translate
            )
            for v in range(2)
        ),
        LegacyVersion(27, 0, 1, _WTM_REQ, _WTM_RESP),
        LegacyVersion(
            32,
            0,
            1,
            _DESCRIBE_CONFIGS_REQ,
            _DESCRIBE_CONFIGS_RESP,
            _describe_configs_translate,
            _describe_configs_prepare,
        ),
    ]
    return {(s.api_key, s.version): s for s in specs}


LEGACY_VERSIONS: dict[tuple[int, int], LegacyVersion] = _table()

# The lowest version Kafka 3.9 served, per key whose minimum KIP-896 raised.
LEGACY_MIN: dict[int, int] = {}
for _key, _version in LEGACY_VERSIONS:
    LEGACY_MIN[_key] = min(LEGACY_MIN.get(_key, _version), _version)
