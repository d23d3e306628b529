"""One lock per node group: node patching, prototype images and rolls never take nodes of one group down at once.

Node patching (:mod:`controller.patching`), prototype images (:mod:`controller.baking`) and rolls
to a new image (:mod:`controller.rolling`) each take one of a group's nodes down (cordoned and
drained, rebooted, imaged or replaced). :class:`GroupLocks` keeps, in the group's entry of its
KBL's ``status.nodeGroups`` (``disruption``), which of them holds the group (``by``: ``patch``,
``bake`` or ``roll``), the node and the step. Each takes the lock before it cordons a node and
releases it when the node is back (or replaced); the others wait. The record is in the cluster,
so it outlives a controller restart. The three run one after the other in the one leader's loop
(every write guarded by its Lease), so reading the record and then writing it cannot race.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kube.api import KBLS, NODES, KubeApi
from topology import labels

#: The lock holders.
ROLL, PATCH, BAKE = "roll", "patch", "bake"


@dataclass
class GroupLocks:
    """One lock per group in ``status.nodeGroups[].disruption`` of the group's KBL (module docstring)."""

    kube: KubeApi
    guard: Callable[[str], None] = lambda _step: None

    def _entry(self, kbl_key: str, group: str) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        namespace, _, name = kbl_key.partition("/")
        kbl = self.kube.get(KBLS, name, namespace=namespace)
        if kbl is None:
            return None
        entries = [dict(e) for e in ((kbl.get("status") or {}).get("nodeGroups") or []) if isinstance(e, Mapping)]
        for entry in entries:
            if entry.get("name") == group:
                return entry, entries
        entry = {"name": group}
        entries.append(entry)
        return entry, entries

    def holder(self, kbl_key: str, group: str) -> dict[str, Any] | None:
        """The lock's record (``by``, ``node``, ``step``, ...), or ``None`` when the group is free."""
        found = self._entry(kbl_key, group)
        record = found[0].get("disruption") if found else None
        return dict(record) if isinstance(record, Mapping) and record.get("by") else None

    def write(self, kbl_key: str, group: str, record: Mapping[str, Any] | None) -> None:
        """Set (or with ``None`` clear) the group's record; the caller holds the lock or takes a free one."""
        found = self._entry(kbl_key, group)
        if found is None:
            return
        entry, entries = found
        entry["disruption"] = dict(record) if record is not None else None
        if record is None:
            entry.pop("disruption")
        self.guard("group-lock")
        namespace, _, name = kbl_key.partition("/")
        self.kube.patch_status(KBLS, name, {"status": {"nodeGroups": entries}}, namespace=namespace)

    def take(self, kbl_key: str, group: str, by: str, record: Mapping[str, Any]) -> dict[str, Any] | None:
        """Take the group for ``by`` (or update its own record); the other holder's record when it
        is held by someone else (nothing is written), else ``None``. A reboot's or a bake's lock
        whose node no longer carries its mark (``kbl.io/rebooting``, ``kbl.io/prototype``: it
        finished, or was killed before it marked the node or after it unmarked it) is stale and
        taken over; a roll's never is (its record is its progress)."""
        held = self.holder(kbl_key, group)
        if held is not None and held.get("by") != by and not self._stale(group, held):
            return held
        self.write(kbl_key, group, {**record, "by": by})
        return None

    def _stale(self, group: str, held: Mapping[str, Any]) -> bool:
        mark = {PATCH: labels.REBOOTING, BAKE: labels.PROTOTYPE}.get(str(held.get("by")))
        if mark is None:
            return False
        members, _ = self.kube.list(NODES, label_selector=f"{labels.NODE_GROUP_LABEL}={group}")
        return not any(mark in ((n.get("metadata") or {}).get("annotations") or {}) for n in members)

    def release(self, kbl_key: str, group: str, by: str) -> None:
        held = self.holder(kbl_key, group)
        if held is not None and held.get("by") == by:
            self.write(kbl_key, group, None)
