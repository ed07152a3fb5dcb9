"""ElectLeaders (43), KIP-183 and KIP-460: preferred and unclean leader elections.

The controller decides (single node: every partition already has its preferred leader;
cluster: ``ZkController.decide_elections``). As Kafka, asking for every partition (null
topics) reports only the partitions that needed an election, under an entry for every
topic; an UNCLEAN election is what the operator asked for, so it may elect an
out-of-sync replica even with ``unclean.leader.election.enable=false``.
"""

from __future__ import annotations

from typing import Any

from pybroker.broker.context import RequestContext
from pybroker.broker.handlers.registry import api
from pybroker.broker.security.authz import (
    CLUSTER_NAME,
    AclOperation,
    ResourceType,
    authorize,
    denied_message,
)
from pybroker.protocol.codec import build, response_type
from pybroker.protocol.errors import ErrorCode

ELECTION_TYPES = (0, 1)  # PREFERRED, UNCLEAN


@api(43, "ElectLeaders", 0, 2)
async def handle_elect_leaders(ctx: RequestContext, request: Any) -> Any:
    controller = ctx.broker.controller
    assert controller is not None
    election_type = int(getattr(request, "election_type", 0))
    timeout_s = max(request.timeout.total_seconds(), 0.0)
    wanted: list[tuple[str, int]] | None = None
    if request.topic_partitions is not None:
        wanted = []
        seen: set[tuple[str, int]] = set()
        for t in request.topic_partitions:
            for p in t.partitions:
                tp = (str(t.topic), int(p))
                if tp not in seen:
                    seen.add(tp)
                    wanted.append(tp)
    response = response_type(43, ctx.version)
    if not authorize(ctx, AclOperation.ALTER, ResourceType.CLUSTER, CLUSTER_NAME):
        code = ErrorCode.cluster_authorization_failed
        message = denied_message(ctx, AclOperation.ALTER)
        return build(
            response,
            throttle_time=0,
            error_code=code,
            replica_election_results=[
                {"topic": t, "partition_result": [_result(p, code, message)]}
                for t, p in wanted or ()
            ],
        )
    if election_type not in ELECTION_TYPES:
        message = f"Unknown election type {election_type}"
        results = [
            {"topic": t, "partition_result": [_result(p, ErrorCode.invalid_request, message)]}
            for t, p in wanted or ()
        ]
        return build(
            response,
            throttle_time=0,
            error_code=ErrorCode.invalid_request,
            replica_election_results=results,
        )
    got = await controller.elect_leaders(election_type, wanted, timeout_s)
    by_topic: dict[str, list[dict[str, Any]]] = {}
    if wanted is None:
        for topic in sorted(ctx.broker.image.topics):
            by_topic[topic] = []
    else:
        for topic, _p in wanted:
            by_topic.setdefault(topic, [])
    for r in got:
        by_topic.setdefault(r.topic, []).append(
            _result(r.partition, ErrorCode(r.error_code), r.error_message)
        )
    return build(
        response,
        throttle_time=0,
        error_code=ErrorCode.none,
        replica_election_results=[
            {"topic": t, "partition_result": ps} for t, ps in by_topic.items()
        ],
    )


def _result(partition: int, code: ErrorCode, message: str | None) -> dict[str, Any]:
    return {"partition_id": partition, "error_code": code, "error_message": message}
