"""What readers of sliced targets rely on in :class:`topology.slices.SliceStore`: typed slices are
held as their objects are, and ``latest`` never answers with an older target."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from tests.slice_sizes import largest_slices  # noqa: F401  (autouse: 2,048-piece slices)
from topology.datasets import DataSet, Replicas, ShardPlacement, dataset_object
from topology.slices import SliceStore, sliced_form, split

NODES = tuple(f"n{i}" for i in range(6))


def sliced(pieces: np.ndarray) -> tuple[DataSet, list[dict[str, object]]]:
    """A DataSet whose target ``pieces`` (indexes into NODES) is written as slices, and the slices."""
    placement = ShardPlacement(NODES, pieces.astype(np.int32))
    index, slices = sliced_form("ns", "d", placement)
    typed = DataSet.from_object(dataset_object("d", namespace="ns", shards=pieces.shape[0], shard_size="1Gi", redundancy=Replicas(2)))
    return replace(typed, slices=index), [s.to_object() for s in slices]


def placed(dataset: DataSet | None) -> ShardPlacement:
    assert dataset is not None
    assert dataset.placement is not None
    return dataset.placement


def targets() -> tuple[np.ndarray, np.ndarray]:
    first = np.stack([np.arange(3000) % 6, (np.arange(3000) + 1) % 6], axis=1)
    second = first.copy()
    second[2500:] = (second[2500:] + 2) % 6  # the last slice changes
    return first, second


def test_a_store_fed_typed_slices_assembles_what_it_assembles_from_their_objects() -> None:
    first, _ = targets()
    dataset, objs = sliced(first)
    from_objects, from_typed = SliceStore(), SliceStore()
    from_objects.replace(objs)
    typed = split("ns", "d", ShardPlacement(NODES, first.astype(np.int32)))
    assert from_typed.replace(typed) == {"ns/d"}
    assert placed(from_objects.resolve(dataset)).equals(placed(from_typed.resolve(dataset)))
    assert placed(from_typed.resolve(dataset)).equals(ShardPlacement(NODES, first.astype(np.int32)))
    from_typed.apply("DELETED", typed[0])
    assert len(from_typed.slices("ns/d")) == len(typed) - 1


def test_latest_answers_none_while_the_index_names_a_missing_slice_where_the_default_keeps_the_last_target() -> None:
    first, second = targets()
    old, old_objs = sliced(first)
    new, new_objs = sliced(second)
    assert old.slices is not None
    assert new.slices is not None
    assert len(old.slices.versions) == 3
    assert old.slices.versions[:-1] == new.slices.versions[:-1]
    store = SliceStore()
    store.replace(old_objs)
    assert store.resolve(old, latest=True) is not None
    kept = store.resolve(new)  # the new index, its changed slice not yet received
    assert placed(kept).equals(ShardPlacement(NODES, first.astype(np.int32)))
    assert store.resolve(new, latest=True) is None
    store.apply("ADDED", new_objs[-1])
    assert placed(store.resolve(new, latest=True)).equals(ShardPlacement(NODES, second.astype(np.int32)))
