"""The narrow interface to the Kubernetes API that kbl's I/O side uses, and nothing more.

Every component that talks to the API server (the extender's cache and binder, the companion
controller) goes through :class:`KubeApi`. The real adapter wraps the official ``kubernetes``
client; tests run the same logic on a fake that implements this protocol, or on the real adapter
against an API emulator that speaks HTTP. Objects cross this interface as raw JSON dicts, typed
into :mod:`topology` dataclasses by the caller.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from topology.errors import KblError

EventType = Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK"]


@dataclass(frozen=True, slots=True)
class Resource:
    """An API resource: ``group/version`` and the plural name in URLs."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


NODES = Resource("", "v1", "nodes", "Node", namespaced=False)
PODS = Resource("", "v1", "pods", "Pod", namespaced=True)
DATASETS = Resource("kbl.io", "v1alpha1", "datasets", "DataSet", namespaced=True)
KBLS = Resource("kbl.io", "v1alpha1", "kbls", "KBL", namespaced=True)
#: One per node: what its agent holds and has verified (the data plane's report, :mod:`topology.holdings`).
NODE_HOLDINGS = Resource("kbl.io", "v1alpha1", "nodeholdings", "NodeHoldings", namespaced=False)
#: A large DataSet's target, in bounded immutable pieces (:mod:`topology.slices`).
PLACEMENT_SLICES = Resource("kbl.io", "v1alpha1", "placementslices", "PlacementSlice", namespaced=True)
#: A stage of a KBL blueprint may start when an earlier stage's Job reaches a completion fraction.
JOBS = Resource("batch", "v1", "jobs", "Job", namespaced=True)
#: Readers and peers of the node agent are authenticated with a TokenReview of their bearer token.
TOKEN_REVIEWS = Resource("authentication.k8s.io", "v1", "tokenreviews", "TokenReview", namespaced=False)
#: The node agent asks whether a reader's identity may ``get`` a DataSet (or its ``pieces``).
SUBJECT_ACCESS_REVIEWS = Resource("authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview", namespaced=False)
#: RBAC objects: the in-memory API answers SubjectAccessReviews from them (:mod:`kube.rbac`).
ROLES = Resource("rbac.authorization.k8s.io", "v1", "roles", "Role", namespaced=True)
ROLE_BINDINGS = Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", namespaced=True)
CLUSTER_ROLES = Resource("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False)
CLUSTER_ROLE_BINDINGS = Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", namespaced=False)
#: The leader election of ``kbl controller`` (one Lease object, see :mod:`kube.leading`).
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease", namespaced=True)
#: Karpenter (karpenter.sh/v1): a kbl node group is a NodePool; NodeClaims are its launched nodes.
NODEPOOLS = Resource("karpenter.sh", "v1", "nodepools", "NodePool", namespaced=False)
NODECLAIMS = Resource("karpenter.sh", "v1", "nodeclaims", "NodeClaim", namespaced=False)
#: The AWS node class a NodePool references (EKS Auto Mode's is ``eks.amazonaws.com/v1 NodeClass``).
EC2NODECLASSES = Resource("karpenter.k8s.aws", "v1", "ec2nodeclasses", "EC2NodeClass", namespaced=False)
#: Placeholder pods (pre-warming on Karpenter) run as a Deployment at a low PriorityClass.
DEPLOYMENTS = Resource("apps", "v1", "deployments", "Deployment", namespaced=True)
PRIORITYCLASSES = Resource("scheduling.k8s.io", "v1", "priorityclasses", "PriorityClass", namespaced=False)


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One event of a watch stream."""

    type: EventType
    object: Mapping[str, Any]


class ApiError(KblError):
    """The API server answered with an error status (``status`` is the HTTP code, 0 if none)."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(f"API error {status}: {reason}")


class GoneError(ApiError):
    """``410 Gone``: the resourceVersion is too old; the watcher must relist."""

    def __init__(self, reason: str = "resourceVersion too old") -> None:
        super().__init__(410, reason)


class ConflictError(ApiError):
    """``409 Conflict``: a create found the object already there, or a replace carried a
    ``metadata.resourceVersion`` that is no longer current (someone else wrote in between)."""

    def __init__(self, reason: str = "the object has been modified") -> None:
        super().__init__(409, reason)


class KubeApi(Protocol):
    """The calls kbl makes to the API server."""

    def list(
        self, resource: Resource, *, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        """All objects of a resource and the list's ``resourceVersion``."""
        ...

    def watch(self, resource: Resource, *, resource_version: str, timeout_s: int = 300) -> Iterator[WatchEvent]:
        """Events after ``resource_version``; raises :class:`GoneError` when it is too old."""
        ...

    def get(self, resource: Resource, name: str, *, namespace: str | None = None) -> dict[str, Any] | None:
        """One object, or ``None`` if it does not exist."""
        ...

    def patch(self, resource: Resource, name: str, patch: Mapping[str, Any], *, namespace: str | None = None) -> dict[str, Any]:
        """A JSON merge patch of an object's metadata/spec."""
        ...

    def patch_status(self, resource: Resource, name: str, patch: Mapping[str, Any], *, namespace: str | None = None) -> dict[str, Any]:
        """A JSON merge patch of an object's ``status`` subresource."""
        ...

    def create(self, resource: Resource, obj: Mapping[str, Any], *, namespace: str | None = None) -> dict[str, Any]:
        """Create an object (``POST``); the stored object, with its ``resourceVersion``.

        Raises :class:`ConflictError` when an object of that name already exists.
        """
        ...

    def replace(self, resource: Resource, name: str, obj: Mapping[str, Any], *, namespace: str | None = None) -> dict[str, Any]:
        """Replace an object whole (``PUT``, RBAC verb ``update``); the stored object.

        With ``metadata.resourceVersion`` set in ``obj`` the write happens only if that is still
        the object's version, else :class:`ConflictError` (optimistic concurrency); ``404``
        :class:`ApiError` when the object does not exist.
        """
        ...

    def create_binding(self, namespace: str, pod: str, uid: str, node: str) -> None:
        """Bind a pod to a node (``pods/binding``), as kube-scheduler's binder does."""
        ...

    def evict(self, namespace: str, pod: str) -> bool:
        """Evict through the Eviction API; ``False`` when a PodDisruptionBudget refuses (429)."""
        ...

    def create_event(
        self, involved: Mapping[str, Any], *, reason: str, message: str, type: Literal["Normal", "Warning"] = "Normal"
    ) -> None:
        """Record a Kubernetes Event about an object."""
        ...


@runtime_checkable
class DeletesObjects(KubeApi, Protocol):
    """A :class:`KubeApi` that can also delete (only the Karpenter provider needs it: NodeClaims,
    its NodePools and placeholder Deployments). Kept apart so readers and fakes need not stub it."""

    def delete(self, resource: Resource, name: str, *, namespace: str | None = None) -> None:
        """Delete an object (``DELETE``); a gone object is fine."""
        ...
