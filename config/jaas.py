"""JAAS lines and the SASL settings Kafka derives from them, per listener and mechanism.

Kafka reads a broker's server-side login module for mechanism M on listener L from
``listener.name.<l>.<m>.sasl.jaas.config`` (both lower case); without it Kafka falls back
to the static JAAS file's ``KafkaServer`` section, for which pybroker (no JAAS file) reads
the broker-wide ``sasl.jaas.config``. One entry looks like::

    org.apache.kafka.common.security.plain.PlainLoginModule required
        username="admin" password="admin-secret" user_admin="admin-secret";

PlainLoginModule's ``user_<name>="<password>"`` options are the users PLAIN accepts;
``username``/``password`` are what this broker sends when it is the client (inter-broker).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .topic_config import ConfigError

PLAIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"
SCRAM_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"
OAUTHBEARER_MODULE = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule"
SUPPORTED_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")
FLAGS = ("required", "requisite", "sufficient", "optional")

# A token: a quoted string (backslash escapes), '=', ';', or a bare word.
_TOKEN = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|(=)|(;)|([^\s=;"]+))', re.S)
_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)


@dataclass(frozen=True)
class JaasEntry:
    """One login module: its class, control flag and options."""

    module: str
    flag: str
    options: Mapping[str, str] = field(default_factory=dict)

    def plain_users(self) -> dict[str, str]:
        """PlainServerCallbackHandler's user table: every ``user_<name>`` option."""
        return {k[5:]: v for k, v in self.options.items() if k.startswith("user_")}


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    text = _COMMENT.sub(" ", text)
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ValueError(f"unexpected character at {pos}")
        if m.group(1) is not None:
            out.append(("str", re.sub(r"\\(.)", r"\1", m.group(1))))
        elif m.group(2):
            out.append(("=", "="))
        elif m.group(3):
            out.append((";", ";"))
        else:
            out.append(("word", m.group(4)))
        pos = m.end()
    return out


def parse_jaas(text: str, key: str = "sasl.jaas.config") -> list[JaasEntry]:
    """Kafka's JaasConfig parser: ``module flag (name=value)* ;`` repeated."""
    try:
        tokens = _tokens(text)
    except ValueError as exc:
        raise ConfigError(key, "[hidden]", f"Invalid JAAS config: {exc}") from None
    entries: list[JaasEntry] = []
    i = 0
    while i < len(tokens):
        if tokens[i][0] != "word" or i + 1 >= len(tokens) or tokens[i + 1][0] != "word":
            raise ConfigError(key, "[hidden]", "Invalid JAAS config: Login module not specified")
        module, flag = tokens[i][1], tokens[i + 1][1]
        if flag.lower() not in FLAGS:
            raise ConfigError(
                key, "[hidden]", f"Invalid JAAS config: Invalid login module control flag '{flag}'"
            )
        i += 2
        options: dict[str, str] = {}
        while i < len(tokens) and tokens[i][0] != ";":
            if (
                i + 2 >= len(tokens)
                or tokens[i][0] not in ("word", "str")
                or tokens[i + 1][0] != "="
                or tokens[i + 2][0] not in ("word", "str")
            ):
                raise ConfigError(
                    key, "[hidden]", "Invalid JAAS config: Value not specified for key"
                )
            options[tokens[i][1]] = tokens[i + 2][1]
            i += 3
        if i >= len(tokens):
            raise ConfigError(
                key,
                "[hidden]",
                "Invalid JAAS config: JAAS config entry not terminated by semi-colon",
            )
        i += 1
        entries.append(JaasEntry(module, flag.lower(), options))
    return entries


def parse_one(text: str, key: str) -> JaasEntry:
    """A ``sasl.jaas.config`` value holds exactly one login module (JaasContext)."""
    entries = parse_jaas(text, key)
    if len(entries) != 1:
        raise ConfigError(
            key,
            "[hidden]",
            f"JAAS config property contains {len(entries)} login modules, should be 1 module",
        )
    return entries[0]


# ---------------------------------------------------------------- per-listener settings


def _csv(raw: str) -> list[str]:
    return [p.strip() for p in raw.split(",") if p.strip()]


def listener_value(raw: Mapping[str, str], listener: str, key: str) -> str | None:
    """``listener.name.<l>.<key>`` overrides ``<key>`` (Kafka's valuesWithPrefixOverride)."""
    prefixed = f"listener.name.{listener.lower()}.{key}"
    return raw.get(prefixed, raw.get(key))


@dataclass(frozen=True)
class SaslListenerSettings:
    """What a SASL listener's authenticator needs."""

    mechanisms: tuple[str, ...]
    jaas: Mapping[str, JaasEntry]  # mechanism -> login module
    max_reauth_ms: int  # 0 = sessions do not expire (KIP-368)


def sasl_listener_settings(raw: Mapping[str, str], listener: str) -> SaslListenerSettings:
    """Enabled mechanisms and login modules for ``listener``; ConfigError like Kafka's."""
    key = "sasl.enabled.mechanisms"
    mechanisms = tuple(_csv(listener_value(raw, listener, key) or "GSSAPI"))
    if not mechanisms:
        raise ConfigError(key, "", "No SASL mechanisms are enabled")
    for mech in mechanisms:
        if mech not in SUPPORTED_MECHANISMS:
            raise ConfigError(
                key,
                ",".join(mechanisms),
                f"SASL mechanism {mech} on listener {listener} is not supported by pybroker "
                f"(supported: {', '.join(SUPPORTED_MECHANISMS)})",
            )
    jaas: dict[str, JaasEntry] = {}
    for mech in mechanisms:
        jkey = f"listener.name.{listener.lower()}.{mech.lower()}.sasl.jaas.config"
        text = raw.get(jkey)
        if text is None and "sasl.jaas.config" in raw:
            jkey, text = "sasl.jaas.config", raw["sasl.jaas.config"]
        if text is None:
            if mech == "PLAIN":
                raise ConfigError(
                    jkey,
                    "",
                    f"Could not find a 'KafkaServer' or '{listener.lower()}.KafkaServer' entry "
                    "in the JAAS configuration (set "
                    f"listener.name.{listener.lower()}.plain.sasl.jaas.config)",
                )
            continue  # SCRAM and unsecured OAUTHBEARER need nothing from it on the server
        jaas[mech] = parse_one(text, jkey)
    reauth_raw = listener_value(raw, listener, "connections.max.reauth.ms") or "0"
    try:
        reauth = int(reauth_raw.strip())
    except ValueError:
        raise ConfigError(
            "connections.max.reauth.ms", reauth_raw, "Expected value to be a 64-bit integer"
        ) from None
    return SaslListenerSettings(mechanisms, jaas, reauth)


@dataclass(frozen=True)
class SaslClientCredentials:
    """What this broker sends when it connects to another broker's SASL listener
    (OAUTHBEARER: ``username`` is the unsecured token's subject, ``password`` its lifetime
    in seconds)."""

    mechanism: str
    username: str
    password: str


def inter_broker_credentials(
    raw: Mapping[str, str], listener: str, security_protocol: str
) -> SaslClientCredentials | None:
    """Kafka's inter-broker client: ``sasl.mechanism.inter.broker.protocol`` and the
    ``username``/``password`` of that mechanism's login module on the inter-broker listener."""
    if not security_protocol.startswith("SASL_"):
        return None
    key = "sasl.mechanism.inter.broker.protocol"
    mech = (raw.get(key) or "GSSAPI").strip()
    settings = sasl_listener_settings(raw, listener)
    if mech not in settings.mechanisms:
        raise ConfigError(
            key,
            mech,
            f"{key} must be included in sasl.enabled.mechanisms when SASL is used for "
            "inter-broker communication",
        )
    entry = settings.jaas.get(mech)
    if mech == "OAUTHBEARER" and entry is not None:
        # Kafka's unsecured login module: the token's subject and lifetime come from options.
        sub = entry.options.get("unsecuredLoginStringClaim_sub")
        if sub:
            lifetime = entry.options.get("unsecuredLoginLifetimeSeconds", "3600")
            return SaslClientCredentials(mech, sub, lifetime)
    if entry is None or "username" not in entry.options or "password" not in entry.options:
        raise ConfigError(
            f"listener.name.{listener.lower()}.{mech.lower()}.sasl.jaas.config",
            "",
            f"the inter-broker mechanism {mech} needs username and password options in its "
            "login module",
        )
    return SaslClientCredentials(mech, entry.options["username"], entry.options["password"])
