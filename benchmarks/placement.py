"""Benchmark: placement balance, movement, speed and durability (issue 3).

On node objects made from the real EKS node (:func:`topology.examples.make_cluster_nodes`):

- 3 zones x 4 racks x 5 hosts (60), failure domain ``rack``, 100,000 shards of 3 replicas and of
  4+2 stripes, equal and mixed (1x/2x/4x) storage weights;
- 600 hosts (3 x 20 x 10) and 3,000 hosts (3 x 50 x 20), 100,000 x 3, equal weights.

For each: fresh placement time and pieces per second, balance (load over weight share: max/mean,
min/mean, CV) next to the *random floor* measured in the same run (plain weighted rendezvous, the
straw2-like placement CRUSH does, same rule, no load bound), rule violations (independent check),
the movement factor (moved bytes over the bytes that must move) when one host is added, one is
removed and one node's weight is doubled or halved (``place(previous=...)``), the moves between
unchanged nodes on a reweight, balance after that rebalance, and on 60 hosts also the stateless
movement (fresh placement before vs after, no ``previous``) of ours and of the straw2-like
baseline. The durability table compares our rack-aware placement with a rack-unaware one (ours
with failure domain ``host``) and a uniformly random one (distinct hosts), all in the same run.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks.measuring import write_json
from placement import PlacementResult, durability, place
from placement.assignments import fill
from placement.layouts import build_layout
from placement.placements import to_shard_placement
from placement.reports import balance_of, violating_shards
from placement.settings import PlacementSettings
from topology import labels
from topology.datasets import DataSetSpec, Erasure, Redundancy, Replicas, ShardPlacement
from topology.examples import make_cluster_nodes
from topology.nodes import Node, Resources

GIB = 2**30
#: The rack-aware rule of the CRUSH reference map (chooseleaf over racks).
RACK = labels.DEFAULT_RACK
#: No spreading above the failure domain: the CRUSH-like rule, and the rack-unaware baseline.
NO_SPREAD = PlacementSettings(spread_cost_limit=None)


def cluster(zones: int, racks: int, hosts: int, weights: str = "equal") -> list[Node]:
    """Nodes made from the real EKS node object."""
    return [Node.from_object(o) for o in make_cluster_nodes(zones=zones, racks_per_zone=racks, hosts_per_rack=hosts, weights=weights)]


def make_spec(shards: int, red: Redundancy, fd: str = RACK) -> DataSetSpec:
    return DataSetSpec("bench", "bench", shards, np.full(shards, GIB, dtype=np.int64), red, fd, {})


def straw2_like(nodes: Sequence[Node], spec: DataSetSpec, seed: int = 0) -> ShardPlacement:
    """The random floor: plain weighted rendezvous under the same rule, no load bound, no balancing."""
    layout = build_layout(nodes, spec, spread_cost_limit=None)
    pieces = np.full((spec.shards, spec.redundancy.width), -1, dtype=np.int32)
    loads = np.zeros(layout.size)
    fill(layout, pieces, loads, seed=seed, settings=PlacementSettings(fill_slack=1e18, spread_cost_limit=None))
    return to_shard_placement(layout, pieces)


def uniform_random(nodes: Sequence[Node], spec: DataSetSpec, seed: int = 0) -> ShardPlacement:
    """Distinct hosts drawn uniformly at random per shard (no rack or zone awareness)."""
    rng = np.random.default_rng(seed)
    names = tuple(sorted(n.name for n in nodes))
    w = spec.redundancy.width
    out = np.empty((spec.shards, w), dtype=np.int32)
    for a in range(0, spec.shards, 20_000):
        block = rng.random((min(20_000, spec.shards - a), len(names)))
        out[a : a + len(block)] = np.argpartition(block, w - 1, axis=1)[:, :w]
    return ShardPlacement(names, out)


def balance_dict(nodes: Sequence[Node], spec: DataSetSpec, placement: ShardPlacement, *, spread: bool = True) -> dict[str, float]:
    """Balance against the targets of the rule used (with or without spreading above the domain)."""
    layout = build_layout(nodes, spec, spread_cost_limit=PlacementSettings().spread_cost_limit if spread else None)
    lut = np.array([*(layout.index[n] for n in placement.nodes), -1], dtype=np.int32)
    pieces = lut[placement.pieces]
    rows, _ = np.nonzero(pieces >= 0)
    loads = np.bincount(pieces[pieces >= 0], weights=layout.piece_bytes[rows], minlength=layout.size).astype(np.float64)
    b = balance_of(layout, loads)
    violations = len(violating_shards(layout, pieces))
    return {"max_over_mean": b.max_over_mean, "min_over_mean": b.min_over_mean, "cv": b.cv, "violations": violations}


def held_bytes(placement: ShardPlacement, spec: DataSetSpec, node: str) -> float:
    if node not in placement.nodes:
        return 0.0
    i = placement.nodes.index(node)
    rows = np.nonzero(placement.pieces == i)[0]
    return float((spec.shard_sizes[rows] * spec.redundancy.piece_fraction()).sum())


def moved_bytes(result: PlacementResult, spec: DataSetSpec) -> float:
    frac = spec.redundancy.piece_fraction()
    return float(sum(float(spec.shard_sizes[m.shard]) * frac for m in result.moves))


def stateless_moved(before: ShardPlacement, after: ShardPlacement, spec: DataSetSpec) -> float:
    """Bytes that differ between two placements (per shard as sets for replicas, per index for erasure)."""
    a = np.array([*before.nodes, ""], dtype=object)[before.pieces]
    b = np.array([*after.nodes, ""], dtype=object)[after.pieces]
    frac = spec.redundancy.piece_fraction()
    if isinstance(spec.redundancy, Replicas):
        moved = np.array([len(set(x) - set(y)) for x, y in zip(b.tolist(), a.tolist(), strict=True)])
    else:
        moved = (a != b).sum(axis=1)
    return float((moved * spec.shard_sizes * frac).sum())


def with_storage(node: Node, factor: float) -> Node:
    a = node.allocatable
    res = Resources(a.cpu_m, a.memory_b, int(a.storage_b * factor), a.pods, a.extended)
    return Node(node.name, node.region, node.zone, node.rack, node.labels, res, node.taints, node.unschedulable, node.ready)


def scenario(nodes: list[Node], spec: DataSetSpec, extra: Node, *, stateless: bool) -> dict[str, Any]:
    """Every figure for one cluster and spec."""
    place(nodes, spec)  # warm-up (imports, allocator)
    t0, c0 = time.perf_counter(), time.process_time()
    base = place(nodes, spec)
    fresh_s, fresh_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    pieces = spec.shards * spec.redundancy.width
    out: dict[str, Any] = {
        "nodes": len(nodes),
        "shards": spec.shards,
        "redundancy": str(spec.redundancy),
        "fresh_s": fresh_s,
        "fresh_cpu_s": fresh_cpu_s,
        "pieces_per_s": pieces / fresh_s,
        "ours": balance_dict(nodes, spec, base.placement),
    }
    t0 = time.perf_counter()
    floor = straw2_like(nodes, spec, seed=1)
    out["straw2_like_s"] = time.perf_counter() - t0
    out["random_floor"] = balance_dict(nodes, spec, floor, spread=False)
    plain = build_layout(nodes, spec, spread_cost_limit=None).targets
    spread_layout = build_layout(nodes, spec)
    out["spread_levels"] = [r.level for r in spread_layout.spread]
    out["spread_cost"] = float(np.max(np.abs(spread_layout.targets / plain - 1)))
    if isinstance(spec.redundancy, Replicas) and all(n.allocatable.storage_b == nodes[0].allocatable.storage_b for n in nodes):
        out["binomial_floor_cv"] = math.sqrt((1 - 1 / len(nodes)) / (pieces / len(nodes)))
    # Add one host, remove one, reweight one: with previous (the production path).
    grown = [*nodes, extra]
    t0 = time.perf_counter()
    added = place(grown, spec, previous=base.placement)
    ideal_add = float(build_layout(grown, spec).targets[build_layout(grown, spec).index[extra.name]])
    out["add"] = {
        "factor": moved_bytes(added, spec) / ideal_add,
        "moves": len(added.moves),
        "s": time.perf_counter() - t0,
        "after": balance_dict(grown, spec, added.placement),
    }
    victim = nodes[len(nodes) // 2]
    shrunk = [n for n in nodes if n.name != victim.name]
    removed = place(shrunk, spec, previous=base.placement)
    out["remove"] = {
        "factor": moved_bytes(removed, spec) / held_bytes(base.placement, spec, victim.name),
        "moves": len(removed.moves),
        "after": balance_dict(shrunk, spec, removed.placement),
    }
    for label, factor in (("reweight_x2", 2.0), ("reweight_x0.5", 0.5)):
        target = nodes[7]
        changed = [with_storage(n, factor) if n.name == target.name else n for n in nodes]
        layout = build_layout(changed, spec)
        result = place(changed, spec, previous=base.placement)
        ideal = abs(float(layout.targets[layout.index[target.name]]) - held_bytes(base.placement, spec, target.name))
        between = sum(1 for m in result.moves if target.name not in (m.from_node, m.to_node))
        out[label] = {
            "factor": moved_bytes(result, spec) / ideal if ideal else 0.0,
            "moves": len(result.moves),
            "between_unchanged": between,
            "after": balance_dict(changed, spec, result.placement),
        }
    if stateless:
        fresh_grown = place(grown, spec).placement
        fresh_shrunk = place(shrunk, spec).placement
        floor_grown, floor_shrunk = straw2_like(grown, spec, seed=1), straw2_like(shrunk, spec, seed=1)
        ideal_rm = held_bytes(base.placement, spec, victim.name)
        ideal_rm_floor = held_bytes(floor, spec, victim.name)
        ideal_add_floor = held_bytes(floor_grown, spec, extra.name)
        out["stateless"] = {
            "ours_add": stateless_moved(base.placement, fresh_grown, spec) / ideal_add,
            "ours_remove": stateless_moved(base.placement, fresh_shrunk, spec) / ideal_rm,
            "straw2_like_add": stateless_moved(floor, floor_grown, spec) / ideal_add_floor,
            "straw2_like_remove": stateless_moved(floor, floor_shrunk, spec) / ideal_rm_floor,
        }
    return out


def durability_table(nodes: list[Node], spec: DataSetSpec, *, f: int) -> dict[str, Any]:
    """Ours (rack-aware) vs rack-unaware (ours, failure domain host) vs uniformly random hosts."""
    host_spec = make_spec(spec.shards, spec.redundancy, labels.HOSTNAME)
    rows = {
        "kbl (rack)": place(nodes, spec).placement,
        "rack-unaware (kbl, host)": place(nodes, host_spec, settings=NO_SPREAD).placement,
        "kbl (rack), no zone spread": place(nodes, spec, settings=NO_SPREAD).placement,
        "random hosts": uniform_random(nodes, spec, seed=2),
    }
    table: dict[str, Any] = {}
    for label, placement in rows.items():
        rep = durability(nodes, spec, placement, f=f, samples=300)
        table[label] = {
            **{f"{d.level}_worst_lost": d.worst_lost for d in rep.domains},
            **{f"{d.level}_worst_at_risk": d.worst_at_risk for d in rep.domains},
            "f": f,
            "f_method": rep.nodes.method,
            "f_worst_lost": rep.nodes.worst_lost,
            "f_mean_lost": rep.nodes.mean_lost,
            "f_p_any_loss": rep.nodes.p_any_loss,
        }
    return table


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", dest="json_out", metavar="OUT", help="write the figures as JSON")
    parser.add_argument("--quick", action="store_true", help="10,000 shards, no 3,000-host case (a smoke run)")
    parser.add_argument("--shards", type=int, default=100_000)
    parser.add_argument(
        "--scale", action="store_true",
        help="issue 24 instead: 5,000 and 100,000 nodes, hosts joining, the tree beside the exact algorithm (exits 1 on a missed target)",
    )


def _fmt(b: dict[str, float]) -> str:
    return f"max/mean {b['max_over_mean']:.4f} min/mean {b['min_over_mean']:.4f} CV {100 * b['cv']:.2f}% violations {b['violations']}"


def _print(name: str, r: dict[str, Any]) -> None:
    print(f"{name}: {r['nodes']} nodes, {r['shards']:,} x {r['redundancy']}")
    print(
        f"  fresh {r['fresh_s']:.3f} s wall, {r['fresh_cpu_s']:.3f} s CPU ({r['pieces_per_s']:,.0f} pieces/s); "
        f"straw2-like {r['straw2_like_s']:.3f} s; spread above the rule: {r['spread_levels']} (target shift {100 * r['spread_cost']:.1f}%)"
    )
    print(f"  ours         {_fmt(r['ours'])}")
    floor = f" (binomial {100 * r['binomial_floor_cv']:.2f}%)" if "binomial_floor_cv" in r else ""
    print(f"  random floor {_fmt(r['random_floor'])}{floor}")
    for key in ("add", "remove", "reweight_x2", "reweight_x0.5"):
        m = r[key]
        extra = f", between unchanged nodes {m['between_unchanged']}" if "between_unchanged" in m else ""
        print(f"  {key:13s} factor {m['factor']:.3f} ({m['moves']} moves{extra}); after: {_fmt(m['after'])}")
    if "stateless" in r:
        s = r["stateless"]
        print(
            f"  stateless (fresh vs fresh): ours add {s['ours_add']:.2f} remove {s['ours_remove']:.2f}; "
            f"straw2-like add {s['straw2_like_add']:.2f} remove {s['straw2_like_remove']:.2f}"
        )


def run(args: argparse.Namespace) -> int:
    if args.scale:
        from benchmarks import placement_scale

        args.shards = 10_000 if args.quick else args.shards
        return placement_scale.run(args)
    started = time.perf_counter()
    shards = 10_000 if args.quick else args.shards
    results: dict[str, Any] = {"shards": shards, "scenarios": {}, "durability": {}}
    small = {w: cluster(3, 4, 5, w) for w in ("equal", "mixed")}
    extra60 = cluster(3, 4, 6)[5]  # node-0-0-5: a sixth host in zone a, rack 0
    for weights, nodes in small.items():
        for red in (Replicas(3), Erasure(4, 2)):
            name = f"60 hosts, {weights}, {red}"
            r = scenario(nodes, make_spec(shards, red), extra60, stateless=True)
            results["scenarios"][name] = r
            _print(name, r)
    big = [(600, (3, 20, 10))] if args.quick else [(600, (3, 20, 10)), (3000, (3, 50, 20))]
    for count, (z, k, h) in big:
        nodes = cluster(z, k, h)
        extra = cluster(z, k, h + 1)[h]
        name = f"{count} hosts, equal, 3x replicas"
        r = scenario(nodes, make_spec(shards, Replicas(3)), extra, stateless=False)
        results["scenarios"][name] = r
        _print(name, r)
    for red in (Replicas(3), Erasure(4, 2)):
        table = durability_table(small["equal"], make_spec(shards, red), f=3)
        results["durability"][str(red)] = table
        print(f"durability, 60 hosts, {red}, {shards:,} shards (worst shards lost; f = 3 simultaneous node failures):")
        for label, row in table.items():
            print(
                f"  {label:26s} host {row['host_worst_lost']:>6} rack {row['rack_worst_lost']:>6} zone {row['zone_worst_lost']:>6}"
                f" | f=3 worst {row['f_worst_lost']:>4} ({row['f_method']}) mean {row['f_mean_lost']:.3f}"
                f" P(any) {row['f_p_any_loss']:.3f}"
            )
    results["total_s"] = time.perf_counter() - started
    print(f"total {results['total_s']:.1f} s")
    write_json(args.json_out, results)
    return 0
