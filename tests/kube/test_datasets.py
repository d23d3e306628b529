"""One-shot readers get DataSets with their targets, sliced or inline (kube/datasets.py)."""

from __future__ import annotations

from kube.api import PLACEMENT_SLICES
from kube.datasets import get_dataset, list_datasets
from tests.dataplane.reconciler.worlds import World, dataset


def test_listed_datasets_come_with_their_targets_whether_written_inline_or_as_slices() -> None:
    world = World()
    world.add_dataset(dataset("big", shards=20_000))  # over the 64 KiB inline default: sliced
    world.add_dataset(dataset("small", shards=60))
    world.reconciler().reconcile_once()
    by_name = {d.name: d for d in list_datasets(world.api)}
    assert by_name["big"].slices is not None
    for name in ("big", "small"):
        placement = by_name[name].placement
        assert placement is not None
        assert (placement.pieces >= 0).all()
        one = get_dataset(world.api, name, namespace="default").placement
        assert one is not None
        assert one.equals(placement)


def test_a_sliced_dataset_listed_while_a_slice_is_missing_comes_without_a_target() -> None:
    world = World()
    world.add_dataset(dataset("big", shards=20_000))
    world.reconciler().reconcile_once()
    victim = world.memory.list(PLACEMENT_SLICES)[0][0]["metadata"]["name"]
    world.memory.delete(PLACEMENT_SLICES, victim, namespace="default")
    (listed,) = list_datasets(world.api)
    assert listed.placement is None
    assert listed.slices is not None
