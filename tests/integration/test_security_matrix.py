"""The security matrix of issue 12: every stock client (confluent-kafka, kafka-python,
aiokafka, kafkajs, kcat) does a produce + consume round trip over every security mode it
supports (SSL, mTLS, SASL_PLAINTEXT and SASL_SSL with PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
and OAUTHBEARER), checking the exact records and the principal the broker saw.

One broker serves all modes at once (one listener per security protocol, plus an SSL
listener requiring client certificates, with a principal mapping rule). It logs at DEBUG,
so its request log (``pybroker.request``) says which principal sent each request on which
listener; each case has its own client id and topic. The cells a client cannot do are in
EXCLUDED with the reason, and a test checks that table is exactly what the matrix leaves out.

The README's "Secured quick start" is run here too, as written (its blocks are parsed out of
README.md), against config/secured/server.properties.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    NewTopic,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from tests.support.broker import ROOT, BrokerProcess, free_port, wait_for_port
from tests.support.tls_certs import PASSWORD, CertSet, make_certs

JS_DIR = ROOT / "tests" / "js"
COUNT = 20
MTLS_RULES = "RULE:^CN=([^,]+),OU=clients,.*$/$1/U,DEFAULT"
PLAIN_JAAS = (
    "org.apache.kafka.common.security.plain.PlainLoginModule required "
    'username="admin" password="admin-secret" user_alice="alice-secret";'
)
SCRAM_JAAS = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
OAUTH_JAAS = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;"
# mechanism -> (user, password); SCRAM users are created by the fixture.
USERS = {
    "PLAIN": ("alice", "alice-secret"),
    "SCRAM-SHA-256": ("scram256", "s256-secret"),
    "SCRAM-SHA-512": ("scram512", "s512-secret"),
    "OAUTHBEARER": ("oauth-alice", ""),  # the unsecured token's sub claim
}


@dataclass(frozen=True)
class Mode:
    listener: str  # the broker's listener name
    tls: bool
    client_cert: bool  # mTLS
    mechanism: str | None  # SASL mechanism, None without SASL
    principal: str  # what the broker must see

    @property
    def sasl(self) -> bool:
        return self.mechanism is not None

    @property
    def protocol(self) -> str:
        if self.sasl:
            return "SASL_SSL" if self.tls else "SASL_PLAINTEXT"
        return "SSL"


def _sasl_modes(listener: str, tls: bool) -> dict[str, Mode]:
    return {
        f"{listener}/{mech}": Mode(listener, tls, False, mech, f"User:{USERS[mech][0]}")
        for mech in USERS
    }


MODES: dict[str, Mode] = {
    "SSL": Mode("SSL", True, False, None, "User:ANONYMOUS"),
    # MTLS_RULES maps CN=alice,OU=clients,O=pybroker,C=US to ALICE.
    "mTLS": Mode("MTLS", True, True, None, "User:ALICE"),
    **_sasl_modes("SASL_PLAINTEXT", False),
    **_sasl_modes("SASL_SSL", True),
}
CLIENTS = ("confluent-kafka", "kafka-python", "aiokafka", "kafkajs", "kcat")

KCAT_SCRAM = (
    "Debian's kcat 1.7.1 on librdkafka 2.0.2: librdkafka before 2.6.1 repeats the client nonce "
    "in its SCRAM client-final-message, which Kafka 4.x refuses as invalid credentials "
    "(confluentinc/librdkafka#4895); confluent-kafka ships a fixed librdkafka"
)
EXCLUDED: dict[tuple[str, str], str] = {
    ("kcat", "SASL_PLAINTEXT/SCRAM-SHA-256"): KCAT_SCRAM,
    ("kcat", "SASL_PLAINTEXT/SCRAM-SHA-512"): KCAT_SCRAM,
    ("kcat", "SASL_SSL/SCRAM-SHA-256"): KCAT_SCRAM,
    ("kcat", "SASL_SSL/SCRAM-SHA-512"): KCAT_SCRAM,
}
CASES = [(c, m) for c in CLIENTS for m in MODES if (c, m) not in EXCLUDED]


def case_id(client: str, mode: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", f"{client}-{mode}".lower())


# --------------------------------------------------------------------- the broker


@dataclass
class MatrixBroker:
    proc: BrokerProcess
    ports: dict[str, int]  # listener -> port
    certs: CertSet

    def bootstrap(self, mode: Mode) -> str:
        return f"127.0.0.1:{self.ports[mode.listener]}"

    def log(self) -> str:
        return self.proc.log_path.read_text(errors="replace")


def matrix_overrides(certs: CertSet, ports: dict[str, int]) -> dict[str, str]:
    listeners = ",".join(f"{name}://127.0.0.1:{port}" for name, port in ports.items())
    settings = {
        "listeners": listeners,
        "advertised.listeners": listeners,
        "listener.security.protocol.map": (
            "PLAINTEXT:PLAINTEXT,SSL:SSL,MTLS:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL"
        ),
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(certs.broker_pem_store),
        "ssl.key.password": PASSWORD,
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(certs.ca_cert),
        "ssl.client.auth": "none",
        "listener.name.mtls.ssl.client.auth": "required",
        "listener.name.mtls.ssl.principal.mapping.rules": MTLS_RULES,
        "sasl.enabled.mechanisms": ",".join(USERS),
        "num.partitions": "1",
        "offsets.topic.num.partitions": "1",
        "group.initial.rebalance.delay.ms": "0",
    }
    for listener in ("sasl_plaintext", "sasl_ssl"):
        for mech, jaas in (
            ("plain", PLAIN_JAAS),
            ("scram-sha-256", SCRAM_JAAS),
            ("scram-sha-512", SCRAM_JAAS),
            ("oauthbearer", OAUTH_JAAS),
        ):
            settings[f"listener.name.{listener}.{mech}.sasl.jaas.config"] = jaas
    return settings


def start_debug(proc: BrokerProcess) -> None:
    """DEBUG logging: the request log names each request's principal and listener."""
    old = os.environ.get("PYBROKER_LOG_LEVEL")
    os.environ["PYBROKER_LOG_LEVEL"] = "DEBUG"
    try:
        proc.start()
    finally:
        if old is None:
            del os.environ["PYBROKER_LOG_LEVEL"]
        else:
            os.environ["PYBROKER_LOG_LEVEL"] = old


@pytest.fixture(scope="module")
def matrix_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MatrixBroker]:
    root = tmp_path_factory.mktemp("security-matrix")
    certs = make_certs(root / "certs")
    ports = {
        name: free_port() for name in ("PLAINTEXT", "SSL", "MTLS", "SASL_PLAINTEXT", "SASL_SSL")
    }
    proc = BrokerProcess(root / "data", matrix_overrides(certs, ports), port=ports["PLAINTEXT"])
    start_debug(proc)
    try:
        admin = AdminClient({"bootstrap.servers": proc.bootstrap})
        upserts = [
            UserScramCredentialUpsertion(
                USERS[m][0],
                ScramCredentialInfo(getattr(ScramMechanism, m.replace("-", "_")), 4096),
                USERS[m][1].encode(),
            )
            for m in ("SCRAM-SHA-256", "SCRAM-SHA-512")
        ]
        for fut in admin.alter_user_scram_credentials(upserts).values():
            fut.result(30)
        topics = [NewTopic(case_id(c, m), 1, 1) for c, m in CASES]
        for fut in admin.create_topics(topics).values():
            fut.result(30)
        yield MatrixBroker(proc, ports, certs)
    finally:
        proc.stop()


def unsecured_jws(subject: str, lifetime_s: float = 3600) -> str:
    """Kafka's development tokens: alg none, no signature."""

    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    now = time.time()
    return f"{part({'alg': 'none'})}.{part({'sub': subject, 'iat': now, 'exp': now + 3600})}."


def expected_records(cid: str) -> list[tuple[bytes, bytes]]:
    """Keyed, distinct, of growing size: what every case produces and must read back."""
    return [(b"k%02d" % i, f"{cid}-{i}-".encode() + b"x" * (i * 13)) for i in range(COUNT)]


# --------------------------------------------------------------------- clients


def librdkafka_conf(b: MatrixBroker, mode: Mode, cid: str) -> dict[str, str]:
    """confluent-kafka's and kcat's settings (both are librdkafka)."""
    conf = {
        "bootstrap.servers": b.bootstrap(mode),
        "client.id": cid,
        "security.protocol": mode.protocol,
    }
    if mode.tls:
        conf["ssl.ca.location"] = str(b.certs.ca_cert)
    if mode.client_cert:
        conf["ssl.certificate.location"] = str(b.certs.client_cert)
        conf["ssl.key.location"] = str(b.certs.client_key)
    if mode.mechanism == "OAUTHBEARER":
        conf["sasl.mechanism"] = "OAUTHBEARER"
        conf["enable.sasl.oauthbearer.unsecure.jwt"] = "true"
        conf["sasl.oauthbearer.config"] = f"principal={USERS['OAUTHBEARER'][0]}"
    elif mode.mechanism is not None:
        user, password = USERS[mode.mechanism]
        conf |= {"sasl.mechanism": mode.mechanism, "sasl.username": user, "sasl.password": password}
    return conf


def run_confluent(b: MatrixBroker, mode: Mode, cid: str) -> list[tuple[bytes, bytes]]:
    conf = librdkafka_conf(b, mode, cid)
    producer = Producer({**conf, "acks": "all"})
    for key, value in expected_records(cid):
        producer.produce(cid, value, key)
    assert producer.flush(30) == 0
    consumer = Consumer({**conf, "group.id": cid, "enable.auto.commit": False})
    consumer.assign([TopicPartition(cid, 0, 0)])
    got: list[tuple[bytes, bytes]] = []
    deadline = time.monotonic() + 30
    try:
        while len(got) < COUNT and time.monotonic() < deadline:
            m = consumer.poll(0.2)
            if m is not None:
                assert m.error() is None, m.error()
                got.append((m.key(), m.value()))
    finally:
        consumer.close()
    return got


def run_kcat(b: MatrixBroker, mode: Mode, cid: str) -> list[tuple[bytes, bytes]]:
    args = ["-b", b.bootstrap(mode)]
    for key, value in librdkafka_conf(b, mode, cid).items():
        if key != "bootstrap.servers":
            args += ["-X", f"{key}={value}"]
    lines = "".join(f"{k.decode()}:{v.decode()}\n" for k, v in expected_records(cid))
    produced = subprocess.run(
        ["kcat", *args, "-P", "-t", cid, "-K", ":", "-X", "acks=all"],
        input=lines,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert produced.returncode == 0, produced.stderr
    consumed = subprocess.run(
        ["kcat", *args, "-C", "-t", cid, "-o", "beginning", "-c", str(COUNT), "-e",
         "-f", "%k:%s\\n"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert consumed.returncode == 0, consumed.stderr
    return [
        (k.encode(), v.encode())
        for k, v in (ln.split(":", 1) for ln in consumed.stdout.splitlines())
    ]


def python_security(b: MatrixBroker, mode: Mode) -> dict[str, Any]:
    """kafka-python's and aiokafka's shared keyword arguments (no TLS or token objects)."""
    conf: dict[str, Any] = {"security_protocol": mode.protocol}
    if mode.mechanism is not None:
        conf["sasl_mechanism"] = mode.mechanism
    if mode.mechanism not in (None, "OAUTHBEARER"):
        conf["sasl_plain_username"], conf["sasl_plain_password"] = USERS[mode.mechanism]
    return conf


def run_kafka_python(b: MatrixBroker, mode: Mode, cid: str) -> list[tuple[bytes, bytes]]:
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KTopicPartition
    from kafka.net.sasl.oauth import AbstractTokenProvider

    class Tokens(AbstractTokenProvider):
        def token(self) -> str:
            return unsecured_jws(USERS["OAUTHBEARER"][0])

    conf = {"bootstrap_servers": b.bootstrap(mode), "client_id": cid, **python_security(b, mode)}
    if mode.tls:
        conf["ssl_cafile"] = str(b.certs.ca_cert)
    if mode.client_cert:
        conf["ssl_certfile"] = str(b.certs.client_cert)
        conf["ssl_keyfile"] = str(b.certs.client_key)
    if mode.mechanism == "OAUTHBEARER":
        conf["sasl_oauth_token_provider"] = Tokens()
    producer = KafkaProducer(acks="all", **conf)
    for key, value in expected_records(cid):
        producer.send(cid, value, key)
    producer.flush(30)
    producer.close()
    consumer = KafkaConsumer(group_id=None, enable_auto_commit=False, **conf)
    tp = KTopicPartition(cid, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    got: list[tuple[bytes, bytes]] = []
    deadline = time.monotonic() + 30
    try:
        while len(got) < COUNT and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                got += [(r.key, r.value) for r in records]
    finally:
        consumer.close()
    return got


async def aiokafka_roundtrip(b: MatrixBroker, mode: Mode, cid: str) -> list[tuple[bytes, bytes]]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka import TopicPartition as ATopicPartition
    from aiokafka.abc import AbstractTokenProvider
    from aiokafka.helpers import create_ssl_context

    class Tokens(AbstractTokenProvider):
        async def token(self) -> str:
            return unsecured_jws(USERS["OAUTHBEARER"][0])

    conf = {"bootstrap_servers": b.bootstrap(mode), "client_id": cid, **python_security(b, mode)}
    if mode.tls:
        cert = {"certfile": str(b.certs.client_cert), "keyfile": str(b.certs.client_key)}
        conf["ssl_context"] = create_ssl_context(
            cafile=str(b.certs.ca_cert), **(cert if mode.client_cert else {})
        )
    if mode.mechanism == "OAUTHBEARER":
        conf["sasl_oauth_token_provider"] = Tokens()
    producer = AIOKafkaProducer(acks="all", **conf)
    await producer.start()
    try:
        for key, value in expected_records(cid):
            await producer.send(cid, value, key)
        await producer.flush()
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(group_id=None, enable_auto_commit=False, **conf)
    await consumer.start()
    tp = ATopicPartition(cid, 0)
    got: list[tuple[bytes, bytes]] = []
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        async with asyncio.timeout(30):
            while len(got) < COUNT:
                batch = await consumer.getmany(tp, timeout_ms=200)
                got += [(r.key, r.value) for r in batch.get(tp, [])]
    finally:
        await consumer.stop()
    return got


def run_aiokafka(b: MatrixBroker, mode: Mode, cid: str) -> list[tuple[bytes, bytes]]:
    return asyncio.run(aiokafka_roundtrip(b, mode, cid))


def run_kafkajs(b: MatrixBroker, mode: Mode, cid: str) -> list[tuple[bytes, bytes]]:
    records = expected_records(cid)
    config: dict[str, Any] = {
        "brokers": b.bootstrap(mode),
        "clientId": cid,
        "topic": cid,
        "count": COUNT,
        "keys": [k.decode() for k, _ in records],
        "values": [v.decode() for _, v in records],
        "deadline_s": 40,
    }
    if mode.tls:
        config["ssl"] = {"ca": str(b.certs.ca_cert)}
    if mode.client_cert:
        config["ssl"] |= {"cert": str(b.certs.client_cert), "key": str(b.certs.client_key)}
    if mode.mechanism == "OAUTHBEARER":
        config["sasl"] = {
            "mechanism": "oauthbearer",
            "token": unsecured_jws(USERS[mode.mechanism][0]),
        }
    elif mode.mechanism is not None:
        user, password = USERS[mode.mechanism]
        config["sasl"] = {
            "mechanism": mode.mechanism.lower(),
            "username": user,
            "password": password,
        }
    proc = subprocess.run(
        ["node", str(JS_DIR / "matrix.js"), json.dumps(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=JS_DIR,
        check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, f"no result from kafkajs:\n{proc.stdout}\n{proc.stderr}"
    result = json.loads(lines[-1][len("RESULT ") :])
    assert result.get("error") is None, result
    return [(k.encode(), v.encode()) for k, v in result["consumed"]]


RUNNERS = {
    "confluent-kafka": run_confluent,
    "kafka-python": run_kafka_python,
    "aiokafka": run_aiokafka,
    "kafkajs": run_kafkajs,
    "kcat": run_kcat,
}


# --------------------------------------------------------------------- the matrix

REQUEST_LINE = re.compile(
    r"Completed request: (\w+) v\d+ correlationId=-?\d+ clientId=(\S*) principal=(\S+) "
    r"listener=(\S+)"
)


# Served before the SASL exchange completes, hence as User:ANONYMOUS.
PRE_AUTH = {"ApiVersions", "SaslHandshake", "SaslAuthenticate"}


def requests_seen(log: str, cid: str) -> dict[tuple[str, str], set[str]]:
    """(principal, listener) -> API names of the requests client id ``cid`` sent (past
    authentication)."""
    seen: dict[tuple[str, str], set[str]] = {}
    for api, client, principal, listener in REQUEST_LINE.findall(log):
        if client == cid and api not in PRE_AUTH:
            seen.setdefault((principal, listener), set()).add(api)
    return seen


def test_the_exclusions_are_exactly_what_the_matrix_leaves_out() -> None:
    """No silent gaps: every client x mode either runs or is in EXCLUDED with a reason."""
    full = {(c, m) for c in CLIENTS for m in MODES}
    assert set(EXCLUDED) <= full
    assert all(len(reason) > 20 for reason in EXCLUDED.values())
    assert set(CASES) == full - set(EXCLUDED)
    assert len(CASES) + len(EXCLUDED) == len(CLIENTS) * len(MODES) == 50


@pytest.mark.parametrize(("client", "mode"), CASES, ids=[case_id(c, m) for c, m in CASES])
def test_round_trip(matrix_broker: MatrixBroker, client: str, mode: str) -> None:
    m = MODES[mode]
    cid = case_id(client, mode)
    got = RUNNERS[client](matrix_broker, m, cid)
    assert got == expected_records(cid)
    # The broker saw this client as the mode's principal on the mode's listener only.
    deadline = time.monotonic() + 5
    while True:
        seen = requests_seen(matrix_broker.log(), cid)
        apis = seen.get((m.principal, m.listener), set())
        if {"Produce", "Fetch"} <= apis or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert set(seen) == {(m.principal, m.listener)}, seen
    assert {"Produce", "Fetch"} <= apis, seen


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_wrong_password_over_sasl_ssl_is_refused(
    matrix_broker: MatrixBroker, mechanism: str
) -> None:
    """Inside TLS too, a wrong password is SASL_AUTHENTICATION_FAILED and the connection is
    closed (the broker logs the failed authentication on SASL_SSL)."""
    m = MODES[f"SASL_SSL/{mechanism}"]
    cid = f"wrong-password-{mechanism.lower()}"
    conf = {**librdkafka_conf(matrix_broker, m, cid), "sasl.password": "wrong"}
    start = len(matrix_broker.log())
    errors: list[KafkaError] = []
    producer = Producer({**conf, "error_cb": errors.append})
    deadline = time.monotonic() + 10
    while not errors and time.monotonic() < deadline:
        producer.poll(0.1)
    del producer  # destroyed: no more retries
    assert errors, "no error reported for a wrong password"
    assert errors[0].code() == KafkaError._AUTHENTICATION, errors
    expected = (  # Kafka's messages: PlainServerCallbackHandler's, SaslServerAuthenticator's
        "Authentication failed: Invalid username or password"
        if mechanism == "PLAIN"
        else f"invalid credentials with SASL mechanism {mechanism}"
    )
    assert expected in errors[0].str(), errors
    deadline = time.monotonic() + 5
    while "Failed authentication" not in matrix_broker.log()[start:]:
        assert time.monotonic() < deadline, "no failed authentication in the broker log"
        time.sleep(0.1)
    assert not requests_seen(matrix_broker.log(), cid)  # nothing served past authentication


def test_kcat_scram_exclusion_still_holds(matrix_broker: MatrixBroker) -> None:
    """The excluded kcat SCRAM cells are a kcat limitation, kept honest: if this kcat starts
    authenticating with SCRAM, this fails and the cells belong in the matrix."""
    m = MODES["SASL_PLAINTEXT/SCRAM-SHA-256"]
    args = ["-b", matrix_broker.bootstrap(m), "-L", "-m", "3"]
    for key, value in librdkafka_conf(matrix_broker, m, "kcat-scram-check").items():
        if key != "bootstrap.servers":
            args += ["-X", f"{key}={value}"]
    done = subprocess.run(["kcat", *args], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode != 0
    assert "Authentication failed" in done.stderr + done.stdout, done.stderr


# --------------------------------------------------------------------- README quick start

README = ROOT / "README.md"
SECURED_CONFIG = ROOT / "config" / "secured" / "server.properties"
KCAT_SCRAM_LINES = "sasl.mechanism=SCRAM-SHA-512\nsasl.username=alice\nsasl.password=alice-secret\n"
KCAT_PLAIN_LINES = "sasl.mechanism=PLAIN\nsasl.username=admin\nsasl.password=admin-secret\n"


def readme_blocks() -> dict[str, str]:
    """The README's secured quick start blocks, by marker name: the test runs what the
    README says, so the two cannot drift."""
    pattern = re.compile(
        r"<!-- secured-quickstart:(\w+) -->\n```\w+\n(.*?)```\n<!-- /secured-quickstart:\1 -->",
        re.S,
    )
    return dict(pattern.findall(README.read_text()))


def test_readme_secured_quick_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """openssl as written, config/secured/server.properties with its paths and ports
    moved into tmp_path, then the admin, kcat and confluent-kafka blocks as written."""
    blocks = readme_blocks()
    assert set(blocks) == {"openssl", "admin", "kcat", "confluent"}
    subprocess.run(["bash", "-euo", "pipefail", "-c", blocks["openssl"]], cwd=tmp_path,
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    clients_port, broker_port = free_port(), free_port()

    def local(text: str) -> str:
        return text.replace("127.0.0.1:9093", f"127.0.0.1:{clients_port}")

    props = SECURED_CONFIG.read_text()
    for old, new in [
        ("/etc/pybroker/secured", str(tmp_path)),
        ("/tmp/pybroker-secured", str(tmp_path / "data")),
        ("127.0.0.1:9094", f"127.0.0.1:{broker_port}"),
    ]:
        assert old in props
        props = props.replace(old, new)
    config = tmp_path / "server.properties"
    config.write_text(local(props))
    log = open(tmp_path / "broker.log", "wb")  # noqa: SIM115 - handed to the child
    broker = subprocess.Popen(
        [sys.executable, "-m", "pybroker.broker.cli", "--config", str(config),
         "--override", f"pybroker.http.listener=http://127.0.0.1:{free_port()}"],
        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
    )  # fmt: skip
    log.close()
    monkeypatch.chdir(tmp_path)
    try:
        wait_for_port(clients_port, 20, broker)
        exec(compile(local(blocks["admin"]), "README.md:admin", "exec"), {})
        # This kcat's SCRAM cannot authenticate (KCAT_SCRAM): it uses the PLAIN admin.
        assert KCAT_SCRAM_LINES in blocks["kcat"]
        kcat = local(blocks["kcat"]).replace(KCAT_SCRAM_LINES, KCAT_PLAIN_LINES)
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", kcat], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == ["hello from kcat"]
        namespace: dict[str, Any] = {}
        exec(compile(local(blocks["confluent"]), "README.md:confluent", "exec"), namespace)
        assert [m.value() for m in namespace["got"]] == [
            b"hello from kcat",
            b"hello from confluent-kafka",
        ]
        # alice holds no other rights: another topic is refused.
        producer = Producer({**namespace["conf"], "error_cb": print})
        errors: list[KafkaError] = []
        producer.produce("not-quickstart", b"x", on_delivery=lambda err, _: errors.append(err))
        producer.flush(15)
        assert errors and errors[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, errors
    finally:
        broker.terminate()
        broker.wait(20)
