"""protocol/jwt.py (JWK sets, JWS signatures, claim rules) and the config/key-source side
of broker/oauth_validation.py, with tokens signed independently (tests/support/jwt_tokens)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from pybroker.broker.oauth_validation import (
    VALIDATOR_CLASSES,
    HttpJwks,
    JwtValidator,
    oauth_settings,
)
from pybroker.broker.sasl_mechanisms import OAuthBearerServer, SaslFailure
from pybroker.config.topic_config import ConfigError
from pybroker.protocol import jwt
from tests.support.jwt_tokens import b64, claims, jwks_json, new_key, unsigned, write_jwks

NOW = 1_700_000_000
RSA = new_key("r1", "RS256")
EC = new_key("e1", "ES256")
KEYS = jwt.parse_jwks(jwks_json(RSA, EC))
POLICY = jwt.ClaimPolicy()


def at(now: int = NOW, **extra: object) -> dict[str, object]:
    return {"sub": "alice", "iat": now, "exp": now + 3600, **extra}


@pytest.mark.parametrize("alg", ["RS256", "RS384", "RS512", "PS256", "PS512",
                                 "ES256", "ES384", "ES512"])  # fmt: skip
def test_every_algorithm_verifies_and_rejects_tampering(alg: str) -> None:
    key = new_key(f"k-{alg}", alg)
    keys = jwt.parse_jwks(jwks_json(key))
    token = key.sign(at())
    got = jwt.validate(token, keys, NOW, POLICY)
    assert got == jwt.ValidatedToken("alice", (NOW + 3600) * 1000, NOW * 1000)
    head, body, sig = token.split(".")
    forged = b64(json.dumps(at(sub="mallory")).encode())
    with pytest.raises(jwt.JwtError, match="signature is invalid"):
        jwt.validate(f"{head}.{forged}.{sig}", keys, NOW, POLICY)


def test_key_selection() -> None:
    other = new_key("r1", "RS256")  # same kid, different key: signature fails
    with pytest.raises(jwt.JwtError, match="signature"):
        jwt.validate(other.sign(at()), KEYS, NOW, POLICY)
    with pytest.raises(jwt.JwtError, match="no JWK matches kid='nope'"):
        jwt.validate(RSA.sign(at(), {"kid": "nope"}), KEYS, NOW, POLICY)
    # no kid: the first key of a fitting type (EC for ES256) is used
    assert jwt.validate(EC.sign(at(), {"kid": None}), KEYS, NOW, POLICY).principal == "alice"
    # an RSA token naming the EC key's kid finds no fitting key
    with pytest.raises(jwt.JwtError, match="no JWK"):
        jwt.validate(RSA.sign(at(), {"kid": "e1"}), KEYS, NOW, POLICY)
    weak = new_key("w", "RS256", rsa_bits=1024)
    with pytest.raises(jwt.JwtError, match="at least 2048"):
        jwt.validate(weak.sign(at()), jwt.parse_jwks(jwks_json(weak)), NOW, POLICY)


@pytest.mark.parametrize(
    "token",
    [
        unsigned(at()),
        RSA.sign(at(), {"alg": "HS256"}),
        RSA.sign(at(), {"crit": ["x"], "x": 1}),
        "a.b",
        "....",
        "eyJ.eyJ.x",
        f"{b64(b'[1]')}.{b64(b'{}')}.",
    ],
)
def test_malformed_or_unsafe_tokens(token: str) -> None:
    with pytest.raises(jwt.JwtError):
        jwt.validate(token, KEYS, NOW, POLICY)


def test_time_claims_with_clock_skew() -> None:
    skew = 30
    # expired once now - skew >= exp (jose4j)
    assert jwt.validate_claims(at(iat=NOW - 99, exp=NOW - skew + 1), NOW, POLICY).expiry_ms
    for bad in (at(exp=NOW - skew), at(exp=NOW - 3600), at(exp=None), at(iat=None),
                at(exp="soon"), at(exp=True), at(nbf=NOW + skew + 1),
                at(iat=-1), at(iat=NOW + 10, exp=NOW + 9)):  # fmt: skip
        bad = {k: v for k, v in bad.items() if v is not None}
        with pytest.raises(jwt.JwtError):
            jwt.validate_claims(bad, NOW, POLICY)
    assert jwt.validate_claims(at(nbf=NOW + skew), NOW, POLICY).principal == "alice"
    strict = jwt.ClaimPolicy(clock_skew_s=0)
    with pytest.raises(jwt.JwtError, match="no longer valid"):
        jwt.validate_claims(at(exp=NOW), NOW, strict)
    # fractional NumericDates count in whole seconds
    assert jwt.validate_claims(at(exp=NOW + 99.9), NOW, POLICY).expiry_ms == (NOW + 99) * 1000


def test_issuer_audience_sub_and_scope() -> None:
    policy = jwt.ClaimPolicy(expected_issuer="https://idp", expected_audience=("kafka", "other"))
    ok = at(iss="https://idp", aud=["x", "kafka"])
    assert jwt.validate_claims(ok, NOW, policy).principal == "alice"
    assert jwt.validate_claims(at(iss="https://idp", aud="other"), NOW, policy)
    for bad in (at(aud="kafka"), at(iss="https://evil", aud="kafka"),
                at(iss="https://idp"), at(iss="https://idp", aud="web"),
                at(iss="https://idp", aud=[1])):  # fmt: skip
        with pytest.raises(jwt.JwtError):
            jwt.validate_claims(bad, NOW, policy)
    for bad_sub in ({"sub": ""}, {"sub": "  "}, {"sub": 7}, {"sub": None}):
        with pytest.raises(jwt.JwtError, match="sub"):
            jwt.validate_claims({**at(), **bad_sub}, NOW, POLICY)
    assert jwt.validate_claims(at(sub=" bob "), NOW, POLICY).principal == "bob"
    custom = jwt.ClaimPolicy(sub_claim="client_id", scope_claim="scp")
    got = jwt.validate_claims(at(sub=None, client_id="svc", scp=["a", "b"]), NOW, custom)
    assert (got.principal, got.scopes) == ("svc", frozenset({"a", "b"}))
    # Kafka keeps a string scope as one value, and refuses blank or duplicate values
    assert jwt.validate_claims(at(scope="a b"), NOW, POLICY).scopes == {"a b"}
    for bad_scope in (["a", "a"], ["a", " "], [3]):
        with pytest.raises(jwt.JwtError, match="scope"):
            jwt.validate_claims(at(scope=bad_scope), NOW, POLICY)


def test_jwks_parsing() -> None:
    assert [k.kid for k in KEYS] == ["r1", "e1"]
    mixed = {"keys": [{"kty": "oct", "k": "AAAA"}, {"kty": "OKP", "crv": "Ed25519", "x": "AA"},
                      RSA.jwk(), {"kty": "EC", "crv": "P-192", "x": "AA", "y": "AA"}]}  # fmt: skip
    assert [k.kid for k in jwt.parse_jwks(json.dumps(mixed))] == ["r1"]
    assert [k.kid for k in jwt.parse_jwks(json.dumps(EC.jwk()))] == ["e1"]
    for bad in ("nope", "[]", '{"keys": 1}', '{"keys": [{"kty": "RSA", "n": "AQAB"}]}'):
        with pytest.raises(jwt.JwtError):
            jwt.parse_jwks(bad)


# ------------------------------------------------------------------------ broker side


def raw_settings(url: str, **extra: str) -> dict[str, str]:
    return {
        "listener.name.sasl_plaintext.oauthbearer.sasl.server.callback.handler.class": (
            VALIDATOR_CLASSES[0]
        ),
        "listener.name.sasl_plaintext.oauthbearer.sasl.oauthbearer.jwks.endpoint.url": url,
        **extra,
    }


def test_settings_resolution(tmp_path: Path) -> None:
    url = write_jwks(tmp_path / "jwks.json", RSA)
    assert oauth_settings({}, "SASL_PLAINTEXT") is None
    s = oauth_settings(
        raw_settings(
            url,
            **{
                "sasl.oauthbearer.expected.audience": "a, b",
                "listener.name.sasl_plaintext.sasl.oauthbearer.clock.skew.seconds": "5",
                "sasl.oauthbearer.clock.skew.seconds": "99",
                "sasl.oauthbearer.sub.claim.name": "uid",
            },
        ),
        "SASL_PLAINTEXT",
    )
    assert s is not None and s.jwks_url == url and s.refresh_ms == 3_600_000
    assert s.policy == jwt.ClaimPolicy("uid", "scope", 5, None, ("a", "b"))
    legacy = {
        "sasl.server.callback.handler.class": VALIDATOR_CLASSES[1],
        "sasl.oauthbearer.jwks.endpoint.url": url,
    }
    assert oauth_settings(legacy, "X") is not None
    with pytest.raises(ConfigError, match="cannot be found"):
        oauth_settings({"sasl.server.callback.handler.class": "com.Foo"}, "X")
    with pytest.raises(ConfigError, match="jwks.endpoint.url"):
        oauth_settings({"sasl.server.callback.handler.class": VALIDATOR_CLASSES[0]}, "X")
    missing = oauth_settings(raw_settings("file:///nonexistent/jwks.json"), "SASL_PLAINTEXT")
    assert missing is not None
    with pytest.raises(ConfigError, match="Could not read the JWK set"):
        JwtValidator(missing)  # Kafka refuses to start without its key set


def test_bare_path_is_refused() -> None:
    with pytest.raises(ConfigError, match="file, http or https"):
        oauth_settings(raw_settings("/tmp/jwks.json"), "SASL_PLAINTEXT")


def test_file_jwks_reloads_on_change_and_keeps_old_set_on_garbage(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    url = write_jwks(path, RSA)
    settings = oauth_settings(raw_settings(url), "SASL_PLAINTEXT")
    assert settings is not None
    validator = JwtValidator(settings)

    async def check() -> None:
        assert (await validator(RSA.sign(claims()))).principal == "alice"
        assert await validator(EC.sign(claims())) is None  # e1 not published yet
        write_jwks(path, RSA, EC)
        os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
        assert (await validator(EC.sign(claims("bob")))).principal == "bob"
        path.write_text("{broken")
        assert (await validator(EC.sign(claims("bob")))).principal == "bob"

    asyncio.run(check())


def test_http_jwks_fetch_refresh_and_unknown_kid() -> None:
    published = [jwks_json(RSA)]
    calls: list[str] = []

    def fetch(url: str) -> bytes:
        calls.append(url)
        return published[-1].encode()

    settings = oauth_settings(raw_settings("https://idp.example/jwks"), "SASL_PLAINTEXT")
    assert settings is not None
    source = HttpJwks(settings, fetch)

    async def check() -> None:
        assert [k.kid for k in await source.keys()] == ["r1"]
        published.append(jwks_json(RSA, EC))
        assert [k.kid for k in await source.keys(missing_kid="e1")] == ["r1"]
        for _ in range(100):  # the expedited refresh runs in the background
            await asyncio.sleep(0.01)
            if len(calls) == 2:
                break
        assert [k.kid for k in await source.keys()] == ["r1", "e1"]
        await source.keys(missing_kid="zz")  # rate-limited: no third fetch
        await asyncio.sleep(0.05)
        assert len(calls) == 2
        source.close()

    asyncio.run(check())


def test_oauthbearer_server_with_validator(tmp_path: Path) -> None:
    settings = oauth_settings(raw_settings(write_jwks(tmp_path / "k.json", EC)), "SASL_PLAINTEXT")
    assert settings is not None

    async def run(token: str, authzid: str = "") -> tuple[OAuthBearerServer, bytes | str]:
        server = OAuthBearerServer({}, lambda: int(time.time() * 1000), JwtValidator(settings))
        first = f"n,{'a=' + authzid if authzid else ''},\x01auth=Bearer {token}\x01\x01"
        try:
            out: bytes | str = await server.evaluate(first.encode())
            if out:
                await server.evaluate(b"\x01")
        except SaslFailure as exc:
            out = str(exc)
        return server, out

    good = EC.sign(claims("carol", 600))
    server, out = asyncio.run(run(good))
    assert out == b"" and server.complete and server.username == "carol"
    assert abs(server.credential_expiry_ms - (time.time() + 600) * 1000) < 5000
    server, out = asyncio.run(run(EC.sign(claims("carol", -100))))
    assert out == '{"status":"invalid_token"}' and not server.complete
    _, out = asyncio.run(run(good, authzid="dave"))
    assert "different from the token's principal name (carol)" in str(out)
