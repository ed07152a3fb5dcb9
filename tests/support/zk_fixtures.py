"""Pytest fixtures for tests that need a real ZooKeeper.

Register them for the whole suite by adding to tests/conftest.py::

    from tests.support.zk_fixtures import zookeeper_fixture  # noqa: F401

or import it into a single test module the same way; tests ask for ``zookeeper``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.zookeeper import ZooKeeperProcess, zookeeper_available


@pytest.fixture(name="zookeeper")
def zookeeper_fixture(tmp_path: Path) -> Iterator[ZooKeeperProcess]:
    """A fresh standalone ZooKeeper for one test (its own port and data dir)."""
    if not zookeeper_available():
        # A test that cannot run is a defect, never a skip: `make test` installs it.
        pytest.fail("ZooKeeper is not installed (Debian package `zookeeper`; `make test` adds it)")
    zk = ZooKeeperProcess(tmp_path / "zookeeper").start()
    try:
        yield zk
    finally:
        zk.kill()
