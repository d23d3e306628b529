"""Spot interruptions: what N two-minute warnings cost a 3x and a 4+2 DataSet, kbl vs doing nothing.

A *simulation* of the copy, not a measurement of bytes on a wire. The cluster is
``zones x racks x hosts`` equal nodes; a ``Replicas(3)`` and an ``Erasure(4, 2)`` DataSet, both
over racks, are placed by :func:`~placement.placements.place`. ``N`` nodes, drawn at random
(seeded), get a spot interruption warning at t = 0 and vanish at t = 120 s (``--notice-s``).

- *nothing*: the warned nodes' pieces vanish with them.
- *kbl*: the interruption handler marks the nodes ``kbl.io/drain`` with the deadline; the
  reconciler's drain plan is :func:`~placement.repairs.repair_plan` with the warned nodes
  ``draining`` (its targets). The copy model: pieces are copied one after the other at
  ``--copy-rate`` (aggregate bytes per second over the cluster), *most at risk first*: the next
  piece is always one of the shard with the fewest safe pieces (staying + already copied) above
  what it needs to be read (1 for replicas, k for erasure), so every shard first gets what keeps
  it readable, then its full redundancy back. A piece counts once its copy ends before the deadline.

Per DataSet and N it reports the shards that fall below their redundancy and the shards lost for
both policies, and the bound beside them: *bytes at risk* (the bytes that must be copied so that
no shard is lost: for each shard, the pieces it lacks to be readable without the warned nodes)
divided by the copy rate. When the bound is within the notice, kbl loses no shard; the time to
copy everything the warned nodes hold (full redundancy) is printed too.
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from benchmarks.measuring import write_json
from placement import place, repair_plan
from topology.datasets import DataSet, DataSetSpec, Erasure, Replicas, ShardPlacement, dataset_object
from topology.examples import make_cluster_nodes
from topology.nodes import Node

SPOT_NOTICE_S = 120.0
MB = 10**6


@dataclass(frozen=True, slots=True)
class Scenario:
    """One run's shape; sizes in bytes, rate in bytes per second, times in seconds."""

    zones: int = 3
    racks_per_zone: int = 4
    hosts_per_rack: int = 4
    shards: int = 256
    shard_bytes: int = 2 * 2**30
    copy_rate: float = 1000 * MB
    notice_s: float = SPOT_NOTICE_S
    seed: int = 0


@dataclass(frozen=True, slots=True)
class Row:
    """The figures of one DataSet, one number of warnings and one copy rate."""

    dataset: str
    warnings: int
    copy_rate_mb_s: float
    bytes_on_warned: int
    bytes_at_risk: int
    bound_s: float
    full_copy_s: float
    notice_s: float
    below_nothing: int
    lost_nothing: int
    below_kbl: int
    lost_kbl: int
    copied_pieces: int


def piece_bytes(spec: DataSetSpec, shard: int) -> int:
    """Bytes of one piece of ``shard``: the shard for replicas, a k-th of it for erasure."""
    size = int(spec.shard_sizes[shard])
    if isinstance(spec.redundancy, Erasure):
        return math.ceil(size / spec.redundancy.k)
    return size


def datasets(cfg: Scenario) -> list[DataSetSpec]:
    out = []
    for name, red in (("replicas-3", Replicas(3)), ("erasure-4+2", Erasure(4, 2))):
        obj = dataset_object(name, shards=cfg.shards, shard_size=str(cfg.shard_bytes), redundancy=red, failure_domain="rack")
        out.append(DataSet.from_object(obj).spec)
    return out


def _staying(placement: ShardPlacement, warned: set[str]) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Per shard, the pieces on nodes that stay."""
    gone = np.array([n in warned for n in placement.nodes] + [True], dtype=bool)  # index -1 -> "missing"
    idx = np.where(placement.pieces >= 0, placement.pieces, len(placement.nodes))
    return np.asarray((~gone[idx]).sum(axis=1), dtype=np.int64)


def simulate(spec: DataSetSpec, nodes: Sequence[Node], placement: ShardPlacement, warned: set[str], cfg: Scenario) -> Row:
    """Both policies on one DataSet (see the module docstring)."""
    needed = spec.redundancy.needed
    total = placement.pieces.shape[1]
    staying = _staying(placement, warned)
    on_warned = total - staying
    below_nothing = int((staying < total).sum())
    lost_nothing = int((staying < needed).sum())
    bytes_on_warned = sum(int(on_warned[s]) * piece_bytes(spec, s) for s in range(spec.shards))
    bytes_at_risk = sum(max(0, needed - int(staying[s])) * piece_bytes(spec, s) for s in range(spec.shards))
    # kbl: the reconciler's drain plan; copies most at risk first, at the copy rate, until the deadline
    plan = repair_plan(nodes, spec, placement, (), draining=warned, seed=cfg.seed)
    copies: dict[int, int] = {}
    for rebuild in plan.rebuilds:
        if rebuild.from_node is not None:
            copies[rebuild.shard] = copies.get(rebuild.shard, 0) + 1
    safe = {s: int(staying[s]) for s in copies}
    queue = [(safe[s] - needed, s) for s in sorted(copies)]
    heapq.heapify(queue)
    clock = 0.0
    copied = 0
    while queue:
        _, shard = heapq.heappop(queue)
        took = piece_bytes(spec, shard) / cfg.copy_rate
        if clock + took > cfg.notice_s:
            break  # one copy at a time: the next one would not finish in time
        clock += took
        copied += 1
        safe[shard] += 1
        copies[shard] -= 1
        if copies[shard]:
            heapq.heappush(queue, (safe[shard] - needed, shard))
    after = staying.copy()
    for shard, count in safe.items():
        after[shard] = count
    return Row(
        dataset=spec.name, warnings=len(warned), copy_rate_mb_s=cfg.copy_rate / MB,
        bytes_on_warned=bytes_on_warned, bytes_at_risk=bytes_at_risk,
        bound_s=round(bytes_at_risk / cfg.copy_rate, 1), full_copy_s=round(bytes_on_warned / cfg.copy_rate, 1), notice_s=cfg.notice_s,
        below_nothing=below_nothing, lost_nothing=lost_nothing,
        below_kbl=int((after < total).sum()), lost_kbl=int((after < needed).sum()), copied_pieces=copied,
    )


def run_scenarios(warnings: Sequence[int], rates_mb_s: Sequence[float], base: Scenario, trials: int = 1) -> list[Row]:
    """Every (N, rate) pair on the same cluster and placements; ``trials`` draws of warned nodes each,
    the worst trial (most shards lost by kbl, then by nothing) reported."""
    raw = make_cluster_nodes(zones=base.zones, racks_per_zone=base.racks_per_zone, hosts_per_rack=base.hosts_per_rack)
    nodes = [Node.from_object(o) for o in raw]
    names = [n.name for n in nodes]
    placed = [(spec, place(nodes, spec, seed=base.seed).placement) for spec in datasets(base)]
    rows = []
    for n in warnings:
        draws = [set(random.Random(base.seed * 1000 + n * 100 + t).sample(names, n)) for t in range(trials)]
        for rate in rates_mb_s:
            cfg = Scenario(**{**asdict(base), "copy_rate": rate * MB})
            for spec, placement in placed:
                found = [simulate(spec, nodes, placement, warned, cfg) for warned in draws]
                rows.append(max(found, key=lambda r: (r.lost_kbl, r.lost_nothing, r.below_kbl)))
    return rows


def lines(rows: Sequence[Row], cfg: Scenario) -> list[str]:
    out = [
        f"Spot interruptions (simulated copy): {cfg.zones} zones x {cfg.racks_per_zone} racks x {cfg.hosts_per_rack} hosts, "
        f"{cfg.shards} shards of {cfg.shard_bytes / 2**30:g} GiB per DataSet, notice {cfg.notice_s:g} s",
        f"{'dataset':<12} {'N':>3} {'MB/s':>6} {'GB on N':>8} {'GB risk':>8} {'bound s':>8} {'all s':>7} "
        f"{'below/nothing':>13} {'lost/nothing':>12} {'below/kbl':>9} {'lost/kbl':>8}",
    ]
    for r in rows:
        out.append(
            f"{r.dataset:<12} {r.warnings:>3} {r.copy_rate_mb_s:>6g} {r.bytes_on_warned / 1e9:>8.1f} {r.bytes_at_risk / 1e9:>8.1f} "
            f"{r.bound_s:>8} {r.full_copy_s:>7} {r.below_nothing:>13} {r.lost_nothing:>12} {r.below_kbl:>9} {r.lost_kbl:>8}"
        )
    out.append("bound s = bytes at risk (pieces each shard lacks to stay readable) / copy rate")
    out.append("all s = every piece on the warned nodes / copy rate (full redundancy back)")
    return out


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--warnings", default="1,2,3,4,6", help="numbers of simultaneous spot warnings (default %(default)s)")
    parser.add_argument("--copy-rate", default="100,1000", help="aggregate copy rates in MB/s (default %(default)s)")
    parser.add_argument("--shards", type=int, default=256, help="shards per DataSet (default %(default)s)")
    parser.add_argument("--shard-gib", type=float, default=2.0, help="shard size in GiB (default %(default)s)")
    parser.add_argument("--notice-s", type=float, default=SPOT_NOTICE_S, help="warning to reclaim, seconds (default %(default)s)")
    parser.add_argument("--trials", type=int, default=5, help="draws of warned nodes per N; the worst is shown (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--output", "--json", dest="output", metavar="FILE", help="write the figures as JSON")


def run(args: argparse.Namespace) -> int:
    cfg = Scenario(shards=args.shards, shard_bytes=int(args.shard_gib * 2**30), notice_s=args.notice_s, seed=args.seed)
    warnings = [int(x) for x in args.warnings.split(",") if x]
    rates = [float(x) for x in args.copy_rate.split(",") if x]
    rows = run_scenarios(warnings, rates, cfg, trials=args.trials)
    print("\n".join(lines(rows, cfg)), flush=True)
    write_json(args.output, {"settings": asdict(cfg), "rows": [asdict(r) for r in rows]})
    unexplained = [r for r in rows if r.lost_kbl and r.bound_s <= r.notice_s]
    return 1 if unexplained else 0
