"""The real :class:`~kube.api.KubeApi`: the official ``kubernetes`` client, raw JSON in and out.

:class:`KubeClient` calls the typed API classes of the official client (``CoreV1Api`` for nodes,
pods, bindings, evictions and events; ``CustomObjectsApi`` for ``kbl.io`` DataSets and KBLs and
the ``coordination.k8s.io`` Lease of the leader election) with
``_preload_content=False`` and decodes the bodies itself with orjson: objects stay plain dicts,
exactly as the API server sent them, and a 5,000-node list is not turned into model objects
and back. Watches stream line-delimited JSON events from the same list calls with
``watch=true``. Errors become :class:`~kube.api.GoneError` (``410``, also when it
arrives as an ``ERROR`` event inside a watch stream), :class:`~kube.api.ConflictError`
(``409``: already exists, or a stale ``resourceVersion`` on a replace) or :class:`~kube.api.ApiError`
with the HTTP status (``0`` for transport failures). Construct it from in-cluster config or a
kubeconfig (:meth:`KubeClient.from_config`) or from an explicit URL (:meth:`KubeClient.from_url`,
for emulators and tests).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

import orjson
import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from kube.api import NODES, PODS, ApiError, ConflictError, GoneError, Resource, WatchEvent
from topology import labels
from topology.errors import SnapshotError
from topology.snapshots import paused_gc, read_list_body
from topology.times import format_time

log = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"
#: Seconds to wait for a TCP connection to the API server.
CONNECT_TIMEOUT_S = 10.0
#: Extra seconds of client-side read timeout beyond a watch's server-side timeout.
WATCH_GRACE_S = 15.0
#: Seconds for a list, get, patch or create.
REQUEST_TIMEOUT_S = 60.0
EVENT_SOURCE = "kbl-extender"
#: Raw objects, or typed ones where :attr:`KubeClient.typed_lists` asks (`Node`, numeric placements).
Items = list[Any]
#: Items per page of a list (client-go's pager asks for 500).
LIST_PAGE_SIZE = 500


def _error(exc: ApiException) -> ApiError:
    reason = str(exc.reason or "")
    body = exc.body
    if body:
        try:
            status = orjson.loads(body)
            if isinstance(status, dict) and status.get("message"):
                reason = f"{reason}: {status['message']}" if reason else str(status["message"])
        except orjson.JSONDecodeError:
            reason = f"{reason}: {body[:200]!r}"
    if exc.status == 410:
        return GoneError(reason or "resourceVersion too old")
    if exc.status == 409:
        return ConflictError(reason or "conflict")
    return ApiError(int(exc.status or 0), reason or "no reason given")


class KubeClient:
    """:class:`~kube.api.KubeApi` over the official client (module docstring).

    Parameters
    ----------
    api_client:
        A configured ``kubernetes.client.ApiClient``.
    """

    #: Items asked for per page by :meth:`list`.
    page_size = LIST_PAGE_SIZE
    #: Lists typed as they are decoded (:func:`~topology.snapshots.read_list_body`): Nodes come
    #: back as :class:`~topology.nodes.Node` (racks from :attr:`rack_label`), DataSets as
    #: ``DataSet.from_object`` reads them. On only in a :meth:`typed_reader` (``kbl serve``'s and
    #: the controller's informers, whose only use of listed objects is to type them); items that
    #: are not plainly well formed stay dicts. Watch events stay JSON.
    typed_lists = False
    rack_label = labels.DEFAULT_RACK

    def __init__(self, api_client: k8s.ApiClient) -> None:
        self.api_client = api_client
        self.core = k8s.CoreV1Api(api_client)
        self.custom = k8s.CustomObjectsApi(api_client)
        self._streams: dict[int, Any] = {}
        self._streams_lock = threading.Lock()

    # ------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, kubeconfig: str | None = None, *, context: str | None = None) -> KubeClient:
        """In-cluster config when running in a pod (and no kubeconfig is given), else the kubeconfig.

        Raises
        ------
        ApiError
            With status 0 when neither configuration can be loaded.
        """
        configuration = k8s.Configuration()
        try:
            if kubeconfig is None:
                try:
                    k8s_config.load_incluster_config(client_configuration=configuration)
                    return cls(k8s.ApiClient(configuration))
                except ConfigException:
                    pass
            k8s_config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=configuration)
        except (ConfigException, OSError) as exc:
            raise ApiError(0, f"no Kubernetes configuration: not in a cluster and no usable kubeconfig ({exc})") from None
        return cls(k8s.ApiClient(configuration))

    @classmethod
    def from_url(cls, host: str, *, token: str | None = None, verify_ssl: bool = True, ca_file: str | None = None) -> KubeClient:
        """A client for an explicit API server URL (``http://127.0.0.1:PORT`` for an emulator)."""
        configuration = k8s.Configuration(host=host.rstrip("/"))
        configuration.verify_ssl = verify_ssl
        if ca_file:
            configuration.ssl_ca_cert = ca_file
        if token:
            configuration.api_key = {"authorization": token}
            configuration.api_key_prefix = {"authorization": "Bearer"}
        return cls(k8s.ApiClient(configuration))

    def typed_reader(self, rack_label: str = labels.DEFAULT_RACK) -> KubeClient:
        """This client's connection with :attr:`typed_lists` on, for a reader whose only use of
        listed objects is to type them (the controller's informers); this client, its writes and
        its other readers keep raw lists."""
        reader = copy.copy(self)
        reader.typed_lists, reader.rack_label = True, rack_label
        return reader

    def close(self) -> None:
        """Close every open watch and the connection pool."""
        with self._streams_lock:
            streams = list(self._streams.values())
        for stream in streams:
            _shutdown(stream)
        self.api_client.close()

    def interrupt_watch(self, thread_id: int) -> None:
        """Make a watch blocked in thread ``thread_id`` return at once (used to stop informers)."""
        with self._streams_lock:
            stream = self._streams.get(thread_id)
        if stream is not None:
            _shutdown(stream)

    # ---------------------------------------------------------------- helpers
    def _call_raw(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> bytes:
        """Call an API method for the body's bytes, unparsed; map errors."""
        kwargs.setdefault("_request_timeout", (CONNECT_TIMEOUT_S, REQUEST_TIMEOUT_S))
        try:
            response = fn(*args, _preload_content=False, **kwargs)
            data = response.data
        except ApiException as exc:
            raise _error(exc) from None
        except urllib3.exceptions.HTTPError as exc:
            raise ApiError(0, f"cannot reach the API server: {exc}") from None
        return bytes(data or b"")

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call an API method for raw JSON; map errors."""
        data = self._call_raw(fn, *args, **kwargs)
        if not data:
            return {}
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise ApiError(0, f"the API server sent something that is not JSON: {exc}") from None

    def _list_fn(self, resource: Resource, namespace: str | None) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        if resource == NODES:
            return self.core.list_node, ()
        if resource == PODS:
            return (self.core.list_namespaced_pod, (namespace,)) if namespace else (self.core.list_pod_for_all_namespaces, ())
        if not resource.group:
            raise ApiError(0, f"core resource {resource.plural} is not supported by KubeClient")
        if namespace and resource.namespaced:
            return self.custom.list_namespaced_custom_object, (resource.group, resource.version, namespace, resource.plural)
        return self.custom.list_cluster_custom_object, (resource.group, resource.version, resource.plural)

    # ------------------------------------------------------------------ KubeApi
    def list(
        self, resource: Resource, *, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        """All objects of a resource and the list's ``resourceVersion``, fetched page by page.

        Pages of :attr:`page_size` items (``limit``/``continue``), as client-go's pager does, so
        the API server never builds one huge response; each page's Nodes are slimmed
        (:func:`~topology.snapshots.read_list_body`: the rest of a Node is never decoded) before the next page arrives. Items get their
        ``kind`` and ``apiVersion`` (the API server leaves them out of typed lists). An expired
        ``continue`` token is ``410 Gone`` (:class:`~kube.api.GoneError`): the caller relists.
        """
        out: list[dict[str, Any]] = []
        token = ""
        with paused_gc():  # a 100,000-object first list allocates millions of objects and no cycles
            while True:
                items, version, token = self.list_page(
                    resource, namespace=namespace, label_selector=label_selector, limit=self.page_size, continue_token=token
                )
                out.extend(items)
                if not token:
                    return out, version

    def list_page(
        self,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        limit: int | None = None,
        continue_token: str = "",
    ) -> tuple[Items, str, str]:
        """One page of a list: its items, the list's ``resourceVersion`` and the ``continue`` token
        (``""`` on the last page)."""
        fn, args = self._list_fn(resource, namespace)
        kwargs: dict[str, Any] = {}
        if label_selector:
            kwargs["label_selector"] = label_selector
        if limit:
            kwargs["limit"] = limit
        if continue_token:
            kwargs["_continue"] = continue_token
        data = self._call_raw(fn, *args, **kwargs)
        try:  # Nodes slimmed as they are decoded (read_list_body): a page's image lists are never built
            items, meta = read_list_body(data, resource.kind, typed=self.typed_lists, rack_label=self.rack_label) if data else ([], {})
        except SnapshotError as exc:
            raise ApiError(0, f"the API server sent something that is not a list: {exc}") from None
        for item in items:
            if isinstance(item, dict):
                item.setdefault("kind", resource.kind)
                item.setdefault("apiVersion", resource.api_version)
        return items, str(meta.get("resourceVersion") or ""), str(meta.get("continue") or "")

    def watch(self, resource: Resource, *, resource_version: str, timeout_s: int = 300) -> Iterator[WatchEvent]:
        """Events after ``resource_version`` until the server ends the stream (``timeout_s``).

        Raises
        ------
        GoneError
            On ``410 Gone`` (as a status or as an ``ERROR`` event): the caller must relist.
        ApiError
            On any other error status or ``ERROR`` event, or when the connection fails.
        """
        fn, args = self._list_fn(resource, None)
        # Booleans go on the wire as "true", as kubectl and client-go send them (the client
        # would print Python's "True", which the API server accepts but not every emulator).
        kwargs: dict[str, Any] = {
            "watch": "true",
            "timeout_seconds": timeout_s,
            "allow_watch_bookmarks": "true",
            "_request_timeout": (CONNECT_TIMEOUT_S, timeout_s + WATCH_GRACE_S),
        }
        if resource_version:
            kwargs["resource_version"] = resource_version
        try:
            response = fn(*args, _preload_content=False, **kwargs)
        except ApiException as exc:
            raise _error(exc) from None
        except urllib3.exceptions.HTTPError as exc:
            raise ApiError(0, f"cannot reach the API server: {exc}") from None
        me = threading.get_ident()
        with self._streams_lock:
            self._streams[me] = response
        try:
            yield from self._events(response, resource)
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise ApiError(0, f"watch of {resource.plural} broke off: {exc}") from None
        finally:
            with self._streams_lock:
                if self._streams.get(me) is response:
                    del self._streams[me]
            response.release_conn()

    def _events(self, response: Any, resource: Resource) -> Iterator[WatchEvent]:
        pending = b""
        for chunk in response.stream(amt=None, decode_content=False):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                event = _event(line, resource)
                if event is not None:
                    yield event
        event = _event(pending, resource)
        if event is not None:
            yield event

    def get(self, resource: Resource, name: str, *, namespace: str | None = None) -> dict[str, Any] | None:
        """One object, or ``None`` when it does not exist."""
        try:
            if resource == NODES:
                obj = self._call(self.core.read_node, name)
            elif resource == PODS:
                obj = self._call(self.core.read_namespaced_pod, name, namespace or "default")
            elif resource.namespaced:
                ns = namespace or "default"
                obj = self._call(self.custom.get_namespaced_custom_object, resource.group, resource.version, ns, resource.plural, name)
            else:
                obj = self._call(self.custom.get_cluster_custom_object, resource.group, resource.version, resource.plural, name)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        result: dict[str, Any] = obj
        return result

    def _patch(self, resource: Resource, name: str, patch: Mapping[str, Any], namespace: str | None, *, status: bool) -> dict[str, Any]:
        body = dict(patch)
        ns = namespace or "default"
        kwargs = {"_content_type": MERGE_PATCH}
        if resource == NODES:
            fn = self.core.patch_node_status if status else self.core.patch_node
            obj = self._call(fn, name, body, **kwargs)
        elif resource == PODS:
            fn = self.core.patch_namespaced_pod_status if status else self.core.patch_namespaced_pod
            obj = self._call(fn, name, ns, body, **kwargs)
        elif resource.namespaced:
            fn = self.custom.patch_namespaced_custom_object_status if status else self.custom.patch_namespaced_custom_object
            obj = self._call(fn, resource.group, resource.version, ns, resource.plural, name, body, **kwargs)
        else:
            fn = self.custom.patch_cluster_custom_object_status if status else self.custom.patch_cluster_custom_object
            obj = self._call(fn, resource.group, resource.version, resource.plural, name, body, **kwargs)
        result: dict[str, Any] = obj
        return result

    def patch(self, resource: Resource, name: str, patch: Mapping[str, Any], *, namespace: str | None = None) -> dict[str, Any]:
        """A JSON merge patch (``application/merge-patch+json``) of an object."""
        return self._patch(resource, name, patch, namespace, status=False)

    def patch_status(self, resource: Resource, name: str, patch: Mapping[str, Any], *, namespace: str | None = None) -> dict[str, Any]:
        """A JSON merge patch of an object's ``status`` subresource."""
        return self._patch(resource, name, patch, namespace, status=True)

    def create(self, resource: Resource, obj: Mapping[str, Any], *, namespace: str | None = None) -> dict[str, Any]:
        """``POST`` a new object; :class:`~kube.api.ConflictError` if it already exists."""
        body = {"apiVersion": resource.api_version, "kind": resource.kind, **dict(obj)}
        ns = namespace or str((body.get("metadata") or {}).get("namespace") or "default")
        if resource == NODES:
            created = self._call(self.core.create_node, body)
        elif resource == PODS:
            created = self._call(self.core.create_namespaced_pod, ns, body)
        elif not resource.group:
            raise ApiError(0, f"core resource {resource.plural} is not supported by KubeClient")
        elif resource.namespaced:
            created = self._call(self.custom.create_namespaced_custom_object, resource.group, resource.version, ns, resource.plural, body)
        else:
            created = self._call(self.custom.create_cluster_custom_object, resource.group, resource.version, resource.plural, body)
        result: dict[str, Any] = created
        return result

    def replace(self, resource: Resource, name: str, obj: Mapping[str, Any], *, namespace: str | None = None) -> dict[str, Any]:
        """``PUT`` an object whole; a ``metadata.resourceVersion`` in ``obj`` is a precondition
        (:class:`~kube.api.ConflictError` when stale)."""
        body = {"apiVersion": resource.api_version, "kind": resource.kind, **dict(obj)}
        ns = namespace or "default"
        if resource == NODES:
            replaced = self._call(self.core.replace_node, name, body)
        elif resource == PODS:
            replaced = self._call(self.core.replace_namespaced_pod, name, ns, body)
        elif not resource.group:
            raise ApiError(0, f"core resource {resource.plural} is not supported by KubeClient")
        elif resource.namespaced:
            fn = self.custom.replace_namespaced_custom_object
            replaced = self._call(fn, resource.group, resource.version, ns, resource.plural, name, body)
        else:
            replaced = self._call(self.custom.replace_cluster_custom_object, resource.group, resource.version, resource.plural, name, body)
        result: dict[str, Any] = replaced
        return result

    def delete(self, resource: Resource, name: str, *, namespace: str | None = None) -> None:
        """``DELETE`` an object (background propagation); a gone object (404) is fine."""
        ns = namespace or "default"
        try:
            if resource == NODES:
                self._call(self.core.delete_node, name)
            elif resource == PODS:
                self._call(self.core.delete_namespaced_pod, name, ns)
            elif not resource.group:
                raise ApiError(0, f"core resource {resource.plural} is not supported by KubeClient")
            elif resource.namespaced:
                self._call(self.custom.delete_namespaced_custom_object, resource.group, resource.version, ns, resource.plural, name)
            else:
                self._call(self.custom.delete_cluster_custom_object, resource.group, resource.version, resource.plural, name)
        except ApiError as exc:
            if exc.status != 404:
                raise

    def create_binding(self, namespace: str, pod: str, uid: str, node: str) -> None:
        """``POST pods/{pod}/binding`` with the pod's UID as precondition, like kube-scheduler's binder."""
        metadata: dict[str, Any] = {"name": pod, "namespace": namespace}
        if uid:
            metadata["uid"] = uid
        body = {"apiVersion": "v1", "kind": "Binding", "metadata": metadata, "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        self._call(self.core.create_namespaced_pod_binding, pod, namespace, body)

    def evict(self, namespace: str, pod: str) -> bool:
        """Evict through the Eviction API (``policy/v1``).

        Returns ``False`` when a PodDisruptionBudget refuses (``429``), ``True`` when evicted or
        already gone (``404``).
        """
        body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": namespace}}
        try:
            self._call(self.core.create_namespaced_pod_eviction, pod, namespace, body)
        except ApiError as exc:
            if exc.status == 429:
                return False
            if exc.status == 404:
                return True
            raise
        return True

    def create_event(
        self, involved: Mapping[str, Any], *, reason: str, message: str, type: Literal["Normal", "Warning"] = "Normal"
    ) -> None:
        """Create a core/v1 Event about ``involved`` (an object reference or the object itself)."""
        meta = involved.get("metadata")
        ref = dict(meta) if isinstance(meta, Mapping) else dict(involved)
        namespace = str(ref.get("namespace") or "default")
        name = str(ref.get("name") or "")
        now = format_time(time.time())
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{name}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion", "v1"),
                "kind": involved.get("kind", "Pod"),
                "name": name,
                "namespace": namespace,
                "uid": ref.get("uid") or "",
            },
            "reason": reason,
            "message": message[:1024],
            "type": type,
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "source": {"component": EVENT_SOURCE},
            "reportingComponent": EVENT_SOURCE,
        }
        self._call(self.core.create_namespaced_event, namespace, body)


def _event(line: bytes, resource: Resource) -> WatchEvent | None:
    line = line.strip()
    if not line:
        return None
    try:
        raw = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ApiError(0, f"watch of {resource.plural} sent a line that is not JSON: {exc}") from None
    kind = raw.get("type") if isinstance(raw, dict) else None
    obj = raw.get("object") if isinstance(raw, dict) else None
    if kind == "ERROR":
        status = obj if isinstance(obj, dict) else {}
        code = int(status.get("code") or 0)
        message = str(status.get("message") or status.get("reason") or "watch error")
        if code == 410:
            raise GoneError(message)
        raise ApiError(code, message)
    if kind not in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK") or not isinstance(obj, dict):
        raise ApiError(0, f"watch of {resource.plural} sent an unexpected event: {line[:200]!r}")
    obj.setdefault("kind", resource.kind)
    obj.setdefault("apiVersion", resource.api_version)
    return WatchEvent(kind, obj)


def _shutdown(response: Any) -> None:
    with contextlib.suppress(OSError, AttributeError):  # already closed
        response.shutdown()
