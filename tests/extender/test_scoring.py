"""The pure scoring steps on their own."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from extender.scoring import effective_costs, fade, normalize, raw_costs, utilization
from topology.localities import LocalityCosts


def test_raw_cost_weights_bytes_by_level() -> None:
    table = np.array([[10.0, 0, 0, 0, 0], [0, 10.0, 0, 0, 0], [0, 0, 5.0, 0, 5.0]])
    assert raw_costs(table, LocalityCosts(node=0, rack=1, zone=4, region=16, remote=64)).tolist() == [0.0, 10.0, 340.0]


def test_normalize_gives_best_ten_worst_zero_and_all_equal_zero() -> None:
    assert normalize(np.array([0.0, 50.0, 100.0])).tolist() == [10, 5, 0]
    assert normalize(np.array([7.0, 7.0, 7.0])).tolist() == [0, 0, 0]
    assert normalize(np.array([1e15, 1e15 + 1e-3])).tolist() == [0, 0]  # equal within tolerance
    assert normalize(np.array([])).tolist() == []


@given(arrays(np.float64, st.integers(1, 50), elements=st.floats(0, 1e15)))
def test_normalize_is_always_integers_within_0_and_10_and_keeps_order(costs: np.ndarray) -> None:
    scores = normalize(costs)
    assert scores.dtype == np.int64
    assert ((scores >= 0) & (scores <= 10)).all()
    order = np.argsort(costs, kind="stable")
    assert (np.diff(scores[order]) <= 0).all()  # cheaper never scores lower


def test_utilization_is_the_tightest_resource_after_placing_the_pod() -> None:
    used = np.array([[1000.0, 0, 1], [0, 0, 0]])
    alloc = np.array([[4000.0, 8.0, 10], [0, 8.0, 10]])
    util = utilization(used, alloc, np.array([1000.0, 4.0, 1]))
    assert util.tolist() == [0.5, np.inf]


def test_locality_fades_only_past_the_threshold_and_is_gone_when_full() -> None:
    assert np.allclose(fade(np.array([0.5, 0.8, 0.9, 1.0, 3.0]), 0.8), [0, 0, 0.5, 1, 1])
    eff = effective_costs(np.array([0.0, 0.0]), 100.0, np.array([0.5, 1.0]), 0.8)
    assert eff.tolist() == [0.0, 100.0]
    assert fade(np.array([1.0, 1.01]), 1.0).tolist() == [0.0, 1.0]
