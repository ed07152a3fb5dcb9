"""OAUTHBEARER with signed JWTs (KIP-768) vs Kafka 4.1: both brokers configured alike with
Kafka's OAuthBearerValidatorCallbackHandler, the same JWK set file, issuer and audience.

Kafka 4.1 refuses every URL unless the JVM system property
``org.apache.kafka.sasl.oauthbearer.allowed.urls`` lists it, so the reference JVM gets it
(KAFKA_OPTS-style); pybroker has no such property (its settings come only from its own
server.properties).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.differential.helpers import Cases
from tests.differential.test_diff_sasl import (
    SaslPair,
    auth_req,
    compare_steps,
    handshake_req,
    metadata,
    run_both,
)
from tests.support.broker import BrokerProcess, free_port
from tests.support.jwt_tokens import SigningKey, b64, claims, new_key, unsigned, write_jwks
from tests.support.kafka_ref import KafkaReference

ISSUER, AUDIENCE = "https://idp.pybroker.test", "kafka"
VALIDATOR = "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler"
BROKER_VALIDATOR = "org.apache.kafka.common.security.oauthbearer.BrokerJwtValidator"
JAAS = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;"
ALLOWED_URLS = "org.apache.kafka.sasl.oauthbearer.allowed.urls"


def listener_settings(listener: str, jwks_url: str, validator: str | None) -> dict[str, str]:
    """Kafka's OAUTHBEARER validator on ``listener``, mechanism-prefixed as documented."""
    prefix = f"listener.name.{listener.lower()}.oauthbearer."
    out = {
        f"{prefix}sasl.jaas.config": JAAS,
        f"{prefix}sasl.server.callback.handler.class": VALIDATOR,
        f"{prefix}sasl.oauthbearer.jwks.endpoint.url": jwks_url,
        f"{prefix}sasl.oauthbearer.expected.issuer": ISSUER,
        f"{prefix}sasl.oauthbearer.expected.audience": AUDIENCE,
    }
    if validator is not None:
        # Kafka 4.1 reads this one without the mechanism prefix: the listener prefix it is.
        out[f"listener.name.{listener.lower()}.sasl.oauthbearer.jwt.validator.class"] = validator
    return out


def broker_settings(ports: dict[str, int], jwks_url: str) -> dict[str, str]:
    """SASL_PLAINTEXT names BrokerJwtValidator; SASL_DEFAULT keeps Kafka 4.1's default
    DefaultJwtValidator, which on a 4.1.1 broker verifies no signature (pybroker does)."""
    listeners = ",".join(f"{n}://127.0.0.1:{p}" for n, p in ports.items())
    protocols = {n: "SASL_PLAINTEXT" if n.startswith("SASL") else "PLAINTEXT" for n in ports}
    return {
        "listeners": listeners,
        "advertised.listeners": ",".join(
            f"{n}://127.0.0.1:{p}" for n, p in ports.items() if n != "CONTROLLER"
        ),
        "listener.security.protocol.map": ",".join(f"{n}:{p}" for n, p in protocols.items()),
        "sasl.enabled.mechanisms": "OAUTHBEARER",
        **listener_settings("SASL_PLAINTEXT", jwks_url, BROKER_VALIDATOR),
        **listener_settings("SASL_DEFAULT", jwks_url, None),
    }


@pytest.fixture(scope="module")
def keys() -> dict[str, SigningKey]:
    return {"rsa": new_key("rsa-1", "RS256"), "ec": new_key("ec-1", "ES256")}


@pytest.fixture(scope="module")
def pairs(
    tmp_path_factory: pytest.TempPathFactory, keys: dict[str, SigningKey]
) -> Iterator[dict[str, SaslPair]]:
    """ "broker": both brokers' SASL_PLAINTEXT listeners; "default": their SASL_DEFAULT."""
    root: Path = tmp_path_factory.mktemp("diff-oauth-jwks")
    url = write_jwks(root / "jwks.json", keys["rsa"], keys["ec"])
    ours = BrokerProcess(root / "ours" / "data")
    kafka = KafkaReference(root / "kafka" / "data")
    o = {"PLAINTEXT": ours.port, "SASL_PLAINTEXT": free_port(), "SASL_DEFAULT": free_port()}
    k = {"PLAINTEXT": kafka.port, "CONTROLLER": kafka.controller_port,
         "SASL_PLAINTEXT": free_port(), "SASL_DEFAULT": free_port()}  # fmt: skip
    ours.overrides.update(broker_settings(o, url))
    kafka.overrides = broker_settings(k, url)
    kafka.jvm_options = [f"-D{ALLOWED_URLS}={url}"]
    ours.start()
    try:
        kafka.start()
        try:
            yield {
                name: SaslPair(o[listener], k[listener], ours.port, kafka.port)
                for name, listener in (("broker", "SASL_PLAINTEXT"), ("default", "SASL_DEFAULT"))
            }
        finally:
            kafka.stop()
    finally:
        ours.stop()


def good(**extra: Any) -> dict[str, Any]:
    return claims("alice", **{"iss": ISSUER, "aud": AUDIENCE, **extra})


def tokens(keys: dict[str, SigningKey]) -> dict[str, str]:
    rsa, ec = keys["rsa"], keys["ec"]
    valid = rsa.sign(good())
    head, body, _ = valid.split(".")
    stranger = new_key("rsa-1", "RS256")  # same kid, a key the JWK set does not hold
    no_sub = good()
    now = int(no_sub["iat"])
    del no_sub["sub"]
    return {
        "valid-rs256": valid,
        "valid-es256": ec.sign(good()),
        "valid-aud-list": rsa.sign(good(aud=["web", AUDIENCE])),
        "bad-signature": stranger.sign(good()),
        "tampered-payload": f"{head}.{b64(b'{}')}.{valid.split('.')[2]}",
        "unknown-kid": rsa.sign(good(), {"kid": "rotated-away"}),
        "expired": rsa.sign(claims("alice", -3600, iss=ISSUER, aud=AUDIENCE)),
        "expired-within-skew": rsa.sign(good(iat=now - 100, exp=now - 10)),
        "exp-before-iat": rsa.sign(good(iat=now, exp=now - 10)),
        "iat-in-future": rsa.sign(good(iat=now + 600, exp=now + 3600)),
        "not-yet-valid": rsa.sign(good(nbf=int(good()["iat"]) + 600)),
        "wrong-issuer": rsa.sign(claims("alice", iss="https://evil", aud=AUDIENCE)),
        "no-issuer": rsa.sign(claims("alice", aud=AUDIENCE)),
        "wrong-audience": rsa.sign(claims("alice", iss=ISSUER, aud="web")),
        "missing-sub": rsa.sign(no_sub),
        "blank-sub": rsa.sign(claims("  ", iss=ISSUER, aud=AUDIENCE)),
        "alg-none": unsigned(good()),
        "wrong-alg-for-key": rsa.sign(good(), {"alg": "ES256"}),
    }


def test_oauthbearer_jwks_exchanges(
    pairs: dict[str, SaslPair], keys: dict[str, SigningKey]
) -> None:
    cases = Cases(None)  # type: ignore[arg-type]  # steps are recorded, not sent by Cases
    jwks_pair = pairs["broker"]
    for label, token in tokens(keys).items():
        compare_steps(
            cases,
            f"sasl-oauthbearer-jwks-{label}",
            run_both(
                jwks_pair,
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
        "sasl-oauthbearer-jwks-authzid-differs",
        run_both(
            jwks_pair,
            [
                handshake_req("OAUTHBEARER"),
                auth_req(f"n,a=bob,\x01auth=Bearer {keys['rsa'].sign(good())}\x01\x01".encode()),
            ],
        ),
    )
    # Kafka 4.1.1's default validator: no signature check (accepted.py says why we differ)
    for label in ("valid-rs256", "bad-signature"):
        token = tokens(keys)[label]
        compare_steps(
            cases,
            f"sasl-oauthbearer-jwks-default-validator-{label}",
            run_both(
                pairs["default"],
                [
                    handshake_req("OAUTHBEARER"),
                    auth_req(f"n,,\x01auth=Bearer {token}\x01\x01".encode()),
                    auth_req(b"\x01"),
                ],
            ),
            volatile=("session_lifetime",),
        )
    cases.check()


def test_session_lifetime_is_token_expiry(
    pairs: dict[str, SaslPair], keys: dict[str, SigningKey]
) -> None:
    """KIP-368: both brokers give the token's remaining life as the session lifetime."""
    token = keys["ec"].sign(good())
    steps = [handshake_req("OAUTHBEARER"), auth_req(f"n,,\x01auth=Bearer {token}\x01\x01".encode())]
    (_, (_, ours, kafka)) = run_both(pairs["broker"], steps)
    expected = int(good()["exp"]) * 1000 - int(time.time() * 1000)
    for side in (ours, kafka):
        assert side.error_code == 0
        lifetime = side.session_lifetime.total_seconds() * 1000
        assert abs(lifetime - expected) < 15_000, lifetime
