"""Delegation tokens (KIP-48, KIP-373) as Kafka 4.1's controller and brokers manage them.

A token is issued to an owner (by default the requester) and may be renewed or expired by
its owner or renewers; its HMAC is HmacSHA512(``delegation.token.secret.key``, token id)
and it authenticates with SCRAM (``tokenauth=true``): username = token id, password = the
HMAC in base64. Each broker derives its own SCRAM credentials from the HMAC, as Kafka's
DelegationTokenManager does (a fresh salt, the mechanism's minimum iterations), so the
store only holds the token's information. Without a secret key tokens are disabled.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from pybroker.broker.clock import now_ms
from pybroker.protocol import scram
from pybroker.protocol.errors import ErrorCode
from pybroker.replication.token_store import TokenInfo, TokenStore

log = logging.getLogger(__name__)

ERROR_TIMESTAMP = -1  # the broker's refusals (KafkaApis)
NO_TIMESTAMP = 0  # the controller's refusals leave the response field at its default


def new_token_id() -> str:
    """Kafka's Uuid.randomUuid().toString(): a v4 UUID in URL-safe base64 without padding,
    never starting with '-' (nor the reserved all-zero / metadata-topic ids)."""
    while True:
        raw = uuid.uuid4().bytes
        text = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        if not text.startswith("-") and raw not in (bytes(16), bytes(15) + b"\x01"):
            return text


def create_hmac(token_id: str, secret_key: str) -> bytes:
    """DelegationTokenManager.createHmac: HmacSHA512 keyed with the secret's UTF-8 bytes."""
    return hmac.new(secret_key.encode(), token_id.encode(), hashlib.sha512).digest()


def user_principal(principal: str) -> tuple[str, str]:
    """``User:alice`` -> ("User", "alice")."""
    kind, _, name = principal.partition(":")
    return kind, name


@dataclass(frozen=True)
class TokenCredential:
    """What SCRAM needs to authenticate a token, and who it then is."""

    credential: scram.ScramCredential
    owner: str
    expiry_ms: int


class DelegationTokenManager:
    """Create, renew, expire, describe; the SCRAM credentials of live tokens."""

    def __init__(
        self,
        secret_key: str | None,
        max_lifetime_ms: int,
        expiry_time_ms: int,
        store: TokenStore | None = None,
    ) -> None:
        self.secret_key = secret_key or None
        self.max_lifetime_ms = max_lifetime_ms
        self.expiry_time_ms = expiry_time_ms
        self.store = store
        # (token id, hmac, mechanism) -> credential: salted once per broker, like TokenCache.
        self._credentials: dict[tuple[str, bytes, str], scram.ScramCredential] = {}

    @property
    def enabled(self) -> bool:
        return self.secret_key is not None and self.store is not None

    def hmac_of(self, token_id: str) -> bytes:
        assert self.secret_key is not None
        return create_hmac(token_id, self.secret_key)

    async def _by_hmac(self, mac: bytes) -> TokenInfo | None:
        assert self.store is not None
        for token in await self.store.list():
            if hmac.compare_digest(self.hmac_of(token.token_id), mac):
                return token
        return None

    async def create(
        self, owner: str, requester: str, renewers: list[str], max_lifetime_ms: int
    ) -> tuple[TokenInfo, bytes]:
        assert self.store is not None
        now = now_ms()
        lifetime = self.max_lifetime_ms
        if max_lifetime_ms > 0:
            lifetime = min(lifetime, max_lifetime_ms)
        max_ts = now + lifetime
        token = TokenInfo(
            token_id=new_token_id(),
            owner=owner,
            requester=requester,
            renewers=list(renewers),
            issue_ms=now,
            max_ms=max_ts,
            expiry_ms=min(max_ts, now + self.expiry_time_ms),
        )
        await self.store.put(token)
        log.info("Created a delegation token: %s for owner: %s", token.token_id, owner)
        return token, self.hmac_of(token.token_id)

    async def _checked(self, principal: str, mac: bytes) -> tuple[ErrorCode, TokenInfo | None]:
        """The controller's order: unknown HMAC, expired, then owner/renewer."""
        token = await self._by_hmac(mac)
        if token is None:
            return ErrorCode.delegation_token_not_found, None
        if token.expired(now_ms()):
            return ErrorCode.delegation_token_expired, None
        if not (principal == token.owner or principal in token.renewers):
            return ErrorCode.delegation_token_owner_mismatch, None
        return ErrorCode.none, token

    async def renew(self, principal: str, mac: bytes, period_ms: int) -> tuple[ErrorCode, int]:
        if not self.enabled:
            return ErrorCode.delegation_token_auth_disabled, NO_TIMESTAMP
        code, token = await self._checked(principal, mac)
        if token is None:
            return code, NO_TIMESTAMP
        assert self.store is not None
        renew = self.expiry_time_ms if period_ms <= 0 else min(self.expiry_time_ms, period_ms)
        token.expiry_ms = min(token.max_ms, now_ms() + renew)
        await self.store.put(token)
        return ErrorCode.none, token.expiry_ms

    async def expire(self, principal: str, mac: bytes, period_ms: int) -> tuple[ErrorCode, int]:
        """A negative period removes the token at once (the expiry answered is now)."""
        if not self.enabled:
            return ErrorCode.delegation_token_auth_disabled, NO_TIMESTAMP
        code, token = await self._checked(principal, mac)
        if token is None:
            return code, NO_TIMESTAMP
        assert self.store is not None
        if period_ms < 0:
            await self.store.remove(token.token_id)
            log.info("Token expired for token: %s for owner: %s", token.token_id, token.owner)
            return ErrorCode.none, now_ms()
        token.expiry_ms = min(token.max_ms, now_ms() + period_ms)
        await self.store.put(token)
        return ErrorCode.none, token.expiry_ms

    async def describe(
        self,
        principal: str,
        owners: list[str] | None,
        may_describe_token: Callable[[str], bool],
        may_describe_owner: Callable[[str], bool],
    ) -> list[tuple[TokenInfo, bytes]]:
        """DelegationTokenManager.filterToken over live tokens."""
        assert self.store is not None
        out = []
        for token in await self.store.list():
            if owners is not None and not any(token.owner_or_renewer(o) for o in owners):
                continue
            if not (
                token.owner_or_renewer(principal)
                or may_describe_token(token.token_id)
                or may_describe_owner(token.owner)
            ):
                continue
            out.append((token, self.hmac_of(token.token_id)))
        return out

    async def credential(self, token_id: str, mechanism: str) -> TokenCredential | None:
        """SCRAM's view of a live token (None: unknown, expired, or tokens disabled)."""
        if not self.enabled or mechanism not in scram.MECHANISMS:
            return None
        assert self.store is not None
        token = await self.store.get(token_id)
        if token is None or token.expired(now_ms()):
            return None
        mac = self.hmac_of(token_id)
        key = (token_id, mac, mechanism)
        cred = self._credentials.get(key)
        if cred is None:
            password = base64.b64encode(mac).decode()
            cred = scram.new_credential(mechanism, password, scram.MECHANISMS[mechanism][1])
            self._credentials[key] = cred
        return TokenCredential(cred, token.owner, token.expiry_ms)

    async def expire_tokens(self) -> None:
        """The expiry check (``delegation.token.expiry.check.interval.ms``)."""
        if not self.enabled:
            return
        assert self.store is not None
        now = now_ms()
        for token in await self.store.list():
            if token.expired(now):
                log.info(
                    "Delegation token expired for token: %s for owner: %s",
                    token.token_id,
                    token.owner,
                )
                await self.store.remove(token.token_id)
                self._forget(token.token_id)

    def _forget(self, token_id: str) -> None:
        for key in [k for k in self._credentials if k[0] == token_id]:
            del self._credentials[key]
