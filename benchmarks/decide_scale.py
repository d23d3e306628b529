"""Benchmark: reconciler passes at 5,000 / 20,000 / 100,000 nodes (issue 24, item 3: O(change) passes).

``python -m benchmarks.decide_scale [--sizes 5000,20000,100000] [--datasets 10] [--pieces 1000000]
[--json FILE]``. Per cluster size: ``--datasets`` DataSets of about ``--pieces`` pieces each
(replicas 3x, host rule, 1 GiB shards; the last one erasure-coded 4+2), placed fresh and settled
(one re-plan on the same nodes, as the reconciler's first pass would), every piece reported ready
by its node's ``NodeHoldings``. A *pass* is what :meth:`Reconciler.reconcile
<dataplane.reconciler.reconciling.Reconciler.reconcile>` plans for the DataSets it reconciles: a
:class:`ClusterView` of the nodes (its eligible node table built once for the pass) and
:func:`decide` for each DataSet with the reconciler's :class:`PlanMemo`, cluster token and
:class:`ReadyCache` (the status writes, whose JSON is O(pieces) for a changed target, are not
included). Measured in CPU seconds of this process (numpy runs one thread):

- *first*: the first pass after the DataSets were placed (nothing cached yet);
- *steady*: a pass with nothing changed (a resync);
- *DataSet event*: the reports of one DataSet changed: a pass over that DataSet alone
  (``decide`` calls counted: the others are not decided);
- *join*: one host joins in a new rack: every DataSet re-planned (:func:`placement.shifts.shift`);
- *leave*: from the same settled cluster, one holder is lost (NotReady past its grace period):
  every DataSet re-planned.

*Before* is the exact path for one DataSet (``ReconcilerSettings(incremental=False)``, no
ReadyCache: ``place(previous=...)`` per change, every report read per decision), on the same
cluster and the same change. Every new target is checked with :func:`placement.stability.keeps`
(rule, balance band) and its movement against the ideal (the joined host's share; the lost
host's pieces). Prints a table and one JSON object; exits 1 when a pass on join or leave at
100,000 nodes takes 2 s or more, or an invariant fails.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmarks.measuring import peak_rss_mib
from benchmarks.placement_scale import HOSTS_PER_RACK, ZONES, node_objects
from dataplane.reconciler.planning import ClusterView, Decision, PlanMemo, ReadyCache, decide
from dataplane.reconciler.settings import ReconcilerSettings
from placement import place
from placement.shifts import shift
from placement.stability import NodeTable, frame
from topology.datasets import DataSet, Erasure, Redundancy, Replicas, ShardPlacement, dataset_object
from topology.holdings import DataSetHoldings, NodeHoldings, piece_key
from topology.nodes import Node
from topology.snapshots import paused_gc

#: The target of issue 24 item 3: a pass on a join or a leave at 100,000 nodes.
TARGET_S = 2.0
TARGET_NODES = 100_000


def cpu(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.process_time()
    out = fn()
    return out, time.process_time() - t0


@dataclass
class World:
    """The cluster, the DataSets (typed, with their placements) and the agents' reports."""

    nodes: dict[str, Node]
    joiner: Node
    datasets: dict[str, DataSet]
    holdings: dict[str, NodeHoldings] = field(default_factory=dict)


def build(nodes_n: int, count: int, pieces: int) -> World:
    nodes = {n.name: n for n in (Node.from_object(o) for o in node_objects(nodes_n))}
    racks = -(-nodes_n // (ZONES * HOSTS_PER_RACK))
    joiner = Node.from_object(node_objects(1, racks_from=racks + 1, zone=0)[0])
    table = NodeTable(list(nodes.values()))
    datasets: dict[str, DataSet] = {}
    for i in range(count):
        red: Redundancy = Erasure(4, 2) if i == count - 1 and count > 1 else Replicas(3)
        shards = -(-pieces // red.width)
        raw = dataset_object(f"d{i}", namespace="bench", shards=shards, shard_size="1Gi", redundancy=red)
        raw["metadata"]["uid"] = f"uid-d{i}"
        spec = DataSet.from_object(raw).spec
        cfg = ReconcilerSettings()
        target = place(table.nodes, spec, table=table, settings=cfg.placement).placement
        # Settled: what the reconciler's next pass makes of a fresh placement (a long-running
        # cluster sits at a placement its planner keeps; a fresh one may have a node outside the
        # stable band, which the first pass fixes).
        settled = shift(table, spec, target, weight=cfg.weight, settings=cfg.placement)
        if settled is None:
            settled = place(table.nodes, spec, previous=target, table=table, settings=cfg.placement).placement
        datasets[spec.key] = DataSet(spec, settled)
    world = World(nodes, joiner, datasets)
    world.holdings = holdings_of(world)
    return world


def holdings_of(world: World) -> dict[str, NodeHoldings]:
    """Every piece of every target reported ready by its node (one NodeHoldings per node)."""
    entries: dict[str, dict[str, DataSetHoldings]] = {}
    for key, ds in world.datasets.items():
        target = ds.placement
        assert target is not None
        width = target.pieces.shape[1]
        flat = target.pieces.ravel()
        order = np.argsort(flat, kind="stable")
        bounds = np.searchsorted(flat[order], np.arange(len(target.nodes) + 1))
        keys = [piece_key(ds.spec, p) for p in range(width)]
        for j, name in enumerate(target.nodes):
            slots = order[bounds[j] : bounds[j + 1]]
            rows, cols = slots // width, slots % width
            ready: dict[str, frozenset[int]] = {}
            for p in np.unique(cols).tolist():
                ready[keys[p]] = frozenset(rows[cols == p].tolist()) | ready.get(keys[p], frozenset())
            entries.setdefault(name, {})[key] = DataSetHoldings(ds.spec.namespace, ds.spec.name, ds.spec.uid, ready)
    return {name: NodeHoldings(name, datasets=found) for name, found in entries.items()}


class Passes:
    """The reconciler's state between passes (memo, ready cache, token) and what its passes cost."""

    def __init__(self, world: World, settings: ReconcilerSettings, *, cached: bool = True) -> None:
        self.world = world
        self.settings = settings
        self.memo = PlanMemo()
        self.ready = ReadyCache() if cached else None
        self.generation = 0
        self.decides = 0
        self.view: ClusterView | None = None

    def run(self, nodes: Mapping[str, Node], lost: frozenset[str], keys: list[str] | None = None) -> dict[str, Decision]:
        cluster = self.view
        if cluster is None or cluster.nodes is not nodes or cluster.lost != lost or cluster.holdings is not self.world.holdings:
            cluster = self.view = ClusterView.following(cluster, nodes, lost, self.world.holdings)  # as the reconciler does
        token = (self.generation, len(nodes), lost)
        out: dict[str, Decision] = {}
        with paused_gc():  # as Reconciler.reconcile: no cyclic collection walks the heap mid-pass
            for key in keys if keys is not None else sorted(self.world.datasets):
                ds = self.world.datasets[key]
                out[key] = decide(ds, cluster, {}, settings=self.settings, memo=self.memo, token=token, ready_cache=self.ready)
                self.decides += 1
        return out


def moved(before: ShardPlacement, after: ShardPlacement) -> int:
    """Slots whose node differs between two placements of the same shape."""
    names = sorted(set(before.nodes) | set(after.nodes))
    at = {n: i for i, n in enumerate(names)}
    old = np.array([*(at[n] for n in before.nodes), -1])[before.pieces]
    new = np.array([*(at[n] for n in after.nodes), -1])[after.pieces]
    return int((old != new).sum())


def check(
    world: World,
    nodes: Mapping[str, Node],
    lost: frozenset[str],
    memo: PlanMemo,
    *,
    settings: ReconcilerSettings,
    ideal: Callable[[DataSet], float],
) -> tuple[bool, float, int]:
    """Every new target (the pass's plan: a decision applies rebalancing moves only once repairs
    are done) keeps the rule (distinct hosts, every piece placed) and every node's load inside
    ``place``'s stable band, and moves at most 1.05x the ideal: (all held, worst movement
    factor, total moves planned)."""
    table = NodeTable([n for name, n in sorted(nodes.items()) if name not in lost])
    ok, worst, total = True, 0.0, 0
    for key, ds in world.datasets.items():
        plan = memo.last(key)
        fr = frame(table, ds.spec, None, weight=settings.weight, settings=settings.placement)
        if plan is None or fr is None or ds.placement is None:
            ok = False
            continue
        pieces = fr.positions(table, plan.placement)
        loads = fr.loads(pieces)
        eps = 1e-6 * fr.goal
        rule, band = fr.rule_holds(pieces), bool((loads <= fr.hi + eps).all() and (loads >= fr.lo - eps).all())
        moves = moved(ds.placement, plan.placement)
        factor = moves / max(ideal(ds), 1e-9)
        if not (rule and band and factor <= 1.05):
            print(f"{key}: rule {rule}, band {band}, movement {factor:.3f}x the ideal", file=sys.stderr)
        ok = ok and rule and band and factor <= 1.05
        worst = max(worst, factor)
        total += moves
    return ok, worst, total


def one_size(nodes_n: int, count: int, pieces: int) -> dict[str, Any]:
    world, build_s = cpu(lambda: build(nodes_n, count, pieces))
    cfg = ReconcilerSettings()
    nodes = world.nodes
    joined = {**nodes, world.joiner.name: world.joiner}
    first_key = sorted(world.datasets)[0]
    originals = dict(world.datasets)
    total = sum(d.spec.shards * d.spec.redundancy.width for d in world.datasets.values())
    out: dict[str, Any] = {"nodes": nodes_n, "datasets": count, "pieces": total, "build_cpu_s": build_s}
    # After: the reconciler's passes.
    passes = Passes(world, cfg)
    _, out["first_s"] = cpu(lambda: passes.run(nodes, frozenset()))
    _, out["steady_s"] = cpu(lambda: passes.run(nodes, frozenset()))
    before = passes.decides
    assert passes.ready is not None
    passes.ready.touch([first_key])  # the reports of one DataSet changed (a NodeHoldings event)
    # The pass after the event reads a view of the reports at least that new (the reconciler's
    # _nodes_view records it): its matrix is kept. Without this the DataSet's matrix was read
    # from every report again in every later pass (1-2 s of each join and leave pass here).
    passes.ready.view_epoch = passes.ready.epoch()
    _, out["dataset_event_s"] = cpu(lambda: passes.run(nodes, frozenset(), [first_key]))
    out["dataset_event_decides"] = passes.decides - before
    passes.generation += 1  # a Node event
    joins, out["join_s"] = cpu(lambda: passes.run(joined, frozenset()))
    share = float(world.joiner.allocatable.get(cfg.weight)) / sum(float(n.allocatable.get(cfg.weight)) for n in joined.values())
    ok_join, out["join_movement"], out["join_moves"] = check(
        world, joined, frozenset(), passes.memo, settings=cfg, ideal=lambda ds: share * ds.spec.shards * ds.spec.redundancy.width
    )
    for key, decision in joins.items():  # the statuses written: each DataSet's next pass sees its new target
        world.datasets[key] = DataSet(world.datasets[key].spec, decision.placement, decision.transfers)
    _, out["after_join_writes_s"] = cpu(lambda: passes.run(joined, frozenset()))
    # The leave, from the same settled cluster as the join (the joined host gone again: its
    # pieces are not ready anywhere yet, so a leave right after a join is a different case).
    world.datasets = dict(originals)
    passes.generation += 1
    passes.run(nodes, frozenset())
    now = world.datasets[first_key].placement
    assert now is not None
    victim = now.nodes[len(now.nodes) // 2]
    lost = frozenset({victim})

    def held(ds: DataSet) -> float:
        target = ds.placement
        assert target is not None
        return float((target.pieces == target.nodes.index(victim)).sum()) if victim in target.nodes else 0.0

    passes.generation += 1  # the victim's Ready condition turned False past the grace period
    _, out["leave_s"] = cpu(lambda: passes.run(nodes, lost))
    ok_leave, out["leave_movement"], out["leave_moves"] = check(world, nodes, lost, passes.memo, settings=cfg, ideal=held)
    out["invariants"] = ok_join and ok_leave
    out["ready_cache_reads"] = passes.ready.computed
    # Before: the exact path, one DataSet, same changes.
    exact = ReconcilerSettings(incremental=False)
    solo = World(nodes, world.joiner, {first_key: originals[first_key]}, world.holdings)
    _, out["before_steady_one_s"] = cpu(lambda: Passes(solo, exact, cached=False).run(nodes, frozenset()))
    _, out["before_join_one_s"] = cpu(lambda: Passes(solo, exact, cached=False).run(joined, frozenset()))
    _, out["before_leave_one_s"] = cpu(lambda: Passes(solo, exact, cached=False).run(nodes, lost))
    out["peak_rss_mib"] = peak_rss_mib()
    return out


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| nodes | pieces | first pass | steady pass | DataSet event (decides) | join pass (moves, x ideal) | "
        "leave pass (moves, x ideal) | before, one DataSet: steady / join / leave | invariants |"
    )
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        lines.append(
            f"| {r['nodes']:,} | {r['pieces']:,} ({r['datasets']} DataSets) | {r['first_s']:.2f} s | {r['steady_s']:.3f} s "
            f"| {r['dataset_event_s']:.3f} s ({r['dataset_event_decides']}) "
            f"| **{r['join_s']:.2f} s** ({r['join_moves']}, {r['join_movement']:.3f}x; "
            f"next pass {r['after_join_writes_s']:.2f} s) "
            f"| **{r['leave_s']:.2f} s** ({r['leave_moves']}, {r['leave_movement']:.3f}x) "
            f"| {r['before_steady_one_s']:.2f} / {r['before_join_one_s']:.2f} / {r['before_leave_one_s']:.2f} s "
            f"| {'held' if r['invariants'] else 'BROKEN'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", default="5000,20000,100000")
    parser.add_argument("--datasets", type=int, default=10)
    parser.add_argument("--pieces", type=int, default=1_000_000)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        row = one_size(size, args.datasets, args.pieces)
        print(json.dumps(row), file=sys.stderr, flush=True)
        rows.append(row)
    print(table(rows))
    summary = {"load_start": load, "load_end": os.getloadavg()[0], "rows": rows, "peak_rss_mib": peak_rss_mib()}
    print(json.dumps(summary))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(summary, fh, indent=1)
    missed = [r for r in rows if r["nodes"] >= TARGET_NODES and max(r["join_s"], r["leave_s"]) >= TARGET_S]
    broken = [r for r in rows if not r["invariants"]]
    for r in missed:
        worst = max(r["join_s"], r["leave_s"])
        print(f"target missed: a join/leave pass at {r['nodes']} nodes took {worst:.2f} s (>= {TARGET_S} s)", file=sys.stderr)
    for r in broken:
        print(f"invariant broken at {r['nodes']} nodes", file=sys.stderr)
    return 1 if missed or broken else 0


if __name__ == "__main__":
    sys.exit(main())
