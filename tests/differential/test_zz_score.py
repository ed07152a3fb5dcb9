"""The differential score over the session: identical / compared, and coverage.

Runs after the other differential modules (file order) and reads the scoreboard they
filled. The target is >= 98% identical over every advertised API key and version; every
version pybroker advertises (that kio can build) must have been compared at least once,
except the group APIs, which test_groups*.py cover.
"""

from __future__ import annotations

from tests.differential.helpers import kio_has
from tests.support.broker import BrokerProcess
from tests.support.differential import SCOREBOARD
from tests.support.kafka_ref import KafkaReference
from tests.support.wire import KafkaWire

GROUP_APIS = frozenset({8, 9, 11, 12, 13, 14, 15, 16, 42, 47, 68, 69})
TARGET = 0.98


def test_score_and_coverage(
    differential_brokers: tuple[BrokerProcess, KafkaReference],
) -> None:
    ours, _ = differential_brokers
    with KafkaWire(port=ours.port) as conn:
        advertised = conn.api_versions()
    wanted = {
        (key, v)
        for key, (lo, hi) in advertised.items()
        if key not in GROUP_APIS
        for v in range(lo, hi + 1)
        if kio_has(key, v)
    }
    compared = {(o.api_key, o.version) for o in SCOREBOARD.outcomes}
    same, total = SCOREBOARD.score
    print(f"\ndifferential score: {same}/{total} identical ({same / max(total, 1):.2%})")
    missing = sorted(wanted - compared)
    assert not missing, f"advertised (key, version) never compared: {missing}"
    assert same / total >= TARGET, f"{same}/{total} identical, below {TARGET:.0%}"
