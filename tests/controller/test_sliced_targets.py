"""The controller reads sliced targets: over a DataSet written as PlacementSlices it protects what it
protects over the same DataSet inline, and a target it cannot assemble keeps every node.

The inline DataSet is the real placement reconciler's, mid-drain (transfers in flight); its sliced
form is what the reconciler writes past ``--inline-placement-bytes``: the slices of
:func:`topology.slices.split` and their index in ``status.placement``.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Sequence
from typing import Any

from controller import Controller, ControllerSettings
from controller.disrupting import needed_pieces
from controller.providers.fake import FakeProvider
from controller.reconciling import WATCHED, ObjectCache
from kube.api import DATASETS, KBLS, NODES, PLACEMENT_SLICES, PODS, ApiError, Resource, WatchEvent
from kube.memory import MemoryApi
from placement import capacity as cap
from tests.controller.test_reconciling import World
from tests.dataplane.reconciler.worlds import World as DataWorld
from tests.dataplane.reconciler.worlds import dataset, drain
from tests.kube.fakekube import FakeKube
from tests.placement.scenarios import T0, kbl_object, placed_dataset, pod_object
from topology.datasets import DataSet, Replicas
from topology.slices import PlacementSlice, SliceStore, shards_per_slice, slice_count, sliced_form

Obj = dict[str, Any]


def as_sliced(obj: Obj) -> tuple[Obj, list[Obj]]:
    """The DataSet as the reconciler writes it sliced: an index in ``status.placement`` (transfers
    kept), and its PlacementSlices."""
    typed = DataSet.from_object(obj)
    assert typed.placement is not None
    index, slices = sliced_form(typed.namespace, typed.name, typed.placement)
    out = copy.deepcopy(obj)
    out["status"]["placement"] = index.to_status()
    return out, [s.to_object(typed.spec.uid) for s in slices]


@functools.cache
def draining() -> tuple[Obj, tuple[Obj, ...]]:
    """A DataSet of 1,500 shards x 2 the reconciler placed, hydrated, then moves off a drained node
    (transfers in flight), with the nodes."""
    world = DataWorld()
    world.add_dataset(dataset("d", shards=1500, redundancy=Replicas(2)))
    reconciler = world.reconciler()
    world.settle(reconciler)
    drain(world, world.node_names()[0])
    reconciler.reconcile_once()
    obj = world.get("d")
    assert obj["status"].get("transfers")
    return copy.deepcopy(obj), tuple(copy.deepcopy(world.api.list(NODES)[0]))


def test_the_sliced_form_holds_several_slices_and_the_transfers() -> None:
    inline, _ = draining()
    sliced, slices = as_sliced(inline)
    assert len(slices) == slice_count(1500, shards_per_slice(2, 1500)) > 1
    assert sliced["status"]["transfers"] == inline["status"]["transfers"]
    assert "nodes" not in sliced["status"]["placement"]


def test_needed_pieces_over_a_sliced_dataset_equal_those_over_the_same_dataset_inline() -> None:
    inline, nodes = draining()
    sliced, slices = as_sliced(inline)
    want = needed_pieces([inline])
    assert want.unknown == ()
    for given in (slices, [PlacementSlice.from_object(s) for s in slices], _store(slices)):
        got = needed_pieces([sliced], given)
        assert got == want
        assert got.unknown == ()
        assert [got.protects(n["metadata"]["name"]) for n in nodes] == [want.protects(n["metadata"]["name"]) for n in nodes]
    assert sum(want.values()) == 1500 * 2 + len(inline["status"]["transfers"])  # every slot, and every transfer's source


def _store(slices: Sequence[Obj]) -> SliceStore:
    store = SliceStore()
    store.replace(slices)
    return store


def test_a_sliced_dataset_whose_slices_are_missing_makes_every_node_needed() -> None:
    inline, nodes = draining()
    sliced, slices = as_sliced(inline)
    sources = {t["from"] for t in inline["status"]["transfers"]}
    for held in ([], slices[:1], slices[1:]):
        needed = needed_pieces([sliced], held)
        assert needed.unknown == ("default/d",)
        assert all(needed.protects(n["metadata"]["name"]) for n in nodes)
        assert needed.protects("a-node-no-target-named")
        assert set(needed) == sources  # the transfers' sources are still counted by name


def test_a_new_index_whose_slices_are_not_read_is_unknown_never_the_last_target() -> None:
    # the last target's slices are held, the new index names one not read yet: an older target
    # may not name the node a piece moved to, so it is not used
    inline, _ = draining()
    old, old_slices = as_sliced(inline)
    moved = copy.deepcopy(inline)
    moved["status"]["placement"]["shards"][-1] = list(reversed(moved["status"]["placement"]["shards"][-1]))
    new, new_slices = as_sliced(moved)
    assert old["status"]["placement"]["slices"]["versions"][0] == new["status"]["placement"]["slices"]["versions"][0]
    store = _store(old_slices)
    assert needed_pieces([old], store).unknown == ()
    assert needed_pieces([new], store).unknown == ("default/d",)
    store.apply("ADDED", new_slices[-1])
    assert needed_pieces([new], store) == needed_pieces([moved])


class WithoutSlices(MemoryApi):
    """An API server without the PlacementSlice kind (its CRD not installed): 404 on every read."""

    def list(
        self, resource: Resource, *, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        if resource is PLACEMENT_SLICES:
            raise ApiError(404, "the server could not find the requested resource")
        return super().list(resource, namespace=namespace, label_selector=label_selector)


def observed(objs: Sequence[Obj], slices: Sequence[Obj] = (), *, kube: MemoryApi | None = None) -> tuple[Controller, cap.CapacityState]:
    kube = kube if kube is not None else FakeKube()
    for node in draining()[1]:
        kube.put(NODES, node)
    for obj in objs:
        kube.put(DATASETS, obj)
    for obj in slices:
        kube.put(PLACEMENT_SLICES, obj)
    ctl = Controller(kube, FakeProvider(lambda: T0), ControllerSettings(cluster_name="test"), clock=lambda: T0)
    return ctl, ctl.observe()


def test_the_controller_reads_a_sliced_dataset_as_the_same_dataset_inline_and_its_removal_checks_agree() -> None:
    inline, nodes = draining()
    sliced, slices = as_sliced(inline)
    _, want = observed([inline])
    ctl, got = observed([sliced], slices)
    assert ctl.unknown == []
    (theirs,), (ours,) = want.datasets, got.datasets
    assert theirs.placement is not None
    assert ours.placement is not None
    assert ours.placement.equals(theirs.placement)
    assert ours.transfers == theirs.transfers
    assert cap.referenced_nodes(got.datasets) == cap.referenced_nodes(want.datasets)
    names = [n["metadata"]["name"] for n in nodes]
    for leaving in [[n] for n in names] + [names[:2], names[2:5]]:
        assert cap.removal_verdict(got.cluster, got.datasets, leaving) == cap.removal_verdict(want.cluster, want.datasets, leaving)


def test_with_the_informers_caches_a_pass_over_unchanged_slices_writes_the_sliced_dataset_again_never() -> None:
    inline, _ = draining()
    sliced, slices = as_sliced(inline)
    ctl, _ = observed([sliced], slices)
    ctl.caches = {}  # as the informers keep them: typed once per event
    for resource, build in WATCHED:
        cache = ctl.caches[resource.plural] = ObjectCache(build)
        cache.relist(ctl.kube.list(resource)[0])
    first = ctl.observe().datasets[0]
    assert first.placement is not None
    assert ctl.observe().datasets[0] is first  # the same object: _cluster_of writes nothing for it
    ctl.caches[PLACEMENT_SLICES.plural].event(WatchEvent("DELETED", slices[0]))  # the writer pruned it (or a hand did)
    again = ctl.observe().datasets[0]
    assert again is first  # its target was assembled for this index: it stays known


def test_the_controller_holds_a_sliced_dataset_whose_slices_are_missing_as_unknown_and_every_removal_unsafe() -> None:
    inline, nodes = draining()
    sliced, slices = as_sliced(inline)
    ctl, state = observed([sliced], slices[:1])
    assert ctl.unknown == ["default/d"]
    assert state.datasets[0].awaits_slices
    assert cap.unknown_targets(state.datasets) == ["default/d"]
    for node in nodes:
        verdict = cap.removal_verdict(state.cluster, state.datasets, [node["metadata"]["name"]])
        assert not verdict.safe
        assert verdict.at_risk == {"default/d": 1500}


def test_on_an_api_without_the_placement_slice_kind_the_controller_plans_with_every_sliced_target_unknown() -> None:
    inline, _ = draining()
    sliced, _ = as_sliced(inline)
    ctl, state = observed([sliced, placed_dataset("small", [["node-0-0-0"]])], kube=WithoutSlices())
    assert ctl.unknown == ["default/d"]
    assert [d.key for d in state.datasets if d.placement is not None] == ["default/small"]


def leaving_node(world: World) -> str:
    return str(next(n["metadata"]["name"] for n in world.kube.list(NODES)[0] if n["metadata"]["labels"].get("kbl.io/kbl") == "data"))


def waits(world: World, node: str) -> list[str]:
    return [e["message"] for e in world.kube.events if e["reason"] == "ScaleDownWaitsForData" and e["message"].startswith(node)]


def test_scale_down_removes_no_node_while_a_sliced_target_is_unknown_and_says_why() -> None:
    world = World(ready_delay_s=30)
    world.kube.put(KBLS, kbl_object("data"))
    world.kube.put(PODS, pod_object("p", kbl="data"))
    ctl = world.controller()
    ctl.reconcile_once()
    world.advance(60)
    node = leaving_node(world)
    # the last target names only general nodes; its slices are read
    first, first_slices = as_sliced(placed_dataset("reads", [["gen-b0"], ["gen-a0"]], replicas=1))
    world.kube.put(DATASETS, first)
    for piece_slice in first_slices:
        world.kube.put(PLACEMENT_SLICES, piece_slice)
    ctl.reconcile_once()  # the controller assembles that target
    # the reconciler then placed shard 0's only replica on the group's node: the index names a
    # slice the controller has not read (the last target would say the node holds nothing)
    moved, moved_slices = as_sliced(placed_dataset("reads", [[node], ["gen-a0"]], replicas=1))
    world.kube.put(DATASETS, moved)
    world.kube.delete(PODS, "p")
    for _ in range(3):
        world.advance(300)
        ctl.reconcile_once()
    obj = world.kube.get(NODES, node)
    assert obj is not None
    assert obj["spec"]["unschedulable"] is True  # cordoned and drained: the reconciler has the real view
    assert not world.cloud.calls_of("remove_instance")
    assert any("not known yet" in m and "default/reads" in m for m in waits(world, node))
    for piece_slice in moved_slices:  # read: the node holds the shard's only replica
        world.kube.put(PLACEMENT_SLICES, piece_slice)
    for _ in range(2):
        world.advance(300)
        ctl.reconcile_once()
    assert not world.cloud.calls_of("remove_instance")
    assert any("still place pieces on it" in m for m in waits(world, node))
    # standing in for the placement reconciler: the replica moved off, new slices then the index
    done, done_slices = as_sliced(placed_dataset("reads", [["gen-b0"], ["gen-a0"]], replicas=1))
    for piece_slice in done_slices:
        world.kube.put(PLACEMENT_SLICES, piece_slice)
    world.kube.put(DATASETS, done)
    for _ in range(3):
        world.advance(300)
        ctl.reconcile_once()
    assert len(world.cloud.calls_of("remove_instance")) == 1
