"""The steady-state fast path of ``decide``: the same Decision as before it, without ``place``.

``legacy_planning.decide`` is a frozen copy of ``decide`` from before the fast path (place() on
every decision, a Python loop per slot). On random clusters (cordoned, NotReady, draining, lost
and deleted nodes, mixed weights), random targets (fresh, kept, perturbed, random), transfers,
holdings and previous statuses, both return the same Decision and the same status JSON.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataplane.reconciler import planning
from dataplane.reconciler.planning import ClusterView, Decision, PlanMemo, cluster_token, decide
from dataplane.reconciler.settings import ReconcilerSettings
from placement import place
from placement.shifts import shift
from tests.dataplane.reconciler import legacy_planning
from tests.dataplane.reconciler.worlds import dataset
from topology import labels
from topology.datasets import DataSet, Erasure, Redundancy, Replicas, ShardPlacement, Transfer
from topology.errors import PlacementError
from topology.examples import make_cluster_nodes
from topology.holdings import DataSetHoldings, NodeHoldings, piece_key
from topology.nodes import Node

SCHEMES: dict[str, Redundancy] = {"r2": Replicas(2), "r3": Replicas(3), "e21": Erasure(2, 1), "e42": Erasure(4, 2)}


def _same(a: Decision, b: Decision) -> None:
    assert a == b  # every field but the placement's pieces and shard_ready
    assert (a.placement is None) == (b.placement is None)
    if a.placement is not None and b.placement is not None:
        assert a.placement.nodes == b.placement.nodes
        assert np.array_equal(a.placement.pieces, b.placement.pieces)
    assert np.array_equal(a.shard_ready, b.shard_ready)
    assert a.status(3) == b.status(3)


def _world(draw: Any) -> tuple[DataSet, ClusterView, dict[str, Any], dict[str, int]]:
    zones, racks, hosts = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 4))
    seed = draw(st.integers(0, 1000))
    weights = draw(st.sampled_from(["equal", "mixed"]))
    objs = make_cluster_nodes(zones=zones, racks_per_zone=racks, hosts_per_rack=hosts, weights=weights, seed=seed)
    rng = np.random.default_rng(seed)
    red = SCHEMES[draw(st.sampled_from(sorted(SCHEMES)))]
    shards = draw(st.integers(1, 80))
    domain = draw(st.sampled_from(["host", "rack", "zone"]))
    raw = dataset("d", shards=shards, redundancy=red, failure_domain=domain, source=draw(st.booleans()))
    spec = DataSet.from_object(raw).spec
    all_nodes = [Node.from_object(o) for o in objs]
    start = draw(st.sampled_from(["none", "fresh", "fresh", "fresh", "perturbed", "random"]))
    target: ShardPlacement | None = None
    if start != "none":
        try:
            target = place(all_nodes, spec, seed=seed % 3).placement
        except PlacementError:
            target = None
    if target is not None and start == "perturbed":
        pieces = target.pieces.copy()
        for _ in range(draw(st.integers(1, 5))):
            pieces[rng.integers(shards), rng.integers(red.width)] = rng.integers(-1, len(target.nodes))
        target = ShardPlacement(target.nodes, pieces)
    if start == "random":
        every = tuple(sorted(o["metadata"]["name"] for o in objs))
        target = ShardPlacement(every, rng.integers(0, len(every), size=(shards, red.width)).astype(np.int32))
    if target is not None:
        raw["status"] = {"placement": target.to_status()}
    # Node states.
    kinds = st.sampled_from(["cordon", "notready", "drain", "lost", "delete"])
    changes = draw(st.lists(st.tuples(st.integers(0, len(objs) - 1), kinds), max_size=3))
    lost: set[str] = set()
    deleted: set[str] = set()
    for i, what in changes:
        obj = objs[i]
        name = obj["metadata"]["name"]
        if what == "cordon":
            obj.setdefault("spec", {})["unschedulable"] = True
        elif what == "notready":
            obj["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
        elif what == "drain":
            obj["metadata"].setdefault("annotations", {})[labels.DRAIN] = "test"
            obj["metadata"]["annotations"][labels.DRAIN_DEADLINE] = "2030-01-01T00:00:00Z"
        elif what == "lost":
            obj["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
            lost.add(name)
        else:
            deleted.add(name)
    nodes = {o["metadata"]["name"]: Node.from_object(o) for o in objs if o["metadata"]["name"] not in deleted}
    # Holdings: each node reports a random part of what the target puts on it, plus strays.
    holdings: dict[str, NodeHoldings] = {}
    if draw(st.booleans()):
        share = draw(st.sampled_from([0.0, 0.5, 1.0]))
        for o in objs:
            name = o["metadata"]["name"]
            ready: dict[str, set[int]] = {}
            if target is not None and name in target.nodes:
                j = target.nodes.index(name)
                for s, p in zip(*np.nonzero(target.pieces == j), strict=True):
                    if rng.random() < share:
                        ready.setdefault(piece_key(spec, int(p)), set()).add(int(s))
            if rng.random() < 0.2:
                ready.setdefault(piece_key(spec, 0), set()).add(int(rng.integers(shards)))
            entry = DataSetHoldings("default", "d", "uid-d", {k: frozenset(v) for k, v in ready.items()})
            holdings[name] = NodeHoldings(name, datasets={"default/d": entry})
    # Transfers.
    names = sorted(o["metadata"]["name"] for o in objs)
    if target is not None and draw(st.booleans()):
        raw["status"]["transfers"] = [
            Transfer(
                int(rng.integers(shards)),
                int(rng.integers(red.width)),
                names[int(rng.integers(len(names)))],
                names[int(rng.integers(len(names)))],
            ).to_json()
            for _ in range(draw(st.integers(0, 4)))
        ]
    status = copy.deepcopy(raw.get("status") or {})
    status.update(
        draw(
            st.sampled_from(
                [
                    {},
                    {"pieces": {"ready": 3, "total": 3}},
                    {"lostShards": "0-1"},
                    {"conditions": [{"type": "Degraded", "status": "True"}, {"type": "Ready", "status": "True"}]},
                ]
            )
        )
    )
    in_flight = {names[0]: draw(st.integers(0, 70))}
    return DataSet.from_object(raw), ClusterView(nodes, frozenset(lost & nodes.keys()), holdings), status, in_flight


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data(), st.integers(0, 70))
def test_decide_equals_the_decide_before_the_fast_path(data: st.DataObject, bound: int) -> None:
    ds, cluster, status, in_flight = _world(data.draw)
    cfg = ReconcilerSettings(max_transfers_per_node=bound, incremental=False)  # the shift is compared in test_shifts.py
    want = legacy_planning.decide(ds, cluster, status, settings=cfg, in_flight=in_flight)
    _same(decide(ds, cluster, status, settings=cfg, in_flight=in_flight), want)
    memo, token = PlanMemo(), cluster_token(cluster)
    _same(decide(ds, cluster, status, settings=cfg, in_flight=in_flight, memo=memo, token=token), want)
    _same(decide(ds, cluster, status, settings=cfg, in_flight=in_flight, memo=memo, token=token), want)  # from the memo


def _steady() -> tuple[DataSet, ClusterView]:
    objs = make_cluster_nodes(zones=3, racks_per_zone=2, hosts_per_rack=3)
    nodes = {o["metadata"]["name"]: Node.from_object(o) for o in objs}
    raw = dataset("d", shards=300)
    raw["status"] = {"placement": place(list(nodes.values()), DataSet.from_object(raw).spec).placement.to_status()}
    return DataSet.from_object(raw), ClusterView(nodes)


def test_a_target_place_would_keep_is_kept_without_calling_place(monkeypatch: pytest.MonkeyPatch) -> None:
    ds, cluster = _steady()
    want = legacy_planning.decide(ds, cluster, {})

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("place() called for a target it would keep")

    monkeypatch.setattr(planning, "place", refuse)
    got = decide(ds, cluster, {})
    _same(got, want)
    assert got.moves == 0


def test_unchanged_inputs_reuse_the_last_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    ds, cluster = _steady()
    gone = next(iter(cluster.nodes))
    smaller = ClusterView({n: v for n, v in cluster.nodes.items() if n != gone})
    memo, token = PlanMemo(), cluster_token(smaller)
    first = decide(ds, smaller, {}, memo=memo, token=token)
    assert first.moves > 0
    calls: list[object] = []

    def counted(real: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls.append(args)
            return real(*args, **kwargs)

        return call

    monkeypatch.setattr(planning, "place", counted(place))  # the exact planner
    monkeypatch.setattr(planning, "shift", counted(shift))  # the incremental one
    _same(decide(ds, smaller, {}, memo=memo, token=token), first)
    assert calls == []
    decide(ds, smaller, {}, memo=memo, token=cluster_token(cluster))  # the nodes changed: planned again
    assert calls


def test_a_pass_after_one_dataset_event_types_no_node_and_plans_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataplane.reconciler import Reconciler
    from kube.replaying import SnapshotApi

    ds, _ = _steady()
    raw = dataset("d", shards=300)
    raw["status"] = {"placement": planning.placement_status(ds.placement)} if ds.placement is not None else {}
    objs = make_cluster_nodes(zones=3, racks_per_zone=2, hosts_per_rack=3)
    rec = Reconciler(SnapshotApi([*objs, raw]), dry_run=True)
    first = rec.reconcile_once()
    assert first.decisions["default/d"].moves == 0

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("called on a pass that should reuse what it has")

    monkeypatch.setattr(Node, "from_object", refuse)
    monkeypatch.setattr(planning, "place", refuse)
    monkeypatch.setattr(planning, "keeps", refuse)
    monkeypatch.setattr(planning, "shift", refuse)
    rec.datasets["default/d"] = dict(rec.datasets["default/d"])  # an event: a new raw object, same content
    again = rec.reconcile(["default/d"])
    _same(again.decisions["default/d"], first.decisions["default/d"])
