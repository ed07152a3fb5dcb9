"""Iteration order of Java's HashMap, for answers Kafka builds by iterating one.

Kafka lists SASL mechanisms (SaslHandshake) and SCRAM users (Describe/Alter
UserScramCredentials) in the order its java.util.HashMap happens to iterate them: by
bucket (String.hashCode spread, masked by the table size), then insertion order.
"""

from __future__ import annotations

from collections.abc import Iterable


def java_string_hash(name: str) -> int:
    """String.hashCode over UTF-16 code units, then HashMap.hash's spreading."""
    data = name.encode("utf-16-be", "surrogatepass")
    h = 0
    for i in range(0, len(data), 2):
        h = (31 * h + int.from_bytes(data[i : i + 2], "big")) & 0xFFFFFFFF
    return h ^ (h >> 16)


def java_hash_order(names: Iterable[str]) -> list[str]:
    """Distinct ``names`` as a default-capacity HashMap filled in this order iterates them."""
    first: dict[str, int] = {}
    for i, n in enumerate(names):
        first.setdefault(n, i)
    capacity = 16
    while len(first) > capacity * 3 // 4:
        capacity *= 2
    return sorted(first, key=lambda n: (java_string_hash(n) & (capacity - 1), first[n]))
