"""A SASL listener's connection state, as Kafka's SaslServerAuthenticator keeps it.

Before authentication a connection may send ApiVersions (once, first), then SaslHandshake,
then the mechanism's tokens: wrapped in SaslAuthenticate requests after a v1 handshake,
or raw size-prefixed frames after a v0 one (clients older than KIP-152). Anything else
before the handshake closes the connection at once, as Kafka does; another request after
a v1 handshake gets that API's error response (ILLEGAL_SASL_STATE) and then the close.
A failed handshake (UNSUPPORTED_SASL_MECHANISM) or token (SASL_AUTHENTICATION_FAILED) is
answered after ``connection.failed.authentication.delay.ms`` and the connection is then closed.

KIP-368: with ``connections.max.reauth.ms`` > 0, SaslAuthenticate v1+ tells the client
its session lifetime; a client that supports re-authentication starts it with a new
SaslHandshake on the same connection (same mechanism, same principal), and a request
arriving after the session expired closes the connection.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import TYPE_CHECKING, Any

from pybroker.broker.clock import now_ms
from pybroker.broker.handlers.registry import REGISTRY
from pybroker.broker.java_hash import java_hash_order
from pybroker.broker.oauth_validation import JwtValidator, oauth_settings
from pybroker.broker.sasl_mechanisms import (
    OAuthBearerServer,
    PlainServer,
    SaslFailure,
    ScramServer,
)
from pybroker.config.jaas import (
    SaslClientCredentials,
    SaslListenerSettings,
    inter_broker_credentials,
    sasl_listener_settings,
)
from pybroker.config.topic_config import ConfigError
from pybroker.protocol import scram
from pybroker.protocol.codec import (
    FrameError,
    build,
    decode_request_body,
    encode_body,
    has_field,
    parse_request_header,
    response_header_flexible,
    response_type,
)
from pybroker.protocol.errors import ErrorCode
from pybroker.replication.entity_configs import USERS, EntityConfigStore

if TYPE_CHECKING:
    from pybroker.broker.connection import KafkaConnection
    from pybroker.broker.delegation_tokens import DelegationTokenManager, TokenCredential
    from pybroker.config.broker_config import BrokerConfig

log = logging.getLogger(__name__)

METADATA, FIND_COORDINATOR, API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 3, 10, 18, 17, 36
ILLEGAL_SASL_STATE_MESSAGE = "Request is not valid given the current SASL state."
SaslServer = PlainServer | ScramServer | OAuthBearerServer

# States (Kafka's SaslState names).
INITIAL = "INITIAL_REQUEST"
HANDSHAKE = "HANDSHAKE_REQUEST"
AUTHENTICATE = "AUTHENTICATE"
COMPLETE = "COMPLETE"
FAILED = "FAILED"


class SaslService:
    """Per-broker SASL settings: which listeners authenticate, with what, against whom."""

    def __init__(self, config: BrokerConfig) -> None:
        self.delay_ms = config.connection_failed_authentication_delay_ms
        self.max_receive = int(config.values.get("sasl.server.max.receive.size", 524288))
        try:
            self.listeners: dict[str, SaslListenerSettings] = {
                lst.name: sasl_listener_settings(config.raw, lst.name)
                for lst in config.listeners
                if lst.security_protocol.startswith("SASL_")
            }
            # KIP-768: listeners whose OAUTHBEARER tokens are signed JWTs checked on a JWK set
            self.jwt_validators: dict[str, JwtValidator] = {}
            for name, settings in self.listeners.items():
                oauth = (
                    oauth_settings(config.raw, name)
                    if "OAUTHBEARER" in settings.mechanisms
                    else None
                )
                if oauth is not None:
                    self.jwt_validators[name] = JwtValidator(oauth)
        except ConfigError as exc:
            raise SaslConfigError(str(exc)) from None
        self.entity_configs: EntityConfigStore | None = None  # set when metadata is up
        self.delegation_tokens: DelegationTokenManager | None = None  # set by the broker

    def authenticator(self, listener: str) -> SaslAuthenticator | None:
        settings = self.listeners.get(listener)
        return SaslAuthenticator(self, settings, listener) if settings else None

    async def token_credential(self, token_id: str, mechanism: str) -> TokenCredential | None:
        if self.delegation_tokens is None:
            return None
        return await self.delegation_tokens.credential(token_id, mechanism)

    async def scram_credential(self, username: str, mechanism: str) -> scram.ScramCredential | None:
        if self.entity_configs is None:
            return None
        text = (await self.entity_configs.get(USERS, username)).get(mechanism)
        if text is None:
            return None
        try:
            return scram.ScramCredential.from_config(text)
        except scram.ScramError:
            log.warning("Ignoring unreadable %s credential of user %s", mechanism, username)
            return None


class SaslAuthenticator:
    def __init__(
        self, service: SaslService, settings: SaslListenerSettings, listener: str = ""
    ) -> None:
        self.service = service
        self.settings = settings
        self.listener = listener
        self.state = INITIAL
        self.raw_tokens = False  # v0 handshake: tokens travel without Kafka headers
        self.server: SaslServer | None = None
        self.mechanism = ""
        self.principal: str | None = None
        self.session_expires: float | None = None  # monotonic seconds
        self.client_supports_reauth = False
        self._reauth_mechanism: str | None = None  # set while re-authenticating

    @property
    def complete(self) -> bool:
        return self.state == COMPLETE

    @property
    def token_authenticated(self) -> bool:
        """Authenticated with a delegation token (KafkaPrincipal.tokenAuthenticated)."""
        return self.state == COMPLETE and bool(getattr(self.server, "token_authenticated", False))

    @property
    def max_receive(self) -> int:
        """Largest frame accepted while (re-)authenticating; no limit of its own after."""
        return self.service.max_receive if self.state != COMPLETE else 2**31 - 1

    # ------------------------------------------------------------------ entry point
    async def intercept(self, conn: KafkaConnection, frame: bytearray) -> bool:
        """Handle ``frame`` if it belongs to authentication; False = serve it normally."""
        if self.state == COMPLETE:
            if (
                self.session_expires is not None
                and self.client_supports_reauth
                and frame_api_key(frame) == SASL_HANDSHAKE
            ):
                self._reauth_mechanism = self.mechanism
                self.state = HANDSHAKE
                await self._on_kafka_request(conn, frame)
                return True
            if self.session_expires is not None and time.monotonic() > self.session_expires:
                from pybroker.broker.connection import CloseConnection

                raise CloseConnection(f"SASL session of {self.principal} expired")
            return False
        if self.state == AUTHENTICATE:
            await self._on_token(conn, frame)
            return True
        return await self._on_kafka_request(conn, frame)

    # ------------------------------------------------------------------ handshake
    async def _on_kafka_request(self, conn: KafkaConnection, frame: bytearray) -> bool:
        from pybroker.broker.connection import CloseConnection

        view = memoryview(frame).toreadonly()
        try:
            header = parse_request_header(view)
        except FrameError:
            raise CloseConnection(
                "Invalid request, potential reasons: kafka client configured with the wrong "
                "security protocol, it does not support KIP-43 or it is not a kafka client."
            ) from None
        if header.api_key == API_VERSIONS and self.state == INITIAL:
            # The normal ApiVersions answer, as Kafka's authenticator gives it. An
            # unsupported version is answered with UNSUPPORTED_VERSION and may be retried
            # (KIP-511), so only a served version moves on to the handshake.
            spec = REGISTRY.get(API_VERSIONS)
            if spec is not None and header.api_version <= spec.max_version:
                self.state = HANDSHAKE
            return False
        if header.api_key not in (API_VERSIONS, SASL_HANDSHAKE):
            raise CloseConnection(
                f"Unexpected Kafka request of type {header.api_key} during SASL handshake."
            )
        if header.api_key == API_VERSIONS:
            raise CloseConnection("Unexpected ApiVersions request during SASL handshake")
        if not 0 <= header.api_version <= 1:
            raise CloseConnection(f"unsupported SaslHandshake version {header.api_version}")
        try:
            body = decode_request_body(header.api_key, header.api_version, view, header.size)
        except FrameError as exc:
            raise CloseConnection(f"malformed SaslHandshake: {exc}") from None
        mechanism = body.mechanism
        enabled = self.settings.mechanisms
        ok = mechanism in enabled
        response = build(
            response_type(SASL_HANDSHAKE, header.api_version),
            error_code=ErrorCode.none if ok else ErrorCode.unsupported_sasl_mechanism,
            mechanisms=java_hash_order(enabled),  # Kafka lists its HashMap's keys
        )
        encoded = encode_body(response)
        if not ok:
            await self._fail(
                conn, f"Unsupported SASL mechanism {mechanism}", header.correlation_id, encoded
            )
            return True
        conn._write_body(header.correlation_id, False, encoded)
        self.raw_tokens = header.api_version == 0
        if self._reauth_mechanism is not None and mechanism != self._reauth_mechanism:
            self.server = None  # REAUTH_BAD_MECHANISM: the next token fails
            self.mechanism = mechanism
        else:
            self.mechanism = mechanism
            self.server = self._new_server(mechanism)
        self.state = AUTHENTICATE
        return True

    def _new_server(self, mechanism: str) -> SaslServer:
        reauth = self._reauth_mechanism is not None
        entry = self.settings.jaas.get(mechanism)
        if mechanism == "PLAIN":
            return PlainServer(entry.plain_users() if entry else {})
        if mechanism == "OAUTHBEARER":
            validator = self.service.jwt_validators.get(self.listener)
            return OAuthBearerServer(entry.options if entry else {}, now_ms, validator)
        return ScramServer(
            mechanism, self.service.scram_credential, reauth, self.service.token_credential
        )

    # ------------------------------------------------------------------ tokens
    async def _on_token(self, conn: KafkaConnection, frame: bytearray) -> None:
        if self.raw_tokens:
            await self._on_raw_token(conn, bytes(frame))
            return
        from pybroker.broker.connection import CloseConnection

        view = memoryview(frame).toreadonly()
        try:
            header = parse_request_header(view)
        except FrameError as exc:
            raise CloseConnection(f"malformed request during SASL authentication: {exc}") from None
        if header.api_key != SASL_AUTHENTICATE:
            # Kafka answers that request type's error response (ILLEGAL_SASL_STATE) after the
            # failure delay, then closes; a request it cannot parse is closed unanswered.
            answer = illegal_state_response(header.api_key, header.api_version, view, header.size)
            await self._fail(
                conn,
                unexpected_request_message(header.api_key),
                header.correlation_id if answer else None,
                answer,
                response_header_flexible(header.api_key, header.api_version),
            )
            return
        version = header.api_version
        if not 0 <= version <= 2:
            raise CloseConnection(f"Version {version} is not supported for SaslAuthenticate")
        try:
            body = decode_request_body(header.api_key, version, view, header.size)
        except FrameError as exc:
            raise CloseConnection(f"malformed SaslAuthenticate: {exc}") from None
        self.client_supports_reauth = self.client_supports_reauth or version > 0
        rtype = response_type(SASL_AUTHENTICATE, version)
        flexible = response_header_flexible(SASL_AUTHENTICATE, version)
        try:
            out = await self._evaluate(bytes(body.auth_bytes))
        except SaslFailure as exc:
            fields: dict[str, Any] = dict(
                error_code=ErrorCode.sasl_authentication_failed,
                error_message=str(exc),
                auth_bytes=b"",
            )
            if version >= 1:
                fields["session_lifetime"] = 0
            response = encode_body(build(rtype, **fields))
            await self._fail(conn, str(exc), header.correlation_id, response, flexible)
            return
        lifetime = self._finish() if self.server is not None and self.server.complete else 0
        fields = dict(error_code=ErrorCode.none, error_message="", auth_bytes=out)
        if version >= 1:
            fields["session_lifetime"] = lifetime
        conn._write_body(header.correlation_id, flexible, encode_body(build(rtype, **fields)))
        if self.state == COMPLETE:
            conn.principal = self.principal or conn.principal

    async def _on_raw_token(self, conn: KafkaConnection, token: bytes) -> None:
        try:
            out = await self._evaluate(token)
        except SaslFailure as exc:
            await self._fail(conn, str(exc), None, None)
            return
        if self.server is not None and self.server.complete:
            self._finish()
            conn.principal = self.principal or conn.principal
        conn._write_raw(out)  # even empty (PLAIN): the client waits for a frame

    async def _evaluate(self, token: bytes) -> bytes:
        if self.server is None:
            raise SaslFailure(
                f"SASL mechanism '{self.mechanism}' requested by client is not supported for "
                f"re-authentication of mechanism '{self._reauth_mechanism}'"
            )
        out = await self.server.evaluate(token)
        if self.server.complete:
            principal = f"User:{self.server.username}"
            if self._reauth_mechanism is not None and principal != self.principal:
                old = (self.principal or "User:").split(":", 1)
                raise SaslFailure(
                    "Cannot change principals during re-authentication from "
                    f"{old[0]}.{old[1]}: User.{self.server.username}"
                )
        return out

    def _finish(self) -> int:
        """Authentication succeeded: the principal, and the session lifetime (0 = none)."""
        assert self.server is not None
        self.principal = f"User:{self.server.username}"
        self.state = COMPLETE
        self._reauth_mechanism = None
        max_reauth = self.settings.max_reauth_ms
        expiry = getattr(self.server, "credential_expiry_ms", None)  # OAUTHBEARER's token
        if expiry is None and max_reauth <= 0:
            self.session_expires = None
            return 0
        lifetime = max(0, max_reauth) if expiry is None else max(0, expiry - now_ms())
        if expiry is not None and max_reauth > 0:
            lifetime = min(lifetime, max_reauth)
        self.session_expires = time.monotonic() + lifetime / 1000
        return lifetime

    async def _fail(
        self,
        conn: KafkaConnection,
        why: str,
        correlation_id: int | None,
        response: bytes | None,
        flexible: bool = False,
    ) -> None:
        """Kafka's delayed close: wait, send the error answer (if any), close."""
        from pybroker.broker.connection import CloseConnection

        self.state = FAILED
        delay = self.service.delay_ms / 1000
        if delay > 0:
            await asyncio.sleep(delay)
        if response is not None and correlation_id is not None:
            conn._write_body(correlation_id, flexible, response)
        raise CloseConnection(f"Failed authentication with {conn.peer} ({why})")


def illegal_state_response(api_key: int, version: int, view: memoryview, pos: int) -> bytes | None:
    """The API's error response (Kafka's ``getErrorResponse``) with ILLEGAL_SASL_STATE: the
    top-level error code where the API has one, Metadata's requested topics each carrying
    it; None when the request cannot be parsed (Kafka closes without an answer)."""
    spec = REGISTRY.get(api_key)
    if spec is None or not spec.min_version <= version <= spec.max_version:
        return None
    try:
        request = decode_request_body(api_key, version, view, pos)
        rtype = response_type(api_key, version)
    except (FrameError, LookupError, ValueError):
        return None
    code = ErrorCode.illegal_sasl_state
    fields: dict[str, Any] = {}
    if has_field(rtype, "error_code"):
        fields["error_code"] = code
    if has_field(rtype, "error_message"):  # ApiError.fromThrowable: the exception's text
        fields["error_message"] = unexpected_request_message(api_key)
    no_node = dict(node_id=-1, host="", port=-1)
    if api_key == FIND_COORDINATOR and version < 4:  # Errors.message(), Node.noNode()
        fields.update(no_node, error_message=ILLEGAL_SASL_STATE_MESSAGE)
    elif api_key == FIND_COORDINATOR:
        fields["coordinators"] = [
            dict(no_node, key=k, error_code=code, error_message=ILLEGAL_SASL_STATE_MESSAGE)
            for k in request.coordinator_keys
        ]
    if api_key == METADATA:
        fields["topics"] = [
            dict(
                name=t.name or "",
                topic_id=getattr(t, "topic_id", None),
                error_code=ErrorCode.illegal_sasl_state,
                is_internal=False,
                partitions=[],
            )
            for t in request.topics or ()
        ]
    return encode_body(build(rtype, **fields))


def unexpected_request_message(api_key: int) -> str:
    """IllegalSaslStateException's text, naming the API as Kafka's ApiKeys enum does."""
    spec = REGISTRY.get(api_key)
    name = re.sub(r"(?<!^)(?=[A-Z])", "_", spec.name).upper() if spec else str(api_key)
    return f"Unexpected Kafka request of type {name} during SASL authentication."


def frame_api_key(frame: bytearray) -> int:
    return int.from_bytes(frame[0:2], "big", signed=True) if len(frame) >= 2 else -1


class SaslConfigError(RuntimeError):
    """A SASL setting Kafka would refuse at start-up (the broker logs it and exits)."""


def inter_broker_sasl(config: BrokerConfig) -> SaslClientCredentials | None:
    """Our credentials for peers' inter-broker listener, when it is SASL_*."""
    name = config.inter_broker_listener_name
    protocol = config.listener_security_protocol_map.get(name, "PLAINTEXT")
    try:
        return inter_broker_credentials(config.raw, name, protocol)
    except ConfigError as exc:
        raise SaslConfigError(str(exc)) from None
