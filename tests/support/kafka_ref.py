"""Apache Kafka 4.1 beside pybroker: the reference broker and Kafka's own CLI tools.

``make kafka-deps`` resolves Kafka's jars with Maven (tests/kafka_ref/pom.xml) into
``.kafka/lib``. This module starts a single KRaft node (broker and controller in one JVM,
a formatted log dir, free ports on 127.0.0.1) and runs Kafka's command-line tools by
their main classes, as the ``bin/kafka-*.sh`` scripts would. Every wait is bounded; a
missing jar folder is an error that says how to get it, never a skip.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.support.broker import ROOT, free_port, wait_for_port

KAFKA_LIB = ROOT / ".kafka" / "lib"
LOG4J_CONFIG = ROOT / "tests" / "kafka_ref" / "log4j2.yaml"
# Our classes on the reference's classpath: a KIP-714 telemetry receiver (metric.reporters),
# so that Kafka advertises and serves client telemetry as pybroker does.
REF_SOURCES = ROOT / "tests" / "kafka_ref" / "telemetry"
REF_CLASSES = ROOT / ".kafka" / "ref-classes"
TELEMETRY_RECEIVER = "pybroker.ref.TelemetryReceiver"

# bin/kafka-*.sh -> main class, for Kafka 4.1.
TOOLS = {
    "kafka-topics": "org.apache.kafka.tools.TopicCommand",
    "kafka-configs": "kafka.admin.ConfigCommand",
    "kafka-console-producer": "org.apache.kafka.tools.ConsoleProducer",
    "kafka-console-consumer": "org.apache.kafka.tools.consumer.ConsoleConsumer",
    "kafka-consumer-groups": "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
    "kafka-get-offsets": "org.apache.kafka.tools.GetOffsetShell",
    "kafka-delete-records": "org.apache.kafka.tools.DeleteRecordsCommand",
    "kafka-transactions": "org.apache.kafka.tools.TransactionsCommand",
    "kafka-producer-perf-test": "org.apache.kafka.tools.ProducerPerformance",
    "kafka-consumer-perf-test": "org.apache.kafka.tools.ConsumerPerformance",
    "kafka-dump-log": "kafka.tools.DumpLogSegments",
    "kafka-log-dirs": "org.apache.kafka.tools.LogDirsCommand",
    "kafka-storage": "kafka.tools.StorageTool",
    "kafka-reassign-partitions": "org.apache.kafka.tools.reassign.ReassignPartitionsCommand",
    "kafka-leader-election": "org.apache.kafka.tools.LeaderElectionCommand",
    "kafka-acls": "org.apache.kafka.tools.AclCommand",
    "kafka-delegation-tokens": "org.apache.kafka.tools.DelegationTokenCommand",
}

# The super user of an authorizer-enabled reference: the controller and inter-broker
# listeners authenticate as it (SASL PLAIN), so clients on PLAINTEXT stay User:ANONYMOUS.
REF_SUPER_USER = ("admin", "admin-secret")


def with_authorizer(ref: KafkaReference) -> KafkaReference:
    """Turn ``ref`` (not yet started) into a StandardAuthorizer node with super user admin.

    Its PLAINTEXT listener is unchanged; the controller listener and a new inter-broker
    listener INTERNAL use SASL_PLAINTEXT as ``User:admin``, so the node's own requests pass
    and every ACL decision about PLAINTEXT clients is the authorizer's. ``ref.internal_port``
    is where a super-user client (SASL PLAIN admin/admin-secret) can connect.
    """
    user, password = REF_SUPER_USER
    jaas = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{user}" password="{password}" user_{user}="{password}";'
    )
    ref.internal_port = free_port()  # type: ignore[attr-defined]
    ref.overrides.update(
        {
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{ref.port},INTERNAL://127.0.0.1:{ref.internal_port},"  # type: ignore[attr-defined]
                f"CONTROLLER://127.0.0.1:{ref.controller_port}"
            ),
            "advertised.listeners": (
                f"PLAINTEXT://127.0.0.1:{ref.port},INTERNAL://127.0.0.1:{ref.internal_port}"  # type: ignore[attr-defined]
            ),
            "listener.security.protocol.map": (
                "PLAINTEXT:PLAINTEXT,INTERNAL:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT"
            ),
            "inter.broker.listener.name": "INTERNAL",
            "sasl.enabled.mechanisms": "PLAIN",
            "sasl.mechanism.inter.broker.protocol": "PLAIN",
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.internal.plain.sasl.jaas.config": jaas,
            "listener.name.controller.plain.sasl.jaas.config": jaas,
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": f"User:{user}",
        }
    )
    return ref


# Small, quick-starting JVMs: these are test peers, not benchmarks.
TOOL_JVM_OPTS = ["-Xms64m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"]
BROKER_JVM_OPTS = ["-Xms256m", "-Xmx1g", "-XX:+UseSerialGC"]


def require_kafka_lib() -> Path:
    """The jar folder; raises (never skips) when ``make kafka-deps`` has not run."""
    if not (KAFKA_LIB / ".installed").exists() or shutil.which("java") is None:
        raise RuntimeError(
            f"Apache Kafka's jars are missing from {KAFKA_LIB}: run `make kafka-deps` "
            "(`make test` does it) and make sure `java` is on PATH"
        )
    return KAFKA_LIB


def ensure_ref_classes() -> Path:
    """Compile REF_SOURCES into REF_CLASSES (javac, against Kafka's jars) when stale."""
    sources = sorted(REF_SOURCES.rglob("*.java"))
    stamp = REF_CLASSES / ".compiled"
    newest = max(p.stat().st_mtime for p in sources)
    if not stamp.exists() or stamp.stat().st_mtime < newest:
        REF_CLASSES.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "javac",
                "-d",
                str(REF_CLASSES),
                "-cp",
                f"{require_kafka_lib()}/*",
                *map(str, sources),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        stamp.touch()
    return REF_CLASSES


def java_command(
    main_class: str, args: list[str], *, level: str = "WARN", jvm_options: tuple[str, ...] = ()
) -> list[str]:
    """``java`` with Kafka's classpath and our log4j2 config, running ``main_class``
    (``jvm_options``: extra ``-D...`` system properties, as KAFKA_OPTS would add)."""
    lib = require_kafka_lib()
    return [
        "java",
        *(BROKER_JVM_OPTS if main_class == "kafka.Kafka" else TOOL_JVM_OPTS),
        *jvm_options,
        f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
        f"-Dpybroker.kafka.level={level}",
        "-cp",
        f"{lib}/*:{REF_CLASSES}",
        main_class,
        *args,
    ]


@dataclass(frozen=True)
class ToolResult:
    returncode: int
    stdout: str
    stderr: str

    def check(self) -> ToolResult:
        if self.returncode != 0:
            raise AssertionError(
                f"tool exited {self.returncode}\nstdout:\n{self.stdout[-4000:]}\n"
                f"stderr:\n{self.stderr[-4000:]}"
            )
        return self


def run_tool(tool: str, *args: str, timeout: float = 120.0, stdin: str | None = None) -> ToolResult:
    """Run one of Kafka's CLI tools (by its script name) and capture its output."""
    cmd = java_command(TOOLS[tool], list(args))
    done = subprocess.run(
        cmd, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )
    return ToolResult(done.returncode, done.stdout, done.stderr)


def console_roundtrip(bootstrap: str, topic: str, values: list[str], config: Path) -> None:
    """Kafka's console producer writes ``values`` and its console consumer reads exactly
    them back, both with the client settings in ``config`` (security included)."""
    run_tool(
        "kafka-console-producer",
        "--bootstrap-server", bootstrap,
        "--topic", topic,
        "--producer.config", str(config),
        stdin="\n".join(values) + "\n",
        timeout=90,
    ).check()  # fmt: skip
    out = run_tool(
        "kafka-console-consumer",
        "--bootstrap-server", bootstrap,
        "--topic", topic,
        "--from-beginning",
        "--max-messages", str(len(values)),
        "--timeout-ms", "30000",
        "--consumer.config", str(config),
        timeout=90,
    ).check()  # fmt: skip
    assert out.stdout.splitlines() == values


def random_cluster_id() -> str:
    """A cluster id as ``kafka-storage random-uuid`` prints one (base64url, 22 chars).

    Never with a leading "-" (Kafka's Uuid.randomUuid skips those): the CLI would take it
    for an option.
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


class KafkaReference:
    """One Apache Kafka 4.1 KRaft node (broker + controller) on 127.0.0.1."""

    def __init__(self, data_dir: Path, overrides: dict[str, str] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.port = free_port()
        self.controller_port = free_port()
        self.overrides = dict(overrides or {})
        # KAFKA_OPTS of the broker JVM, e.g. -Dorg.apache.kafka.sasl.oauthbearer.allowed.urls=
        self.jvm_options: list[str] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.data_dir.parent / f"kafka-{self.port}.log"
        self.config_path = self.data_dir.parent / f"kafka-{self.port}.properties"
        self.cluster_id = random_cluster_id()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_dir(self) -> Path:
        return self.data_dir

    def settings(self) -> dict[str, str]:
        return {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "50",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "metric.reporters": TELEMETRY_RECEIVER,  # KIP-714 on, as in pybroker
            **self.overrides,
        }

    def write_config(self) -> None:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        lines = [f"{k}={v}" for k, v in self.settings().items()]
        self.config_path.write_text("\n".join(lines) + "\n")

    def format(self) -> None:
        """``kafka-storage format``: only on an empty log dir."""
        self.write_config()
        run_tool(
            "kafka-storage",
            "format",
            "--config",
            str(self.config_path),
            "--cluster-id",
            self.cluster_id,
            "--ignore-formatted",
            timeout=60,
        ).check()

    def start(self, timeout: float = 60.0) -> KafkaReference:
        ensure_ref_classes()
        if not (self.data_dir / "meta.properties").exists():
            self.format()
        else:
            self.write_config()
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        cmd = java_command(
            "kafka.Kafka",
            [str(self.config_path)],
            level="INFO",
            jvm_options=tuple(self.jvm_options),
        )
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        try:
            wait_for_port(self.port, timeout, self.proc)
        except TimeoutError:
            self.kill()
            raise RuntimeError(f"Kafka failed to start:\n{self.log_tail()}") from None
        return self

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait: Kafka's controlled shutdown; SIGKILL if it hangs."""
        if self.proc is None:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(10)
        self.proc = None
        return code

    def kill(self) -> None:
        if self.proc is None:
            return
        try:
            os.kill(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)
        self.proc = None
