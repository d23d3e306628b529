"""Blue/green rolls of groups the cloud would replace itself: EKS managed node groups that hold data.

Any version update of an EKS managed node group (``update_nodegroup_version``) makes EKS replace
every node itself, in its own order, honouring PodDisruptionBudgets only, never waiting for
``kbl.io/data-drained``; changing its Auto Scaling group's template ourselves is drift EKS undoes.
So a group whose nodes hold pieces the placement needs is rolled blue/green: a new ("green")
group like the old ("blue") one on the new image, grown as the blue one is emptied one node at a
time through the one safe path, then the blue group is deleted.

The roll is the blue group's lock (:class:`~controller.locking.GroupLocks`, ``by: roll``,
``mode: blue-green``) and every step is written there before it is taken, so a controller killed
at any point continues where it stopped (:func:`step_blue_green`, from
:class:`~controller.rolling.Roller` each pass):

1. **create** the green group (:meth:`~controller.providers.CreatesGreenGroups.create_green_group`:
   the blue group's subnets, labels, taints, instance types, capacity type, maximum size and tags,
   a new launch-template version with the image, no node, a deterministic token; its name is
   :func:`green_name`);
2. **next**: the blue node to empty next, by name (one already out, cordoned or draining for
   another reason, is taken over first: never a second one out);
3. **surge**: the green group grows to one more node than the blue nodes emptied so far (at most
   its maximum; not at all when the planner grew it already) and the step waits until that many
   of its nodes are Ready and schedulable (the data has somewhere to go: the KBL never has fewer
   Ready nodes than before the roll, and at most one more);
4. **drain**: the blue node is cordoned, marked ``kbl.io/do-not-disrupt`` and
   ``kbl.io/drain=image-roll``; wait for ``kbl.io/data-drained`` (at or after the drain began, no
   last pieces) and for its pods to leave through the Eviction API;
5. **terminate**: ``remove_instance`` on the blue group (protection lifted on that one instance,
   terminated with a decrement); **gone**: wait until the Node object has left, then **next**;
6. **empty** (no blue node left): the blue group's desired size to zero (only requested instances
   that never joined), then ``delete_group``; **delete**: wait until the cloud no longer reports
   it, then the KBL's ``status.nodeGroups`` loses the blue entry and the green one inherits its
   last image, in one write.

While the record exists the controller hides the blue group from the planner once the green one
exists (:func:`hidden_blue_groups`): the KBL's group in that zone is then the green one (the
planner finds a KBL's groups by their ``kbl.io/kbl`` and zone tags), so growth, scale-down,
protection and status go to it and no moment exists where the KBL has no group and a third
would be created. The green group is held like a rolled group (no lower desired size, no new
scale-down cordon) until the roll ends.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from controller.baking import data_still_on, evict_pods, node_instance, node_ready
from controller.locking import ROLL, GroupLocks, entry_of, update_node_groups
from controller.providers import CreatesGreenGroups, NodeGroupProvider, ProviderError
from kube.api import NODES, KubeApi
from topology import labels

#: ``mode`` of a blue/green roll's record.
BLUE_GREEN = "blue-green"
#: The ``kbl.io/drain`` reason of a roll (as :data:`controller.rolling.DRAIN_REASON`).
DRAIN_REASON = "image-roll"
#: EKS's limit on a node group's name.
MAX_NAME = 63
#: What the green group inherits from the blue group's status entry.
INHERITED = ("lastImage", "lastImageTime", "lastImageVersions")

#: Errors of the green group's creation that no retry can mend: the roll is given up.
GIVE_UP = frozenset({"NoCustomImage", "NoLaunchTemplate"})

_GENERATION = re.compile(r"^(.+)-g(\d+)$")


def green_name(blue: str) -> str:
    """The next generation's group name: ``<name>-g2`` after ``<name>``, ``<name>-g3`` after
    ``<name>-g2`` (at most 63 characters: a longer base is cut and keeps 8 hex digits of its
    SHA-256, so two groups never share a successor)."""
    found = _GENERATION.match(blue)
    base, generation = (found.group(1), int(found.group(2)) + 1) if found else (blue, 2)
    suffix = f"-g{generation}"
    if len(base) + len(suffix) > MAX_NAME:
        digest = hashlib.sha256(base.encode()).hexdigest()[:8]
        base = f"{base[: MAX_NAME - len(suffix) - 9].rstrip('-')}-{digest}"
    return base + suffix


def blue_green_record(group: str, image: str, now_s: float, **extra: Any) -> dict[str, Any]:
    """The lock record that starts a blue/green roll of ``group`` to ``image`` (step ``create``)."""
    token = hashlib.sha256(f"{group}/{image}/{BLUE_GREEN}".encode()).hexdigest()[:64]
    return {"by": ROLL, "mode": BLUE_GREEN, "green": green_name(group), "image": image, "token": token,
            "step": "create", "began": round(now_s), **extra}  # fmt: skip


def start_blue_green(
    kube: KubeApi, kbl_key: str, group: str, image: str, *, now_s: float, guard: Callable[[str], None] = lambda _s: None
) -> dict[str, Any] | None:
    """Ask for a blue/green roll of ``group`` to ``image``: the lock record is written when the
    group is free (the controller then rolls it); the other holder's record when it is not."""
    return GroupLocks(kube, guard).take(kbl_key, group, ROLL, blue_green_record(group, image, now_s))


def _records(kbls: Iterable[Any]) -> Iterable[tuple[str, Mapping[str, Any]]]:
    for kbl in kbls:
        status = kbl.get("status") if isinstance(kbl, Mapping) else getattr(kbl, "status", None)
        for entry in (status or {}).get("nodeGroups") or ():
            record = entry.get("disruption") if isinstance(entry, Mapping) else None
            if isinstance(record, Mapping) and record.get("mode") == BLUE_GREEN and record.get("green"):
                yield str(entry.get("name")), record


def blue_green_pairs(kbls: Iterable[Any]) -> dict[str, str]:
    """Blue group -> green group of every blue/green roll the KBLs (typed or raw) record."""
    return {blue: str(record["green"]) for blue, record in _records(kbls)}


def hidden_blue_groups(kbls: Iterable[Any], listed: Iterable[str]) -> set[str]:
    """The blue groups the planner must not see: those whose green group the cloud lists."""
    names = set(listed)
    return {blue for blue, green in blue_green_pairs(kbls).items() if green in names}


def _out(node: Mapping[str, Any]) -> bool:
    return bool((node.get("spec") or {}).get("unschedulable")) or labels.DRAIN in ((node.get("metadata") or {}).get("annotations") or {})


def _members(kube: KubeApi, group: str) -> list[dict[str, Any]]:
    return list(kube.list(NODES, label_selector=f"{labels.NODE_GROUP_LABEL}={group}")[0])


def step_blue_green(
    kube: KubeApi,
    provider: NodeGroupProvider,
    kbl_key: str,
    blue: str,
    held: Mapping[str, Any],
    *,
    clock: Callable[[], float],
    guard: Callable[[str], None] = lambda _s: None,
) -> str:
    """One step of the blue/green roll recorded in ``held`` (module docstring); what it did.

    Raises
    ------
    ProviderError
        From the cloud (the record stays: the next pass retries the same step), or
        ``Unsupported`` when the provider cannot create a green group.
    """
    if not isinstance(provider, CreatesGreenGroups):
        raise ProviderError("Unsupported", f"{blue}: this provider cannot create the green group of a blue/green roll")
    locks = GroupLocks(kube, guard)
    record = dict(held)
    green = str(record["green"])

    def save(**changes: Any) -> None:
        record.update(changes)
        locks.write(kbl_key, blue, record)

    step = str(record.get("step") or "create")
    if step == "create":
        guard("blue-green-create")
        try:
            provider.create_green_group(blue, green, str(record["image"]), str(record["token"]))
        except ProviderError as exc:
            if exc.code in GIVE_UP:  # nothing was changed yet: the group is free again
                locks.release(kbl_key, blue, ROLL)
            raise
        save(step="next")
        return f"created {green}"
    now = clock()
    members = _members(kube, blue)
    by_instance = {node_instance(n): n for n in members if node_instance(n)}
    fresh = [n for n in _members(kube, green) if node_ready(n) and not _out(n)]
    if step == "next":
        if not members:
            save(step="empty")
            step = "empty"
        else:
            out = [n for n in members if _out(n)]
            first = min(out or members, key=lambda n: str(n["metadata"]["name"]))
            info = provider.describe_group(green)
            if info is None:  # deleted under us: created again (same token)
                save(step="create")
                return f"{green} is gone: creating it again"
            # One more Ready green node than blue nodes emptied so far (at most the group's maximum):
            # make before break, and no more (the planner may have grown it already).
            wanted = min(int(record.get("done") or 0) + 1, info.max_size)
            save(step="surge", node=str(first["metadata"]["name"]), instance=node_instance(first), takenOver=bool(out),
                 since=0 if out else round(now), readyWanted=wanted)  # fmt: skip
            step = "surge"
    name, instance = str(record.get("node") or ""), str(record.get("instance") or "")
    if step == "surge":
        wanted = int(record.get("readyWanted") or 0)
        info = provider.describe_group(green)
        if info is not None and info.status in ("CREATING", "REQUESTED"):  # EKS refuses a size while it creates
            return f"{name}: waiting for {green} to be created"
        if info is not None and info.desired < wanted:  # also when killed before set_size
            guard("blue-green-surge")
            provider.set_size(green, wanted)
            return f"{name}: {green} grows to {wanted}"
        if len(fresh) < wanted:
            return f"{name}: waiting for {wanted} Ready nodes of {green}"
        save(step="drain", since=0 if record.get("takenOver") else round(now))  # only an answer to this drain counts
        step = "drain"
    if step == "drain":
        node: Mapping[str, Any] | None = by_instance.get(instance)
        if node is None:  # gone under us (an interruption): nothing left to drain
            save(step="gone")
            return f"{name}: gone before its drain"
        annotations = (node.get("metadata") or {}).get("annotations") or {}
        if labels.DRAIN not in annotations or not (node.get("spec") or {}).get("unschedulable"):
            guard("blue-green-drain")
            marks = {labels.DO_NOT_DISRUPT: "true", labels.DRAIN: annotations.get(labels.DRAIN, DRAIN_REASON)}
            node = kube.patch(NODES, name, {"spec": {"unschedulable": True}, "metadata": {"annotations": marks}})
        waiting = data_still_on(kube, node, float(record.get("since") or 0)) or evict_pods(kube, name)
        if waiting:
            return f"{name}: waiting: {waiting}"
        save(step="terminate")
        step = "terminate"
    if step == "terminate":
        guard("blue-green-terminate")
        node = by_instance.get(instance)
        pid = str(((node or {}).get("spec") or {}).get("providerID") or f"aws:///{instance}")
        provider.remove_instance(blue, pid)  # lifts its protection, decrements (idempotent)
        save(step="gone")
        return f"{name}: terminated"
    if step == "gone":
        if instance in by_instance:
            return f"{name}: waiting for its Node to leave"
        save(step="next", done=int(record.get("done") or 0) + 1)
        return f"{name}: gone"
    if step == "empty":
        if members:  # a requested blue instance joined after all: it leaves the same way
            save(step="next")
            return "a blue node joined late"
        info = provider.describe_group(blue)
        if info is None:
            return _finish(kube, locks, kbl_key, blue, green)
        if info.desired > 0:  # requested instances that never joined (joined ones are protected)
            guard("blue-green-empty")
            provider.set_size(blue, 0)
            return f"{blue}: requested nodes cancelled"
        guard("blue-green-delete")
        provider.delete_group(blue)
        save(step="delete")
        return f"{blue}: deleting"
    # delete: wait until the cloud no longer reports it (EKS: DELETING for some minutes)
    info = provider.describe_group(blue)
    if info is not None:
        if info.status not in ("DELETING",):
            guard("blue-green-delete")
            provider.delete_group(blue)
        return f"{blue}: waiting for its deletion"
    return _finish(kube, locks, kbl_key, blue, green)


def _finish(kube: KubeApi, locks: GroupLocks, kbl_key: str, blue: str, green: str) -> str:
    """The blue entry leaves ``status.nodeGroups`` (its lock with it) and the green one inherits
    its last image, in one write (:func:`~controller.locking.update_node_groups`)."""

    def change(entries: list[dict[str, Any]]) -> bool:
        old = next((e for e in entries if e.get("name") == blue), {})
        inherited = {k: old[k] for k in INHERITED if k in old}
        entries[:] = [e for e in entries if e.get("name") != blue]
        entry_of(entries, green).update(inherited)
        return True

    if not update_node_groups(kube, kbl_key, change, lambda: locks.guard("blue-green-done")):
        return f"{blue}: deleted (its KBL is gone)"
    return f"{blue}: deleted, rolled to {green}"
