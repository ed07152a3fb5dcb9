"""OAUTHBEARER with real token validation (KIP-768's OAuthBearerValidatorCallbackHandler).

A SASL listener whose OAUTHBEARER server callback handler is Kafka's validator class checks
each client JWT's signature against a JWK set from ``sasl.oauthbearer.jwks.endpoint.url``
and its claims against the ``sasl.oauthbearer.*`` settings (rules in protocol/jwt.py).
Settings are read as Kafka reads them for a listener and mechanism:
``listener.name.<l>.oauthbearer.<key>``, then ``listener.name.<l>.<key>``, then ``<key>``.

Key sets: a ``file:`` URL is read at start-up (a missing or unreadable file stops the
broker, as in Kafka) and re-read whenever the file changes; an ``http(s):`` URL is fetched
in a worker thread (never on the event loop) with a timeout, then refreshed every
``sasl.oauthbearer.jwks.endpoint.refresh.ms`` and early when a token names an unknown kid
(at most once a minute), retrying failures with Kafka's exponential backoff.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pybroker.config.topic_config import ConfigError
from pybroker.protocol import jwt

log = logging.getLogger(__name__)

VALIDATOR_CLASSES = (
    "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler",
    "org.apache.kafka.common.security.oauthbearer.secured.OAuthBearerValidatorCallbackHandler",
)
UNSECURED_CLASSES = (
    "org.apache.kafka.common.security.oauthbearer.internals.unsecured."
    "OAuthBearerUnsecuredValidatorCallbackHandler",
    "org.apache.kafka.common.security.oauthbearer.internal.unsecured."
    "OAuthBearerUnsecuredValidatorCallbackHandler",
)
HANDLER_KEY = "sasl.server.callback.handler.class"
JWT_VALIDATOR_KEY = "sasl.oauthbearer.jwt.validator.class"
# Both verify signatures here. (Kafka 4.1.1's default DefaultJwtValidator, built without a
# key resolver, falls back to ClientJwtValidator and checks no signature on the broker: a
# hole pybroker does not copy; tests/differential/accepted.py records it.)
JWT_VALIDATOR_CLASSES = (
    "org.apache.kafka.common.security.oauthbearer.DefaultJwtValidator",
    "org.apache.kafka.common.security.oauthbearer.BrokerJwtValidator",
)
HTTP_TIMEOUT_S = 10.0
UNKNOWN_KID_REFRESH_S = 60.0  # Kafka's MISSING_KEY_ID_CACHE_IN_FLIGHT_MS


def oauth_value(raw: Mapping[str, str], listener: str, key: str) -> str | None:
    """A setting of the OAUTHBEARER mechanism on ``listener``, most specific first."""
    prefix = f"listener.name.{listener.lower()}."
    for name in (f"{prefix}oauthbearer.{key}", f"{prefix}{key}", key):
        if name in raw:
            return raw[name].strip()
    return None


@dataclass(frozen=True)
class OAuthSettings:
    jwks_url: str
    refresh_ms: int
    retry_backoff_ms: int
    retry_backoff_max_ms: int
    policy: jwt.ClaimPolicy


def _int(raw: Mapping[str, str], listener: str, key: str, default: int) -> int:
    value = oauth_value(raw, listener, key)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(key, value, "Expected value to be a number") from None


def oauth_settings(raw: Mapping[str, str], listener: str) -> OAuthSettings | None:
    """The validator's settings when the listener's OAUTHBEARER handler is Kafka's JWT
    validator; None for the unsecured default (development tokens)."""
    handler = oauth_value(raw, listener, HANDLER_KEY)
    if not handler or handler in UNSECURED_CLASSES:
        return None
    if handler not in VALIDATOR_CLASSES:
        raise ConfigError(
            HANDLER_KEY,
            handler,
            f"Class {handler} cannot be found: pybroker offers {VALIDATOR_CLASSES[0]}",
        )
    jwt_validator = oauth_value(raw, listener, JWT_VALIDATOR_KEY) or JWT_VALIDATOR_CLASSES[0]
    if jwt_validator not in JWT_VALIDATOR_CLASSES:
        raise ConfigError(
            JWT_VALIDATOR_KEY,
            jwt_validator,
            f"Class {jwt_validator} cannot be found: pybroker validates broker-side tokens "
            f"with {' or '.join(JWT_VALIDATOR_CLASSES)} (both verify signatures)",
        )
    url = oauth_value(raw, listener, "sasl.oauthbearer.jwks.endpoint.url") or ""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("file", "http", "https"):
        raise ConfigError(
            "sasl.oauthbearer.jwks.endpoint.url",
            url,
            "The OAuth configuration option sasl.oauthbearer.jwks.endpoint.url must be a "
            "file, http or https URL",
        )
    audience = oauth_value(raw, listener, "sasl.oauthbearer.expected.audience") or ""
    policy = jwt.ClaimPolicy(
        sub_claim=oauth_value(raw, listener, "sasl.oauthbearer.sub.claim.name") or "sub",
        scope_claim=oauth_value(raw, listener, "sasl.oauthbearer.scope.claim.name") or "scope",
        clock_skew_s=_int(raw, listener, "sasl.oauthbearer.clock.skew.seconds", 30),
        expected_issuer=oauth_value(raw, listener, "sasl.oauthbearer.expected.issuer") or None,
        expected_audience=tuple(a.strip() for a in audience.split(",") if a.strip()),
    )
    refresh = _int(raw, listener, "sasl.oauthbearer.jwks.endpoint.refresh.ms", 3_600_000)
    if refresh < 0:
        raise ConfigError(
            "sasl.oauthbearer.jwks.endpoint.refresh.ms",
            str(refresh),
            "The OAuth configuration option sasl.oauthbearer.jwks.endpoint.refresh.ms value "
            "must be non-negative",
        )
    return OAuthSettings(
        url,
        refresh,
        _int(raw, listener, "sasl.oauthbearer.jwks.endpoint.retry.backoff.ms", 100),
        _int(raw, listener, "sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms", 10_000),
        policy,
    )


# ------------------------------------------------------------------------ key sources


class FileJwks:
    """A JWK set file, re-read when its modification time or size changes."""

    def __init__(self, url: str) -> None:
        self.path = urllib.request.url2pathname(urllib.parse.urlsplit(url).path)
        self._stamp: tuple[int, int] | None = None
        self._keys: tuple[jwt.Jwk, ...] = ()
        try:
            self._reload()
        except (OSError, jwt.JwtError) as exc:
            raise ConfigError(
                "sasl.oauthbearer.jwks.endpoint.url", url, f"Could not read the JWK set: {exc}"
            ) from None

    def _reload(self) -> None:
        st = os.stat(self.path)
        with open(self.path, "rb") as f:
            keys = jwt.parse_jwks(f.read())
        self._keys, self._stamp = keys, (st.st_mtime_ns, st.st_size)

    async def keys(self, missing_kid: str | None = None) -> tuple[jwt.Jwk, ...]:
        try:
            st = os.stat(self.path)
            if (st.st_mtime_ns, st.st_size) != self._stamp:
                self._reload()
                log.info("Reloaded the JWK set %s (%d keys)", self.path, len(self._keys))
        except (OSError, jwt.JwtError) as exc:
            log.warning("Keeping the previous JWK set: cannot reload %s: %s", self.path, exc)
        return self._keys

    def close(self) -> None:
        pass


def fetch_url(url: str, timeout: float = HTTP_TIMEOUT_S) -> bytes:
    """Blocking GET (run in a worker thread)."""
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - http(s) only
        return resp.read()


class HttpJwks:
    """A JWK set behind an http(s) URL, refreshed in the background."""

    def __init__(self, settings: OAuthSettings, fetch: Callable[[str], bytes] = fetch_url):
        self.settings = settings
        self.fetch = fetch
        self._keys: tuple[jwt.Jwk, ...] | None = None
        self._task: asyncio.Task[None] | None = None
        self._first = asyncio.Event()
        self._last_expedite = 0.0
        self._wake = asyncio.Event()

    async def _load(self) -> None:
        text = await asyncio.to_thread(self.fetch, self.settings.jwks_url)
        self._keys = jwt.parse_jwks(text)
        log.info("Fetched the JWK set %s (%d keys)", self.settings.jwks_url, len(self._keys))

    async def _run(self) -> None:
        backoff = self.settings.retry_backoff_ms / 1000
        while True:
            try:
                await self._load()
                backoff = self.settings.retry_backoff_ms / 1000
                wait = self.settings.refresh_ms / 1000 or None
            except Exception as exc:  # noqa: BLE001 - any fetch failure is retried
                log.warning("Cannot fetch the JWK set %s: %s", self.settings.jwks_url, exc)
                wait = backoff
                backoff = min(backoff * 2, self.settings.retry_backoff_max_ms / 1000)
            self._first.set()
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except TimeoutError:
                pass

    async def keys(self, missing_kid: str | None = None) -> tuple[jwt.Jwk, ...]:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        if self._keys is None:
            try:
                await asyncio.wait_for(self._first.wait(), HTTP_TIMEOUT_S + 1)
            except TimeoutError:
                pass
        elif missing_kid is not None:
            now = time.monotonic()
            if now - self._last_expedite >= UNKNOWN_KID_REFRESH_S:
                self._last_expedite = now
                self._wake.set()
        return self._keys or ()

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()


def jwks_source(settings: OAuthSettings) -> FileJwks | HttpJwks:
    if settings.jwks_url.lower().startswith("file:"):
        return FileJwks(settings.jwks_url)
    return HttpJwks(settings)


# ------------------------------------------------------------------------ the validator


class JwtValidator:
    """Validates one token: the principal and expiry, or None (``invalid_token``)."""

    def __init__(self, settings: OAuthSettings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.source = jwks_source(settings)
        self.clock = clock

    async def __call__(self, token: str) -> jwt.ValidatedToken | None:
        try:
            jws = jwt.decode(token)
            kid = jws.header.get("kid")
            keys = await self.source.keys()
            if isinstance(kid, str) and not any(k.kid == kid for k in keys):
                keys = await self.source.keys(missing_kid=kid)
            jwt.verify(jws, keys)
            return jwt.validate_claims(jws.claims, int(self.clock()), self.settings.policy)
        except jwt.JwtError as exc:
            log.warning("Could not validate the access token: %s", exc)
            return None

    def close(self) -> None:
        self.source.close()
