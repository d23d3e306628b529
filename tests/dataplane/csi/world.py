"""Helpers of the CSI tests: an API that answers SubjectAccessReviews like RBAC, the driver on a
unix socket, publish requests as kubelet sends them, and why a mount test cannot run here."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grpc

from dataplane.csi import mounting
from dataplane.csi.permitting import SUBJECT_ACCESS_REVIEWS
from dataplane.csi.proto import csi_pb2
from dataplane.csi.volumes import DATASET, EPHEMERAL, POD_NAME, POD_NAMESPACE, POD_UID, SERVICE_ACCOUNT
from kube.api import ROLE_BINDINGS, ROLES
from kube.memory import MemoryApi
from tests.dataplane.agent.cluster import NS, ReviewingApi


class RbacApi(ReviewingApi):
    """MemoryApi + TokenReview whose SubjectAccessReviews are answered, as the API server does, from
    the RBAC objects it holds (:mod:`kube.rbac`), and recorded."""

    def __init__(self, tokens: Mapping[str, str] | None = None) -> None:
        super().__init__(tokens or {})
        self.access_reviews: list[dict[str, Any]] = []

    def create(self, resource: Any, obj: Mapping[str, Any], *, namespace: str | None = None) -> dict[str, Any]:
        if resource == SUBJECT_ACCESS_REVIEWS:
            self.access_reviews.append(dict(obj))
        return super().create(resource, obj, namespace=namespace)


def grant_get(api: MemoryApi, service_account: str, namespace: str, dataset: str) -> None:
    """A Role allowing ``get`` on one DataSet, bound to a ServiceAccount of that namespace (as the
    example ``manifests/examples/dataset-volume-reader.yaml`` does)."""
    rbac = "rbac.authorization.k8s.io/v1"
    role = f"get-{dataset}-{service_account}"
    rule = {"apiGroups": ["kbl.io"], "resources": ["datasets"], "resourceNames": [dataset], "verbs": ["get"]}
    api.put(ROLES, {"apiVersion": rbac, "kind": "Role", "metadata": {"name": role, "namespace": namespace}, "rules": [rule]})
    subject = {"kind": "ServiceAccount", "name": service_account, "namespace": namespace}
    api.put(
        ROLE_BINDINGS,
        {"apiVersion": rbac, "kind": "RoleBinding", "metadata": {"name": role, "namespace": namespace},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role}, "subjects": [subject]},
    )  # fmt: skip


def user(sa: str, ns: str = NS) -> str:
    return f"system:serviceaccount:{ns}:{sa}"


def publish_request(
    volume_id: str, target: str | Path, dataset: str | None, *, sa: str = "reader", readonly: bool = True, pod: str = "reader-0"
) -> csi_pb2.NodePublishVolumeRequest:
    """A NodePublishVolume as kubelet sends it for an inline ephemeral volume with ``podInfoOnMount``."""
    context = {POD_NAME: pod, POD_NAMESPACE: NS, POD_UID: f"uid-{pod}", SERVICE_ACCOUNT: sa, EPHEMERAL: "true"}
    if dataset is not None:
        context[DATASET] = dataset
    cap = csi_pb2.VolumeCapability(
        mount=csi_pb2.VolumeCapability.MountVolume(),
        access_mode=csi_pb2.VolumeCapability.AccessMode(mode=csi_pb2.VolumeCapability.AccessMode.SINGLE_NODE_WRITER),
    )
    return csi_pb2.NodePublishVolumeRequest(
        volume_id=volume_id, target_path=str(target), volume_capability=cap, readonly=readonly, volume_context=context
    )


def code_of(call: Any) -> grpc.StatusCode | None:
    """The gRPC status of a call: ``None`` when it succeeded."""
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code()
    return None


def mounts_unavailable() -> str:
    """Why real mounts cannot run here ('' when they can)."""
    why = mounting.can_mount()
    if why:
        return why
    if importlib.util.find_spec("pyfuse3") is None:
        return "pyfuse3 is not installed (it builds against libfuse3: apt-get install libfuse3-dev fuse3 pkg-config)"
    return ""
