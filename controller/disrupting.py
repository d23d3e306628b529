"""Which nodes Karpenter must not disrupt: those holding pieces the placement still needs.

Karpenter honours the Node annotation ``karpenter.sh/do-not-disrupt: "true"``: no consolidation,
drift or voluntary disruption of that node. A node *holds needed pieces* when a DataSet's target
(``status.placement``) has a slot on it, or an in-flight transfer (``status.transfers[].from``)
still names it as the source (make before break). :func:`needed_pieces` counts them from the
DataSets alone (the reconciler's own view, so no NodeHoldings read is needed);
:func:`disruption_marks` decides, per node of a kbl NodePool, whether the annotation should be
there; :func:`mark_nodes` writes the difference. A draining node (``kbl.io/drain``) keeps its
mark until the reconciler has moved its pieces off, then it is cleared and Karpenter's empty-node
consolidation may take it. Only nodes of kbl's own node groups (label ``kbl.io/node-group``) are
touched: kbl owns the annotation there, and never clears one it did not set elsewhere.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kube.api import DATASETS, NODES, ApiError, KubeApi
from topology import labels
from topology.datasets import DataSet
from topology.errors import ObjectError

#: Karpenter's annotation (karpenter.sh/v1); a Node or Pod carrying ``"true"`` is never disrupted voluntarily.
KARPENTER_DO_NOT_DISRUPT = "karpenter.sh/do-not-disrupt"


def needed_pieces(datasets: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Pieces per node that the placement still needs: target slots plus transfer sources.

    Unreadable DataSets are skipped (the reconciler reports them); a node absent from the result
    holds nothing the placement needs.
    """
    out: dict[str, int] = {}
    for obj in datasets:
        try:
            dataset = DataSet.from_object(obj)
        except ObjectError:
            continue
        if dataset.placement is not None:
            names = dataset.placement.nodes
            for index in dataset.placement.pieces.ravel().tolist():
                if 0 <= index < len(names):
                    out[names[index]] = out.get(names[index], 0) + 1
        for transfer in dataset.transfers:
            out[transfer.source] = out.get(transfer.source, 0) + 1
    return out


@dataclass(frozen=True, slots=True)
class Mark:
    """The annotation change one node needs: ``protect`` sets it, else it is cleared."""

    node: str
    protect: bool
    pieces: int


def disruption_marks(nodes: Iterable[Mapping[str, Any]], needed: Mapping[str, int]) -> list[Mark]:
    """The changes that make ``karpenter.sh/do-not-disrupt`` on kbl group nodes match ``needed``."""
    out = []
    for obj in nodes:
        meta = obj.get("metadata") or {}
        if labels.NODE_GROUP_LABEL not in (meta.get("labels") or {}):
            continue
        name = str(meta.get("name", ""))
        has = (meta.get("annotations") or {}).get(KARPENTER_DO_NOT_DISRUPT) == "true"
        want = needed.get(name, 0) > 0
        if has != want:
            out.append(Mark(name, want, needed.get(name, 0)))
    return out


def mark_nodes(kube: KubeApi) -> list[Mark]:
    """Set or clear the annotation where it disagrees with the placement; returns the changes made.

    A node that vanished in between is skipped (the next round sees the new state).
    """
    datasets, _ = kube.list(DATASETS)
    nodes, _ = kube.list(NODES)
    done = []
    for mark in disruption_marks(nodes, needed_pieces(datasets)):
        value = "true" if mark.protect else None
        with contextlib.suppress(ApiError):
            kube.patch(NODES, mark.node, {"metadata": {"annotations": {KARPENTER_DO_NOT_DISRUPT: value}}})
            done.append(mark)
    return done
