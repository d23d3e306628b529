"""Prototype images (the kamino idea): image a healthy node of a group and roll the group to it.

Pick a node of the group (or the one named): Ready for at least ``min_ready_s``, not cordoned,
the newest kubelet and kernel first (recently patched), then the longest Ready. Protect it from
scale-down (``kbl.io/do-not-disrupt`` while it is imaged), ``create_image`` without reboot under
a deterministic name (a retry finds the same image), tag it, create a launch-template version
and roll the group (``next-nodes``: only new nodes use it; ``rolling``: replace them). At most
one image per group per ``min_interval_s`` (rate limit, recorded in the KBL status); every step
is idempotent, so a failed or killed run is simply run again.
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

PROTOTYPE_ANNOTATION = "kbl.io/prototype"


@dataclass(frozen=True, slots=True)
class ImageResult:
    """What a prototype-image run did: ``skipped`` says why nothing was done."""

    node: str = ""
    image: str = ""
    version: str = ""
    skipped: str = ""


def _epoch(text: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _version_key(text: str) -> tuple[int, ...]:
    digits = "".join(c if c.isdigit() else " " for c in text)
    return tuple(int(p) for p in digits.split()[:4])


def pick_prototype(nodes: Sequence[Mapping[str, Any]], now_s: float, min_ready_s: float, named: str | None = None) -> Mapping[str, Any]:
    """The node to image (see the module docstring).

    Raises
    ------
    KblError
        If the named node is not in the group, or no node qualifies (with the reasons).
    """
    if named is not None:
        for node in nodes:
            if node["metadata"]["name"] == named:
                return node
        raise KblError(f"node {named} is not a node of the group")
    fit: list[tuple[tuple[Any, ...], Mapping[str, Any]]] = []
    reasons = []
    for node in nodes:
        name = node["metadata"]["name"]
        ready_since = None
        for cond in (node.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "Ready" and cond.get("status") == "True":
                ready_since = _epoch(cond.get("lastTransitionTime"))
        if (node.get("spec") or {}).get("unschedulable"):
            reasons.append(f"{name} is cordoned")
            continue
        if ready_since is None or now_s - ready_since < min_ready_s:
            reasons.append(f"{name} is not Ready for {min_ready_s:.0f}s")
            continue
        info = (node.get("status") or {}).get("nodeInfo") or {}
        already = PROTOTYPE_ANNOTATION in ((node.get("metadata") or {}).get("annotations") or {})
        key = (already, _version_key(str(info.get("kubeletVersion", ""))), _version_key(str(info.get("kernelVersion", ""))), -ready_since)
        fit.append((key, node))
    if not fit:
        raise KblError("no node of the group qualifies as a prototype: " + ("; ".join(reasons) or "the group has no nodes"))
    return max(fit, key=lambda item: item[0])[1]


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
    if isinstance(last, int | float) and now - last < min_interval_s and entry.get("lastImage"):
        return ImageResult(image=str(entry["lastImage"]), skipped=f"rate limited: last image {now - last:.0f}s ago")
    members, _ = kube.list(NODES, label_selector=f"kbl.io/node-group={group}")
    chosen = pick_prototype(members, now, min_ready_s, node)
    node_name = chosen["metadata"]["name"]
    kube.patch(NODES, node_name, {"metadata": {"annotations": {labels.DO_NOT_DISRUPT: "true", PROTOTYPE_ANNOTATION: "imaging"}}})
    day = datetime.fromtimestamp(now, UTC).strftime("%Y%m%d")
    image_name = f"kbl-{group}-{node_name}-{day}"[:128]
    tags = {"kbl.io/kbl": kbl_key, "kbl.io/node-group": group, "kbl.io/source-node": node_name}
    image = provider.create_image(str((chosen.get("spec") or {}).get("providerID", "")), image_name, tags)
    token = hashlib.sha256(f"{group}/{image}/{strategy}".encode()).hexdigest()[:64]
    version = provider.roll_group(group, image, strategy, token)
    # Lift the protection before recording the image: once recorded, a rerun is rate limited and
    # returns early, so a crash between the two would leave the node protected for good.
    kube.patch(NODES, node_name, {"metadata": {"annotations": {labels.DO_NOT_DISRUPT: None, PROTOTYPE_ANNOTATION: None}}})
    actor = Actor(kube, provider, "", clock, lambda _step: None)
    actor.group_status(kbl_key, group, {"lastImage": image, "lastImageTime": now, "launchTemplateVersion": version})
    return ImageResult(node_name, image, version)
