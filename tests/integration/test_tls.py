"""SSL listeners (issue 12, TLS): Kafka's Java client produces and consumes over mTLS (the
other clients' TLS and mTLS round trips are in test_security_matrix.py), the broker maps
client certificates to principals, refuses bad key stores at start-up, shrugs off plaintext
clients on its TLS port, and replicates over SSL in a cluster.

The module broker has three listeners: PLAINTEXT, SSL (PKCS12 key store, client certificate
requested) and MTLS (an SSL listener with a PEM key store file, client certificate required
and a principal mapping rule), logging at DEBUG so the principal of each TLS connection
is observable in its log.
"""

from __future__ import annotations

import os
import socket
import ssl
import struct
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer

from pybroker.broker.tls import HANDSHAKE_TIMEOUT_S
from tests.support import clients
from tests.support.broker import ROOT, BrokerProcess, free_port
from tests.support.cluster import Cluster
from tests.support.kafka_ref import console_roundtrip
from tests.support.tls_certs import PASSWORD, CertSet, another_broker_store, make_certs

MTLS_RULES = "RULE:^CN=([^,]+),OU=clients,.*$/$1/U,DEFAULT"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertSet:
    return make_certs(tmp_path_factory.mktemp("certs"))


def ssl_overrides(certs: CertSet, ports: dict[str, int]) -> dict[str, str]:
    listeners = ",".join(f"{name}://127.0.0.1:{port}" for name, port in ports.items())
    return {
        "listeners": listeners,
        "advertised.listeners": listeners,
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SSL:SSL,MTLS:SSL",
        "ssl.keystore.type": "PKCS12",
        "ssl.keystore.location": str(certs.broker_p12),
        "ssl.keystore.password": PASSWORD,
        "ssl.truststore.type": "PKCS12",
        "ssl.truststore.location": str(certs.ca_p12),
        "ssl.truststore.password": PASSWORD,
        "ssl.client.auth": "requested",
        # MTLS: its own PEM key store file (encrypted key), PEM trust store, mTLS, rules.
        "listener.name.mtls.ssl.keystore.type": "PEM",
        "listener.name.mtls.ssl.keystore.location": str(certs.broker_pem_store),
        "listener.name.mtls.ssl.key.password": PASSWORD,
        "listener.name.mtls.ssl.keystore.password": "",  # PEM: only a key password
        "listener.name.mtls.ssl.truststore.type": "PEM",
        "listener.name.mtls.ssl.truststore.location": str(certs.ca_cert),
        "listener.name.mtls.ssl.truststore.password": "",
        "listener.name.mtls.ssl.client.auth": "required",
        "listener.name.mtls.ssl.principal.mapping.rules": MTLS_RULES,
        "num.partitions": "1",
        "offsets.topic.num.partitions": "3",
        "group.initial.rebalance.delay.ms": "0",
    }


class TlsBroker:
    def __init__(self, proc: BrokerProcess, ssl_port: int, mtls_port: int) -> None:
        self.proc = proc
        self.ssl_port = ssl_port
        self.mtls_port = mtls_port

    @property
    def ssl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.ssl_port}"

    @property
    def mtls_bootstrap(self) -> str:
        return f"127.0.0.1:{self.mtls_port}"

    def log(self) -> str:
        return self.proc.log_path.read_text(errors="replace")


def start_debug(proc: BrokerProcess) -> BrokerProcess:
    """Start with DEBUG logging (the principal of each TLS connection is logged there)."""
    old = os.environ.get("PYBROKER_LOG_LEVEL")
    os.environ["PYBROKER_LOG_LEVEL"] = "DEBUG"
    try:
        return proc.start()
    finally:
        if old is None:
            del os.environ["PYBROKER_LOG_LEVEL"]
        else:
            os.environ["PYBROKER_LOG_LEVEL"] = old


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory, certs: CertSet) -> Iterator[TlsBroker]:
    plain, ssl_port, mtls_port = free_port(), free_port(), free_port()
    ports = {"PLAINTEXT": plain, "SSL": ssl_port, "MTLS": mtls_port}
    data = tmp_path_factory.mktemp("tls-broker") / "data"
    proc = BrokerProcess(data, ssl_overrides(certs, ports), port=plain)
    start_debug(proc)
    try:
        yield TlsBroker(proc, ssl_port, mtls_port)
    finally:
        proc.stop()


def topic_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --------------------------------------------------------------------- raw TLS helpers

API_VERSIONS_V0 = struct.pack(">ihhih", 2 + 2 + 4 + 2 + 1, 18, 0, 7, 1) + b"t"


def client_context(certs: CertSet, with_cert: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(certs.ca_cert))
    if with_cert:
        ctx.load_cert_chain(str(certs.client_cert), str(certs.client_key))
    return ctx


def tls_api_versions(port: int, ctx: ssl.SSLContext) -> bytes:
    """ApiVersions v0 over TLS; the raw response body (b"" if the broker closed)."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s,
    ):
        s.sendall(API_VERSIONS_V0)
        head = _recv_exact(s, 4)
        if len(head) < 4:
            return b""
        return _recv_exact(s, struct.unpack(">i", head)[0])


def _recv_exact(s: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def wait_log(broker: TlsBroker, needle: str, start: int, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = broker.log()[start:]
        if needle in new:
            return new
        time.sleep(0.1)
    raise AssertionError(f"{needle!r} not in the broker log:\n{broker.log()[start:][-3000:]}")


# --------------------------------------------------------------------- clients


def confluent_roundtrip(
    bootstrap: str, conf: dict[str, str], count: int = 200, topic: str | None = None
) -> None:
    settings = {"bootstrap.servers": bootstrap, **conf}
    clients.confluent_roundtrip(settings, topic or topic_name("confluent-tls"), count)


def test_ssl_listener_principal_is_the_dn_or_anonymous(
    tls_broker: TlsBroker, certs: CertSet
) -> None:
    """SSL (client auth requested, DEFAULT rules): the certificate's RFC 2253 DN, and
    ANONYMOUS for a client without a certificate."""
    start = len(tls_broker.log())
    assert tls_api_versions(tls_broker.ssl_port, client_context(certs, True))
    wait_log(tls_broker, "on SSL: principal User:CN=alice,OU=clients,O=pybroker,C=US", start)
    start = len(tls_broker.log())
    assert tls_api_versions(tls_broker.ssl_port, client_context(certs, False))
    wait_log(tls_broker, "on SSL: principal User:ANONYMOUS", start)


def test_mtls_without_a_client_certificate_fails(tls_broker: TlsBroker, certs: CertSet) -> None:
    start = len(tls_broker.log())
    try:
        answer = tls_api_versions(tls_broker.mtls_port, client_context(certs, False))
    except (ssl.SSLError, ConnectionError):
        answer = b""
    assert answer == b"", "the broker answered a client without a certificate on MTLS"
    new = wait_log(tls_broker, "Failed authentication", start)
    assert new.count("Failed authentication") == 1
    # ...and the listener still serves a client with a certificate.
    assert tls_api_versions(tls_broker.mtls_port, client_context(certs, True))


def test_plaintext_client_on_the_tls_port_is_closed(tls_broker: TlsBroker, certs: CertSet) -> None:
    start = len(tls_broker.log())
    with socket.create_connection(("127.0.0.1", tls_broker.ssl_port), timeout=10) as s:
        me = f"127.0.0.1:{s.getsockname()[1]}"
        s.sendall(API_VERSIONS_V0)
        got = b""
        try:
            while chunk := s.recv(4096):
                got += chunk
        except ConnectionResetError:
            pass
    # Whatever came back (a TLS alert at most) is no Kafka response to correlation id 7.
    assert struct.pack(">i", 7) not in got[4:8]
    new = wait_log(tls_broker, "Failed authentication", start)
    time.sleep(0.5)
    new = tls_broker.log()[start:]
    about_it = [ln for ln in new.splitlines() if me in ln or "Traceback" in ln]
    assert len(about_it) == 1, about_it
    assert "Failed authentication with /" + me in about_it[0]
    assert not [ln for ln in new.splitlines() if " WARNING " in ln or " ERROR " in ln]
    # The broker keeps serving TLS clients.
    assert tls_api_versions(tls_broker.ssl_port, client_context(certs, False))


def test_a_stalled_handshake_times_out(tls_broker: TlsBroker) -> None:
    """A client that connects and sends nothing holds no TLS slot forever."""
    start = len(tls_broker.log())
    with socket.create_connection(("127.0.0.1", tls_broker.ssl_port), timeout=10) as s:
        s.settimeout(HANDSHAKE_TIMEOUT_S + 5)
        began = time.monotonic()
        try:
            assert s.recv(1) == b""
        except ConnectionResetError:
            pass
        waited = time.monotonic() - began
    assert HANDSHAKE_TIMEOUT_S - 1 <= waited <= HANDSHAKE_TIMEOUT_S + 5
    new = wait_log(tls_broker, "Failed authentication", start)
    assert "SSL handshake is taking longer" in new


def test_java_console_tools_over_mtls(
    tls_broker: TlsBroker, certs: CertSet, tmp_path: Path
) -> None:
    """Kafka's own Java client: PKCS12 key store, PEM trust store, mTLS listener."""
    topic = topic_name("java-tls")
    props = tmp_path / "client.properties"
    props.write_text(
        "security.protocol=SSL\n"
        "ssl.truststore.type=PEM\n"
        f"ssl.truststore.location={certs.ca_cert}\n"
        "ssl.keystore.type=PKCS12\n"
        f"ssl.keystore.location={certs.client_p12}\n"
        f"ssl.keystore.password={PASSWORD}\n"
    )
    values = [f"java-{i}" for i in range(20)]
    console_roundtrip(tls_broker.mtls_bootstrap, topic, values, props)


# --------------------------------------------------------------------- start-up


def broker_with_ssl(tmp: Path, extra: dict[str, str]) -> tuple[BrokerProcess, int]:
    """A broker (not started) with PLAINTEXT and SSL listeners; returns it and its SSL port."""
    plain, ssl_port = free_port(), free_port()
    listeners = f"PLAINTEXT://127.0.0.1:{plain},SSL://127.0.0.1:{ssl_port}"
    proc = BrokerProcess(
        tmp / "data", {"listeners": listeners, "advertised.listeners": listeners, **extra}, plain
    )
    return proc, ssl_port


@pytest.mark.parametrize("store", ["pem-inline", "pem-file", "pkcs12"])
def test_every_key_store_shape_serves_tls(certs: CertSet, tmp_path: Path, store: str) -> None:
    if store == "pem-inline":
        # As in a properties file with line continuations: the newlines are gone.
        extra = {
            "ssl.keystore.type": "PEM",
            "ssl.keystore.key": " ".join(certs.broker_key.read_text().splitlines()),
            "ssl.keystore.certificate.chain": " ".join(certs.broker_cert.read_text().splitlines()),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.certificates": certs.ca_cert.read_text(),
        }
    elif store == "pem-file":
        extra = {
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(certs.broker_pem_store),
            "ssl.key.password": PASSWORD,
        }
    else:
        extra = {
            "ssl.keystore.location": str(certs.broker_p12),  # JKS, Kafka's default type
            "ssl.keystore.password": PASSWORD,
        }
    proc, ssl_port = broker_with_ssl(tmp_path, extra)
    proc.start()
    try:
        body = tls_api_versions(ssl_port, client_context(certs, False))
        assert struct.unpack(">ih", body[:6]) == (7, 0)  # correlation id, error none
    finally:
        proc.stop()


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (
            {"ssl.keystore.type": "PKCS12", "ssl.keystore.password": "wrong-password"},
            "the password is wrong",
        ),
        (
            {"ssl.keystore.type": "PEM", "ssl.key.password": "wrong-password"},
            "ssl.key.password) is wrong",
        ),
    ],
)
def test_wrong_key_store_password_refuses_start_up(
    certs: CertSet, tmp_path: Path, extra: dict[str, str], needle: str
) -> None:
    location = (
        certs.broker_p12 if extra["ssl.keystore.type"] == "PKCS12" else certs.broker_pem_store
    )
    proc, _ = broker_with_ssl(tmp_path, {"ssl.keystore.location": str(location), **extra})
    (tmp_path / "data").mkdir(parents=True)
    done = subprocess.run(
        proc.command(), capture_output=True, text=True, timeout=60, check=False, cwd=ROOT
    )
    assert done.returncode == 1
    errors = [ln for ln in done.stderr.splitlines() if " ERROR " in ln or "Traceback" in ln]
    assert len(errors) == 1, done.stderr
    assert "Cannot start: Invalid SSL configuration for listener SSL" in errors[0]
    assert needle in errors[0]


def test_the_mapped_principal_is_what_the_authorizer_sees(certs: CertSet, tmp_path: Path) -> None:
    """super.users=User:ALICE (the MTLS rule's mapping of CN=alice,...): ALICE may write;
    an SSL client without a certificate (User:ANONYMOUS) may not."""
    plain, ssl_port, mtls_port = free_port(), free_port(), free_port()
    overrides = {
        **ssl_overrides(certs, {"PLAINTEXT": plain, "SSL": ssl_port, "MTLS": mtls_port}),
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": "User:ALICE",
        "allow.everyone.if.no.acl.found": "false",
    }
    proc = BrokerProcess(tmp_path / "data", overrides, port=plain)
    proc.start()
    try:
        topic = topic_name("authz-tls")
        alice = {
            "security.protocol": "SSL",
            "ssl.ca.location": str(certs.ca_cert),
            "ssl.certificate.location": str(certs.client_cert),
            "ssl.key.location": str(certs.client_key),
        }
        confluent_roundtrip(f"127.0.0.1:{mtls_port}", alice, count=20, topic=topic)
        anonymous = Producer(
            {
                "bootstrap.servers": f"127.0.0.1:{ssl_port}",
                "security.protocol": "SSL",
                "ssl.ca.location": str(certs.ca_cert),
                "message.timeout.ms": 10000,
            }
        )
        errors: list[str] = []
        anonymous.produce(topic, b"x", on_delivery=lambda e, m: errors.append(e and e.name()))
        anonymous.flush(15)
        assert errors == ["TOPIC_AUTHORIZATION_FAILED"]
    finally:
        proc.stop()


# --------------------------------------------------------------------- reload


def served_certificate(port: int, certs: CertSet) -> bytes:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        client_context(certs, False).wrap_socket(raw, server_hostname="127.0.0.1") as s,
    ):
        der = s.getpeercert(binary_form=True)
    assert der is not None
    return der


def alter_broker(bootstrap: str, conf: dict[str, str], configs: dict[str, str]) -> None:
    """IncrementalAlterConfigs (SET) on broker 0; raises the broker's error."""
    from confluent_kafka.admin import (
        AdminClient,
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        ResourceType,
    )

    admin = AdminClient({"bootstrap.servers": bootstrap, **conf})
    resource = ConfigResource(
        ResourceType.BROKER,
        "0",
        incremental_configs=[
            ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
            for k, v in configs.items()
        ],
    )
    admin.incremental_alter_configs([resource])[resource].result(timeout=15)


def test_key_store_reload_without_restart(certs: CertSet, tmp_path: Path) -> None:
    """Kafka's dynamic listener.name.<l>.ssl.keystore.location: new connections get the new
    certificate, the broker keeps running; a certificate for another name is refused."""
    from confluent_kafka import KafkaException

    proc, ssl_port = broker_with_ssl(
        tmp_path,
        {
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": str(certs.broker_p12),
            "ssl.keystore.password": PASSWORD,
        },
    )
    proc.start()
    try:
        before = served_certificate(ssl_port, certs)
        assert before == ssl.PEM_cert_to_DER_cert(certs.broker_cert.read_text())
        rotated, rotated_cert = another_broker_store(certs, "rotated")
        ssl_conf = {"security.protocol": "SSL", "ssl.ca.location": str(certs.ca_cert)}
        alter_broker(
            f"127.0.0.1:{ssl_port}",
            ssl_conf,
            {"listener.name.ssl.ssl.keystore.location": str(rotated)},
        )
        after = served_certificate(ssl_port, certs)
        assert after == ssl.PEM_cert_to_DER_cert(rotated_cert.read_text())
        assert "Reloaded the SSL key and trust stores of listener SSL" in proc.log_tail(200)

        other, _ = another_broker_store(certs, "impostor", "/C=US/O=pybroker/CN=other")
        with pytest.raises(KafkaException, match="DistinguishedName or SubjectAltNames"):
            alter_broker(
                proc.bootstrap, {}, {"listener.name.ssl.ssl.keystore.location": str(other)}
            )
        with pytest.raises(KafkaException, match="Cannot update these configs dynamically"):
            alter_broker(proc.bootstrap, {}, {"ssl.keystore.location": str(other)})
        assert served_certificate(ssl_port, certs) == after
        confluent_roundtrip(f"127.0.0.1:{ssl_port}", ssl_conf, count=50)
    finally:
        proc.stop()


# --------------------------------------------------------------------- cluster


def test_three_brokers_replicate_over_ssl(certs: CertSet, tmp_path: Path) -> None:
    cluster = Cluster(
        tmp_path,
        3,
        overrides={
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SSL:SSL",
            "inter.broker.listener.name": "SSL",
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": str(certs.broker_p12),
            "ssl.keystore.password": PASSWORD,
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(certs.ca_cert),
            "ssl.client.auth": "required",
            "offsets.topic.num.partitions": "3",
        },
    )
    ssl_ports: dict[int, int] = {}
    for broker_id, b in cluster.brokers.items():
        ssl_ports[broker_id] = free_port()
        listeners = f"PLAINTEXT://127.0.0.1:{b.port},SSL://127.0.0.1:{ssl_ports[broker_id]}"
        b.overrides["listeners"] = listeners
        b.overrides["advertised.listeners"] = listeners
    try:
        cluster.start()
        topic = topic_name("ssl-replicated")
        cluster.create_topic(topic, 1, 3, {"min.insync.replicas": "2"})
        cluster.wait_for_isr(topic, 0, {1, 2, 3})
        bootstrap = ",".join(f"127.0.0.1:{p}" for p in ssl_ports.values())
        confluent_roundtrip(
            bootstrap,
            {
                "security.protocol": "SSL",
                "ssl.ca.location": str(certs.ca_cert),
                "ssl.certificate.location": str(certs.client_cert),
                "ssl.key.location": str(certs.client_key),
            },
            count=300,
            topic=topic,
        )
        view = cluster.wait_for_isr(topic, 0, {1, 2, 3})
        assert view.leader in (1, 2, 3)
        for b in cluster.brokers.values():
            assert "Failed authentication" not in b.log_tail(400)
    finally:
        cluster.stop()
