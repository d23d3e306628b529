"""The candidate pools of the gate controller: the node ids of a set of racks or zones."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from extender.narrowing import DomainIndex
from extender.settings import ExtenderSettings
from extender.state import ClusterState
from kube.api import NODES, WatchEvent
from tests.extender import scenarios as sc


def fed_state() -> ClusterState:
    state = ClusterState(ExtenderSettings())
    state.replace(NODES, sc.nodes())
    return state


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 2), st.lists(st.integers(0, 12), max_size=8), st.integers(0, 3))
def test_a_pool_holds_exactly_the_node_ids_of_its_domains_sorted(level: int, wanted: list[int], removed: int) -> None:
    state = fed_state()
    index = DomainIndex()
    index.nodes_of(state, level, np.array([0], dtype=np.int64))  # built before the topology changes below
    for node in sc.nodes()[:removed]:  # removed nodes keep their ids: the index must follow
        state.apply(WatchEvent("DELETED", node), NODES)
    domain_of = state.cluster.domain_arrays()[level - 1]
    domains = np.array(sorted(set(wanted)), dtype=np.int64)
    pool = index.nodes_of(state, level, domains)
    expected = [i for i, d in enumerate(domain_of.tolist()) if d in set(wanted)]
    assert pool.dtype == np.int64
    assert pool.tolist() == expected
