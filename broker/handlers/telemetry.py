"""KIP-714: GetTelemetrySubscriptions (71), PushTelemetry (72), ListConfigResources (74).

The telemetry state machine lives in broker.client_metrics (Kafka's ClientMetricsManager);
these handlers pass it what Kafka's RequestContext carries about the client (client id,
software name and version from ApiVersions, source address and port). ListConfigResources
lists config resources as Kafka 4.1's KafkaApis does (KIP-1142): v0 only CLIENT_METRICS
subscriptions, v1 any of GROUP, CLIENT_METRICS, BROKER_LOGGER, BROKER and TOPIC, in that
order.
"""

from __future__ import annotations

from typing import Any

from pybroker.broker.client_metrics import ACCEPTED_COMPRESSION, ZERO_UUID
from pybroker.broker.context import RequestContext
from pybroker.broker.handlers.admin_configs import (
    RESOURCE_BROKER,
    RESOURCE_BROKER_LOGGER,
    RESOURCE_CLIENT_METRICS,
    RESOURCE_GROUP,
    RESOURCE_TOPIC,
)
from pybroker.broker.handlers.registry import api
from pybroker.broker.security.authz import CLUSTER_NAME, AclOperation, ResourceType, authorize
from pybroker.protocol.codec import build, response_type
from pybroker.protocol.errors import ErrorCode


def client_attributes(ctx: RequestContext) -> dict[str, str]:
    """ClientMetricsInstanceMetadata: the attributes ``match`` patterns test."""
    host, _, port = ctx.peer.rpartition(":")
    name, version = getattr(ctx, "client_software", ("unknown", "unknown"))
    return {
        "client_id": ctx.client_id or "",
        "client_software_name": name,
        "client_software_version": version,
        "client_source_address": host.strip("[]"),
        "client_source_port": port,
    }


def _connection_key(ctx: RequestContext) -> str:
    return f"{ctx.listener}/{ctx.peer}"


@api(71, "GetTelemetrySubscriptions", 0, 0)
async def handle_get_telemetry_subscriptions(ctx: RequestContext, request: Any) -> Any:
    manager = ctx.broker.client_metrics
    inst, instance_id, outcome = manager.get_subscriptions(
        request.client_instance_id, client_attributes(ctx), _connection_key(ctx)
    )
    rtype = response_type(71, ctx.version)
    if outcome.error:
        return build(
            rtype,
            throttle_time=0,
            error_code=outcome.error,
            client_instance_id=ZERO_UUID,
            subscription_id=0,
            accepted_compression_types=[],
            push_interval=0,
            telemetry_max_bytes=0,
            delta_temporality=False,
            requested_metrics=[],
        )
    return build(
        rtype,
        throttle_time=0,
        error_code=ErrorCode.none,
        client_instance_id=instance_id,
        subscription_id=inst.subscription_id,
        accepted_compression_types=list(ACCEPTED_COMPRESSION),
        push_interval=inst.push_interval_ms,
        telemetry_max_bytes=manager.max_bytes,
        delta_temporality=True,
        requested_metrics=list(inst.metrics),
    )


@api(72, "PushTelemetry", 0, 0)
async def handle_push_telemetry(ctx: RequestContext, request: Any) -> Any:
    outcome = ctx.broker.client_metrics.push(
        request.client_instance_id,
        int(request.subscription_id),
        bool(request.terminating),
        int(request.compression_type),
        bytes(request.metrics),
        client_attributes(ctx),
        _connection_key(ctx),
    )
    return build(response_type(72, ctx.version), throttle_time=0, error_code=outcome.error)


# Kafka's ListConfigResourcesRequest.supportedResourceTypes, and its listing order.
_V0_TYPES = (RESOURCE_CLIENT_METRICS,)
_V1_TYPES = (
    RESOURCE_GROUP,
    RESOURCE_CLIENT_METRICS,
    RESOURCE_BROKER_LOGGER,
    RESOURCE_BROKER,
    RESOURCE_TOPIC,
)


@api(74, "ListConfigResources", 0, 1)
async def handle_list_config_resources(ctx: RequestContext, request: Any) -> Any:
    rtype = response_type(74, ctx.version)
    if not authorize(ctx, AclOperation.DESCRIBE_CONFIGS, ResourceType.CLUSTER, CLUSTER_NAME):
        return build(
            rtype,
            throttle_time=0,
            error_code=ErrorCode.cluster_authorization_failed,
            config_resources=[],
        )
    supported = _V0_TYPES if ctx.version == 0 else _V1_TYPES
    wanted = {int(t) for t in getattr(request, "resource_types", ())} or set(supported)
    if not wanted <= set(supported):
        return build(
            rtype, throttle_time=0, error_code=ErrorCode.unsupported_version, config_resources=[]
        )
    image = ctx.broker.image
    found: list[tuple[str, int]] = []
    if RESOURCE_CLIENT_METRICS in wanted:
        names = sorted(await ctx.broker.entity_configs.list("client-metrics"))
        found += [(n, RESOURCE_CLIENT_METRICS) for n in names]
    node_ids = sorted(image.brokers_on(ctx.listener))
    for kind in (RESOURCE_BROKER_LOGGER, RESOURCE_BROKER):
        if kind in wanted:
            found += [(str(n), kind) for n in node_ids]
    if RESOURCE_TOPIC in wanted:
        found += [(name, RESOURCE_TOPIC) for name in sorted(image.topics)]
    resources = [
        dict(resource_name=name, resource_type=kind)
        if ctx.version >= 1
        else dict(resource_name=name)
        for name, kind in found
    ]
    return build(rtype, throttle_time=0, error_code=ErrorCode.none, config_resources=resources)
