"""repair_plan(), durability() and removal_is_safe(): hand-checked cases and random failures."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from placement import durability, place, removal_is_safe, repair_plan
from topology import labels
from topology.datasets import DataSetSpec, Erasure, Redundancy, Replicas, ShardPlacement
from topology.nodes import Node, Resources

GIB = 2**30


def node(name: str, zone: str, rack: str, storage: int = 1000 * GIB) -> Node:
    lab = {labels.HOSTNAME: name, labels.ZONE: zone, labels.DEFAULT_RACK: rack}
    return Node(name, "r", f"r/{zone}", f"r/{zone}/{rack}", lab, Resources(storage_b=storage))


def grid(zones: int, racks: int, hosts: int) -> list[Node]:
    return [node(f"n-{z}-{r}-{h}", f"z{z}", f"rack-{r}") for z in range(zones) for r in range(racks) for h in range(hosts)]


def spec(shards: int, red: Redundancy, fd: str = labels.DEFAULT_RACK) -> DataSetSpec:
    return DataSetSpec("d", "ns", shards, np.full(shards, GIB, dtype=np.int64), red, fd, {})


# Four nodes, each its own rack; a and b in zone z0, c and d in z1. Two replicas per shard:
# shard 0 on a,b; shard 1 on a,c; shard 2 on c,d; shard 3 on b,d.
FOUR = [node("a", "z0", "r0"), node("b", "z0", "r1"), node("c", "z1", "r2"), node("d", "z1", "r3")]
FOUR_PLACEMENT = ShardPlacement(("a", "b", "c", "d"), np.array([[0, 1], [0, 2], [2, 3], [1, 3]], dtype=np.int32))
FOUR_SPEC = spec(4, Replicas(2))


def test_durability_of_a_hand_checked_four_node_placement() -> None:
    report = durability(FOUR, FOUR_SPEC, FOUR_PLACEMENT, f=2)
    by_level = {d.level: d for d in report.domains}
    assert (by_level["host"].worst_lost, by_level["host"].worst_at_risk) == (0, 2)
    assert (by_level["rack"].worst_lost, by_level["rack"].worst_at_risk) == (0, 2)
    assert (by_level["zone"].worst_lost, by_level["zone"].worst_at_risk) == (1, 2)
    two = report.nodes
    assert (two.method, two.exact, two.worst_lost) == ("fatal-sets", True, 1)
    assert two.mean_lost == pytest.approx(4 / 6)
    assert two.p_any_loss == pytest.approx(4 / 6)


def test_three_of_four_nodes_failing_is_enumerated_exactly() -> None:
    three = durability(FOUR, FOUR_SPEC, FOUR_PLACEMENT, f=3).nodes
    # The four shards form the cycle a-b-d-c-a; any three nodes hold both ends of exactly two edges.
    assert (three.method, three.exact, three.worst_lost, three.worst_nodes) == ("enumeration", True, 2, ("a", "b", "c"))
    assert three.mean_lost == pytest.approx(2.0)
    assert three.p_any_loss == 1.0


def test_failures_within_every_shards_slack_lose_nothing() -> None:
    one = durability(FOUR, FOUR_SPEC, FOUR_PLACEMENT, f=1).nodes
    assert (one.method, one.exact, one.worst_lost, one.p_any_loss) == ("none", True, 0, 0.0)


def test_large_failure_sets_are_sampled_and_say_so() -> None:
    nodes = grid(3, 4, 5)
    sp = spec(2000, Replicas(3))
    result = durability(nodes, sp, place(nodes, sp).placement, f=5, samples=200)
    assert (result.nodes.method, result.nodes.exact, result.nodes.evaluated) == ("sampled", False, 200)
    assert result.nodes.worst_lost >= 1  # the greedy adversary finds a fatal set
    assert len(result.nodes.worst_nodes) == 5


def test_rack_aware_placement_survives_any_rack_failure() -> None:
    nodes = grid(3, 4, 2)
    sp = spec(1000, Replicas(3))
    report = durability(nodes, sp, place(nodes, sp).placement, f=3)
    assert {d.level: d.worst_lost for d in report.domains}["rack"] == 0
    assert report.nodes.exact


def test_bad_f_is_rejected() -> None:
    with pytest.raises(ValueError, match="f must be"):
        durability(FOUR, FOUR_SPEC, FOUR_PLACEMENT, f=0)


def test_removing_a_node_that_leaves_a_last_replica_is_unsafe() -> None:
    verdict = removal_is_safe(FOUR, FOUR_SPEC, FOUR_PLACEMENT, ["a"])
    assert not verdict
    assert verdict.at_risk_shards == (0, 1)
    assert verdict.lost_shards == ()
    assert "fewer than 2" in verdict.reason
    assert removal_is_safe(FOUR, FOUR_SPEC, FOUR_PLACEMENT, ["a"], min_spare=0).safe


def test_removing_both_holders_of_a_shard_loses_it() -> None:
    verdict = removal_is_safe(FOUR, FOUR_SPEC, FOUR_PLACEMENT, ["a", "b"], min_spare=0)
    assert not verdict.safe
    assert verdict.lost_shards == (0,)


def test_removing_an_empty_node_is_safe_and_intact() -> None:
    verdict = removal_is_safe([*FOUR, node("e", "z1", "r4")], FOUR_SPEC, FOUR_PLACEMENT, ["e"])
    assert verdict.safe
    assert verdict.intact
    assert verdict.pieces_removed == 0


def test_removing_one_node_under_three_replicas_is_safe() -> None:
    nodes = grid(3, 2, 2)
    sp = spec(200, Replicas(3))
    verdict = removal_is_safe(nodes, sp, place(nodes, sp).placement, [nodes[0].name])
    assert verdict.safe
    assert not verdict.intact


def test_repair_plan_classifies_damage_and_rebuilds_elsewhere() -> None:
    plan = repair_plan(FOUR, FOUR_SPEC, FOUR_PLACEMENT, ["a", "b"])
    assert plan.damaged == (0, 1, 3)
    assert plan.lost == (0,)
    assert plan.at_risk == (1, 3)
    targets = {(r.shard, r.piece): r.to_node for r in plan.rebuilds}
    assert targets == {(1, 0): "d", (3, 0): "c"}
    assert {r.sources for r in plan.rebuilds} == {("c",), ("d",)}


@given(
    st.tuples(st.integers(2, 3), st.integers(1, 3), st.integers(1, 3)),
    st.sampled_from([Replicas(2), Replicas(3), Erasure(2, 1), Erasure(3, 2)]),
    st.sampled_from([labels.HOSTNAME, labels.DEFAULT_RACK, labels.ZONE]),
    st.data(),
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_repairs_never_put_a_rebuilt_piece_in_a_used_domain(
    shape: tuple[int, int, int], red: Redundancy, fd: str, data: st.DataObject
) -> None:
    nodes = grid(*shape)
    sp = spec(60, red, fd)
    domains = {n.domain(fd) for n in nodes}
    if len(domains) < red.width:
        return  # covered by the ceil rule tests; here every shard has one piece per domain
    placement = place(nodes, sp).placement
    failed = data.draw(st.sets(st.sampled_from([n.name for n in nodes]), max_size=len(nodes) - 1))
    plan = repair_plan(nodes, sp, placement, failed)
    by_name = {n.name: n for n in nodes}
    final = plan.placement
    survivors = [n for n in nodes if n.name not in failed]
    alive_domains = {n.domain(fd) for n in survivors}
    # The rule on the survivors: one per domain, or ceil(width / domains) but never more than tolerated.
    cap = 1 if len(alive_domains) >= red.width else min(-(-red.width // len(alive_domains)), red.tolerates)
    for r in plan.rebuilds:
        assert r.to_node not in failed
        assert final.nodes[final.pieces[r.shard, r.piece]] == r.to_node
    for s in range(sp.shards):
        row = [final.nodes[i] for i in final.pieces[s] if i >= 0]
        assert len(set(row)) == len(row)
        counts = Counter(by_name[h].domain(fd) for h in row)
        assert not counts or max(counts.values()) <= max(cap, 1)
        before = [placement.nodes[i] for i in placement.pieces[s]]
        alive = [h for h in before if h not in failed]
        if len(alive) < red.needed:
            assert s in plan.lost
        elif len(alive_domains) >= red.width:
            assert len(row) == red.width, f"shard {s} not fully rebuilt: {row}"
        for p, h in enumerate(before):
            if h not in failed:
                assert final.nodes[final.pieces[s, p]] == h, "a surviving piece moved"
