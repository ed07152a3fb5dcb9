"""Valid request frames for every API key and version the broker advertises, with slots.

Building and encoding a kio request costs tens of microseconds; mutating bytes costs a
few. So the fuzzer builds a few valid frames per (api key, version) once, walks them for
their structure, and every case afterwards is a byte-level mutation of one of them.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass

from kio.static.primitive import i16, i32

from pybroker.broker.handlers.registry import ApiSpec
from pybroker.protocol.codec import request_type
from tests.fuzz.batches import BatchPool
from tests.fuzz.values import TOPIC_ID_PLACEHOLDERS, ValueContext, build_entity
from tests.fuzz.walk import Kind, Slot, walk_body, walk_header
from tests.support.wire import encode

__all__ = ["Template", "build_templates", "bind_topic_ids"]


@dataclass(frozen=True, slots=True)
class Template:
    api_key: int
    api_version: int
    flexible: bool
    payload: bytes  # header + body, without the size prefix
    body_start: int
    slots: tuple[Slot, ...]
    records: tuple[Slot, ...]  # the RECORDS slots (Produce)
    tags: tuple[Slot, ...]
    lengths: tuple[Slot, ...]
    fixed: tuple[Slot, ...]
    elems: tuple[Slot, ...]
    strings: tuple[Slot, ...]


def _template(api_key: int, version: int, ctx: ValueContext, correlation_id: int) -> Template:
    cls = request_type(api_key, version)
    assert cls is not None, (api_key, version)
    header_cls = cls.__header_schema__
    client_id = ctx.rng.choice(("fuzz", "fuzz", None, "", "rdkafka", "x" * 60))
    header = encode(
        header_cls(
            request_api_key=i16(api_key),
            request_api_version=i16(version),
            correlation_id=i32(correlation_id),
            client_id=client_id,
        )
    )
    body = encode(build_entity(cls, ctx))
    payload = header + body
    flexible = header_cls.__module__.split(".")[-2] == "v2"
    hend, hslots = walk_header(payload, flexible)
    if hend != len(header):
        raise AssertionError(f"header walk of {api_key} v{version}: {hend} != {len(header)}")
    bend, bslots = walk_body(cls, payload, hend)
    if bend != len(payload):
        raise AssertionError(f"body walk of {api_key} v{version}: {bend} != {len(payload)}")
    slots = tuple(hslots + bslots)
    return Template(
        api_key=api_key,
        api_version=version,
        flexible=flexible,
        payload=payload,
        body_start=hend,
        slots=slots,
        records=tuple(s for s in slots if s.kind == Kind.RECORDS),
        tags=tuple(s for s in slots if s.kind == Kind.TAGS),
        lengths=tuple(s for s in slots if s.kind in Kind.LENGTHS),
        fixed=tuple(s for s in slots if s.kind == Kind.FIXED),
        elems=tuple(s for s in slots if s.kind == Kind.ELEMS),
        strings=tuple(s for s in slots if s.kind in (Kind.STR, Kind.BYTES)),
    )


def build_templates(
    apis: list[ApiSpec],
    rng: random.Random,
    pool: BatchPool,
    topics: tuple[str, ...],
    groups: tuple[str, ...],
    txn_ids: tuple[str, ...],
    per_version: int = 6,
) -> list[Template]:
    """``per_version`` valid frames for every advertised (api key, version)."""
    ctx = ValueContext(rng, topics, groups, txn_ids, records=pool.valid + (None,) * 2)  # type: ignore[arg-type]
    out = []
    cid = 1
    for spec in apis:
        for version in range(spec.min_version, spec.max_version + 1):
            for _ in range(per_version):
                out.append(_template(spec.api_key, version, ctx, cid))
                cid += 1
    return out


def bind_topic_ids(templates: list[Template], ids: list[uuid.UUID]) -> list[Template]:
    """Swap the placeholder topic ids for the broker's real ones (same length: slots hold)."""
    out = []
    for t in templates:
        payload = t.payload
        for placeholder, real in zip(TOPIC_ID_PLACEHOLDERS, ids, strict=False):
            payload = payload.replace(placeholder.bytes, real.bytes)
        out.append(_replace_payload(t, payload))
    return out


def _replace_payload(t: Template, payload: bytes) -> Template:
    return Template(
        t.api_key,
        t.api_version,
        t.flexible,
        payload,
        t.body_start,
        t.slots,
        t.records,
        t.tags,
        t.lengths,
        t.fixed,
        t.elems,
        t.strings,
    )
