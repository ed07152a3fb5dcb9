"""SCRAM maths against RFC 7677's exchange, JAAS parsing, and Java HashMap order."""

from __future__ import annotations

import base64

import pytest

from pybroker.broker.java_hash import java_hash_order
from pybroker.config.jaas import (
    PLAIN_MODULE,
    inter_broker_credentials,
    parse_jaas,
    parse_one,
    sasl_listener_settings,
)
from pybroker.config.topic_config import ConfigError
from pybroker.protocol import scram

# RFC 7677 section 3: user "user", password "pencil".
CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO"
SERVER_FIRST = (
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
CLIENT_FINAL = (
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
SERVER_FINAL = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def test_rfc7677_client_side() -> None:
    client = scram.ScramClient("SCRAM-SHA-256", "user", "pencil", client_nonce=CLIENT_NONCE)
    assert client.first() == b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    assert client.final(SERVER_FIRST.encode()).decode() == CLIENT_FINAL
    client.verify_server_final(SERVER_FINAL.encode())
    with pytest.raises(scram.ScramError):
        client.verify_server_final(b"v=" + base64.b64encode(b"x" * 32))


def test_rfc7677_server_side() -> None:
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    salted = scram.salted_password("SCRAM-SHA-256", "pencil", salt, 4096)
    cred = scram.credential_from_salted("SCRAM-SHA-256", salted, salt, 4096)
    first = scram.parse_client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
    assert (first.username, first.nonce, first.extensions) == ("user", CLIENT_NONCE, {})
    final = scram.parse_client_final(CLIENT_FINAL.encode())
    message = scram.auth_message(first.bare, SERVER_FIRST, final.without_proof)
    assert scram.verify_proof("SCRAM-SHA-256", cred, message, final.proof)
    assert scram.server_final("SCRAM-SHA-256", cred, message) == SERVER_FINAL
    wrong = scram.new_credential("SCRAM-SHA-256", "not-pencil")
    assert not scram.verify_proof("SCRAM-SHA-256", wrong, message, final.proof)


def test_credential_round_trip_and_extensions() -> None:
    cred = scram.new_credential("SCRAM-SHA-512", "secret", 8192)
    text = cred.to_config()
    assert text.startswith("salt=") and ",stored_key=" in text and text.endswith(",iterations=8192")
    assert scram.ScramCredential.from_config(text) == cred
    first = scram.parse_client_first(b"n,a=bob,n=b=2Cob=3D,r=abc,tokenauth=true")
    assert (first.authzid, first.username) == ("bob", "b,ob=")
    assert first.extensions == {"tokenauth": "true"}
    with pytest.raises(scram.ScramError):
        scram.parse_client_first(b"y,,n=user,r=abc")


def test_scram_sha512_exchange_between_our_halves() -> None:
    cred = scram.new_credential("SCRAM-SHA-512", "pw")
    client = scram.ScramClient("SCRAM-SHA-512", "alice", "pw")
    first = scram.parse_client_first(client.first())
    server_first = scram.server_first(first.nonce, scram.nonce(), cred)
    final = scram.parse_client_final(client.final(server_first.encode()))
    message = scram.auth_message(first.bare, server_first, final.without_proof)
    assert scram.verify_proof("SCRAM-SHA-512", cred, message, final.proof)
    client.verify_server_final(scram.server_final("SCRAM-SHA-512", cred, message).encode())


def test_jaas_plain_module() -> None:
    text = (
        f'{PLAIN_MODULE} required username="admin" password="admin-secret"\n'
        '  user_admin="admin-secret" user_alice="alice \\"quoted\\" secret" user_bob=bare;'
    )
    (entry,) = parse_jaas(text)
    assert entry.module == PLAIN_MODULE and entry.flag == "required"
    assert entry.options["username"] == "admin"
    assert entry.plain_users() == {
        "admin": "admin-secret",
        "alice": 'alice "quoted" secret',
        "bob": "bare",
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f'{PLAIN_MODULE} required user_a="b"', "not terminated by semi-colon"),
        (f'{PLAIN_MODULE} mandatory user_a="b";', "control flag"),
        (f"{PLAIN_MODULE} required user_a=;", "Value not specified"),
        (f"{PLAIN_MODULE} required; {PLAIN_MODULE} optional;", "should be 1 module"),
    ],
)
def test_jaas_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_one(text, "sasl.jaas.config")


def test_listener_settings_and_inter_broker_credentials() -> None:
    raw = {
        "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": (
            f'{PLAIN_MODULE} required username="admin" password="pw" user_admin="pw";'
        ),
        "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config": (
            'org.apache.kafka.common.security.scram.ScramLoginModule required username="broker"'
            ' password="scram-pw";'
        ),
        "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-256",
        "listener.name.sasl_plaintext.connections.max.reauth.ms": "5000",
    }
    settings = sasl_listener_settings(raw, "SASL_PLAINTEXT")
    assert settings.mechanisms == ("PLAIN", "SCRAM-SHA-256")
    assert settings.jaas["PLAIN"].plain_users() == {"admin": "pw"}
    assert settings.max_reauth_ms == 5000
    creds = inter_broker_credentials(raw, "SASL_PLAINTEXT", "SASL_PLAINTEXT")
    assert creds is not None
    assert (creds.mechanism, creds.username, creds.password) == (
        "SCRAM-SHA-256",
        "broker",
        "scram-pw",
    )
    assert inter_broker_credentials(raw, "PLAINTEXT", "PLAINTEXT") is None
    with pytest.raises(ConfigError, match="GSSAPI"):
        sasl_listener_settings({}, "SASL_PLAINTEXT")
    with pytest.raises(ConfigError, match="KafkaServer"):
        sasl_listener_settings({"sasl.enabled.mechanisms": "PLAIN"}, "SASL_PLAINTEXT")


def test_java_hash_order_matches_kafka() -> None:
    # Orders Kafka 4.1 answered with (SaslHandshake mechanisms, DescribeUserScramCredentials).
    assert java_hash_order(["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]) == [
        "PLAIN",
        "SCRAM-SHA-512",
        "SCRAM-SHA-256",
    ]
    assert java_hash_order(["u1", "nobody", "u2", "u2", ""]) == ["", "u1", "nobody", "u2"]
    assert java_hash_order(["u1", "u2", "u7", "u10"]) == ["u7", "u10", "u1", "u2"]


def test_zookeeper_names_are_sanitized_as_kafka_does() -> None:
    from pybroker.replication.entity_configs import desanitize, sanitize

    assert sanitize("alice") == "alice"
    assert sanitize("CN=a b,O=x*y/z~") == "CN%3Da%20b%2CO%3Dx%2Ay%2Fz%7E"
    assert desanitize(sanitize("CN=a b,O=x*y/z~")) == "CN=a b,O=x*y/z~"
