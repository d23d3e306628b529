"""The extender benchmark's synthetic caches: fast to build, and the same offered nodes at any size."""

from __future__ import annotations

import numpy as np

from benchmarks.extender import synthetic_state


def test_a_bigger_synthetic_cache_differs_only_in_nodes_nobody_offers() -> None:
    small, offered = synthetic_state(300, holders=100)
    big, offered_big = synthetic_state(3000, holders=100)
    assert offered == offered_big
    assert len(small.cluster.nodes) == 300
    assert len(big.cluster.nodes) == 3000
    for name in offered:
        a, b = small.cluster.nodes[name], big.cluster.nodes[name]
        assert (a.zone, a.rack) == (b.zone, b.rack)
    key = next(iter(small.cluster.datasets))
    for state in (small, big):
        pieces = state.cluster.global_pieces(key)
        assert (pieces >= 0).all()
        assert {state.cluster.name_of(int(i)) for i in np.unique(pieces)} <= set(offered)
