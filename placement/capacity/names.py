"""Names the capacity planner derives: node-group names, plain zones, a node's group."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

from topology import labels
from topology.nodes import Node

_NAME_SAFE = re.compile(r"[^a-zA-Z0-9-]+")


def group_name(kbl_key: str, zone: str) -> str:
    """The deterministic node-group name of a KBL in a zone (at most 63 characters).

    ``kbl-<namespace>-<name>-<zone>``; longer names are cut and suffixed with 8 hex digits of
    the SHA-256 of the full name, so two KBLs never share a group.
    """
    namespace, _, name = kbl_key.partition("/")
    full = f"kbl-{namespace}-{name}-{zone}"
    clean = _NAME_SAFE.sub("-", full).strip("-")
    if len(clean) <= 63 and clean == full:
        return clean
    digest = hashlib.sha256(full.encode()).hexdigest()[:8]
    return f"{clean[:54].rstrip('-')}-{digest}"


def plain_zone(zone: str) -> str:
    """The AZ name of a qualified zone domain (``us-east-1/us-east-1a`` -> ``us-east-1a``)."""
    return zone.rsplit("/", 1)[-1]


def node_group_of(node: Node) -> str | None:
    """The node group a node belongs to (the EKS label, else the kbl group label)."""
    return node.labels.get(labels.EKS_NODE_GROUP_LABEL) or node.labels.get(labels.NODE_GROUP_LABEL)


def group_of_labels(node_labels: Mapping[str, str]) -> str | None:
    """The node group named by raw node labels (as :func:`node_group_of`)."""
    return node_labels.get(labels.EKS_NODE_GROUP_LABEL) or node_labels.get(labels.NODE_GROUP_LABEL)
