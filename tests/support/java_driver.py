"""Run the Java client test driver (tests/java) and return the JSON line it prints.

``make java-driver`` compiles the driver with Maven into ``tests/java/target``: its classes
and a folder of the jars it needs (kafka-clients 4.1.1, slf4j-simple). One driver run is
one scenario in a fresh JVM: ``run_scenario("idempotent", bootstrap, topic=...)``. The
driver prints a single JSON object on stdout; the Kafka client's own WARN logs go to
stderr and are kept for failure messages. A missing build is an error that says how to
get it, never a skip.
"""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any

from tests.support.broker import ROOT

JAVA_DIR = ROOT / "tests" / "java"
TARGET = JAVA_DIR / "target"
MAIN_CLASS = "pybroker.driver.Driver"
# A test peer, not a benchmark: small heap, quick start.
JVM_OPTS = ["-Xms32m", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xshare:auto"]


def require_driver() -> str:
    """The driver's classpath; raises (never skips) when it has not been built."""
    if not (TARGET / ".built").exists() or shutil.which("java") is None:
        raise RuntimeError(
            f"the Java test driver is not built in {TARGET}: run `make java-driver` "
            "(`make test` does it) and make sure `java` is on PATH"
        )
    return f"{TARGET / 'classes'}:{TARGET / 'lib'}/*"


@dataclass(frozen=True)
class DriverRun:
    """One scenario's outcome: its JSON result, the client's log and the wall time."""

    result: dict[str, Any]
    stderr: str
    seconds: float


def driver_command(
    scenario: str,
    bootstrap: str,
    params: dict[str, object],
    jvm_options: tuple[str, ...] = (),
) -> list[str]:
    """``jvm_options``: extra ``-D...`` properties, e.g. a client logger's level."""
    args = [f"bootstrap={bootstrap}", *(f"{k}={v}" for k, v in params.items())]
    return ["java", *JVM_OPTS, *jvm_options, "-cp", require_driver(), MAIN_CLASS, scenario, *args]


def run_scenario(
    scenario: str,
    bootstrap: str,
    *,
    timeout: float = 120.0,
    jvm_options: tuple[str, ...] = (),
    **params: object,
) -> DriverRun:
    """Run one scenario to completion; a failed scenario fails with the client's log."""
    cmd = driver_command(scenario, bootstrap, params, jvm_options)
    started = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    seconds = time.monotonic() - started
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise AssertionError(
            f"java driver {scenario} exited {done.returncode}\nstdout:\n{done.stdout[-4000:]}\n"
            f"stderr:\n{done.stderr[-6000:]}"
        )
    return DriverRun(json.loads(lines[-1]), done.stderr, seconds)


class InteractiveRun:
    """A scenario that pauses (prints {"pause": name}) until the test says go on.

    For scenarios that need the test to act mid-way, e.g. restart the broker while the Java
    producer stays alive. stdout is read on a thread so every wait is bounded.
    """

    def __init__(self, scenario: str, bootstrap: str, **params: object) -> None:
        self.scenario = scenario
        self.proc = subprocess.Popen(
            driver_command(scenario, bootstrap, params),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.started = time.monotonic()
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(
            target=self._pump, args=(self.proc.stdout, self.lines), daemon=True
        ).start()
        threading.Thread(target=self._drain, daemon=True).start()

    @staticmethod
    def _pump(stream: Any, out: queue.Queue[str | None]) -> None:
        for line in stream:
            out.put(line)
        out.put(None)

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def _next_json(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()
                raise AssertionError(
                    f"java driver {self.scenario}: no output in {timeout}s"
                ) from None
            if line is None:
                code = self.proc.wait(10)
                raise AssertionError(
                    f"java driver {self.scenario} exited {code} early\n"
                    f"stderr:\n{''.join(self.stderr)[-6000:]}"
                )
            if line.startswith("{"):
                return json.loads(line)

    def wait_pause(self, name: str, timeout: float = 60.0) -> None:
        got = self._next_json(timeout)
        # A result line instead of the pause: the scenario failed before it got there.
        assert got == {"pause": name}, f"{got}\nstderr:\n{''.join(self.stderr)[-6000:]}"

    def resume(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float = 120.0) -> DriverRun:
        result = self._next_json(timeout)
        code = self.proc.wait(timeout)
        if code != 0:
            raise AssertionError(
                f"java driver {self.scenario} exited {code}: {result}\n"
                f"stderr:\n{''.join(self.stderr)[-6000:]}"
            )
        return DriverRun(result, "".join(self.stderr), time.monotonic() - self.started)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
