"""Erasure coding through pyeclib (liberasurecode): any k of k+m decode, a lost fragment rebuilds."""

from __future__ import annotations

import itertools
import os

import pytest

from dataplane.agent.coding import BACKENDS, Codec, CodingError


@pytest.mark.parametrize(("k", "m"), [(2, 1), (4, 2)])
def test_any_k_fragments_decode_the_shard_and_rebuild_any_lost_one(k: int, m: int) -> None:
    c = Codec(k, m)
    assert c.backend in BACKENDS
    data = os.urandom(100_003)
    fragments = c.encode(data)
    assert len(fragments) == k + m
    for chosen in itertools.combinations(range(k + m), k):
        assert c.decode([fragments[i] for i in chosen]) == data
        for lost in set(range(k + m)) - set(chosen):
            assert c.rebuild([fragments[i] for i in chosen], lost) == fragments[lost]
    assert c.shard_bytes(fragments[0]) == len(data)
    assert [c.index_of(f) for f in fragments] == list(range(k + m))


def test_fewer_than_k_fragments_is_an_error_not_garbage() -> None:
    c = Codec(4, 2)
    fragments = c.encode(b"z" * 10_000)
    with pytest.raises(CodingError):
        c.decode(fragments[:3])
