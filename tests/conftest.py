"""Shared fixtures: a real broker process per test module, and a fresh one per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.broker import BrokerProcess


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
