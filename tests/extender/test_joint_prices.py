"""Slot prices: what one pod slot of a node is worth to the workload seen so far (extender.pricing.SlotPrices)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extender import pricing
from extender.app import create_app
from extender.costs import CostTables
from extender.joint import PLAN_LEAD, plan_jointly
from extender.pricing import SLOT_PRICE_EVERY, SLOT_PRICE_FILL, SlotPrices, fluid_duals
from extender.settings import ExtenderSettings
from extender.state import ClusterState
from kube.api import PODS, WatchEvent
from tests.extender import scenarios as sc
from topology.errors import KblError
from topology.localities import LocalityCosts
from topology.snapshots import load_snapshot

ALL = [f"node-{z}-{r}-{h}" for z in range(2) for r in range(2) for h in range(3)]
#: Bytes of two of the scenario's shards, and what reading them from a rack-mate costs.
TWO_SHARDS = 2 * sc.SHARD_SIZE
RACK = TWO_SHARDS * LocalityCosts().rack
#: Slot prices are off by default (extender.settings).
ON = ExtenderSettings(slot_prices=True)


def test_a_slot_is_priced_what_one_more_slot_would_save_the_population() -> None:
    # Two pods read locally only on node 0 (one slot); elsewhere each pays 10. One more slot on
    # node 0 saves 10; node 1 has room to spare.
    duals = fluid_duals(np.array([[0.0, 10.0], [0.0, 10.0]]), np.array([1.0, 5.0]))
    assert duals is not None
    assert duals.tolist() == [10.0, 0.0]


@st.composite
def instances(draw: st.DrawFn) -> tuple[list[list[int]], list[int]]:
    nodes = draw(st.integers(2, 4))
    slots = draw(st.lists(st.integers(0, 3), min_size=nodes, max_size=nodes).filter(lambda s: sum(s) >= 3))
    pods = draw(st.integers(1, int(SLOT_PRICE_FILL * (sum(slots) - 1))))
    costs = draw(st.lists(st.lists(st.integers(0, 20), min_size=nodes, max_size=nodes), min_size=pods, max_size=pods))
    return costs, slots


@settings(max_examples=60, deadline=None)
@given(instances())
def test_a_slot_price_lies_between_what_one_slot_more_saves_and_one_slot_less_costs(case: tuple[list[list[int]], list[int]]) -> None:
    # With integer data the fractional plan has an integral optimum: the cheapest joint plan
    # (extender.joint.plan_jointly, checked against brute force in test_joint.py). A capacity
    # dual is a subgradient of that optimum in the node's slots, so it is at least what one more
    # slot saves and at most what one slot less costs.
    costs = np.array(case[0], dtype=np.float64)
    slots = np.array(case[1], dtype=np.int64)
    duals = fluid_duals(costs, slots.astype(np.float64))
    assert duals is not None
    base = plan_jointly(costs, slots).cost
    for n in range(slots.size):
        more = slots.copy()
        more[n] += 1
        assert duals[n] >= base - plan_jointly(costs, more).cost - 1e-6
        if slots[n] > 0:
            fewer = slots.copy()
            fewer[n] -= 1
            plan = plan_jointly(costs, fewer)
            assert (plan.nodes >= 0).all()  # the pods still fit (at most FILL of the slots less one)
            assert duals[n] <= plan.cost - base + 1e-6


def _readers_of_shards_0_1(settings: ExtenderSettings) -> ClusterState:
    # cpu 30 of 63.77: two pods per node. Shards 0-1 are held by node-0-0-0 and node-1-0-0 (4
    # slots); five readers of them hold nodes: three on the holders, two on rack-mates.
    bound = [
        sc.pod("r1", shards="0-1", cpu="30", node_name="node-0-0-0"),
        sc.pod("r2", shards="0-1", cpu="30", node_name="node-1-0-0"),
        sc.pod("r3", shards="0-1", cpu="30", node_name="node-1-0-0"),
        sc.pod("r4", shards="0-1", cpu="30", node_name="node-0-0-1"),
        sc.pod("r5", shards="0-1", cpu="30", node_name="node-0-0-2"),
    ]
    return ClusterState.from_snapshot(load_snapshot(sc.snapshot(pods=bound)), settings)


def test_holders_of_data_more_readers_want_than_they_have_room_for_are_priced_and_others_are_not() -> None:
    state = _readers_of_shards_0_1(ON)
    state.apply(WatchEvent("ADDED", sc.pod("p", shards="2-3", cpu="30")), PODS)
    prices = SlotPrices(state, CostTables(state))
    with state.lock:
        got = prices.prices()
    assert got is not None
    ids = {name: state.cluster.node_id(name) for name in ALL}
    # Five readers of shards 0-1 for four holder slots: one reads from a rack-mate, and one more
    # holder slot would save it exactly that.
    assert got[ids["node-0-0-0"]] == got[ids["node-1-0-0"]] == np.float64(RACK)
    # Shards 2-3 have one reader for four slots; the rest of the nodes hold nothing anyone reads.
    assert all(got[i] == 0.0 for name, i in ids.items() if name not in ("node-0-0-0", "node-1-0-0"))


def test_prices_are_sampled_once_per_burst_of_new_pending_pods_and_averaged() -> None:
    state = _readers_of_shards_0_1(ON)
    prices = SlotPrices(state, CostTables(state))
    holder = state.cluster.node_id("node-0-0-0")
    assert holder is not None
    with state.lock:
        assert prices.prices() is None  # nobody waits: no sample yet, no price
        state.apply(WatchEvent("ADDED", sc.pod("p", shards="2-3", cpu="30")), PODS)
        first = prices.prices()
        assert first is not None
        assert np.array_equal(np.asarray(prices.prices()), first)
        assert prices.samples == 1  # the same pending pods: no new sample
        # r4 and r5 finish: three readers of 0-1 for four holder slots, nothing is short any more.
        state.apply(WatchEvent("DELETED", sc.pod("r4", shards="0-1", cpu="30", node_name="node-0-0-1")), PODS)
        state.apply(WatchEvent("DELETED", sc.pod("r5", shards="0-1", cpu="30", node_name="node-0-0-2")), PODS)
        assert np.array_equal(np.asarray(prices.prices()), first)  # still no new pending pod
        assert prices.samples == 1
        # A burst of SLOT_PRICE_EVERY readers of 2-3: no sample until the last one waits.
        for i in range(SLOT_PRICE_EVERY):
            assert prices.samples == 1
            state.apply(WatchEvent("ADDED", sc.pod(f"q{i}", shards="2-3", cpu="30")), PODS)
            second = prices.prices()
    assert prices.samples == 2
    # The burst overflows the holders of 2-3 onto their rack-mates and zone-mates, with room
    # left at zone level: the holders of 0-1 (three readers, four slots) are short of nothing.
    assert second is not None
    # the mean of a sample that priced the holder RACK and one that priced it 0
    assert first[holder] == RACK
    assert second[holder] == RACK / 2


def test_no_slot_prices_without_pending_batch_pricing_or_by_default() -> None:
    for settings_ in (ExtenderSettings(batch_limit=0, slot_prices=True), ExtenderSettings()):
        state = _readers_of_shards_0_1(settings_)
        state.apply(WatchEvent("ADDED", sc.pod("p", shards="2-3", cpu="30")), PODS)
        with state.lock:
            assert SlotPrices(state, CostTables(state)).prices() is None


def test_a_pod_torn_between_two_holders_is_steered_to_the_one_the_workload_needs_less() -> None:
    # p reads shards 0-3. node-0-0-0 (holds 0-1, one slot free) and node-0-1-0 (holds 2-3) cost it
    # the same: two shards local, two from the other rack of its zone; so does node-1-1-0. Without
    # slot prices kube-scheduler may take either; with them, node-0-0-0's slot is priced what the
    # readers of 0-1 seen so far lose when it is gone, and p's plan goes to a holder of 2-3.
    p = sc.pod("p", shards="0-3", cpu="30")
    plain = _readers_of_shards_0_1(ExtenderSettings())
    plain.apply(WatchEvent("ADDED", p), PODS)
    alone = sc.scores(sc.call(create_app(plain), "/prioritize", sc.names_args(p, ALL)))
    assert alone["node-0-0-0"] == alone["node-0-1-0"] == 10
    state = _readers_of_shards_0_1(ON)
    state.apply(WatchEvent("ADDED", p), PODS)
    priced = sc.scores(sc.call(create_app(state), "/prioritize", sc.names_args(p, ALL)))
    assert priced["node-0-1-0"] == priced["node-1-1-0"] == 10
    assert priced["node-0-0-0"] <= 10 - PLAN_LEAD


def test_a_population_too_large_for_the_lp_is_not_sampled(monkeypatch: pytest.MonkeyPatch) -> None:
    # 6 data pods x 12 nodes = 72 cells: over a limit of 71 no LP is solved and no price learned.
    monkeypatch.setattr(pricing, "SLOT_PRICE_MAX_CELLS", 71)
    state = _readers_of_shards_0_1(ON)
    state.apply(WatchEvent("ADDED", sc.pod("p", shards="2-3", cpu="30")), PODS)
    prices = SlotPrices(state, CostTables(state))
    with state.lock:
        assert prices.prices() is None
    assert prices.samples == 0
    monkeypatch.setattr(pricing, "SLOT_PRICE_MAX_CELLS", 72)
    state.apply(WatchEvent("ADDED", sc.pod("q", shards="2-3", cpu="30")), PODS)  # 7 x 12 = 84 > 72
    with state.lock:
        assert prices.prices() is None
    state.apply(WatchEvent("DELETED", sc.pod("q", shards="2-3", cpu="30")), PODS)
    state.apply(WatchEvent("ADDED", sc.pod("r", shards="2-3", cpu="30")), PODS)
    state.apply(WatchEvent("DELETED", sc.pod("r4", shards="0-1", cpu="30", node_name="node-0-0-1")), PODS)
    with state.lock:
        assert prices.prices() is not None  # 6 x 12 = 72: within the limit
    assert prices.samples == 1


def test_slot_prices_are_off_by_default_and_a_config_file_turns_them_on() -> None:
    assert ExtenderSettings().slot_prices is False
    assert ExtenderSettings.from_mapping({"slotPrices": True}).slot_prices is True
    with pytest.raises(KblError, match="slotPrices"):
        ExtenderSettings.from_mapping({"slotPrices": "no"})
