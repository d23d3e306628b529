"""The hot path's caches never outlive what they were computed from.

One long-lived :class:`~extender.framework.Framework` (every per-list, per-wish and per-load
cache warm) answers prioritize after random updates of nodes, pods, in-flight assignments and
placements; every answer must equal the plain computation over all node ids done from scratch
(no cache but the topology's own byte tables): the same scores, the same better node not
offered, and a reply that reads back as the plain priority list.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extender import messages
from extender.eligibility import eligible
from extender.framework import Framework
from extender.joint import planned_scores
from extender.pricing import BatchPricing
from extender.ranking import TRAP_MARGIN, Missed, rank
from extender.scoring import effective_costs, normalize, raw_costs, utilization
from extender.settings import ExtenderSettings
from extender.state import ClusterState, load_vector
from extender.wishes import resolve
from kube.api import DATASETS, NODES, PODS, WatchEvent
from tests.extender import scenarios as sc
from topology.examples import make_node
from topology.pods import Pod
from topology.snapshots import load_snapshot

NODE_NAMES = [f"node-{z}-{r}-{h}" for z in range(2) for r in range(2) for h in range(3)]
OFFERABLE = [*NODE_NAMES, "nowhere"]
SHARD_SETS = ["0", "0-1", "2-3", "0-3", "1-2"]
CPUS = ["500m", "8", "30", "50"]  # nodes have 63.77 CPUs: a few binds fill one


def node_object(name: str, *, cordoned: bool = False, tainted: bool = False) -> dict[str, Any]:
    z, r, _h = name.split("-")[1:]
    taints = [{"key": "example.com/gpu", "value": "yes", "effect": "NoSchedule"}] if tainted else []
    obj = make_node(name, zone=f"us-east-1{'ab'[int(z)]}", rack=f"rack-{r}", taints=taints)
    if cordoned:
        obj["spec"]["unschedulable"] = True
    return obj


def reference(state: ClusterState, pod_obj: dict[str, Any], names: list[str]) -> tuple[list[int], tuple[str, float] | None]:
    """Scores and the better node elsewhere, computed over every node id with no cache."""
    pod = Pod.from_object(pod_obj)
    wish = resolve(state.cluster, pod)
    ids = state.cluster.node_ids(names)
    if not wish.usable or not names or wish.needed_bytes <= 0:
        return [0] * len(names), None
    assert wish.key is not None
    settings_ = state.settings
    worst = wish.needed_bytes * settings_.costs.remote
    cost = raw_costs(state.cluster.level_bytes(wish.key, wish.shards).table, settings_.costs)
    used, alloc = state.used_all()
    util = utilization(used, alloc, load_vector(pod.requests))
    eff_all = effective_costs(cost, worst, util, settings_.hotspot_threshold)
    delta = BatchPricing(state, Framework(state).costs).displacement(pod)
    if delta is not None:
        eff_all = eff_all + delta
    known = ids >= 0
    eff = eff_all[np.where(known, ids, 0)]
    eff[~known] = worst
    scores = (normalize(eff) if delta is None else planned_scores(eff)).tolist()  # jointly planned: extender.joint
    threshold = float(eff.min()) - TRAP_MARGIN * worst
    candidates = [
        j
        for j in range(eff_all.shape[0])
        if eff_all[j] < threshold and state.present_at(np.array([j]))[0] and util[j] <= 1.0 and state.cluster.name_of(j) not in names
    ]
    allowed = [j for j, ok in zip(candidates, eligible(state, pod, np.array(candidates, dtype=np.int64)).tolist(), strict=True) if ok]
    if not allowed:
        return scores, None
    best = min(allowed, key=lambda j: (float(eff_all[j]), j))
    return scores, (state.cluster.name_of(best), float(eff_all[best]))


operation = st.one_of(
    st.tuples(st.just("bind"), st.integers(0, 7), st.sampled_from(NODE_NAMES), st.sampled_from(CPUS)),
    st.tuples(st.just("assign"), st.integers(0, 7), st.sampled_from(NODE_NAMES)),
    st.tuples(st.just("unbind"), st.integers(0, 7)),
    st.tuples(st.just("wait"), st.integers(0, 7), st.sampled_from(SHARD_SETS)),
    st.tuples(st.just("node"), st.sampled_from(NODE_NAMES), st.booleans(), st.booleans()),
    st.tuples(st.just("remove"), st.sampled_from(NODE_NAMES)),
    st.tuples(st.just("place"), st.permutations(NODE_NAMES)),
    st.tuples(st.just("ask"), st.sampled_from(SHARD_SETS), st.sampled_from(CPUS), st.lists(st.sampled_from(OFFERABLE), min_size=1)),
)


def apply(state: ClusterState, op: tuple[Any, ...]) -> None:
    kind = op[0]
    if kind == "bind":
        state.apply(WatchEvent("MODIFIED", sc.pod(f"b{op[1]}", uid=f"b{op[1]}", node_name=op[2], cpu=op[3])), PODS)
    elif kind == "assign":
        state.record_assignment(sc.NAMESPACE, f"w{op[1]}", f"w{op[1]}", op[2])
    elif kind == "unbind":
        state.apply(WatchEvent("DELETED", sc.pod(f"b{op[1]}", uid=f"b{op[1]}")), PODS)
    elif kind == "wait":
        state.apply(WatchEvent("MODIFIED", sc.pod(f"w{op[1]}", uid=f"w{op[1]}", shards=op[2])), PODS)
    elif kind == "node":
        state.apply(WatchEvent("MODIFIED", node_object(op[1], cordoned=op[2], tainted=op[3])), NODES)
    elif kind == "remove":
        state.apply(WatchEvent("DELETED", {"metadata": {"name": op[1]}}), NODES)
    elif kind == "place":
        obj = sc.dataset()
        obj["status"]["placement"]["nodes"] = list(op[1][:4])
        state.apply(WatchEvent("MODIFIED", obj), DATASETS)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operation, min_size=1, max_size=25), st.booleans())
def test_cached_prioritize_equals_the_uncached_computation_after_any_updates(ops: list[tuple[Any, ...]], batch: bool) -> None:
    state = ClusterState.from_snapshot(load_snapshot(sc.snapshot()), ExtenderSettings(batch_limit=32 if batch else 0))
    fw = Framework(state)
    rack_1 = [n for n in NODE_NAMES if n.split("-")[2] == "1"]  # holds no replica of shards 0-1
    fixed = [("0-1", "8", list(NODE_NAMES)), ("2-3", "500m", NODE_NAMES[:5]), ("0-1", "30", rack_1), ("0", "8", rack_1[::-1])]
    asked: list[tuple[str, str, list[str]]] = []
    for op in ops:
        apply(state, op)
        if op[0] == "ask":
            asked.append((op[1], op[2], list(op[3])))
        for shards, cpu, names in [*fixed, *asked[-2:]]:  # the same lists again and again: every cache is warm
            pod_obj = sc.pod("reader", uid="reader", shards=shards, cpu=cpu)
            with state.lock:
                cycle = fw.cycle(Pod.from_object(pod_obj))
                key = messages.names_key(names)
                ranking = rank(fw, cycle, names, key=key)
                body = fw.reply(names, ranking.scores, key)
            scores, missed = reference(state, pod_obj, names)
            assert ranking.scores.tolist() == scores
            assert orjson.loads(body) == messages.priority_reply(names, scores)
            got = None if ranking.missed is None else (ranking.missed.node, ranking.missed.node_cost)
            assert got == missed


def test_a_better_node_found_without_a_full_pass_is_the_cheapest_eligible_one() -> None:
    state = ClusterState.from_snapshot(load_snapshot(sc.snapshot()))
    fw = Framework(state)
    offered = [n for n in NODE_NAMES if n.split("-")[2] == "1"]  # rack 1 of each zone: reads shards 0-1 across racks
    pod_obj = sc.pod("reader", uid="reader", shards="0-1")
    with state.lock:
        ranking = rank(fw, fw.cycle(Pod.from_object(pod_obj)), offered)
    assert isinstance(ranking.missed, Missed)
    assert ranking.missed.node == "node-0-0-0"  # holds shards 0-1, lowest id among the two holders
    assert reference(state, pod_obj, offered)[1] == (ranking.missed.node, ranking.missed.node_cost)
    state.apply(WatchEvent("MODIFIED", node_object("node-0-0-0", cordoned=True)), NODES)
    with state.lock:
        ranking = rank(fw, fw.cycle(Pod.from_object(pod_obj)), offered)
    assert ranking.missed is not None
    assert ranking.missed.node == "node-1-0-0"  # the cordoned holder is skipped


def test_a_pod_is_parsed_once_per_resource_version_and_a_change_is_seen() -> None:
    state = ClusterState.from_snapshot(load_snapshot(sc.snapshot()))
    fw = Framework(state)
    raw = sc.pod("reader", uid="reader", shards="0-1")
    raw["metadata"]["resourceVersion"] = "7"
    first = fw.pod(raw)
    assert fw.pod(orjson.loads(orjson.dumps(raw))) is first  # the same object sent again
    changed = sc.pod("reader", uid="reader", shards="2-3")
    changed["metadata"]["resourceVersion"] = "8"
    assert fw.pod(changed).data == Pod.from_object(changed).data != first.data
    unversioned = sc.pod("reader", uid="reader", shards="0")
    assert fw.pod(unversioned) is not fw.pod(unversioned)  # no resourceVersion: parsed every time


def test_a_holder_that_returns_is_found_again_by_the_better_node_check() -> None:
    state = ClusterState.from_snapshot(load_snapshot(sc.snapshot()))
    fw = Framework(state)
    offered = [n for n in NODE_NAMES if n.split("-")[2] == "1"]
    pod_obj = sc.pod("reader", uid="reader", shards="0-1")

    def missed() -> str | None:
        with state.lock:
            found = rank(fw, fw.cycle(Pod.from_object(pod_obj)), offered, key=messages.names_key(offered)).missed
        assert (None if found is None else (found.node, found.node_cost)) == reference(state, pod_obj, offered)[1]
        return None if found is None else found.node

    for holder in ("node-0-0-0", "node-1-0-0"):
        state.apply(WatchEvent("DELETED", {"metadata": {"name": holder}}), NODES)
    assert missed() is None  # no holder: every node reads everything remotely (the lowest cost remembered)
    state.apply(WatchEvent("ADDED", node_object("node-1-0-0")), NODES)
    assert missed() == "node-1-0-0"
    state.apply(WatchEvent("ADDED", node_object("node-0-0-0")), NODES)
    assert missed() == "node-0-0-0"
