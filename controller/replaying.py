"""Offline planning: the cloud as the KBLs' status records it.

``kbl controller --once --dry-run --snapshot FILE`` runs the real controller on a snapshot with no
cluster and no cloud account: :class:`~kube.replaying.SnapshotApi` serves the objects read-only and
:class:`RecordedGroups` reports the node groups recorded in each KBL's ``status.nodeGroups``
(name, zone, instance type, desired size) and the fake cloud's instance catalog. Both refuse every write.
"""

from __future__ import annotations

from collections.abc import Mapping

from controller.providers import NodeGroupInfo, NodeGroupSpec, ProviderError, RollStrategy
from controller.providers.catalog import KNOWN_INSTANCE_TYPES
from kube.replaying import SnapshotApi
from placement.capacity import InstanceShape


class RecordedGroups:
    """A read-only provider: the node groups the snapshot's KBLs record in ``status.nodeGroups``."""

    def __init__(self, api: SnapshotApi) -> None:
        self.groups: dict[str, NodeGroupInfo] = {}
        for obj in api.objects:
            if not isinstance(obj, dict) or obj.get("kind") != "KBL":
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
                    instance_types=tuple(str(t) for t in entry.get("instanceTypes") or ()),
                    capacity_type=str(entry.get("capacityType") or "ON_DEMAND"),
                )

    def list_groups(self) -> list[NodeGroupInfo]:
        return sorted(self.groups.values(), key=lambda g: g.name)

    def instance_types(self) -> list[InstanceShape]:
        """Offline there is no cloud to ask: the fake cloud's catalog of common AWS types."""
        return list(KNOWN_INSTANCE_TYPES)

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
