"""Single-node metadata store: the cluster image as one JSON file in the first log dir.

Written with ``storage.fileio.write_atomic`` (temp file, fsync, rename, fsync dir) so a crash
leaves either the old or the new image, never a torn one.
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import Any

from pybroker.replication.metadata import BrokerInfo, ClusterImage, PartitionState, TopicInfo
from pybroker.storage.fileio import write_atomic

log = logging.getLogger(__name__)

FILE_NAME = "pybroker-cluster-metadata.json"


def new_cluster_id() -> str:
    """Kafka's cluster ids are base64url-encoded UUIDs without padding."""
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


class LocalMetadataStore:
    def __init__(self, log_dir: Path) -> None:
        self.path = Path(log_dir) / FILE_NAME

    def load(self) -> ClusterImage | None:
        try:
            raw = self.path.read_text()
        except FileNotFoundError:
            return None
        try:
            return _decode(json.loads(raw))
        except (ValueError, KeyError, TypeError) as exc:
            raise RuntimeError(f"cluster metadata file {self.path} is corrupt: {exc}") from exc

    def save(self, image: ClusterImage) -> None:
        write_atomic(self.path, json.dumps(_encode(image), indent=1, sort_keys=True).encode())


def _encode(image: ClusterImage) -> dict[str, Any]:
    return {
        "version": 1,
        "cluster_id": image.cluster_id,
        "topics": [
            {
                "name": t.name,
                "topic_id": str(t.topic_id),
                "configs": dict(t.configs),
                "partitions": [
                    {
                        "partition": p.partition,
                        "leader": p.leader,
                        "leader_epoch": p.leader_epoch,
                        "replicas": list(p.replicas),
                        "isr": list(p.isr),
                    }
                    for p in t.partitions
                ],
            }
            for t in image.topics.values()
        ],
    }


def _decode(data: dict[str, Any]) -> ClusterImage:
    topics = {}
    for t in data["topics"]:
        parts = tuple(
            PartitionState(
                p["partition"],
                p["leader"],
                p["leader_epoch"],
                tuple(p["replicas"]),
                tuple(p["isr"]),
            )
            for p in t["partitions"]
        )
        topics[t["name"]] = TopicInfo(
            t["name"], uuid.UUID(t["topic_id"]), parts, dict(t["configs"])
        )
    brokers: dict[int, BrokerInfo] = {}
    return ClusterImage(data["cluster_id"], -1, brokers, topics)
