"""Kio glue: request headers, body decode/encode per (api_key, version), and response framing.

The request header is parsed by hand (it is tiny and we want its tagged fields skipped,
not rejected); bodies are decoded by kio's native readers. Response bodies are encoded
with kio's writers (cold APIs) or by hand (Fetch, ApiVersions: see fetch_encoder).
"""

from __future__ import annotations

import datetime
import io
import struct
import typing
import uuid
from dataclasses import MISSING, dataclass, fields
from functools import cache
from typing import Any

from kio.index import UnknownAPIKey, UnknownEntity, load_request_schema, load_response_schema
from kio.serial import entity_reader, entity_writer
from kio.serial.errors import DecodeError

from pybroker.protocol.errors import ErrorCode
from pybroker.protocol.produce_decode import decode_produce

_HEADER = struct.Struct(">hhih")


class FrameError(Exception):
    """A request frame that cannot be parsed: Kafka closes the connection."""


@dataclass(frozen=True, slots=True)
class RequestHeader:
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    size: int  # bytes the header occupies in the frame


def read_uvarint(buf: memoryview | bytes, pos: int) -> tuple[int, int]:
    """Decode an unsigned varint at ``pos``; return (value, next position)."""
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise FrameError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 28:
            raise FrameError("varint too long")


def skip_tagged_fields(buf: memoryview | bytes, pos: int) -> int:
    """Skip a tagged-field section (KIP-482): unknown tags are ignored, never an error."""
    count, pos = read_uvarint(buf, pos)
    for _ in range(count):
        _tag, pos = read_uvarint(buf, pos)
        size, pos = read_uvarint(buf, pos)
        pos += size
        if pos > len(buf):
            raise FrameError("truncated tagged field")
    return pos


def parse_request_header(frame: memoryview | bytes, flexible: bool | None = None) -> RequestHeader:
    """Parse request header v1 (or v2 when the API version is flexible).

    ``flexible`` None means: look it up from the api key and version in the frame.
    """
    if len(frame) < 10:
        raise FrameError("request header truncated")
    api_key, api_version, correlation_id, client_len = _HEADER.unpack_from(frame, 0)
    pos = 10
    client_id: str | None = None
    if client_len >= 0:
        end = pos + client_len
        if end > len(frame):
            raise FrameError("client id truncated")
        try:
            client_id = bytes(frame[pos:end]).decode("utf-8")
        except UnicodeDecodeError:
            raise FrameError("client id is not UTF-8") from None
        pos = end
    elif client_len != -1:
        raise FrameError("negative client id length")
    if flexible is None:
        flexible = is_flexible(api_key, api_version)
    if flexible:
        pos = skip_tagged_fields(frame, pos)
    return RequestHeader(api_key, api_version, correlation_id, client_id, pos)


def peek_correlation(frame: memoryview | bytes) -> tuple[int, int, int] | None:
    """(api_key, api_version, correlation_id) if the frame is long enough to hold them."""
    if len(frame) < 8:
        return None
    api_key, api_version, correlation_id = struct.unpack_from(">hhi", frame, 0)
    return api_key, api_version, correlation_id


@cache
def request_type(api_key: int, version: int) -> type | None:
    """The kio request class for (api_key, version), or None if kio does not know it."""
    try:
        return load_request_schema(api_key, version)
    except (UnknownAPIKey, UnknownEntity):
        return None


@cache
def response_type(api_key: int, version: int) -> type:
    """kio's response class, or for a version KIP-896 removed a marked subclass of the
    class handlers build it on (protocol/legacy); encode_body writes the old layout."""
    try:
        return load_response_schema(api_key, version)
    except (UnknownAPIKey, UnknownEntity):
        from pybroker.protocol.legacy import legacy_version, response_class

        if legacy_version(api_key, version) is None:
            raise
        return response_class(api_key, version)


@cache
def is_flexible(api_key: int, version: int) -> bool:
    cls = request_type(api_key, version)
    return bool(cls is not None and cls.__flexible__)


@cache
def _reader(cls: type) -> Any:
    return entity_reader(cls)


@cache
def _writer(cls: type) -> Any:
    return entity_writer(cls)


@cache
def _validator(cls: type) -> Any:
    # Imported late: validate imports FrameError from here.
    from pybroker.protocol.validate import validator

    return validator(cls)


def decode_request_body(
    api_key: int, version: int, frame: memoryview, pos: int, writable: memoryview | None = None
) -> Any:
    """Decode the body that starts at ``pos``; bytes after its end are ignored.

    ``writable``: a writable view of the same frame. Produce records are then views of it,
    so the log stamps offsets into the request's own buffer instead of a copy.

    The body is validated first: kio's native reader aborts the process on a declared
    count that does not fit in the frame (see protocol/validate.py).
    """
    cls = request_type(api_key, version)
    if cls is None:
        from pybroker.protocol.legacy import decode_request, legacy_version

        if legacy_version(api_key, version) is not None:
            # A version KIP-896 removed: a bounds-checked pure-Python reader, no kio.
            return decode_request(api_key, version, frame, pos)
        raise FrameError(f"no schema for api {api_key} v{version}")
    _validator(cls)(frame, pos)
    if api_key == 0:  # Produce: records as views of the frame, not copies (issue 14)
        fast = decode_produce(cls, version, frame if writable is None else writable, pos)
        if fast is not None:
            return fast
    try:
        body, size = _reader(cls)(frame, pos)
    except DecodeError as exc:
        raise FrameError(f"cannot decode {cls.__name__}: {exc}") from None
    except KeyError as exc:
        # kio rejects unknown tagged fields; KIP-482 says skip them. Strip and retry.
        if not cls.__flexible__:
            raise FrameError(f"cannot decode {cls.__name__}: {exc!r}") from None
        from pybroker.protocol.tagged import strip_unknown_tags

        stripped = memoryview(strip_unknown_tags(cls, frame[pos:])).toreadonly()
        _validator(cls)(stripped, 0)  # cheap, rare: kio must only see checked bytes
        try:
            body, size = _reader(cls)(stripped, 0)
        except (DecodeError, KeyError, ValueError, TypeError, OverflowError) as again:
            raise FrameError(f"cannot decode {cls.__name__}: {again!r}") from None
    except (ValueError, TypeError, OverflowError) as exc:
        raise FrameError(f"cannot decode {cls.__name__}: {exc!r}") from None
    # Trailing bytes are tolerated as Kafka does: librdkafka 2.x leaves a few unused bytes
    # after some Metadata requests, and Kafka never checks that the body filled the frame.
    return body


def encode_body(body: Any) -> bytes:
    if getattr(type(body), "__legacy__", None) is not None:
        from pybroker.protocol.legacy import encode_response

        return encode_response(body)
    buf = io.BytesIO()
    _writer(type(body))(buf, body)
    return buf.getvalue()


def response_header_flexible(api_key: int, version: int) -> bool:
    """Response header v1 for flexible versions, except ApiVersions (always v0, KIP-511)."""
    return api_key != 18 and is_flexible(api_key, version)


# ---------------------------------------------------------------------------------------
# Building kio entities from plain values, version-agnostically.


@dataclass(frozen=True, slots=True)
class _FieldSpec:
    name: str
    kafka_type: str | None
    nested: type | None  # entity class for a nested struct or an array of structs
    is_array: bool
    default: Any


@cache
def _field_specs(cls: type) -> tuple[_FieldSpec, ...]:
    hints = typing.get_type_hints(cls)
    specs = []
    for f in fields(cls):
        hint = hints[f.name]
        nested, is_array = _entity_of(hint)
        if f.default is not MISSING:
            default = f.default
        elif f.default_factory is not MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            default = MISSING
        specs.append(_FieldSpec(f.name, f.metadata.get("kafka_type"), nested, is_array, default))
    return tuple(specs)


def _entity_of(hint: Any) -> tuple[type | None, bool]:
    origin = typing.get_origin(hint)
    if origin is tuple:
        args = typing.get_args(hint)
        inner, _ = _entity_of(args[0])
        return inner, True
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        for arg in typing.get_args(hint):
            if arg is not type(None):
                return _entity_of(arg)
    if isinstance(hint, type) and hasattr(hint, "__dataclass_fields__"):
        return hint, False
    return None, False


_ZERO_BY_TYPE: dict[str, Any] = {
    "string": "",
    "bytes": b"",
    "records": None,
    "bool": False,
    "uuid": None,
    "timedelta_i32": datetime.timedelta(0),
    "timedelta_i64": datetime.timedelta(0),
    "float64": 0.0,
}


def build(cls: type, data: dict[str, Any] | None = None, /, **kwargs: Any) -> Any:
    """Construct kio entity ``cls`` from a dict, ignoring keys this version lacks.

    Nested structs and arrays of structs may be given as dicts/lists of dicts; ints are
    accepted for timedelta fields (milliseconds). Missing required fields get Kafka's
    zero value, so one handler serves every version of an API.
    """
    values = dict(data or {}, **kwargs)
    out: dict[str, Any] = {}
    for spec in _field_specs(cls):
        if spec.name in values:
            value = values[spec.name]
            if spec.nested is not None and value is not None:
                if spec.is_array:
                    value = tuple(
                        v if isinstance(v, spec.nested) else build(spec.nested, v) for v in value
                    )
                elif not isinstance(value, spec.nested):
                    value = build(spec.nested, value)
            elif spec.kafka_type in ("timedelta_i32", "timedelta_i64") and isinstance(value, int):
                value = datetime.timedelta(milliseconds=value)
            elif spec.kafka_type == "datetime_i64" and isinstance(value, int):
                value = None if value < 0 else _datetime_from_ms(value)
            elif spec.kafka_type == "error_code" and not isinstance(value, ErrorCode):
                value = ErrorCode(int(value))
            elif spec.is_array and isinstance(value, list):
                value = tuple(value)
            out[spec.name] = value
        elif spec.default is MISSING:
            if spec.is_array:
                out[spec.name] = ()
            elif spec.nested is not None:
                out[spec.name] = build(spec.nested, {})
            elif spec.kafka_type == "error_code":
                out[spec.name] = ErrorCode.none
            elif spec.kafka_type in _ZERO_BY_TYPE:
                out[spec.name] = _ZERO_BY_TYPE[spec.kafka_type]
            else:
                out[spec.name] = 0
    return cls(**out)


def _datetime_from_ms(ms: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)


def has_field(cls: type, name: str) -> bool:
    return any(s.name == name for s in _field_specs(cls))


def millis(value: datetime.timedelta | int) -> int:
    """A kio timedelta field as integer milliseconds."""
    if isinstance(value, datetime.timedelta):
        return int(round(value.total_seconds() * 1000))
    return int(value)


ZERO_UUID = uuid.UUID(int=0)
