"""Data-loss simulation: long seeded runs of node, rack and zone failures and scale-downs.

One run draws a sequence of *rounds* from a seed. A round is one burst of events between two
repairs: node failures, a rack failure, a zone failure, or a node failure, then a scale-down (the
controller removing two idle nodes), then another node failure. Every round is classified against the redundancy's
promise: a ``k``-tolerant layout over racks (``Replicas(3)``, ``Erasure(4, 2)``) promises to
survive any ``k`` node failures, or any ``k`` rack failures, between repairs; a scale-down is
allowed only when :func:`~placement.durability.removal_is_safe` says every shard keeps a spare.
Zone failures and bursts of more than ``k`` failures are *beyond* the promise and reported apart.

Every policy sees exactly the same nodes, failures, joins and scale-down requests:

- ``kbl``: :func:`~placement.placements.place` over racks; after each round
  :func:`~placement.repairs.repair_plan` rebuilds missing pieces on survivors; a scale-down
  whose removal is unsafe drains the nodes first (:func:`~placement.repairs.repair_plan` with
  them ``draining``, the controller's own drain plan: only their pieces move, copied while they
  still serve them), then removes them.
- ``random``: every piece on a uniformly random distinct node (no failure domains), missing
  pieces rebuilt on random nodes, scale-downs carried out at once.

A shard is *lost* when fewer than ``needed`` of its pieces survive a round. Lost shards are
counted, then restored from outside (re-placed as new) so the run keeps measuring. Failed nodes
are replaced by fresh nodes of the same capacity in the same rack after the repair, so the
cluster keeps its size and shape.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from placement import place, removal_is_safe, repair_plan
from topology.datasets import DataSet, DataSetSpec, Erasure, Replicas, ShardPlacement, dataset_object
from topology.examples import make_cluster_nodes, make_node
from topology.nodes import Node

Policy = Literal["kbl", "random"]
POLICIES: tuple[Policy, ...] = ("kbl", "random")

#: Round kinds and whether a k-tolerant (k >= 2) layout over racks promises to survive them.
WITHIN = ("1 node", "2 nodes", "1 rack", "1 node, scale-down of 2, 1 node")
BEYOND = ("3 nodes", "1 zone", "1 rack + 1 node")


@dataclass(frozen=True, slots=True)
class SimulationSettings:
    """A run's shape: topology, datasets, length and the mix of round kinds.

    ``beyond_share`` is the probability that a round is drawn from :data:`BEYOND`.
    """

    zones: int = 3
    racks_per_zone: int = 4
    hosts_per_rack: int = 4
    shards: int = 128
    rounds: int = 200
    beyond_share: float = 0.25
    seed: int = 0


@dataclass(slots=True)
class Tally:
    """Shards lost per round kind (and rounds of that kind), for one policy and dataset."""

    lost: dict[str, int] = field(default_factory=dict)
    rounds: dict[str, int] = field(default_factory=dict)
    drained: int = 0
    unsafe_removals: int = 0

    def add(self, kind: str, lost: int) -> None:
        self.lost[kind] = self.lost.get(kind, 0) + lost
        self.rounds[kind] = self.rounds.get(kind, 0) + 1

    def total(self, kinds: Sequence[str]) -> int:
        return sum(self.lost.get(k, 0) for k in kinds)


@dataclass(slots=True)
class _Layout:
    """One policy's pieces of one dataset: ``names[s][p]`` is a node name or ``None``."""

    spec: DataSetSpec
    names: list[list[str | None]]

    def placement(self) -> ShardPlacement:
        nodes = sorted({n for row in self.names for n in row if n is not None})
        index = {n: i for i, n in enumerate(nodes)}
        pieces = np.array([[index[n] if n is not None else -1 for n in row] for row in self.names], dtype=np.int32)
        return ShardPlacement(tuple(nodes), pieces.reshape(len(self.names), self.spec.redundancy.width))

    @classmethod
    def of(cls, spec: DataSetSpec, placement: ShardPlacement) -> _Layout:
        names = np.array([*placement.nodes, None], dtype=object)[placement.pieces]
        return cls(spec, [list(row) for row in names])

    def drop(self, gone: set[str]) -> int:
        """Remove pieces on ``gone`` nodes; returns shards that fell below ``needed`` now."""
        needed = self.spec.redundancy.needed
        lost = 0
        for row in self.names:
            before = sum(n is not None for n in row)
            for p, n in enumerate(row):
                if n in gone:
                    row[p] = None
            after = sum(n is not None for n in row)
            if after < needed <= before:
                lost += 1
        return lost


def datasets(shards: int) -> list[DataSetSpec]:
    """The simulated DataSets: 3 replicas over racks and a 4+2 erasure code over racks."""
    out = []
    for name, red in (("replicas-3", Replicas(3)), ("erasure-4+2", Erasure(4, 2))):
        obj = dataset_object(name, shards=shards, shard_size="8Gi", redundancy=red, failure_domain="rack")
        out.append(DataSet.from_object(obj).spec)
    return out


def _random_fill(layout: _Layout, nodes: Sequence[str], rng: random.Random) -> None:
    """Put every missing piece on a random node not already holding that shard."""
    for row in layout.names:
        for p, n in enumerate(row):
            if n is None:
                used = {x for x in row if x is not None}
                free = [x for x in nodes if x not in used]
                if free:
                    row[p] = rng.choice(free)


def _kbl_repair(layout: _Layout, nodes: list[Node], failed: set[str], seed: int) -> _Layout:
    """Rebuild missing pieces with the placement engine (lost shards are restored as new)."""
    plan = repair_plan(nodes, layout.spec, layout.placement(), failed, seed=seed)
    repaired = _Layout.of(layout.spec, plan.placement)
    needed = layout.spec.redundancy.needed
    if any(sum(n is not None for n in row) < needed for row in repaired.names) or plan.unplaceable:
        # Lost shards come back from outside: place them afresh around what survives.
        fresh = place([n for n in nodes if n.name not in failed], layout.spec, previous=repaired.placement(), seed=seed)
        repaired = _Layout.of(layout.spec, fresh.placement)
    return repaired


def _kbl_drain(layout: _Layout, nodes: list[Node], draining: set[str], seed: int) -> _Layout:
    """Copy every piece off ``draining`` nodes while they still serve it: the controller's
    ``kbl.io/drain-nodes`` request, planned by :func:`~placement.repairs.repair_plan` with
    ``draining`` exactly as the controller plans it. Every other piece stays where it is; nothing
    is lost (the pieces are copied, not rebuilt)."""
    plan = repair_plan(nodes, layout.spec, layout.placement(), (), draining=draining, seed=seed)
    return _Layout.of(layout.spec, plan.placement)


class _World:
    """Nodes over time: failures remove them, replacements join in the same rack."""

    def __init__(self, cfg: SimulationSettings) -> None:
        self.nodes: dict[str, Node] = {}
        for obj in make_cluster_nodes(zones=cfg.zones, racks_per_zone=cfg.racks_per_zone, hosts_per_rack=cfg.hosts_per_rack):
            node = Node.from_object(obj)
            self.nodes[node.name] = node
        self.generation = 0

    def names(self) -> list[str]:
        return sorted(self.nodes)

    def racks(self) -> list[tuple[str, str]]:
        return sorted({(n.zone, n.rack) for n in self.nodes.values()})

    def in_rack(self, zone: str, rack: str) -> list[str]:
        return sorted(n.name for n in self.nodes.values() if (n.zone, n.rack) == (zone, rack))

    def in_zone(self, zone: str) -> list[str]:
        return sorted(n.name for n in self.nodes.values() if n.zone == zone)

    def replace(self, gone: Sequence[str]) -> None:
        """Remove ``gone`` and add one fresh node of the same storage per removed node in its rack."""
        for name in gone:
            old = self.nodes.pop(name)
            self.generation += 1
            plain_zone = old.zone.split("/", 1)[-1]  # the model names zones "region/zone", racks "region/zone/rack"
            plain_rack = old.rack.rsplit("/", 1)[-1]
            storage = old.allocatable.get("ephemeral-storage")  # a like-for-like replacement (same node group)
            obj = make_node(f"{name.split('.')[0]}.g{self.generation}", zone=plain_zone, rack=plain_rack, storage_b=storage)
            node = Node.from_object(obj)
            self.nodes[node.name] = node


Step = tuple[Literal["fail", "remove"], list[str]]


def _draw_round(rng: random.Random, world: _World, cfg: SimulationSettings) -> tuple[str, list[Step]]:
    """``(kind, steps)``: the round's failures and scale-downs, in order, before the next repair."""
    beyond = rng.random() < cfg.beyond_share
    kind = rng.choice(BEYOND if beyond else WITHIN)
    names = world.names()
    if kind in ("1 node", "2 nodes", "3 nodes"):
        return kind, [("fail", rng.sample(names, int(kind[0])))]
    if kind == "1 rack":
        zone, rack = rng.choice(world.racks())
        return kind, [("fail", world.in_rack(zone, rack))]
    if kind == "1 rack + 1 node":
        zone, rack = rng.choice(world.racks())
        members = world.in_rack(zone, rack)
        return kind, [("fail", members), ("fail", [rng.choice([n for n in names if n not in members])])]
    if kind == "1 zone":
        zone = rng.choice(sorted({z for z, _ in world.racks()}))
        return kind, [("fail", world.in_zone(zone))]
    # A node fails; before the repair the controller scales 2 idle nodes down; another node fails.
    first, down_a, down_b, second = rng.sample(names, 4)
    return kind, [("fail", [first]), ("remove", [down_a, down_b]), ("fail", [second])]


@dataclass(frozen=True, slots=True)
class SimulationResult:
    """Per dataset and policy, the :class:`Tally` of a run."""

    settings: SimulationSettings
    tallies: dict[tuple[str, Policy], Tally]
    shards: dict[str, int]


def simulate(cfg: SimulationSettings | None = None) -> SimulationResult:
    """Run the simulation described in the module docstring.

    Parameters
    ----------
    cfg:
        Topology, datasets, number of rounds, mix of round kinds and seed.

    Returns
    -------
    SimulationResult
        Shards lost per round kind for every dataset and policy.
    """
    cfg = cfg or SimulationSettings()
    rng = random.Random(cfg.seed)
    world = _World(cfg)
    specs = datasets(cfg.shards)
    layouts: dict[tuple[str, Policy], _Layout] = {}
    tallies: dict[tuple[str, Policy], Tally] = {}
    nodes = list(world.nodes.values())
    for spec in specs:
        layouts[(spec.name, "kbl")] = _Layout.of(spec, place(nodes, spec, seed=cfg.seed).placement)
        baseline = _Layout(spec, [[None] * spec.redundancy.width for _ in range(spec.shards)])
        _random_fill(baseline, world.names(), random.Random(cfg.seed + 1))
        layouts[(spec.name, "random")] = baseline
        for policy in POLICIES:
            tallies[(spec.name, policy)] = Tally()
    fill_rng = random.Random(cfg.seed + 2)
    for round_no in range(cfg.rounds):
        kind, steps = _draw_round(rng, world, cfg)
        gone: list[str] = []
        for (name, policy), before in list(layouts.items()):
            layout = before
            tally = tallies[(name, policy)]
            lost = 0
            down: set[str] = set()
            for action, members in steps:
                if action == "remove":
                    alive = [n for n in world.nodes.values() if n.name not in down]
                    if policy == "kbl":
                        if not removal_is_safe(alive, layout.spec, layout.placement(), members, min_spare=1):
                            # Drain: rebuild what the nodes hold elsewhere while they still serve it, then remove them.
                            layout = _kbl_drain(layout, alive, set(members), seed=round_no)
                            tally.drained += 1
                    elif _would_lose(layout, members):
                        tally.unsafe_removals += 1
                down |= set(members)
                lost += layout.drop(set(members))
            tally.add(kind, lost)
            layouts[(name, policy)] = layout
            gone = sorted(down)
        world.replace(gone)
        survivors = list(world.nodes.values())
        for (name, policy), layout in list(layouts.items()):
            if policy == "kbl":
                layouts[(name, policy)] = _kbl_repair(layout, survivors, set(gone), seed=round_no)
            else:
                _random_fill(layout, world.names(), fill_rng)
    return SimulationResult(cfg, tallies, {s.name: s.shards for s in specs})


def _would_lose(layout: _Layout, nodes: Sequence[str]) -> bool:
    """True if removing ``nodes`` leaves some shard it touches below ``needed + 1`` pieces (no spare)."""
    needed = layout.spec.redundancy.needed
    out = set(nodes)
    for row in layout.names:
        held = [n for n in row if n is not None]
        if out & set(held) and len([n for n in held if n not in out]) < needed + 1:
            return True
    return False


def table(result: SimulationResult) -> list[dict[str, object]]:
    """One row per dataset and policy: shards lost within and beyond the promise."""
    rows: list[dict[str, object]] = []
    for (name, policy), tally in sorted(result.tallies.items()):
        rows.append(
            {
                "dataset": name,
                "policy": policy,
                "shards": result.shards[name],
                "rounds_within": sum(tally.rounds.get(k, 0) for k in WITHIN),
                "lost_within": tally.total(WITHIN),
                "rounds_beyond": sum(tally.rounds.get(k, 0) for k in BEYOND),
                "lost_beyond": tally.total(BEYOND),
                "lost_by_kind": dict(sorted(tally.lost.items())),
                "drained_before_removal": tally.drained,
                "unsafe_removals_done": tally.unsafe_removals,
            }
        )
    return rows
