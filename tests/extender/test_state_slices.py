"""Sliced targets: the extender reads a DataSet written as PlacementSlices as it reads it inline.

The sliced and the inline forms are written by the real placement reconciler on the in-memory
API, once with ``inline_placement_bytes=0`` (every target sliced) and once with a limit no target
reaches; the placement is deterministic (same seed, same nodes), so both describe one target.
The extender fed either form must score every node alike; fed the sliced form in any order of
its two watch streams, it holds either the whole last target or the whole new one, never a mix.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from extender.app import create_app
from extender.settings import ExtenderSettings
from extender.state import ClusterState
from extender.wishes import resolve
from kube.api import DATASETS, KBLS, NODES, PLACEMENT_SLICES, PODS, EventType, Resource, WatchEvent
from tests.dataplane.reconciler.worlds import World, dataset
from tests.extender import scenarios as sc
from tests.slice_sizes import largest_slices  # noqa: F401  (autouse: 2,048-piece slices)
from topology import labels
from topology.datasets import DataSet, Replicas, ShardPlacement
from topology.pods import Pod

ALL = [f"node-{z}-{r}-{h}" for z in range(2) for r in range(2) for h in range(3)]
KEY = f"{sc.NAMESPACE}/{sc.DATASET}"
DRAINED = "node-0-0-0"
#: Pods reading shards of each of the three slices (1,024 shards of 2 replicas per slice), across two, and all.
READERS = ("0-99", "1000-1100", "2047-2100", "2400-2499", None)
#: Pods requiring their data local: one shard each (two nodes hold it), one on each side of a slice's edge.
REQUIRING = ("5", "1023", "1024", "2450")

Obj = dict[str, Any]


@dataclass(frozen=True)
class Written:
    """One DataSet as the reconciler wrote it before and after a drain moved pieces off a node."""

    before: Obj
    before_slices: tuple[Obj, ...]
    after: Obj
    after_slices: tuple[Obj, ...]


def _written(inline_placement_bytes: int) -> Written:
    obj = dataset(sc.DATASET, shards=2500, redundancy=Replicas(2))
    obj["metadata"]["namespace"] = sc.NAMESPACE
    world = World(nodes=sc.nodes())
    world.add_dataset(obj)
    reconciler = world.reconciler(inline_placement_bytes=inline_placement_bytes)
    reconciler.reconcile_once()
    before = copy.deepcopy(world.api.get(DATASETS, sc.DATASET, namespace=sc.NAMESPACE))
    before_slices = copy.deepcopy(world.api.list(PLACEMENT_SLICES)[0])
    world.annotate(DRAINED, {labels.DRAIN: "scale-down"})
    reconciler.reconcile_once()
    after = copy.deepcopy(world.api.get(DATASETS, sc.DATASET, namespace=sc.NAMESPACE))
    after_slices = copy.deepcopy(world.api.list(PLACEMENT_SLICES)[0])
    assert before is not None
    assert after is not None
    return Written(before, tuple(before_slices), after, tuple(after_slices))


@functools.cache
def sliced() -> Written:
    return _written(0)


@functools.cache
def inline() -> Written:
    return _written(10**9)


def same(a: ShardPlacement | None, b: ShardPlacement | None) -> bool:
    """Both targets, the same pieces on the same nodes."""
    return a is not None and b is not None and a.equals(b)


def fed(datasets: Sequence[Mapping[str, Any]], slices: Sequence[Mapping[str, Any]] = ()) -> ClusterState:
    state = ClusterState(ExtenderSettings(), expect=(NODES, PODS, DATASETS, PLACEMENT_SLICES, KBLS))
    state.replace(NODES, sc.nodes())
    state.replace(PODS, [])
    state.replace(KBLS, [])
    state.replace(DATASETS, datasets)
    state.replace(PLACEMENT_SLICES, slices)
    return state


def scores(state: ClusterState) -> dict[str | None, dict[str, int]]:
    app = create_app(state)
    return {shards: sc.scores(sc.call(app, "/prioritize", sc.names_args(sc.pod(shards=shards), ALL))) for shards in READERS}


def passing(state: ClusterState) -> dict[str | None, list[str]]:
    app = create_app(state)
    out: dict[str | None, list[str]] = {}
    for shards in REQUIRING:
        reply = sc.call(app, "/filter", sc.names_args(sc.pod(shards=shards, locality="required"), ALL)).json()
        out[shards] = sorted(reply["NodeNames"] or [])
    return out


def test_the_written_forms_are_one_sliced_and_one_inline_target_that_a_drain_changes() -> None:
    # what the other tests rest on: the reconciler sliced one and inlined the other, and the
    # drain moved pieces (so "the last target" and "the new one" score differently)
    assert len(sliced().before["status"]["placement"]["slices"]["versions"]) == 3
    assert len(sliced().before_slices) == 3
    assert "nodes" in inline().before["status"]["placement"]
    assert scores(fed([inline().before])) != scores(fed([inline().after]))


def test_a_pod_reading_a_sliced_dataset_gets_the_scores_and_filter_it_gets_when_the_dataset_is_inline() -> None:
    for version in ("before", "after"):
        want = fed([getattr(inline(), version)])
        got = fed([getattr(sliced(), version)], getattr(sliced(), f"{version}_slices"))
        assert scores(got) == scores(want)
        assert passing(got) == passing(want)
        assert any(len(set(s.values())) > 1 for s in scores(want).values())  # locality tells nodes apart
        assert all(0 < len(names) < len(ALL) for names in passing(want).values())
        assert same(got.cluster.datasets[KEY].placement, want.cluster.datasets[KEY].placement)


def test_a_sliced_dataset_seen_before_its_slices_waits_and_says_so_then_scores_as_inline_once_they_arrive() -> None:
    state = fed([sliced().before])
    key = KEY
    assert state.waits_for_slices(key)
    wish = resolve(state.cluster, Pod.from_object(sc.pod(shards="0-99")))
    assert not wish.usable
    assert "waits for its PlacementSlices" in str(wish.problem)
    assert "no status.placement" not in str(wish.problem)
    unplaced = fed([sc.dataset(placed=False)])  # kept out of scoring exactly as an unplaced DataSet
    assert scores(state) == scores(unplaced)
    for piece_slice in sliced().before_slices:
        assert state.waits_for_slices(key)
        state.apply(WatchEvent("ADDED", piece_slice), PLACEMENT_SLICES)
    assert not state.waits_for_slices(key)
    assert scores(state) == scores(fed([inline().before]))


def test_the_extender_keeps_the_last_assembled_placement_while_the_index_names_slices_not_received_and_switches_when_they_arrive() -> None:
    state = fed([sliced().before], sliced().before_slices)
    before, after = scores(fed([inline().before])), scores(fed([inline().after]))
    assert scores(state) == before
    state.apply(WatchEvent("MODIFIED", sliced().after), DATASETS)  # the index first: its slices are on their way
    assert scores(state) == before
    for piece_slice in sliced().after_slices[:-1]:
        state.apply(WatchEvent("ADDED", piece_slice), PLACEMENT_SLICES)
        assert scores(state) == before
    version = state.data_version
    state.apply(WatchEvent("ADDED", sliced().after_slices[-1]), PLACEMENT_SLICES)
    assert state.data_version > version  # the caches keyed on it see the new target
    assert scores(state) == after
    version = state.data_version
    for gone in sliced().before_slices:  # the writer prunes the slices no index names
        state.apply(WatchEvent("DELETED", gone), PLACEMENT_SLICES)
    assert state.data_version == version  # the placement did not change: nothing to invalidate
    assert scores(state) == after


def test_a_slice_event_resolves_only_its_own_dataset() -> None:
    other = copy.deepcopy(sliced().before)
    other["metadata"]["name"] = "other"
    others = copy.deepcopy(sliced().before_slices)  # the same content, another DataSet's slices
    for piece_slice in others:
        piece_slice["spec"]["dataSet"] = "other"
        piece_slice["metadata"]["name"] = piece_slice["metadata"]["name"].replace(sc.DATASET, "other", 1)
    state = fed([sliced().before, other], [*sliced().before_slices, *others])
    held = state.cluster.datasets[f"{sc.NAMESPACE}/other"]
    assert held.placement is not None
    state.apply(WatchEvent("MODIFIED", sliced().after), DATASETS)
    for piece_slice in sliced().after_slices:
        state.apply(WatchEvent("ADDED", piece_slice), PLACEMENT_SLICES)
    assert state.cluster.datasets[f"{sc.NAMESPACE}/other"] is held  # not typed nor written again
    assert same(state.cluster.datasets[KEY].placement, DataSet.from_object(inline().after).placement)


def test_a_relist_of_slices_resolves_what_it_brings_and_forgets_what_it_drops() -> None:
    state = fed([sliced().before], sliced().before_slices)
    state.apply(WatchEvent("MODIFIED", sliced().after), DATASETS)
    state.replace(PLACEMENT_SLICES, sliced().after_slices)
    assert scores(state) == scores(fed([inline().after]))
    assert state.relists[PLACEMENT_SLICES.plural] == 2
    bad = copy.deepcopy(sliced().after_slices[0])
    bad["spec"]["shards"] = "not a list"
    state.apply(WatchEvent("ADDED", bad), PLACEMENT_SLICES)
    assert state.rejected == {"PlacementSlice": 1}
    state.apply(WatchEvent("DELETED", sliced().after), DATASETS)
    assert f"{sc.NAMESPACE}/{sc.DATASET}" not in state.cluster.datasets


def _events() -> list[tuple[EventType, Obj, Resource]]:
    out: list[tuple[EventType, Obj, Resource]] = [("MODIFIED", sliced().after, DATASETS)]  # 1 + 3 + 3 events
    out += [("ADDED", s, PLACEMENT_SLICES) for s in sliced().after_slices]
    out += [("DELETED", s, PLACEMENT_SLICES) for s in sliced().before_slices]
    return out


@settings(max_examples=60, deadline=None)
@given(st.permutations(range(7)))
def test_in_any_order_of_the_events_the_extender_holds_one_whole_target_never_a_mix(order: list[int]) -> None:
    # the new index, the new slices and the old slices' deletions, in any order (two watch
    # streams are not ordered with each other; a relist may reorder one): at every step the
    # DataSet's placement is the whole last target or the whole new one, and the new one at the end
    events = _events()
    state = fed([sliced().before], sliced().before_slices)
    first, last = DataSet.from_object(inline().before).placement, DataSet.from_object(inline().after).placement
    for i in order:
        event_type, obj, resource = events[i]
        state.apply(WatchEvent(event_type, obj), resource)
        held = state.cluster.datasets[KEY].placement
        assert same(held, first) or same(held, last)
    assert same(state.cluster.datasets[KEY].placement, last)
