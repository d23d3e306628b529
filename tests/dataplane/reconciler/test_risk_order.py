"""When the per-node transfer bound bites, the shards closest to loss get their transfers first:
fewest ready pieces beyond the ones the shard needs (``k`` for erasure, 1 for replicas), then the
most bytes; within a DataSet and across DataSets (in-memory API, simulated agents, worlds.py)."""

from __future__ import annotations

from tests.dataplane.reconciler.worlds import World, dataset, drain
from topology.datasets import DataSet, Erasure, Replicas


def risk(world: World, ds: DataSet, shard: int) -> tuple[int, int]:
    """(ready pieces beyond the needed ones, minus bytes) of a shard, from what the agents truly hold."""
    return world.copies(ds)[shard] - ds.spec.redundancy.needed, -int(ds.spec.shard_sizes[shard])


def test_within_a_dataset_the_drain_transfers_that_fit_the_bound_go_to_the_shards_closest_to_loss_then_the_biggest() -> None:
    world = World()
    obj = dataset(shards=60, failure_domain="host")
    del obj["spec"]["shardSize"]
    obj["spec"]["shardSizes"] = [str((1 + (7 * s) % 5) * 2**20) for s in range(60)]
    world.add_dataset(obj)
    reconciler = world.reconciler(max_transfers_per_node=4)
    reconciler.reconcile_once()
    world.agent_step(per_step=9)  # part-way: shards have 0 to 3 ready pieces
    reconciler.reconcile_once()
    before = world.typed()
    assert before.placement is not None
    leaving = max(before.placement.nodes, key=lambda n: len(world.held[n]))
    held = sorted({s for key, _, s in world.held[leaving] if key == before.key})
    drain(world, leaving)
    reconciler.reconcile_once()
    after = world.typed()
    moved = {t.shard for t in after.transfers if t.source == leaving}
    waiting = [s for s in held if s not in moved]
    assert 1 <= len(moved) <= 4
    assert waiting  # the bound bites
    assert len({risk(world, before, s) for s in held}) > 2  # shards differ in risk: the order is tested
    assert max(risk(world, before, s) for s in moved) <= min(risk(world, before, s) for s in waiting)


def test_across_datasets_the_one_closest_to_loss_takes_the_shared_transfer_bound_first() -> None:
    world = World()
    world.add_dataset(dataset("a-replicated", shards=40, failure_domain="host"))  # 3 copies, needs 1: two to spare
    world.add_dataset(dataset("b-erasure", shards=40, redundancy=Erasure(4, 1), failure_domain="host"))  # needs 4 of 5: one to spare
    reconciler = world.reconciler(max_transfers_per_node=3)
    world.settle(reconciler)
    a, b = world.typed("a-replicated"), world.typed("b-erasure")
    assert a.placement is not None
    assert b.placement is not None
    assert isinstance(a.spec.redundancy, Replicas)
    leaving = sorted(set(a.placement.nodes) & set(b.placement.nodes))[0]
    drain(world, leaving)
    reconciler.reconcile_once()
    first = {name: [t for t in world.typed(name).transfers if t.source == leaving] for name in ("a-replicated", "b-erasure")}
    assert first["b-erasure"]  # the riskier DataSet got the bound...
    assert not first["a-replicated"]  # ...though "a" comes first by name
    world.settle(reconciler)
    for name in ("a-replicated", "b-erasure"):  # and both drain in the end
        ds = world.typed(name)
        assert ds.placement is not None
        assert leaving not in ds.placement.nodes
        assert min(world.copies(ds)) == ds.spec.redundancy.width
