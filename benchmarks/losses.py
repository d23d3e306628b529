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

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from dataplane.reconciler import Reconciler, ReconcilerSettings
from kube.api import DATASETS, NODE_HOLDINGS, NODES
from kube.datasets import list_datasets
from kube.memory import MemoryApi
from placement import place, removal_is_safe, repair_plan
from topology.datasets import DataSet, DataSetSpec, Erasure, Replicas, ShardPlacement, dataset_object
from topology.examples import make_cluster_nodes, make_node
from topology.holdings import DataSetHoldings, NodeHoldings, piece_key
from topology.nodes import Node
from topology.shards import parse_shards

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


# ------------------------------------------------------------------------------------------------
# Timed runs with the real placement reconciler: copies take time.
#
# The rounds above repair instantly. Below, the real :class:`~dataplane.reconciler.Reconciler`
# runs in-process on a :class:`~kube.memory.MemoryApi`, and simulated node agents copy pieces at a
# finite rate per node (``copy_rate_bps`` received per node, one piece at a time, ``piece_bytes``
# each), reporting through ``NodeHoldings`` exactly as the agent contract says. A failure that
# strikes while earlier repairs are still copying can now lose a shard.

GIB = 1024**3
MIB = 1024**2
#: (dataset key, piece key, shard)
Piece = tuple[str, str, int]


@dataclass(frozen=True, slots=True)
class TimedSettings:
    """A timed run: topology, data, copy speed, failure process and length (seconds, bytes).

    Every node fails independently with mean time between failures ``node_mtbf_h`` hours; a
    failure takes the node's whole rack with probability ``rack_share``. A failed node's object is
    deleted (lost at once) and a like-for-like node joins its rack ``replace_after_s`` later.
    """

    zones: int = 3
    racks_per_zone: int = 4
    hosts_per_rack: int = 3
    shards: int = 96
    piece_bytes: int = 8 * GIB
    copy_rate_bps: float = 25 * MIB
    step_s: float = 60.0
    hours: float = 24.0
    node_mtbf_h: float = 24.0
    rack_share: float = 0.25
    replace_after_s: float = 900.0
    seed: int = 0


class CopyingAgents:
    """Simulated node agents: a queue of wanted pieces per node, received at ``rate_bps``.

    Each node copies its wanted pieces in the order given, one at a time; the kbl runs list a
    node's repairs (pieces missing everywhere in the target: no transfer names them) before its
    moves (transfer targets, whose old holder still serves them), as an agent should.

    A piece can be copied only while it is readable (a live node holds it for replicas, ``k``
    distinct pieces of the shard are held for erasure); a piece is deleted only when the node is
    no longer asked to keep it (no target slot, no transfer source), as the contract says.
    """

    def __init__(self, rate_bps: float, piece_bytes: Mapping[str, float], needed: Mapping[str, int]) -> None:
        self.rate_bps = rate_bps
        self.piece_bytes = piece_bytes
        self.needed = needed
        self.held: dict[str, set[Piece]] = {}
        self.progress: dict[str, tuple[Piece, float]] = {}
        self.copied_bytes = 0.0

    def readable_count(self, key: str, shard: int) -> int:
        return len({p[1] for pieces in self.held.values() for p in pieces if p[0] == key and p[2] == shard})

    def holders(self) -> dict[tuple[str, int], set[str]]:
        out: dict[tuple[str, int], set[str]] = {}
        for pieces in self.held.values():
            for key, pk, shard in pieces:
                out.setdefault((key, shard), set()).add(pk)
        return out

    def step(self, dt: float, wanted: Mapping[str, Sequence[Piece]], keep: Mapping[str, set[Piece]]) -> int:
        """``dt`` seconds of copying, then deletions; returns pieces completed."""
        have = self.holders()
        finished = 0
        for node in sorted(wanted):
            mine = self.held.setdefault(node, set())
            queue = [p for p in wanted[node] if p not in mine]
            current = self.progress.pop(node, None)
            done = 0.0
            if current is not None and current[0] in queue:
                queue.remove(current[0])
                queue.insert(0, current[0])
                done = current[1]
            budget = self.rate_bps * dt
            for piece in queue:
                if budget <= 0:
                    break
                if len(have.get((piece[0], piece[2]), ())) < self.needed[piece[0]]:
                    done = 0.0
                    continue  # nothing to copy from
                need = self.piece_bytes[piece[0]] - done
                if budget >= need:
                    mine.add(piece)
                    budget -= need
                    self.copied_bytes += need
                    finished += 1
                    done = 0.0
                else:
                    self.progress[node] = (piece, done + budget)
                    self.copied_bytes += budget
                    break
        for node in list(self.held):
            self.held[node] = {p for p in self.held[node] if p in keep.get(node, set())}
        return finished


def _timeline(cfg: TimedSettings) -> tuple[list[dict[str, Any]], list[list[tuple[str, Any]]]]:
    """The initial node objects and, per step, the events: ``("fail", [names])``, ``("join", obj)``."""
    rng = random.Random(cfg.seed)
    initial = make_cluster_nodes(zones=cfg.zones, racks_per_zone=cfg.racks_per_zone, hosts_per_rack=cfg.hosts_per_rack, storage_b=10**13)
    alive = {o["metadata"]["name"]: o for o in initial}
    steps = int(cfg.hours * 3600 / cfg.step_s)
    joins: dict[int, list[dict[str, Any]]] = {}
    out: list[list[tuple[str, Any]]] = []
    generation = 0
    p_fail = cfg.step_s / (cfg.node_mtbf_h * 3600)
    for step in range(steps):
        events: list[tuple[str, Any]] = []
        for obj in joins.pop(step, []):
            alive[obj["metadata"]["name"]] = obj
            events.append(("join", obj))
        failed: set[str] = set()
        for name in sorted(alive):
            if name not in failed and rng.random() < p_fail:
                if rng.random() < cfg.rack_share:
                    rack = Node.from_object(alive[name]).rack
                    failed |= {n for n, o in alive.items() if Node.from_object(o).rack == rack}
                else:
                    failed.add(name)
        if failed:
            events.append(("fail", sorted(failed)))
            due = step + max(1, int(cfg.replace_after_s / cfg.step_s))
            for name in sorted(failed):
                old = Node.from_object(alive.pop(name))
                generation += 1
                zone, rack = old.zone.split("/", 1)[-1], old.rack.rsplit("/", 1)[-1]
                obj = make_node(f"{name.split('.')[0]}.g{generation}", zone=zone, rack=rack, storage_b=10**13)
                joins.setdefault(due, []).append(obj)
        out.append(events)
    return initial, out


def _timed_specs(cfg: TimedSettings) -> list[dict[str, Any]]:
    """The DataSets of a timed run (no spec.source: a lost shard stays lost)."""
    out = []
    for name, red in (("replicas-3", Replicas(3)), ("erasure-4+2", Erasure(4, 2))):
        shard_bytes = cfg.piece_bytes * (red.k if isinstance(red, Erasure) else 1)
        obj = dataset_object(name, shards=cfg.shards, shard_size=shard_bytes, redundancy=red, failure_domain="rack")
        obj["metadata"]["uid"] = f"uid-{name}"
        out.append(obj)
    return out


@dataclass(slots=True)
class TimedTally:
    """One policy's timed run: failures, shards lost, time back to full redundancy."""

    failures: int = 0
    nodes_failed: int = 0
    lost: dict[str, int] = field(default_factory=dict)
    reported_lost: dict[str, int] = field(default_factory=dict)
    recoveries_s: list[float] = field(default_factory=list)
    copied_gib: float = 0.0
    reconcile_passes: int = 0

    def to_json(self) -> dict[str, Any]:
        rec = sorted(self.recoveries_s)
        return {
            "failures": self.failures,
            "nodes_failed": self.nodes_failed,
            "shards_lost": dict(sorted(self.lost.items())),
            "reported_lost": dict(sorted(self.reported_lost.items())),
            "recovery_mean_s": round(sum(rec) / len(rec), 1) if rec else None,
            "recovery_max_s": round(rec[-1], 1) if rec else None,
            "copied_gib": round(self.copied_gib, 1),
            "reconcile_passes": self.reconcile_passes,
        }


class _Truth:
    """Shards truly lost (fewer than ``needed`` distinct pieces held by live nodes) and full redundancy."""

    def __init__(self, specs: Sequence[DataSetSpec]) -> None:
        self.specs = list(specs)
        self.lost: dict[str, set[int]] = {s.key: set() for s in specs}

    def check(self, agents: CopyingAgents) -> bool:
        """Update the lost shards; True when every shard not lost has all its pieces held."""
        keys: dict[tuple[str, int], set[str]] = {}
        copies: dict[tuple[str, int], int] = {}
        for pieces in agents.held.values():
            for key, pk, shard in pieces:
                keys.setdefault((key, shard), set()).add(pk)
                copies[(key, shard)] = copies.get((key, shard), 0) + 1
        full = True
        for spec in self.specs:
            red = spec.redundancy
            for s in range(spec.shards):
                if s in self.lost[spec.key]:
                    continue
                distinct, held = len(keys.get((spec.key, s), ())), copies.get((spec.key, s), 0)
                if distinct < red.needed:
                    self.lost[spec.key].add(s)
                elif (distinct if isinstance(red, Erasure) else held) < red.width:
                    full = False
        return full


def _slots(ds: DataSet) -> dict[str, list[Piece]]:
    out: dict[str, list[Piece]] = {}
    if ds.placement is None:
        return out
    for s in range(ds.spec.shards):
        for p, idx in enumerate(ds.placement.pieces[s]):
            if idx >= 0:
                out.setdefault(ds.placement.nodes[idx], []).append((ds.key, piece_key(ds.spec, p), s))
    return out


def _run_kbl_timed(cfg: TimedSettings, initial: list[dict[str, Any]], timeline: list[list[tuple[str, Any]]]) -> TimedTally:
    api = MemoryApi(history=100_000)
    for obj in initial:
        api.put(NODES, obj)
    objects = _timed_specs(cfg)
    for obj in objects:
        api.put(DATASETS, obj)
    specs = [DataSet.from_object(o).spec for o in objects]
    now = [T_START]
    reconciler = Reconciler(api, ReconcilerSettings(seed=cfg.seed, agent_ttl_s=0), clock=lambda: now[0])  # agents here send no heartbeats
    reconciler.reconcile_once()
    agents = CopyingAgents(
        cfg.copy_rate_bps, {s.key: cfg.piece_bytes for s in specs}, {s.key: s.redundancy.needed for s in specs}
    )
    for ds in list_datasets(api):
        for node, pieces in _slots(ds).items():
            agents.held.setdefault(node, set()).update(pieces)  # hydrated before the run starts
    _publish(api, agents, specs, {})
    reconciler.reconcile_once()
    truth = _Truth(specs)
    tally = TimedTally()
    open_failures: list[float] = []
    dirty = True
    published: dict[str, Any] = {}
    for step, events in enumerate(timeline):
        now[0] = T_START + step * cfg.step_s
        for kind, what in events:
            if kind == "fail":
                tally.failures += 1
                tally.nodes_failed += len(what)
                open_failures.append(now[0])
                for name in what:
                    api.delete(NODES, name)
                    api.delete(NODE_HOLDINGS, name)
                    agents.held.pop(name, None)
                    agents.progress.pop(name, None)
            else:
                api.put(NODES, what)
            dirty = True
        if dirty:
            reconciler.reconcile_once()
            tally.reconcile_passes += 1
        datasets = list_datasets(api)
        wanted: dict[str, list[Piece]] = {}
        keep: dict[str, set[Piece]] = {}
        moving: set[tuple[str, Piece]] = set()
        for ds in datasets:
            for t in ds.transfers:
                keep.setdefault(t.source, set()).add((ds.key, piece_key(ds.spec, t.piece), t.shard))
                moving.add((t.to, (ds.key, piece_key(ds.spec, t.piece), t.shard)))
            for node, pieces in _slots(ds).items():
                wanted.setdefault(node, []).extend(pieces)
                keep.setdefault(node, set()).update(pieces)
        for node, queue in wanted.items():  # repairs (no transfer: the piece is missing) before moves
            queue[:] = [p for p in queue if (node, p) not in moving] + [p for p in queue if (node, p) in moving]
        before = {n: frozenset(p) for n, p in agents.held.items()}
        agents.step(cfg.step_s, wanted, keep)
        dirty = {n: frozenset(p) for n, p in agents.held.items()} != before or any(ds.transfers for ds in datasets)
        published = _publish(api, agents, specs, published)
        full = truth.check(agents)
        if full and open_failures:
            end = now[0] + cfg.step_s
            tally.recoveries_s.extend(end - t for t in open_failures)
            open_failures = []
    tally.lost = {k: len(v) for k, v in truth.lost.items()}
    for obj in api.list(DATASETS)[0]:
        text = (obj.get("status") or {}).get("lostShards") or ""
        tally.reported_lost[obj["metadata"]["name"]] = len(parse_shards(text)) if text else 0
    tally.lost = {k.split("/", 1)[1]: v for k, v in tally.lost.items()}
    tally.copied_gib = agents.copied_bytes / GIB
    return tally


T_START = 1_800_000_000.0


def _publish(api: MemoryApi, agents: CopyingAgents, specs: Sequence[DataSetSpec], last: dict[str, Any]) -> dict[str, Any]:
    """Write each live node's NodeHoldings when it changed (the agents' report)."""
    uids = {s.key: s.uid for s in specs}
    out: dict[str, Any] = {}
    present = {o["metadata"]["name"] for o in api.list(NODES)[0]}
    for node in sorted(present):
        by_ds: dict[str, dict[str, set[int]]] = {}
        for key, pk, shard in agents.held.get(node, set()):
            by_ds.setdefault(key, {}).setdefault(pk, set()).add(shard)
        entries = {
            key: DataSetHoldings(key.split("/", 1)[0], key.split("/", 1)[1], uids.get(key, ""), {k: frozenset(v) for k, v in ready.items()})
            for key, ready in by_ds.items()
        }
        obj = NodeHoldings(node, datasets=entries).to_object()
        out[node] = obj
        if last.get(node) != obj:
            api.put(NODE_HOLDINGS, obj)
    return out


def _run_random_timed(cfg: TimedSettings, initial: list[dict[str, Any]], timeline: list[list[tuple[str, Any]]]) -> TimedTally:
    rng = random.Random(cfg.seed + 7)
    specs = [DataSet.from_object(o).spec for o in _timed_specs(cfg)]
    alive = sorted(o["metadata"]["name"] for o in initial)
    layouts = {s.key: _Layout(s, [[None] * s.redundancy.width for _ in range(s.shards)]) for s in specs}
    for layout in layouts.values():
        _random_fill(layout, alive, rng)
    agents = CopyingAgents(cfg.copy_rate_bps, {s.key: cfg.piece_bytes for s in specs}, {s.key: s.redundancy.needed for s in specs})
    for key, layout in layouts.items():
        for s, row in enumerate(layout.names):
            for p, n in enumerate(row):
                if n is not None:
                    agents.held.setdefault(n, set()).add((key, piece_key(layout.spec, p), s))
    truth = _Truth(specs)
    tally = TimedTally()
    open_failures: list[float] = []
    for step, events in enumerate(timeline):
        now = T_START + step * cfg.step_s
        for kind, what in events:
            if kind == "fail":
                tally.failures += 1
                tally.nodes_failed += len(what)
                open_failures.append(now)
                for name in what:
                    alive.remove(name)
                    agents.held.pop(name, None)
                    agents.progress.pop(name, None)
                for layout in layouts.values():
                    layout.drop(set(what))
                    _random_fill(layout, alive, rng)
            else:
                alive = sorted([*alive, what["metadata"]["name"]])
        wanted: dict[str, list[Piece]] = {}
        for key, layout in layouts.items():
            for s, row in enumerate(layout.names):
                for p, n in enumerate(row):
                    if n is not None:
                        wanted.setdefault(n, []).append((key, piece_key(layout.spec, p), s))
        agents.step(cfg.step_s, wanted, {n: set(p) for n, p in wanted.items()})
        if truth.check(agents) and open_failures:
            tally.recoveries_s.extend(now + cfg.step_s - t for t in open_failures)
            open_failures = []
    tally.lost = {k.split("/", 1)[1]: len(v) for k, v in truth.lost.items()}
    tally.copied_gib = agents.copied_bytes / GIB
    return tally


def simulate_timed(cfg: TimedSettings | None = None) -> dict[str, TimedTally]:
    """kbl (the real reconciler) and random placement on the same timed failures (module section)."""
    cfg = cfg or TimedSettings()
    initial, timeline = _timeline(cfg)
    return {"kbl": _run_kbl_timed(cfg, initial, timeline), "random": _run_random_timed(cfg, initial, timeline)}


@dataclass(frozen=True, slots=True)
class RepairPoint:
    """Time from one node's loss to full redundancy, next to its lower bound."""

    piece_gib: float
    copy_rate_mib_s: float
    lost_gib: float
    copied_gib: float
    seconds: float
    lower_bound_s: float
    step_s: float
    zone_bound_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "piece_gib": self.piece_gib,
            "copy_rate_mib_s": self.copy_rate_mib_s,
            "lost_gib": round(self.lost_gib, 1),
            "copied_gib": round(self.copied_gib, 1),
            "seconds": round(self.seconds, 1),
            "lower_bound_s": round(self.lower_bound_s, 1),
            "ratio": round(self.seconds / self.lower_bound_s, 2) if self.lower_bound_s else None,
            "zone_bound_s": round(self.zone_bound_s, 1),
            "step_s": round(self.step_s, 2),
        }


def repair_time(
    *, piece_bytes: int, copy_rate_bps: float, shards: int = 240, zones: int = 3, racks_per_zone: int = 4, hosts_per_rack: int = 3
) -> RepairPoint:
    """One node of a ``zones x racks x hosts`` cluster fails; the real reconciler repairs a 3x
    rack-spread DataSet with agents receiving ``copy_rate_bps`` each. The lower bound is the
    bytes the node held over the survivors' aggregate receive bandwidth."""
    cfg = TimedSettings(zones=zones, racks_per_zone=racks_per_zone, hosts_per_rack=hosts_per_rack, shards=shards)
    api = MemoryApi(history=100_000)
    initial = make_cluster_nodes(zones=zones, racks_per_zone=racks_per_zone, hosts_per_rack=hosts_per_rack, storage_b=10**13)
    for obj in initial:
        api.put(NODES, obj)
    obj = _timed_specs(TimedSettings(shards=shards, piece_bytes=piece_bytes))[0]
    api.put(DATASETS, obj)
    spec = DataSet.from_object(obj).spec
    now = [T_START]
    reconciler = Reconciler(api, ReconcilerSettings(seed=cfg.seed, agent_ttl_s=0), clock=lambda: now[0])  # agents here send no heartbeats
    reconciler.reconcile_once()
    agents = CopyingAgents(copy_rate_bps, {spec.key: piece_bytes}, {spec.key: 1})
    ds = list_datasets(api)[0]
    for node, pieces in _slots(ds).items():
        agents.held.setdefault(node, set()).update(pieces)
    published = _publish(api, agents, [spec], {})
    reconciler.reconcile_once()
    victim = sorted(agents.held)[0]
    lost_bytes = len(agents.held[victim]) * piece_bytes
    api.delete(NODES, victim)
    api.delete(NODE_HOLDINGS, victim)
    agents.held.pop(victim)
    survivors = len(initial) - 1
    bound = lost_bytes / (survivors * copy_rate_bps)
    # The pieces spread over zones (one per zone for 3x over 3 zones): only the victim's zone can
    # take them back, in whole pieces: a tighter bound for this layout.
    zone = Node.from_object(next(o for o in initial if o["metadata"]["name"] == victim)).zone
    in_zone = sum(1 for o in initial if Node.from_object(o).zone == zone) - 1
    zone_bound = math.ceil(lost_bytes / piece_bytes / in_zone) * piece_bytes / copy_rate_bps
    step_s = max(piece_bytes / copy_rate_bps / 8, 0.01)
    truth = _Truth([spec])
    elapsed = 0.0
    for _ in range(100_000):
        reconciler.reconcile_once()
        ds = list_datasets(api)[0]
        slots = _slots(ds)
        keep = {n: set(p) for n, p in slots.items()}
        for t in ds.transfers:
            keep.setdefault(t.source, set()).add((ds.key, piece_key(ds.spec, t.piece), t.shard))
        agents.step(step_s, slots, keep)
        elapsed += step_s
        published = _publish(api, agents, [spec], published)
        if truth.check(agents) and not ds.transfers:
            break
    copied = agents.copied_bytes / GIB
    return RepairPoint(piece_bytes / GIB, copy_rate_bps / MIB, lost_bytes / GIB, copied, elapsed, bound, step_s, zone_bound)


def repair_sweep(piece_gib: Sequence[float] = (1, 4, 16), rates_mib_s: Sequence[float] = (50, 200), shards: int = 240) -> list[RepairPoint]:
    """:func:`repair_time` over piece sizes (bytes lost) and copy rates."""
    return [
        repair_time(piece_bytes=int(g * GIB), copy_rate_bps=r * MIB, shards=shards) for g in piece_gib for r in rates_mib_s
    ]
