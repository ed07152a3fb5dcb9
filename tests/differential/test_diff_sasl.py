"""SaslHandshake (17), SaslAuthenticate (36) and the SCRAM credential APIs (50, 51) vs Kafka 4.1.

On the shared PLAINTEXT pair: what Kafka's KafkaApis answers outside authentication
(ILLEGAL_SASL_STATE) and every validation rule of Describe/AlterUserScramCredentials. On a
pair started here with SASL_PLAINTEXT listeners (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) on
both brokers: the authentication exchanges themselves, including refusals and closing.
"""

from __future__ import annotations

import base64
import json
import secrets
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pybroker.protocol import scram
from tests.differential.helpers import Cases
from tests.support.broker import BrokerProcess, free_port
from tests.support.differential import (
    CLOSED,
    DifferentialPair,
    record_behaviour,
    record_comparison,
    request_for,
)
from tests.support.kafka_ref import KafkaReference
from tests.support.wire import ConnectionClosed, KafkaWire

HANDSHAKE, AUTHENTICATE, DESCRIBE, ALTER = 17, 36, 50, 51
PLAIN_JAAS = (
    "org.apache.kafka.common.security.plain.PlainLoginModule required "
    'username="admin" password="admin-secret" user_admin="admin-secret" '
    'user_alice="alice-secret";'
)
SCRAM_JAAS = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
OAUTH_JAAS = (
    "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required "
    'unsecuredLoginStringClaim_sub="admin";'
)
# Kafka keeps a user's credentials in a map keyed by the ScramMechanism enum, whose identity
# hash changes from JVM to JVM: the order of credential_infos is unspecified.
UNORDERED = ("credential_infos",)


@pytest.fixture(scope="module")
def pair(
    differential_brokers: tuple[BrokerProcess, KafkaReference],
) -> Iterator[DifferentialPair]:
    ours, kafka = differential_brokers
    with DifferentialPair(ours.port, kafka.port) as p:
        yield p


# ------------------------------------------------------------------ on PLAINTEXT


def test_sasl_requests_outside_authentication(pair: DifferentialPair) -> None:
    cases = Cases(pair)
    for v in (0, 1):
        cases.compare(
            f"sasl-handshake-plaintext-v{v}", request_for(HANDSHAKE, v, mechanism="PLAIN")
        )
    for v in (0, 1, 2):
        cases.compare(
            f"sasl-authenticate-plaintext-v{v}",
            request_for(AUTHENTICATE, v, auth_bytes=b"\0alice\0alice-secret"),
        )
    cases.check()


def upsert(name: str, mech: int = 1, iterations: int = 4096, salted: bytes | None = None) -> dict:
    return {
        "name": name,
        "mechanism": mech,
        "iterations": iterations,
        "salt": secrets.token_bytes(16),
        "salted_password": secrets.token_bytes(32) if salted is None else salted,
    }


def alter(deletions: list[dict] | None = None, upsertions: list[dict] | None = None) -> Any:
    return request_for(ALTER, 0, deletions=deletions or [], upsertions=upsertions or [])


def describe(*names: str | None) -> Any:
    users = None if names == (None,) else [{"name": n} for n in names]
    return request_for(DESCRIBE, 0, users=users)


def settle(pair: DifferentialPair, tag: str) -> None:
    """Kafka applies SCRAM changes to its brokers' metadata after AlterUserScramCredentials
    answers, so a describe right after may see the old state (more so on a loaded
    machine). Metadata is applied in log order: once a sentinel user written after the
    changes is visible, they are too. The same sentinel goes to pybroker, so that
    describing every user stays comparable."""
    name = f"dsasl-settle-{tag}"
    request = alter(upsertions=[upsert(name)])
    for side in ("ours", "kafka"):
        answer = pair.ask(side, request)
        assert [int(r.error_code) for r in answer.results] == [0], (side, answer)
    deadline = time.monotonic() + 30
    while True:
        (result,) = pair.ask("kafka", describe(name)).results
        if int(result.error_code) == 0 and result.credential_infos:
            return
        assert time.monotonic() < deadline, f"Kafka never showed {name}: {result}"
        time.sleep(0.05)


def test_scram_credential_apis(pair: DifferentialPair) -> None:
    p = "dsasl-"
    cases = Cases(pair)
    cases.compare("scram-describe-none-yet", describe(f"{p}nobody"))
    cases.compare(
        "scram-alter-create", alter(upsertions=[upsert(f"{p}a"), upsert(f"{p}b", 2, 8192)])
    )
    cases.compare("scram-alter-second-mechanism", alter(upsertions=[upsert(f"{p}a", 2, 16384)]))
    cases.compare(
        "scram-alter-twice-in-a-request",
        alter(upsertions=[upsert(f"{p}c"), upsert(f"{p}c", 2)]),
    )
    cases.compare(
        "scram-alter-delete-and-upsert-same-user",
        alter(deletions=[{"name": f"{p}a", "mechanism": 1}], upsertions=[upsert(f"{p}a")]),
    )
    cases.compare(
        "scram-alter-invalid",
        alter(
            upsertions=[
                upsert(f"{p}few", iterations=100),
                upsert(f"{p}many", iterations=20_000),
                upsert(f"{p}mech", mech=3),
                upsert(""),
                upsert(f"{p}zero", mech=0),
                upsert(f"{p}max", iterations=16384),
                upsert(f"{p}min", iterations=4095),
            ]
        ),
    )
    cases.compare(
        "scram-alter-empty-salted-password", alter(upsertions=[upsert(f"{p}e", salted=b"")])
    )
    cases.compare(
        "scram-alter-delete-missing",
        alter(
            deletions=[
                {"name": f"{p}nobody", "mechanism": 1},
                {"name": f"{p}b", "mechanism": 1},
                {"name": "", "mechanism": 1},
                {"name": f"{p}x", "mechanism": 7},
            ]
        ),
    )
    settle(pair, "1")
    cases.compare(
        "scram-describe-some",
        describe(f"{p}a", f"{p}b", f"{p}nobody", f"{p}b", ""),
        unordered=UNORDERED,
    )
    cases.compare("scram-describe-all", describe(None), unordered=UNORDERED)
    cases.compare("scram-describe-empty-list", describe(), unordered=UNORDERED)
    cases.compare("scram-alter-delete", alter(deletions=[{"name": f"{p}b", "mechanism": 2}]))
    settle(pair, "2")
    cases.compare("scram-describe-after-delete", describe(f"{p}b"))
    cases.compare("scram-alter-empty", alter())
    cases.check()


# ------------------------------------------------------------------ on SASL listeners


class SaslPair:
    def __init__(self, ours: int, kafka: int, ours_plain: int, kafka_plain: int) -> None:
        self.ports = {"ours": ours, "kafka": kafka}
        self.plain_ports = {"ours": ours_plain, "kafka": kafka_plain}


def sasl_settings(listener_ports: dict[str, int]) -> dict[str, str]:
    listeners = ",".join(f"{n}://127.0.0.1:{p}" for n, p in listener_ports.items())
    return {
        "listeners": listeners,
        "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512,OAUTHBEARER",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": PLAIN_JAAS,
        "listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config": OAUTH_JAAS,
        "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config": SCRAM_JAAS,
        "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config": SCRAM_JAAS,
    }


@pytest.fixture(scope="module")
def sasl_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SaslPair]:
    root: Path = tmp_path_factory.mktemp("diff-sasl")
    ours = BrokerProcess(root / "ours" / "data")
    ours_sasl = free_port()
    settings = sasl_settings({"PLAINTEXT": ours.port, "SASL_PLAINTEXT": ours_sasl})
    ours.overrides.update({**settings, "advertised.listeners": settings["listeners"]})
    kafka = KafkaReference(root / "kafka" / "data")
    kafka_sasl = free_port()
    ksettings = sasl_settings(
        {
            "PLAINTEXT": kafka.port,
            "CONTROLLER": kafka.controller_port,
            "SASL_PLAINTEXT": kafka_sasl,
        }
    )
    kafka.overrides = {
        **ksettings,
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{kafka.port},"
        f"SASL_PLAINTEXT://127.0.0.1:{kafka_sasl}",
        "listener.security.protocol.map": (
            "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT"
        ),
    }
    ours.start()
    try:
        kafka.start()
        try:
            yield SaslPair(ours_sasl, kafka_sasl, ours.port, kafka.port)
        finally:
            kafka.stop()
    finally:
        ours.stop()


def handshake_req(mechanism: str, v: int = 1) -> Any:
    return request_for(HANDSHAKE, v, mechanism=mechanism)


def auth_req(token: bytes, v: int = 2) -> Any:
    return request_for(AUTHENTICATE, v, auth_bytes=token)


def run_both(pair: SaslPair, steps: list[Any], plain: bool = False) -> list[tuple[Any, Any, Any]]:
    """Send the requests in order on one fresh connection per broker: (request, ours, kafka),
    CLOSED once a broker has closed the connection."""
    out = []
    answers: dict[str, list[Any]] = {}
    ports = pair.plain_ports if plain else pair.ports
    for side, port in ports.items():
        got: list[Any] = []
        with KafkaWire(port=port) as w:
            for step in steps:
                request = step(w, got) if callable(step) else step
                try:
                    got.append(w.request(request))
                except ConnectionClosed:
                    got.append(CLOSED)
                    break
        answers[side] = got + [CLOSED] * (len(steps) - len(got))
    for i, step in enumerate(steps):
        request = step(None, []) if callable(step) else step
        out.append((request, answers["ours"][i], answers["kafka"][i]))
    return out


def compare_steps(
    cases: Cases, name: str, results: list[tuple[Any, Any, Any]], volatile: tuple = ()
) -> None:
    """Each step's answer; a Metadata step only as answered/closed (its brokers differ)."""
    for i, (request, ours, kafka) in enumerate(results):
        if ours is CLOSED or kafka is CLOSED or int(type(request).__api_key__) == 3:
            cases.add(
                record_behaviour(
                    f"{name}-step{i}-closed",
                    int(type(request).__api_key__),
                    int(type(request).__version__),
                    "closed" if ours is CLOSED else "answered",
                    "closed" if kafka is CLOSED else "answered",
                )
            )
        else:
            cases.add(record_comparison(f"{name}-step{i}", request, ours, kafka, volatile=volatile))


def metadata() -> Any:
    return request_for(3, 12, topics=[], allow_auto_topic_creation=False)


def create_scram_user(pair: SaslPair, name: str, password: str, mech: str) -> None:
    salt = secrets.token_bytes(16)
    salted = scram.salted_password(mech, password, salt, 4096)
    type_id = scram.MECHANISMS[mech][3]
    req = alter(
        upsertions=[
            {
                "name": name,
                "mechanism": type_id,
                "iterations": 4096,
                "salt": salt,
                "salted_password": salted,
            }
        ]
    )
    for port in pair.plain_ports.values():
        with KafkaWire(port=port) as w:
            (result,) = w.request(req).results
            assert result.error_code == 0


def unsecured_jws(claims: dict[str, Any]) -> str:
    def part(obj: dict[str, Any]) -> str:
        raw = json.dumps(obj).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part(claims)}."


def test_sasl_exchanges(sasl_pair: SaslPair) -> None:
    cases = Cases(None)  # type: ignore[arg-type]  # steps are recorded, not sent by Cases
    for v in (0, 1):
        compare_steps(
            cases,
            f"sasl-unknown-mechanism-v{v}",
            run_both(sasl_pair, [handshake_req("NOPE", v), metadata()]),
        )
    for v in (0, 1, 2):
        compare_steps(
            cases,
            f"sasl-plain-ok-v{v}",
            run_both(
                sasl_pair,
                [
                    handshake_req("PLAIN"),
                    auth_req(b"\0alice\0alice-secret", v),
                    handshake_req("PLAIN", 1),
                ],
            ),
        )
        compare_steps(
            cases,
            f"sasl-plain-wrong-password-v{v}",
            run_both(sasl_pair, [handshake_req("PLAIN"), auth_req(b"\0alice\0bad", v), metadata()]),
        )
    compare_steps(
        cases,
        "sasl-plain-malformed",
        run_both(sasl_pair, [handshake_req("PLAIN"), auth_req(b"alice-secret")]),
    )
    compare_steps(
        cases,
        "sasl-plain-authzid-differs",
        run_both(sasl_pair, [handshake_req("PLAIN"), auth_req(b"admin\0alice\0alice-secret")]),
    )
    compare_steps(cases, "sasl-request-before-handshake", run_both(sasl_pair, [metadata()]))
    for mech in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
        create_scram_user(sasl_pair, "dsasl-user", "right", mech)
        compare_steps(
            cases,
            f"sasl-{mech.lower()}-unknown-user",
            run_both(sasl_pair, [handshake_req(mech), auth_req(b"n,,n=nobody,r=abcdefghijkl")]),
        )
        compare_steps(
            cases,
            f"sasl-{mech.lower()}-malformed-first",
            run_both(sasl_pair, [handshake_req(mech), auth_req(b"hello")]),
        )
        for password, label in (("right", "ok"), ("wrong", "wrong-password")):

            def first(w: Any, got: list[Any], password: str = password, mech: str = mech) -> Any:
                if w is not None:
                    w.scram = scram.ScramClient(mech, "dsasl-user", password)
                    return auth_req(w.scram.first())
                return auth_req(b"")

            def final(w: Any, got: list[Any]) -> Any:
                if w is not None:
                    return auth_req(w.scram.final(bytes(got[-1].auth_bytes)))
                return auth_req(b"")

            compare_steps(
                cases,
                f"sasl-{mech.lower()}-{label}",
                run_both(sasl_pair, [handshake_req(mech), first, final, metadata()]),
                volatile=("auth_bytes",),  # nonces, salts, signatures: random per exchange
            )
    now = time.time()
    tokens = {
        "ok": unsecured_jws({"sub": "alice", "iat": now, "exp": now + 3600}),
        "expired": unsecured_jws({"sub": "alice", "iat": now - 7200, "exp": now - 3600}),
        "no-sub": unsecured_jws({"iat": now, "exp": now + 3600}),
        "signed": unsecured_jws({"sub": "alice", "exp": now + 3600}) + "c2ln",
    }
    for label, token in tokens.items():
        compare_steps(
            cases,
            f"sasl-oauthbearer-{label}",
            run_both(
                sasl_pair,
                [
                    handshake_req("OAUTHBEARER"),
                    auth_req(f"n,,\x01auth=Bearer {token}\x01\x01".encode()),
                    auth_req(b"\x01"),
                    metadata(),
                ],
            ),
            volatile=("session_lifetime",),  # the token's remaining life, to the ms
        )
    compare_steps(
        cases,
        "sasl-oauthbearer-authzid-differs",
        run_both(
            sasl_pair,
            [
                handshake_req("OAUTHBEARER"),
                auth_req(f"n,a=bob,\x01auth=Bearer {tokens['ok']}\x01\x01".encode()),
            ],
        ),
    )
    # v0 handshake: raw tokens. PLAIN answers an empty frame; a wrong password closes.
    for label, token in (("ok", b"\0alice\0alice-secret"), ("wrong", b"\0alice\0nope")):
        seen = {}
        for side, port in sasl_pair.ports.items():
            with KafkaWire(port=port) as w:
                w.request(handshake_req("PLAIN", 0))
                w.send_raw(struct.pack(">i", len(token)) + token)
                try:
                    answer = w.recv_frame().hex() or "empty frame"
                    answer += ", then " + ("served" if w.request(metadata()) else "?")
                except ConnectionClosed:
                    answer = "closed"
                seen[side] = answer
        cases.add(
            record_behaviour(
                f"sasl-v0-raw-plain-{label}", HANDSHAKE, 0, seen["ours"], seen["kafka"]
            )
        )
    compare_steps(
        cases,
        "sasl-request-during-authentication",
        run_both(sasl_pair, [handshake_req("PLAIN"), metadata(), metadata()]),
    )
    # Kafka answers the request's own error response (ILLEGAL_SASL_STATE), then closes:
    # compared field by field for APIs whose answer does not depend on the broker.
    for label, request in (
        ("metadata-topics", request_for(3, 12, topics=[{"name": "t1"}, {"name": "t2"}])),
        ("api-versions", request_for(18, 3, client_software_name="x", client_software_version="1")),
        ("handshake-again", handshake_req("PLAIN")),
        ("find-coordinator", request_for(10, 3, key="g", key_type=0)),
        ("find-coordinator-batched", request_for(10, 4, key_type=0, coordinator_keys=["a"])),
        ("describe-cluster", request_for(60, 1)),
        ("list-groups", request_for(16, 4, states_filter=[])),
        ("heartbeat", request_for(12, 4, group_id="g", generation_id=1, member_id="m")),
    ):
        compare_steps(
            cases,
            f"sasl-request-during-authentication-{label}",
            run_both(sasl_pair, [handshake_req("SCRAM-SHA-256"), request, metadata()]),
        )
    cases.check()
