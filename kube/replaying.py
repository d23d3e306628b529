"""Offline reading: a snapshot file behind the :class:`~kube.api.KubeApi`.

:class:`SnapshotApi` serves a snapshot's objects read-only, so every component that reads
cluster state (the extender, the controller's dry run, the reconciler's offline plan) can run on
a file with no cluster. It refuses every write, so a dry run that tried to change something fails
loudly instead of pretending. A file is read streaming (:func:`~topology.snapshots.iter_file_objects`:
one item parsed at a time, Nodes with only the fields kbl reads), so the whole file never exists as
one tree of Python objects: at 100,000 nodes that tree alone is about 5 GiB.

``typed=True`` (for a reader that only types what it lists, like the controller): well-formed
Nodes are served as :class:`~topology.nodes.Node` objects, typed as they are decoded, and
DataSets with their placements as numbers (what :meth:`~topology.datasets.DataSet.from_object`
reads and nothing more), as :attr:`~kube.client.KubeClient.typed_lists` serves the extender.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal

from kube.api import ApiError, Resource, WatchEvent
from topology import labels
from topology.nodes import Node
from topology.snapshots import KINDS, iter_file_objects, paused_gc


class SnapshotApi:
    """A read-only :class:`~kube.api.KubeApi` over a snapshot's objects."""

    def __init__(self, objects: Iterable[Any]) -> None:
        #: Raw objects (dicts), and typed Nodes where the file was read ``typed``.
        self.objects: list[Any] = [o for o in objects if isinstance(o, Node) or (isinstance(o, dict) and o.get("kind") in KINDS)]

    @classmethod
    def from_file(cls, path: str, *, typed: bool = False, rack_label: str = labels.DEFAULT_RACK) -> SnapshotApi:
        """Serve a snapshot file, read streaming with slim Nodes (typed ones with ``typed``: see the
        module docstring); :class:`~topology.errors.SnapshotError` if it is unusable."""
        with paused_gc():  # millions of small objects, no cycles: no collection walking them meanwhile
            return cls(iter_file_objects(path, typed=typed, rack_label=rack_label))

    def list(self, resource: Resource, *, namespace: str | None = None, label_selector: str | None = None) -> tuple[list[Any], str]:
        wanted = dict(p.split("=", 1) for p in label_selector.split(",")) if label_selector else {}
        out = []
        for obj in self.objects:
            if isinstance(obj, Node):
                if resource.kind == "Node" and all(obj.labels.get(k) == v for k, v in wanted.items()):
                    out.append(obj)
                continue
            meta = obj.get("metadata") or {}
            if obj.get("kind") != resource.kind or (namespace and meta.get("namespace", "default") != namespace):
                continue
            if all((meta.get("labels") or {}).get(k) == v for k, v in wanted.items()):
                out.append(obj)
        return out, "1"

    def watch(self, resource: Resource, *, resource_version: str, timeout_s: int = 300) -> Iterator[WatchEvent]:
        return iter(())

    def get(self, resource: Resource, name: str, *, namespace: str | None = None) -> dict[str, Any] | None:
        found, _ = self.list(resource, namespace=namespace if resource.namespaced else None)
        return next((o for o in found if (o.name if isinstance(o, Node) else (o.get("metadata") or {}).get("name")) == name), None)

    def _refuse(self, what: str) -> ApiError:
        return ApiError(405, f"the snapshot is read-only: {what} needs a live cluster")

    def patch(self, resource: Resource, name: str, patch: Mapping[str, Any], *, namespace: str | None = None) -> dict[str, Any]:
        raise self._refuse(f"patching {resource.plural}/{name}")

    def patch_status(self, resource: Resource, name: str, patch: Mapping[str, Any], *, namespace: str | None = None) -> dict[str, Any]:
        raise self._refuse(f"patching {resource.plural}/{name}/status")

    def create(self, resource: Resource, obj: Mapping[str, Any], *, namespace: str | None = None) -> dict[str, Any]:
        raise self._refuse(f"creating a {resource.kind}")

    def replace(self, resource: Resource, name: str, obj: Mapping[str, Any], *, namespace: str | None = None) -> dict[str, Any]:
        raise self._refuse(f"replacing {resource.plural}/{name}")

    def create_binding(self, namespace: str, pod: str, uid: str, node: str) -> None:
        raise self._refuse("binding")

    def evict(self, namespace: str, pod: str) -> bool:
        raise self._refuse("eviction")

    def create_event(
        self, involved: Mapping[str, Any], *, reason: str, message: str, type: Literal["Normal", "Warning"] = "Normal"
    ) -> None:
        raise self._refuse("an event")
