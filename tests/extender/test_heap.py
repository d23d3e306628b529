"""The served heap is frozen once the cache is ready, so full collections skip the cache."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from extender.serving import freeze_heap, freeze_when_ready
from extender.state import ClusterState
from kube.api import NODES


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_freeze_heap_moves_live_objects_to_the_permanent_generation(unfrozen: None) -> None:
    assert gc.get_freeze_count() == 0
    freeze_heap()
    assert gc.get_freeze_count() > 0


def test_a_watched_cache_is_frozen_only_after_its_first_full_sync(unfrozen: None) -> None:
    state = ClusterState(expect=(NODES,))
    stop = threading.Event()
    thread = freeze_when_ready(state, stop, poll_s=0.01)
    thread.join(0.1)
    assert thread.is_alive()
    assert gc.get_freeze_count() == 0
    state.replace(NODES, [])
    thread.join(5)
    assert not thread.is_alive()
    assert gc.get_freeze_count() > 0
    stop.set()
