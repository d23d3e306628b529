"""Offline planning: a snapshot file behind the KubeApi and the cloud as the KBLs' status records it.

``kbl controller --once --dry-run --snapshot FILE`` runs the real controller on a snapshot with
no cluster and no cloud account: :class:`SnapshotApi` serves the snapshot's objects read-only,
and :class:`RecordedGroups` reports the node groups recorded in each KBL's
``status.nodeGroups`` (name, zone, instance type, desired size). Both refuse every write, so a
dry run that tried to change something would fail loudly instead of pretending.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal

from placement.kubeapi import ApiError, Resource, WatchEvent
from placement.providers import NodeGroupInfo, NodeGroupSpec, ProviderError, RollStrategy
from topology.snapshots import KINDS, read_file_objects


class SnapshotApi:
    """A read-only :class:`~placement.kubeapi.KubeApi` over a snapshot's objects."""

    def __init__(self, objects: list[dict[str, Any]]) -> None:
        self.objects = [o for o in objects if isinstance(o, dict) and o.get("kind") in KINDS]

    @classmethod
    def from_file(cls, path: str) -> SnapshotApi:
        """Serve a snapshot file; :class:`~topology.errors.SnapshotError` if it is unusable."""
        return cls(read_file_objects(path))

    def list(
        self, resource: Resource, *, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        wanted = dict(p.split("=", 1) for p in label_selector.split(",")) if label_selector else {}
        out = []
        for obj in self.objects:
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
        return next((o for o in found if (o.get("metadata") or {}).get("name") == name), None)

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


class RecordedGroups:
    """A read-only provider: the node groups the snapshot's KBLs record in ``status.nodeGroups``."""

    def __init__(self, api: SnapshotApi) -> None:
        self.groups: dict[str, NodeGroupInfo] = {}
        for obj in api.objects:
            if obj.get("kind") != "KBL":
                continue
            meta = obj.get("metadata") or {}
            key = f"{meta.get('namespace', 'default')}/{meta.get('name')}"
            for entry in (obj.get("status") or {}).get("nodeGroups") or []:
                if not isinstance(entry, Mapping) or entry.get("phase") == "Gone" or not entry.get("name"):
                    continue
                status = "ACTIVE" if entry.get("phase") in ("Active", None) else str(entry.get("phase")).upper()
                self.groups[str(entry["name"])] = NodeGroupInfo(
                    str(entry["name"]), key, str(entry.get("zone", "")), str(entry.get("instanceType", "")),
                    int(entry.get("desired", 0)), 0, int(entry.get("maxSize", 0)), status,
                )

    def list_groups(self) -> list[NodeGroupInfo]:
        return sorted(self.groups.values(), key=lambda g: g.name)

    def describe_group(self, name: str) -> NodeGroupInfo | None:
        return self.groups.get(name)

    def _refuse(self) -> ProviderError:
        return ProviderError("ReadOnly", "offline planning cannot change the cloud")

    def create_group(self, spec: NodeGroupSpec, token: str) -> NodeGroupInfo:
        raise self._refuse()

    def set_size(self, name: str, desired: int) -> None:
        raise self._refuse()

    def remove_instance(self, name: str, provider_id: str) -> None:
        raise self._refuse()

    def delete_group(self, name: str) -> None:
        raise self._refuse()

    def create_image(self, provider_id: str, image_name: str, tags: Mapping[str, str]) -> str:
        raise self._refuse()

    def roll_group(self, name: str, image_id: str, strategy: RollStrategy, token: str) -> str:
        raise self._refuse()
