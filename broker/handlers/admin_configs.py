"""DescribeConfigs (32), AlterConfigs (33) and IncrementalAlterConfigs (44).

TOPIC resources are the topic overrides kept in the cluster image; every change goes
through ``controller.set_topic_configs`` (which persists the image and reconfigures the
logs). BROKER resources describe ``server.properties``; pybroker has no dynamic broker
configs, so altering one is refused per resource with Kafka's INVALID_REQUEST. BROKER_LOGGER
resources map onto Python's ``logging`` levels, as Kafka maps them onto log4j.

Error codes and messages follow Kafka 4.x (``ConfigHelper``, ``ConfigAdminManager``,
``ConfigurationControlManager``, ``ControllerConfigurationValidator``). A handler never
raises: a failure is an error on its own resource.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from pybroker.broker.context import RequestContext
from pybroker.broker.handlers.client_metrics_configs import (
    alter_client_metrics,
    describe_client_metrics,
)
from pybroker.broker.handlers.registry import api
from pybroker.broker.security.authz import (
    CLUSTER_NAME,
    DEFAULT_MESSAGES,
    AclOperation,
    ResourceType,
    authorize,
)
from pybroker.broker.tls import TlsConfigError, alter_dynamic_ssl, dynamic_ssl_listener
from pybroker.config.broker_config import BROKER_CONFIGS, SYNONYMS, _render
from pybroker.config.topic_config import TOPIC_CONFIGS, ConfigError, TopicConfig
from pybroker.protocol.codec import build, response_type
from pybroker.protocol.errors import ErrorCode, KafkaError
from pybroker.replication.metadata import validate_topic_name

log = logging.getLogger(__name__)

# ConfigResource.Type ids.
RESOURCE_TOPIC = 2
RESOURCE_BROKER = 4
RESOURCE_BROKER_LOGGER = 8
RESOURCE_CLIENT_METRICS = 16
RESOURCE_GROUP = 32
_RESOURCE_NAMES = {
    RESOURCE_TOPIC: "TOPIC",
    RESOURCE_BROKER: "BROKER",
    RESOURCE_BROKER_LOGGER: "BROKER_LOGGER",
    RESOURCE_CLIENT_METRICS: "CLIENT_METRICS",
    RESOURCE_GROUP: "GROUP",
}

# DescribeConfigsResponse.ConfigSource ids.
SOURCE_DYNAMIC_TOPIC = 1
SOURCE_DYNAMIC_BROKER = 2
SOURCE_DYNAMIC_DEFAULT_BROKER = 3
SOURCE_STATIC_BROKER = 4
SOURCE_DEFAULT = 5
SOURCE_DYNAMIC_BROKER_LOGGER = 6

# DescribeConfigsResponse.ConfigType ids, by ConfigDef.type.
CONFIG_TYPES = {
    "boolean": 1,
    "string": 2,
    "int": 3,
    "short": 4,
    "long": 5,
    "double": 6,
    "list": 7,
    "class": 8,
    "password": 9,
}
CONFIG_TYPE_UNKNOWN = 0

# AlterConfigOp.OpType ids.
OP_SET, OP_DELETE, OP_APPEND, OP_SUBTRACT = 0, 1, 2, 3
_OP_NAMES = {OP_SET: "SET", OP_DELETE: "DELETE", OP_APPEND: "APPEND", OP_SUBTRACT: "SUBTRACT"}

# log4j level names (what Kafka shows for BROKER_LOGGER) <-> Python logging levels.
LOG4J_LEVELS = ("OFF", "FATAL", "ERROR", "WARN", "INFO", "DEBUG", "TRACE", "ALL")
_LEVEL_TO_PY = {
    "OFF": logging.CRITICAL + 10,
    "FATAL": logging.CRITICAL,
    "ERROR": logging.ERROR,
    "WARN": logging.WARNING,
    "INFO": logging.INFO,
    "DEBUG": logging.DEBUG,
    "TRACE": 5,
    "ALL": 1,
}
ROOT_LOGGER = "root"


_INVALID_REQUEST_MESSAGE = (
    "This most likely occurs because of a request being malformed by the client library or "
    "the message was sent to an incompatible broker. See the broker logs for more details."
)


def _invalid_request(message: str) -> KafkaError:
    return KafkaError(message, ErrorCode.invalid_request)


def error_message(exc: KafkaError) -> str | None:
    """Kafka's ApiError.fromThrowable: no message when it would only repeat the code's."""
    if exc.code in (ErrorCode.unknown_topic_or_partition, ErrorCode.unknown_topic_id):
        return None
    return exc.message


# ---------------------------------------------------------------------------- topics


def check_topic_overrides(configs: Mapping[str, str]) -> None:
    """Validate a full set of topic overrides as Kafka's LogConfig.validate: INVALID_CONFIG."""
    for key in configs:
        if key not in TOPIC_CONFIGS:
            raise KafkaError(f"Unknown topic config name: {key}", ErrorCode.invalid_config)
    try:
        TopicConfig(overrides=dict(configs))
    except ConfigError as exc:
        raise KafkaError(str(exc), ErrorCode.invalid_config) from None


def _synonym_names(broker_key: str) -> tuple[str, ...]:
    return SYNONYMS.get(broker_key, (broker_key,))


def broker_synonyms(ctx: RequestContext, broker_key: str) -> list[dict[str, Any]]:
    """Kafka's configSynonyms for a broker key: static settings, then defaults."""
    raw = ctx.broker.config.raw
    # Kafka 4.1 lists only the key itself, not the keys it falls back on: retention.ms
    # shows no log.retention.hours synonym, whether that is set or only defaulted
    # (checked against the reference broker). node.id and broker.id stay paired.
    names = _synonym_names(broker_key) if broker_key in ("node.id", "broker.id") else (broker_key,)
    out: list[dict[str, Any]] = [
        dict(name=n, value=raw[n].strip(), source=SOURCE_STATIC_BROKER) for n in names if n in raw
    ]
    spec = BROKER_CONFIGS.get(broker_key)
    if spec is not None and spec.default is not None:
        out.append(dict(name=broker_key, value=_render(spec.default), source=SOURCE_DEFAULT))
    return out


def topic_config_entries(
    ctx: RequestContext,
    overrides: Mapping[str, str],
    keys: Iterable[str] | None = None,
    include_synonyms: bool = False,
    include_documentation: bool = False,
    raw_overrides: bool = False,
) -> list[dict[str, Any]]:
    """Every topic config key (or only ``keys``) of a topic with these overrides.

    Source is DYNAMIC_TOPIC_CONFIG for an override, STATIC_BROKER_CONFIG where
    server.properties set the broker key behind it, else DEFAULT_CONFIG. ``raw_overrides``
    reports an override as the string the user gave (CreateTopics does) rather than the
    value Kafka's parser normalised it to (DescribeConfigs does).
    """
    tc = TopicConfig(overrides=dict(overrides), defaults=ctx.broker.topic_defaults)
    wanted = set(keys) if keys else None
    entries: list[dict[str, Any]] = []
    for key, value in tc.items():
        if wanted is not None and key not in wanted:
            continue
        spec = TOPIC_CONFIGS[key]
        rendered = overrides[key] if raw_overrides and key in overrides else _render(value)
        synonyms: list[dict[str, Any]] = []
        if key in overrides:
            synonyms.append(dict(name=key, value=_render(value), source=SOURCE_DYNAMIC_TOPIC))
        if spec.broker_key:
            synonyms += broker_synonyms(ctx, spec.broker_key)
        origin = tc.source_of(key)
        if origin == "broker" and spec.broker_key not in ctx.broker.config.raw:
            # Kafka's source is its first synonym's; a value derived from a fallback key
            # (log.retention.hours for retention.ms) has none, so DEFAULT_CONFIG.
            origin = "default"
        source = {
            "topic": SOURCE_DYNAMIC_TOPIC,
            "broker": SOURCE_STATIC_BROKER,
            "default": SOURCE_DEFAULT,
        }[origin]
        entries.append(
            dict(
                name=key,
                value=None if spec.sensitive else rendered,
                read_only=False,
                config_source=source,
                is_sensitive=spec.sensitive,
                synonyms=synonyms if include_synonyms else [],
                config_type=CONFIG_TYPES.get(spec.type, CONFIG_TYPE_UNKNOWN),
                documentation=(spec.doc or None) if include_documentation else None,
            )
        )
    return entries


def _topic_resource_name(name: str) -> None:
    """ControllerConfigurationValidator's checks on a TOPIC resource name."""
    if name == "":
        raise _invalid_request("Default topic resources are not allowed.")
    validate_topic_name(name)


def _topic_overrides(ctx: RequestContext, name: str) -> dict[str, str]:
    info = ctx.broker.image.topics.get(name)
    if info is None:
        raise KafkaError(
            f"The topic '{name}' does not exist.", ErrorCode.unknown_topic_or_partition
        )
    return dict(info.configs)


# ---------------------------------------------------------------------------- brokers


def _broker_id(name: str, message: str) -> int:
    try:
        return int(name)
    except ValueError:
        raise _invalid_request(message.format(name=name)) from None


def _describe_broker(
    ctx: RequestContext, name: str, keys: set[str] | None, synonyms: bool, docs: bool
) -> list[dict[str, Any]]:
    node_id = ctx.broker.node_id
    if name == "":
        return []  # the cluster-wide dynamic defaults: pybroker has none
    if _broker_id(name, "Broker id must be an integer, but it is: {name}") != node_id:
        raise _invalid_request(
            f"Unexpected broker id, expected {node_id} or empty string, but received {name}"
        )
    entries = []
    for e in ctx.broker.config.describe():
        if keys is not None and e.name not in keys:
            continue
        spec = BROKER_CONFIGS.get(e.name)
        source = SOURCE_STATIC_BROKER if e.source == "static" else SOURCE_DEFAULT
        value = e.value
        chained = e.name in SYNONYMS and e.name not in ("node.id", "broker.id")
        if chained and e.name not in ctx.broker.config.raw:
            # Kafka 4.1 describes log.retention.ms as itself: unset (null, DEFAULT_CONFIG)
            # even when log.retention.hours supplies the effective value (checked against
            # the reference broker with log.retention.hours=168 set).
            source = SOURCE_DEFAULT
            default = spec.default if spec is not None else None
            value = None if default is None else _render(default)
        syn = broker_synonyms(ctx, e.name) if spec is not None else []
        if spec is None and e.source == "static":
            syn = [dict(name=e.name, value=e.value, source=SOURCE_STATIC_BROKER)]
        if e.sensitive:
            syn = [dict(s, value=None) for s in syn]
        if e.sensitive:
            config_type = CONFIG_TYPES["password"]
        elif spec is not None:
            config_type = CONFIG_TYPES.get(spec.type, CONFIG_TYPE_UNKNOWN)
        else:
            config_type = CONFIG_TYPE_UNKNOWN
        entries.append(
            dict(
                name=e.name,
                value=None if e.sensitive else value,
                read_only=e.read_only,
                config_source=source,
                is_sensitive=e.sensitive,
                synonyms=syn if synonyms else [],
                config_type=config_type,
                documentation=((spec.doc or None) if spec else None) if docs else None,
            )
        )
    return entries


def _check_broker_logger_name(ctx: RequestContext, name: str) -> None:
    node_id = ctx.broker.node_id
    if name == "":
        raise _invalid_request("Broker id must not be empty")
    if _broker_id(name, "Broker id must be an integer, but it is: {name}") != node_id:
        raise _invalid_request(f"Unexpected broker id, expected {node_id} but received {name}")


def _log4j_level(level: int) -> str:
    if level >= _LEVEL_TO_PY["OFF"]:
        return "OFF"
    for name in ("FATAL", "ERROR", "WARN", "INFO", "DEBUG", "TRACE"):
        if level >= _LEVEL_TO_PY[name]:
            return name
    return "ALL"


def _loggers() -> dict[str, logging.Logger]:
    found = {
        name: lg
        for name, lg in logging.root.manager.loggerDict.items()
        if isinstance(lg, logging.Logger)
    }
    found[ROOT_LOGGER] = logging.getLogger()
    return found


def _describe_broker_logger(
    ctx: RequestContext, name: str, keys: set[str] | None
) -> list[dict[str, Any]]:
    _check_broker_logger_name(ctx, name)
    return [
        dict(
            name=logger_name,
            value=_log4j_level(lg.getEffectiveLevel()),
            read_only=False,
            config_source=SOURCE_DYNAMIC_BROKER_LOGGER,
            is_sensitive=False,
            synonyms=[],
            config_type=CONFIG_TYPE_UNKNOWN,
            documentation=None,
        )
        for logger_name, lg in sorted(_loggers().items())
        if keys is None or logger_name in keys
    ]


# ---------------------------------------------------------------------------- describe


def _describe_one(ctx: RequestContext, request: Any, resource: Any) -> dict[str, Any]:
    rtype = int(resource.resource_type)
    name = resource.resource_name
    keys = set(resource.configuration_keys) if resource.configuration_keys else None
    synonyms = bool(getattr(request, "include_synonyms", False))
    docs = bool(getattr(request, "include_documentation", False))
    # Kafka 4.1 sends "" (not null) as the message of a result without one.
    out = dict(error_code=ErrorCode.none, error_message="", resource_type=rtype, resource_name=name)
    try:
        if rtype == RESOURCE_TOPIC:
            validate_topic_name(name)
            info = ctx.broker.image.topics.get(name)
            if info is None:
                raise KafkaError("", ErrorCode.unknown_topic_or_partition)
            configs = topic_config_entries(ctx, info.configs, keys, synonyms, docs)
        elif rtype == RESOURCE_BROKER:
            configs = _describe_broker(ctx, name, keys, synonyms, docs)
        elif rtype == RESOURCE_BROKER_LOGGER:
            configs = _describe_broker_logger(ctx, name, keys)
        elif rtype == RESOURCE_CLIENT_METRICS:
            configs = describe_client_metrics(ctx, name, keys, synonyms, docs)
        else:
            # An unknown type never reaches ConfigHelper: the bare INVALID_REQUEST message.
            raise _invalid_request(_INVALID_REQUEST_MESSAGE)
        out["configs"] = configs
    except KafkaError as exc:
        out.update(error_code=exc.code, error_message=error_message(exc) or "", configs=[])
    except Exception:
        log.exception("DescribeConfigs failed for resource type %d %r", rtype, name)
        out.update(error_code=ErrorCode.unknown_server_error, configs=[])
    return out


def config_refusal(
    ctx: RequestContext, rtype: int, name: str, op: AclOperation
) -> tuple[ErrorCode, str] | None:
    """ConfigHelper / ControllerApis.authorizeAlterResource: broker, logger and client-metrics
    configs need ``op`` on the cluster, topic and group configs on that topic or group."""
    if rtype == RESOURCE_TOPIC:
        target, code, kind = ResourceType.TOPIC, ErrorCode.topic_authorization_failed, "topic"
    elif rtype == RESOURCE_GROUP:
        target, code, kind = ResourceType.GROUP, ErrorCode.group_authorization_failed, "group"
    elif rtype in (RESOURCE_BROKER, RESOURCE_BROKER_LOGGER, RESOURCE_CLIENT_METRICS):
        target, code, kind = ResourceType.CLUSTER, ErrorCode.cluster_authorization_failed, "cluster"
        name = CLUSTER_NAME
    else:
        return None
    return None if authorize(ctx, op, target, name) else (code, DEFAULT_MESSAGES[kind])


@api(32, "DescribeConfigs", 1, 4)
async def handle_describe_configs(ctx: RequestContext, request: Any) -> Any:
    results, refused = [], []
    for r in request.resources:
        rtype, name = int(r.resource_type), r.resource_name
        refusal = config_refusal(ctx, rtype, name, AclOperation.DESCRIBE_CONFIGS)
        if refusal is None:
            results.append(_describe_one(ctx, request, r))
            continue
        code, message = refusal
        refused.append(
            dict(
                error_code=code,
                error_message=message,
                resource_type=rtype,
                resource_name=name,
                configs=[],
            )
        )
    return build(response_type(32, ctx.version), throttle_time=0, results=results + refused)


# ------------------------------------------------------------------------------- alter


def _preprocess(resources: Any, incremental: bool) -> dict[int, KafkaError]:
    """ConfigAdminManager.preprocess: per-resource request errors, keyed by position."""
    errors: dict[int, KafkaError] = {}
    seen = Counter((int(r.resource_type), r.resource_name) for r in resources)
    for i, r in enumerate(resources):
        if seen[(int(r.resource_type), r.resource_name)] > 1:
            errors[i] = _invalid_request("Each resource must appear at most once.")
            continue
        names = [c.name for c in r.configs]
        if len(set(names)) != len(names):
            errors[i] = _invalid_request("Error due to duplicate config keys")
            continue
        nulls = [
            c.name
            for c in r.configs
            if c.value is None and not (incremental and int(c.config_operation) == OP_DELETE)
        ]
        if nulls:
            errors[i] = _invalid_request("Null value not supported for : " + ", ".join(nulls))
    return errors


def _unknown_operation() -> KafkaError:
    """Kafka 4.1 fails an unknown operation id (OpType.forId throws inside the handler):
    UNKNOWN_SERVER_ERROR without a message."""
    return KafkaError("", ErrorCode.unknown_server_error)


def _refuse_broker_change(ctx: RequestContext, name: str, changed: list[str]) -> None:
    """BROKER resources: check the name as Kafka does, then refuse any change."""
    node_id = ctx.broker.node_id
    if name != "":
        broker_id = _broker_id(name, "Node id must be an integer, but it is: {name}")
        if broker_id != node_id:
            raise _invalid_request(f"Unexpected broker id, expected {node_id}, but received {name}")
    if changed:
        log.info(
            "Refusing to change broker configs %s: pybroker has no dynamic broker configs "
            "(change server.properties and restart)",
            sorted(changed),
        )
        raise _invalid_request(
            f"Cannot update these configs dynamically: Set({', '.join(sorted(changed))})"
        )


def _reload_tls(
    ctx: RequestContext, name: str, updates: dict[str, str | None], validate_only: bool
) -> bool:
    """Kafka's dynamic ``listener.name.<l>.ssl.keystore.*`` / truststore updates on one
    broker (certificate rotation without a restart); False: not only such keys."""
    if not updates or not all(dynamic_ssl_listener(k) for k in updates):
        return False
    node_id = ctx.broker.node_id
    if name == "":
        raise _invalid_request(
            "Cannot update these configs at default cluster level, broker id must be "
            f"specified: Set({', '.join(sorted(updates))})"
        )
    if _broker_id(name, "Node id must be an integer, but it is: {name}") != node_id:
        raise _invalid_request(f"Unexpected broker id, expected {node_id}, but received {name}")
    try:
        alter_dynamic_ssl(ctx.broker, updates, validate_only)
    except TlsConfigError as exc:
        raise KafkaError(str(exc), ErrorCode.invalid_config) from None
    return True


async def _commit_topic(
    ctx: RequestContext, name: str, new: dict[str, str], validate_only: bool
) -> None:
    """Validate a topic's new override set, check the topic exists, then apply it."""
    check_topic_overrides(new)
    _topic_overrides(ctx, name)
    assert ctx.broker.controller is not None
    await ctx.broker.controller.set_topic_configs(name, new, validate_only=validate_only)
    if not validate_only:
        log.info("Set configs of topic %s to %s (client %s)", name, new, ctx.client_id)


async def _alter_legacy(ctx: RequestContext, resource: Any, validate_only: bool) -> None:
    rtype = int(resource.resource_type)
    name = resource.resource_name
    configs = {c.name: c.value for c in resource.configs}
    if rtype == RESOURCE_TOPIC:
        _topic_resource_name(name)
        await _commit_topic(ctx, name, configs, validate_only)
    elif rtype == RESOURCE_BROKER:
        if not _reload_tls(ctx, name, configs, validate_only):
            _refuse_broker_change(ctx, name, list(configs))
    elif rtype == RESOURCE_CLIENT_METRICS:
        await alter_client_metrics(ctx, name, resource.configs, validate_only, incremental=False)
    else:
        raise _invalid_request(f"Unknown resource type {rtype}")


def _apply_incremental(current: dict[str, str], configs: Any) -> dict[str, str]:
    """ConfigurationControlManager.incrementalAlterConfigResource on topic overrides."""
    new = dict(current)
    for c in configs:
        op = int(c.config_operation)
        key = c.name
        if op == OP_SET:
            new[key] = c.value
        elif op == OP_DELETE:
            new.pop(key, None)
        elif op in (OP_APPEND, OP_SUBTRACT):
            spec = TOPIC_CONFIGS.get(key)
            if spec is None or spec.type != "list":
                raise KafkaError(
                    f"Can't {_OP_NAMES[op]} to key {key} because its type is not LIST.",
                    ErrorCode.invalid_config,
                )
            value = new.get(key)
            if value is None:
                value = _render(spec.default)  # Kafka starts from the schema default
            parts = [p for p in value.split(",") if p]
            for item in c.value.split(","):
                if op == OP_APPEND:
                    if item not in parts:
                        parts.append(item)
                elif item in parts:
                    parts.remove(item)
            new[key] = ",".join(parts)
        else:
            raise _unknown_operation()
    return new


def _set_logger_levels(ctx: RequestContext, resource: Any, validate_only: bool) -> None:
    """Kafka's RuntimeLoggerManager: SET or DELETE the level of existing loggers."""
    _check_broker_logger_name(ctx, resource.resource_name)
    loggers = _loggers()
    changes: list[tuple[logging.Logger, int]] = []
    for c in resource.configs:
        op = int(c.config_operation)
        if op in (OP_APPEND, OP_SUBTRACT):
            raise _invalid_request(
                f"{_OP_NAMES[op]} operation is not allowed for the BROKER_LOGGER resource"
            )
        if op not in (OP_SET, OP_DELETE):
            raise _invalid_request(
                f"Unknown operation type {op} is not allowed for the BROKER_LOGGER resource"
            )
        lg = loggers.get(c.name)
        if lg is None:
            raise KafkaError(f"Logger {c.name} does not exist!", ErrorCode.invalid_config)
        if op == OP_SET:
            if c.value not in _LEVEL_TO_PY:
                raise KafkaError(
                    f"Cannot set the log level of {c.name} to {c.value} as it is not a "
                    f"supported log level. Valid log4j levels are {', '.join(LOG4J_LEVELS)}",
                    ErrorCode.invalid_config,
                )
            changes.append((lg, _LEVEL_TO_PY[c.value]))
        else:
            if c.name == ROOT_LOGGER:
                raise _invalid_request(
                    f"Removing the log level of the {ROOT_LOGGER} logger is not allowed"
                )
            changes.append((lg, logging.NOTSET))
    if not validate_only:
        for lg, level in changes:
            lg.setLevel(level)
            log.info(
                "Set log level of %s to %s", lg.name or ROOT_LOGGER, logging.getLevelName(level)
            )


async def _alter_incremental(ctx: RequestContext, resource: Any, validate_only: bool) -> None:
    rtype = int(resource.resource_type)
    name = resource.resource_name
    if rtype == RESOURCE_TOPIC:
        _topic_resource_name(name)
        info = ctx.broker.image.topics.get(name)
        current = dict(info.configs) if info else {}
        new = _apply_incremental(current, resource.configs)
        await _commit_topic(ctx, name, new, validate_only)
    elif rtype == RESOURCE_BROKER:
        for c in resource.configs:
            if int(c.config_operation) not in _OP_NAMES:
                raise _unknown_operation()
        changed = [c.name for c in resource.configs if int(c.config_operation) != OP_DELETE]
        updates = {
            c.name: None if int(c.config_operation) == OP_DELETE else c.value
            for c in resource.configs
            if int(c.config_operation) in (OP_SET, OP_DELETE)
        }
        if len(updates) != len(resource.configs) or not _reload_tls(
            ctx, name, updates, validate_only
        ):
            _refuse_broker_change(ctx, name, changed)
    elif rtype == RESOURCE_BROKER_LOGGER:
        _set_logger_levels(ctx, resource, validate_only)
    elif rtype == RESOURCE_CLIENT_METRICS:
        await alter_client_metrics(ctx, name, resource.configs, validate_only, incremental=True)
    else:
        raise _invalid_request(f"Unknown resource type {rtype}")


async def _alter_all(ctx: RequestContext, request: Any, incremental: bool) -> list[dict[str, Any]]:
    validate_only = bool(request.validate_only)
    errors = _preprocess(request.resources, incremental)
    responses = []
    for i, resource in enumerate(request.resources):
        out = dict(
            error_code=ErrorCode.none,
            error_message=None,
            resource_type=int(resource.resource_type),
            resource_name=resource.resource_name,
        )
        refusal = None
        if i not in errors:
            refusal = config_refusal(
                ctx, int(resource.resource_type), resource.resource_name, AclOperation.ALTER_CONFIGS
            )
        if refusal is not None:
            out.update(error_code=refusal[0], error_message=refusal[1])
            responses.append(out)
            continue
        try:
            if i in errors:
                raise errors[i]
            if incremental:
                await _alter_incremental(ctx, resource, validate_only)
            else:
                await _alter_legacy(ctx, resource, validate_only)
        except KafkaError as exc:
            # The controller's own message ("The topic 'x' does not exist."), as Kafka's.
            unknown = exc.code == ErrorCode.unknown_server_error  # Kafka hides those
            out.update(error_code=exc.code, error_message=None if unknown else exc.message or None)
        except Exception:
            log.exception("Altering configs of %r failed", resource.resource_name)
            out.update(error_code=ErrorCode.unknown_server_error)
        responses.append(out)
    return responses


@api(33, "AlterConfigs", 0, 2)
async def handle_alter_configs(ctx: RequestContext, request: Any) -> Any:
    responses = await _alter_all(ctx, request, incremental=False)
    return build(response_type(33, ctx.version), throttle_time=0, responses=responses)


@api(44, "IncrementalAlterConfigs", 0, 1)
async def handle_incremental_alter_configs(ctx: RequestContext, request: Any) -> Any:
    responses = await _alter_all(ctx, request, incremental=True)
    return build(response_type(44, ctx.version), throttle_time=0, responses=responses)
