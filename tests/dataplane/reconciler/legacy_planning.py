"""The placement reconciler's decide() as it was before the steady-state fast path (a frozen copy).

tests/dataplane/reconciler/test_steady_state.py proves the new :func:`dataplane.reconciler.planning.decide`
returns the same Decision as this one on random clusters and placements. Not used by kbl itself.

Changed on purpose since the freeze, in both: the order moves are applied in (``urgency``) is
most at risk first (ready pieces beyond the needed ones, then drain deadline, then bytes), and the
Decision weighs its ready and total pieces in bytes (``bytes_ready``, ``bytes_total``), issue 21;
the per-node transfer bound counts the transfers a node serves (``from``) only, issue 24 (a
joiner receives its whole share in one pass, its agent copies ``parallel_copies`` at a time).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from dataplane.reconciler.planning import (
    ClusterView,
    Condition,
    Decision,
    Event,
    _was_full,
    distance,
    piece_sizes,
    previous_condition,
    previous_lost,
)
from dataplane.reconciler.settings import ReconcilerSettings
from placement import PlacementResult, place
from topology.datasets import DataSet, ShardPlacement, Transfer
from topology.errors import KblError
from topology.holdings import piece_key
from topology.localities import Level
from topology.shards import format_shards


class Holders:
    """Which slots' holders have their piece ready (one DataSet, one cluster view)."""

    def __init__(self, dataset: DataSet, cluster: ClusterView) -> None:
        self.spec = dataset.spec
        self.cluster = cluster
        self._cache: dict[str, Mapping[str, frozenset[int]]] = {}

    def _ready_map(self, node: str) -> Mapping[str, frozenset[int]]:
        if node not in self._cache:
            found = self.cluster.holdings.get(node)
            entry = found.of(self.spec.key, self.spec.uid) if found is not None else None
            self._cache[node] = entry.ready if entry is not None else {}
        return self._cache[node]

    def reported(self) -> bool:
        """Some live node's agent reports holding pieces of this DataSet."""
        return any(self.cluster.alive(n) and any(self._ready_map(n).values()) for n in self.cluster.holdings)

    def had(self, node: str, shard: int, piece: int) -> bool:
        """The node's last report lists the piece ready (alive or not)."""
        return bool(node) and shard in self._ready_map(node).get(piece_key(self.spec, piece), frozenset())

    def ready(self, node: str, shard: int, piece: int) -> bool:
        """The node is alive and reports the piece ready."""
        return bool(node) and self.cluster.alive(node) and self.had(node, shard, piece)


def names_of(placement: ShardPlacement | None, shards: int, width: int) -> npt.NDArray[np.object_]:
    """The placement as a ``shards x width`` array of node names ("" for no node)."""
    out = np.full((shards, width), "", dtype=object)
    if placement is None:
        return out
    ss, ww = min(shards, placement.shards), min(width, placement.width)
    lut = np.array([*placement.nodes, ""], dtype=object)
    out[:ss, :ww] = lut[placement.pieces[:ss, :ww]]
    return out


def from_names(names: npt.NDArray[np.object_]) -> ShardPlacement:
    """A ``shards x width`` array of node names as a :class:`ShardPlacement` (nodes sorted)."""
    used = sorted({str(n) for n in names.ravel().tolist() if n})
    index = {n: i for i, n in enumerate(used)}
    index[""] = -1
    pieces = np.vectorize(lambda n: index[str(n)], otypes=[np.int32])(names) if names.size else np.zeros(names.shape, dtype=np.int32)
    return ShardPlacement(tuple(used), pieces.astype(np.int32))


def copy_source(dataset: DataSet, cluster: ClusterView, holders: Holders, shard: int, *, to: str) -> str:
    """Where a repair of a piece of ``shard`` on ``to`` copies from: the nearest ready holder of the
    shard by topology distance (any piece for erasure: a rebuild reads ``k`` of them), else the
    DataSet's source, else ``"nothing"``."""
    width = dataset.spec.redundancy.width
    target = names_of(dataset.placement, dataset.spec.shards, width)
    best: tuple[Level, str] | None = None
    for name in sorted({str(n) for n in target[shard] if n} | {t.source for t in dataset.transfers if t.shard == shard}):
        if name == to or not any(holders.ready(name, shard, p) for p in range(width)):
            continue
        found = (distance(cluster.nodes.get(name), cluster.nodes.get(to)), name)
        best = found if best is None or found < best else best
    if best is not None:
        return f"{best[1]} ({best[0].label})"
    source = dataset.spec.source
    if source is not None:
        return f"source {source.locate(dataset.spec.shard_name(shard))}"
    return "nothing (no ready holder, no source)"


def _replan(dataset: DataSet, cluster: ClusterView, settings: ReconcilerSettings) -> PlacementResult:
    """The new target: fresh, or from the previous one with cordoned/NotReady holders kept."""
    spec = dataset.spec
    eligible = [n for n in sorted(cluster.nodes.values(), key=lambda n: n.name) if cluster.eligible(n)]
    kw: dict[str, Any] = {"weight": settings.weight, "seed": settings.seed, "settings": settings.placement}
    if dataset.placement is None:
        return place(eligible, spec, **kw)
    holding = set(dataset.placement.nodes)
    keep = [
        n for n in sorted(cluster.nodes.values(), key=lambda n: n.name)
        if n.name in holding and not cluster.eligible(n) and cluster.alive(n.name) and not cluster.draining(n.name)
    ]  # fmt: skip
    if keep:
        result = place([*eligible, *keep], spec, previous=dataset.placement, **kw)
        kept = {n.name for n in keep}
        if not any(m.to_node in kept for m in result.moves):
            return result
    return place(eligible, spec, previous=dataset.placement, **kw)


def decide(
    dataset: DataSet,
    cluster: ClusterView,
    previous: Mapping[str, Any] | None = None,
    *,
    settings: ReconcilerSettings | None = None,
    in_flight: Mapping[str, int] | None = None,
) -> Decision:
    """The new status of one DataSet (module docstring).

    Parameters
    ----------
    dataset:
        The DataSet, with its current target and transfers.
    cluster:
        Nodes, lost nodes, holdings.
    previous:
        The DataSet's current raw ``status`` (conditions, ``lostShards``, ``pieces``).
    in_flight:
        Transfers per node of *other* DataSets (the per-node bound is over all of them).

    Never raises for a bad DataSet: a :class:`~topology.errors.PlacementError` becomes
    ``Placed=False`` reason ``PlacementFailed`` and a Warning Event.
    """
    cfg = settings or ReconcilerSettings()
    status = previous or {}
    spec = dataset.spec
    red = spec.redundancy
    shards, width, needed = spec.shards, red.width, red.needed
    holders = Holders(dataset, cluster)
    events: list[Event] = []
    old = names_of(dataset.placement, shards, width)
    try:
        result: PlacementResult | None = _replan(dataset, cluster, cfg)
        problem = ""
    except KblError as exc:
        result, problem = None, str(exc)
    existing = {(t.shard, t.piece): t for t in dataset.transfers if t.shard < shards and t.piece < width}
    new = old.copy() if result is None else names_of(result.placement, shards, width)
    fresh = dataset.placement is None

    # What the slots held before this pass: ready pieces per shard (target holders + transfer sources).
    def slot_ready(names: npt.NDArray[np.object_], transfers: Mapping[tuple[int, int], Transfer], s: int, p: int) -> bool:
        t = transfers.get((s, p))
        return holders.ready(str(names[s, p]), s, p) or (t is not None and holders.ready(t.source, s, p))

    gone = {str(n) for n in np.unique(old) if n and not cluster.alive(str(n))}
    before = np.array([sum(slot_ready(old, existing, s, p) for p in range(width)) for s in range(shards)], dtype=np.int64)
    # Moves, shard by shard, most urgent first, within the per-node transfer bound.
    counts: dict[str, int] = dict(in_flight or {})
    transfers: dict[tuple[int, int], Transfer] = {}
    for t in existing.values():
        counts[t.source] = counts.get(t.source, 0) + 1
    moved_rows = np.flatnonzero((old != new).any(axis=1)) if not fresh else np.zeros(0, dtype=np.int64)
    final = old.copy() if not fresh else new.copy()

    sizes = spec.shard_sizes

    def urgency(s: int) -> tuple[int, float, int, int]:
        """Most at risk first: fewest ready pieces beyond the ``needed`` ones, then the earliest
        drain deadline, then the most bytes, then the shard index."""
        leaving = [cluster.deadline(str(n)) for n in old[s] if n and cluster.draining(str(n))]
        return (int(before[s]) - needed, min(leaving, default=math.inf), -int(sizes[s]), s)

    deferred = 0
    bound = cfg.max_transfers_per_node
    # Repair first: while pieces are missing or in flight, moves that are only a rebalance (every
    # old holder alive, not draining, still a target or kept) wait, so copies go to repairs.
    movable = {n.name for n in cluster.nodes.values() if cluster.eligible(n) or (cluster.alive(n.name) and not cluster.draining(n.name))}
    tracked = spec.source is not None or holders.reported()  # else another system writes the bytes
    busy = (
        bool(gone)
        or bool(existing)
        or (tracked and any(old[s, p] and not holders.ready(str(old[s, p]), s, p) for s in range(shards) for p in range(width)))
    )
    for s in sorted((int(s) for s in moved_rows), key=urgency):
        optional = all(str(old[s, p]) in movable for p in range(width) if old[s, p] != new[s, p] and old[s, p])
        if busy and optional and not fresh:
            deferred += 1
            continue
        planned: list[Transfer] = []
        for p in range(width):
            was, now = str(old[s, p]), str(new[s, p])
            if was == now:
                continue
            prior = existing.get((s, p))
            if holders.ready(was, s, p):
                src = was
            elif prior is not None and holders.ready(prior.source, s, p):
                src = prior.source
            else:
                continue
            if src != now:
                planned.append(Transfer(s, p, src, now))
        urgent = any(str(n) in gone for n in old[s] if n)
        if bound and planned and not urgent:
            need: dict[str, int] = {}
            for t in planned:
                need[t.source] = need.get(t.source, 0) + 1
            if any(counts.get(n, 0) > 0 and counts.get(n, 0) + k > bound for n, k in need.items()):
                deferred += 1
                continue
        final[s] = new[s]
        for p in range(width):
            if old[s, p] != new[s, p]:
                existing.pop((s, p), None)
        for t in planned:
            transfers[(t.shard, t.piece)] = t
            counts[t.source] = counts.get(t.source, 0) + 1
    # Transfers carried over: dropped once the new holder has the piece ready or the source is gone.
    for (s, p), t in existing.items():
        if str(final[s, p]) != t.to or t.source == t.to or not cluster.alive(t.source) or holders.ready(t.to, s, p):
            continue
        transfers[(s, p)] = t
    changed = final != old
    moves = 0 if fresh else int(changed.sum())
    repairs = 0 if fresh else int(sum(1 for s, p in zip(*np.nonzero(changed), strict=True) if str(old[s, p]) in gone))
    placement = None if (result is None and dataset.placement is None) else from_names(final)
    after = np.array([sum(slot_ready(final, transfers, s, p) for p in range(width)) for s in range(shards)], dtype=np.int64)
    per_shard = [sum(1 for p in range(width) if final[s, p] and holders.ready(str(final[s, p]), s, p)) for s in range(shards)]
    ready = sum(per_shard)
    total = shards * width
    sizes = piece_sizes(spec)
    bytes_ready = sum(n * int(sizes[s]) for s, n in enumerate(per_shard))
    bytes_total = width * sum(int(b) for b in sizes)
    # Lost shards (no source only): a lost node left fewer than `needed` ready pieces.
    lost = {s for s in previous_lost(status) if s < shards and after[s] < needed}
    if spec.source is None and gone:
        full = _was_full(status)
        for s in range(shards):
            on_gone = [p for p in range(width) if str(old[s, p]) in gone]
            if on_gone and after[s] < needed and (full or any(holders.had(str(old[s, p]), s, p) for p in on_gone)):
                lost.add(s)
    new_lost = sorted(lost - previous_lost(status))
    # Events.
    key = spec.key
    if result is None:
        events.append(Event("Warning", "PlacementFailed", problem))
    elif fresh:
        events.append(
            Event(
                "Normal",
                "Placed",
                f"{total} pieces of {shards} shards ({red}) on {len(placement.nodes) if placement else 0} "
                f"nodes, at most {result.report.cap} per {spec.failure_domain}",
            )
        )
    elif moves:
        why = _why(old, changed, cluster, gone)
        events.append(
            Event(
                "Normal",
                "Rebalanced",
                f"{moves} piece moves because {why}" + (f"; {deferred} shards wait for transfers to finish" if deferred else ""),
            )
        )
    if repairs and placement is not None:
        samples = []
        for s, p in list(zip(*np.nonzero(changed & np.isin(old, list(gone))), strict=True))[:5]:
            origin = copy_source(dataset, cluster, holders, int(s), to=str(final[s, p]))
            samples.append(f"shard {s} piece {p} -> {final[s, p]} from {origin}")
        events.append(
            Event(
                "Warning",
                "NodeLost",
                f"nodes {', '.join(sorted(gone))} lost: {repairs} pieces get new holders; "
                + "; ".join(samples)
                + ("; ..." if repairs > len(samples) else ""),
            )
        )
    if new_lost:
        events.append(
            Event(
                "Warning",
                "ShardsLost",
                f"shards {format_shards(new_lost)} have fewer than {needed} ready pieces left and "
                "no spec.source: they cannot be rebuilt and are not re-created",
            )
        )
    # Conditions.
    conditions = [_placed(result, problem, dataset.placement is not None, placement)]
    complete = ready == total and not transfers
    if spec.source is None:
        conditions.append(Condition("Ready", "Unknown", "NoSource", f"no spec.source: {ready}/{total} pieces reported ready by agents"))
    elif complete:
        conditions.append(Condition("Ready", "True", "AllPiecesReady", f"{total} pieces ready on their nodes"))
    else:
        reason = "Moving" if transfers else "Hydrating"
        conditions.append(Condition("Ready", "False", reason, f"{ready}/{total} pieces ready, {len(transfers)} transfers in flight"))
    below = int((after < width).sum())
    if lost:
        why = f"shards {format_shards(sorted(lost))} lost: no spec.source to rebuild them from"
        conditions.append(Condition("Degraded", "True", "ShardsLost", why))
    elif below and (_was_full(status) or repairs):
        conditions.append(Condition("Degraded", "True", "Repairing", f"{below} shards below {width} ready pieces"))
    else:
        conditions.append(
            Condition(
                "Degraded",
                "False",
                "FullRedundancy" if below == 0 else "NotYetReady",
                "every shard has all its pieces ready" if below == 0 else "pieces are still hydrating",
            )
        )
    if conditions[1].status == "True" and previous_condition(status, "Ready").get("status") != "True":
        events.append(Event("Normal", "Ready", f"all {total} pieces ready"))
    return Decision(
        key=key,
        placement=placement,
        transfers=tuple(transfers[k] for k in sorted(transfers)),
        lost_shards=tuple(sorted(lost)),
        ready=ready,
        total=total,
        conditions=tuple(conditions),
        events=tuple(events),
        moves=moves,
        repairs=repairs,
        deferred_shards=deferred,
        degraded_shards=below if (lost or _was_full(status) or repairs) else 0,
        shard_ready=after,
        bytes_ready=bytes_ready,
        bytes_total=bytes_total,
    )


def _placed(result: PlacementResult | None, problem: str, had: bool, placement: ShardPlacement | None) -> Condition:
    if result is None:
        return Condition("Placed", "False", "PlacementFailed", problem + ("; the previous placement is kept" if had else ""))
    nodes = len(placement.nodes) if placement is not None else 0
    return Condition("Placed", "True", "Placed", f"every piece has a node ({nodes} nodes, {result.report.violations} rule violations)")


def _why(old: npt.NDArray[np.object_], changed: npt.NDArray[np.bool_], cluster: ClusterView, gone: set[str]) -> str:
    reasons: list[str] = []
    from_nodes = {str(n) for n in old[changed] if n}
    if from_nodes & gone:
        reasons.append(f"nodes lost ({', '.join(sorted(from_nodes & gone))})")
    draining = sorted(n for n in from_nodes if cluster.draining(n))
    if draining:
        reasons.append(f"nodes draining ({', '.join(draining)})")
    if not reasons:
        reasons.append("the eligible nodes changed (joins, weights, selector or rule)")
    return " and ".join(reasons)
