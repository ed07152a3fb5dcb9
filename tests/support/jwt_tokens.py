"""A test token issuer: key pairs, their JWK set, and signed JWTs (RS*, PS*, ES*).

Independent of pybroker's verifier (protocol/jwt.py): it signs with ``cryptography``
directly, so a verifier bug cannot hide behind a matching signer bug.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

_HASH = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}
_EC = {"ES256": (ec.SECP256R1, "P-256", 32), "ES384": (ec.SECP384R1, "P-384", 48),
       "ES512": (ec.SECP521R1, "P-521", 66)}  # fmt: skip


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _int_b64(n: int, size: int | None = None) -> str:
    return b64(n.to_bytes(size or (n.bit_length() + 7) // 8, "big"))


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: Any

    def jwk(self) -> dict[str, Any]:
        pub = self.private.public_key().public_numbers()
        if self.alg.startswith("ES"):
            _, crv, size = _EC[self.alg]
            return {"kty": "EC", "kid": self.kid, "use": "sig", "alg": self.alg, "crv": crv,
                    "x": _int_b64(pub.x, size), "y": _int_b64(pub.y, size)}  # fmt: skip
        return {"kty": "RSA", "kid": self.kid, "use": "sig", "alg": self.alg,
                "n": _int_b64(pub.n), "e": _int_b64(pub.e)}  # fmt: skip

    def sign(self, claims: dict[str, Any], header: dict[str, Any] | None = None) -> str:
        head = {"alg": self.alg, "typ": "JWT", "kid": self.kid, **(header or {})}
        head = {k: v for k, v in head.items() if v is not None}
        signing_input = f"{b64(json.dumps(head).encode())}.{b64(json.dumps(claims).encode())}"
        digest = _HASH[self.alg[2:]]()
        data = signing_input.encode()
        if self.alg.startswith("ES"):
            der = self.private.sign(data, ec.ECDSA(digest))
            r, s = decode_dss_signature(der)
            size = _EC[self.alg][2]
            sig = r.to_bytes(size, "big") + s.to_bytes(size, "big")
        elif self.alg.startswith("PS"):
            sig = self.private.sign(data, padding.PSS(padding.MGF1(digest), digest.digest_size),
                                    digest)  # fmt: skip
        else:
            sig = self.private.sign(data, padding.PKCS1v15(), digest)
        return f"{signing_input}.{b64(sig)}"


def new_key(kid: str, alg: str = "RS256", rsa_bits: int = 2048) -> SigningKey:
    if alg.startswith("ES"):
        return SigningKey(kid, alg, ec.generate_private_key(_EC[alg][0]()))
    return SigningKey(kid, alg, rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits))


def jwks_json(*keys: SigningKey) -> str:
    return json.dumps({"keys": [k.jwk() for k in keys]})


def write_jwks(path: Path, *keys: SigningKey) -> str:
    """Write the JWK set and return its file: URL."""
    path.write_text(jwks_json(*keys))
    return path.resolve().as_uri()


def claims(sub: str | None = "alice", lifetime: int = 3600, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    out: dict[str, Any] = {"iat": now, "exp": now + lifetime, **extra}
    if sub is not None:
        out["sub"] = sub
    return out


def unsigned(claims_: dict[str, Any]) -> str:
    """An ``alg: none`` token (empty signature)."""
    return f"{b64(json.dumps({'alg': 'none'}).encode())}.{b64(json.dumps(claims_).encode())}."
