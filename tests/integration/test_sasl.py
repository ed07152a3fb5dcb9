"""SASL listeners (issue 12, SASL): Kafka's Java tools authenticate with PLAIN, SCRAM-SHA-256,
SCRAM-SHA-512 and OAUTHBEARER and produce and consume (the other clients' round trips over
SASL_PLAINTEXT and SASL_SSL are in test_security_matrix.py); wrong passwords, unknown
mechanisms and requests sent before authenticating are refused the way Kafka refuses them;
SCRAM users are managed with AlterUserScramCredentials (confluent-kafka's admin and Kafka's
kafka-configs); a three-broker cluster replicates over SASL_PLAINTEXT with SCRAM.

The module broker has a PLAINTEXT listener and a SASL_PLAINTEXT listener offering all three
mechanisms; PLAIN users come from the listener's JAAS line, SCRAM users are created by the
``scram_users`` fixture through the SASL listener itself (authenticated as the PLAIN admin).
"""

from __future__ import annotations

import json
import struct
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

from pybroker.protocol import scram
from tests.support import clients
from tests.support.broker import ROOT, BrokerProcess, free_port
from tests.support.cluster import Cluster
from tests.support.kafka_ref import console_roundtrip, run_tool
from tests.support.wire import (
    ConnectionClosed,
    KafkaWire,
    decode_api_versions_v0,
    frame,
    request_module,
)

JS_DIR = ROOT / "tests" / "js"
PLAIN_JAAS = (
    "org.apache.kafka.common.security.plain.PlainLoginModule required "
    'username="admin" password="admin-secret" '
    'user_admin="admin-secret" user_alice="alice-secret";'
)
MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
# mechanism -> (user, password): PLAIN's from the JAAS line, SCRAM's made by scram_users.
USERS = {
    "PLAIN": ("alice", "alice-secret"),
    "SCRAM-SHA-256": ("scram256", "s256-secret"),
    "SCRAM-SHA-512": ("scram512", "s512-secret"),
}
DELAY_MS = 300  # connection.failed.authentication.delay.ms, long enough to measure


def topic_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class SaslBroker:
    def __init__(self, proc: BrokerProcess, sasl_port: int) -> None:
        self.proc = proc
        self.sasl_port = sasl_port

    @property
    def sasl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.sasl_port}"

    def log(self) -> str:
        return self.proc.log_path.read_text(errors="replace")


def sasl_overrides(ports: dict[str, int]) -> dict[str, str]:
    listeners = ",".join(f"{name}://127.0.0.1:{port}" for name, port in ports.items())
    return {
        "listeners": listeners,
        "advertised.listeners": listeners,
        "sasl.enabled.mechanisms": ",".join([*MECHANISMS, "OAUTHBEARER"]),
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": PLAIN_JAAS,
        "connection.failed.authentication.delay.ms": str(DELAY_MS),
    }


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SaslBroker]:
    root = tmp_path_factory.mktemp("sasl")
    b = BrokerProcess(root / "data")
    sasl_port = free_port()
    b.overrides.update(sasl_overrides({"PLAINTEXT": b.port, "SASL_PLAINTEXT": sasl_port}))
    b.start()
    try:
        yield SaslBroker(b, sasl_port)
    finally:
        b.stop()


def client_conf(broker: SaslBroker, mechanism: str, user: str, password: str) -> dict[str, str]:
    return {
        "bootstrap.servers": broker.sasl_bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": mechanism,
        "sasl.username": user,
        "sasl.password": password,
    }


def admin_as_plain_admin(broker: SaslBroker) -> AdminClient:
    return AdminClient(client_conf(broker, "PLAIN", "admin", "admin-secret"))


@pytest.fixture(scope="module")
def scram_users(sasl_broker: SaslBroker) -> dict[str, tuple[str, str]]:
    """The SCRAM users, created over the SASL listener with confluent-kafka's admin."""
    admin = admin_as_plain_admin(sasl_broker)
    upserts = [
        UserScramCredentialUpsertion(
            USERS[m][0],
            ScramCredentialInfo(getattr(ScramMechanism, m.replace("-", "_")), 4096 * (i + 1)),
            USERS[m][1].encode(),
        )
        for i, m in enumerate(MECHANISMS[1:])
    ]
    for user, fut in admin.alter_user_scram_credentials(upserts).items():
        fut.result(30)
        assert user in (USERS["SCRAM-SHA-256"][0], USERS["SCRAM-SHA-512"][0])
    return USERS


# --------------------------------------------------------------------- clients


def confluent_roundtrip(conf: dict[str, str], count: int = 200) -> None:
    clients.confluent_roundtrip(conf, topic_name("confluent-sasl"), count)


def run_kafkajs(config: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        ["node", str(JS_DIR / "sasl.js"), json.dumps(config)],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=JS_DIR,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, f"no result from kafkajs:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(lines[-1][len("RESULT ") :])


def test_kafkajs_wrong_password_is_refused(sasl_broker: SaslBroker, scram_users: dict) -> None:
    result = run_kafkajs(
        {
            "brokers": sasl_broker.sasl_bootstrap,
            "mechanism": "scram-sha-256",
            "username": USERS["SCRAM-SHA-256"][0],
            "password": "wrong",
            "expect_auth_failure": True,
        }
    )
    assert result["error"] is not None
    assert "SASL SCRAM SHA256 authentication failed" in result["error"], result


def java_client_properties(tmp_path: Path, mechanism: str, user: str, password: str) -> Path:
    module = (
        "org.apache.kafka.common.security.plain.PlainLoginModule"
        if mechanism == "PLAIN"
        else "org.apache.kafka.common.security.scram.ScramLoginModule"
    )
    path = tmp_path / f"client-{mechanism}.properties"
    path.write_text(
        "security.protocol=SASL_PLAINTEXT\n"
        f"sasl.mechanism={mechanism}\n"
        f'sasl.jaas.config={module} required username="{user}" password="{password}";\n'
    )
    return path


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_java_console_tools(
    sasl_broker: SaslBroker, scram_users: dict, mechanism: str, tmp_path: Path
) -> None:
    user, password = scram_users[mechanism]
    props = java_client_properties(tmp_path, mechanism, user, password)
    topic = topic_name("java-sasl")
    values = [f"java-{i}" for i in range(20)]
    console_roundtrip(sasl_broker.sasl_bootstrap, topic, values, props)


# ------------------------------------------------------------- SCRAM credentials


def test_kafka_configs_manages_scram_users(
    sasl_broker: SaslBroker, scram_users: dict, tmp_path: Path
) -> None:
    """kafka-configs --alter/--describe/--delete-config --entity-type users, then the new
    user authenticates, and after the deletion it no longer does."""
    admin_props = java_client_properties(tmp_path, "PLAIN", "admin", "admin-secret")
    common = [
        "--bootstrap-server",
        sasl_broker.sasl_bootstrap,
        "--command-config",
        str(admin_props),
    ]
    # One mechanism per command: Kafka 4.1 itself answers DUPLICATE_RESOURCE ("A user
    # credential cannot be altered twice in the same request") to both in one request.
    for config in (
        "SCRAM-SHA-256=[iterations=8192,password=carol-secret]",
        "SCRAM-SHA-512=[password=carol-512]",
    ):
        run_tool(
            "kafka-configs",
            *common,
            "--alter",
            "--add-config",
            config,
            "--entity-type",
            "users",
            "--entity-name",
            "carol",
            timeout=90,
        ).check()
    # (kafka-configs --describe --entity-type users also needs DescribeClientQuotas, which
    # this broker does not serve yet: the credentials are described through the admin API.)
    admin = admin_as_plain_admin(sasl_broker)
    infos = admin.describe_user_scram_credentials(["carol"])["carol"].result(30)
    assert sorted((i.mechanism.name, i.iterations) for i in infos.scram_credential_infos) == [
        ("SCRAM_SHA_256", 8192),
        ("SCRAM_SHA_512", 4096),
    ]

    confluent_roundtrip(client_conf(sasl_broker, "SCRAM-SHA-256", "carol", "carol-secret"), 20)
    confluent_roundtrip(client_conf(sasl_broker, "SCRAM-SHA-512", "carol", "carol-512"), 20)

    run_tool(
        "kafka-configs",
        *common,
        "--alter",
        "--delete-config",
        "SCRAM-SHA-256",
        "--entity-type",
        "users",
        "--entity-name",
        "carol",
    ).check()
    with KafkaWire(port=sasl_broker.sasl_port) as w:
        assert handshake(w, "SCRAM-SHA-256").error_code == 0
        resp, _ = scram_exchange(w, "SCRAM-SHA-256", "carol", "carol-secret")
        assert resp.error_code == 58
    confluent_roundtrip(client_conf(sasl_broker, "SCRAM-SHA-512", "carol", "carol-512"), 20)


def test_describe_and_delete_through_confluent_admin(
    sasl_broker: SaslBroker, scram_users: dict
) -> None:
    admin = admin_as_plain_admin(sasl_broker)
    futures = admin.describe_user_scram_credentials(["scram256", "scram512"])
    got = {user: f.result(30) for user, f in futures.items()}
    assert {
        u: [(i.mechanism.name, i.iterations) for i in d.scram_credential_infos]
        for u, d in got.items()
    } == {
        "scram256": [("SCRAM_SHA_256", 4096)],
        "scram512": [("SCRAM_SHA_512", 8192)],
    }
    # A temporary user: created, used, deleted, refused.
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096)
    admin.alter_user_scram_credentials(
        [UserScramCredentialUpsertion("temp", info, b"temp-secret")]
    )["temp"].result(30)
    confluent_roundtrip(client_conf(sasl_broker, "SCRAM-SHA-256", "temp", "temp-secret"), 10)
    admin.alter_user_scram_credentials(
        [UserScramCredentialDeletion("temp", ScramMechanism.SCRAM_SHA_256)]
    )["temp"].result(30)
    with pytest.raises(KafkaException) as err:
        admin.describe_user_scram_credentials(["temp"])["temp"].result(30)
    assert "RESOURCE_NOT_FOUND" in str(err.value) or "does not exist" in str(err.value)
    with KafkaWire(port=sasl_broker.sasl_port) as w:
        handshake(w, "SCRAM-SHA-256")
        resp, _ = scram_exchange(w, "SCRAM-SHA-256", "temp", "temp-secret")
        assert resp.error_code == 58


def test_credentials_survive_a_restart(sasl_broker: SaslBroker, scram_users: dict) -> None:
    """Single node: the credentials live in the local metadata store (a file)."""
    stored = json.loads((sasl_broker.proc.data_dir / "pybroker-entity-configs.json").read_text())
    cred = stored["users"]["scram256"]["SCRAM-SHA-256"]
    assert cred.startswith("salt=") and "stored_key=" in cred and cred.endswith("iterations=4096")
    assert "s256-secret" not in json.dumps(stored)
    sasl_broker.proc.restart()
    confluent_roundtrip(client_conf(sasl_broker, "SCRAM-SHA-256", *USERS["SCRAM-SHA-256"]), 10)


# --------------------------------------------------------------------- refusals (raw wire)


def handshake(w: KafkaWire, mechanism: str, version: int = 1) -> Any:
    return w.request(request_module(17, version).SaslHandshakeRequest(mechanism=mechanism))


def authenticate(w: KafkaWire, token: bytes, version: int = 2) -> Any:
    return w.request(request_module(36, version).SaslAuthenticateRequest(auth_bytes=token))


def scram_exchange(w: KafkaWire, mechanism: str, user: str, password: str) -> tuple[Any, Any]:
    """Client-first, then (if the server answered) client-final: (last response, client)."""
    client = scram.ScramClient(mechanism, user, password)
    first = authenticate(w, client.first())
    if first.error_code != 0:
        return first, client
    return authenticate(w, client.final(bytes(first.auth_bytes))), client


def metadata_request() -> Any:
    return request_module(3, 12).MetadataRequest(
        topics=None, allow_auto_topic_creation=False, include_topic_authorized_operations=False
    )


def assert_closed(w: KafkaWire) -> None:
    with pytest.raises(ConnectionClosed):
        w.request(metadata_request())


def test_wrong_password_fails_after_the_delay_and_closes(
    sasl_broker: SaslBroker, scram_users: dict
) -> None:
    bystander = KafkaWire(port=sasl_broker.sasl_port)
    try:
        handshake(bystander, "PLAIN")
        assert authenticate(bystander, b"\0alice\0alice-secret").error_code == 0
        with KafkaWire(port=sasl_broker.sasl_port) as w:
            assert handshake(w, "PLAIN").error_code == 0
            start = time.monotonic()
            resp = authenticate(w, b"\0alice\0wrong")
            took = time.monotonic() - start
            assert resp.error_code == 58
            assert resp.error_message == "Authentication failed: Invalid username or password"
            assert took >= DELAY_MS / 1000 * 0.9
            assert_closed(w)
        for mechanism in MECHANISMS[1:]:
            with KafkaWire(port=sasl_broker.sasl_port) as w:
                handshake(w, mechanism)
                resp, _ = scram_exchange(w, mechanism, USERS[mechanism][0], "wrong")
                assert resp.error_code == 58
                assert resp.error_message == (
                    "Authentication failed during authentication due to invalid credentials "
                    f"with SASL mechanism {mechanism}"
                )
                assert_closed(w)
        # The authenticated connection next to them is unaffected.
        assert bystander.request(metadata_request()).brokers
    finally:
        bystander.close()


def test_confluent_wrong_password_reports_authentication_failure(
    sasl_broker: SaslBroker, scram_users: dict
) -> None:
    errors: list[Any] = []
    conf = client_conf(sasl_broker, "SCRAM-SHA-512", USERS["SCRAM-SHA-512"][0], "nope")
    producer = Producer({**conf, "error_cb": errors.append})
    deadline = time.monotonic() + 15
    while not errors and time.monotonic() < deadline:
        producer.poll(0.2)
    assert errors, "no error reported"
    assert errors[0].name() == "_AUTHENTICATION"
    assert (
        "SASL_AUTHENTICATION_FAILED" in errors[0].str()
        or "Authentication failed" in errors[0].str()
    )


def test_unknown_mechanism_lists_the_enabled_ones_and_closes(sasl_broker: SaslBroker) -> None:
    with KafkaWire(port=sasl_broker.sasl_port) as w:
        resp = handshake(w, "GSSAPI")
        assert resp.error_code == 33
        # Kafka lists its mechanisms in its HashMap's order.
        assert list(resp.mechanisms) == ["PLAIN", "SCRAM-SHA-512", "SCRAM-SHA-256", "OAUTHBEARER"]
        assert_closed(w)


def test_request_before_authentication_closes_the_connection(sasl_broker: SaslBroker) -> None:
    with KafkaWire(port=sasl_broker.sasl_port) as w:
        start = time.monotonic()
        assert_closed(w)
        assert time.monotonic() - start < DELAY_MS / 1000  # closed at once, no delay
    with KafkaWire(port=sasl_broker.sasl_port) as w:  # after the handshake, Kafka answers
        handshake(w, "PLAIN")  # the request's error response (ILLEGAL_SASL_STATE), then closes
        start = time.monotonic()
        answer = w.request(
            request_module(3, 12).MetadataRequest(
                topics=[request_module(3, 12).MetadataRequestTopic(name="t", topic_id=None)],
                allow_auto_topic_creation=False,
                include_topic_authorized_operations=False,
            )
        )
        assert [(t.name, t.error_code) for t in answer.topics] == [("t", 34)]  # ILLEGAL_SASL_STATE
        assert time.monotonic() - start >= DELAY_MS / 1000 * 0.9  # after the failure delay
        assert_closed(w)
    # ApiVersions is allowed first, once (plus retries after an unsupported version).
    with KafkaWire(port=sasl_broker.sasl_port) as w:
        w.send_raw(frame(struct.pack(">hhih", 18, 99, 7, -1) + b"\0"))
        too_new = decode_api_versions_v0(w.recv_frame())
        assert too_new.body.error_code == 35  # UNSUPPORTED_VERSION: the client retries lower
        versions = w.api_versions()
        assert versions[17] == (0, 1) and versions[36] == (0, 2)
        handshake(w, "PLAIN")
        assert authenticate(w, b"\0alice\0alice-secret").error_code == 0
        assert w.request(metadata_request()).brokers


def test_large_requests_wait_for_authentication(sasl_broker: SaslBroker, scram_users: dict) -> None:
    """sasl.server.max.receive.size (512 KiB): a bigger frame before authentication closes
    the connection; once authenticated, socket.request.max.bytes is the limit again."""
    with KafkaWire(port=sasl_broker.sasl_port) as w:
        handshake(w, "PLAIN")
        w.send_raw(struct.pack(">i", 600_000) + b"\0" * 600_000)
        with pytest.raises(ConnectionClosed):
            w.recv_frame()
    conf = client_conf(sasl_broker, "PLAIN", *USERS["PLAIN"])
    topic = topic_name("sasl-large")
    producer = Producer({**conf, "acks": "all"})
    big = b"z" * 700_000
    producer.produce(topic, big)
    assert producer.flush(30) == 0
    consumer = Consumer({**conf, "group.id": topic, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    deadline = time.monotonic() + 30
    got = None
    try:
        while got is None and time.monotonic() < deadline:
            m = consumer.poll(0.5)
            if m is not None and m.error() is None:
                got = m.value()
    finally:
        consumer.close()
    assert got == big


def test_v0_handshake_exchanges_raw_tokens(sasl_broker: SaslBroker, scram_users: dict) -> None:
    """KIP-43 clients: after SaslHandshake v0 the tokens travel as bare size-prefixed frames."""

    def raw(w: KafkaWire, token: bytes) -> bytes:
        w.send_raw(struct.pack(">i", len(token)) + token)
        return w.recv_frame()

    with KafkaWire(port=sasl_broker.sasl_port) as w:
        assert handshake(w, "SCRAM-SHA-256", version=0).error_code == 0
        user, password = USERS["SCRAM-SHA-256"]
        client = scram.ScramClient("SCRAM-SHA-256", user, password)
        server_first = raw(w, client.first())
        client.verify_server_final(raw(w, client.final(server_first)))
        assert w.request(metadata_request()).brokers
    with KafkaWire(port=sasl_broker.sasl_port) as w:
        assert handshake(w, "PLAIN", version=0).error_code == 0
        assert raw(w, b"\0alice\0alice-secret") == b""  # PLAIN: an empty answer frame
        assert w.request(metadata_request()).brokers
    with KafkaWire(port=sasl_broker.sasl_port) as w:
        assert handshake(w, "PLAIN", version=0).error_code == 0
        w.send_raw(struct.pack(">i", 12) + b"\0alice\0wrong")
        with pytest.raises(ConnectionClosed):
            w.recv_frame()


def test_plaintext_listener_answers_illegal_sasl_state(sasl_broker: SaslBroker) -> None:
    with KafkaWire(port=sasl_broker.proc.port) as w:
        assert handshake(w, "PLAIN").error_code == 34
        resp = authenticate(w, b"\0alice\0alice-secret")
        assert resp.error_code == 34
        assert resp.error_message == (
            "SaslAuthenticate request received after successful authentication"
        )
    with KafkaWire(port=sasl_broker.sasl_port) as w:  # and after authenticating
        handshake(w, "PLAIN")
        authenticate(w, b"\0admin\0admin-secret")
        assert handshake(w, "PLAIN").error_code == 34


def test_principal_is_the_authenticated_user(tmp_path: Path) -> None:
    """The authenticated connection's principal is User:<name>: with an authorizer and
    super.users=User:admin, admin may create a topic and alice may not."""
    from confluent_kafka.admin import NewTopic

    b = BrokerProcess(tmp_path / "data")
    sasl_port = free_port()
    b.overrides.update(sasl_overrides({"PLAINTEXT": b.port, "SASL_PLAINTEXT": sasl_port}))
    b.overrides["authorizer.class.name"] = "kafka.security.authorizer.AclAuthorizer"
    b.overrides["super.users"] = "User:admin"
    b.start()
    try:
        outcomes = {}
        for user in ("alice", "admin"):
            admin = AdminClient(
                client_conf(SaslBroker(b, sasl_port), "PLAIN", user, f"{user}-secret")
            )
            topic = f"principal-{user}"
            try:
                admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(15)
                outcomes[user] = "created"
            except KafkaException as exc:
                outcomes[user] = exc.args[0].name()
        assert outcomes == {"alice": "TOPIC_AUTHORIZATION_FAILED", "admin": "created"}
    finally:
        b.stop()


# ------------------------------------------------------------------ OAUTHBEARER


def unsecured_jws(subject: str, lifetime_s: float = 3600, **claims: Any) -> str:
    """Kafka's development tokens: alg none, no signature."""
    import base64

    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    now = time.time()
    body = {"sub": subject, "iat": now, "exp": now + lifetime_s, **claims}
    return f"{part({'alg': 'none'})}.{part(body)}."


def test_oauthbearer_java_console_tools(sasl_broker: SaslBroker, tmp_path: Path) -> None:
    props = tmp_path / "oauth.properties"
    props.write_text(
        "security.protocol=SASL_PLAINTEXT\n"
        "sasl.mechanism=OAUTHBEARER\n"
        "sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule "
        'required unsecuredLoginStringClaim_sub="alice";\n'
    )
    topic = topic_name("java-oauth")
    values = [f"java-oauth-{i}" for i in range(10)]
    console_roundtrip(sasl_broker.sasl_bootstrap, topic, values, props)


def test_oauthbearer_refusals(sasl_broker: SaslBroker) -> None:
    """An expired token gets Kafka's JSON challenge, then SASL_AUTHENTICATION_FAILED; a
    valid one's session lifetime is the token's remaining life (KIP-368)."""
    with KafkaWire(port=sasl_broker.sasl_port) as w:
        handshake(w, "OAUTHBEARER")
        expired = unsecured_jws("alice", lifetime_s=-60)
        challenge = authenticate(w, f"n,,\x01auth=Bearer {expired}\x01\x01".encode())
        assert (challenge.error_code, challenge.auth_bytes) == (0, b'{"status":"invalid_token"}')
        resp = authenticate(w, b"\x01")
        assert (resp.error_code, resp.error_message) == (58, '{"status":"invalid_token"}')
        assert_closed(w)
    with KafkaWire(port=sasl_broker.sasl_port) as w:
        handshake(w, "OAUTHBEARER")
        token = unsecured_jws("alice", lifetime_s=600)
        resp = authenticate(w, f"n,,\x01auth=Bearer {token}\x01\x01".encode())
        assert resp.error_code == 0
        assert 590 <= resp.session_lifetime.total_seconds() <= 600
        assert w.request(metadata_request()).brokers


# ------------------------------------------------------------------ re-authentication


def test_sessions_expire_without_reauthentication(tmp_path: Path) -> None:
    """KIP-368: SaslAuthenticate v1+ carries the session lifetime; a connection that does
    not re-authenticate in time is closed at its next request; one that does goes on."""
    b = BrokerProcess(tmp_path / "data")
    sasl_port = free_port()
    b.overrides.update(sasl_overrides({"PLAINTEXT": b.port, "SASL_PLAINTEXT": sasl_port}))
    b.overrides["connections.max.reauth.ms"] = "3000"
    b.start()
    try:
        with KafkaWire(port=sasl_port) as stale, KafkaWire(port=sasl_port) as fresh:
            for w in (stale, fresh):
                handshake(w, "PLAIN")
                resp = authenticate(w, b"\0alice\0alice-secret", version=1)
                assert resp.error_code == 0
                assert resp.session_lifetime.total_seconds() == 3.0
            assert stale.request(metadata_request()).brokers
            time.sleep(1.5)
            assert handshake(fresh, "PLAIN").error_code == 0  # re-authenticate
            assert authenticate(fresh, b"\0alice\0alice-secret", version=2).error_code == 0
            time.sleep(2.0)
            assert_closed(stale)
            assert fresh.request(metadata_request()).brokers
        with KafkaWire(port=sasl_port) as w:  # re-authenticating as someone else fails
            handshake(w, "PLAIN")
            authenticate(w, b"\0alice\0alice-secret", version=2)
            handshake(w, "PLAIN")
            resp = authenticate(w, b"\0admin\0admin-secret", version=2)
            assert resp.error_code == 58
            assert "Cannot change principals during re-authentication" in resp.error_message
        expired_before = b.log_path.read_text().count("SASL session of")
        assert expired_before == 1  # the stale connection above
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096)
        admin.alter_user_scram_credentials(
            [UserScramCredentialUpsertion("reauth", info, b"reauth-secret")]
        )["reauth"].result(30)
        # librdkafka re-authenticates by itself (KIP-368): a producer busy for more than
        # two session lifetimes keeps its connection, which the broker never expires.
        producer = Producer(
            {
                "bootstrap.servers": f"127.0.0.1:{sasl_port}",
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": "SCRAM-SHA-256",
                "sasl.username": "reauth",
                "sasl.password": "reauth-secret",
                "acks": "all",
            }
        )
        topic = topic_name("reauth")
        end = time.monotonic() + 7.5
        sent = 0
        while time.monotonic() < end:
            producer.produce(topic, f"r{sent}".encode())
            sent += 1
            assert producer.flush(10) == 0
            time.sleep(0.25)
        assert sent > 20
        assert b.log_path.read_text().count("SASL session of") == expired_before
    finally:
        b.stop()


# --------------------------------------------------------------------- cluster


def scram_cluster(tmp_path: Path, broker_password: dict[int, str]) -> tuple[Cluster, dict]:
    cluster = Cluster(
        tmp_path,
        3,
        overrides={
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
            "inter.broker.listener.name": "SASL_PLAINTEXT",
            "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256",
            "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-256",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config": PLAIN_JAAS,
            "replica.fetch.backoff.ms": "200",
            "replica.lag.time.max.ms": "3000",
        },
    )
    sasl_ports: dict[int, int] = {}
    for broker_id, b in cluster.brokers.items():
        sasl_ports[broker_id] = free_port()
        listeners = (
            f"PLAINTEXT://127.0.0.1:{b.port},SASL_PLAINTEXT://127.0.0.1:{sasl_ports[broker_id]}"
        )
        b.overrides["listeners"] = listeners
        b.overrides["advertised.listeners"] = listeners
        b.overrides["listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config"] = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="broker" password="{broker_password[broker_id]}";'
        )
    return cluster, sasl_ports


def create_broker_user(bootstrap: str) -> None:
    admin = AdminClient(
        {
            "bootstrap.servers": bootstrap,
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "PLAIN",
            "sasl.username": "admin",
            "sasl.password": "admin-secret",
        }
    )
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096)
    admin.alter_user_scram_credentials(
        [UserScramCredentialUpsertion("broker", info, b"broker-secret")]
    )["broker"].result(30)


def zk_read(cluster: Cluster, path: str, changes_path: str) -> tuple[bytes, list[dict]]:
    """A znode's data and every config change notification, read with kazoo."""
    from kazoo.client import KazooClient

    zk = KazooClient(hosts=cluster.zk.connect)
    zk.start(timeout=10)
    try:
        data, _ = zk.get(path)
        changes = [
            json.loads(zk.get(f"{changes_path}/{name}")[0])
            for name in zk.get_children(changes_path)
        ]
    finally:
        zk.stop()
        zk.close()
    return data, changes


def test_three_brokers_replicate_over_sasl_scram(tmp_path: Path) -> None:
    """The broker user is created through broker 1 (stored in ZooKeeper as Kafka's ZK mode
    stored it), then all three replicate over SASL_PLAINTEXT authenticating with SCRAM."""
    cluster, sasl_ports = scram_cluster(
        tmp_path, {1: "broker-secret", 2: "broker-secret", 3: "broker-secret"}
    )
    try:
        cluster.start()
        create_broker_user(f"127.0.0.1:{sasl_ports[1]}")
        user_znode, changes = zk_read(cluster, "/config/users/broker", "/config/changes")
        config = json.loads(user_znode)["config"]
        assert config["SCRAM-SHA-256"].startswith("salt=")
        assert config["SCRAM-SHA-256"].endswith(",iterations=4096")
        assert {"version": 2, "entity_path": "users/broker"} in changes
        topic = topic_name("sasl-replicated")
        cluster.create_topic(topic, 1, 3, {"min.insync.replicas": "2"})
        cluster.wait_for_isr(topic, 0, {1, 2, 3})
        bootstrap = ",".join(f"127.0.0.1:{p}" for p in sasl_ports.values())
        confluent_roundtrip(
            {
                "bootstrap.servers": bootstrap,
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": "SCRAM-SHA-256",
                "sasl.username": "broker",
                "sasl.password": "broker-secret",
            },
            300,
        )
        cluster.wait_for_isr(topic, 0, {1, 2, 3})
        for b in cluster.brokers.values():
            assert "SASL authentication to broker" not in b.log_tail(400)
    finally:
        cluster.stop()


def test_three_brokers_replicate_with_oauthbearer(tmp_path: Path) -> None:
    """Inter-broker OAUTHBEARER: each broker mints Kafka's unsecured token for itself from
    its login module's unsecuredLoginStringClaim_sub, as Kafka's brokers do."""
    cluster = Cluster(
        tmp_path,
        3,
        overrides={
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
            "inter.broker.listener.name": "SASL_PLAINTEXT",
            "sasl.enabled.mechanisms": "OAUTHBEARER",
            "sasl.mechanism.inter.broker.protocol": "OAUTHBEARER",
            "listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config": (
                "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required "
                'unsecuredLoginStringClaim_sub="broker";'
            ),
            "replica.fetch.backoff.ms": "200",
        },
    )
    ports: dict[int, int] = {}
    for broker_id, b in cluster.brokers.items():
        ports[broker_id] = free_port()
        listeners = f"PLAINTEXT://127.0.0.1:{b.port},SASL_PLAINTEXT://127.0.0.1:{ports[broker_id]}"
        b.overrides["listeners"] = listeners
        b.overrides["advertised.listeners"] = listeners
    try:
        cluster.start()
        topic = topic_name("oauth-replicated")
        cluster.create_topic(topic, 1, 3, {"min.insync.replicas": "3"})
        cluster.wait_for_isr(topic, 0, {1, 2, 3})
        confluent_roundtrip(
            {
                "bootstrap.servers": ",".join(f"127.0.0.1:{p}" for p in ports.values()),
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": "OAUTHBEARER",
                "enable.sasl.oauthbearer.unsecure.jwt": "true",
                "sasl.oauthbearer.config": "principal=alice",
            },
            100,
        )
        cluster.wait_for_isr(topic, 0, {1, 2, 3})
    finally:
        cluster.stop()


def test_follower_with_a_wrong_password_cannot_join(tmp_path: Path) -> None:
    cluster, sasl_ports = scram_cluster(
        tmp_path, {1: "broker-secret", 2: "broker-secret", 3: "wrong"}
    )
    try:
        cluster.start()
        create_broker_user(f"127.0.0.1:{sasl_ports[1]}")
        topic = topic_name("sasl-wrong-password")
        cluster.create_topic(topic, 3, 3, {})
        led_by_others = [p for p in range(3) if cluster.partition(topic, p).leader != 3]
        assert led_by_others
        producer = Producer(
            {
                "bootstrap.servers": ",".join(f"127.0.0.1:{p}" for p in sasl_ports.values()),
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": "PLAIN",
                "sasl.username": "admin",
                "sasl.password": "admin-secret",
                "acks": "1",
            }
        )
        for i in range(60):
            producer.produce(topic, f"v{i}".encode(), partition=i % 3)
        assert producer.flush(30) == 0

        def out_of_sync() -> bool:
            return all(3 not in cluster.partition(topic, p).isr for p in led_by_others)

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not out_of_sync():
            time.sleep(0.5)
        assert out_of_sync()
        time.sleep(1.0)
        assert out_of_sync()  # and it does not come back
        log = cluster.brokers[3].log_tail(400)
        assert "SASL authentication to broker" in log
        assert "Authentication failed during authentication due to invalid credentials" in log
    finally:
        cluster.stop()


# --------------------------------------------------------------------- SASL_SSL


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.support.tls_certs import make_certs

    return make_certs(tmp_path_factory.mktemp("sasl-certs"))


def tls_overrides(certs: Any) -> dict[str, str]:
    from tests.support.tls_certs import PASSWORD

    return {
        "ssl.keystore.type": "PKCS12",
        "ssl.keystore.location": str(certs.broker_p12),
        "ssl.keystore.password": PASSWORD,
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(certs.ca_cert),
    }


def test_three_brokers_replicate_over_sasl_ssl(tmp_path: Path, certs: Any) -> None:
    """The issue's secured cluster: SASL_SSL between brokers, SCRAM-SHA-512 credentials."""
    cluster = Cluster(
        tmp_path,
        3,
        overrides={
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL",
            "inter.broker.listener.name": "SASL_SSL",
            "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-512",
            "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
            "listener.name.sasl_ssl.plain.sasl.jaas.config": PLAIN_JAAS,
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required "
                'username="broker" password="broker-secret";'
            ),
            "replica.fetch.backoff.ms": "200",
            **tls_overrides(certs),
        },
    )
    ports: dict[int, int] = {}
    for broker_id, b in cluster.brokers.items():
        ports[broker_id] = free_port()
        listeners = f"PLAINTEXT://127.0.0.1:{b.port},SASL_SSL://127.0.0.1:{ports[broker_id]}"
        b.overrides["listeners"] = listeners
        b.overrides["advertised.listeners"] = listeners
    try:
        cluster.start()
        admin = AdminClient({"bootstrap.servers": cluster.brokers[1].bootstrap})
        info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096)
        admin.alter_user_scram_credentials(
            [UserScramCredentialUpsertion("broker", info, b"broker-secret")]
        )["broker"].result(30)
        topic = topic_name("sasl-ssl-replicated")
        cluster.create_topic(topic, 1, 3, {"min.insync.replicas": "2"})
        cluster.wait_for_isr(topic, 0, {1, 2, 3})
        confluent_roundtrip(
            {
                "bootstrap.servers": ",".join(f"127.0.0.1:{p}" for p in ports.values()),
                "security.protocol": "SASL_SSL",
                "ssl.ca.location": str(certs.ca_cert),
                "sasl.mechanism": "SCRAM-SHA-512",
                "sasl.username": "broker",
                "sasl.password": "broker-secret",
            },
            300,
        )
        cluster.wait_for_isr(topic, 0, {1, 2, 3})
    finally:
        cluster.stop()
