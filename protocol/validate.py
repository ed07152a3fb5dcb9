"""Check a request body's declared lengths and counts before kio decodes it.

kio's native reader (0.6.5) sizes a Vec by a declared array count before checking that
the bytes exist, so a tiny frame with a huge count aborts the whole process (Rust OOM, no
exception): any compact count up to 2**35 - 1, and int32 counts of non-flexible versions
wherever 2**31 pointers do not fit the address space. (Its string and bytes readers check
first.) This walks the body by its kio schema before kio sees it and raises
``FrameError`` naming the field path when a count or length cannot fit in the bytes that
remain, a length is negative, or a field this version does not declare nullable is null:
Kafka's generated readers throw for all of these and the broker closes the connection.

The walk runs on every request, so each request class is compiled once into one
generated Python function with every nested entity inlined: fixed-size fields fold into
one offset, arrays of fixed-size entries are skipped in O(1), and arrays of flexible
entries that are fixed-size apart from an empty tagged-field section are checked with one
strided compare. tests/bench/bench_decode.py measures it against kio's decode.

``layout`` (the schema introspection) is shared with ``tagged.py``. The versions KIP-896
removed have no kio class: protocol/legacy/wire.py reads them in pure Python with the same
checks, so no legacy body reaches native code.
"""

from __future__ import annotations

import struct
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, fields, is_dataclass
from functools import cache
from itertools import count

from pybroker.protocol.codec import FrameError

FIXED_SIZES = {
    "bool": 1,
    "int8": 1,
    "int16": 2,
    "uint16": 2,
    "error_code": 2,
    "int32": 4,
    "timedelta_i32": 4,
    "int64": 8,
    "timedelta_i64": 8,
    "datetime_i64": 8,
    "float64": 8,
    "uuid": 16,
}
LENGTH_PREFIXED = {"string", "bytes", "records"}

Walker = Callable[[memoryview, int, int], int]


# -- layout: what kio's dataclasses say about the wire format ---------------------------


@dataclass(frozen=True, slots=True)
class FieldLayout:
    name: str
    kafka_type: str | None  # None for a struct or an array of structs
    entity: type | None  # the struct class, for a struct or an array of structs
    is_array: bool
    nullable: bool  # the field itself (string, bytes, array, struct) may be null
    tag: int | None  # set for a tagged field (flexible versions)


@dataclass(frozen=True, slots=True)
class EntityLayout:
    flexible: bool
    positional: tuple[FieldLayout, ...]
    tagged: dict[int, FieldLayout]


@cache
def layout(cls: type) -> EntityLayout:
    """Fields of one kio entity class, in wire order, with their tags and nullability.

    kio generates one class per version, so ``X | None`` in a hint means nullable in
    this version (Kafka's nullableVersions).
    """
    hints = typing.get_type_hints(cls)
    positional: list[FieldLayout] = []
    tagged: dict[int, FieldLayout] = {}
    for f in fields(cls):
        hint, nullable = _strip_none(hints[f.name])
        is_array = typing.get_origin(hint) is tuple
        if is_array:
            hint, _ = _strip_none(typing.get_args(hint)[0])  # kio reads entries as non-null
        entity = hint if isinstance(hint, type) and is_dataclass(hint) else None
        tag = f.metadata.get("tag")
        fl = FieldLayout(
            f.name,
            f.metadata.get("kafka_type"),
            entity,
            is_array,
            nullable,
            None if tag is None else int(tag),
        )
        if fl.tag is None:
            positional.append(fl)
        else:
            tagged[fl.tag] = fl
    return EntityLayout(bool(getattr(cls, "__flexible__", False)), tuple(positional), tagged)


def _strip_none(hint: typing.Any) -> tuple[typing.Any, bool]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) < len(typing.get_args(hint)):
            return args[0], True
    return hint, False


@cache
def entity_fixed_size(cls: type) -> int | None:
    """Encoded size if every encoding of ``cls`` has the same size (non-flexible only)."""
    lay = layout(cls)
    if lay.flexible:
        return None
    return _positional_fixed_size(lay)


@cache
def _flexible_fixed_size(cls: type) -> int | None:
    """Size before the tagged-field section when a flexible entity's fields are fixed."""
    lay = layout(cls)
    return _positional_fixed_size(lay) if lay.flexible else None


def _positional_fixed_size(lay: EntityLayout) -> int | None:
    total = 0
    for f in lay.positional:
        size = field_fixed_size(f)
        if size is None:
            return None
        total += size
    return total


def field_fixed_size(f: FieldLayout) -> int | None:
    if f.is_array:
        return None
    if f.entity is not None:
        return None if f.nullable else entity_fixed_size(f.entity)
    return FIXED_SIZES.get(f.kafka_type or "")


@cache
def entity_min_size(cls: type) -> int:
    """Fewest bytes any encoding of ``cls`` takes: bounds an array's entry count."""
    lay = layout(cls)
    return sum(_field_min_size(f, lay.flexible) for f in lay.positional) + lay.flexible


def _field_min_size(f: FieldLayout, flexible: bool) -> int:
    fixed = field_fixed_size(f)
    if fixed is not None:
        return fixed
    if f.is_array:
        return 1 if flexible else 4
    if f.entity is not None:
        return 1 if f.nullable else entity_min_size(f.entity)
    if flexible:
        return 1
    return 2 if f.kafka_type == "string" else 4


def _entry_min_size(f: FieldLayout, flexible: bool) -> int:
    if f.entity is not None:
        size = entity_min_size(f.entity)
    else:
        size = FIXED_SIZES.get(f.kafka_type or "") or (1 if flexible else 2)
        if not flexible and f.kafka_type in ("bytes", "records"):
            size = 4
    return max(size, 1)  # an array of empty entries still costs kio a pointer each


# -- runtime helpers used by the generated walkers -------------------------------------


class _Bad(Exception):
    """A malformed field; ``parts`` collects the path innermost-first on the way out."""

    __slots__ = ("parts", "reason")

    def __init__(self, reason: str, field: str) -> None:
        self.reason = reason
        self.parts = [field]

    def at(self, prefix: str) -> _Bad:
        self.parts.append(prefix)
        return self

    def path(self) -> str:
        return ".".join(reversed(self.parts))


def _uvar(buf: memoryview, pos: int, end: int, name: str) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise _Bad("truncated varint", name)
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 28:
            raise _Bad("varint too long", name)


def _length(n: int, left: int, name: str) -> _Bad:
    return _Bad(f"length {n} exceeds the {max(left, 0)} bytes left", name)


def _count(n: int, min_size: int, left: int, name: str) -> _Bad:
    return _Bad(
        f"count {n} needs at least {n * min_size} bytes, {max(left, 0)} left",
        name,
    )


def _negative(n: int, name: str) -> _Bad:
    if n == -1:
        return _Bad("non-nullable field was serialized as null", name)
    return _Bad(f"negative length {n}", name)


def _tags(buf: memoryview, pos: int, end: int, known: dict[int, Walker]) -> int:
    """A tagged-field section: unknown tags are skipped (KIP-482), known ones walked."""
    n, pos = _uvar(buf, pos, end, "tagged fields")
    if n * 2 > end - pos:
        raise _count(n, 2, end - pos, "tagged fields")
    for _ in range(n):
        tag, pos = _uvar(buf, pos, end, "tagged fields")
        size, pos = _uvar(buf, pos, end, f"tag {tag}")
        stop = pos + size
        if stop > end:
            raise _length(size, end - pos, f"tag {tag}")
        walk = known.get(tag)
        if walk is not None:
            # kio reads a known tag by its schema and ignores the size: they must agree.
            got = walk(buf, pos, stop)
            if got != stop:
                raise _Bad(f"size {size} but the value takes {got - pos} bytes", f"tag {tag}")
        pos = stop
    return pos


_HELPERS: dict[str, typing.Any] = {
    "_Bad": _Bad,
    "_uvar": _uvar,
    "_length": _length,
    "_count": _count,
    "_negative": _negative,
    "_tags": _tags,
    "_i16": struct.Struct(">h").unpack_from,
    "_i32": struct.Struct(">i").unpack_from,
    "TRUNC": "truncated",
    "NULL": "non-nullable field was serialized as null",
}


# -- code generation -------------------------------------------------------------------
#
# One function per request class, with every nested entity inlined (a call costs about as
# much as ten of the statements it would run). Loop variables carry the nesting depth
# (n0, i0, n1, ...); a malformed field raises _Bad, and each enclosing array entry or
# struct adds its name to the path on the way out (try/except costs nothing until then).

_ids = count()


class _Source:
    """Lines of one generated function plus the globals it refers to."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.ns: dict[str, typing.Any] = dict(_HELPERS)

    def __call__(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)

    def ref(self, value: typing.Any) -> str:
        name = f"_g{next(_ids)}"
        self.ns[name] = value
        return name

    def build(self, fn_name: str, label: str) -> typing.Any:
        src = "\n".join(self.lines)
        exec(compile(src, f"<validate {label}>", "exec"), self.ns)  # noqa: S102 - our own source
        return self.ns[fn_name]


@cache
def validator(cls: type) -> Callable[[memoryview, int], int]:
    """``check(buf, pos) -> end`` for the body of request class ``cls`` at ``buf[pos:]``.

    Raises ``FrameError`` naming the field path when kio must not see this body.
    """
    g = _Source()
    g.ns["FrameError"] = FrameError
    g(0, "def check(buf, pos):")
    g(1, "end = len(buf)")
    g(1, "try:")
    _emit_entity(g, 2, cls, 0)
    g(1, "except _Bad as e:")
    g(2, "raise FrameError(f'{e.path()}: {e.reason}') from None")
    g(1, "return pos")
    return typing.cast(Callable[[memoryview, int], int], g.build("check", cls.__name__))


def validate_body(cls: type, buf: memoryview, pos: int) -> int:
    """Check the body of request class ``cls`` at ``buf[pos:]``; return where it ends."""
    return validator(cls)(buf, pos)


@cache
def _tag_walker(cls: type, tag: int) -> Walker:
    """``walk(buf, pos, end) -> pos`` over the value of one known tagged field."""
    f = layout(cls).tagged[tag]
    g = _Source()
    g(0, "def walk(buf, pos, end):")
    size = field_fixed_size(f)
    if size is not None:
        g(1, f"pos += {size}")
        g(1, f"if pos > end: raise _Bad(TRUNC, {f.name!r})")
    else:
        _emit_field(g, 1, f, True, 0)
    g(1, "return pos")
    return typing.cast(Walker, g.build("walk", f"{cls.__name__} tag {tag}"))


def _emit_entity(g: _Source, ind: int, cls: type, d: int) -> None:
    """Code that advances ``pos`` over one ``cls`` entity."""
    lay = layout(cls)
    off = 0
    last = "(start)"
    for f in lay.positional:
        size = field_fixed_size(f)
        if size is not None:  # fold fixed-size fields into one offset
            off += size
            last = f.name
            continue
        if off:
            g(ind, f"pos += {off}")
            off = 0
        _emit_field(g, ind, f, lay.flexible, d)
        last = f.name
    if off:
        g(ind, f"pos += {off}")
    # Variable-size fields check their own bounds; only trailing fixed fields need this.
    if lay.flexible:
        g(ind, f"if pos >= end: raise _Bad(TRUNC, {last!r} if pos > end else 'tagged fields')")
        g(ind, "if buf[pos]:")
        known = {tag: _tag_walker(cls, tag) for tag in lay.tagged}
        g(ind + 1, f"pos = _tags(buf, pos, end, {g.ref(known)})")
        g(ind, "else:")
        g(ind + 1, "pos += 1")
    elif off:
        g(ind, f"if pos > end: raise _Bad(TRUNC, {last!r})")
    if not lay.positional and not lay.flexible:
        g(ind, "pass")


def _emit_field(g: _Source, ind: int, f: FieldLayout, flexible: bool, d: int) -> None:
    """Code that advances ``pos`` over one variable-size field."""
    name = repr(f.name)
    if f.is_array:
        _emit_array(g, ind, f, flexible, name, d)
    elif f.entity is not None:
        _emit_struct(g, ind, f, name, d)
    else:
        _emit_length_prefixed(g, ind, f.kafka_type, flexible, f.nullable, name, f"n{d}")


def _emit_length_prefixed(
    g: _Source,
    ind: int,
    kafka_type: str | None,
    compact: bool,
    nullable: bool,
    name: str,
    n: str,
) -> None:
    if kafka_type not in LENGTH_PREFIXED:
        raise TypeError(f"cannot walk kafka_type {kafka_type!r} ({name})")
    if compact:
        _emit_uvarint(g, ind, name, n)
        if nullable:
            g(ind, f"if {n}:")
            ind += 1
        else:
            g(ind, f"if not {n}: raise _Bad(NULL, {name})")
        g(ind, f"pos += {n} - 1")
        g(ind, f"if pos > end: raise _length({n} - 1, end - pos + {n} - 1, {name})")
        return
    width = 2 if kafka_type == "string" else 4
    g(ind, f"if pos + {width} > end: raise _Bad(TRUNC, {name})")
    g(ind, f"{n} = _i{width * 8}(buf, pos)[0]")
    g(ind, f"pos += {width}")
    g(ind, f"if {n} >= 0:")
    g(ind + 1, f"pos += {n}")
    g(ind + 1, f"if pos > end: raise _length({n}, end - pos + {n}, {name})")
    g(ind, (f"elif {n} != -1: " if nullable else "else: ") + f"raise _negative({n}, {name})")


def _emit_uvarint(g: _Source, ind: int, name: str, n: str) -> None:
    g(ind, f"if pos >= end: raise _Bad(TRUNC, {name})")
    g(ind, f"{n} = buf[pos]")
    g(ind, f"if {n} < 128: pos += 1")
    g(ind, f"else: {n}, pos = _uvar(buf, pos, end, {name})")


def _emit_struct(g: _Source, ind: int, f: FieldLayout, name: str, d: int) -> None:
    assert f.entity is not None
    if f.nullable:  # an int8 marker: -1 null, otherwise present
        g(ind, f"if pos >= end: raise _Bad(TRUNC, {name})")
        g(ind, f"n{d} = buf[pos]")
        g(ind, "pos += 1")
        g(ind, f"if 127 < n{d} < 255: raise _Bad('invalid null marker', {name})")
        g(ind, f"if n{d} < 128:")
        ind += 1
    g(ind, "try:")
    _emit_entity(g, ind + 1, f.entity, d + 1)
    g(ind, "except _Bad as e:")
    g(ind + 1, f"raise e.at({name}) from None")


def _emit_array(g: _Source, ind: int, f: FieldLayout, flexible: bool, name: str, d: int) -> None:
    n, i = f"n{d}", f"i{d}"
    if flexible:
        _emit_uvarint(g, ind, name, n)
        if f.nullable:
            g(ind, f"if {n}:")
            ind += 1
        else:
            g(ind, f"if not {n}: raise _Bad(NULL, {name})")
        g(ind, f"{n} -= 1")
    else:
        g(ind, f"if pos + 4 > end: raise _Bad(TRUNC, {name})")
        g(ind, f"{n} = _i32(buf, pos)[0]")
        g(ind, "pos += 4")
        if f.nullable:
            g(ind, f"if {n} < -1: raise _negative({n}, {name})")
            g(ind, f"if {n} >= 0:")
            ind += 1
        else:
            g(ind, f"if {n} < 0: raise _negative({n}, {name})")
    entry = _entry_min_size(f, flexible)
    g(ind, f"if {n} * {entry} > end - pos: raise _count({n}, {entry}, end - pos, {name})")
    if f.entity is not None:
        fixed = entity_fixed_size(f.entity)
    else:
        fixed = FIXED_SIZES.get(f.kafka_type or "")
    if fixed is not None:  # skip them all at once
        g(ind, f"pos += {n} * {fixed}")
        return
    item = f"f'{f.name}[{{{i}}}]'"  # field names are identifiers: safe in a literal
    if f.entity is None:  # strings or bytes: entries are never null
        g(ind, f"for {i} in range({n}):")
        _emit_length_prefixed(g, ind + 1, f.kafka_type, flexible, False, item, f"n{d + 1}")
        return
    flex_fixed = _flexible_fixed_size(f.entity)
    if flex_fixed is not None:
        # Entries are fixed-size but for their tagged-field section: when every section is
        # empty (one zero byte), skip them all at once.
        stride = flex_fixed + 1
        g(ind, f"if {n} and buf[pos + {flex_fixed}:pos + {n} * {stride}:{stride}] == bytes({n}):")
        g(ind + 1, f"pos += {n} * {stride}")
        g(ind, f"elif {n}:")
        ind += 1
    g(ind, f"{i} = 0")
    g(ind, "try:")
    g(ind + 1, f"for {i} in range({n}):")
    _emit_entity(g, ind + 2, f.entity, d + 1)
    g(ind, "except _Bad as e:")
    g(ind + 1, f"raise e.at({item}) from None")
