"""Rolling a group to a new image through the one safe path, one node at a time.

A roll starts when the group's launch template points at a new version (``roll_group``: a bake,
``kbl bake``, an operator) and some of its instances still run an older one
(:meth:`~controller.providers.RollsInstances.outdated_instances`: for an Auto Scaling group, each
instance's ``LaunchTemplate.Version`` against the group's). :class:`Roller` then replaces the
joined ones one at a time, each step written before it is taken (the group's lock, below), so a
controller killed at any point continues where it stopped:

1. **surge** (when the group is below its maximum): the desired size grows by one; the new
   instance starts from the new version; wait until one more up-to-date node is Ready than when
   the step began (the data then has somewhere to go);
2. **drain**: the outdated node is cordoned, marked ``kbl.io/do-not-disrupt`` and
   ``kbl.io/drain=image-roll``; wait for the placement reconciler's ``kbl.io/data-drained`` (at or
   after the drain began, no last pieces) and for its pods to leave through the Eviction API
   (:func:`~controller.baking.data_still_on`, :func:`~controller.baking.evict_pods`);
3. **terminate**: ``remove_instance`` (scale-in protection lifted on that one instance, then
   ``TerminateInstanceInAutoScalingGroup`` with a decrement);
4. **replace** (without a surge, at the group's maximum): the desired size goes back up by one;
   wait for the up-to-date node to be Ready; then the lock is released and the next node goes.

One node of a group is out at a time (cordoned, or terminated and not yet replaced), which every
DataSet tolerates (a redundancy of one replica or one parity piece); and before it leaves, its
data has been copied elsewhere (make before break), so even a DataSet without redundancy keeps
every piece.

**One lock per group** (:class:`~controller.locking.GroupLocks`): a roll takes it before its first
step on a node and releases it once the node is replaced; its record (``by: roll``, the node, its
instance, the step, the size to come back to) is the roll's persisted progress.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.baking import data_still_on, evict_pods, node_instance, node_ready
from controller.bluegreen import BLUE_GREEN, blue_green_pairs, step_blue_green
from controller.locking import ROLL, GroupLocks
from controller.providers import NodeGroupProvider, ProviderError, RollsInstances
from kube.api import NODES, KubeApi
from placement import capacity as cap
from topology import labels

#: The ``kbl.io/drain`` reason of a roll.
DRAIN_REASON = "image-roll"


def held_groups(kbls: Iterable[Any], by: str | None = None) -> set[str]:
    """Groups whose lock is held (by ``by``, or by anyone), from the KBLs' typed
    ``status.nodeGroups[].disruption``, as the pass read them."""
    out = set()
    for kbl in kbls:
        for entry in (getattr(kbl, "status", None) or {}).get("nodeGroups") or ():
            record = entry.get("disruption") if isinstance(entry, Mapping) else None
            if isinstance(record, Mapping) and record.get("by") and (by is None or record.get("by") == by):
                out.add(str(entry.get("name")))
    return out


def rolling_groups(kbls: Iterable[Any]) -> set[str]:
    """Groups a roll holds back the planner in: every group a roll holds, and the green group of
    each blue/green roll (it grows as the blue one empties)."""
    kbls = list(kbls)
    return held_groups(kbls, ROLL) | set(blue_green_pairs(kbls).values())


def hold_for_rolls(plan: cap.Plan, rolling: set[str]) -> cap.Plan:
    """The plan without what would fight a roll in its groups: no lower desired size (the planner
    would cancel the surge node before it joins) and no new scale-down cordon (one node of a group
    out at a time). Removals already under way go on."""
    if not rolling:
        return plan
    kept = tuple(
        a for a in plan.actions
        if not (isinstance(a, cap.ResizeNodeGroup) and a.group in rolling and a.desired < a.previous)
        and not (isinstance(a, cap.CordonNode) and a.group in rolling)
    )  # fmt: skip
    return dataclasses.replace(plan, actions=kept)


@dataclass
class Roller:
    """Replaces a group's outdated nodes one at a time through the safe path (module docstring)."""

    kube: KubeApi
    provider: NodeGroupProvider
    clock: Callable[[], float]
    guard: Callable[[str], None] = lambda _step: None
    failures: list[tuple[str, str]] = field(default_factory=list)
    #: Groups found with no outdated instance, and the launch-template version they were at.
    settled: dict[str, str] = field(default_factory=dict)

    @property
    def locks(self) -> GroupLocks:
        return GroupLocks(self.kube, self.guard)

    def run_once(
        self, groups: Sequence[tuple[str, str]], versions: Mapping[str, str] | None = None, free: Iterable[str] = ()
    ) -> dict[str, str]:
        """One step for each ``(kbl key, group)``; what each group did, for the log. A group whose
        lock records a blue/green roll takes its step (:func:`~controller.bluegreen.step_blue_green`,
        any provider that creates green groups); the others roll in place when the provider says
        which instances are outdated (:class:`~controller.providers.RollsInstances`).

        ``versions`` (each group's launch-template version, from the pass's ``list_groups``)
        spares the cloud reads of a group found fully rolled at that same version before (a
        version that is not ``$Latest``/``$Default`` names one image for good); ``free`` names
        the groups whose KBL (as the pass read it) records no lock: such a settled group costs no
        API call at all."""
        free = set(free)
        done: dict[str, str] = {}
        for kbl_key, group in groups:
            version = (versions or {}).get(group, "")
            try:
                if group not in free:  # a blue/green roll (EKS managed groups) is the group's lock record
                    held = self.locks.holder(kbl_key, group)
                    if held is not None and held.get("mode") == BLUE_GREEN:
                        done[group] = step_blue_green(self.kube, self.provider, kbl_key, group, held, clock=self.clock, guard=self.guard)
                        continue
                if not isinstance(self.provider, RollsInstances):
                    continue
                step = self._step(self.provider, kbl_key, group, version, group in free)
            except ProviderError as exc:  # the record stays: the next pass retries the same step
                self.failures.append((group, str(exc)))
                del self.failures[:-20]
                continue
            if step:
                done[group] = step
        return done

    def _step(self, provider: RollsInstances, kbl_key: str, group: str, version: str = "", free: bool = False) -> str:
        locks = self.locks
        if free and version and not version.startswith("$") and self.settled.get(group) == version:
            return ""  # free in this pass's KBLs and rolled at this version: no API call at all
        held = locks.holder(kbl_key, group)
        if held is not None and held.get("by") != ROLL:
            if locks.take(kbl_key, group, ROLL, {"step": "check"}) is not None:
                return ""  # a reboot or a bake has a node of this group out: wait for it
            locks.release(kbl_key, group, ROLL)  # it was stale: released
            held = None
        if held is None and version and not version.startswith("$") and self.settled.get(group) == version:
            return ""
        outdated = set(provider.outdated_instances(group))
        if held is None and not outdated:
            if version:
                self.settled[group] = version
            return ""  # nothing to roll: the Nodes are not even listed
        self.settled.pop(group, None)
        members, _ = self.kube.list(NODES, label_selector=f"{labels.NODE_GROUP_LABEL}={group}")
        by_instance = {node_instance(n): n for n in members if node_instance(n)}
        fresh_ready = sum(
            1 for i, n in by_instance.items() if i not in outdated and node_ready(n) and not (n.get("spec") or {}).get("unschedulable")
        )
        now = self.clock()
        if held is None:
            due = sorted(  # a node already leaving (scale-down, an interruption) is left to that
                (n for i, n in by_instance.items()
                 if i in outdated and not (n.get("spec") or {}).get("unschedulable")
                 and labels.DRAIN not in ((n.get("metadata") or {}).get("annotations") or {})),
                key=lambda n: str(n["metadata"]["name"]),
            )  # fmt: skip
            if not due:
                return ""
            if any((n.get("spec") or {}).get("unschedulable") or labels.DRAIN in ((n.get("metadata") or {}).get("annotations") or {})
                   for n in members):  # fmt: skip
                return "waiting: a node of the group is already out"
            info = self.provider.describe_group(group)
            if info is None:
                return ""
            first = due[0]
            surge = info.desired < info.max_size
            record = {"node": str(first["metadata"]["name"]), "instance": node_instance(first), "since": round(now),
                      "readyWanted": fresh_ready + 1, "size": info.desired, "surge": surge,
                      "step": "surge" if surge else "drain"}  # fmt: skip
            locks.take(kbl_key, group, ROLL, record)  # written before anything is done
            held = {**record, "by": ROLL}
            if surge:
                self.guard("roll-surge")
                self.provider.set_size(group, info.desired + 1)
                return f"{record['node']}: surge to {info.desired + 1}"
        name, instance = str(held.get("node")), str(held.get("instance"))
        since = float(held.get("since") or now)
        step = str(held.get("step"))
        wanted = int(held.get("readyWanted") or 0)
        node: Mapping[str, Any] | None = by_instance.get(instance)
        if step == "surge":
            info = self.provider.describe_group(group)
            if info is not None and info.desired < int(held.get("size") or 0) + 1:  # killed before set_size
                self.guard("roll-surge")
                self.provider.set_size(group, int(held.get("size") or 0) + 1)
            if fresh_ready < wanted:
                return f"{name}: waiting for the surge node to be Ready"
            held = {**held, "step": "drain", "since": round(now)}  # only an answer to this drain counts
            locks.take(kbl_key, group, ROLL, held)
            since, step = float(held["since"]), "drain"
        if step == "drain":
            if node is None:  # gone under us (an interruption): nothing left to drain
                locks.take(kbl_key, group, ROLL, {**held, "step": "replace"})
                return f"{name}: gone before its drain"
            annotations = (node.get("metadata") or {}).get("annotations") or {}
            if annotations.get(labels.DRAIN) != DRAIN_REASON or not (node.get("spec") or {}).get("unschedulable"):
                self.guard("roll-drain")
                marks = {labels.DO_NOT_DISRUPT: "true", labels.DRAIN: DRAIN_REASON}
                node = self.kube.patch(NODES, name, {"spec": {"unschedulable": True}, "metadata": {"annotations": marks}})
            waiting = data_still_on(self.kube, node, since) or evict_pods(self.kube, name)
            if waiting:
                return f"{name}: waiting: {waiting}"
            locks.take(kbl_key, group, ROLL, {**held, "step": "terminate"})
            step = "terminate"
        if step == "terminate":
            self.guard("roll-terminate")
            pid = str(((node or {}).get("spec") or {}).get("providerID") or f"aws:///{instance}")
            self.provider.remove_instance(group, pid)  # lifts its protection, decrements (idempotent)
            locks.take(kbl_key, group, ROLL, {**held, "step": "replace"})
            step = "replace"
            if not held.get("surge"):
                self.guard("roll-replace")
                self.provider.set_size(group, int(held.get("size") or 0))
                return f"{name}: terminated, replacing"
            return f"{name}: terminated"
        # replace: the terminated node's replacement must be Ready before the next node goes
        if not held.get("surge"):
            info = self.provider.describe_group(group)
            if info is not None and info.desired < int(held.get("size") or 0):  # killed before set_size
                self.guard("roll-replace")
                self.provider.set_size(group, int(held.get("size") or 0))
        if fresh_ready < wanted or instance in by_instance:
            return f"{name}: waiting for its replacement to be Ready"
        locks.release(kbl_key, group, ROLL)
        return f"{name}: replaced"
