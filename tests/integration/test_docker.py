"""docker/: the compose file is valid, matches `make cluster`, and the image's parts work.

No Docker engine runs on our machines, so this checks what can be checked without one:
Debian's ``docker-compose config`` validates and resolves the file; every broker's
effective settings (docker/cluster.properties plus its command line) are compared with
config/cluster/broker-N.properties, the same cluster as local processes; the files the
Dockerfile copies build the package; and the HEALTHCHECK probe tells a serving broker
from a closed port and from a peer that does not speak Kafka.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
import zipfile
from pathlib import Path
from typing import Any

import yaml

from pybroker.config.broker_config import BrokerConfig
from pybroker.config.properties import load_properties
from tests.support.broker import ROOT, BrokerProcess, free_port

DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "docker-compose.yml"
LOCAL_CLUSTER = ROOT / "config" / "cluster"
# Settings that differ by design between containers and local processes: where to listen
# and be reached, where the data lives, ZooKeeper's address (its chroot must agree).
PLACEMENT = {
    "listeners",
    "advertised.listeners",
    "listener.security.protocol.map",
    "inter.broker.listener.name",
    "log.dirs",
    "zookeeper.connect",
    "pybroker.http.listener",
}


def compose_config() -> dict[str, Any]:
    done = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def broker_settings(service: dict[str, Any]) -> dict[str, str]:
    """docker/cluster.properties overlaid by the service's --override arguments."""
    args = service["command"]
    assert args[0] == "--config=/etc/pybroker/cluster.properties"
    settings = dict(load_properties(DOCKER / "cluster.properties"))
    for arg in args[1:]:
        assert arg.startswith("--override="), arg
        key, _, value = arg.removeprefix("--override=").partition("=")
        settings[key] = value
    return settings


def test_compose_file_is_valid_and_has_the_cluster() -> None:
    config = compose_config()
    services = config["services"]
    assert set(services) == {"zookeeper", "broker-1", "broker-2", "broker-3"}
    assert services["zookeeper"]["image"].startswith("zookeeper:")
    for n in (1, 2, 3):
        svc = services[f"broker-{n}"]
        assert svc["build"]["dockerfile"] == "docker/Dockerfile"
        assert Path(svc["build"]["context"]).resolve() == ROOT
        assert [(p["published"], p["target"]) for p in svc["ports"]] == [
            (9091 + n, 9091 + n),  # EXTERNAL
            (9643 + n, 9644),  # the HTTP endpoint, on the port make cluster gives it
        ]
        targets = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"]}
        assert targets["/var/lib/pybroker"] == f"broker-{n}-data"  # a named volume
        assert f"broker-{n}-data" in config["volumes"]
        assert svc["environment"]["PYBROKER_HEALTH_PORT"] == "19092"


def test_each_broker_is_configured_as_make_cluster_configures_it() -> None:
    services = compose_config()["services"]
    for n in (1, 2, 3):
        mine = broker_settings(services[f"broker-{n}"])
        local = dict(load_properties(LOCAL_CLUSTER / f"broker-{n}.properties"))
        docker_cfg = BrokerConfig.from_properties(mine, hostname="container")
        local_cfg = BrokerConfig.from_properties(local, hostname="localhost")
        differing = {
            key
            for key in set(docker_cfg.values) | set(local_cfg.values)
            if docker_cfg.values.get(key) != local_cfg.values.get(key) and key not in PLACEMENT
        }
        assert not differing, {k: (mine.get(k), local.get(k)) for k in differing}
        # Same chroot; brokers replicate over the compose network; clients on the host
        # reach each broker on the port `make cluster` uses for it.
        assert (
            mine["zookeeper.connect"].split("/", 1)[1]
            == local["zookeeper.connect"].split("/", 1)[1]
        )
        by_name = {e.name: e for e in docker_cfg.advertised_listeners}
        assert docker_cfg.inter_broker_listener_name == "INTERNAL"
        assert (by_name["INTERNAL"].host, by_name["INTERNAL"].port) == (f"broker-{n}", 19092)
        assert (by_name["EXTERNAL"].host, by_name["EXTERNAL"].port) == (
            "localhost",
            local_cfg.listeners[0].port,
        )


def test_dockerfile_runs_unprivileged_with_a_kafka_healthcheck() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]
    assert any(line.startswith("USER pybroker") for line in lines)
    assert any(line.startswith("HEALTHCHECK") for line in lines)
    assert "pybroker.broker.healthcheck" in text
    assert any(line.startswith('ENTRYPOINT ["pybroker"]') for line in lines)


def test_the_files_the_dockerfile_copies_build_the_package(tmp_path: Path) -> None:
    """Copy exactly what the Dockerfile's COPY lines name and build a wheel from it."""
    src = tmp_path / "src"
    src.mkdir()
    for line in (DOCKER / "Dockerfile").read_text().splitlines():
        if not line.startswith("COPY "):
            continue
        *sources, _dest = line.split()[1:]
        for name in sources:
            path = ROOT / name
            if path.is_dir():
                shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(path, src / name)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "w"), "."],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = (tmp_path / "w").glob("pybroker-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    # Every module of the package is in the wheel (a subpackage missing from pyproject's
    # package list would otherwise only fail inside the image).
    sources = {
        f"pybroker/{path.relative_to(ROOT).as_posix()}"
        for top in ("broker", "config", "protocol", "replication", "storage")
        for path in (ROOT / top).rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert "pybroker/broker/cli.py" in sources
    assert sources - names == set()
    assert "pybroker/config/server.properties" in names
    # The web console's pages are package data: every file beside its modules ships.
    console = {
        f"pybroker/broker/console/{path.name}"
        for path in (ROOT / "broker" / "console").iterdir()
        if path.suffix in (".html", ".js", ".css")
    }
    assert {"pybroker/broker/console/index.html", "pybroker/broker/console/app.js"} <= console
    assert console - names == set()


def healthcheck(port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pybroker.broker.healthcheck",
            "--bootstrap",
            f"127.0.0.1:{port}",
            "--timeout",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_healthcheck_probe(broker: BrokerProcess) -> None:
    ok = healthcheck(broker.port)
    assert (ok.returncode, ok.stderr) == (0, "")

    closed = healthcheck(free_port())
    assert closed.returncode == 1
    assert "unhealthy" in closed.stderr

    # A peer that accepts and answers garbage is not a healthy broker.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()

        def answer_garbage() -> None:
            conn, _ = server.accept()
            with conn:
                conn.recv(1024)
                conn.sendall(b"\x00\x00\x00\x08HTTP/1.1")

        t = threading.Thread(target=answer_garbage, daemon=True)
        t.start()
        bad = healthcheck(server.getsockname()[1])
        t.join(10)
    assert bad.returncode == 1
    assert "unhealthy" in bad.stderr
