"""Turn a valid template into one fuzz case: a size-prefixed frame, usually broken.

Each operator aims at one structural slot found by walk.py: lengths and counts (null,
huge, off by one, the ``ff ff ff ff 7f`` varint, overlong varints), fixed-width integers,
tagged-field sections (unknown, huge, out-of-order tags), arrays (duplicated or dropped
entries), records fields (broken batches, bombs), the header's api key and version,
truncation, byte flips and the frame size itself. One case is one frame; write units
(several frames per write, partial frames) are assembled by the runner.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable

from tests.fuzz.batches import BatchPool
from tests.fuzz.templates import Template
from tests.fuzz.walk import Kind, Slot

__all__ = ["Mutator", "uvarint"]

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_SIZE = struct.Struct(">i")

HUGE_VARINTS = (
    b"\xff\xff\xff\xff\x7f",  # 2^35 - 1: kio's native reader allocates before checking
    b"\xff\xff\xff\xff\x0f",  # 2^32 - 1
    b"\x80\x80\x80\x80\x08",  # 2^31
    b"\xff\xff\xff\xff\x07",  # 2^31 - 1
    b"\xff\xff\xff\x7f",  # 2^28 - 1
    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # 10-byte varint (too long)
    b"\x80\x80\x80\x80\x80\x00",  # overlong zero
    b"\x80",  # continuation bit, then whatever follows
)
_UNKNOWN_API_KEYS = (4, 5, 6, 7, 17, 23, 29, 50, 67, 74, 99, 1000, -1, -32768, 32767)


def uvarint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _odd_length(rng: random.Random, slot: Slot) -> bytes:
    """A new encoding for a length/count slot: null, empty, huge, off by one, random."""
    kind, value = slot.kind, slot.value
    if kind in Kind.VARINTS:
        r = rng.random()
        if r < 0.35:
            return rng.choice(HUGE_VARINTS)
        choices = (0, 1, value + 1, max(value - 1, 0), value + 2, 2**21, rng.randrange(1 << 14))
        return uvarint(rng.choice(choices))
    if kind == Kind.LEN16:
        v = rng.choice((-1, -2, 0, 32767, -32768, value + 1, value - 1, rng.randrange(-5, 300)))
        return _I16.pack(max(-32768, min(32767, v)))
    v = rng.choice(
        (-1, -2, 0, 2**31 - 1, -(2**31), 2**30, value + 1, value - 1, rng.randrange(1 << 20))
    )
    return _I32.pack(max(-(2**31), min(2**31 - 1, v)))


def _null_length(slot: Slot) -> bytes:
    if slot.kind in Kind.VARINTS:
        return b"\x00"
    return b"\xff\xff" if slot.kind == Kind.LEN16 else b"\xff\xff\xff\xff"


def _odd_fixed(rng: random.Random, width: int) -> bytes:
    if width == 16:
        return rng.choice((bytes(16), b"\xff" * 16, rng.randbytes(16)))
    bits = width * 8
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    v = rng.choice((0, -1, 1, lo, hi, lo + 1, hi - 1, 2, -2, rng.randint(lo, hi)))
    return v.to_bytes(width, "big", signed=True)


# An operator picks its target in the template and returns (position, apply); the
# runner applies several in descending position order so earlier offsets stay valid.
Apply = Callable[[bytearray], None]
Op = Callable[[random.Random, Template], tuple[int, Apply] | None]


def _splice(start: int, end: int | None, new: bytes) -> Apply:
    def apply(buf: bytearray) -> None:
        buf[start:end] = new

    return apply


def op_length(rng: random.Random, t: Template) -> tuple[int, Apply] | None:
    if not t.lengths:
        return None
    s = t.lengths[rng.randrange(len(t.lengths))]
    return s.start, _splice(s.start, s.end, _odd_length(rng, s))


def op_null(rng: random.Random, t: Template) -> tuple[int, Apply] | None:
    cands = [s for s in t.lengths if s.kind not in (Kind.TAGS, Kind.TAGSIZE)]
    marks = [s for s in t.slots if s.kind == Kind.NULLMARK]
    if not cands and not marks:
        return None
    pick = rng.randrange(len(cands) + len(marks))
    if pick < len(cands):
        s = cands[pick]
        return s.start, _splice(s.start, s.end, _null_length(s))
    s = marks[pick - len(cands)]
    return s.start, _splice(s.start, s.end, bytes([rng.choice((0xFF, 0x00, 0x02, 0x80))]))


def op_fixed(rng: random.Random, t: Template) -> tuple[int, Apply] | None:
    if not t.fixed:
        return None
    s = t.fixed[rng.randrange(len(t.fixed))]
    return s.start, _splice(s.start, s.end, _odd_fixed(rng, s.end - s.start))


def op_tags(rng: random.Random, t: Template) -> tuple[int, Apply] | None:
    """Unknown tags (KIP-482 says skip them), huge sizes, huge counts, out of order."""
    if not t.tags:
        return None
    s = t.tags[rng.randrange(len(t.tags))]
    r = rng.random()
    if r < 0.2:
        return s.start, _splice(s.start, s.end, rng.choice(HUGE_VARINTS))
    n = rng.randrange(1, 4)
    entries = b""
    for _ in range(n):
        tag = rng.choice((0, 1, 2, 3, 7, 100, 10000, 2**31 - 1, 2**32 + 5))
        if rng.random() < 0.3:
            entries += uvarint(tag) + rng.choice(HUGE_VARINTS)
        else:
            data = rng.randbytes(rng.choice((0, 1, 4, 16, 300)))
            entries += uvarint(tag) + uvarint(len(data)) + data
    return s.start, _splice(s.start, s.end, uvarint(s.value + n) + entries)


def op_elems(rng: random.Random, t: Template) -> tuple[int, Apply] | None:
    """Duplicate an array entry (once or many times) or drop one and keep the count."""
    if not t.elems:
        return None
    s = t.elems[rng.randrange(len(t.elems))]
    spans = s.extra
    count_end = spans[0][0]
    n = len(spans)
    a, b = spans[rng.randrange(n)]
    payload = t.payload
    if rng.random() < 0.25:  # drop the last entry, keep the count
        return s.start, _splice(spans[-1][0], s.end, b"")
    copies = rng.choice((1, 1, 2, 50, 1000))
    new_n = n + copies
    count = uvarint(new_n + 1) if s.value == Kind.UCNT else _I32.pack(new_n)
    body = payload[count_end : s.end] + payload[a:b] * copies
    return s.start, _splice(s.start, s.end, count + body)


def op_strings(rng: random.Random, t: Template) -> tuple[int, Apply] | None:
    if not t.strings:
        return None
    s = t.strings[rng.randrange(len(t.strings))]
    bad = rng.choice((b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x00"))
    pos = rng.randrange(s.start, s.end)
    return pos, _splice(pos, min(pos + len(bad), s.end), bad)


def _records_value(slot: Slot, data: bytes | None) -> bytes:
    if slot.value:  # compact
        return b"\x00" if data is None else uvarint(len(data) + 1) + data
    return b"\xff\xff\xff\xff" if data is None else _I32.pack(len(data)) + data


def op_api(rng: random.Random, t: Template, keys: tuple[int, ...]) -> tuple[int, Apply] | None:
    if rng.random() < 0.5:
        key = rng.choice(_UNKNOWN_API_KEYS + keys)
        return 0, _splice(0, 2, _I16.pack(key))
    version = rng.choice((-1, t.api_version + 1, t.api_version - 1, 0, 100, 32767, -32768))
    return 2, _splice(2, 4, _I16.pack(max(-32768, min(32767, version))))


def op_truncate(rng: random.Random, t: Template) -> tuple[int, Apply] | None:
    if rng.random() < 0.5 and t.slots:
        s = t.slots[rng.randrange(len(t.slots))]
        cut = rng.choice((s.start, s.end - 1, s.end))
    else:
        cut = rng.randrange(len(t.payload))
    return cut, _splice(cut, None, b"")


def op_flip(rng: random.Random, t: Template) -> tuple[int, Apply] | None:
    pos = rng.randrange(len(t.payload))

    def apply(buf: bytearray) -> None:
        for _ in range(rng.randrange(1, 5)):
            p = min(len(buf) - 1, pos + rng.randrange(0, 8))
            if p >= 0:
                buf[p] ^= 1 << rng.randrange(8)

    return pos, apply


def op_insert(rng: random.Random, t: Template) -> tuple[int, Apply] | None:
    pos = rng.randrange(len(t.payload) + 1)
    return pos, _splice(pos, pos, rng.randbytes(rng.randrange(1, 9)))


class Mutator:
    """Makes cases from templates; all randomness comes from the ``rng`` passed in."""

    def __init__(
        self, templates: list[Template], batches: BatchPool, max_request: int = 104857600
    ) -> None:
        self.templates = templates
        self.produce = [t for t in templates if t.records]
        self.batches = batches
        self.max_request = max_request
        self.keys = tuple(sorted({t.api_key for t in templates}))
        api: Op = lambda rng, t: op_api(rng, t, self.keys)  # noqa: E731
        records: Op = self.op_records
        # (weight, operator): weights add up to 100 with "valid" (no operator) at 12.
        self.ops: list[tuple[int, Op]] = [
            (22, op_length),
            (9, op_null),
            (10, op_fixed),
            (8, op_tags),
            (5, op_elems),
            (4, op_strings),
            (8, records),
            (5, api),
            (7, op_truncate),
            (7, op_flip),
            (3, op_insert),
        ]
        self.soft: set[Op] = {op_fixed, op_elems, records}
        self.valid_weight = 12
        self._cum: list[int] = []
        total = self.valid_weight
        for w, _ in self.ops:
            total += w
            self._cum.append(total)
        self._total = total

    def op_records(self, rng: random.Random, t: Template) -> tuple[int, Apply] | None:
        if not t.records:
            return None
        s = t.records[rng.randrange(len(t.records))]
        r = rng.random()
        if r < 0.15:
            data: bytes | None = self.batches.pick_valid(rng)  # another valid batch/codec
        elif r < 0.2:
            data = None
        else:
            data = self.batches.broken(rng)
        return s.start, _splice(s.start, s.end, _records_value(s, data))

    def _pick_op(self, rng: random.Random) -> Op | None:
        x = rng.randrange(self._total)
        if x < self.valid_weight:
            return None
        for cum, (_w, op) in zip(self._cum, self.ops, strict=True):
            if x < cum:
                return op
        return None

    def template(self, rng: random.Random) -> Template:
        if self.produce and rng.random() < 0.12:  # Produce carries the records: more of it
            return self.produce[rng.randrange(len(self.produce))]
        return self.templates[rng.randrange(len(self.templates))]

    def case(self, rng: random.Random) -> tuple[bytes, bool]:
        """One frame (size prefix included), and whether it is likely to end the connection.

        "Soft" mutations (values, array entries, record batches) leave a frame the broker
        should answer with an error code; "hard" ones (lengths, nulls, truncation, keys,
        flips) are likely to make it close the connection, so the runner writes them last
        on a connection: anything written behind them would never be read.
        """
        t = self.template(rng)
        n_ops = 1 if rng.random() < 0.8 else rng.randrange(2, 4)
        edits = []
        hard = False
        for _ in range(n_ops):
            op = self._pick_op(rng)
            if op is None:
                continue
            edit = op(rng, t)
            if edit is None:
                edit = op_length(rng, t) or op_flip(rng, t)
                op = op_length
            if edit is not None:
                edits.append(edit)
                hard = hard or op not in self.soft
        buf = bytearray(t.payload)
        # Apply back to front; for equal positions keep the order they were drawn in.
        for _pos, apply in sorted(edits, key=lambda e: e[0], reverse=True):
            apply(buf)
        size, odd_size = self.frame_size(rng, len(buf))
        return size + buf, hard or odd_size

    def frame_size(self, rng: random.Random, n: int) -> tuple[bytes, bool]:
        if rng.random() >= 0.03:
            return _SIZE.pack(n), False
        size = rng.choice(
            (
                n + 1,
                n + 7,
                n - 1,
                max(n - 9, 0),
                0,
                -1,
                -(2**31),
                2**31 - 1,
                self.max_request + 1,
                self.max_request,
                50 * 1024 * 1024,
            )
        )
        return _SIZE.pack(size), True
