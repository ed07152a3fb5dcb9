"""Driving ACLs on an authorizer-enabled pybroker/Kafka pair (see tests.support.authz).

``grant``/``revoke`` send CreateAcls/DeleteAcls through the admin connections (127.0.0.2)
and then wait until both brokers describe the same ACLs: Kafka applies ACLs when its
metadata log is replayed, a moment after CreateAcls answers.
"""

from __future__ import annotations

import time
from typing import Any

from kio.schema.errors import ErrorCode

from tests.support.authz import ANONYMOUS, CLIENT_HOST
from tests.support.differential import (
    VOLATILE_FIELDS,
    DifferentialPair,
    normalise,
    request_for,
    to_plain,
)

CREATE_ACLS, DESCRIBE_ACLS, DELETE_ACLS = 30, 29, 31
TYPES = {"topic": 2, "group": 3, "cluster": 4, "transactional_id": 5}
OPS = {
    "ALL": 2,
    "READ": 3,
    "WRITE": 4,
    "CREATE": 5,
    "DELETE": 6,
    "ALTER": 7,
    "DESCRIBE": 8,
    "CLUSTER_ACTION": 9,
    "DESCRIBE_CONFIGS": 10,
    "ALTER_CONFIGS": 11,
    "IDEMPOTENT_WRITE": 12,
}
LITERAL, PREFIXED, ANY, MATCH = 3, 4, 1, 2
ALLOW, DENY = 3, 2
AUTH_ERRORS = frozenset(
    {
        ErrorCode.topic_authorization_failed,
        ErrorCode.group_authorization_failed,
        ErrorCode.cluster_authorization_failed,
        ErrorCode.transactional_id_authorization_failed,
        ErrorCode.delegation_token_authorization_failed,
    }
)
_AUTH_NAMES = {e.name for e in AUTH_ERRORS} | {int(e) for e in AUTH_ERRORS}


def creation(
    rtype: str,
    name: str,
    op: str,
    *,
    deny: bool = False,
    pattern: int = LITERAL,
    host: str = CLIENT_HOST,
    principal: str = ANONYMOUS,
) -> dict[str, Any]:
    return {
        "resource_type": TYPES[rtype],
        "resource_name": name,
        "resource_pattern_type": pattern,
        "principal": principal,
        "host": host,
        "operation": OPS[op],
        "permission_type": DENY if deny else ALLOW,
    }


def describe_all(version: int = 3) -> Any:
    return request_for(
        DESCRIBE_ACLS,
        version,
        resource_type_filter=ANY,
        resource_name_filter=None,
        pattern_type_filter=ANY,
        principal_filter=None,
        host_filter=None,
        operation=1,
        permission_type=1,
    )


def _acl_set(resp: Any) -> Any:
    volatile = VOLATILE_FIELDS - {"host"}
    plain = normalise(to_plain(resp), volatile, unordered=frozenset({"resources", "acls"}))
    return plain["resources"]


def sync(admin: DifferentialPair, timeout: float = 15.0) -> None:
    """Wait until both brokers describe the same ACLs."""
    deadline = time.monotonic() + timeout
    while True:
        ours, kafka = admin.both(describe_all())
        if _acl_set(ours) == _acl_set(kafka):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"ACLs differ: {_acl_set(ours)} vs {_acl_set(kafka)}")
        time.sleep(0.05)


def grant(admin: DifferentialPair, *creations: dict[str, Any]) -> None:
    request = request_for(CREATE_ACLS, 3, creations=list(creations))
    for resp in admin.both(request):
        assert all(r.error_code == ErrorCode.none for r in resp.results), resp
    sync(admin)


def revoke_client(admin: DifferentialPair) -> None:
    """Remove every ACL of the client host (the admin host's stay)."""
    request = request_for(
        DELETE_ACLS,
        3,
        filters=[
            {
                "resource_type_filter": ANY,
                "resource_name_filter": None,
                "pattern_type_filter": ANY,
                "principal_filter": None,
                "host_filter": CLIENT_HOST,
                "operation": 1,
                "permission_type": 1,
            }
        ],
    )
    for resp in admin.both(request):
        assert resp.filter_results[0].error_code == ErrorCode.none, resp
    sync(admin)


def auth_errors(value: Any) -> set[Any]:
    """Every authorization error (by name) anywhere in a response."""
    found: set[Any] = set()

    def walk(v: Any, key: str = "") -> None:
        if isinstance(v, dict):
            for k, sub in v.items():
                walk(sub, k)
        elif isinstance(v, list):
            for sub in v:
                walk(sub, key)
        elif key == "topic_config_error_code":
            return  # CreateTopics withholding configs is not a refusal of the request
        elif key.endswith("error_code") and isinstance(v, int | str) and v in _AUTH_NAMES:
            found.add(v)

    walk(to_plain(value))
    return found
