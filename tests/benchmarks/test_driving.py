"""The kube-scheduler driver against kube-scheduler's documented rules."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pytest
from fastapi import FastAPI, Request, Response

from benchmarks.driving import (
    ExtenderClient,
    ExtenderConfig,
    ManagedResource,
    NodeAffinity,
    PodArrival,
    Scheduler,
    SchedulerSettings,
    balanced_allocation_score,
    extender_contribution,
    least_allocated_score,
    node_tree_order,
    num_feasible_nodes_to_find,
    select_host,
    term_matches,
)
from benchmarks.serving import LocalServer
from benchmarks.traces import pod_object
from topology import labels
from topology.errors import KblError
from topology.examples import make_cluster_nodes
from topology.nodes import Node
from topology.pods import Pod

GiB = 2**30


@pytest.mark.parametrize(
    ("percentage", "nodes", "expected"),
    [
        (0, 50, 50),  # below 100 nodes: all
        (0, 99, 99),
        (0, 100, 100),  # adaptive 50% = 50, raised to the minimum of 100
        (0, 1000, 420),  # 50 - 1000/125 = 42%
        (0, 5000, 500),  # 50 - 40 = 10%
        (0, 6000, 300),  # 50 - 48 = 2% -> floor of 5%
        (0, 20000, 1000),  # 5%
        (10, 5000, 500),
        (100, 300, 300),
        (1, 5000, 100),  # 50 nodes, raised to 100
        (30, 250, 100),  # 75, raised to 100
        (50, 333, 166),  # integer division
    ],
)
def test_num_feasible_nodes_to_find_follows_kube_scheduler(percentage: int, nodes: int, expected: int) -> None:
    assert num_feasible_nodes_to_find(percentage, nodes) == expected


def test_least_allocated_and_balanced_scores_use_integer_arithmetic() -> None:
    assert least_allocated_score((1000, 2 * GiB), (4000, 8 * GiB)) == 75
    assert least_allocated_score((2000, 2 * GiB), (4000, 8 * GiB)) == 62  # (50 + 75) // 2
    assert least_allocated_score((5000, 2 * GiB), (4000, 8 * GiB)) == 37  # cpu over: 0, memory 75
    assert balanced_allocation_score((1000, 2 * GiB), (4000, 8 * GiB)) == 100
    assert balanced_allocation_score((2000, 2 * GiB), (4000, 8 * GiB)) == 87  # 1 - |0.5 - 0.25| / 2


def test_extender_score_is_multiplied_by_weight_and_ten_without_clamping() -> None:
    assert extender_contribution(7, 3) == 210
    assert extender_contribution(10, 1) == 100
    assert extender_contribution(800, 1) == 8000  # Stork's overflow is not clamped by kube-scheduler


def test_tie_break_is_uniform_among_equal_nodes_and_seeded() -> None:
    scored = [("a", 5), ("b", 9), ("c", 9), ("d", 9), ("e", 9), ("f", 1)]
    rng = random.Random(7)
    counts = Counter(select_host(scored, rng) for _ in range(8000))
    assert set(counts) == {"b", "c", "d", "e"}
    assert all(1700 < c < 2300 for c in counts.values()), counts
    first = [select_host(scored, random.Random(3)) for _ in range(5)]
    assert first == [select_host(scored, random.Random(3)) for _ in range(5)]
    with pytest.raises(KblError):
        select_host([], rng)


def test_node_tree_order_interleaves_zones() -> None:
    nodes = [Node.from_object(o) for o in make_cluster_nodes(zones=3, racks_per_zone=1, hosts_per_rack=2)]
    order = [n.name for n in node_tree_order(nodes)]
    assert order == ["node-0-0-0", "node-1-0-0", "node-2-0-0", "node-0-0-1", "node-1-0-1", "node-2-0-1"]


def _nodes(zones: int, racks: int, hosts: int) -> list[Node]:
    return [Node.from_object(o) for o in make_cluster_nodes(zones=zones, racks_per_zone=racks, hosts_per_rack=hosts)]


def _pod(name: str, cpu_m: int = 9000) -> tuple[dict[str, Any], Pod]:
    obj = pod_object(name, "t", f"uid-{name}", kbl="k", dataset="d", shards=[0], cpu_m=cpu_m, memory_b=GiB)
    return obj, Pod.from_object(obj)


def test_sampling_offers_at_most_num_feasible_nodes_and_rotates_the_start_index() -> None:
    nodes = _nodes(3, 4, 10)  # 120 nodes
    sched = Scheduler(nodes, settings=SchedulerSettings(percentage_of_nodes_to_score=50))
    order = [n.name for n in sched.nodes]
    obj, pod = _pod("p")
    first = sched.schedule_one(pod, obj)
    assert first.offered == order[:100]  # 50% = 60, raised to 100
    assert sched.next_start_node_index == 100
    second = sched.schedule_one(pod, obj)
    assert second.offered == order[100:] + order[:80]
    assert sched.next_start_node_index == 80


def test_failed_nodes_count_as_processed_for_the_rotation() -> None:
    nodes = _nodes(1, 1, 4)
    sched = Scheduler(nodes)
    obj, pod = _pod("big", cpu_m=60000)
    sched.assume(pod, sched.nodes[0].name)  # node 0 now too full for another big pod
    attempt = sched.schedule_one(pod, obj)
    assert attempt.evaluated == 4
    assert len(attempt.offered) == 3
    assert sched.nodes[0].name in attempt.failed


def _with_affinity(obj: dict[str, Any], required: list[Any] | None, preferred: list[Any] | None = None) -> dict[str, Any]:
    node_affinity: dict[str, Any] = {}
    if required is not None:
        node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": required}
    if preferred:
        node_affinity["preferredDuringSchedulingIgnoredDuringExecution"] = preferred
    return {**obj, "spec": {**obj["spec"], "affinity": {"nodeAffinity": node_affinity}}}


def test_match_fields_on_names_narrow_the_evaluated_nodes_before_sampling() -> None:
    nodes = _nodes(3, 4, 10)  # 120 nodes: adaptive would evaluate 100 of them
    sched = Scheduler(nodes)
    wanted = [n.name for n in sched.nodes[7:10]] + ["not-a-node"]
    obj, pod = _pod("p")
    obj = _with_affinity(obj, [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": wanted}]}])
    attempt = sched.schedule_one(pod, obj)
    assert attempt.evaluated == 3
    assert sorted(attempt.offered) == sorted(wanted[:3])
    assert attempt.node in wanted


def test_required_zone_affinity_filters_and_preferred_affinity_scores() -> None:
    nodes = _nodes(3, 1, 4)
    sched = Scheduler(nodes)
    zone = "us-east-1b"
    obj, pod = _pod("p")
    required = [{"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": [zone]}]}]
    attempt = sched.schedule_one(pod, _with_affinity(obj, required))
    assert {sched.nodes[sched.index[n]].labels["topology.kubernetes.io/zone"] for n in attempt.offered} == {zone}
    target = sched.nodes[5].name
    preferred = [{"weight": 100, "preference": {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [target]}]}}]
    for _ in range(5):
        assert sched.schedule_one(pod, _with_affinity(obj, None, preferred)).node == target


def test_node_affinity_terms_follow_upstream_semantics() -> None:
    node = _nodes(1, 1, 1)[0]
    zone = node.labels["topology.kubernetes.io/zone"]
    assert not term_matches(node, {})  # an empty term matches nothing
    assert term_matches(node, {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": [zone]}]})
    assert term_matches(node, {"matchExpressions": [{"key": "missing", "operator": "DoesNotExist"}]})
    assert not term_matches(node, {"matchExpressions": [{"key": "missing", "operator": "Exists"}]})
    assert term_matches(node, {"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["other"]}]})
    named = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a"]}]}
    mixed = {"nodeSelectorTerms": [named, {"matchExpressions": []}]}
    spec = {"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": mixed}}}}
    assert NodeAffinity.of(spec).names is None  # one term without names: no PreFilter narrowing


# ----------------------------------------------------------------- a test extender over HTTP
class Behaviour:
    """What the test extender does; tests mutate it."""

    def __init__(self) -> None:
        self.filter_reply: dict[str, Any] | None = None
        self.prioritize_status = 200
        self.scores: dict[str, int] = {}
        self.calls: Counter[str] = Counter()
        self.bodies: dict[str, Any] = {}


def _test_app(b: Behaviour) -> FastAPI:
    app = FastAPI()

    @app.post("/filter")
    async def filter_(request: Request) -> Response:
        body = orjson.loads(await request.body())
        b.calls["filter"] += 1
        b.bodies["filter"] = body
        reply = b.filter_reply if b.filter_reply is not None else {"NodeNames": body["NodeNames"], "Nodes": body["Nodes"]}
        return Response(orjson.dumps(reply), media_type="application/json")

    @app.post("/prioritize")
    async def prioritize(request: Request) -> Response:
        body = orjson.loads(await request.body())
        b.calls["prioritize"] += 1
        names = body["NodeNames"] or [i["metadata"]["name"] for i in body["Nodes"]["items"]]
        reply = [{"Host": n, "Score": b.scores.get(n, 0)} for n in names]
        return Response(orjson.dumps(reply), status_code=b.prioritize_status, media_type="application/json")

    @app.post("/bind")
    async def bind(request: Request) -> Response:
        b.calls["bind"] += 1
        b.bodies["bind"] = orjson.loads(await request.body())
        return Response(b'{"Error": ""}', media_type="application/json")

    return app


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Behaviour, str]]:
    b = Behaviour()
    with LocalServer(_test_app(b)) as server:
        yield b, server.url


_CLIENTS: list[ExtenderClient] = []


def _scheduler(
    nodes: list[Node], url: str, *, cache: bool = True, weight: int = 1, bind: str = "", managed: tuple[ManagedResource, ...] = ()
) -> Scheduler:
    encoded = {
        n.name: orjson.dumps({"metadata": {"name": n.name}, "status": {"allocatable": {"cpu": f"{n.allocatable.cpu_m}m"}}})
        for n in nodes
    }
    config = ExtenderConfig(url, node_cache_capable=cache, weight=weight, bind_verb=bind, managed_resources=managed)
    client = ExtenderClient(config, encoded)
    _CLIENTS.append(client)
    return Scheduler(nodes, [client])


@pytest.fixture
def behaviour(served: tuple[Behaviour, str]) -> Iterator[Behaviour]:
    b = served[0]
    b.__init__()  # type: ignore[misc]
    yield b
    while _CLIENTS:
        _CLIENTS.pop().close()


def test_node_cache_capable_sends_names_only_and_rejects_a_name_not_offered(behaviour: Behaviour, served: tuple[Behaviour, str]) -> None:
    nodes = _nodes(1, 1, 3)
    sched = _scheduler(nodes, served[1])
    obj, pod = _pod("p")
    ok = sched.schedule_one(pod, obj)
    assert ok.node is not None
    sent = behaviour.bodies["filter"]
    assert sent["Nodes"] is None
    assert sorted(sent["NodeNames"]) == sorted(n.name for n in nodes)
    assert sent["Pod"]["metadata"]["name"] == "p"
    behaviour.filter_reply = {"NodeNames": [nodes[0].name, "node-not-offered"]}
    failed = sched.schedule_one(pod, obj)
    assert failed.node is None
    assert "claims a filtered node 'node-not-offered'" in failed.reason
    assert sched.extender_errors == 1


def test_full_nodes_mode_sends_node_objects_and_uses_the_returned_items(behaviour: Behaviour, served: tuple[Behaviour, str]) -> None:
    nodes = _nodes(1, 1, 3)
    sched = _scheduler(nodes, served[1], cache=False)
    obj, pod = _pod("p")
    behaviour.filter_reply = {"Nodes": {"items": [{"metadata": {"name": nodes[2].name}}]}, "NodeNames": None}
    attempt = sched.schedule_one(pod, obj)
    sent = behaviour.bodies["filter"]
    assert sent["NodeNames"] is None
    assert {i["metadata"]["name"] for i in sent["Nodes"]["items"]} == {n.name for n in nodes}
    assert attempt.node == nodes[2].name
    assert behaviour.calls["prioritize"] == 0  # one feasible node: no scoring, no prioritize call


def test_failed_and_unresolvable_nodes_are_recorded_and_unresolvable_wins(behaviour: Behaviour, served: tuple[Behaviour, str]) -> None:
    nodes = _nodes(1, 1, 3)
    sched = _scheduler(nodes, served[1])
    obj, pod = _pod("p")
    a, b, c = (n.name for n in nodes)
    behaviour.filter_reply = {"NodeNames": [c], "FailedNodes": {a: "busy", b: "both"}, "FailedAndUnresolvableNodes": {b: "never"}}
    attempt = sched.schedule_one(pod, obj)
    assert attempt.node == c
    assert attempt.failed == {a: "busy"}
    assert attempt.unresolvable == {b: "never"}


def test_filter_error_fails_the_attempt_and_the_pod_retries(behaviour: Behaviour, served: tuple[Behaviour, str]) -> None:
    nodes = _nodes(1, 1, 2)
    sched = _scheduler(nodes, served[1])
    obj, pod = _pod("p")
    behaviour.filter_reply = {"Error": "cache not synced"}
    attempt = sched.schedule_one(pod, obj)
    assert attempt.node is None
    assert "cache not synced" in attempt.reason
    behaviour.filter_reply = None
    assert sched.schedule_one(pod, obj).node is not None


def test_prioritize_errors_are_ignored(behaviour: Behaviour, served: tuple[Behaviour, str]) -> None:
    nodes = _nodes(1, 1, 3)
    sched = _scheduler(nodes, served[1])
    obj, pod = _pod("p")
    behaviour.prioritize_status = 500
    attempt = sched.schedule_one(pod, obj)
    assert attempt.node is not None
    assert sched.prioritize_errors == 1
    assert len(set(attempt.totals.values())) == 1  # plugins only, all nodes empty and equal


def test_extender_scores_are_merged_as_score_times_weight_times_ten(behaviour: Behaviour, served: tuple[Behaviour, str]) -> None:
    nodes = _nodes(1, 1, 3)
    sched = _scheduler(nodes, served[1], weight=3)
    a, b, c = (n.name for n in sched.nodes)
    filler, _ = _pod("filler")
    sched.assume(Pod.from_object(filler), a)  # a is busier: lower LeastAllocated score
    obj, pod = _pod("p")
    plugins = sched.schedule_one(pod, obj).totals
    behaviour.scores = {a: 7, b: 1}
    attempt = sched.schedule_one(pod, obj)
    assert attempt.totals == {a: plugins[a] + 210, b: plugins[b] + 30, c: plugins[c]}
    assert attempt.node == a


def test_bind_goes_through_the_extender_bind_verb(behaviour: Behaviour, served: tuple[Behaviour, str]) -> None:
    nodes = _nodes(1, 1, 2)
    sched = _scheduler(nodes, served[1], bind="bind")
    obj, pod = _pod("p")
    events: list[tuple[str, str | None]] = []
    sched.on_pod_event = lambda kind, o: events.append((kind, o["spec"].get("nodeName")))
    result = sched.run([PodArrival(obj, pod, 0.0, 10.0)])
    node = result.outcomes[pod.key].node
    assert node is not None
    assert behaviour.bodies["bind"] == {"PodName": "p", "PodNamespace": "t", "PodUID": "uid-p", "Node": node}
    assert events == [("ADDED", None), ("MODIFIED", node), ("MODIFIED", node), ("DELETED", node)]


def test_pods_wait_for_capacity_and_release_it_when_they_finish() -> None:
    nodes = _nodes(1, 1, 1)  # 7 slots of 9000m
    sched = Scheduler(nodes, settings=SchedulerSettings(seed=1))
    arrivals = []
    for i in range(9):
        obj, pod = _pod(f"p{i}")
        arrivals.append(PodArrival(obj, pod, 0.0, 100.0))
    result = sched.run(arrivals)
    starts = sorted(o.start_s or 0.0 for o in result.outcomes.values())
    assert starts[:7] == [0.0] * 7
    assert starts[7:] == [100.0, 100.0]
    assert result.pending == []
    assert result.delayed == 2
    assert sched.free[0] == nodes[0].allocatable


def test_a_pod_uses_its_profiles_percentage_every_feasible_node_on_the_exhaustive_one() -> None:
    nodes = _nodes(3, 10, 10)  # 300 nodes: adaptive seeks 50 - 300/125 = 48% = 144
    profiles = {"kbl-scheduler-exhaustive": 100}
    sched = Scheduler(nodes, settings=SchedulerSettings(percentage_of_nodes_to_score=0, profiles=profiles))
    obj, _ = _pod("p")
    zone = {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["us-east-1a"]}
    preferred = [{"weight": 50, "preference": {"matchExpressions": [zone]}}]
    for name, expected in (("kbl-scheduler", 144), ("kbl-scheduler-exhaustive", 300), ("another-scheduler", 144)):
        routed = _with_affinity({**obj, "spec": {**obj["spec"], "schedulerName": name}}, None, preferred)
        attempt = sched.schedule_one(Pod.from_object(routed), routed)
        assert len(attempt.offered) == expected == num_feasible_nodes_to_find(sched.settings.percentage_for(name), 300)
    assert SchedulerSettings(percentage_of_nodes_to_score=100).percentage_for("kbl-scheduler") == 100


def test_vectorised_filters_and_scores_agree_with_the_per_node_rules() -> None:
    rng = random.Random(3)
    objs = make_cluster_nodes(zones=3, racks_per_zone=3, hosts_per_rack=12)
    for o in objs[::7]:
        o["spec"]["taints"] = [{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]
    for o in objs[::11]:
        o["spec"]["unschedulable"] = True
    nodes = [Node.from_object(o) for o in objs]
    sched = Scheduler(nodes, settings=SchedulerSettings(percentage_of_nodes_to_score=100))
    for i in range(150):  # fill nodes unevenly
        _, filler = _pod(f"f{i}", cpu_m=rng.choice([1000, 9000, 20000]))
        node = rng.choice(sched.nodes)
        if sched.free[sched.index[node.name]].fits(filler.requests):
            sched.assume(filler, node.name)
    zone = [{"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["us-east-1a", "us-east-1c"]}]}]
    reasons: set[str] = set()
    for cpu_m, required, selector in ((9000, None, None), (30000, zone, None), (9000, None, {"topology.kubernetes.io/zone": "us-east-1b"})):
        obj, _ = _pod("p", cpu_m=cpu_m)
        obj = _with_affinity(obj, required)
        if selector:
            obj["spec"]["nodeSelector"] = selector
        pod = Pod.from_object(obj)
        attempt = sched.schedule_one(pod, obj)
        affinity = NodeAffinity.of(obj)
        reference = {n.name: sched._passes_filters(pod, i, affinity) for i, n in enumerate(sched.nodes)}
        assert sorted(attempt.offered) == sorted(name for name, why in reference.items() if why is None)
        assert attempt.failed == {name: why for name, why in reference.items() if why is not None}
        reasons |= set(attempt.failed.values())
        idx = np.array([sched.index[n] for n in attempt.offered], dtype=np.int64)
        for i, score in zip(idx.tolist(), sched._plugin_scores(pod, idx).tolist(), strict=True):
            requested = (int(sched.used_score[i, 0]) + pod.requests.cpu_m, int(sched.used_score[i, 1]) + pod.requests.memory_b)
            alloc = (int(sched.alloc[i, 0]), int(sched.alloc[i, 1]))
            assert score == least_allocated_score(requested, alloc) + balanced_allocation_score(requested, alloc)
    assert len(reasons) == 4  # unschedulable, taint, affinity/selector, resources: every rule was exercised
    terms: list[dict[str, Any]] = [
        {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "NotIn", "values": ["us-east-1a"]}]},
        {"matchExpressions": [{"key": labels.DEFAULT_RACK, "operator": "Exists"}, {"key": "nope", "operator": "DoesNotExist"}]},
        {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["arm64"]}]},
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [sched.nodes[3].name, "x"]}]},
        {"matchFields": [{"key": "metadata.uid", "operator": "Exists"}]},
        {"matchExpressions": [{"key": "nope", "operator": "Gt", "values": ["1"]}]},
        {},
    ]
    for term in terms:
        assert sched.term_mask(term).tolist() == [term_matches(n, term) for n in sched.nodes], term


# ------------------------------------------------------------ the API server's side (issue 25)
def _owned(name: str) -> tuple[dict[str, Any], Pod]:
    obj, _ = _pod(name)
    obj["metadata"]["ownerReferences"] = [{"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "j-uid", "controller": True}]
    return obj, Pod.from_object(obj)


def _gate(obj: dict[str, Any]) -> dict[str, Any]:
    """A webhook adding one scheduling gate at creation."""
    return {**obj, "spec": {**obj["spec"], "schedulingGates": [{"name": "kbl.io/narrow"}]}}


def test_a_gated_pod_is_held_until_a_controller_removes_its_gate_through_the_api() -> None:
    sched = Scheduler(_nodes(1, 1, 2), settings=SchedulerSettings(seed=1))
    sched.admit = _gate
    seen: list[str] = []
    sched.watchers.append(lambda kind, obj: seen.append(kind))

    def controller() -> bool:  # releases at t >= 5 s; busy (ticking) until then
        if sched.now < 5.0:
            return True
        for key in list(sched._held):
            arrival = sched._by_key[key]
            version = arrival.obj["metadata"]["resourceVersion"]
            release = {"metadata": {"resourceVersion": version}, "spec": {"schedulingGates": None}}
            sched.patch_pod(arrival.pod.namespace, arrival.pod.name, release)
        return False

    sched.controllers.append(controller)
    obj, pod = _owned("p")
    result = sched.run([PodArrival(obj, pod, 0.0, 10.0)])
    assert result.outcomes[pod.key].start_s == 5.0  # not before: gated pods are not scheduled
    assert result.outcomes[pod.key].attempts == 1
    assert seen[:2] == ["ADDED", "MODIFIED"]  # the gate removal reached the watchers


def test_the_api_validates_patches_of_pods_as_the_api_server_does() -> None:
    from kube.api import ApiError

    sched = Scheduler(_nodes(1, 1, 2), settings=SchedulerSettings(seed=1))
    sched.admit = _gate
    errors: list[int] = []

    def controller() -> bool:
        for key in list(sched._held):
            arrival = sched._by_key[key]
            ns, name = arrival.pod.namespace, arrival.pod.name
            for patch in (
                {"metadata": {"resourceVersion": "stale"}, "spec": {"schedulingGates": None}},  # 409
                {"spec": {"schedulingGates": [{"name": "kbl.io/narrow"}, {"name": "new"}]}},  # a gate added: 422
                {"spec": {"schedulerName": "other"}},  # not a scheduling directive: 422
            ):
                try:
                    sched.patch_pod(ns, name, patch)
                except ApiError as exc:
                    errors.append(exc.status)
            terms = [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [sched.nodes[1].name]}]}]
            sched.patch_pod(ns, name, {"spec": {"schedulingGates": None, "affinity": {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}})
            try:  # once ungated, its directives are immutable
                sched.patch_pod(ns, name, {"spec": {"nodeSelector": {"a": "b"}}})
            except ApiError as exc:
                errors.append(exc.status)
        return False

    sched.controllers.append(controller)
    obj, pod = _owned("p")
    result = sched.run([PodArrival(obj, pod, 0.0, 10.0)])
    assert errors == [409, 422, 422, 422]
    assert result.outcomes[pod.key].node == sched.nodes[1].name  # the accepted tightening held


def test_a_deleted_pod_is_recreated_by_its_owner_and_admitted_again() -> None:
    sched = Scheduler(_nodes(1, 1, 2), settings=SchedulerSettings(seed=1))
    admitted: list[str] = []

    def admit(obj: dict[str, Any]) -> dict[str, Any]:
        admitted.append(obj["metadata"]["name"])
        return _gate(obj) if len(admitted) == 1 else obj  # the first is gated, the replacement not

    sched.admit = admit

    def controller() -> bool:
        for key in list(sched._held):
            arrival = sched._by_key[key]
            sched.delete_pod(arrival.pod.namespace, arrival.pod.name)
        return False

    sched.controllers.append(controller)
    obj, pod = _owned("p")
    bare, bare_pod = _pod("bare")
    result = sched.run([PodArrival(obj, pod, 0.0, 10.0), PodArrival(bare, bare_pod, 1.0, 10.0)])
    assert result.outcomes[pod.key].deleted
    replacement = next(o for o in result.outcomes.values() if o.origin == pod.key)
    assert replacement.node is not None
    assert replacement.start_s == 0.0
    assert admitted == ["p", replacement.key.split("/")[1], "bare"]  # created from the template, admitted again
    assert result.pending == []
    assert result.deleted == 1


# ------------------------------------------------------------- managedResources (IsInterested)
EXT = "kbl.io/extender"


def _asking(name: str, where: str, part: str) -> tuple[dict[str, Any], Pod]:
    """A pod whose first container (``where="containers"``) or an init container asks for one
    ``kbl.io/extender`` in its ``part`` (``requests`` or ``limits``)."""
    obj, _ = _pod(name)
    if where == "initContainers":
        obj["spec"]["initContainers"] = [{"name": "init", "resources": {part: {EXT: "1"}}}]
    else:
        obj["spec"]["containers"][0].setdefault("resources", {}).setdefault(part, {})[EXT] = "1"
    return obj, Pod.from_object(obj)


def test_an_extender_with_managed_resources_sees_only_the_pods_that_request_or_limit_one(
    behaviour: Behaviour, served: tuple[Behaviour, str]
) -> None:
    # upstream HTTPExtender.IsInterested: requests or limits of containers or init containers
    nodes = _nodes(1, 1, 3)
    sched = _scheduler(nodes, served[1], bind="bind", managed=(ManagedResource(EXT, ignored_by_scheduler=True),))
    plain, plain_pod = _pod("plain")
    result = sched.run([PodArrival(plain, plain_pod, 0.0, 10.0)])
    assert result.outcomes[plain_pod.key].node is not None  # kube-scheduler's own plugins, default binder
    assert behaviour.calls == Counter()  # no filter, no prioritize, no bind
    assert result.outcomes[plain_pod.key].offered == 0  # no name was offered to an extender
    for i, (where, part) in enumerate([("containers", "requests"), ("containers", "limits"), ("initContainers", "limits")]):
        obj, pod = _asking(f"asks-{i}", where, part)
        before = Counter(behaviour.calls)
        attempt = sched.schedule_one(pod, obj)
        assert attempt.node is not None
        assert behaviour.calls["filter"] == before["filter"] + 1
        assert behaviour.calls["prioritize"] == before["prioritize"] + 1
        sched.bind(pod, attempt.node, obj)
        assert behaviour.calls["bind"] == before["bind"] + 1
    other = ExtenderConfig(served[1], managed_resources=(ManagedResource("example.com/other"),))
    assert not ExtenderClient(other, {}).is_interested(_asking("x", "containers", "requests")[0])
    assert ExtenderClient(ExtenderConfig(served[1]), {}).is_interested(plain)  # none managed: every pod


def test_a_managed_resource_no_node_advertises_blocks_the_pod_unless_ignored_by_the_scheduler(
    behaviour: Behaviour, served: tuple[Behaviour, str]
) -> None:
    # NodeResourcesFit checks every extended resource a pod requests, except those the
    # extenders' managedResources mark ignoredByScheduler (the kubelet then drops the request
    # of a resource its node does not have, removeMissingExtendedResources, so the pod runs)
    nodes = _nodes(1, 1, 2)
    obj, pod = _asking("p", "containers", "requests")
    assert pod.requests.extended == {EXT: 1}
    strict = _scheduler(nodes, served[1], managed=(ManagedResource(EXT, ignored_by_scheduler=False),))
    blocked = strict.schedule_one(pod, obj)
    assert blocked.node is None
    assert set(blocked.failed.values()) == {"Insufficient resources"}
    ignoring = _scheduler(nodes, served[1], managed=(ManagedResource(EXT, ignored_by_scheduler=True),))
    assert ignoring.schedule_one(pod, obj).node is not None
    assert ignoring._passes_filters(pod, 0) is None  # the per-node reference rule agrees
    assert strict._passes_filters(pod, 0) == "Insufficient resources"


def test_the_api_lets_a_gated_pod_change_its_preferred_terms_and_freezes_them_once_ungated() -> None:
    # KEP-3838: while gated, preferredDuringScheduling terms may change in any way; once the last
    # gate is gone, the scheduling directives (preferred terms included) are immutable
    from kube.api import ApiError

    sched = Scheduler(_nodes(1, 1, 3), settings=SchedulerSettings(seed=1))
    sched.admit = _gate
    errors: list[int] = []
    preferred = "preferredDuringSchedulingIgnoredDuringExecution"

    def term(weight: int, name: str) -> dict[str, Any]:
        return {"weight": weight, "preference": {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [name]}]}}

    def controller() -> bool:
        for key in list(sched._held):
            arrival = sched._by_key[key]
            ns, name = arrival.pod.namespace, arrival.pod.name
            first, last = sched.nodes[0].name, sched.nodes[2].name
            sched.patch_pod(ns, name, {"spec": {"affinity": {"nodeAffinity": {preferred: [term(100, first)]}}}})
            sched.patch_pod(ns, name, {"spec": {"affinity": {"nodeAffinity": {preferred: [term(100, last)]}}}})  # changed: fine
            sched.patch_pod(ns, name, {"spec": {"schedulingGates": None}})
            try:
                sched.patch_pod(ns, name, {"spec": {"affinity": {"nodeAffinity": {preferred: [term(100, first)]}}}})
            except ApiError as exc:
                errors.append(exc.status)
        return False

    sched.controllers.append(controller)
    obj, pod = _owned("p")
    result = sched.run([PodArrival(obj, pod, 0.0, 10.0)])
    assert errors == [422]
    assert result.outcomes[pod.key].node == sched.nodes[2].name  # the preferred term it kept is scored (weight 2 x 100)
