"""A bounded reader of OTLP metrics (KIP-714 PushTelemetry payloads).

Clients push ``MetricsData`` (the same wire layout as OTLP's ExportMetricsServiceRequest):
resource metrics -> scope metrics -> metrics -> data points. This module reads only what
the broker shows (metric name, value, data-point and resource attributes) with a small
hand-written protobuf decoder instead of a generated one: no dependency, and every
length, count and nesting level is checked, because the payload comes from any client.
Sans-IO. A malformed payload raises :class:`OtlpError` (the broker answers INVALID_RECORD,
as Kafka does when its telemetry receiver cannot parse a push).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

__all__ = ["MAX_POINTS", "OtlpError", "MetricPoint", "Telemetry", "parse_metrics_data"]

MAX_DEPTH = 12  # message nesting, AnyValue arrays and kv-lists included
# Data points decoded from one push: librdkafka sends ~50, the Java client a few hundred.
# Beyond it the rest is skipped by length (decoding is pure Python on the event loop:
# about 25 us per point, so a hostile 1 MiB push costs tens of ms, not a second).
MAX_POINTS = 2_000
MAX_ATTRIBUTES = 64  # attributes kept per data point / resource
MAX_TEXT = 1024  # characters kept of a name or an attribute value

_DOUBLE = struct.Struct("<d")
_I64 = struct.Struct("<q")
_U64 = struct.Struct("<Q")

# Metric fields holding data points, and the kind shown for each.
_KINDS = {5: "gauge", 7: "sum", 9: "histogram", 10: "exponential_histogram", 11: "summary"}


class OtlpError(ValueError):
    """The payload is not a well-formed OTLP MetricsData message."""


@dataclass(slots=True)
class MetricPoint:
    name: str
    kind: str  # gauge, sum, histogram, exponential_histogram, summary
    value: float  # gauge/sum: the value; histograms and summaries: the sum (else count)
    time_unix_nano: int = 0
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Telemetry:
    resource: dict[str, str] = field(default_factory=dict)
    points: list[MetricPoint] = field(default_factory=list)
    truncated: bool = False  # more than MAX_POINTS data points were sent


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise OtlpError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result & 0xFFFFFFFFFFFFFFFF, pos
        shift += 7
        if shift >= 70:
            raise OtlpError("varint longer than 10 bytes")


def _fields(buf: memoryview, pos: int, end: int):  # type: ignore[no-untyped-def]
    """Yield (field number, wire type, value or (start, end) of a length-delimited field)."""
    while pos < end:
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise OtlpError("field number 0")
        if wire == 0:
            value, pos = _varint(buf, pos, end)
            yield number, wire, value
        elif wire == 1:
            if pos + 8 > end:
                raise OtlpError("truncated 64-bit field")
            yield number, wire, bytes(buf[pos : pos + 8])
            pos += 8
        elif wire == 2:
            size, pos = _varint(buf, pos, end)
            if size > end - pos:
                raise OtlpError(f"field {number} length {size} exceeds its message")
            yield number, wire, (pos, pos + size)
            pos += size
        elif wire == 5:
            if pos + 4 > end:
                raise OtlpError("truncated 32-bit field")
            yield number, wire, bytes(buf[pos : pos + 4])
            pos += 4
        else:
            raise OtlpError(f"unsupported wire type {wire} (field {number})")
    if pos != end:
        raise OtlpError("field overruns its message")


def _span(wire: int, value: object, what: str) -> tuple[int, int]:
    if wire != 2:
        raise OtlpError(f"{what}: expected a length-delimited field, got wire type {wire}")
    return value  # type: ignore[return-value]


def _text(buf: memoryview, span: tuple[int, int]) -> str:
    try:
        text = str(buf[span[0] : span[1]], "utf-8")
    except UnicodeDecodeError:
        raise OtlpError("string field is not UTF-8") from None
    return text[:MAX_TEXT]


def _fixed(wire: int, value: object, what: str) -> bytes:
    if wire != 1:
        raise OtlpError(f"{what}: expected a 64-bit field, got wire type {wire}")
    return value  # type: ignore[return-value]


def _any_value(buf: memoryview, span: tuple[int, int], depth: int) -> str:
    """AnyValue rendered as text (arrays and kv-lists as their parts joined)."""
    if depth > MAX_DEPTH:
        raise OtlpError("attribute values nested too deeply")
    out = ""
    for number, wire, value in _fields(buf, *span):
        if number == 1:
            out = _text(buf, _span(wire, value, "string_value"))
        elif number == 2 and wire == 0:
            out = "true" if value else "false"
        elif number == 3 and wire == 0:
            out = str(value - (1 << 64) if value >= 1 << 63 else value)  # type: ignore[operator]
        elif number == 4:
            out = repr(_DOUBLE.unpack(_fixed(wire, value, "double_value"))[0])
        elif number == 5:  # ArrayValue: repeated AnyValue values = 1
            parts = [
                _any_value(buf, _span(w, v, "array value"), depth + 1)
                for n, w, v in _fields(buf, *_span(wire, value, "array_value"))
                if n == 1
            ]
            out = ",".join(parts)[:MAX_TEXT]
        elif number == 6:  # KeyValueList: repeated KeyValue values = 1
            kv: dict[str, str] = {}
            for n, w, v in _fields(buf, *_span(wire, value, "kvlist_value")):
                if n == 1:
                    _key_value(buf, _span(w, v, "kvlist entry"), kv, depth + 1)
            out = ",".join(f"{k}={v}" for k, v in kv.items())[:MAX_TEXT]
        elif number == 7:
            start, end = _span(wire, value, "bytes_value")
            out = bytes(buf[start:end]).hex()[:MAX_TEXT]
    return out


def _key_value(buf: memoryview, span: tuple[int, int], into: dict[str, str], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise OtlpError("attributes nested too deeply")
    key, text = "", ""
    for number, wire, value in _fields(buf, *span):
        if number == 1:
            key = _text(buf, _span(wire, value, "attribute key"))
        elif number == 2:
            text = _any_value(buf, _span(wire, value, "attribute value"), depth + 1)
    if len(into) < MAX_ATTRIBUTES or key in into:
        into[key] = text


def _data_point(
    buf: memoryview, span: tuple[int, int], name: str, kind: str, out: Telemetry
) -> None:
    attrs: dict[str, str] = {}
    value: float | None = None
    count = 0
    when = 0
    # Attributes are field 7 of NumberDataPoint, 9 of HistogramDataPoint, 1 of
    # ExponentialHistogramDataPoint and 7 of SummaryDataPoint.
    attr_field = {"histogram": 9, "exponential_histogram": 1}.get(kind, 7)
    for number, wire, raw in _fields(buf, *span):
        if number == attr_field:
            _key_value(buf, _span(wire, raw, "data point attribute"), attrs, 5)
        elif number == 3:
            when = _U64.unpack(_fixed(wire, raw, "time_unix_nano"))[0]
        elif kind in ("gauge", "sum"):
            if number == 4:
                value = _DOUBLE.unpack(_fixed(wire, raw, "as_double"))[0]
            elif number == 6:
                value = float(_I64.unpack(_fixed(wire, raw, "as_int"))[0])
        elif number == 4:
            count = _U64.unpack(_fixed(wire, raw, "count"))[0]
        elif number == 5:
            value = _DOUBLE.unpack(_fixed(wire, raw, "sum"))[0]
    if len(out.points) >= MAX_POINTS:
        out.truncated = True
        return
    out.points.append(
        MetricPoint(name, kind, float(count) if value is None else value, when, attrs)
    )


def _metric(buf: memoryview, span: tuple[int, int], out: Telemetry) -> None:
    if len(out.points) >= MAX_POINTS:
        out.truncated = True
        return
    name = ""
    bodies: list[tuple[str, tuple[int, int]]] = []
    for number, wire, value in _fields(buf, *span):
        if number == 1:
            name = _text(buf, _span(wire, value, "metric name"))
        elif number in _KINDS:
            bodies.append((_KINDS[number], _span(wire, value, "metric data")))
    for kind, body in bodies:
        for number, wire, value in _fields(buf, *body):
            if number == 1:
                _data_point(buf, _span(wire, value, "data point"), name, kind, out)


def parse_metrics_data(payload: bytes | bytearray | memoryview) -> Telemetry:
    """Decode a MetricsData / ExportMetricsServiceRequest payload (raises OtlpError)."""
    buf = memoryview(payload).cast("B") if not isinstance(payload, memoryview) else payload
    out = Telemetry()
    for number, wire, value in _fields(buf, 0, len(buf)):
        if number != 1:
            continue
        for n2, w2, v2 in _fields(buf, *_span(wire, value, "resource_metrics")):
            if n2 == 1:  # Resource: attributes = 1
                for n3, w3, v3 in _fields(buf, *_span(w2, v2, "resource")):
                    if n3 == 1:
                        _key_value(buf, _span(w3, v3, "resource attribute"), out.resource, 3)
            elif n2 == 2:  # ScopeMetrics: metrics = 2
                for n3, w3, v3 in _fields(buf, *_span(w2, v2, "scope_metrics")):
                    if n3 == 2:
                        _metric(buf, _span(w3, v3, "metric"), out)
    return out


# ------------------------------------------------------------------ encoding (tests, tools)


def _enc_varint(value: int) -> bytes:
    value &= 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _len_field(number: int, body: bytes) -> bytes:
    return _enc_varint(number << 3 | 2) + _enc_varint(len(body)) + body


def _kv(key: str, value: str) -> bytes:
    return _len_field(1, key.encode()) + _len_field(2, _len_field(1, value.encode()))


def encode_gauges(
    resource: dict[str, str],
    gauges: list[tuple[str, float, dict[str, str]]],
    *,
    kind: str = "gauge",
) -> bytes:
    """A MetricsData message with one gauge (or sum) per entry: what a client pushes."""
    metrics = b""
    for name, value, attrs in gauges:
        point = b"".join(_len_field(7, _kv(k, v)) for k, v in attrs.items())
        point += _enc_varint(3 << 3 | 1) + _U64.pack(1)
        point += _enc_varint(4 << 3 | 1) + _DOUBLE.pack(value)
        data = _len_field(1, point)
        metrics += _len_field(
            2, _len_field(1, name.encode()) + _len_field(5 if kind == "gauge" else 7, data)
        )
    res = _len_field(1, b"".join(_len_field(1, _kv(k, v)) for k, v in resource.items()))
    return _len_field(1, res + _len_field(2, metrics))
