"""Shared fixtures: a real broker process per test module, and a fresh one per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.broker import BrokerProcess
from tests.support.kafka_ref import KafkaReference


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """A broker shared by the tests of one module (they must use distinct topics)."""
    proc = BrokerProcess(tmp_path_factory.mktemp("broker") / "data").start()
    try:
        yield proc
    finally:
        if proc.proc is not None:
            proc.stop()


@pytest.fixture
def fresh_broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    """A broker of its own, for tests that restart or kill it."""
    proc = BrokerProcess(tmp_path / "data")
    try:
        yield proc
    finally:
        proc.kill()


from tests.support.zk_fixtures import zookeeper_fixture  # noqa: E402, F401  (the `zookeeper` fixture)


@pytest.fixture(scope="session")
def kafka_reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaReference]:
    """Apache Kafka 4.1 (one KRaft node), shared by the whole session: the oracle."""
    ref = KafkaReference(tmp_path_factory.mktemp("kafka-ref") / "data").start()
    try:
        yield ref
    finally:
        ref.stop()


@pytest.fixture(scope="session")
def differential_brokers(
    tmp_path_factory: pytest.TempPathFactory, kafka_reference: KafkaReference
) -> Iterator[tuple[BrokerProcess, KafkaReference]]:
    """pybroker set up as the reference Kafka is, for differential tests (session-wide)."""
    ours = BrokerProcess(
        tmp_path_factory.mktemp("differential") / "data",
        config=Path(__file__).parent / "differential" / "pybroker.properties",
        overrides={
            "num.partitions": "1",
            "offsets.topic.num.partitions": "50",
            "group.initial.rebalance.delay.ms": "0",
        },
    ).start()
    try:
        yield ours, kafka_reference
    finally:
        ours.stop()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write the differential scoreboard (if any case ran) beside the suite's root."""
    from tests.support.differential import SCOREBOARD

    if SCOREBOARD.outcomes:
        SCOREBOARD.write(Path(session.config.rootpath) / "differential-report.json")
