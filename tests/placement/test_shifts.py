"""placement.shifts.shift: the incremental re-plan after nodes join or leave, against place() (the oracle).

``place(nodes, spec, previous=p)`` is the exact planner; ``shift`` must give a placement that
``place`` would keep (rule and stable band: :func:`placement.stability.keeps`), that keeps every
erasure piece's index where its node stays, that gives nothing new to a closed node, and that
moves at most 1.05x the pieces ``place`` moves from the same previous placement, plus one piece per
node outside its band (``place`` brings it to the band's edge, a shift just inside it). When it cannot, it
says so (``None``) and the caller runs ``place``.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from placement import place
from placement.settings import PlacementSettings
from placement.shifts import shift
from placement.stability import NodeTable, frame, keeps
from topology.datasets import DataSet, DataSetSpec, Erasure, Redundancy, Replicas, ShardPlacement, dataset_object
from topology.errors import PlacementError
from topology.examples import make_cluster_nodes, make_node
from topology.nodes import Node

SCHEMES: dict[str, Redundancy] = {"r2": Replicas(2), "r3": Replicas(3), "e21": Erasure(2, 1), "e42": Erasure(4, 2)}
#: The reconciler's planner settings (repairs spread over receivers).
CFG = PlacementSettings(fill_spread=1.0)


def _nodes(zones: int, racks: int, hosts: int, weights: str, seed: int) -> list[Node]:
    objs = make_cluster_nodes(zones=zones, racks_per_zone=racks, hosts_per_rack=hosts, weights=weights, seed=seed)
    return [Node.from_object(o) for o in objs]


def _spec(shards: int, red: Redundancy, domain: str) -> DataSetSpec:
    return DataSet.from_object(dataset_object("d", shards=shards, shard_size="1Gi", redundancy=red, failure_domain=domain)).spec


def _rows(p: ShardPlacement) -> list[list[str]]:
    return [[p.nodes[i] if i >= 0 else "" for i in row] for row in p.pieces.tolist()]


def _moved(a: ShardPlacement, b: ShardPlacement) -> int:
    return sum(x != y for ra, rb in zip(_rows(a), _rows(b), strict=True) for x, y in zip(ra, rb, strict=True))


def _settled(nodes: list[Node], spec: DataSetSpec, seed: int) -> ShardPlacement | None:
    """A placement ``place`` keeps on ``nodes`` (a fresh one, re-planned until kept), or None."""
    try:
        current = place(nodes, spec, seed=seed, settings=CFG).placement
        for _ in range(3):
            if keeps(nodes, spec, current, settings=CFG):
                return current
            current = place(nodes, spec, previous=current, seed=seed, settings=CFG).placement
    except PlacementError:
        return None
    return current if keeps(nodes, spec, current, settings=CFG) else None


def _index_kept(before: ShardPlacement, after: ShardPlacement) -> bool:
    """A node that holds a piece of a shard before and after holds the same piece index."""
    for old, new in zip(_rows(before), _rows(after), strict=True):
        was = {n: p for p, n in enumerate(old) if n}
        if any(n in was and was[n] != p for p, n in enumerate(new)):
            return False
    return True


# Random search again (issue 24): the case a search once found (the @example: a shift moved 42
# pieces against place()'s 27 plus a margin of 12) is one where place() stops short of the stable
# band: the joiner gets 27 of the 42 pieces it needs to reach the bottom of its band, so
# keeps(place's result) is False (and place() run again moves nothing more). A shift must return
# a placement keeps() accepts, so there it is compared with the least any such placement moves.
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@example(zones=2, racks=4, hosts=3, weights="mixed", scheme="e42", domain="host", shards=219, change="join", count=1, seed=0)
@given(
    zones=st.integers(1, 4),
    racks=st.integers(1, 4),
    hosts=st.integers(2, 6),
    weights=st.sampled_from(["equal", "mixed"]),
    scheme=st.sampled_from(sorted(SCHEMES)),
    domain=st.sampled_from(["host", "rack", "zone"]),
    shards=st.integers(20, 400),
    change=st.sampled_from(["join", "leave", "join+leave", "close", "none"]),
    count=st.integers(1, 3),
    seed=st.integers(0, 10_000),
)
def test_a_shift_is_a_placement_place_keeps_moving_no_more_than_place(
    *, zones: int, racks: int, hosts: int, weights: str, scheme: str, domain: str, shards: int, change: str, count: int, seed: int
) -> None:
    every = _nodes(zones, racks, hosts, weights, seed)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(every)).tolist()
    joiners = [every[i] for i in order[:count]] if "join" in change else []
    base = [n for n in every if n not in joiners]
    spec = _spec(shards, SCHEMES[scheme], domain)
    previous = _settled(base, spec, seed)
    if previous is None:
        return  # the rule cannot be kept on these nodes, or place() itself does not settle: nothing to shift
    leavers = {base[i].name for i in rng.permutation(len(base))[:count].tolist()} if "leave" in change else set()
    closed = {base[i].name for i in rng.permutation(len(base))[:count].tolist()} if change == "close" else set()
    after = [n for n in [*base, *joiners] if n.name not in leavers]
    table = NodeTable(after)
    got = shift(table, spec, previous, seed=seed, settings=CFG, closed=closed)
    if change == "none":
        assert got is previous  # nothing changed: kept as it is
        return
    try:
        exact = place(after, spec, previous=previous, seed=seed, settings=CFG)
    except PlacementError:
        assert got is None  # place cannot honour the rule: neither can a shift
        return
    event(f"{change}: {'shifted' if got is not None else 'place() runs'}")
    if got is None:
        return  # the caller runs place()
    assert keeps(table, spec, got, settings=CFG)  # the rule and every node inside its band
    assert _index_kept(previous, got)  # erasure pieces keep their index
    assert not (set(got.nodes) & leavers)
    for old, new in zip(_rows(previous), _rows(got), strict=True):
        assert not ({n for n in new if n in closed} - set(old))  # a closed node gets nothing new
    # place() stops a node at its band's edge; a shift stops it just inside (keeps()'s margin, so
    # the next pass keeps it): one more piece per node outside the band after the change; and its
    # donors are chosen otherwise than place()'s balancing (5% more moves allowed: hypothesis found
    # 36 against 34 for one host joining 15 of mixed weights).
    fr = frame(table, spec, previous, weight="ephemeral-storage", settings=CFG)
    assert fr is not None
    positions = fr.positions(table, previous)
    loads = fr.loads(positions)
    outside = int(((loads < fr.lo - fr.slack) | (loads > fr.hi + fr.slack)).sum())
    reference = _moved(previous, exact.placement)
    if not keeps(table, spec, exact.placement, settings=CFG):
        # place() stopped outside the band keeps() asks for: compare with the least a placement
        # inside it must move (every missing piece; what must enter the nodes below the band or
        # leave those above it, in pieces of the largest size).
        biggest = float(fr.piece_bytes.max())
        enter = int(np.ceil(np.maximum(fr.lo - loads, 0.0) / biggest).sum())
        leave = int(np.ceil(np.maximum(loads - fr.hi, 0.0) / biggest).sum())
        reference = max(reference, int((positions < 0).sum()), enter, leave)
        event("place() outside the stable band")
    assert _moved(previous, got) <= 1.05 * reference + outside


def test_a_host_that_joins_takes_its_share_and_one_that_leaves_gives_back_only_its_pieces() -> None:
    nodes = _nodes(3, 3, 4, "equal", 1)
    spec = _spec(601, Replicas(3), "host")
    previous = _settled(nodes[:-1], spec, 0)
    assert previous is not None
    joined = shift(NodeTable(nodes), spec, previous, settings=CFG)
    assert joined is not None
    assert joined is not previous
    share = 601 * 3 / len(nodes)
    taken = sum(row.count(nodes[-1].name) for row in _rows(joined))
    assert 0.9 * share <= taken <= 1.05 * share
    assert _moved(previous, joined) <= 1.05 * share
    gone = previous.nodes[3]
    held = sum(row.count(gone) for row in _rows(previous))
    left = shift(NodeTable([n for n in nodes[:-1] if n.name != gone]), spec, previous, settings=CFG)
    assert left is not None
    assert _moved(previous, left) == held  # only the lost host's pieces move


def _on_the_edge(hosts: int, joiners: int) -> tuple[list[Node], list[Node], DataSetSpec, ShardPlacement]:
    """``hosts`` in 4 zones (racks of 10), 50 pieces per host, piece ``j`` on host ``j mod
    hosts`` with the hosts numbered zone-interleaved (each host's shards over the same three
    zones, as ``benchmarks.scale_loops.build_fixture``), and ``joiners`` hosts joining as a new
    rack of zone 0."""
    by_index: dict[int, Node] = {}
    for z in range(4):
        for i in range(hosts // 4):
            r, h = divmod(i, 10)
            by_index[4 * i + z] = Node.from_object(make_node(f"n-{z}-{r}-{h}", zone=f"z{z}", rack=f"z{z}-r{r}", storage_b=2 * 10**12))
    old = [by_index[i] for i in range(hosts)]
    shards = hosts * 50 // 3
    spec = _spec(shards, Replicas(3), "host")
    names = [n.name for n in old]
    ordered = sorted(names)
    where = np.array([ordered.index(n) for n in names], dtype=np.int32)
    previous = ShardPlacement(tuple(ordered), where[np.arange(3 * shards) % hosts].reshape(shards, 3))
    new = [Node.from_object(make_node(f"n-0-joined-{h}", zone="z0", rack="z0-joined", storage_b=2 * 10**12)) for h in range(joiners)]
    return old, new, spec, previous


@pytest.mark.parametrize(("hosts", "joiners"), [(120, 6), (240, 12)])
def test_joiners_five_percent_of_the_hosts_fill_though_every_old_host_sits_on_its_bands_edge(hosts: int, joiners: int) -> None:
    """Joiners 5% of the old hosts: every old host's load is exactly its new band's top. A load on
    the edge is inside (``keeps`` and ``place`` agree), and the joiners, whose zone only a third of
    the other zones' hosts may give to, fill through chains: at least 90% of their share, moving
    at most 1.1x it, in one shift that ``place`` keeps. (Before: ``None``, and ``place`` 63%.)"""
    old, new, spec, previous = _on_the_edge(hosts, joiners)
    assert keeps(old, spec, previous, settings=CFG)
    nodes = old + new
    table = NodeTable(nodes)
    fr = frame(table, spec, previous, weight="ephemeral-storage", settings=CFG)
    assert fr is not None
    on_edge = fr.loads(fr.positions(table, previous))[fr.position[[table.index[n.name] for n in old]]]
    assert np.allclose(on_edge, fr.hi[fr.position[[table.index[n.name] for n in old]]])  # the case this test is about
    got = shift(table, spec, previous, settings=CFG)
    assert got is not None
    assert keeps(table, spec, got, settings=CFG)
    assert place(nodes, spec, previous=got, settings=CFG).moves == ()  # keeps() implies place() keeps it
    joined = {n.name for n in new}
    ideal = 3 * spec.shards * joiners / (hosts + joiners)
    held = sum(name in joined for row in _rows(got) for name in row)
    assert held >= 0.90 * ideal
    assert _moved(previous, got) <= 1.10 * ideal
