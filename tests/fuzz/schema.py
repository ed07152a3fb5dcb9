"""Read kio's generated request classes as field layouts the fuzzer can fill and walk.

kio describes every request as frozen dataclasses whose fields carry a ``kafka_type``
(and a ``tag`` for tagged fields). The fuzzer needs the same picture twice: once to build
plausible values (values.py) and once to find, in the bytes kio's writers produced, where
every length, count, tag section and records field sits (walk.py), so that mutations hit
the structure instead of random offsets.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from functools import cache

__all__ = ["FieldSpec", "FIXED_WIDTH", "layout"]

#: Byte widths of kio's fixed-size kafka types.
FIXED_WIDTH: dict[str, int] = {
    "bool": 1,
    "int8": 1,
    "uint8": 1,
    "int16": 2,
    "uint16": 2,
    "error_code": 2,
    "int32": 4,
    "uint32": 4,
    "timedelta_i32": 4,
    "int64": 8,
    "uint64": 8,
    "timedelta_i64": 8,
    "datetime_i64": 8,
    "float64": 8,
    "uuid": 16,
}


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of a kio entity, flattened to what encoding and generation depend on."""

    name: str
    kafka_type: str | None  # None for nested entities
    pytype: type | None  # the element's Python type (TopicName, i32, ...), or the entity
    nested: type | None  # nested entity class, element class for arrays of entities
    is_array: bool
    optional: bool  # nullable (the array itself for arrays)
    tag: int | None
    has_default: bool


def _strip_optional(hint: typing.Any) -> tuple[typing.Any, bool]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(hint))
    return hint, False


@cache
def layout(cls: type) -> tuple[FieldSpec, ...]:
    """Fields of ``cls`` in wire order (tagged fields included, marked by ``tag``)."""
    hints = typing.get_type_hints(cls)
    specs = []
    for f in dataclasses.fields(cls):
        hint, optional = _strip_optional(hints[f.name])
        is_array = typing.get_origin(hint) is tuple
        inner = typing.get_args(hint)[0] if is_array else hint
        inner, inner_optional = _strip_optional(inner)
        nested = inner if dataclasses.is_dataclass(inner) else None
        tag = f.metadata.get("tag")
        has_default = (
            f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        )
        specs.append(
            FieldSpec(
                name=f.name,
                kafka_type=f.metadata.get("kafka_type"),
                pytype=inner,
                nested=nested,
                is_array=is_array,
                optional=optional or inner_optional and not is_array,
                tag=None if tag is None else int(tag),
                has_default=has_default,
            )
        )
    return tuple(specs)
