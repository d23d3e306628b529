"""Prototype images (the kamino idea): image a healthy, patched node of a group and roll the group to it.

**Deciding** (pure, :func:`due_for_rebake`, called by the controller loop): a group is due for a
new image when one of its nodes runs newer software (kubelet, kernel or OS image version) than
the node the last image was taken from, or when it was never imaged, at most once per
``min_interval_s``. The node to image is picked by :func:`pick_prototype`: Ready for at least
``min_ready_s``, not cordoned, not draining (``kbl.io/drain``), up to date (the newest kubelet,
kernel and OS image among the group's Ready nodes), then the longest Ready.

**Doing** (:func:`prototype_image`, also behind ``kbl bake``), in steps that each resume where
the cluster says the last run stopped:

1. **protect and drain through the safe path**: the node is cordoned, marked
   ``kbl.io/do-not-disrupt`` (no scale-down takes it) and ``kbl.io/prototype=<epoch seconds>``
   (this bake, since then), and annotated ``kbl.io/drain=prototype-image``, the same request
   scale-down makes: the placement reconciler moves its pieces off, make before break. A node
   with a node agent (a NodeHoldings) waits until the reconciler writes ``kbl.io/data-drained``
   at or after that time with no last pieces left (``skipped`` says ``waiting ...``: run again);
2. **evict** its pods through the Eviction API (DaemonSet and mirror pods stay; a
   PodDisruptionBudget refusal waits, like scale-down);
3. **clean and image** through the provider (the cleaning script runs on the node first:
   ``manifests/bake/clean-node.sh``, which also removes ``/var/lib/kbl`` and the credentials),
   with a reboot, under a deterministic name (a retry finds the same image), tagged;
4. **roll** the group (a launch-template version; an Auto Scaling group's joined nodes are then
   replaced one at a time through the safe path by :class:`~controller.rolling.Roller`; an EKS
   managed group holding no placed data, or with ``allow_replacing_data``, is replaced by EKS
   itself; one whose nodes hold pieces the placement needs is handed to a blue/green roll
   (:mod:`controller.bluegreen`: the roll's record replaces the bake's lock in one write, the
   controller creates the green group and empties this one through the safe path)); on a
   failure the node stays cordoned and protected until a rerun succeeds;
5. **return the node**: uncordoned, drain and protection annotations removed, the group's lock
   (:class:`~controller.locking.GroupLocks`, taken before step 1) released; then the image,
   its time and the source node's versions are recorded in the KBL status.

:class:`Rebaker` runs :func:`due_for_rebake` and these steps from the controller loop.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from controller.acting import Actor
from controller.disrupting import needed_pieces, read_slices
from controller.locking import BAKE, GroupLocks
from controller.providers import CreatesGreenGroups, NodeGroupProvider, ProviderError, RollStrategy, instance_id
from kube.api import DATASETS, KBLS, NODE_HOLDINGS, NODES, PODS, KubeApi
from topology import labels
from topology.errors import KblError
from topology.times import parse_time

PROTOTYPE_ANNOTATION = labels.PROTOTYPE
#: The ``kbl.io/drain`` reason of a prototype's drain (scale-down and interruptions write others).
DRAIN_REASON = "prototype-image"
#: ``ImageResult.skipped`` of a run that must be run again once the data or the pods have left.
WAITING = "waiting"


@dataclass(frozen=True, slots=True)
class ImageResult:
    """What a prototype-image run did: ``skipped`` says why nothing was done."""

    node: str = ""
    image: str = ""
    version: str = ""
    skipped: str = ""
    #: The green group of the blue/green roll the group was handed to (EKS groups holding data).
    green: str = ""


def _version_key(text: str) -> tuple[int, ...]:
    digits = "".join(c if c.isdigit() else " " for c in text)
    return tuple(int(p) for p in digits.split()[:4])


Versions = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]


def versions(node: Mapping[str, Any]) -> Versions:
    """(kubelet, kernel, OS image) versions of a node, each as comparable numbers."""
    info = (node.get("status") or {}).get("nodeInfo") or {}
    return (
        _version_key(str(info.get("kubeletVersion", ""))),
        _version_key(str(info.get("kernelVersion", ""))),
        _version_key(str(info.get("osImage", ""))),
    )


def versions_record(node: Mapping[str, Any]) -> dict[str, str]:
    """The versions of a node as recorded in the KBL status (``lastImageVersions``)."""
    info = (node.get("status") or {}).get("nodeInfo") or {}
    return {k: str(info.get(k, "")) for k in ("kubeletVersion", "kernelVersion", "osImage")}


def _ready_since(node: Mapping[str, Any]) -> float | None:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return parse_time(cond.get("lastTransitionTime")) if cond.get("status") == "True" else None
    return None


def unfit_reason(node: Mapping[str, Any], now_s: float, min_ready_s: float) -> str | None:
    """Why a node cannot be a prototype (not Ready long enough, cordoned, draining), or ``None``."""
    name = node["metadata"]["name"]
    annotations = (node.get("metadata") or {}).get("annotations") or {}
    if (node.get("spec") or {}).get("unschedulable"):
        return f"{name} is cordoned"
    if labels.DRAIN in annotations:
        return f"{name} is draining"
    ready_since = _ready_since(node)
    if ready_since is None or now_s - ready_since < min_ready_s:
        return f"{name} is not Ready for {min_ready_s:.0f}s"
    return None


def in_progress(node: Mapping[str, Any]) -> bool:
    """A bake of this node started and did not finish: it carries ``kbl.io/prototype`` and is
    drained by the bake itself, or not drained at all (another drain, a spot warning for
    example, means the node is leaving: it is not resumed)."""
    annotations = (node.get("metadata") or {}).get("annotations") or {}
    return PROTOTYPE_ANNOTATION in annotations and annotations.get(labels.DRAIN, DRAIN_REASON) == DRAIN_REASON


def pick_prototype(nodes: Sequence[Mapping[str, Any]], now_s: float, min_ready_s: float, named: str | None = None) -> Mapping[str, Any]:
    """The node to image (see the module docstring); a ``named`` node must be Ready, not
    cordoned and not draining, however long it has been Ready.

    Raises
    ------
    KblError
        If the named node is not in the group or unfit, or no node qualifies (with the reasons).
    """
    if named is not None:
        for node in nodes:
            if node["metadata"]["name"] == named:
                if in_progress(node):  # our own bake, cordoned and draining: resume it
                    return node
                why = unfit_reason(node, now_s, 0.0)
                if why is not None:
                    raise KblError(f"node {named} cannot be a prototype: {why}")
                return node
        raise KblError(f"node {named} is not a node of the group")
    for node in nodes:  # a run that failed half-way: finish it on the same node (same image name)
        if in_progress(node):
            return node
    ready = [n for n in nodes if _ready_since(n) is not None]
    newest = max((versions(n) for n in ready), default=None)
    fit: list[tuple[tuple[Any, ...], Mapping[str, Any]]] = []
    reasons = []
    for node in nodes:
        why = unfit_reason(node, now_s, min_ready_s)
        if why is None and versions(node) != newest:
            why = f"{node['metadata']['name']} is not up to date"
        if why is not None:
            reasons.append(why)
            continue
        since = _ready_since(node)
        assert since is not None
        fit.append(((-since, node["metadata"]["name"]), node))
    if not fit:
        raise KblError("no node of the group qualifies as a prototype: " + ("; ".join(reasons) or "the group has no nodes"))
    return max(fit, key=lambda item: item[0])[1]


def due_for_rebake(
    nodes: Sequence[Mapping[str, Any]],
    last: Mapping[str, Any] | None,
    now_s: float,
    *,
    min_ready_s: float = 3600.0,
    min_interval_s: float = 86400.0,
) -> str | None:
    """The node to image now, or ``None`` when the group's last image is still current.

    Parameters
    ----------
    nodes:
        The group's Node objects.
    last:
        The group's entry of the KBL's ``status.nodeGroups`` (``lastImage``, ``lastImageTime``
        in epoch seconds, ``lastImageVersions``), or ``None``.
    now_s, min_ready_s, min_interval_s:
        Now (epoch seconds), how long a prototype must have been Ready, and the least time
        between two images of a group (seconds).

    Returns
    -------
    str or None
        A node name when the group was never imaged or a node runs a newer kubelet, kernel or OS
        image than the last image's source, and a node qualifies (:func:`pick_prototype`).
    """
    entry = last or {}
    when = entry.get("lastImageTime")
    if entry.get("lastImage") and isinstance(when, int | float) and now_s - when < min_interval_s:
        return None
    try:
        chosen = pick_prototype(nodes, now_s, min_ready_s)
    except KblError:
        return None
    recorded = entry.get("lastImageVersions")
    if entry.get("lastImage") and isinstance(recorded, Mapping):
        baseline = versions({"status": {"nodeInfo": recorded}})
        if versions(chosen) <= baseline:
            return None
    return str(chosen["metadata"]["name"])


def prototype_image(
    kube: KubeApi,
    provider: NodeGroupProvider,
    *,
    kbl_key: str,
    group: str,
    strategy: RollStrategy = "next-nodes",
    node: str | None = None,
    clock: Callable[[], float],
    min_ready_s: float = 3600.0,
    min_interval_s: float = 86400.0,
    allow_replacing_data: bool = False,
) -> ImageResult:
    """Image a prototype node of ``group`` and roll the group to it (idempotent, rate-limited).

    A provider that replaces nodes itself on a roll (``replaces_nodes_on_roll``: EKS managed
    groups) never rolls a group whose nodes hold pieces the placement needs in place, unless
    ``allow_replacing_data``: the group is handed to a blue/green roll (:mod:`controller.bluegreen`,
    ``green`` in the result), or, when the provider cannot create green groups, refused before
    anything is drained or imaged.

    Raises
    ------
    KblError
        If the KBL does not exist or no node qualifies, or the roll would let the cloud replace
        data-holding nodes and no blue/green roll is possible (above); :class:`ProviderError` from the cloud (run again: every step
        is idempotent).
    """
    from controller.bluegreen import BLUE_GREEN, blue_green_record  # it drains through this module's steps

    namespace, _, name = kbl_key.partition("/")
    kbl = kube.get(KBLS, name, namespace=namespace)
    if kbl is None:
        raise KblError(f"KBL {kbl_key} not found")
    now = clock()
    entry: dict[str, Any] = next((e for e in (kbl.get("status") or {}).get("nodeGroups") or [] if e.get("name") == group), {})
    last = entry.get("lastImageTime")
    if node is None and isinstance(last, int | float) and now - last < min_interval_s and entry.get("lastImage"):
        return ImageResult(image=str(entry["lastImage"]), skipped=f"rate limited: last image {now - last:.0f}s ago")
    members, _ = kube.list(NODES, label_selector=f"{labels.NODE_GROUP_LABEL}={group}")
    blue_green = False
    if getattr(provider, "replaces_nodes_on_roll", False) and not allow_replacing_data:
        holding = data_holders(kube, members)
        if holding and not isinstance(provider, CreatesGreenGroups):
            raise KblError(
                f"group {group}: the cloud replaces a managed group's nodes itself on a roll (EKS update_nodegroup_version: "
                f"random order, pods evicted honouring PodDisruptionBudgets only), without waiting for their data; "
                f"{len(holding)} of its nodes hold pieces the placement needs ({', '.join(sorted(holding)[:5])}), "
                "and this provider cannot roll it blue/green; accept the risk with --allow-replacing-data"
            )
        blue_green = bool(holding)
    chosen = pick_prototype(members, now, min_ready_s, node)
    node_name = chosen["metadata"]["name"]
    locks = GroupLocks(kube)
    held = locks.take(kbl_key, group, BAKE, {"node": node_name, "step": "image"})
    if held is not None and held.get("mode") == BLUE_GREEN and held.get("prototype") == node_name:
        # killed after handing the group to a blue/green roll: finish returning the node
        return _handed_over(kube, provider, kbl_key, group, chosen=chosen, image=str(held.get("image")), now=now)
    if held is not None:
        return ImageResult(node_name, skipped=f"{WAITING}: a {held.get('by')} holds group {group} ({held.get('node')} is out)")
    annotations = (chosen.get("metadata") or {}).get("annotations") or {}
    since = _float(annotations.get(PROTOTYPE_ANNOTATION))
    if since is None or labels.DRAIN not in annotations or not (chosen.get("spec") or {}).get("unschedulable"):
        since = now if since is None else since
        mark = {labels.DO_NOT_DISRUPT: "true", PROTOTYPE_ANNOTATION: f"{since:.0f}", labels.DRAIN: DRAIN_REASON}
        chosen = kube.patch(NODES, node_name, {"spec": {"unschedulable": True}, "metadata": {"annotations": mark}})
    waiting = data_still_on(kube, chosen, since) or evict_pods(kube, node_name)
    if waiting:
        return ImageResult(node_name, skipped=f"{WAITING}: {waiting}")
    day = datetime.fromtimestamp(since, UTC).strftime("%Y%m%d")  # the bake's start: a rerun finds the same image
    image_name = f"kbl-{group}-{node_name}-{day}"[:128]
    tags = {labels.KBL_LABEL: kbl_key, labels.NODE_GROUP_LABEL: group, labels.SOURCE_NODE_TAG: node_name}
    image = provider.create_image(str((chosen.get("spec") or {}).get("providerID", "")), image_name, tags)
    if blue_green:  # the bake hands the group to a blue/green roll (controller.bluegreen), in one write
        locks.write(kbl_key, group, blue_green_record(group, image, now, prototype=node_name))
        return _handed_over(kube, provider, kbl_key, group, chosen=chosen, image=image, now=now)
    token = hashlib.sha256(f"{group}/{image}/{strategy}".encode()).hexdigest()[:64]
    version = provider.roll_group(group, image, strategy, token)
    # Lift the protection before recording the image: once recorded, a rerun is rate limited and
    # returns early, so a crash between the two would leave the node protected for good.
    _return_node(kube, node_name)
    locks.release(kbl_key, group, BAKE)  # the roll (controller.rolling) takes the group next
    actor = Actor(kube, provider, "", clock, lambda _step: None)
    actor.group_status(
        kbl_key,
        group,
        {"lastImage": image, "lastImageTime": now, "launchTemplateVersion": version, "lastImageVersions": versions_record(chosen)},
    )
    return ImageResult(node_name, image, version)


def _return_node(kube: KubeApi, node_name: str) -> None:
    unmark = {labels.DO_NOT_DISRUPT: None, PROTOTYPE_ANNOTATION: None, labels.DRAIN: None}
    kube.patch(NODES, node_name, {"spec": {"unschedulable": False}, "metadata": {"annotations": unmark}})


def _handed_over(
    kube: KubeApi, provider: NodeGroupProvider, kbl_key: str, group: str, *, chosen: Mapping[str, Any], image: str, now: float
) -> ImageResult:
    """The end of a bake whose group a blue/green roll now holds: the node returned, the image
    recorded (the roll's green group inherits it). The roll creates the green group's template
    version: ``version`` stays empty."""
    _return_node(kube, str(chosen["metadata"]["name"]))
    actor = Actor(kube, provider, "", lambda: now, lambda _step: None)
    actor.group_status(kbl_key, group, {"lastImage": image, "lastImageTime": now, "lastImageVersions": versions_record(chosen)})
    from controller.bluegreen import green_name

    return ImageResult(str(chosen["metadata"]["name"]), image, "", green=green_name(group))


def _float(text: Any) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None  # "imaging" from a bake of an older kbl: its drain starts now


def data_holders(kube: KubeApi, members: Sequence[Mapping[str, Any]]) -> set[str]:
    """The members that hold pieces the placement still needs (targets or transfer sources);
    every member while a DataSet's target is unknown (its PlacementSlices not all read)."""
    needed = needed_pieces(kube.list(DATASETS)[0], read_slices(kube))
    return {str(m["metadata"]["name"]) for m in members if needed.protects(str(m["metadata"]["name"]))}


def node_ready(node: Mapping[str, Any]) -> bool:
    """The Node's ``Ready`` condition is ``True`` (with a transition time: a node that never
    reported one has not joined)."""
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True" and parse_time(cond.get("lastTransitionTime")) is not None
    return False


def node_instance(node: Mapping[str, Any]) -> str:
    """The EC2 instance id of the Node's ``spec.providerID``, or ``""`` when it names none."""
    try:
        return instance_id(str((node.get("spec") or {}).get("providerID", "")))
    except ProviderError:
        return ""


def data_still_on(kube: KubeApi, node: Mapping[str, Any], since: float) -> str:
    """Why the node's data has not left yet ('' once it has): a node with an agent waits for the
    reconciler's ``kbl.io/data-drained`` (at or after ``since``) with no last pieces, as
    scale-down does (``placement.capacity.scaledown.data_drained``)."""
    name = node["metadata"]["name"]
    try:
        agents, _ = kube.list(NODE_HOLDINGS)
    except Exception:  # the data plane is not installed (no NodeHoldings kind): nothing to move
        agents = []
    if not any(((h.get("spec") or {}).get("nodeName") or (h.get("metadata") or {}).get("name")) == name for h in agents):
        return ""
    annotations = (node.get("metadata") or {}).get("annotations") or {}
    drained = parse_time(annotations.get(labels.DATA_DRAINED))
    try:
        last = int(annotations.get(labels.LAST_PIECES, "0") or 0)
    except ValueError:
        last = 1
    if drained is None or drained < int(since) or last > 0:
        return f"the placement reconciler has not yet written {labels.DATA_DRAINED} on {name}"
    return ""


def evict_pods(kube: KubeApi, node: str) -> str:
    """Evict the node's pods but DaemonSet and mirror pods, as ``kubectl drain`` does; why the
    node is not empty yet ('' once it is: evicted pods are waited for until they are gone)."""
    pods, _ = kube.list(PODS)
    refused, leaving = [], 0
    for pod in pods:
        meta = pod.get("metadata") or {}
        if (pod.get("spec") or {}).get("nodeName") != node or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        owners = meta.get("ownerReferences") or []
        if any(o.get("kind") == "DaemonSet" for o in owners) or "kubernetes.io/config.mirror" in (meta.get("annotations") or {}):
            continue
        leaving += 1
        if meta.get("deletionTimestamp"):
            continue
        if not kube.evict(str(meta.get("namespace", "default")), str(meta.get("name"))):
            refused.append(f"{meta.get('namespace', 'default')}/{meta.get('name')}")
    if refused:
        return f"eviction refused by a PodDisruptionBudget for {', '.join(refused)}"
    return f"{leaving} evicted pods are still on {node}" if leaving else ""


@dataclass
class Rebaker:
    """:func:`due_for_rebake` and :func:`prototype_image` from the controller loop.

    Each pass (:meth:`run_once`, after the controller's actions) goes on with a bake in progress
    (a node marked ``kbl.io/prototype``: at most one in the cluster at a time, so one node is
    out at once), else starts one in the first group that is due: its last image is older than
    ``rebake_after_s`` (N days) and one of its nodes runs newer software than that image's
    source (or the group was never imaged). A group whose bake failed is tried again after
    ``retry_s``; the failures are kept in :attr:`failures` (the loop logs them).
    """

    kube: KubeApi
    provider: NodeGroupProvider
    clock: Callable[[], float]
    rebake_after_s: float
    strategy: RollStrategy = "next-nodes"
    min_ready_s: float = 3600.0
    retry_s: float = 3600.0
    allow_replacing_data: bool = False
    guard: Callable[[str], None] = lambda _step: None
    attempted: dict[str, float] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)

    def run_once(self, groups: Sequence[tuple[str, str]]) -> ImageResult | None:
        """One step of the bake in progress, or the start of a due one; ``groups`` are
        ``(kbl key, group name)`` pairs. ``None`` when nothing was due."""
        now = self.clock()
        members = {g: self.kube.list(NODES, label_selector=f"{labels.NODE_GROUP_LABEL}={g}")[0] for _, g in groups}
        busy = [(k, g, n) for k, g in groups for n in members[g] if in_progress(n)]
        if busy:
            kbl_key, group, node = busy[0]
            return self._bake(kbl_key, group, str(node["metadata"]["name"]), now)
        for kbl_key, group in groups:
            if now - self.attempted.get(group, -math.inf) < self.retry_s:
                continue
            chosen = due_for_rebake(members[group], self._entry(kbl_key, group), now,
                                    min_ready_s=self.min_ready_s, min_interval_s=self.rebake_after_s)  # fmt: skip
            if chosen is not None:
                return self._bake(kbl_key, group, chosen, now)
        return None

    def _entry(self, kbl_key: str, group: str) -> Mapping[str, Any] | None:
        namespace, _, name = kbl_key.partition("/")
        kbl = self.kube.get(KBLS, name, namespace=namespace)
        entries = ((kbl or {}).get("status") or {}).get("nodeGroups") or []
        return next((e for e in entries if e.get("name") == group), None)

    def _bake(self, kbl_key: str, group: str, node: str, now: float) -> ImageResult | None:
        self.guard("rebake")
        try:
            result = prototype_image(
                self.kube, self.provider, kbl_key=kbl_key, group=group, node=node, strategy=self.strategy, clock=self.clock,
                min_ready_s=self.min_ready_s, min_interval_s=self.rebake_after_s, allow_replacing_data=self.allow_replacing_data,
            )  # fmt: skip
        except (ProviderError, KblError) as exc:
            self.attempted[group] = now
            self.failures.append((group, str(exc)))
            del self.failures[:-20]
            return None
        if not result.skipped.startswith(WAITING):
            self.attempted[group] = now
        return result
