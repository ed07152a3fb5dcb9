"""Differential testing: the same request to pybroker and to Apache Kafka, answers compared.

A case sends one kio request (or a short sequence) over the raw protocol to both brokers
and compares the decoded responses field by field, after normalising what must differ
between two brokers: cluster and topic ids, node ids, ports, timestamps, throttle times,
and orderings Kafka leaves unspecified. Every compared response is recorded in a
scoreboard; the session writes it to ``differential-report.json`` and the suite asserts
the score and that each remaining difference is listed as accepted, with its reason.

Normalisation is by field name (the last path element), so a rule written once applies
to every API that has such a field; per-case rules can add paths.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tests.support.wire import KafkaWire

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
    """
    if isinstance(plain, dict):
        out = {}
        for key, val in plain.items():
            sub = f"{path}.{key}" if path else key
            if key in volatile or sub in volatile:
                out[key] = NORMALISED if val is not None else None
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
        self, pybroker_port: int, kafka_port: int, client_id: str = "differential"
    ) -> None:
        self.ours = KafkaWire(port=pybroker_port, client_id=client_id)
        self.kafka = KafkaWire(port=kafka_port, client_id=client_id)

    def close(self) -> None:
        self.ours.close()
        self.kafka.close()

    def __enter__(self) -> DifferentialPair:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def both(self, request: Any) -> tuple[Any, Any]:
        """The decoded response bodies (pybroker's, Kafka's) to one request."""
        return self.ours.request(request), self.kafka.request(request)

    def compare(
        self,
        case: str,
        request: Any,
        *,
        volatile: Iterable[str] = (),
        unordered: Iterable[str] = (),
        transform: Callable[[Any], Any] | None = None,
    ) -> Outcome:
        """Send ``request`` to both brokers, compare, record; returns the outcome."""
        ours, kafka = self.both(request)
        return record_comparison(
            case, request, ours, kafka, volatile=volatile, unordered=unordered, transform=transform
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
) -> Outcome:
    """Compare two decoded responses to ``request`` and record the outcome."""
    vol = VOLATILE_FIELDS | frozenset(volatile)
    uno = frozenset(unordered)
    a = normalise(to_plain(ours), vol, uno)
    b = normalise(to_plain(kafka), vol, uno)
    if transform is not None:
        a, b = transform(a), transform(b)
    outcome = Outcome(
        case, int(type(request).__api_key__), int(type(request).__version__), diff(a, b)
    )
    SCOREBOARD.record(outcome)
    return outcome
