"""Differential testing: the same request to pybroker and to Apache Kafka, answers compared.

A case sends one kio request (or a short sequence) over the raw protocol to both brokers
and compares the decoded responses field by field, after normalising what must differ
between two brokers: cluster and topic ids, node ids, ports, timestamps, throttle times,
and orderings Kafka leaves unspecified. Every compared response is recorded in a
scoreboard; the session writes it to ``differential-report.json`` and the suite asserts
the score and that each remaining difference is listed as accepted, with its reason.

Normalisation is by field name (the last path element), so a rule written once applies
to every API that has such a field; per-case rules can add paths. Node-id lists keep
their length only; -1 ("none") and a session id 0 stay visible; ``keep`` lets a case
compare a default-volatile field it controls. A broker that closes the connection answers
``CLOSED``, compared like any answer. ``request_for`` builds the request of any version
from one version-independent description, so a case can iterate over every version.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tests.support.wire import ConnectionClosed, KafkaWire

# Fields whose values legitimately differ between any two clusters.
VOLATILE_FIELDS = frozenset(
    {
        "throttle_time",
        "throttle_time_ms",
        "cluster_id",
        "topic_id",
        "controller_id",
        "node_id",
        "leader_id",
        "coordinator_key",
        "host",
        "port",
        "broker_id",
        "producer_id",
        "log_append_time",
        "log_append_time_ms",
        "log_start_offset_timestamp",
        "session_id",
        "member_id",
        "generation_id",
        "timestamp",
        "last_timestamp",
        "last_caught_up_timestamp",
        "member_epoch",
        "rack",
        "session_lifetime_ms",
        "epoch",
    }
)

NORMALISED = "<normalised>"
CLOSED = "<connection closed>"

# Lists whose order Kafka leaves unspecified wherever they appear (hash-ordered sets).
UNORDERED_FIELDS = frozenset({"partitions"})

# Lists of node ids (replicas, ISR, ...): their length and shape matter, their ids do not.
NODE_LIST_FIELDS = frozenset(
    {
        "replica_nodes",
        "isr_nodes",
        "offline_replicas",
        "eligible_leader_replicas",
        "last_known_elr",
        "replicas",
        "isr",
        "adding_replicas",
        "removing_replicas",
    }
)


def to_plain(value: Any) -> Any:
    """A kio entity as nested dicts, lists and scalars (enums by name), for comparing."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [to_plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, timedelta):
        return int(value.total_seconds() * 1000)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return value


def normalise(
    plain: Any,
    volatile: frozenset[str] = VOLATILE_FIELDS,
    unordered: frozenset[str] = frozenset(),
    path: str = "",
) -> Any:
    """Blank volatile fields (by name or full path) and sort lists Kafka leaves unordered.

    ``unordered`` names list fields (by name or path) whose order is unspecified; they are
    sorted by their normalised JSON text so that two orders of the same set compare equal.
    Sentinels stay visible: a volatile -1 ("none") and a session id 0 ("no session").
    """
    if isinstance(plain, dict):
        out = {}
        for key, val in plain.items():
            sub = f"{path}.{key}" if path else key
            if key in volatile or sub in volatile:
                keep = val is None or val == -1 or (key == "session_id" and val == 0)
                out[key] = val if keep else NORMALISED
            elif key in NODE_LIST_FIELDS and isinstance(val, list):
                out[key] = [NORMALISED for _ in val]
            else:
                out[key] = normalise(val, volatile, unordered, sub)
                if isinstance(val, list) and (key in unordered or sub in unordered):
                    out[key] = sorted(out[key], key=lambda v: json.dumps(v, sort_keys=True))
        return out
    if isinstance(plain, list):
        return [normalise(v, volatile, unordered, f"{path}[]") for v in plain]
    return plain


def diff(a: Any, b: Any, path: str = "") -> list[str]:
    """Human-readable differences between two normalised values (empty when equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b)):
            sub = f"{path}.{key}" if path else key
            if key not in a or key not in b:
                out.append(f"{sub}: only in {'pybroker' if key in a else 'kafka'}")
            else:
                out += diff(a[key], b[key], sub)
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [
                f"{path}: {len(a)} items (pybroker) vs {len(b)} (kafka): {a!r:.300} / {b!r:.300}"
            ]
        out = []
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            out += diff(x, y, f"{path}[{i}]")
        return out
    if a != b:
        return [f"{path}: pybroker={a!r:.200} kafka={b!r:.200}"]
    return []


@dataclass
class Outcome:
    """One compared response."""

    case: str
    api_key: int
    version: int
    differences: list[str]

    @property
    def identical(self) -> bool:
        return not self.differences


@dataclass
class Scoreboard:
    """Every comparison of the session, written out as a JSON report at the end."""

    outcomes: list[Outcome] = field(default_factory=list)

    def record(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)

    @property
    def score(self) -> tuple[int, int]:
        return sum(o.identical for o in self.outcomes), len(self.outcomes)

    def write(self, path: Path) -> None:
        same, total = self.score
        report = {
            "identical": same,
            "total": total,
            "differences": [dataclasses.asdict(o) for o in self.outcomes if not o.identical],
            "cases": [
                {
                    "case": o.case,
                    "api_key": o.api_key,
                    "version": o.version,
                    "identical": o.identical,
                }
                for o in self.outcomes
            ],
        }
        path.write_text(json.dumps(report, indent=2, sort_keys=True))


SCOREBOARD = Scoreboard()


class DifferentialPair:
    """One raw connection to each broker; ``compare`` sends a request to both."""

    def __init__(
        self,
        pybroker_port: int,
        kafka_port: int,
        client_id: str = "differential",
        source: str | None = None,
    ) -> None:
        self.ports = {"ours": pybroker_port, "kafka": kafka_port}
        self.source = source  # local address to connect from (ACL tests: another host)
        self.ours = KafkaWire(port=pybroker_port, client_id=client_id, source=source)
        self.kafka = KafkaWire(port=kafka_port, client_id=client_id, source=source)

    def close(self) -> None:
        self.ours.close()
        self.kafka.close()

    def __enter__(self) -> DifferentialPair:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def both(self, request: Any) -> tuple[Any, Any]:
        """The decoded response bodies (pybroker's, Kafka's) to one request.

        A broker that closes the connection instead of answering yields ``CLOSED`` (and
        a fresh connection for the next request), so closing is compared like an answer.
        """
        return self.ask("ours", request), self.ask("kafka", request)

    def ask(self, side: str, request: Any) -> Any:
        """One side's answer to ``request``, or ``CLOSED`` (then reconnects that side)."""
        conn: KafkaWire = getattr(self, side)
        try:
            return conn.request(request)
        except ConnectionClosed:
            conn.close()
            setattr(
                self,
                side,
                KafkaWire(port=self.ports[side], client_id=conn.client_id, source=self.source),
            )
            return CLOSED

    def compare(
        self,
        case: str,
        request: Any,
        *,
        volatile: Iterable[str] = (),
        unordered: Iterable[str] = (),
        transform: Callable[[Any], Any] | None = None,
        keep: Iterable[str] = (),
    ) -> Outcome:
        """Send ``request`` to both brokers, compare, record; returns the outcome."""
        ours, kafka = self.both(request)
        return record_comparison(
            case,
            request,
            ours,
            kafka,
            volatile=volatile,
            unordered=unordered,
            transform=transform,
            keep=keep,
        )


def record_comparison(
    case: str,
    request: Any,
    ours: Any,
    kafka: Any,
    *,
    volatile: Iterable[str] = (),
    unordered: Iterable[str] = (),
    transform: Callable[[Any], Any] | None = None,
    keep: Iterable[str] = (),
) -> Outcome:
    """Compare two decoded responses to ``request`` and record the outcome.

    ``keep`` names default-volatile fields this case controls (e.g. record timestamps it
    set itself), so they are compared after all.
    """
    vol = (VOLATILE_FIELDS | frozenset(volatile)) - frozenset(keep)
    uno = UNORDERED_FIELDS | frozenset(unordered)
    a = normalise(to_plain(ours), vol, uno)
    b = normalise(to_plain(kafka), vol, uno)
    if transform is not None:
        # Sort again: the transform may have changed what unordered lists sort by.
        a = normalise(transform(a), frozenset(), uno)
        b = normalise(transform(b), frozenset(), uno)
    outcome = Outcome(
        case, int(type(request).__api_key__), int(type(request).__version__), diff(a, b)
    )
    SCOREBOARD.record(outcome)
    return outcome


# -- building requests of any version from one description ------------------------------


def _zero(tp: Any) -> Any:
    """The neutral value of a kio field type: None when nullable, else empty/zero."""
    args = typing.get_args(tp)
    if type(None) in args:
        return None
    if typing.get_origin(tp) is tuple:
        return ()
    if isinstance(tp, type):
        if issubclass(tp, bool):
            return False
        if issubclass(tp, timedelta):
            return timedelta(0)
        if issubclass(tp, enum.Enum):
            return next(iter(tp))
        if issubclass(tp, int):
            return tp(0)
        if issubclass(tp, str):
            return ""
        if issubclass(tp, bytes):
            return b""
        if tp is uuid.UUID:
            return uuid.UUID(int=0)
    raise TypeError(f"no neutral value for {tp!r}")


def _coerce(tp: Any, value: Any) -> Any:
    """``value`` shaped for field type ``tp``: dicts become entities, ms ints timedeltas."""
    if value is None:
        return None
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1:
        return _coerce(args[0], value)
    if typing.get_origin(tp) is tuple:
        inner = typing.get_args(tp)[0]
        return tuple(_coerce(inner, v) for v in value)
    if isinstance(tp, type):
        if dataclasses.is_dataclass(tp) and isinstance(value, dict):
            return build(tp, **value)
        if issubclass(tp, timedelta) and isinstance(value, int):
            return timedelta(milliseconds=value)
        if issubclass(tp, enum.Enum) and not isinstance(value, tp):
            return tp(value)
    return value


def build(cls: type, **fields: Any) -> Any:
    """A kio entity of any version from a version-independent description.

    Fields this version lacks are dropped; fields it has but the description omits get
    their kio default or a neutral value; nested dicts and lists of dicts become the
    version's nested entities. One description thus yields the request of every version.
    """
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.name in fields:
            kwargs[f.name] = _coerce(hints[f.name], fields[f.name])
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            kwargs[f.name] = _zero(hints[f.name])
    return cls(**kwargs)


def request_for(api_key: int, version: int, **fields: Any) -> Any:
    """The request entity of ``api_key`` at ``version``, built as :func:`build` does."""
    from kio.index import load_request_schema

    return build(load_request_schema(api_key, version), **fields)


def record_behaviour(case: str, api_key: int, version: int, ours: Any, kafka: Any) -> Outcome:
    """Record a comparison of observed behaviour (e.g. "closed") rather than of a body."""
    outcome = Outcome(case, api_key, version, diff(to_plain(ours), to_plain(kafka)))
    SCOREBOARD.record(outcome)
    return outcome
