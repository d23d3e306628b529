"""The cluster view a pass plans on, derived from the previous one (issue 24: O(change) passes).

``ClusterView.following`` patches the previous view for the nodes that changed instead of
reading every node again. These tests compare it with a view built afresh, after random joins,
leaves, cordons, drains, losses and label changes, and check that a decision on the derived view
is the decision on the fresh one.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dataplane.reconciler.planning import ClusterView, decide
from placement import place
from topology import labels
from topology.datasets import DataSet, Replicas, ShardPlacement, dataset_object
from topology.examples import make_cluster_nodes
from topology.nodes import Node


def _objects(seed: int) -> list[dict]:  # type: ignore[type-arg]
    return make_cluster_nodes(zones=3, racks_per_zone=3, hosts_per_rack=4, weights="mixed", seed=seed)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    steps=st.lists(
        st.sampled_from(["join", "leave", "cordon", "uncordon", "drain", "lose", "find", "relabel", "holdings"]), min_size=1, max_size=6
    ),
)
def test_a_view_following_another_equals_a_view_built_afresh(seed: int, steps: list[str]) -> None:
    rng = np.random.default_rng(seed)
    objs = _objects(seed)
    spare = [
        o
        for o in make_cluster_nodes(zones=4, racks_per_zone=4, hosts_per_rack=5, seed=seed)
        if o["metadata"]["name"] not in {x["metadata"]["name"] for x in objs}
    ]
    nodes = {o["metadata"]["name"]: Node.from_object(o) for o in objs}
    raw = {o["metadata"]["name"]: o for o in objs}
    lost: frozenset[str] = frozenset()
    view = ClusterView(nodes, lost)
    _ = view.eligible_table.layout({}, "ephemeral-storage", "host", width=2, tolerates=1, spread_cost_limit=0.25)
    for step in steps:
        if step != "holdings":  # a holdings event alone keeps the same nodes mapping
            nodes = dict(nodes)
        names = sorted(nodes)
        pick = names[int(rng.integers(len(names)))]
        if step == "join" and spare:
            o = spare.pop()
            raw[o["metadata"]["name"]] = o
            nodes[o["metadata"]["name"]] = Node.from_object(o)
        elif step == "leave" and len(nodes) > 4:
            del nodes[pick]
        elif step in ("cordon", "uncordon"):
            raw[pick]["spec"]["unschedulable"] = step == "cordon"
            nodes[pick] = Node.from_object(raw[pick])
        elif step == "drain":
            raw[pick]["metadata"].setdefault("annotations", {})[labels.DRAIN] = "true"
            raw[pick]["metadata"]["annotations"][labels.LAST_PIECES] = "3"
            nodes[pick] = Node.from_object(raw[pick])
        elif step == "lose":
            lost = lost | {pick}
        elif step == "find" and lost:
            lost = lost - {sorted(lost)[0]}
        elif step == "relabel":
            raw[pick]["metadata"]["labels"][labels.DEFAULT_RACK] = f"rack-moved-{seed}"
            nodes[pick] = Node.from_object(raw[pick])
        previous = view
        view = ClusterView.following(previous, nodes, lost, {})
        assert "_classified" in view.__dict__ or len(nodes) < 4  # carried over, not recomputed
        fresh = ClusterView(nodes, lost)
        assert [n.name for n in view.ordered] == [n.name for n in fresh.ordered]
        assert [id(n) for n in view.eligible_nodes] == [id(n) for n in fresh.eligible_nodes]
        assert [id(n) for n in view.kept_candidates] == [id(n) for n in fresh.kept_candidates]
        assert view.movable == fresh.movable
        assert view.draining_names == fresh.draining_names
        assert view.annotated_names == fresh.annotated_names
        assert view.eligible_table.names == fresh.eligible_table.names
        for key in ("host", "rack", "zone"):
            assert np.array_equal(view.eligible_table.domains(key), fresh.eligible_table.domains(key))
        assert view.eligible_table.layout({}, "ephemeral-storage", "host", width=2, tolerates=1, spread_cost_limit=0.25) is not None or (
            fresh.eligible_table.layout({}, "ephemeral-storage", "host", width=2, tolerates=1, spread_cost_limit=0.25) is None
        )


def test_a_decision_on_a_derived_view_is_the_decision_on_a_fresh_view() -> None:
    """A node joins and another is lost: the derived view (its table patched, not rebuilt) gives
    the same new target and transfers as a view built from every node."""
    objs = _objects(7)
    nodes = {o["metadata"]["name"]: Node.from_object(o) for o in objs}
    spec = DataSet.from_object(dataset_object("d", shards=400, shard_size="1Gi", redundancy=Replicas(3))).spec
    first = ClusterView(nodes)
    target = place(first.eligible_nodes, spec).placement
    dataset = DataSet(spec, target)
    decide(dataset, first)  # the pass before: its view computed what a pass reads
    joiner = next(o for o in make_cluster_nodes(zones=3, racks_per_zone=4, hosts_per_rack=5, seed=7) if o["metadata"]["name"] not in nodes)
    after = {**nodes, joiner["metadata"]["name"]: Node.from_object(joiner)}
    lost = frozenset({target.nodes[3]})
    derived = ClusterView.following(first, after, lost)
    assert "eligible_table" in derived.__dict__  # patched, not rebuilt
    a, b = decide(dataset, derived), decide(dataset, ClusterView(after, lost))
    assert a.placement is not None
    assert b.placement is not None
    assert a.placement.equals(b.placement)
    assert a.transfers == b.transfers
    assert a.moves == b.moves > 0


def test_a_view_with_only_new_holdings_reuses_every_node_list() -> None:
    nodes = {o["metadata"]["name"]: Node.from_object(o) for o in _objects(1)}
    first = ClusterView(nodes)
    table = first.eligible_table
    again = ClusterView.following(first, nodes, frozenset(), {})
    assert again.eligible_table is table
    assert again.eligible_nodes is first.eligible_nodes


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    steps=st.lists(st.sampled_from(["cordon", "not-ready", "remove", "add", "agents", "annotate"]), min_size=1, max_size=6),
)
def test_the_reconcilers_nodes_view_patched_from_events_equals_one_built_from_a_relist(seed: int, steps: list[str]) -> None:
    """The reconciler reads only the Nodes and NodeHoldings its watch events name (not every
    object) after a few events; what it sees equals what a reconciler that lists everything sees.
    The events are an informer's: every object whose resourceVersion moved since the last
    delivery (the reconciler's own node patches included), deletions as DELETED."""
    from kube.api import NODE_HOLDINGS, NODES, WatchEvent
    from tests.dataplane.reconciler.worlds import World, cluster_nodes, dataset

    rng = np.random.default_rng(seed)
    world = World(nodes=cluster_nodes(zones=3, racks=2, hosts=3))
    world.add_dataset(dataset(shards=30))
    rec = world.reconciler()
    rec.reconcile_once()
    world.agent_step(per_step=5)
    rec.load()
    delivered = {
        (r.plural, o["metadata"]["name"]): o["metadata"]["resourceVersion"] for r in (NODES, NODE_HOLDINGS) for o in world.api.list(r)[0]
    }

    def deliver() -> int:
        count = 0
        for resource, handler in ((NODES, rec._on_node), (NODE_HOLDINGS, rec._on_holdings)):
            now = {o["metadata"]["name"]: o for o in world.api.list(resource)[0]}
            for name, obj in now.items():
                if delivered.get((resource.plural, name)) != obj["metadata"]["resourceVersion"]:
                    handler(WatchEvent("MODIFIED", obj))
                    delivered[(resource.plural, name)] = obj["metadata"]["resourceVersion"]
                    count += 1
            for plural, name in [k for k in delivered if k[0] == resource.plural and k[1] not in now]:
                handler(WatchEvent("DELETED", {"metadata": {"name": name}}))
                del delivered[(plural, name)]
                count += 1
        return count

    rec.reconcile(None)
    deliver()
    spare = [o for o in cluster_nodes(zones=3, racks=3, hosts=3) if o["metadata"]["name"] not in set(world.node_names())]
    for step in steps:
        names = world.node_names()
        pick = names[int(rng.integers(len(names)))]
        if step == "cordon":
            world.cordon(pick)
        elif step == "annotate":
            world.annotate(pick, {labels.DRAIN: "true"})
        elif step == "not-ready":
            world.not_ready(pick, world.now - 10)
        elif step == "remove" and len(names) > 6:
            world.remove_node(pick)
        elif step == "add" and spare:
            world.add_node(spare.pop())
        elif step == "agents":
            world.now += 31
            world.agent_step(per_step=3)
        events = deliver()
        patched = rec._nodes_view()
        fresh = world.reconciler()
        fresh.load()
        assert patched == fresh._nodes_view(), (step, events)
        rec.reconcile(None)
        deliver()


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 10_000), outside=st.integers(0, 20), shuffled=st.booleans())
def test_node_lists_matched_through_a_table_match_as_by_name(seed: int, outside: int, shuffled: bool) -> None:
    """A target's node list mapped onto another through the view's table positions (the fast
    path: a node joined or left) gives the positions a match by name gives, lost or cordoned
    holders (not in the table) included."""
    from dataplane.reconciler.planning import _merged, _relabel
    from placement.stability import NodeTable

    rng = np.random.default_rng(seed)
    objs = _objects(seed % 5)
    nodes = [Node.from_object(o) for o in objs]
    table = NodeTable(nodes[outside % 4 :])  # the first few are not eligible
    names = [n.name for n in nodes]
    was = tuple(sorted(rng.choice(names, size=int(rng.integers(1, len(names))), replace=False).tolist()))
    now = sorted(rng.choice(names, size=int(rng.integers(1, len(names))), replace=False).tolist())
    if shuffled:
        rng.shuffle(now)
    now_t = tuple(now)
    assert np.array_equal(_relabel(was, now_t, table), _relabel(was, now_t))
    pieces = rng.integers(0, len(now_t), size=(30, 2)).astype(np.int32)
    placement = ShardPlacement(now_t, pieces)
    a_names, a_index = _merged(was, placement, 30, 2, table=table)
    b_names, b_index = _merged(was, placement, 30, 2)
    assert list(a_names) == list(b_names)
    assert np.array_equal(a_index, b_index)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), erasure=st.booleans())
def test_the_ready_matrix_read_from_every_report_is_the_per_slot_answer(seed: int, erasure: bool) -> None:
    """``Holders.had_matrix`` (every holder's report, gathered once per piece key) says for each
    slot what ``Holders.had`` says for it alone: reports with shards out of range, other piece
    keys, nodes without a report and empty names included."""
    from dataplane.reconciler.planning import Holders
    from topology.datasets import Erasure
    from topology.holdings import DataSetHoldings, NodeHoldings, piece_key

    rng = np.random.default_rng(seed)
    red = Erasure(2, 1) if erasure else Replicas(2)
    spec = DataSet.from_object(dataset_object("d", shards=40, shard_size="1Gi", redundancy=red)).spec
    names = [f"n-{i}" for i in range(12)] + [""]
    nodes = {n: Node.from_object(o) for n, o in zip(names, _objects(seed % 3), strict=False) if n}
    holdings = {}
    for n in names[:-1]:
        if rng.random() < 0.2:
            continue  # no report
        ready = {
            piece_key(spec, p): frozenset(int(x) for x in rng.integers(-3, 45, size=int(rng.integers(0, 15))))
            for p in range(red.width)
            if rng.random() < 0.8
        }
        holdings[n] = NodeHoldings(n, datasets={spec.key: DataSetHoldings(spec.namespace, spec.name, spec.uid, ready)})
    index = rng.integers(-1, len(names), size=(40, red.width)).astype(np.int32)
    holders = Holders(DataSet(spec, None), ClusterView(nodes, frozenset(), holdings))
    matrix = holders.had_matrix(names, index)
    for s in range(40):
        for p in range(red.width):
            j = int(index[s, p])
            assert bool(matrix[s, p]) == (j >= 0 and holders.had(names[j], s, p)), (s, p)
