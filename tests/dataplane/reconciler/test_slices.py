"""The reconciler writes large targets as PlacementSlices (topology/slices.py): bounded objects, a
change writes only the slices it touches, and a reader never sees a mix of two targets.

The agents are worlds.py's simulated ones; they read targets through a SliceStore as the node
agent does. What this leaves out: the API server's garbage collector (ownerReferences): the
in-memory API does not run it, so the reconciler's own deletion of a gone DataSet's slices is
what is tested.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from dataplane.reconciler import Reconciler, ReconcilerSettings
from kube.api import DATASETS, PLACEMENT_SLICES
from tests.dataplane.reconciler.worlds import World, dataset, make_node
from topology.datasets import DataSet, ShardPlacement
from topology.slices import SLICE_PIECES, SliceStore, shards_per_slice

ETCD_LIMIT = 1_572_864


def stored_slices(world: World) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in world.memory.list(PLACEMENT_SLICES)[0]}


def named(world: World, name: str = "d") -> set[str]:
    """The slice object names the DataSet's index names."""
    index = world.get(name)["status"]["placement"]["slices"]
    return {f"{name}-p{i}-{v}" for i, v in enumerate(index["versions"])}


def holders(placement: ShardPlacement) -> np.ndarray:
    return np.asarray([*placement.nodes, ""], dtype=object)[placement.pieces]


def sliced_world(shards: int = 2000, **settings: object) -> tuple[World, Reconciler]:
    world = World(sliced=True)
    world.add_dataset(dataset(shards=shards))
    reconciler = world.reconciler(**settings)
    world.settle(reconciler)
    return world, reconciler


def test_a_target_over_the_inline_limit_is_written_as_slices_and_the_dataset_object_stays_small() -> None:
    world = World()  # default settings: 64 KiB inline
    world.add_dataset(dataset(shards=20_000))
    world.add_dataset(dataset("small", shards=60))
    world.reconciler().reconcile_once()
    big, small = world.get(), world.get("small")
    assert set(big["status"]["placement"]) == {"slices"}
    assert set(small["status"]["placement"]) == {"nodes", "shards"}  # a small target stays inline
    assert len(orjson.dumps(big)) < 16_384
    slices = stored_slices(world)
    assert set(slices) == named(world)
    per = shards_per_slice(3, 20_000)
    assert big["status"]["placement"]["slices"]["shardsPerSlice"] == per
    assert len(slices) == -(-20_000 // per)
    for obj in slices.values():
        assert len(obj["spec"]["shards"]) * 3 <= SLICE_PIECES
        assert len(orjson.dumps(obj)) < ETCD_LIMIT
        assert obj["metadata"]["ownerReferences"][0]["uid"] == "uid-d"
    ds = world.typed()
    assert ds.placement is not None
    assert (ds.placement.pieces >= 0).all()
    assert all(len(set(row)) == 3 for row in holders(ds.placement).tolist())  # distinct holders per shard


def test_a_join_writes_only_the_slices_whose_shards_move_and_deletes_the_ones_they_replace() -> None:
    """Copies to the joiner are bounded per pass (2 in flight per node), so a pass moves a few
    shards of the 9 slices' and must write those slices only."""
    world, reconciler = sliced_world(6000, max_transfers_per_node=2)
    before_target = world.typed().placement
    assert before_target is not None
    before = stored_slices(world)
    world.add_node(make_node("joined", zone="us-east-1c", rack="rack-9", storage_b=10**12))
    report = reconciler.reconcile_once()
    assert report.written == ["default/d"]
    after_target = world.typed().placement
    assert after_target is not None
    kept = reconciler.dataset("default/d")  # the target the reconciler decided and holds
    assert kept is not None
    assert kept.placement is not None
    assert after_target.equals(kept.placement)  # what the stored slices say is that target
    after = stored_slices(world)
    assert set(after) == named(world)  # nothing stored that the index does not name
    per = world.get()["status"]["placement"]["slices"]["shardsPerSlice"]
    moved_rows = np.flatnonzero((holders(before_target) != holders(after_target)).any(axis=1))
    touched = set((moved_rows // per).tolist())
    assert moved_rows.size > 0
    assert len(touched) < len(after)
    created = set(after) - set(before)
    assert {after[n]["spec"]["index"] for n in created} == touched
    assert {before[n]["spec"]["index"] for n in set(before) - set(after)} == touched  # the replaced ones are gone


def test_a_restarted_reconciler_reads_its_target_back_from_the_slices_and_writes_nothing() -> None:
    world, _ = sliced_world()
    before = stored_slices(world)
    version = world.get()["metadata"]["resourceVersion"]
    report = world.reconciler().reconcile_once()
    assert report.written == []
    assert set(stored_slices(world)) == set(before)
    assert world.get()["metadata"]["resourceVersion"] == version


def test_while_new_slices_exist_and_the_index_is_not_written_readers_assemble_the_old_target() -> None:
    """A reader holding every slice, old and new, just before the index write (the state a crash
    or a slow write leaves) assembles the previous target exactly, and the new one after."""
    world, _ = sliced_world()
    old = world.typed().placement
    assert old is not None
    seen: list[ShardPlacement | None] = []
    reader = SliceStore()

    def hook(step: str) -> None:
        if step == "before-status":
            reader.replace(world.memory.list(PLACEMENT_SLICES)[0])
            resolved = reader.resolve(DataSet.from_object(world.get()))
            seen.append(None if resolved is None else resolved.placement)

    reader.replace(world.memory.list(PLACEMENT_SLICES)[0])
    assert reader.resolve(DataSet.from_object(world.get())) is not None
    world.add_node(make_node("joined", zone="us-east-1c", rack="rack-9", storage_b=10**12))
    reconciler = Reconciler(world.api, ReconcilerSettings(inline_placement_bytes=0), clock=lambda: world.now, step_hook=hook)
    reconciler.reconcile_once()
    assert seen
    assert seen[0] is not None
    assert seen[0].equals(old)
    reader.replace(world.memory.list(PLACEMENT_SLICES)[0])
    new = reader.resolve(DataSet.from_object(world.get()))
    assert new is not None
    assert new.placement is not None
    assert not new.placement.equals(old)
    assert "joined" in new.placement.nodes


def test_a_slice_deleted_by_hand_has_only_its_shards_placed_again() -> None:
    world, reconciler = sliced_world()
    before = stored_slices(world)
    victim = sorted(before)[1]
    index = before[victim]["spec"]["index"]
    world.memory.delete(PLACEMENT_SLICES, victim, namespace="default")
    report = world.reconciler().reconcile_once()
    assert report.written == ["default/d"]
    after = stored_slices(world)
    assert set(after) == named(world)
    assert {after[n]["spec"]["index"] for n in set(after) - set(before)} == {index}
    ds = world.typed()
    assert ds.placement is not None
    assert (ds.placement.pieces >= 0).all()
    world.settle(reconciler)
    assert min(world.copies(world.typed())) == 3


def test_a_deleted_datasets_slices_are_deleted() -> None:
    world, reconciler = sliced_world(shards=600)
    world.add_dataset(dataset("other", shards=600))
    reconciler.reconcile_once()
    assert named(world, "other") <= set(stored_slices(world))
    world.memory.delete(DATASETS, "d", namespace="default")
    reconciler.reconcile_once()
    assert set(stored_slices(world)) == named(world, "other")


def test_a_target_moves_between_inline_and_sliced_when_the_limit_changes_and_leaves_nothing_of_the_other_form() -> None:
    world = World()
    world.add_dataset(dataset(shards=600))
    world.reconciler().reconcile_once()
    inline = world.typed().placement
    assert set(world.get()["status"]["placement"]) == {"nodes", "shards"}
    assert not stored_slices(world)
    world.reconciler(inline_placement_bytes=0).reconcile_once()  # restarted with every target sliced
    assert set(world.get()["status"]["placement"]) == {"slices"}
    assert set(stored_slices(world)) == named(world)
    assert inline is not None
    assert world.typed().placement.equals(inline)  # type: ignore[union-attr]
    world.reconciler(inline_placement_bytes=10**9).reconcile_once()
    assert set(world.get()["status"]["placement"]) == {"nodes", "shards"}
    assert stored_slices(world) == {}
    assert world.typed().placement.equals(inline)  # type: ignore[union-attr]


def test_a_join_whose_moves_spread_over_many_slices_leaves_the_stored_slices_equal_to_the_target() -> None:
    """No transfer bound: the joiner's share is taken from shards all over the DataSet, so the
    pass rewrites many slices; what they assemble to is the target the reconciler decided."""
    world, reconciler = sliced_world(6000, max_transfers_per_node=0)
    before = stored_slices(world)
    world.add_node(make_node("joined", zone="us-east-1c", rack="rack-9", storage_b=10**12))
    reconciler.reconcile_once()
    world.check_slices(reconciler)
    rewritten = {o["spec"]["index"] for n, o in stored_slices(world).items() if n not in before}
    assert len(rewritten) > 10
