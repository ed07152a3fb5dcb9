"""The `pybroker` command: parse config, start the broker, shut down cleanly on signals."""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import resource
import signal
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from pybroker.config.broker_config import BrokerConfig
from pybroker.config.properties import load_properties
from pybroker.config.topic_config import ConfigError
from pybroker.replication.zk_client import ZkError
from pybroker.storage.errors import InconsistentTopicIdError, LogDirLockedError

log = logging.getLogger("pybroker")


def package_version() -> str:
    try:
        return version("pybroker")
    except PackageNotFoundError:
        return "0+unknown"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="pybroker", description="A Kafka-compatible broker written in Python."
    )
    parser.add_argument("--config", "-c", help="server.properties file (Kafka's format)")
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one property (repeatable)",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    return parser.parse_args(argv)


def setup_logging() -> None:
    level = os.environ.get("PYBROKER_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        stream=sys.stderr,
        format="[%(asctime)s] %(levelname)s %(message)s (%(name)s)",
    )


def raise_fd_limit() -> None:
    """Many partitions mean many segment files and index maps: use the hard fd limit."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:
        log.warning("Could not raise the open-file limit: %s", exc)


def check_log_dir(path: Path) -> None:
    """Fail start-up early, naming the directory, if it cannot be created or written."""
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path, prefix=".pybroker-write-check"):
        pass


def load_config(args: argparse.Namespace) -> BrokerConfig:
    props: dict[str, str] = {}
    if args.config:
        props = load_properties(Path(args.config))
    overrides = {}
    for item in args.override:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(item, item, "--override takes KEY=VALUE")
        overrides[key.strip()] = value
    return BrokerConfig.from_properties(props, overrides)


async def run(config: BrokerConfig) -> int:
    from pybroker.broker.server import Broker

    broker = Broker(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, broker.request_stop)
    try:
        await broker.start()
    except ZkError as exc:
        log.error(
            "Cannot start: ZooKeeper at zookeeper.connect=%s: %s",
            config.zookeeper_connect,
            exc or type(exc).__name__,
        )
        await broker.abort_start()
        return 1
    except (LogDirLockedError, InconsistentTopicIdError, RuntimeError) as exc:
        log.error("Cannot start: %s", exc)
        await asyncio.get_running_loop().run_in_executor(None, broker.log_manager.shutdown)
        return 1
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            log.error("Cannot start: the port is already in use: %s", exc.strerror)
        else:
            log.error("Cannot start: %s", exc)
        await asyncio.get_running_loop().run_in_executor(None, broker.log_manager.shutdown)
        return 1
    await broker.serve_forever()
    await broker.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.version:
        print(f"pybroker {package_version()}")
        return 0
    setup_logging()
    try:
        config = load_config(args)
    except FileNotFoundError as exc:
        log.error("Cannot start: config file not found: %s", exc.filename)
        return 1
    except ConfigError as exc:
        log.error("Cannot start: %s", exc)
        return 1
    for notice in config.notices:
        log.info("%s", notice)
    for key in sorted(config.ignored):
        log.warning("Ignoring unknown configuration key %s", key)
    usable = 0
    for d in config.log_dirs:
        try:
            check_log_dir(Path(d))
            usable += 1
        except OSError as exc:
            # JBOD: the broker starts with the other dirs; this one is offline (LogManager).
            log.warning("Log dir %s is not writable: %s", d, exc.strerror or exc)
    if not usable:
        log.error(
            "Cannot start: None of the specified log dirs from %s can be created or validated",
            ", ".join(config.log_dirs),
        )
        return 1
    raise_fd_limit()
    loop_name = os.environ.get("PYBROKER_EVENT_LOOP", "uvloop")
    try:
        if loop_name == "uvloop":
            import uvloop

            return uvloop.run(run(config))
        return asyncio.run(run(config))
    except RuntimeError as exc:
        log.error("Cannot start: %s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
