"""One lock per node group: node patching, prototype images and rolls never take nodes of one group down at once.

Node patching (:mod:`controller.patching`), prototype images (:mod:`controller.baking`) and rolls
to a new image (:mod:`controller.rolling`) each take one of a group's nodes down (cordoned and
drained, rebooted, imaged or replaced). :class:`GroupLocks` keeps, in the group's entry of its
KBL's ``status.nodeGroups`` (``disruption``), which of them holds the group (``by``: ``patch``,
``bake`` or ``roll``), the node and the step. Each takes the lock before it cordons a node and
releases it when the node is back (or replaced); the others wait. The record is in the cluster,
so it outlives a controller restart. Inside the controller the three run one after the other in
the one leader's loop (every write guarded by its Lease); ``kbl bake`` runs outside it, so every
write carries the KBL's ``metadata.resourceVersion`` as read (optimistic concurrency, as the API
server enforces it on the status subresource): a writer that lost the race gets ``409``, reads the
record again and decides again (:meth:`GroupLocks.take` then sees the winner's record).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kube.api import KBLS, NODES, ConflictError, KubeApi
from topology import labels

#: The lock holders.
ROLL, PATCH, BAKE = "roll", "patch", "bake"
#: How many times a write that lost a race (``409``) reads again and retries before it gives up.
ATTEMPTS = 5


def update_node_groups(
    kube: KubeApi, kbl_key: str, change: Callable[[list[dict[str, Any]]], bool], guard: Callable[[], None] = lambda: None
) -> bool:
    """Edit a KBL's ``status.nodeGroups`` safely beside other writers (``kbl bake`` outside the
    controller's loop). ``change`` edits the entries as read, in place, and says whether to write
    them; the list is written whole with the KBL's ``resourceVersion`` as read as a precondition,
    and a write that meets a change made since (``409``) reads again and calls ``change`` again
    (at most :data:`ATTEMPTS` times). ``guard`` runs just before each write. ``True`` when
    written; ``False`` without the KBL or when ``change`` declined."""
    namespace, _, name = kbl_key.partition("/")
    for attempt in range(ATTEMPTS):
        kbl = kube.get(KBLS, name, namespace=namespace)
        if kbl is None:
            return False
        entries = [dict(e) for e in ((kbl.get("status") or {}).get("nodeGroups") or []) if isinstance(e, Mapping)]
        if not change(entries):
            return False
        guard()
        body: dict[str, Any] = {"status": {"nodeGroups": entries}}
        version = (kbl.get("metadata") or {}).get("resourceVersion")
        if version:
            body["metadata"] = {"resourceVersion": version}
        try:
            kube.patch_status(KBLS, name, body, namespace=namespace)
            return True
        except ConflictError:
            if attempt == ATTEMPTS - 1:
                raise
    return False


def entry_of(entries: list[dict[str, Any]], group: str) -> dict[str, Any]:
    """The group's entry of ``entries`` (appended when missing)."""
    for entry in entries:
        if entry.get("name") == group:
            return entry
    entry = {"name": group}
    entries.append(entry)
    return entry


def _record(entry: Mapping[str, Any]) -> dict[str, Any] | None:
    record = entry.get("disruption")
    return dict(record) if isinstance(record, Mapping) and record.get("by") else None


@dataclass
class GroupLocks:
    """One lock per group in ``status.nodeGroups[].disruption`` of the group's KBL (module docstring)."""

    kube: KubeApi
    guard: Callable[[str], None] = lambda _step: None

    def holder(self, kbl_key: str, group: str) -> dict[str, Any] | None:
        """The lock's record (``by``, ``node``, ``step``, ...), or ``None`` when the group is free."""
        namespace, _, name = kbl_key.partition("/")
        kbl = self.kube.get(KBLS, name, namespace=namespace)
        entries = [e for e in (((kbl or {}).get("status") or {}).get("nodeGroups") or []) if isinstance(e, Mapping)]
        return next((_record(e) for e in entries if e.get("name") == group), None)

    def write(self, kbl_key: str, group: str, record: Mapping[str, Any] | None) -> None:
        """Set (or with ``None`` clear) the group's record; the caller holds the lock or takes a free
        one (:func:`update_node_groups`: a change made since the read is read again, never lost)."""

        def change(entries: list[dict[str, Any]]) -> bool:
            entry = entry_of(entries, group)
            if record is not None:
                entry["disruption"] = dict(record)
            else:
                entry.pop("disruption", None)
            return True

        update_node_groups(self.kube, kbl_key, change, lambda: self.guard("group-lock"))

    def take(self, kbl_key: str, group: str, by: str, record: Mapping[str, Any]) -> dict[str, Any] | None:
        """Take the group for ``by`` (or update its own record); the other holder's record when it
        is held by someone else (nothing is written), else ``None``. A reboot's or a bake's lock
        whose node no longer carries its mark (``kbl.io/rebooting``, ``kbl.io/prototype``: it
        finished, or was killed before it marked the node or after it unmarked it) is stale and
        taken over; a roll's never is (its record is its progress). Read and written through
        :func:`update_node_groups`: when another writer (``kbl bake`` beside the controller)
        changed the KBL in between, the decision is taken again on what it wrote."""
        other: list[dict[str, Any]] = []

        def change(entries: list[dict[str, Any]]) -> bool:
            other.clear()
            entry = entry_of(entries, group)
            held = _record(entry)
            if held is not None and held.get("by") != by and not self._stale(group, held):
                other.append(held)
                return False
            entry["disruption"] = {**record, "by": by}
            return True

        update_node_groups(self.kube, kbl_key, change, lambda: self.guard("group-lock"))
        return other[0] if other else None

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
