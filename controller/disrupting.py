"""Which nodes Karpenter must not disrupt: those holding pieces the placement still needs.

Karpenter honours the Node annotation ``karpenter.sh/do-not-disrupt: "true"``: no consolidation,
drift or voluntary disruption of that node. A node *holds needed pieces* when a DataSet's target
(``status.placement``) has a slot on it, or an in-flight transfer (``status.transfers[].from``)
still names it as the source (make before break). :func:`needed_pieces` counts them from the
DataSets and their PlacementSlices alone (the reconciler's own view, so no NodeHoldings read is
needed);
:func:`disruption_marks` decides, per node of a kbl NodePool, whether the annotation should be
there; :func:`mark_nodes` writes the difference. A draining node (``kbl.io/drain``) keeps its
mark until the reconciler has moved its pieces off, then it is cleared and Karpenter's empty-node
consolidation may take it. Only nodes of kbl's own node groups (label ``kbl.io/node-group``) are
touched: kbl owns the annotation there, and never clears one it did not set elsewhere.

A large DataSet's target is written as PlacementSlices (:mod:`topology.slices`). It is read only
as the index names it *now* (``SliceStore.resolve(latest=True)``): an older target may not name
the node a piece moved to. While a slice the index names has not been read, the DataSet's target
is *unknown* (:attr:`NeededPieces.unknown`), never taken for "nothing placed": every node may
hold a shard's last piece, so every node is protected until it is known.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kube.api import DATASETS, NODES, PLACEMENT_SLICES, ApiError, KubeApi
from topology import labels
from topology.datasets import DataSet
from topology.errors import ObjectError
from topology.slices import PlacementSlice, SliceStore

log = logging.getLogger(__name__)

#: Karpenter's annotation (karpenter.sh/v1); a Node or Pod carrying ``"true"`` is never disrupted voluntarily.
KARPENTER_DO_NOT_DISRUPT = "karpenter.sh/do-not-disrupt"


class NeededPieces(dict[str, int]):
    """Pieces per node that the placement still needs, and the DataSets whose target is unknown.

    A plain ``{node: pieces}`` mapping of the known targets; :attr:`unknown` lists the DataSets
    whose target is written as PlacementSlices not all read, whose pieces may be on any node:
    :meth:`protects` then answers yes for every node.
    """

    unknown: tuple[str, ...] = ()

    def protects(self, node: str) -> bool:
        """May ``node`` hold a piece the placement needs (a known one, or any while a target is unknown)?"""
        return bool(self.unknown) or self.get(node, 0) > 0


def read_slices(kube: KubeApi) -> Sequence[Mapping[str, Any]]:
    """Every PlacementSlice (none when the API does not serve the kind: sliced targets are then unknown)."""
    try:
        return kube.list(PLACEMENT_SLICES)[0]
    except Exception:  # no PlacementSlice kind installed: no target is sliced, or each stays unknown
        return []


def needed_pieces(
    datasets: Iterable[Mapping[str, Any] | DataSet], slices: SliceStore | Iterable[Mapping[str, Any] | PlacementSlice] = ()
) -> NeededPieces:
    """Pieces per node that the placement still needs: target slots plus transfer sources.

    ``datasets`` are objects or typed DataSets; a sliced one's target is assembled from
    ``slices`` (the objects, or a store kept by an informer) as its index names it now. One whose
    slices are not all there is listed in :attr:`NeededPieces.unknown` (its transfer sources still
    count). Unreadable DataSets are skipped (the reconciler reports them); a node absent from the
    result holds nothing a known target needs.
    """
    store = slices if isinstance(slices, SliceStore) else SliceStore()
    if not isinstance(slices, SliceStore):
        store.replace(slices)
    out = NeededPieces()
    unknown = []
    for obj in datasets:
        try:
            dataset = obj if isinstance(obj, DataSet) else DataSet.from_object(obj)
        except ObjectError:
            continue
        if dataset.awaits_slices:
            dataset = store.resolve(dataset, latest=True) or dataset
            if dataset.awaits_slices:
                unknown.append(dataset.key)
        if dataset.placement is not None:  # one count per node, not per piece: a million pieces per DataSet
            names, pieces = dataset.placement.nodes, dataset.placement.pieces
            held = np.bincount(pieces[(pieces >= 0) & (pieces < len(names))], minlength=len(names))
            for index in np.flatnonzero(held).tolist():
                out[names[index]] = out.get(names[index], 0) + int(held[index])
        for transfer in dataset.transfers:
            out[transfer.source] = out.get(transfer.source, 0) + 1
    out.unknown = tuple(sorted(unknown))
    return out


@dataclass(frozen=True, slots=True)
class Mark:
    """The annotation change one node needs: ``protect`` sets it, else it is cleared."""

    node: str
    protect: bool
    pieces: int


def disruption_marks(nodes: Iterable[Mapping[str, Any]], needed: Mapping[str, int]) -> list[Mark]:
    """The changes that make ``karpenter.sh/do-not-disrupt`` on kbl group nodes match ``needed``
    (every node protected while a target is unknown: :meth:`NeededPieces.protects`)."""
    out = []
    for obj in nodes:
        meta = obj.get("metadata") or {}
        if labels.NODE_GROUP_LABEL not in (meta.get("labels") or {}):
            continue
        name = str(meta.get("name", ""))
        has = (meta.get("annotations") or {}).get(KARPENTER_DO_NOT_DISRUPT) == "true"
        want = needed.protects(name) if isinstance(needed, NeededPieces) else needed.get(name, 0) > 0
        if has != want:
            out.append(Mark(name, want, needed.get(name, 0)))
    return out


def mark_nodes(kube: KubeApi) -> list[Mark]:
    """Set or clear the annotation where it disagrees with the placement; returns the changes made.

    A node that vanished in between is skipped (the next round sees the new state). While a
    DataSet's target is unknown (its PlacementSlices not all read) every kbl node keeps or gets
    the mark, and the DataSets are logged.
    """
    datasets, _ = kube.list(DATASETS)
    needed = needed_pieces(datasets, read_slices(kube))
    nodes, _ = kube.list(NODES)
    if needed.unknown:
        log.warning(
            "every kbl node stays protected from disruption: the targets of DataSets %s are not known yet (PlacementSlices not all read)",
            ", ".join(needed.unknown),
        )
    done = []
    for mark in disruption_marks(nodes, needed):
        value = "true" if mark.protect else None
        with contextlib.suppress(ApiError):
            kube.patch(NODES, mark.node, {"metadata": {"annotations": {KARPENTER_DO_NOT_DISRUPT: value}}})
            done.append(mark)
    return done
