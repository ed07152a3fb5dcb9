"""TLS for SSL and SASL_SSL listeners, built from Kafka's ``ssl.*`` settings.

Kafka reads each listener's SSL settings as ``listener.name.<listener>.ssl.*`` falling back
to ``ssl.*`` and refuses to start when they do not make a usable engine; we build one
``ssl.SSLContext`` per TLS listener at start-up and raise ``TlsConfigError`` (one line) on
anything wrong. Key stores: PKCS12 (read with ``cryptography``), PEM files and PEM inline
(KIP-651); JKS, Kafka's default type, is tried as PKCS12 (what a modern JDK does with
``keystore.type.compat``). Python's ``ssl`` loads certificates only from files, so a key
from PKCS12 or inline PEM goes through a private temporary file, re-encrypted with a
random password, deleted as soon as OpenSSL has read it.

The principal of an SSL connection is ``User:`` + the client certificate's subject DN
(RFC 2253) mapped through ``ssl.principal.mapping.rules``; no certificate: ANONYMOUS.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pybroker.broker.tls_principal import PrincipalMapper, subject_dn

log = logging.getLogger(__name__)

TLS_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})
ANONYMOUS = "User:ANONYMOUS"
HANDSHAKE_TIMEOUT_S = 10.0

# Kafka's SslConfigs defaults.
DEFAULTS: dict[str, str] = {
    "ssl.protocol": "TLSv1.3",
    "ssl.enabled.protocols": "TLSv1.2,TLSv1.3",
    "ssl.keystore.type": "JKS",
    "ssl.truststore.type": "JKS",
    "ssl.client.auth": "none",
    "ssl.endpoint.identification.algorithm": "https",
    "ssl.principal.mapping.rules": "DEFAULT",
    "ssl.cipher.suites": "",
    "ssl.allow.dn.changes": "false",
    "ssl.allow.san.changes": "false",
}
SSL_KEYS = (
    "ssl.protocol",
    "ssl.enabled.protocols",
    "ssl.cipher.suites",
    "ssl.keystore.type",
    "ssl.keystore.location",
    "ssl.keystore.password",
    "ssl.key.password",
    "ssl.keystore.key",
    "ssl.keystore.certificate.chain",
    "ssl.truststore.type",
    "ssl.truststore.location",
    "ssl.truststore.password",
    "ssl.truststore.certificates",
    "ssl.client.auth",
    "ssl.endpoint.identification.algorithm",
    "ssl.principal.mapping.rules",
    "ssl.allow.dn.changes",
    "ssl.allow.san.changes",
)
_VERSIONS = {
    "TLSv1": ssl.TLSVersion.TLSv1,
    "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}
_CLIENT_AUTH = {
    "none": ssl.CERT_NONE,
    "requested": ssl.CERT_OPTIONAL,
    "required": ssl.CERT_REQUIRED,
}


class TlsConfigError(RuntimeError):
    """The SSL settings of a listener cannot make a TLS engine: the broker must not start."""


# ------------------------------------------------------------------ settings


def listener_settings(raw: Mapping[str, str], listener: str) -> dict[str, str]:
    """The ``ssl.*`` settings of ``listener``: listener-prefixed keys win (Kafka's
    ``valuesWithPrefixOverride``), then the plain key, then Kafka's default."""
    prefix = f"listener.name.{listener.lower()}."
    out: dict[str, str] = {}
    for key in SSL_KEYS:
        if prefix + key in raw:
            out[key] = raw[prefix + key].strip()
        elif key in raw:
            out[key] = raw[key].strip()
        elif key in DEFAULTS:
            out[key] = DEFAULTS[key]
    return out


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


# ------------------------------------------------------------------ PEM handling

_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.S)


def normalize_pem(text: str) -> str:
    """Re-wrap PEM blocks: inline values in a properties file lose their newlines, and
    Kafka accepts them so; OpenSSL wants 64-column base64."""
    blocks = []
    for kind, body in _PEM_BLOCK.findall(text):
        b64 = "".join(body.split())
        lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
        blocks.append(f"-----BEGIN {kind}-----\n" + "\n".join(lines) + f"\n-----END {kind}-----\n")
    return "".join(blocks)


def _pem_kinds(text: str) -> list[str]:
    return [kind for kind, _ in _PEM_BLOCK.findall(text)]


def _read(path: str, what: str, store_type: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise TlsConfigError(
            f"Failed to load SSL {what} {path} of type {store_type}: {exc.strerror or exc}"
        ) from None


# ------------------------------------------------------------------ key stores


@dataclass
class KeyMaterial:
    """A private key and its certificate chain as PEM, the key encrypted with ``password``."""

    pem: bytes
    password: bytes | None


def _pkcs12(data: bytes, password: str | None, what: str, location: str, stype: str) -> Any:
    from cryptography.hazmat.primitives.serialization import pkcs12

    if data[:4] in (b"\xfe\xed\xfe\xed", b"\xce\xce\xce\xce"):  # JKS / JCEKS magic
        raise TlsConfigError(
            f"Failed to load SSL {what} {location} of type {stype}: a JKS store cannot be "
            "read by pybroker; convert it with keytool -importkeystore -deststoretype PKCS12"
        )
    try:
        return pkcs12.load_pkcs12(data, password.encode() if password is not None else None)
    except (ValueError, TypeError) as exc:
        reason = str(exc) or type(exc).__name__
        if "password" in reason.lower() or password is None:
            reason = "the password is wrong or missing"
        raise TlsConfigError(
            f"Failed to load SSL {what} {location} of type {stype}: {reason}"
        ) from None


def load_key_material(s: Mapping[str, str]) -> KeyMaterial | None:
    """The key store of these settings (None: no key store configured)."""
    from cryptography.hazmat.primitives import serialization

    stype = s["ssl.keystore.type"].upper()
    location = s.get("ssl.keystore.location") or None
    store_pw = s.get("ssl.keystore.password") or None
    key_pw = s.get("ssl.key.password") or None
    inline_key = s.get("ssl.keystore.key") or None
    inline_chain = s.get("ssl.keystore.certificate.chain") or None
    if inline_key or inline_chain:
        if stype != "PEM":
            raise TlsConfigError(
                f"SSL private key can be specified only for PEM, but key store type is {stype}."
            )
        if location:
            raise TlsConfigError(
                "Both SSL key store location and separate private key are specified."
            )
        if not (inline_key and inline_chain):
            raise TlsConfigError(
                "SSL private key and certificate chain (ssl.keystore.key and "
                "ssl.keystore.certificate.chain) must be specified together"
            )
        if store_pw:
            raise TlsConfigError(
                "SSL key store password cannot be specified with PEM format, only key "
                "password may be specified"
            )
        return _pem_material(inline_key + "\n" + inline_chain, key_pw, "key store (inline)")
    if location is None:
        return None
    data = _read(location, "keystore", stype)
    if stype == "PEM":
        if store_pw:
            raise TlsConfigError(
                "SSL key store password cannot be specified with PEM format, only key "
                "password may be specified"
            )
        return _pem_material(data.decode("ascii", "replace"), key_pw, location)
    if stype not in ("PKCS12", "JKS"):
        raise TlsConfigError(
            f"Failed to load SSL keystore {location} of type {stype}: pybroker supports "
            "the key store types PKCS12 and PEM"
        )
    if store_pw is None:
        raise TlsConfigError("SSL key store is specified, but key store password is not specified.")
    p12 = _pkcs12(data, store_pw, "keystore", location, stype)
    if p12.key is None or p12.cert is None:
        raise TlsConfigError(
            f"Failed to load SSL keystore {location} of type {stype}: it holds no private key "
            "with a certificate"
        )
    password = secrets.token_hex(16).encode()
    pem = p12.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )
    for cert in [p12.cert, *p12.additional_certs]:
        pem += cert.certificate.public_bytes(serialization.Encoding.PEM)
    return KeyMaterial(pem, password)


def _pem_material(text: str, key_pw: str | None, where: str) -> KeyMaterial:
    kinds = _pem_kinds(text)
    if not any(k.endswith("PRIVATE KEY") for k in kinds):
        raise TlsConfigError(f"Failed to load SSL keystore {where} of type PEM: no private key")
    if "CERTIFICATE" not in kinds:
        raise TlsConfigError(f"Failed to load SSL keystore {where} of type PEM: no certificate")
    if "ENCRYPTED PRIVATE KEY" in kinds and not key_pw:
        raise TlsConfigError(
            f"Failed to load SSL keystore {where} of type PEM: the private key is encrypted "
            "and ssl.key.password is not set"
        )
    pem = normalize_pem(text).encode()
    password = key_pw.encode() if key_pw else None
    _check_key(pem, password, where)
    return KeyMaterial(pem, password)


def _check_key(pem: bytes, password: bytes | None, where: str) -> None:
    """Decrypt the key once here, so a wrong ssl.key.password reads as one (OpenSSL only
    says "PEM lib")."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    block = next(m for m in _PEM_BLOCK.finditer(pem.decode()) if m.group(1).endswith("KEY"))
    encrypted = block.group(1) == "ENCRYPTED PRIVATE KEY" or "ENCRYPTED" in block.group(2)
    try:
        load_pem_private_key(block.group(0).encode(), password if encrypted else None)
    except (ValueError, TypeError) as exc:
        reason = "the key password (ssl.key.password) is wrong" if encrypted else str(exc)
        raise TlsConfigError(f"Failed to load SSL keystore {where} of type PEM: {reason}") from None


def load_trusted(s: Mapping[str, str]) -> tuple[str | None, list[str]]:
    """The trust store as PEM text (None: not configured) and the files it came from."""
    from cryptography.hazmat.primitives import serialization

    stype = s["ssl.truststore.type"].upper()
    location = s.get("ssl.truststore.location") or None
    password = s.get("ssl.truststore.password") or None
    inline = s.get("ssl.truststore.certificates") or None
    if inline:
        if stype != "PEM":
            raise TlsConfigError(
                f"SSL trust store certs can be specified only for PEM, but trust store type "
                f"is {stype}."
            )
        if location:
            raise TlsConfigError(
                "Both SSL trust store location and separate trust certificates are specified."
            )
        text = normalize_pem(inline)
        if not text:
            raise TlsConfigError("ssl.truststore.certificates holds no PEM certificate")
        return text, []
    if location is None:
        return None, []
    data = _read(location, "truststore", stype)
    if stype == "PEM":
        if password:
            raise TlsConfigError("SSL trust store password cannot be specified for PEM format.")
        text = normalize_pem(data.decode("ascii", "replace"))
        if "CERTIFICATE" not in _pem_kinds(text):
            raise TlsConfigError(
                f"Failed to load SSL truststore {location} of type PEM: no certificate"
            )
        return text, [location]
    if stype not in ("PKCS12", "JKS"):
        raise TlsConfigError(
            f"Failed to load SSL truststore {location} of type {stype}: pybroker supports "
            "the trust store types PKCS12 and PEM"
        )
    p12 = _pkcs12(data, password, "truststore", location, stype)
    certs = ([p12.cert] if p12.cert is not None else []) + list(p12.additional_certs)
    if not certs:
        raise TlsConfigError(f"Failed to load SSL truststore {location} of type {stype}: empty")
    pem = b"".join(c.certificate.public_bytes(serialization.Encoding.PEM) for c in certs)
    return pem.decode(), [location]


def _load_chain(ctx: ssl.SSLContext, material: KeyMaterial, where: str) -> None:
    fd, path = tempfile.mkstemp(prefix="pybroker-key-", suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(material.pem)
        ctx.load_cert_chain(path, password=material.password or b"")
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        if material.password is not None and "BAD_DECRYPT" in str(reason).upper():
            reason = "the key password (ssl.key.password) is wrong"
        raise TlsConfigError(f"Failed to load SSL keystore {where}: {reason}") from None
    finally:
        os.unlink(path)


# ------------------------------------------------------------------ contexts


def _versions(ctx: ssl.SSLContext, s: Mapping[str, str]) -> None:
    names = _csv(s["ssl.enabled.protocols"])
    unknown = [n for n in names if n not in _VERSIONS]
    if not names or unknown:
        raise TlsConfigError(
            f"Invalid value {s['ssl.enabled.protocols']} for configuration "
            "ssl.enabled.protocols: supported protocols are " + ", ".join(_VERSIONS)
        )
    chosen = sorted(_VERSIONS[n] for n in names)
    ctx.minimum_version = chosen[0]
    ctx.maximum_version = chosen[-1]


def openssl_cipher_name(name: str) -> str | None:
    """Kafka (Java) names IANA cipher suites; OpenSSL has its own names. None = a TLS 1.3
    suite, which Python cannot restrict (OpenSSL enables its safe TLS 1.3 suites)."""
    if name in ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"):
        return None
    if not name.startswith("TLS_") or "_WITH_" not in name:
        return name  # already an OpenSSL name
    kex, _, cipher = name[4:].partition("_WITH_")
    cipher = re.sub(r"AES_(\d+)", r"AES\1", cipher)
    cipher = cipher.replace("CHACHA20_POLY1305_SHA256", "CHACHA20_POLY1305")
    cipher = re.sub(r"_CBC_SHA$", "_SHA", cipher).replace("_CBC_", "_")
    kex = "" if kex == "RSA" else kex + "_"
    return (kex + cipher).replace("_", "-")


def _ciphers(ctx: ssl.SSLContext, s: Mapping[str, str]) -> None:
    names = _csv(s.get("ssl.cipher.suites", ""))
    if not names:
        return
    tls12 = [c for c in (openssl_cipher_name(n) for n in names) if c]
    if not tls12:
        return
    try:
        ctx.set_ciphers(":".join(tls12))
    except ssl.SSLError:
        raise TlsConfigError(
            f"Invalid value {s['ssl.cipher.suites']} for configuration ssl.cipher.suites: "
            "no cipher suite in it is available"
        ) from None


def server_context(s: Mapping[str, str]) -> ssl.SSLContext:
    """The server side of a TLS listener (Kafka's SslFactory in SERVER mode)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _versions(ctx, s)
    _ciphers(ctx, s)
    material = load_key_material(s)
    if material is None:
        raise TlsConfigError(
            "no key store configured: set ssl.keystore.location (PKCS12 or PEM) or "
            "ssl.keystore.key with ssl.keystore.certificate.chain"
        )
    _load_chain(ctx, material, s.get("ssl.keystore.location") or "(inline PEM)")
    auth = s["ssl.client.auth"].strip().lower()
    if auth not in _CLIENT_AUTH:
        raise TlsConfigError(
            f"Invalid value {s['ssl.client.auth']} for configuration ssl.client.auth: "
            "String must be one of: required, requested, none"
        )
    ctx.verify_mode = _CLIENT_AUTH[auth]
    if ctx.verify_mode != ssl.CERT_NONE:
        _trust(ctx, load_trusted(s)[0], ssl.Purpose.CLIENT_AUTH)
    else:
        load_trusted(s)  # a broken trust store is a start-up error even when unused
    ctx.options |= ssl.OP_NO_COMPRESSION
    return ctx


def client_context(s: Mapping[str, str]) -> ssl.SSLContext:
    """The broker's own client side (inter-broker): its key store for mTLS, its trust
    store for the peer, host names checked when ssl.endpoint.identification.algorithm=https."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _versions(ctx, s)
    _ciphers(ctx, s)
    material = load_key_material(s)
    if material is not None:
        _load_chain(ctx, material, s.get("ssl.keystore.location") or "(inline PEM)")
    algorithm = s["ssl.endpoint.identification.algorithm"].strip()
    ctx.check_hostname = algorithm.lower() == "https"
    ctx.verify_mode = ssl.CERT_REQUIRED
    _trust(ctx, load_trusted(s)[0], ssl.Purpose.SERVER_AUTH)
    return ctx


def _trust(ctx: ssl.SSLContext, pem: str | None, purpose: ssl.Purpose) -> None:
    """The trust store's certificates, or the system's when none is configured (Kafka
    uses the JDK's cacerts then)."""
    try:
        if pem is None:
            ctx.load_default_certs(purpose)
        else:
            ctx.load_verify_locations(cadata=pem)
    except ssl.SSLError as exc:
        raise TlsConfigError(f"Failed to load SSL truststore: {exc.reason or exc}") from None


# ------------------------------------------------------------------ listeners


@dataclass
class ListenerTls:
    """One TLS listener's engine (swappable on a reload) and principal rules."""

    name: str
    protocol: str
    context: ssl.SSLContext
    mapper: PrincipalMapper

    def principal(self, ssl_object: Any) -> str | None:
        """The principal of a connection after its handshake; None on SASL_SSL (SASL
        authenticates) or when no mapping rule applies (the connection must close)."""
        if self.protocol != "SSL":
            return None
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if not der:
            return ANONYMOUS
        dn = subject_dn(der)
        try:
            return "User:" + self.mapper.name(dn)
        except ValueError as exc:
            log.info("Failed authentication on listener %s: %s", self.name, exc)
            return None


def _describe(exc: TlsConfigError, listener: str) -> TlsConfigError:
    return TlsConfigError(f"Invalid SSL configuration for listener {listener}: {exc}")


def build_listener(raw: Mapping[str, str], name: str, protocol: str) -> ListenerTls:
    s = listener_settings(raw, name)
    if protocol == "SASL_SSL":
        # Kafka: on SASL_SSL only the listener-prefixed ssl.client.auth counts.
        s["ssl.client.auth"] = raw.get(
            f"listener.name.{name.lower()}.ssl.client.auth", "none"
        ).strip()
    try:
        mapper = PrincipalMapper(s["ssl.principal.mapping.rules"])
        return ListenerTls(name, protocol, server_context(s), mapper)
    except ValueError as exc:  # an invalid principal mapping rule
        raise _describe(TlsConfigError(str(exc)), name) from None
    except TlsConfigError as exc:
        raise _describe(exc, name) from None


def build_listeners(config: Any) -> dict[str, ListenerTls]:
    """Every TLS listener of ``config`` (BrokerConfig), by name; TlsConfigError if any
    cannot be built."""
    out: dict[str, ListenerTls] = {}
    for lst in config.listeners:
        if lst.security_protocol in TLS_PROTOCOLS:
            out[lst.name] = build_listener(config.raw, lst.name, lst.security_protocol)
    return out


def inter_broker_client_context(config: Any) -> ssl.SSLContext | None:
    """The context brokers connect to each other with, when the inter-broker listener is
    SSL or SASL_SSL (that listener's own settings, as Kafka's inter-broker client uses)."""
    name = config.inter_broker_listener_name
    protocol = config.listener_security_protocol_map.get(name)
    if protocol not in TLS_PROTOCOLS:
        return None
    try:
        return client_context(listener_settings(config.raw, name))
    except TlsConfigError as exc:
        raise _describe(exc, f"{name} (inter-broker client)") from None


# ------------------------------------------------------------------ dynamic reload

# Kafka's SslConfigs.RECONFIGURABLE_CONFIGS: what AlterConfigs may change on a running
# listener, always with the listener prefix and for one broker.
RECONFIGURABLE = frozenset(
    {
        "ssl.keystore.type",
        "ssl.keystore.location",
        "ssl.keystore.password",
        "ssl.key.password",
        "ssl.keystore.key",
        "ssl.keystore.certificate.chain",
        "ssl.truststore.type",
        "ssl.truststore.location",
        "ssl.truststore.password",
        "ssl.truststore.certificates",
    }
)
_DYNAMIC_KEY = re.compile(r"listener\.name\.([^.]+)\.(ssl\..+)")


def dynamic_ssl_listener(key: str) -> tuple[str, str] | None:
    """(LISTENER, ssl key) of a reconfigurable ``listener.name.<l>.ssl.*`` key, else None."""
    m = _DYNAMIC_KEY.fullmatch(key)
    if m is None or m.group(2) not in RECONFIGURABLE:
        return None
    return m.group(1).upper(), m.group(2)


def _identity(ctx_pem: KeyMaterial) -> tuple[str, frozenset[str]]:
    """Subject DN and SANs of a key store's leaf certificate."""
    from cryptography import x509

    block = next(
        m for m in _PEM_BLOCK.finditer(ctx_pem.pem.decode()) if m.group(1) == "CERTIFICATE"
    )
    cert = x509.load_pem_x509_certificate(block.group(0).encode())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = frozenset(str(n.value) for n in san)
    except x509.ExtensionNotFound:
        names = frozenset()
    return cert.subject.rfc4514_string(), names


def reload_listener(
    tls: ListenerTls, raw: Mapping[str, str], updates: Mapping[str, str | None], apply: bool
) -> dict[str, str]:
    """Build the listener's context again with ``updates`` (None = delete) over ``raw`` and
    swap it in when ``apply``: new connections use it, open ones keep theirs. As Kafka, the
    new key store must keep the certificate's subject DN and SANs unless
    ssl.allow.dn.changes / ssl.allow.san.changes say otherwise. Returns the new raw
    settings; TlsConfigError (nothing changed) on any problem."""
    new_raw = dict(raw)
    for key, value in updates.items():
        if value is None:
            new_raw.pop(key, None)
        else:
            new_raw[key] = value
    old_material = load_key_material(listener_settings(raw, tls.name))
    fresh = build_listener(new_raw, tls.name, tls.protocol)
    settings = listener_settings(new_raw, tls.name)
    new_material = load_key_material(settings)
    if old_material is not None and new_material is not None:
        old_id, new_id = _identity(old_material), _identity(new_material)
        dn_ok = old_id[0] == new_id[0] or settings["ssl.allow.dn.changes"].lower() == "true"
        san_ok = old_id[1] == new_id[1] or settings["ssl.allow.san.changes"].lower() == "true"
        if not (dn_ok and san_ok):
            raise TlsConfigError(
                f"Validation of dynamic config update of SSLFactory failed: Keystore "
                f"DistinguishedName or SubjectAltNames do not match: existing {old_id[0]} "
                f"{sorted(old_id[1])}, new {new_id[0]} {sorted(new_id[1])}"
            )
    if apply:
        tls.context = fresh.context
        log.info("Reloaded the SSL key and trust stores of listener %s", tls.name)
    return new_raw


def alter_dynamic_ssl(broker: Any, updates: Mapping[str, str | None], validate_only: bool) -> bool:
    """AlterConfigs of this broker's listener key/trust stores (certificate rotation).

    False when ``updates`` is not made only of reconfigurable ``listener.name.<l>.ssl.*``
    keys (the caller refuses it as any other static key). Every listener named is rebuilt
    and checked before any is swapped; TlsConfigError when one cannot be. Changes live
    until the broker restarts (server.properties is not rewritten).
    """
    parsed = [dynamic_ssl_listener(k) for k in updates]
    if not updates or any(p is None for p in parsed):
        return False
    names = sorted({p[0] for p in parsed if p is not None})
    raw: dict[str, str] = broker.tls_raw
    for name in names:
        if name not in broker.tls_listeners:
            raise TlsConfigError(f"{name} is not an SSL or SASL_SSL listener of this broker")
    staged = raw
    for name in names:
        staged = reload_listener(broker.tls_listeners[name], staged, updates, apply=False)
    if not validate_only:
        for name in names:
            reload_listener(broker.tls_listeners[name], raw, updates, apply=True)
        broker.tls_raw = staged
    return True
