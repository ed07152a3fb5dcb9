"""Signed JWTs as Kafka's broker validates them (KIP-768's BrokerJwtValidator over jose4j).

Pure: parse a JWK set, check a compact JWS's signature against it, check its claims at a
given time. No I/O and no clock: the caller supplies the key set and "now", so the rules
can be tested byte for byte. Every refusal is a ``JwtError`` whose text is for the log
only; the client is told ``invalid_token`` whatever went wrong, as Kafka does.

Algorithms: RS256/384/512, PS256/384/512 (RSA keys of at least 2048 bits, as jose4j
demands) and ES256/384/512 (the curve must match). ``none`` and HMAC are refused: a key
set of public keys cannot verify them, and Kafka forbids ``none`` outright.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


class JwtError(ValueError):
    """The token (or key set) is unusable; the message says why, for the broker's log."""


_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}
_CURVES: dict[str, tuple[type[ec.EllipticCurve], int]] = {
    "P-256": (ec.SECP256R1, 32),
    "P-384": (ec.SECP384R1, 48),
    "P-521": (ec.SECP521R1, 66),
}
# alg -> (key type, curve for ES*)
ALGORITHMS: dict[str, tuple[str, str | None]] = {
    **{f"RS{n}": ("RSA", None) for n in _HASHES},
    **{f"PS{n}": ("RSA", None) for n in _HASHES},
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
}
MIN_RSA_BITS = 2048


def b64url_decode(part: str) -> bytes:
    if not all(c.isalnum() or c in "-_" for c in part):
        raise JwtError("not base64url")
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        raise JwtError("not base64url") from None


def _b64_int(value: Any, name: str) -> int:
    if not isinstance(value, str) or not value:
        raise JwtError(f"JWK member {name} missing")
    return int.from_bytes(b64url_decode(value), "big")


# ------------------------------------------------------------------------ key sets


@dataclass(frozen=True)
class Jwk:
    """One public verification key of a JWK set."""

    kty: str
    key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey
    kid: str | None = None
    alg: str | None = None
    use: str | None = None
    crv: str | None = None


def _parse_jwk(obj: Mapping[str, Any]) -> Jwk | None:
    """A usable public key, or None for a key type we cannot verify with (jose4j skips
    those too rather than rejecting the whole set)."""
    kty = obj.get("kty")
    meta = {k: obj.get(k) if isinstance(obj.get(k), str) else None for k in ("kid", "alg", "use")}
    if kty == "RSA":
        key = rsa.RSAPublicNumbers(_b64_int(obj.get("e"), "e"), _b64_int(obj.get("n"), "n"))
        try:
            return Jwk("RSA", key.public_key(), **meta)
        except ValueError as exc:
            raise JwtError(f"bad RSA key: {exc}") from None
    if kty == "EC":
        crv = obj.get("crv")
        if crv not in _CURVES:
            return None
        curve = _CURVES[crv][0]()
        nums = ec.EllipticCurvePublicNumbers(
            _b64_int(obj.get("x"), "x"), _b64_int(obj.get("y"), "y"), curve
        )
        try:
            return Jwk("EC", nums.public_key(), crv=crv, **meta)
        except ValueError as exc:
            raise JwtError(f"bad EC key: {exc}") from None
    return None


def parse_jwks(text: str | bytes) -> tuple[Jwk, ...]:
    """RFC 7517 ``{"keys": [...]}`` (a single JWK object is accepted too, as jose4j does)."""
    try:
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise JwtError(f"JWK set is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise JwtError("JWK set is not a JSON object")
    raw = doc.get("keys", [doc] if "kty" in doc else None)
    if not isinstance(raw, list):
        raise JwtError('JWK set has no "keys" array')
    keys = [_parse_jwk(k) for k in raw if isinstance(k, dict)]
    return tuple(k for k in keys if k is not None)


# ------------------------------------------------------------------------ signatures


@dataclass(frozen=True)
class Jws:
    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes


def _json_part(part: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(b64url_decode(part))
    except (ValueError, UnicodeDecodeError):
        raise JwtError(f"JWT {what} is not base64url JSON") from None
    if not isinstance(value, dict):
        raise JwtError(f"JWT {what} is not a JSON object")
    return value


def decode(token: str) -> Jws:
    """Split a compact JWS (``header.payload.signature``) without verifying it."""
    parts = token.split(".")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise JwtError("malformed JWT: expected header.payload.signature")
    header = _json_part(parts[0], "header")
    claims = _json_part(parts[1], "payload")
    return Jws(header, claims, f"{parts[0]}.{parts[1]}".encode(), b64url_decode(parts[2]))


def select_key(header: Mapping[str, Any], keys: Sequence[Jwk]) -> Jwk:
    """jose4j's VerificationJwkSelector: same kid (when the token names one), a key type
    and curve fit for ``alg``, use ``sig`` or unset, alg unset or equal; first match wins."""
    alg = header.get("alg")
    kty, crv = ALGORITHMS[alg]
    kid = header.get("kid")
    for key in keys:
        if kid is not None and key.kid != kid:
            continue
        if key.kty != kty or (crv is not None and key.crv != crv):
            continue
        if key.use not in (None, "sig") or key.alg not in (None, alg):
            continue
        return key
    raise JwtError(f"no JWK matches kid={kid!r} alg={alg}")


def verify(jws: Jws, keys: Sequence[Jwk]) -> None:
    """Check the signature; raises JwtError (alg none, unknown kid, bad signature...)."""
    alg = jws.header.get("alg")
    if not isinstance(alg, str) or alg not in ALGORITHMS:
        raise JwtError(f"JWS algorithm {alg!r} is not allowed")
    if "crit" in jws.header:
        raise JwtError("unrecognised critical JWS header parameters")
    key = select_key(jws.header, keys)
    digest = _HASHES[alg[2:]]()
    try:
        if isinstance(key.key, rsa.RSAPublicKey):
            if key.key.key_size < MIN_RSA_BITS:
                raise JwtError(f"RSA key of {key.key.key_size} bits: at least 2048 required")
            pad: padding.AsymmetricPadding = (
                padding.PKCS1v15()
                if alg.startswith("RS")
                else padding.PSS(padding.MGF1(digest), digest.digest_size)
            )
            key.key.verify(jws.signature, jws.signing_input, pad, digest)
        else:
            size = _CURVES[key.crv or ""][1]
            if len(jws.signature) != 2 * size:
                raise JwtError("ECDSA signature of the wrong length")
            r = int.from_bytes(jws.signature[:size], "big")
            s = int.from_bytes(jws.signature[size:], "big")
            key.key.verify(encode_dss_signature(r, s), jws.signing_input, ec.ECDSA(digest))
    except InvalidSignature:
        raise JwtError(f"JWS signature is invalid (kid={key.kid!r})") from None


# ------------------------------------------------------------------------ claims


@dataclass(frozen=True)
class ClaimPolicy:
    """The broker's sasl.oauthbearer.* settings that bear on claims."""

    sub_claim: str = "sub"
    scope_claim: str = "scope"
    clock_skew_s: int = 30
    expected_issuer: str | None = None
    expected_audience: tuple[str, ...] = ()


@dataclass(frozen=True)
class ValidatedToken:
    principal: str  # the subject claim, trimmed
    expiry_ms: int
    issued_at_ms: int
    scopes: frozenset[str] = field(default_factory=frozenset)


def _numeric_date(claims: Mapping[str, Any], name: str) -> int | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise JwtError(f"the '{name}' claim is not a NumericDate")
    return int(value)  # whole seconds, as jose4j's NumericDate


def _string(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is not None and not isinstance(value, str):
        raise JwtError(f"the '{name}' claim is not a string")
    return value


def validate_claims(claims: Mapping[str, Any], now_s: int, policy: ClaimPolicy) -> ValidatedToken:
    """jose4j's checks as Kafka configures them (exp and iat required, exp not before iat,
    nbf honoured, the clock skew, issuer, audience), then Kafka's own (sub non-blank,
    scopes non-blank and distinct, exp and iat not negative)."""
    exp, iat, nbf = (_numeric_date(claims, n) for n in ("exp", "iat", "nbf"))
    if exp is None:
        raise JwtError("no Expiration Time (exp) claim present")
    if iat is None:
        raise JwtError("no Issued At (iat) claim present")
    skew = policy.clock_skew_s
    if now_s - skew >= exp:
        raise JwtError(f"the JWT is no longer valid: exp={exp}, now={now_s}, skew={skew}s")
    if exp < iat:
        raise JwtError(f"the exp claim ({exp}) cannot be before the iat claim ({iat})")
    if nbf is not None and now_s + skew < nbf:
        raise JwtError(f"the JWT is not yet valid: nbf={nbf}, now={now_s}, skew={skew}s")
    if policy.expected_issuer is not None:
        iss = _string(claims, "iss")
        if iss is None:
            raise JwtError("no Issuer (iss) claim present")
        if iss != policy.expected_issuer:
            raise JwtError(f"issuer {iss!r} is not {policy.expected_issuer!r}")
    if policy.expected_audience:
        aud = claims.get("aud")
        auds = [aud] if isinstance(aud, str) else aud
        if aud is None:
            raise JwtError("no Audience (aud) claim present")
        if not isinstance(auds, list) or not all(isinstance(a, str) for a in auds):
            raise JwtError("the 'aud' claim is not a string or an array of strings")
        if not set(auds) & set(policy.expected_audience):
            raise JwtError(f"audience {auds} is not one of {list(policy.expected_audience)}")
    raw_scope = claims.get(policy.scope_claim)
    items = [raw_scope] if isinstance(raw_scope, str) else raw_scope
    scopes: set[str] = set()
    for item in items if isinstance(items, list) else []:
        scope = item.strip() if isinstance(item, str) else ""
        if not scope or scope in scopes:
            raise JwtError(f"{policy.scope_claim} values must be non-empty and distinct")
        scopes.add(scope)
    sub = (_string(claims, policy.sub_claim) or "").strip()
    if not sub:
        raise JwtError(f"{policy.sub_claim} value must be non-null and non-empty")
    if exp < 0 or iat < 0:
        raise JwtError("exp and iat must be non-negative")
    return ValidatedToken(sub, exp * 1000, iat * 1000, frozenset(scopes))


def validate(token: str, keys: Sequence[Jwk], now_s: int, policy: ClaimPolicy) -> ValidatedToken:
    """A compact JWS from a client: signature, then claims."""
    jws = decode(token)
    verify(jws, keys)
    return validate_claims(jws.claims, now_s, policy)
