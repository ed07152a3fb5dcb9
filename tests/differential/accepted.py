"""Differences from Apache Kafka 4.1 that are legitimate, each with its precise reason.

Keys are fnmatch patterns over case names; a case that differs must match one, and a
case that matches one must still differ (``Cases.check`` enforces both).
"""

from __future__ import annotations

from fnmatch import fnmatchcase

_NO_DYNAMIC_BROKER_CONFIGS = (
    "pybroker has no dynamic broker configs (documented: server.properties and restart), "
    "so it cannot store or report run-time broker settings as Kafka 4.1 does"
)

ACCEPTED: dict[str, str] = {
    "sasl-oauthbearer-jwks-default-validator-bad-signature-step[12]": (
        "Kafka 4.1.1's default sasl.oauthbearer.jwt.validator.class (DefaultJwtValidator, "
        "built without a key resolver) falls back to ClientJwtValidator on the broker and "
        "accepts a token whose signature does not match the JWK set; pybroker verifies the "
        "signature with either class name (Kafka needs BrokerJwtValidator named to do so)"
    ),
    "api-versions-v[34]": (
        "supported/finalized features (KIP-584) are KRaft's feature levels (metadata.version, "
        "kraft.version, transaction.version, group.version, ...); pybroker is a "
        "ZooKeeper-style broker without feature versioning and reports none"
    ),
    "describe-configs-topic-documentation-v*": (
        "pybroker does not carry Kafka's configuration documentation texts (include_documentation "
        "answers null documentation)"
    ),
    "describe-configs-broker-dynamic-keys-v*": (
        "read_only of broker keys Kafka can change at run time (message.max.bytes, "
        "log.retention.ms, ...) is false in Kafka, true in pybroker: " + _NO_DYNAMIC_BROKER_CONFIGS
    ),
    "incremental-broker-unknown-key-v*": (
        "Kafka 4.1 accepts (and stores) an unknown key as a dynamic broker config; pybroker "
        "refuses every broker change: " + _NO_DYNAMIC_BROKER_CONFIGS
    ),
}

# Differences normalised away (not counted as differences), each with its reason. They
# are systematic and would otherwise repeat in every case that lists topic configs.
NORMALISED: dict[str, str] = {
    "config_source of min.insync.replicas": (
        "Kafka 4.1 KRaft with eligible leader replicas (KIP-966) bootstraps a cluster-level "
        "min.insync.replicas=1, so it reports DYNAMIC_DEFAULT_BROKER_CONFIG; pybroker (no "
        "KRaft, no cluster-level dynamic configs) reports the same value as DEFAULT_CONFIG"
    ),
}


def accepted_reason(case: str) -> str | None:
    """The reason ``case`` may differ from Kafka, or None when it must be identical."""
    for pattern, reason in ACCEPTED.items():
        if fnmatchcase(case, pattern):
            return reason
    return None
