"""Delegation tokens (KIP-48) end to end: Kafka's own tools create, renew, describe and
expire tokens on a SASL_PLAINTEXT broker; Kafka's console producer and consumer then
authenticate with a token (SCRAM with ``tokenauth=true``) as the token's owner; a token
connection may not manage tokens; an expired token no longer authenticates, and the
expiry check removes tokens past their expiry from the local metadata store.

librdkafka (confluent-kafka, kcat), kafka-python, aiokafka and kafkajs cannot send SCRAM
extensions, so only the Java client and our wire client speak ``tokenauth=true``.
"""

from __future__ import annotations

import base64
import json
import re
import ssl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kazoo.client import KazooClient

from tests.support import delegation_tokens as dt
from tests.support.broker import BrokerProcess, free_port
from tests.support.cluster import Cluster
from tests.support.kafka_ref import console_roundtrip, run_tool
from tests.support.wire import ConnectionClosed, KafkaWire

SECRET = "integration-token-secret"
USERS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}
TOKEN_FILE = "pybroker-delegation-tokens.json"
SCRAM = "org.apache.kafka.common.security.scram.ScramLoginModule"


class TokenBroker:
    def __init__(self, proc: BrokerProcess, sasl_port: int) -> None:
        self.proc = proc
        self.sasl_port = sasl_port

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.sasl_port}"

    def stored(self) -> dict[str, Any]:
        path = self.proc.data_dir / TOKEN_FILE
        return json.loads(path.read_text()) if path.exists() else {}


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenBroker]:
    root = tmp_path_factory.mktemp("tokens")
    proc = BrokerProcess(root / "data")
    sasl_port = free_port()
    listeners = f"PLAINTEXT://127.0.0.1:{proc.port},SASL_PLAINTEXT://127.0.0.1:{sasl_port}"
    proc.overrides.update(
        {
            "listeners": listeners,
            "advertised.listeners": listeners,
            "sasl.enabled.mechanisms": "SCRAM-SHA-256,SCRAM-SHA-512",
            "delegation.token.secret.key": SECRET,
            "delegation.token.expiry.check.interval.ms": "300",
        }
    )
    proc.start()
    try:
        for user, password in USERS.items():
            for mech in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
                dt.add_scram_user(proc.port, user, password, mech)
        yield TokenBroker(proc, sasl_port)
    finally:
        proc.stop()


def client_properties(tmp_path: Path, name: str, user: str, password: str, token: bool) -> Path:
    path = tmp_path / f"{name}.properties"
    extra = " tokenauth=true" if token else ""
    path.write_text(
        "security.protocol=SASL_PLAINTEXT\n"
        "sasl.mechanism=SCRAM-SHA-256\n"
        f'sasl.jaas.config={SCRAM} required username="{user}" password="{password}"{extra};\n'
    )
    return path


def tokens_tool(broker: TokenBroker, config: Path, *args: str) -> str:
    result = run_tool(
        "kafka-delegation-tokens",
        "--bootstrap-server",
        broker.bootstrap,
        "--command-config",
        str(config),
        *args,
        timeout=90,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_tools_create_and_clients_authenticate_with_the_token(
    broker: TokenBroker, tmp_path: Path
) -> None:
    alice = client_properties(tmp_path, "alice", "alice", USERS["alice"], token=False)
    out = tokens_tool(
        broker, alice, "--create", "--max-life-time-period", "-1", "--renewer-principal", "User:bob"
    )
    token_id = re.search(r"tokenId : (\S+)", out)
    assert token_id is not None, out
    tid = token_id.group(1)
    row = next(line.split() for line in out.splitlines() if line.startswith(tid + " "))
    hmac_b64 = row[1]
    assert row[2] == "User:alice" and "User:bob" in out
    # HMAC = HmacSHA512(secret, token id), as Kafka computes it.
    from pybroker.broker.delegation_tokens import create_hmac

    assert base64.b64decode(hmac_b64) == create_hmac(tid, SECRET)
    assert broker.stored()[tid]["owner"] == "User%3Aalice"

    # Kafka's console clients authenticate with the token (SCRAM, tokenauth=true).
    token_conf = client_properties(tmp_path, "token", tid, hmac_b64, token=True)
    topic = f"token-{uuid.uuid4().hex[:8]}"
    values = [f"v{i}" for i in range(10)]
    console_roundtrip(broker.bootstrap, topic, values, token_conf)

    # The renewer renews, the owner describes, a token connection cannot create tokens.
    bob = client_properties(tmp_path, "bob", "bob", USERS["bob"], token=False)
    renewed = tokens_tool(broker, bob, "--renew", "--hmac", hmac_b64, "--renew-time-period", "-1")
    assert "Completed renew operation" in renewed, renewed
    described = tokens_tool(broker, alice, "--describe", "--owner-principal", "User:alice")
    assert tid in described and hmac_b64 in described
    denied = run_tool(
        "kafka-delegation-tokens",
        "--bootstrap-server",
        broker.bootstrap,
        "--command-config",
        str(token_conf),
        "--create",
        "--max-life-time-period",
        "-1",
        timeout=90,
    )
    assert "DelegationTokenDisabledException" not in denied.stdout + denied.stderr
    assert "Delegation Token requests are not allowed" in denied.stdout + denied.stderr

    # Expire at once: the token is gone and no longer authenticates.
    expired = tokens_tool(
        broker, alice, "--expire", "--hmac", hmac_b64, "--expiry-time-period", "-1"
    )
    assert "Completed expire operation" in expired, expired
    assert tid not in broker.stored()
    with KafkaWire(port=broker.sasl_port) as w:
        resp = dt.token_login(w, tid, base64.b64decode(hmac_b64))
        assert resp.error_code == 58
        assert "invalid credentials with SASL mechanism SCRAM-SHA-256" in resp.error_message


def login(broker: TokenBroker, user: str) -> KafkaWire:
    w = KafkaWire(port=broker.sasl_port)
    assert dt.scram_login(w, "SCRAM-SHA-512", user, USERS[user]).error_code == 0
    return w


def test_owner_renewer_and_stranger(broker: TokenBroker) -> None:
    with (
        login(broker, "alice") as alice,
        login(broker, "bob") as bob,
        login(broker, "carol") as carol,
    ):
        token = dt.token_request(alice, dt.create(renewers=("User:bob",), max_lifetime_ms=600_000))
        assert token.error_code == 0
        assert token.max_timestamp - token.issue_timestamp == 600_000
        assert token.expiry_timestamp == token.max_timestamp  # capped by the max lifetime
        assert dt.token_request(carol, dt.renew(token.hmac, 1000)).error_code == 63  # mismatch
        assert dt.token_request(carol, dt.expire(token.hmac, 1000)).error_code == 63
        before = int(time.time() * 1000)
        renewed = dt.token_request(bob, dt.renew(token.hmac, 5000))
        assert renewed.error_code == 0
        assert before + 5000 <= renewed.expiry_timestamp <= int(time.time() * 1000) + 5000
        assert dt.token_request(alice, dt.renew(b"\x00" * 64)).error_code == 62  # not found
        bad = dt.token_request(alice, dt.create(renewers=("Group:g",)))
        assert bad.error_code == 67  # INVALID_PRINCIPAL_TYPE
        mine = dt.token_request(bob, dt.describe(["User:alice"]))
        assert token.token_id in {t.token_id for t in mine.tokens}  # bob renews it
        assert dt.token_request(bob, dt.describe([])).tokens == ()

        # The token authenticates as alice; its expiry bounds the session.
        with KafkaWire(port=broker.sasl_port) as tw:
            ok = dt.token_login(tw, token.token_id, token.hmac, "SCRAM-SHA-512")
            assert ok.error_code == 0
            lifetime_ms = ok.session_lifetime.total_seconds() * 1000
            assert 0 < lifetime_ms <= 5000
            refused = dt.token_request(tw, dt.describe(None))
            assert refused.error_code == 64  # DELEGATION_TOKEN_REQUEST_NOT_ALLOWED

        # Expire in 1 ms: the token expires, the expiry check removes it.
        assert dt.token_request(alice, dt.expire(token.hmac, 1)).error_code == 0
        deadline = time.monotonic() + 10
        while token.token_id in broker.stored() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert token.token_id not in broker.stored()
        assert dt.token_request(alice, dt.renew(token.hmac, 1000)).error_code == 62


def test_plaintext_is_not_allowed(broker: TokenBroker) -> None:
    with KafkaWire(port=broker.proc.port) as w:
        resp = dt.token_request(w, dt.create())
        assert resp.error_code == 64
        assert (resp.principal_name, resp.issue_timestamp) == ("ANONYMOUS", -1)
        assert dt.token_request(w, dt.describe(None)).error_code == 64


def test_tokens_survive_a_restart(broker: TokenBroker) -> None:
    with login(broker, "alice") as alice:
        token = dt.token_request(alice, dt.create())
    broker.proc.restart()
    with KafkaWire(port=broker.sasl_port) as w:
        assert dt.token_login(w, token.token_id, token.hmac).error_code == 0
    with KafkaWire(port=broker.sasl_port) as w:
        assert dt.token_login(w, token.token_id, b"\x01" * 64).error_code == 58
        with pytest.raises(ConnectionClosed):
            dt.token_request(w, dt.describe(None))


# ------------------------------------------------------------------------- ACLs

AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
USER_RESOURCE, TOKEN_RESOURCE = 7, 6
CREATE_TOKENS, DESCRIBE_TOKENS, DESCRIBE = 13, 14, 8


def grant(port: int, principal: str, rtype: int, name: str, op: int) -> None:
    """CreateAcls (LITERAL, ALLOW, any host) as the PLAINTEXT super user."""
    from pybroker.protocol.codec import build
    from tests.support.wire import request_module

    creation = dict(
        resource_type=rtype,
        resource_name=name,
        resource_pattern_type=3,
        principal=principal,
        host="*",
        operation=op,
        permission_type=3,
    )
    req = build(request_module(30, 3).CreateAclsRequest, creations=[creation])
    with KafkaWire(port=port) as w:
        assert [r.error_code for r in w.request(req).results] == [0]


@pytest.fixture(scope="module")
def acl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenBroker]:
    root = tmp_path_factory.mktemp("tokens-acl")
    proc = BrokerProcess(root / "data")
    sasl_port = free_port()
    listeners = f"PLAINTEXT://127.0.0.1:{proc.port},SASL_PLAINTEXT://127.0.0.1:{sasl_port}"
    proc.overrides.update(
        {
            "listeners": listeners,
            "advertised.listeners": listeners,
            "sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "delegation.token.secret.key": SECRET,
            "authorizer.class.name": AUTHORIZER,
            "super.users": "User:ANONYMOUS",  # the PLAINTEXT set-up connection
        }
    )
    proc.start()
    try:
        for user, password in USERS.items():
            dt.add_scram_user(proc.port, user, password, "SCRAM-SHA-512")
        yield TokenBroker(proc, sasl_port)
    finally:
        proc.stop()


def test_acls_for_other_owners_and_describing(acl_broker: TokenBroker) -> None:
    b = acl_broker
    with login(b, "alice") as alice, login(b, "bob") as bob:
        own = dt.token_request(alice, dt.create())
        assert own.error_code == 0  # one's own tokens need no ACL
        refused = dt.token_request(alice, dt.create(owner="User:carol"))
        assert refused.error_code == 65  # DELEGATION_TOKEN_AUTHORIZATION_FAILED
        assert (refused.principal_name, refused.token_requester_principal_name) == (
            "carol",
            "alice",
        )
        grant(b.proc.port, "User:alice", USER_RESOURCE, "User:carol", CREATE_TOKENS)
        for_carol = dt.token_request(alice, dt.create(owner="User:carol"))
        assert for_carol.error_code == 0
        assert (for_carol.principal_name, for_carol.token_requester_principal_name) == (
            "carol",
            "alice",
        )

        def seen_by_bob() -> set[str]:
            return {t.token_id for t in dt.token_request(bob, dt.describe(None)).tokens}

        assert seen_by_bob() == set()  # neither owner, requester nor renewer
        grant(b.proc.port, "User:bob", USER_RESOURCE, "User:carol", DESCRIBE_TOKENS)
        assert seen_by_bob() == {for_carol.token_id}
        grant(b.proc.port, "User:bob", TOKEN_RESOURCE, own.token_id, DESCRIBE)
        assert seen_by_bob() == {for_carol.token_id, own.token_id}
        # The requester (KIP-373) sees the token it asked for.
        mine = {t.token_id for t in dt.token_request(alice, dt.describe(None)).tokens}
        assert mine == {own.token_id, for_carol.token_id}
        # The token made for carol authenticates as carol.
        with KafkaWire(port=b.sasl_port) as tw:
            resp = dt.token_login(tw, for_carol.token_id, for_carol.hmac, "SCRAM-SHA-512")
            assert resp.error_code == 0


# ---------------------------------------------------------------------- cluster


def test_cluster_tokens_live_in_zookeeper(tmp_path: Path) -> None:
    """A token created through one broker authenticates on the other; Kafka's znodes."""
    cluster = Cluster(
        tmp_path,
        2,
        overrides={
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "sasl.enabled.mechanisms": "SCRAM-SHA-256",
            "delegation.token.secret.key": SECRET,
        },
    )
    sasl: dict[int, int] = {}
    for broker_id, b in cluster.brokers.items():
        sasl[broker_id] = free_port()
        listeners = f"PLAINTEXT://127.0.0.1:{b.port},SASL_PLAINTEXT://127.0.0.1:{sasl[broker_id]}"
        b.overrides["listeners"] = listeners
        b.overrides["advertised.listeners"] = listeners
    try:
        cluster.start()
        dt.add_scram_user(cluster.brokers[1].port, "alice", USERS["alice"])
        with KafkaWire(port=sasl[1]) as w:
            assert dt.scram_login(w, "SCRAM-SHA-256", "alice", USERS["alice"]).error_code == 0
            token = dt.token_request(w, dt.create(renewers=("User:bob",)))
            assert token.error_code == 0
        zk = KazooClient(hosts=cluster.zk.connect)
        zk.start(timeout=15)
        try:
            raw, _ = zk.get(f"/delegation_token/tokens/{token.token_id}")
            stored = json.loads(raw)
            assert stored["owner"] == "User%3Aalice" and stored["renewers"] == ["User%3Abob"]
            assert stored["version"] == 3 and stored["tokenId"] == token.token_id
            changes = zk.get_children("/delegation_token/token_changes")
            datas = {zk.get(f"/delegation_token/token_changes/{c}")[0] for c in changes}
            assert any(c.startswith("token_change_") for c in changes)
            assert token.token_id.encode() in datas
        finally:
            zk.stop()
            zk.close()
        with KafkaWire(port=sasl[2]) as w:
            assert dt.token_login(w, token.token_id, token.hmac).error_code == 0
        with KafkaWire(port=sasl[2]) as w:
            assert dt.scram_login(w, "SCRAM-SHA-256", "alice", USERS["alice"]).error_code == 0
            assert dt.token_request(w, dt.expire(token.hmac, -1)).error_code == 0
        with KafkaWire(port=sasl[1]) as w:
            assert dt.token_login(w, token.token_id, token.hmac).error_code == 58
    finally:
        cluster.stop()


# -------------------------------------------------------------------------- TLS


def tls_wire(port: int, ctx: ssl.SSLContext) -> KafkaWire:
    w = KafkaWire(port=port)
    w.sock = ctx.wrap_socket(w.sock, server_hostname="127.0.0.1")
    return w


def test_ssl_needs_a_client_certificate(tmp_path: Path) -> None:
    """One-way SSL (principal ANONYMOUS) may not ask for tokens; mTLS may, as the
    certificate's principal."""
    from tests.support.tls_certs import PASSWORD, make_certs

    certs = make_certs(tmp_path / "certs")
    proc = BrokerProcess(tmp_path / "data")
    ssl_port = free_port()
    listeners = f"PLAINTEXT://127.0.0.1:{proc.port},SSL://127.0.0.1:{ssl_port}"
    proc.overrides.update(
        {
            "listeners": listeners,
            "advertised.listeners": listeners,
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": str(certs.broker_p12),
            "ssl.keystore.password": PASSWORD,
            "ssl.truststore.type": "PKCS12",
            "ssl.truststore.location": str(certs.ca_p12),
            "ssl.truststore.password": PASSWORD,
            "ssl.client.auth": "requested",
            "delegation.token.secret.key": SECRET,
        }
    )
    proc.start()
    try:
        anonymous = ssl.create_default_context(cafile=str(certs.ca_cert))
        with tls_wire(ssl_port, anonymous) as w:
            assert dt.token_request(w, dt.create()).error_code == 64
        mutual = ssl.create_default_context(cafile=str(certs.ca_cert))
        mutual.load_cert_chain(str(certs.client_cert), str(certs.client_key))
        with tls_wire(ssl_port, mutual) as w:
            made = dt.token_request(w, dt.create())
            assert made.error_code == 0
            assert made.principal_name == "CN=alice,OU=clients,O=pybroker,C=US"
            assert dt.token_request(w, dt.renew(made.hmac, 1000)).error_code == 0
    finally:
        proc.stop()
