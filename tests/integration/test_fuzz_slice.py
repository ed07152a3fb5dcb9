"""A bounded slice of the fuzzer (tests/fuzz) in the suite, so a robustness regression fails CI.

Each seed runs a few thousand structure-aware malformed requests against a fresh broker
process (every advertised API key and version, mutated lengths, counts, nulls, tags,
record batches, bombs, pipelined and partial frames) while a confluent-kafka producer and
consumer run alongside. ``make fuzz`` runs the long version of the same thing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz.runner import Options, run

SEEDS = (1, 2)
CASES = 2000


@pytest.mark.timeout(180)
@pytest.mark.parametrize("seed", SEEDS)
def test_fuzz_slice(seed: int, tmp_path: Path) -> None:
    summary = run(
        Options(
            cases=CASES,
            seed=seed,
            findings_dir=tmp_path / "findings",
            isolate=False,
            quiet=True,
        )
    )
    report = summary.report()
    assert summary.cases >= CASES * 0.95, report
    assert summary.deaths == 0, report
    assert summary.tracebacks == 0, report
    assert summary.handler_errors == 0, report
    assert summary.wire_failures == 0, report
    assert summary.steady_failures == 0, report
    assert summary.rss_growth_mib < 64 and not summary.rss_over_limit, report
