"""A tiny schema language for the non-flexible request/response formats KIP-896 removed.

kio (built from Kafka 4's JSON schemas) has no classes for them, so each legacy version is
described here as a tuple of ``(name, type)`` fields; a type is a primitive name or a
nested tuple of fields (an array of structs). ``read`` is pure Python and checks every
length against the bytes that remain, so hostile input raises FrameError and never
reaches native code (the job protocol/validate.py does for kio-decoded versions).
"""

from __future__ import annotations

import datetime
import struct
from typing import Any

from pybroker.protocol.codec import FrameError

# A field type: a primitive name, ("array", primitive) or a struct (tuple of fields).
FieldType = str | tuple[Any, ...]
Schema = tuple[tuple[str, FieldType], ...]

_FIXED: dict[str, struct.Struct] = {
    "int8": struct.Struct(">b"),
    "int16": struct.Struct(">h"),
    "int32": struct.Struct(">i"),
    "int64": struct.Struct(">q"),
    "bool": struct.Struct(">?"),
}
_I16 = _FIXED["int16"]
_I32 = _FIXED["int32"]


def array(item: FieldType) -> tuple[str, FieldType]:
    """An int32-counted array of ``item`` (a primitive name or a struct)."""
    return ("array", item)


def nullable_array(item: FieldType) -> tuple[str, FieldType]:
    """An int32-counted array where -1 means null."""
    return ("nullable_array", item)


def _is_array(t: FieldType) -> bool:
    return isinstance(t, tuple) and len(t) == 2 and t[0] in ("array", "nullable_array")


def _as_int(value: Any) -> int:
    """kio keeps some ints as timedelta/datetime (None = -1): the wire wants ms."""
    if value is None:
        return -1
    if isinstance(value, datetime.timedelta):
        return int(round(value.total_seconds() * 1000))
    if isinstance(value, datetime.datetime):
        return int(round(value.timestamp() * 1000))
    return int(value)


class Reader:
    """Bounds-checked reads from a frame; every failure is a FrameError."""

    __slots__ = ("buf", "pos", "end")

    def __init__(self, buf: memoryview | bytes, pos: int = 0) -> None:
        self.buf = buf
        self.pos = pos
        self.end = len(buf)

    def fixed(self, name: str) -> Any:
        st = _FIXED[name]
        if self.pos + st.size > self.end:
            raise FrameError(f"{name} runs past the end of the frame")
        (value,) = st.unpack_from(self.buf, self.pos)
        self.pos += st.size
        return value

    def _sized(self, size: int, what: str, nullable: bool) -> bytes | None:
        if size < 0:
            if size == -1 and nullable:
                return None
            raise FrameError(f"{what} has length {size}")
        if self.pos + size > self.end:
            raise FrameError(f"{what} of {size} bytes runs past the end of the frame")
        out = bytes(self.buf[self.pos : self.pos + size])
        self.pos += size
        return out

    def string(self, nullable: bool) -> str | None:
        raw = self._sized(self.fixed("int16"), "string", nullable)
        if raw is None:
            return None
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise FrameError("string is not UTF-8") from None

    def bytes_(self, nullable: bool) -> bytes | None:
        return self._sized(self.fixed("int32"), "bytes", nullable)

    def count(self, min_item: int, nullable: bool = False) -> int:
        n = self.fixed("int32")
        if n == -1 and nullable:
            return -1
        if n < 0:
            raise FrameError(f"array count {n}")
        if n * min_item > self.end - self.pos:
            raise FrameError(f"array of {n} entries cannot fit in the frame")
        return n


def _min_size(t: FieldType) -> int:
    if isinstance(t, str):
        if t in _FIXED:
            return _FIXED[t].size
        return 2 if "string" in t else 4
    if _is_array(t):
        return 4
    return sum(_min_size(ft) for _, ft in t)


def read_value(r: Reader, t: FieldType) -> Any:
    if isinstance(t, str):
        if t in _FIXED:
            return r.fixed(t)
        if t == "string":
            return r.string(False)
        if t == "nullable_string":
            return r.string(True)
        if t == "bytes":
            return r.bytes_(False)
        if t in ("nullable_bytes", "records"):
            return r.bytes_(True)
        raise AssertionError(f"unknown legacy type {t}")
    if _is_array(t):
        item = t[1]
        n = r.count(max(_min_size(item), 1), t[0] == "nullable_array")
        return None if n < 0 else [read_value(r, item) for _ in range(n)]
    return read_struct(r, t)


def read_struct(r: Reader, schema: Schema) -> dict[str, Any]:
    return {name: read_value(r, t) for name, t in schema}


def read(schema: Schema, frame: memoryview | bytes, pos: int) -> dict[str, Any]:
    """Decode a body at ``pos``; trailing bytes are ignored, as Kafka ignores them."""
    return read_struct(Reader(frame, pos), schema)


def _get(obj: Any, name: str) -> Any:
    return obj[name] if isinstance(obj, dict) else getattr(obj, name)


def write_value(out: bytearray, t: FieldType, value: Any) -> None:
    if isinstance(t, str):
        if t in _FIXED:
            out += _FIXED[t].pack(_as_int(value) if t != "bool" else bool(value))
        elif t in ("string", "nullable_string"):
            if value is None:
                out += _I16.pack(-1)
            else:
                raw = str(value).encode()
                out += _I16.pack(len(raw)) + raw
        elif t in ("bytes", "nullable_bytes", "records"):
            if value is None:
                out += _I32.pack(-1)
            else:
                out += _I32.pack(len(value)) + bytes(value)
        else:
            raise AssertionError(f"unknown legacy type {t}")
    elif _is_array(t):
        if value is None and t[0] == "nullable_array":
            out += _I32.pack(-1)
            return
        items = list(value or ())
        out += _I32.pack(len(items))
        for item in items:
            write_value(out, t[1], item)
    else:
        write_struct(out, t, value)


def write_struct(out: bytearray, schema: Schema, value: Any) -> None:
    for name, t in schema:
        write_value(out, t, _get(value, name))


def write(schema: Schema, value: Any) -> bytes:
    out = bytearray()
    write_struct(out, schema, value)
    return bytes(out)
