"""CLIENT_METRICS config resources (KIP-714 subscriptions) for DescribeConfigs, AlterConfigs
and IncrementalAlterConfigs, as Kafka 4.1's ConfigHelper and ControllerConfigurationValidator
treat them: three keys (``metrics`` and ``match`` lists, ``interval.ms`` int), validated as a
whole after the operations apply; an empty set removes the subscription. The configs live in
the entity-config store; the broker's ClientMetricsManager reloads after each change.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pybroker.broker.client_metrics import (
    DEFAULT_INTERVAL_MS,
    ENTITY_TYPE,
    INTERVAL_MS,
    MATCH,
    METRICS,
    SubscriptionError,
    validate_subscription,
)
from pybroker.broker.context import RequestContext
from pybroker.protocol.errors import ErrorCode, KafkaError

SOURCE_DYNAMIC_CLIENT_METRICS = 7
SOURCE_DEFAULT = 5
TYPE_INT, TYPE_LIST = 3, 7
OP_SET, OP_DELETE, OP_APPEND, OP_SUBTRACT = 0, 1, 2, 3
_OP_NAMES = {OP_SET: "SET", OP_DELETE: "DELETE", OP_APPEND: "APPEND", OP_SUBTRACT: "SUBTRACT"}
# name -> (type, default as Kafka renders it, documentation)
# In Kafka's order (by name).
KEYS = {
    INTERVAL_MS: (TYPE_INT, str(DEFAULT_INTERVAL_MS), "Metrics push interval in milliseconds"),
    MATCH: (TYPE_LIST, "", "Client match criteria"),
    METRICS: (TYPE_LIST, "", "Telemetry metric name prefix list"),
}


def _render(key: str, value: str) -> str:
    """Kafka shows the parsed value: lists trimmed and re-joined, ints as numbers."""
    if KEYS[key][0] == TYPE_LIST:
        return ",".join(p.strip() for p in value.split(",")) if value.strip() else ""
    return str(int(value.strip()))


def describe_client_metrics(
    ctx: RequestContext, name: str, keys: set[str] | None, synonyms: bool, docs: bool
) -> list[dict[str, Any]]:
    if name == "":
        raise KafkaError(
            "Client metrics subscription name must not be empty", ErrorCode.invalid_request
        )
    stored = ctx.broker.client_metrics.configs.get(name, {})
    entries = []
    for key, (ctype, default, doc) in KEYS.items():
        if keys is not None and key not in keys:
            continue
        dynamic = key in stored
        value = _render(key, stored[key]) if dynamic else default
        entries.append(
            dict(
                name=key,
                value=value,
                read_only=False,
                config_source=SOURCE_DYNAMIC_CLIENT_METRICS if dynamic else SOURCE_DEFAULT,
                is_sensitive=False,
                synonyms=(
                    [dict(name=key, value=value, source=SOURCE_DYNAMIC_CLIENT_METRICS)]
                    if synonyms and dynamic
                    else []
                ),
                config_type=ctype,
                documentation=doc if docs else None,
            )
        )
    return entries


def _apply(current: dict[str, str], configs: Iterable[Any]) -> dict[str, str]:
    new = dict(current)
    for c in configs:
        op, key = int(c.config_operation), c.name
        if op == OP_SET:
            new[key] = c.value
        elif op == OP_DELETE:
            new.pop(key, None)
        elif op in (OP_APPEND, OP_SUBTRACT):
            # Kafka 4.1's controller knows no types of CLIENT_METRICS keys (its config
            # schema covers topics and brokers), so even the list keys refuse these.
            raise KafkaError(
                f"Can't {_OP_NAMES[op]} to key {key} because its type is not LIST.",
                ErrorCode.invalid_config,
            )
        else:
            raise KafkaError("", ErrorCode.unknown_server_error)
    return new


async def alter_client_metrics(
    ctx: RequestContext,
    name: str,
    configs: Iterable[Any],
    validate_only: bool,
    *,
    incremental: bool,
) -> None:
    store = ctx.broker.entity_configs
    if incremental:
        new = _apply(await store.get(ENTITY_TYPE, name), configs)
    else:
        new = {c.name: c.value for c in configs}
    try:
        validate_subscription(name, new)
    except SubscriptionError as exc:
        raise KafkaError(str(exc), exc.code) from None
    if validate_only:
        return
    await store.set(ENTITY_TYPE, name, new)
    await ctx.broker.client_metrics.reload()
