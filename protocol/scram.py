"""SCRAM (RFC 5802, RFC 7677) as Kafka speaks it: maths, messages and stored credentials.

Pure functions, shared by the broker's server side and its inter-broker client side.
Kafka's variants: the client-first message may carry extensions after the nonce
(``,tokenauth=true`` for delegation tokens, KIP-48), the server-first message never does,
and a stored credential is ``salt=<b64>,stored_key=<b64>,server_key=<b64>,iterations=<n>``
(ScramCredentialUtils.credentialToString).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

# Kafka's ScramMechanism: name -> (hash, min iterations, max iterations, wire type id).
MECHANISMS: dict[str, tuple[str, int, int, int]] = {
    "SCRAM-SHA-256": ("sha256", 4096, 16384, 1),
    "SCRAM-SHA-512": ("sha512", 4096, 16384, 2),
}
MECHANISM_BY_TYPE: dict[int, str] = {v[3]: k for k, v in MECHANISMS.items()}
TOKEN_AUTH_EXTENSION = "tokenauth"
SUPPORTED_EXTENSIONS = frozenset({TOKEN_AUTH_EXTENSION})


class ScramError(Exception):
    """A malformed SCRAM message or failed proof (the server answers with Kafka's text)."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise ScramError(f"Invalid base64 in {what}") from None


def hash_name(mechanism: str) -> str:
    return MECHANISMS[mechanism][0]


def salted_password(mechanism: str, password: str, salt: bytes, iterations: int) -> bytes:
    """Hi(password, salt, i): PBKDF2 with the mechanism's HMAC."""
    return hashlib.pbkdf2_hmac(hash_name(mechanism), password.encode(), salt, iterations)


def _hmac(mechanism: str, key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hash_name(mechanism)).digest()


def _h(mechanism: str, data: bytes) -> bytes:
    return hashlib.new(hash_name(mechanism), data).digest()


@dataclass(frozen=True)
class ScramCredential:
    """What the broker stores for a user: never the password."""

    salt: bytes
    stored_key: bytes
    server_key: bytes
    iterations: int

    def to_config(self) -> str:
        return (
            f"salt={_b64(self.salt)},stored_key={_b64(self.stored_key)},"
            f"server_key={_b64(self.server_key)},iterations={self.iterations}"
        )

    @classmethod
    def from_config(cls, text: str) -> ScramCredential:
        fields = dict(part.split("=", 1) for part in text.split(",") if "=" in part)
        try:
            return cls(
                _unb64(fields["salt"], "salt"),
                _unb64(fields["stored_key"], "stored_key"),
                _unb64(fields["server_key"], "server_key"),
                int(fields["iterations"]),
            )
        except (KeyError, ValueError) as exc:
            raise ScramError(f"Invalid credential: {exc}") from None


def credential_from_salted(
    mechanism: str, salted: bytes, salt: bytes, iterations: int
) -> ScramCredential:
    """ScramFormatter.generateCredential from an already salted password (KIP-554 upsertion)."""
    client_key = _hmac(mechanism, salted, b"Client Key")
    server_key = _hmac(mechanism, salted, b"Server Key")
    return ScramCredential(salt, _h(mechanism, client_key), server_key, iterations)


def new_credential(mechanism: str, password: str, iterations: int = 4096) -> ScramCredential:
    salt = secrets.token_bytes(32)
    return credential_from_salted(
        mechanism, salted_password(mechanism, password, salt, iterations), salt, iterations
    )


def nonce() -> str:
    """ScramFormatter.secureRandomString: printable, no comma."""
    return base64.b64encode(secrets.token_bytes(24)).decode().replace("=", "")


def escape_name(name: str) -> str:
    return name.replace("=", "=3D").replace(",", "=2C")


def unescape_name(sasl_name: str) -> str:
    return sasl_name.replace("=2C", ",").replace("=3D", "=")


# ------------------------------------------------------------------------------ messages

_CLIENT_FIRST = re.compile(
    r"n,(?:a=(?P<authzid>[^,]*))?,(?P<bare>(?:m=[^,]*,)?n=(?P<name>[^,]*),"
    r"r=(?P<nonce>[\x21-\x2b\x2d-\x7e]+)(?P<ext>(?:,[a-zA-Z0-9]+=[^,]*)*))$"
)
_CLIENT_FINAL = re.compile(
    r"(?P<without>c=(?P<channel>[^,]*),r=(?P<nonce>[\x21-\x2b\x2d-\x7e]+)"
    r"(?P<ext>(?:,[a-zA-Z0-9]+=[^,]*)*)),p=(?P<proof>[^,]+)$"
)
_SERVER_FIRST = re.compile(r"r=(?P<nonce>[^,]+),s=(?P<salt>[^,]+),i=(?P<iter>[0-9]+)(?:,.*)?$")
_SERVER_FINAL = re.compile(r"(?:e=(?P<error>[^,]*)|v=(?P<sig>[^,]+))(?:,.*)?$")


@dataclass(frozen=True)
class ClientFirst:
    authzid: str
    username: str
    nonce: str
    extensions: dict[str, str]
    bare: str


def parse_client_first(data: bytes) -> ClientFirst:
    m = _CLIENT_FIRST.match(data.decode("utf-8", "replace"))
    if m is None:
        raise ScramError("Invalid SCRAM client first message format")
    ext = dict(e.split("=", 1) for e in m["ext"].split(",") if e)
    return ClientFirst(m["authzid"] or "", unescape_name(m["name"]), m["nonce"], ext, m["bare"])


@dataclass(frozen=True)
class ClientFinal:
    without_proof: str
    nonce: str
    proof: bytes


def parse_client_final(data: bytes) -> ClientFinal:
    m = _CLIENT_FINAL.match(data.decode("utf-8", "replace"))
    if m is None:
        raise ScramError("Invalid SCRAM client final message format")
    return ClientFinal(m["without"], m["nonce"], _unb64(m["proof"], "proof"))


def server_first(client_nonce: str, server_nonce: str, cred: ScramCredential) -> str:
    return f"r={client_nonce}{server_nonce},s={_b64(cred.salt)},i={cred.iterations}"


def auth_message(client_first_bare: str, server_first_msg: str, client_final_without: str) -> bytes:
    return f"{client_first_bare},{server_first_msg},{client_final_without}".encode()


def verify_proof(mechanism: str, cred: ScramCredential, message: bytes, proof: bytes) -> bool:
    """RFC 5802 3: recover ClientKey from the proof; its hash must be the StoredKey."""
    signature = _hmac(mechanism, cred.stored_key, message)
    if len(proof) != len(signature):
        return False
    client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
    return hmac.compare_digest(_h(mechanism, client_key), cred.stored_key)


def server_final(mechanism: str, cred: ScramCredential, message: bytes) -> str:
    return "v=" + _b64(_hmac(mechanism, cred.server_key, message))


# ------------------------------------------------------------------------ client side


class ScramClient:
    """The client half (the broker's replica fetcher and tests use it)."""

    def __init__(
        self,
        mechanism: str,
        username: str,
        password: str,
        extensions: dict[str, str] | None = None,
        client_nonce: str | None = None,
    ) -> None:
        self.mechanism = mechanism
        self.password = password
        self.nonce = client_nonce or nonce()
        ext = "".join(f",{k}={v}" for k, v in (extensions or {}).items())
        self.bare = f"n={escape_name(username)},r={self.nonce}{ext}"
        self._expected_signature = b""

    def first(self) -> bytes:
        return ("n,," + self.bare).encode()

    def final(self, server_first_data: bytes) -> bytes:
        text = server_first_data.decode()
        m = _SERVER_FIRST.match(text)
        if m is None or not m["nonce"].startswith(self.nonce):
            raise ScramError("Invalid SCRAM server first message")
        salt = _unb64(m["salt"], "salt")
        iterations = int(m["iter"])
        salted = salted_password(self.mechanism, self.password, salt, iterations)
        without = f"c={_b64(b'n,,')},r={m['nonce']}"
        message = auth_message(self.bare, text, without)
        client_key = _hmac(self.mechanism, salted, b"Client Key")
        signature = _hmac(self.mechanism, _h(self.mechanism, client_key), message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        server_key = _hmac(self.mechanism, salted, b"Server Key")
        self._expected_signature = _hmac(self.mechanism, server_key, message)
        return f"{without},p={_b64(proof)}".encode()

    def verify_server_final(self, data: bytes) -> None:
        m = _SERVER_FINAL.match(data.decode())
        if m is None:
            raise ScramError("Invalid SCRAM server final message")
        if m["error"] is not None:
            raise ScramError(f"SCRAM error from server: {m['error']}")
        if not hmac.compare_digest(_unb64(m["sig"], "signature"), self._expected_signature):
            raise ScramError("Invalid server signature in server final message")
