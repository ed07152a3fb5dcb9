"""The `pybroker` command: start-up errors name their cause, signals shut down cleanly."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.broker import DEFAULT_CONFIG, BrokerProcess, free_port


def run_cli(*args: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pybroker.broker.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def base_args(data: Path, port: int) -> list[str]:
    return [
        "--config",
        str(DEFAULT_CONFIG),
        "--override",
        f"listeners=PLAINTEXT://127.0.0.1:{port}",
        "--override",
        f"log.dirs={data}",
        "--override",
        f"pybroker.http.listener=http://127.0.0.1:{free_port()}",
    ]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if " ERROR " in line]


def test_version() -> None:
    out = run_cli("--version")
    assert out.returncode == 0
    assert out.stdout.startswith("pybroker ")
    assert out.stdout.split()[1][0].isdigit()


def test_invalid_value_names_the_key(tmp_path: Path) -> None:
    out = run_cli(*base_args(tmp_path / "d", free_port()), "--override", "num.partitions=abc")
    assert out.returncode == 1
    errors = error_lines(out.stderr)
    assert len(errors) == 1
    assert "num.partitions" in errors[0] and "abc" in errors[0]


def test_unreachable_zookeeper_fails_start_up_with_one_line(tmp_path: Path) -> None:
    out = run_cli(
        *base_args(tmp_path / "d", free_port()),
        "--override",
        f"zookeeper.connect=127.0.0.1:{free_port()}",
        "--override",
        "zookeeper.connection.timeout.ms=1500",
    )
    assert out.returncode == 1
    errors = error_lines(out.stderr)
    assert len(errors) == 1, errors
    assert "zookeeper.connect=127.0.0.1:" in errors[0]


def test_missing_config_file(tmp_path: Path) -> None:
    out = run_cli("--config", str(tmp_path / "nope.properties"))
    assert out.returncode == 1
    assert "nope.properties" in error_lines(out.stderr)[0]


def test_unwritable_log_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    out = run_cli(*base_args(blocker / "logs", free_port()))
    assert out.returncode == 1
    errors = error_lines(out.stderr)
    assert len(errors) == 1
    assert str(blocker / "logs") in errors[0]


def test_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        out = run_cli(*base_args(tmp_path / "d", port))
    assert out.returncode == 1
    errors = error_lines(out.stderr)
    assert len(errors) == 1
    assert str(port) in errors[0] and "in use" in errors[0]


def test_port_in_use_names_the_listener(tmp_path: Path) -> None:
    """With several listeners, the error names the one whose port is taken."""
    free = free_port()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        out = run_cli(
            *base_args(tmp_path / "d", free),
            "--override",
            f"listeners=PLAINTEXT://127.0.0.1:{free},EXTERNAL://127.0.0.1:{taken}",
            "--override",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,EXTERNAL:PLAINTEXT",
        )
    assert out.returncode == 1
    errors = error_lines(out.stderr)
    assert len(errors) == 1
    assert f"EXTERNAL://127.0.0.1:{taken}" in errors[0] and "in use" in errors[0]
    # The first listener's socket was closed again: its port is free.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", free))


def test_second_broker_on_same_log_dir_is_refused(tmp_path: Path) -> None:
    first = BrokerProcess(tmp_path / "d").start()
    subprocess.run(
        ["kcat", "-b", first.bootstrap, "-P", "-t", "locked-topic"],
        input=b"one\n",
        check=True,
        timeout=20,
    )
    first.restart()  # clean stop writes checkpoints that name the partition
    checkpoints = {
        p.name: p.read_bytes() for p in (tmp_path / "d").iterdir() if "checkpoint" in p.name
    }
    assert b"locked-topic 0" in checkpoints["recovery-point-offset-checkpoint"]
    try:
        out = run_cli(*base_args(tmp_path / "d", free_port()))
        assert out.returncode == 1
        assert "lock" in " ".join(error_lines(out.stderr)).lower()
        # The refused process must not have touched the running broker's files.
        for name, data in checkpoints.items():
            assert (tmp_path / "d" / name).read_bytes() == data, name
        assert not (tmp_path / "d" / ".kafka_cleanshutdown").exists()
    finally:
        first.stop()


def test_unknown_key_is_logged_and_ignored(tmp_path: Path) -> None:
    proc = BrokerProcess(tmp_path / "d", overrides={"no.such.setting": "1"}).start()
    assert proc.stop() == 0
    log = proc.log_path.read_text()
    assert "no.such.setting" in log
    assert "Ignoring unknown configuration key" in log


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_shuts_down_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    proc = BrokerProcess(tmp_path / "d").start()
    assert proc.proc is not None
    proc.proc.send_signal(sig)
    assert proc.proc.wait(20) == 0
    proc.proc = None
    assert (tmp_path / "d" / ".kafka_cleanshutdown").exists()
    assert "Shutdown complete" in proc.log_path.read_text()
