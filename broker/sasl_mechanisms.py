"""Server halves of the SASL mechanisms Kafka ships: PLAIN, SCRAM-SHA-256/512, OAUTHBEARER.

Failures carry the text the client may see. Kafka tells a PLAIN client what was wrong
(``SaslAuthenticationException``), but never a SCRAM client (its ``SaslException`` could
reveal whether a user exists): that answer is always "Authentication failed during
authentication due to invalid credentials with SASL mechanism <M>".
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from pybroker.protocol import scram

if TYPE_CHECKING:
    from pybroker.broker.delegation_tokens import TokenCredential
    from pybroker.protocol.jwt import ValidatedToken

# a signed JWT -> its principal and expiry, or None when it is refused
TokenValidator = Callable[[str], Awaitable["ValidatedToken | None"]]


class SaslFailure(Exception):
    """Authentication failed; ``str(exc)`` is what the client is told."""


def generic_failure(mechanism: str, reauth: bool = False) -> SaslFailure:
    what = "re-authentication" if reauth else "authentication"
    return SaslFailure(
        f"Authentication failed during {what} due to invalid credentials with SASL mechanism "
        f"{mechanism}"
    )


class PlainServer:
    """RFC 4616 against the JAAS ``user_<name>`` table (PlainServerCallbackHandler)."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self.users = users
        self.complete = False
        self.username = ""

    async def evaluate(self, token: bytes) -> bytes:
        parts = token.decode("utf-8", "replace").split("\0")
        if len(parts) != 3:
            raise SaslFailure(f"Invalid SASL/PLAIN response: expected 3 tokens, got {len(parts)}")
        authzid, username, password = parts
        if not username:
            raise SaslFailure("Authentication failed: username not specified")
        if not password:
            raise SaslFailure("Authentication failed: password not specified")
        expected = self.users.get(username)
        if expected is None or expected != password:
            raise SaslFailure("Authentication failed: Invalid username or password")
        if authzid and authzid != username:
            raise SaslFailure(
                "Authentication failed: Client requested an authorization id that is different "
                "from username"
            )
        self.username = username
        self.complete = True
        return b""


# user name -> stored credential for the mechanism (None = no such user)
CredentialLookup = Callable[[str, str], Awaitable["scram.ScramCredential | None"]]


# token id, mechanism -> the token's credential, owner and expiry (None = no live token)
TokenLookup = Callable[[str, str], Awaitable["TokenCredential | None"]]


async def _no_tokens(token_id: str, mechanism: str) -> TokenCredential | None:
    return None


class ScramServer:
    """RFC 5802 server: client-first -> server-first -> client-final -> server-final."""

    def __init__(
        self,
        mechanism: str,
        lookup: CredentialLookup,
        reauth: bool = False,
        token_lookup: TokenLookup | None = None,
    ) -> None:
        self.mechanism = mechanism
        self.lookup = lookup
        self.token_lookup: TokenLookup = token_lookup or _no_tokens
        self.token_owner: str | None = None  # "User:alice" once a token authenticated
        self.credential_expiry_ms: int | None = None
        self.reauth = reauth
        self.complete = False
        self.username = ""
        self.token_authenticated = False
        self._first: scram.ClientFirst | None = None
        self._server_first = ""
        self._cred: scram.ScramCredential | None = None

    async def evaluate(self, token: bytes) -> bytes:
        fail = generic_failure(self.mechanism, self.reauth)
        try:
            if self._first is None:
                return await self._on_first(token, fail)
            return self._on_final(token, fail)
        except scram.ScramError:
            raise fail from None

    async def _on_first(self, token: bytes, fail: SaslFailure) -> bytes:
        first = scram.parse_client_first(token)
        if not set(first.extensions) <= scram.SUPPORTED_EXTENSIONS:
            raise fail
        if first.authzid and first.authzid != first.username:
            raise SaslFailure(
                "Authentication failed: Client requested an authorization id that is different "
                "from username"
            )
        if first.extensions.get(scram.TOKEN_AUTH_EXTENSION, "false").lower() == "true":
            # Delegation token (KIP-48): username = token id; the principal is its owner,
            # and the token's expiry bounds the session (as Kafka's credential lifetime).
            found = await self.token_lookup(first.username, self.mechanism)
            if found is None:
                raise fail
            cred = found.credential
            self.token_owner = found.owner
            self.credential_expiry_ms = found.expiry_ms
        else:
            cred = await self.lookup(first.username, self.mechanism)
        if cred is None or cred.iterations < scram.MECHANISMS[self.mechanism][1]:
            raise fail
        self._first, self._cred = first, cred
        self._server_first = scram.server_first(first.nonce, scram.nonce(), cred)
        return self._server_first.encode()

    def _on_final(self, token: bytes, fail: SaslFailure) -> bytes:
        assert self._first is not None and self._cred is not None
        final = scram.parse_client_final(token)
        if final.nonce != self._server_first.split(",", 1)[0][2:]:
            raise fail
        message = scram.auth_message(self._first.bare, self._server_first, final.without_proof)
        if not scram.verify_proof(self.mechanism, self._cred, message, final.proof):
            raise fail
        if self.token_owner is not None:
            self.username = self.token_owner.partition(":")[2]
            self.token_authenticated = True
        else:
            self.username = self._first.username
        self.complete = True
        return scram.server_final(self.mechanism, self._cred, message).encode()


# ------------------------------------------------------------------------ OAUTHBEARER

_OAUTH_FIRST = re.compile(
    r"n,(?:a=(?P<authzid>[^,]+))?,\x01(?P<kvpairs>(?:[A-Za-z]+=[\x21-\x7E \t\r\n]*\x01)*)\x01$"
)


def _b64url_json(part: str) -> Any:
    padded = part + "=" * (-len(part) % 4)
    return json.loads(base64.urlsafe_b64decode(padded.encode()))


class OAuthBearerServer:
    """RFC 7628 with Kafka's default validator for unsecured JWS tokens (development use):
    ``alg: none``, an empty signature, a string principal claim (``sub`` unless
    ``unsecuredValidatorPrincipalClaimName``), ``exp`` in the future (within
    ``unsecuredValidatorAllowableClockSkewMs``), ``iat`` not in the future, and every
    ``unsecuredValidatorRequiredScope`` in the ``scope`` claim. A refused token gets a JSON
    challenge; the client's ``\\x01`` answer to it then fails with that JSON as the message.
    The token's ``exp`` bounds the session (KIP-368), as Kafka's credential lifetime does.

    With ``validator`` (Kafka's OAuthBearerValidatorCallbackHandler, broker/oauth_validation.py)
    the token is a signed JWT checked against a JWK set instead; any refusal is
    ``invalid_token``, as in Kafka."""

    def __init__(
        self,
        options: Mapping[str, str],
        now_ms: Callable[[], int],
        validator: TokenValidator | None = None,
    ) -> None:
        self.validator = validator
        self.principal_claim = options.get("unsecuredValidatorPrincipalClaimName", "sub")
        self.scope_claim = options.get("unsecuredValidatorScopeClaimName", "scope")
        self.required_scope = [
            s for s in options.get("unsecuredValidatorRequiredScope", "").split(",") if s.strip()
        ]
        self.skew_ms = int(options.get("unsecuredValidatorAllowableClockSkewMs", "0") or 0)
        self.now_ms = now_ms
        self.complete = False
        self.username = ""
        self.credential_expiry_ms: int | None = None
        self._error: str | None = None

    async def evaluate(self, token: bytes) -> bytes:
        if token == b"\x01" and self._error is not None:
            raise SaslFailure(self._error)
        self._error = None
        m = _OAUTH_FIRST.match(token.decode("utf-8", "replace"))
        if m is None:
            raise generic_failure("OAUTHBEARER")
        pairs = dict(p.split("=", 1) for p in m["kvpairs"].split("\x01") if p)
        auth = pairs.get("auth", "")
        if not auth.startswith("Bearer "):
            raise generic_failure("OAUTHBEARER")
        jws = auth[len("Bearer ") :].strip()
        failure = await self._validate_jwt(jws) if self.validator else self._validate(jws)
        if failure is not None:
            status, scope = failure
            self._error = f'{{"status":"{status}"' + (f', "scope":"{scope}"' if scope else "") + "}"
            return self._error.encode()
        authzid = m["authzid"] or ""
        if authzid and authzid != self.username:
            raise SaslFailure(
                f"Authentication failed: Client requested an authorization id ({authzid}) that "
                f"is different from the token's principal name ({self.username})"
            )
        self.complete = True
        return b""

    async def _validate_jwt(self, jws: str) -> tuple[str, str] | None:
        assert self.validator is not None
        token = await self.validator(jws)
        if token is None:
            return "invalid_token", ""
        self.username = token.principal
        self.credential_expiry_ms = token.expiry_ms
        return None

    def _validate(self, jws: str) -> tuple[str, str] | None:
        parts = jws.split(".")
        if len(parts) != 3 or parts[2]:
            return "invalid_token", ""
        try:
            header, claims = _b64url_json(parts[0]), _b64url_json(parts[1])
        except (ValueError, UnicodeDecodeError):
            return "invalid_token", ""
        if not isinstance(header, dict) or header.get("alg") != "none":
            return "invalid_token", ""
        if not isinstance(claims, dict):
            return "invalid_token", ""
        principal, exp, iat = claims.get(self.principal_claim), claims.get("exp"), claims.get("iat")
        now = self.now_ms()
        if not isinstance(principal, str) or not principal.strip():
            return "invalid_token", ""
        # NumericDate seconds, possibly fractional: Kafka compares whole milliseconds.
        if not isinstance(exp, (int, float)) or int(exp * 1000) <= now - self.skew_ms:
            return "invalid_token", ""
        if iat is not None and (
            not isinstance(iat, (int, float))
            or int(iat * 1000) > now + self.skew_ms
            or int(iat * 1000) >= int(exp * 1000)
        ):
            return "invalid_token", ""
        scope = claims.get(self.scope_claim, [])
        scopes = scope.split() if isinstance(scope, str) else list(scope or [])
        missing = [s for s in self.required_scope if s not in scopes]
        if missing:
            return "insufficient_scope", " ".join(self.required_scope)
        self.username = principal
        self.credential_expiry_ms = int(exp * 1000)
        return None
