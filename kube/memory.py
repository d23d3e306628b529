"""An in-memory Kubernetes API: a faithful, stateful :class:`~kube.api.KubeApi`.

Used by the controller's logic tests, the benchmarks' simulations and demos (no cluster needed).

Objects by (resource, namespace, name) with a cluster-wide resourceVersion counter, label
selectors (equality), a watch log with ``410 Gone`` for versions too old, JSON merge patches
(``null`` deletes; a ``metadata.resourceVersion`` in the patch is a precondition, ``409`` on
mismatch, as the API server does), create (``409`` when the name is taken) and replace (``PUT``:
the whole object, a stale ``metadata.resourceVersion`` is a ``409`` :class:`ConflictError`, so
two writers that read the same version cannot both win), the status subresource, bindings, evictions refused with
``False`` when a PodDisruptionBudget would drop below ``minAvailable``, and recorded events.

Isolation as over the wire: what a caller sends is copied in and what it gets is copied out (a
JSON round trip with orjson, what a client and the API server do, falling back to a deep copy
for values JSON cannot carry), so mutating either never changes a stored object. The answer to
a patch holds the caller's own patch values (copied in once, not twice) and copies of the rest. Stored objects
are never changed in place (a patch builds new containers along the paths it touches), so the
watch log shares them and a watcher gets its own copy when it reads an event.
A SubjectAccessReview ``create`` is answered (not stored) from the Roles, ClusterRoles and their
bindings the API holds, by :func:`kube.rbac.review` (see there what that leaves out).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import orjson

from kube import rbac
from kube.api import (
    CLUSTER_ROLE_BINDINGS,
    CLUSTER_ROLES,
    NODES,
    PODS,
    ROLE_BINDINGS,
    ROLES,
    SUBJECT_ACCESS_REVIEWS,
    ApiError,
    ConflictError,
    GoneError,
    Resource,
    WatchEvent,
)
from topology import labels

Objects = list[dict[str, Any]]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (``target`` and ``patch`` are not changed, nor shared with the result)."""
    return _merged(target, copy_json(patch))


def _merged(target: Any, patch: Any) -> Any:
    """:func:`merge_patch` with ``patch`` owned by the result (no copy of its values): new
    containers along the paths the patch touches, ``target``'s untouched values shared."""
    if not isinstance(patch, Mapping):
        return patch
    out = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merged(out.get(key), value)
    return out


def _answer(stored: Mapping[str, Any], sent: Mapping[str, Any]) -> dict[str, Any]:
    """The answer to a patch: ``stored`` (the patched object), where the values the caller sent
    are its own ones (the patch itself, not shared with ``stored``) and the rest copied. One
    round trip of the patch per write instead of two (a million-row status is what a placement
    write sends); the stored object stays the API's alone either way."""
    out: dict[str, Any] = {}
    for key, value in stored.items():
        mine = sent.get(key)
        if mine is None:
            out[key] = copy_json(value)
        elif isinstance(mine, Mapping) and isinstance(value, Mapping):
            out[key] = _answer(value, mine)
        else:
            out[key] = mine
    return out


def copy_json(obj: Any) -> Any:
    """An independent copy of a JSON-like value: an orjson round trip (what a client and the API
    server do with every object; tuples come back as lists), else :func:`copy.deepcopy` (keys
    that are not strings, integers beyond 64 bits, other types)."""
    try:
        return orjson.loads(orjson.dumps(obj))
    except TypeError:
        return copy.deepcopy(obj)


#: The largest request body a kube-apiserver decodes for a write (3 MiB: "Request entity too
#: large: limit is 3145728"; kubernetes/kubernetes#105863).
MAX_REQUEST_BYTES = 3 * 2**20


class MemoryApi:
    """An in-memory API server (see the module docstring).

    ``max_object_bytes``: when set, the sizes a real API server enforces on writes by clients
    (create, replace, patch): a request body over :data:`MAX_REQUEST_BYTES` is refused with
    ``413``, a stored object over ``max_object_bytes`` (etcd's ``--max-request-bytes``, 1.5 MiB by
    default) with ``500 etcdserver: request is too large``, and nothing is stored. ``None``: no
    limit (the sizes cost a serialisation per write; benchmarks that store objects a real API
    server refuses say so where they use it)."""

    def __init__(self, *, history: int = 1000, max_object_bytes: int | None = None) -> None:
        self.max_object_bytes = max_object_bytes
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.version = 1
        self.log: list[tuple[int, str, WatchEvent]] = []
        self.history = history
        self.events: list[dict[str, Any]] = []
        self.evictions: list[str] = []
        self.pdbs: list[tuple[dict[str, str], int]] = []  # (selector, minAvailable)
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)

    # ---------------------------------------------------------------- helpers
    def _key(self, resource: Resource, name: str, namespace: str | None) -> tuple[str, str, str]:
        return (self._kind(resource), (namespace or "default") if resource.namespaced else "", name)

    @staticmethod
    def _kind(resource: Resource) -> str:
        return f"{resource.group}/{resource.plural}" if resource.group else resource.plural

    def _bump(self, resource: Resource, kind: Literal["ADDED", "MODIFIED", "DELETED"], obj: dict[str, Any]) -> None:
        self.version += 1
        obj["metadata"] = {**(obj.get("metadata") or {}), "resourceVersion": str(self.version)}  # a new dict: the old one may be shared
        self.log.append((self.version, self._kind(resource), WatchEvent(kind, obj)))  # shared: stored objects never change in place
        del self.log[: max(0, len(self.log) - self.history)]
        self.cond.notify_all()

    def put(self, resource: Resource, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Create or replace an object (test setup, kubelet, other controllers)."""
        with self.lock:
            stored = copy_json(dict(obj))
            meta = stored.setdefault("metadata", {})
            key = self._key(resource, meta["name"], meta.get("namespace"))
            if resource.namespaced:
                meta.setdefault("namespace", "default")
            existed = key in self.objects
            self.objects[key] = stored
            self._bump(resource, "MODIFIED" if existed else "ADDED", stored)
            out: dict[str, Any] = copy_json(stored)
            return out

    def delete(self, resource: Resource, name: str, namespace: str | None = None) -> None:
        with self.lock:
            obj = self.objects.pop(self._key(resource, name, namespace), None)
            if obj is not None:
                self._bump(resource, "DELETED", obj)

    def _check_size(self, request: Any, stored: Any) -> None:
        """Refuse a write as a real API server does (see :class:`MemoryApi`)."""
        if self.max_object_bytes is None:
            return
        if len(orjson.dumps(request)) > MAX_REQUEST_BYTES:
            raise ApiError(413, f"Request entity too large: limit is {MAX_REQUEST_BYTES}")
        if len(orjson.dumps(stored)) > self.max_object_bytes:
            raise ApiError(500, "etcdserver: request is too large")

    # ---------------------------------------------------------------- KubeApi
    def list(
        self, resource: Resource, *, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        with self.lock:
            return self._select(resource, namespace, label_selector), str(self.version)

    def list_page(
        self,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        limit: int | None = None,
        continue_token: str = "",
    ) -> tuple[Objects, str, str]:
        """One page of a list, as the API server pages (``limit``/``continue``).

        The token carries the list's ``resourceVersion`` and the last name served; like the API
        server, a token whose version has left the watch history is ``410 Gone``. Pages of one
        list see the objects as of the first page's version is *not* promised (nor by etcd once
        compacted): later pages show objects as they are now, after the last name served.
        """
        with self.lock:
            version, after = str(self.version), None
            if continue_token:
                version, _, last = continue_token.partition(":")
                after_ns, _, after_name = last.partition(" ")
                after = (after_ns, after_name)
                if not version.isdigit():
                    raise ApiError(400, f"invalid continue token {continue_token!r}")
                if self.log and int(version) < self.log[0][0] - 1:
                    raise GoneError("the continue token has expired")
            found = self._select(resource, namespace, label_selector, after=after)
            if limit and len(found) > limit:
                found = found[:limit]
                meta = found[-1].get("metadata", {})
                token = f"{version}:{meta.get('namespace', '') if resource.namespaced else ''} {meta.get('name', '')}"
                return found, version, token
            return found, version, ""

    def _select(
        self, resource: Resource, namespace: str | None, label_selector: str | None, *, after: tuple[str, str] | None = None
    ) -> Objects:
        wanted = dict(p.split("=", 1) for p in label_selector.split(",")) if label_selector else {}
        out = []
        for (plural, ns, name), obj in sorted(self.objects.items()):
            if plural != self._kind(resource) or (namespace and ns != namespace):
                continue
            if after and (ns, name) <= after:
                continue
            obj_labels = obj.get("metadata", {}).get("labels") or {}
            if all(obj_labels.get(k) == v for k, v in wanted.items()):
                out.append(copy_json(obj))
        return out

    def watch(self, resource: Resource, *, resource_version: str, timeout_s: int = 300) -> Iterator[WatchEvent]:
        since = int(resource_version or 0)
        with self.lock:
            if self.log and since < self.log[0][0] - 1:
                raise GoneError()
            kind = self._kind(resource)
            events = [e for v, plural, e in self.log if v > since and plural == kind]
            if not events:
                self.cond.wait(min(timeout_s, 0.5))
                events = [e for v, plural, e in self.log if v > since and plural == kind]
        for e in events:
            yield WatchEvent(e.type, copy_json(e.object))  # the watcher's own copy

    def get(self, resource: Resource, name: str, *, namespace: str | None = None) -> dict[str, Any] | None:
        with self.lock:
            obj = self.objects.get(self._key(resource, name, namespace))
            return copy_json(obj) if obj is not None else None

    def _patch(self, resource: Resource, name: str, patch: Mapping[str, Any], namespace: str | None, *, status: bool) -> dict[str, Any]:
        with self.lock:
            key = self._key(resource, name, namespace)
            obj = self.objects.get(key)
            if obj is None:
                raise ApiError(404, f"{self._kind(resource)} {name} not found")
            want_rv = (patch.get("metadata") or {}).get("resourceVersion")
            if want_rv is not None and want_rv != obj["metadata"].get("resourceVersion"):
                raise ConflictError(f"{self._kind(resource)} {name}: the object has been modified")
            body = {"status": patch.get("status")} if status else {k: v for k, v in patch.items() if k != "status"}
            updated = _merged(obj, copy_json(body))
            self._check_size(patch, updated)
            self.objects[key] = updated
            self._bump(resource, "MODIFIED", updated)
            return _answer(updated, body)

    def patch(self, resource: Resource, name: str, patch: Mapping[str, Any], *, namespace: str | None = None) -> dict[str, Any]:
        return self._patch(resource, name, patch, namespace, status=False)

    def patch_status(self, resource: Resource, name: str, patch: Mapping[str, Any], *, namespace: str | None = None) -> dict[str, Any]:
        return self._patch(resource, name, patch, namespace, status=True)

    def create(self, resource: Resource, obj: Mapping[str, Any], *, namespace: str | None = None) -> dict[str, Any]:
        if resource == SUBJECT_ACCESS_REVIEWS:
            return self._access_review(obj)
        with self.lock:
            stored = copy_json(dict(obj))
            meta = stored.setdefault("metadata", {})
            name = meta.get("name")
            if not name:
                raise ApiError(422, f"{self._kind(resource)}: metadata.name is required")
            if resource.namespaced:
                meta["namespace"] = namespace or meta.get("namespace") or "default"
            key = self._key(resource, name, meta.get("namespace"))
            if key in self.objects:
                raise ConflictError(f"{self._kind(resource)} {name} already exists")
            meta.pop("resourceVersion", None)
            stored.setdefault("apiVersion", resource.api_version)
            stored.setdefault("kind", resource.kind)
            self._check_size(obj, stored)
            self.objects[key] = stored
            self._bump(resource, "ADDED", stored)
            out: dict[str, Any] = copy_json(stored)
            return out

    def _access_review(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """A SubjectAccessReview answered from the RBAC objects held (RBAC only, :mod:`kube.rbac`)."""
        with self.lock:
            held = [
                {"apiVersion": r.api_version, "kind": r.kind, **copy.deepcopy(o)}
                for r in (ROLES, ROLE_BINDINGS, CLUSTER_ROLES, CLUSTER_ROLE_BINDINGS)
                for (plural, _, _), o in self.objects.items()
                if plural == self._kind(r)
            ]
        answer = copy.deepcopy(dict(obj))
        answer.setdefault("apiVersion", SUBJECT_ACCESS_REVIEWS.api_version)
        answer.setdefault("kind", SUBJECT_ACCESS_REVIEWS.kind)
        answer["status"] = rbac.review(held, answer.get("spec") or {})
        return answer

    def replace(self, resource: Resource, name: str, obj: Mapping[str, Any], *, namespace: str | None = None) -> dict[str, Any]:
        with self.lock:
            key = self._key(resource, name, namespace)
            old = self.objects.get(key)
            if old is None:
                raise ApiError(404, f"{self._kind(resource)} {name} not found")
            stored = copy_json(dict(obj))
            meta = stored.setdefault("metadata", {})
            if meta.get("name", name) != name:
                raise ApiError(400, f"{self._kind(resource)} {name}: metadata.name {meta['name']!r} does not match the URL")
            want_rv = meta.get("resourceVersion")
            if want_rv is not None and want_rv != old["metadata"].get("resourceVersion"):
                raise ConflictError(f"{self._kind(resource)} {name}: the object has been modified")
            meta["name"] = name
            if resource.namespaced:
                meta["namespace"] = old["metadata"].get("namespace", "default")
            stored.setdefault("apiVersion", resource.api_version)
            stored.setdefault("kind", resource.kind)
            self._check_size(obj, stored)
            self.objects[key] = stored
            self._bump(resource, "MODIFIED", stored)
            out: dict[str, Any] = copy_json(stored)
            return out

    def create_binding(self, namespace: str, pod: str, uid: str, node: str) -> None:
        with self.lock:
            obj = self.objects.get(self._key(PODS, pod, namespace))
            if obj is None or obj.get("spec", {}).get("nodeName"):
                raise ApiError(409, "pod missing or already bound")
            self._patch(PODS, pod, {"spec": {"nodeName": node}, "status": {"phase": "Running"}}, namespace, status=False)

    def evict(self, namespace: str, pod: str) -> bool:
        with self.lock:
            obj = self.objects.get(self._key(PODS, pod, namespace))
            if obj is None:
                return True
            pod_labels = obj.get("metadata", {}).get("labels") or {}
            for selector, min_available in self.pdbs:
                if not all(pod_labels.get(k) == v for k, v in selector.items()):
                    continue
                healthy = [
                    o for (plural, ns, _), o in self.objects.items()
                    if plural == "pods" and ns == namespace and o.get("spec", {}).get("nodeName")
                    and all((o.get("metadata", {}).get("labels") or {}).get(k) == v for k, v in selector.items())
                ]
                if len(healthy) - 1 < min_available:
                    return False
            self.evictions.append(f"{namespace}/{pod}")
            self.delete(PODS, pod, namespace)
            return True

    def create_event(
        self, involved: Mapping[str, Any], *, reason: str, message: str, type: Literal["Normal", "Warning"] = "Normal"
    ) -> None:
        with self.lock:
            self.events.append({"involved": dict(involved), "reason": reason, "message": message, "type": type})

    # ---------------------------------------------------------------- simulation
    def sync_nodes(self, node_objects: Objects) -> None:
        """Make the Node objects match the cloud's joined instances (kubelet + node lifecycle)."""
        with self.lock:
            wanted = {o["metadata"]["name"]: o for o in node_objects}
            have = {name for (plural, _, name) in self.objects if plural == "nodes"}
            managed = {
                name for (plural, _, name), o in self.objects.items()
                if plural == "nodes" and labels.NODE_GROUP_LABEL in (o["metadata"].get("labels") or {})
            }
            for name in managed - set(wanted):
                self.delete(NODES, name)
            for name, obj in wanted.items():
                if name not in have:
                    self.put(NODES, obj)
