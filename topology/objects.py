"""Raw Kubernetes JSON as it crosses our edge, typed.

These TypedDicts describe only the fields kbl reads. Everything past the edge works on the
frozen dataclasses built from them (:mod:`topology.nodes`, :mod:`topology.pods`,
:mod:`topology.datasets`, :mod:`topology.kbls`); nothing inside passes raw dicts around.
"""

from __future__ import annotations

from typing import Any, TypedDict


class ObjectMeta(TypedDict, total=False):
    name: str
    namespace: str
    uid: str
    resourceVersion: str
    labels: dict[str, str]
    annotations: dict[str, str]
    creationTimestamp: str
    ownerReferences: list[dict[str, Any]]


class TaintDict(TypedDict, total=False):
    key: str
    value: str
    effect: str


class NodeSpecDict(TypedDict, total=False):
    providerID: str
    unschedulable: bool
    taints: list[TaintDict]


class ConditionDict(TypedDict, total=False):
    type: str
    status: str
    reason: str
    message: str
    lastTransitionTime: str


class NodeStatusDict(TypedDict, total=False):
    allocatable: dict[str, str]
    capacity: dict[str, str]
    conditions: list[ConditionDict]


class NodeDict(TypedDict, total=False):
    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: NodeSpecDict
    status: NodeStatusDict


class KubeObject(TypedDict, total=False):
    """Any Kubernetes object: what a snapshot ``List`` holds in ``items``."""

    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: dict[str, Any]
    status: dict[str, Any]


class KubeList(TypedDict, total=False):
    apiVersion: str
    kind: str
    items: list[KubeObject]
    metadata: dict[str, Any]
