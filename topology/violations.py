"""Placement violations visible from the topology alone.

A dataset's pieces must sit on distinct failure domains at ``spec.failureDomain``, on nodes that
exist, match ``spec.nodeSelector``, and every shard must have all its pieces. This module finds
the shards that break those rules; it never fixes them (that is :mod:`placement`'s job).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from topology.clusters import Cluster
from topology.datasets import DataSet


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule of one shard (or of the whole dataset when ``shard`` is ``None``)."""

    dataset: str
    shard: int | None
    rule: str
    detail: str

    def __str__(self) -> str:
        where = f"{self.dataset}[{self.shard}]" if self.shard is not None else self.dataset
        return f"{where}: {self.rule}: {self.detail}"


def find_violations(cluster: Cluster, dataset: DataSet, *, limit: int = 1000) -> list[Violation]:
    """Violations of one dataset's placement in ``cluster``, at most ``limit`` of them.

    Rules: ``unplaced`` (no status.placement), ``missing-node`` (a piece on a node the cluster
    does not have), ``missing-piece`` (fewer pieces than the redundancy width), ``same-domain``
    (two pieces in one failure domain), ``selector`` (a piece on a node not matching
    ``spec.nodeSelector``).
    """
    spec = dataset.spec
    placement = dataset.placement
    if placement is None:
        return [Violation(dataset.key, None, "unplaced", "no status.placement yet")]
    out: list[Violation] = []
    domain_of: dict[str, str | None] = {}
    for name in placement.nodes:
        node = cluster.nodes.get(name)
        domain_of[name] = None if node is None else node.domain(spec.failure_domain)
    selector = spec.node_selector
    bad_selector = {
        name
        for name in placement.nodes
        if (node := cluster.nodes.get(name)) is not None and any(node.labels.get(k) != v for k, v in selector.items())
    }
    width = spec.redundancy.width
    for s in range(placement.shards):
        if len(out) >= limit:
            break
        holders = placement.holders(s)
        if len(holders) < width:
            out.append(Violation(dataset.key, s, "missing-piece", f"{len(holders)} of {width} pieces placed"))
        gone = [h for h in holders if domain_of[h] is None]
        if gone:
            out.append(Violation(dataset.key, s, "missing-node", f"pieces on unknown nodes {gone}"))
        counts = Counter(domain_of[h] for h in holders if domain_of[h] is not None)
        crowded = {d: c for d, c in counts.items() if c > 1}
        if crowded:
            detail = ", ".join(f"{c} pieces in {d}" for d, c in sorted(crowded.items(), key=lambda x: str(x[0])))
            out.append(Violation(dataset.key, s, "same-domain", detail))
        off = [h for h in holders if h in bad_selector]
        if off:
            out.append(Violation(dataset.key, s, "selector", f"pieces on nodes not matching nodeSelector: {off}"))
    return out[:limit]
