"""Prototype images (the kamino idea): image a healthy, patched node of a group and roll the group to it.

**Deciding** (pure, :func:`due_for_rebake`, called by the controller loop): a group is due for a
new image when one of its nodes runs newer software (kubelet, kernel or OS image version) than
the node the last image was taken from, or when it was never imaged, at most once per
``min_interval_s``. The node to image is picked by :func:`pick_prototype`: Ready for at least
``min_ready_s``, not cordoned, not draining (``kbl.io/drain``), up to date (the newest kubelet,
kernel and OS image among the group's Ready nodes), then the longest Ready.

**Doing** (:func:`prototype_image`, also behind ``kbl bake``): protect the node from scale-down
(``kbl.io/do-not-disrupt`` while it is imaged), clean it and image it with a reboot through the
provider (the cleaning script runs on the node first: ``manifests/bake/clean-node.sh``), under a
deterministic name (a retry finds the same image), tag it, create a launch-template version and
roll the group (``next-nodes``: only new nodes use it; ``rolling``: replace them). The image, its
time and the source node's versions are recorded in the KBL status; every step is idempotent,
so a failed or killed run is simply run again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from controller.acting import Actor
from controller.providers import NodeGroupProvider, RollStrategy
from kube.api import KBLS, NODES, KubeApi
from topology import labels
from topology.errors import KblError
from topology.times import parse_time

PROTOTYPE_ANNOTATION = labels.PROTOTYPE


@dataclass(frozen=True, slots=True)
class ImageResult:
    """What a prototype-image run did: ``skipped`` says why nothing was done."""

    node: str = ""
    image: str = ""
    version: str = ""
    skipped: str = ""


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
                why = unfit_reason(node, now_s, 0.0)
                if why is not None:
                    raise KblError(f"node {named} cannot be a prototype: {why}")
                return node
        raise KblError(f"node {named} is not a node of the group")
    for node in nodes:  # a run that failed half-way: finish it on the same node (same image name)
        annotations = (node.get("metadata") or {}).get("annotations") or {}
        if PROTOTYPE_ANNOTATION in annotations and labels.DRAIN not in annotations:
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
) -> ImageResult:
    """Image a prototype node of ``group`` and roll the group to it (idempotent, rate-limited).

    Raises
    ------
    KblError
        If the KBL does not exist or no node qualifies; :class:`ProviderError` from the cloud
        (run again: every step is idempotent).
    """
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
    chosen = pick_prototype(members, now, min_ready_s, node)
    node_name = chosen["metadata"]["name"]
    kube.patch(NODES, node_name, {"metadata": {"annotations": {labels.DO_NOT_DISRUPT: "true", PROTOTYPE_ANNOTATION: "imaging"}}})
    day = datetime.fromtimestamp(now, UTC).strftime("%Y%m%d")
    image_name = f"kbl-{group}-{node_name}-{day}"[:128]
    tags = {labels.KBL_LABEL: kbl_key, labels.NODE_GROUP_LABEL: group, labels.SOURCE_NODE_TAG: node_name}
    image = provider.create_image(str((chosen.get("spec") or {}).get("providerID", "")), image_name, tags)
    token = hashlib.sha256(f"{group}/{image}/{strategy}".encode()).hexdigest()[:64]
    version = provider.roll_group(group, image, strategy, token)
    # Lift the protection before recording the image: once recorded, a rerun is rate limited and
    # returns early, so a crash between the two would leave the node protected for good.
    kube.patch(NODES, node_name, {"metadata": {"annotations": {labels.DO_NOT_DISRUPT: None, PROTOTYPE_ANNOTATION: None}}})
    actor = Actor(kube, provider, "", clock, lambda _step: None)
    actor.group_status(
        kbl_key,
        group,
        {"lastImage": image, "lastImageTime": now, "launchTemplateVersion": version, "lastImageVersions": versions_record(chosen)},
    )
    return ImageResult(node_name, image, version)
