"""PlacementSlices (topology/slices.py): a target split into bounded objects reads back exactly,
changes are found slice by slice, and a reader never assembles a mix of two targets."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from topology.datasets import DataSet, Replicas, ShardPlacement, SliceIndex, dataset_object
from topology.errors import ObjectError
from topology.slices import (
    SLICE_PIECES,
    TARGET_SLICES,
    PlacementSlice,
    SliceStore,
    changed_slices,
    shards_per_slice,
    slice_count,
    slice_name,
    sliced_form,
    split,
)

ETCD_LIMIT = 1_572_864


def random_placement(rng: np.random.Generator, shards: int, width: int, nodes: int, missing: float = 0.0) -> ShardPlacement:
    names = tuple(f"ip-10-{i // 250}-{i % 250}.ec2.internal" for i in rng.permutation(nodes))
    pieces = np.stack([rng.choice(nodes, size=width, replace=False) for _ in range(shards)]).astype(np.int32)
    pieces[rng.random(pieces.shape) < missing] = -1
    return ShardPlacement(names, pieces)


def as_inline(placement: ShardPlacement, width: int) -> ShardPlacement:
    """``placement`` written inline in ``status.placement`` and read back (rows list the pieces present)."""
    obj = dataset_object("d", shards=placement.shards, shard_size="1Gi", redundancy=Replicas(width))
    obj["status"] = {"placement": placement.to_status()}
    back = DataSet.from_object(obj).placement
    assert back is not None
    return back


def sliced(name: str, placement: ShardPlacement, width: int) -> tuple[DataSet, list[PlacementSlice]]:
    """A DataSet as the reconciler writes it when sliced, and its slices."""
    spec = DataSet.from_object(dataset_object(name, shards=placement.shards, shard_size="1Gi", redundancy=Replicas(width))).spec
    index, parts = sliced_form("default", name, placement)
    return DataSet(spec, None, (), index), parts


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    shards=st.integers(1, 3000),
    width=st.integers(1, 6),
    missing=st.sampled_from([0.0, 0.1]),
)
def test_a_target_split_into_slices_and_read_back_through_the_api_form_is_the_same_target(
    seed: int, shards: int, width: int, missing: float
) -> None:
    rng = np.random.default_rng(seed)
    placement = random_placement(rng, shards, width, nodes=width + 20, missing=missing)
    dataset, parts = sliced("d", placement, width)
    store = SliceStore()
    for part in parts:
        store.apply("ADDED", orjson.loads(orjson.dumps(part.to_object("uid"))))  # as a watch delivers it
    resolved = store.resolve(DataSet.from_object(orjson.loads(orjson.dumps(dataset.to_object()))))
    assert resolved is not None
    assert resolved.placement is not None
    assert resolved.placement.equals(as_inline(placement, width))  # what the inline form reads back
    assert set(resolved.placement.nodes) == {placement.nodes[i] for i in np.unique(placement.pieces[placement.pieces >= 0])}


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), moves=st.integers(0, 40), reorder=st.booleans())
def test_the_changed_slices_are_exactly_those_whose_shards_have_a_piece_on_another_node(seed: int, moves: int, reorder: bool) -> None:
    rng = np.random.default_rng(seed)
    old = random_placement(rng, 2000, 3, nodes=30)
    names = (*old.nodes, "joined")
    pieces = old.pieces.copy()
    for _ in range(moves):
        s, p = int(rng.integers(2000)), int(rng.integers(3))
        pieces[s, p] = len(names) - 1 if len(set(pieces[s]) | {len(names) - 1}) == 4 else pieces[s, p]
    new = ShardPlacement(names, pieces)
    if reorder:  # the same target over a node list in another order
        order = rng.permutation(len(names))
        inverse = np.argsort(order)
        new = ShardPlacement(tuple(names[i] for i in order), inverse[pieces].astype(np.int32))
    per = shards_per_slice(3, 2000)
    by_name_old = np.asarray(old.nodes, dtype=object)[old.pieces]
    by_name_new = np.asarray(new.nodes, dtype=object)[new.pieces]
    expected = sorted({int(s) // per for s in np.flatnonzero((by_name_old != by_name_new).any(axis=1))})
    assert changed_slices(old, new).tolist() == expected
    assert changed_slices(None, new).tolist() == list(range(slice_count(2000, per)))


def test_slices_stay_far_under_etcds_limit_with_the_longest_node_names() -> None:
    rng = np.random.default_rng(0)
    shards = 2 * SLICE_PIECES
    names = tuple(f"{i:06d}" + "n" * 247 for i in range(3 * shards))  # 253 characters each
    placement = ShardPlacement(names, rng.permutation(3 * shards).reshape(shards, 3).astype(np.int32))
    per = shards_per_slice(3, 10_000_000)
    biggest = max(len(orjson.dumps(p.to_object("uid"))) for p in split("default", "d" * 200, placement, per=per))
    assert per * 3 <= SLICE_PIECES
    assert biggest < ETCD_LIMIT / 2


@pytest.mark.parametrize("shards", [1, 1_000, 333_334, 1_000_000, 10_000_000])
def test_slices_are_small_until_the_index_reaches_its_size_then_they_grow_to_the_bound(shards: int) -> None:
    per = shards_per_slice(3, shards)
    assert 1 <= per * 3 <= SLICE_PIECES
    count = slice_count(shards, per)
    assert count <= TARGET_SLICES or per * 3 > SLICE_PIECES - 3  # more slices only once they are as large as allowed
    index_bytes = len(orjson.dumps(SliceIndex(per, tuple("0" * 12 for _ in range(count))).to_status()))
    assert index_bytes < ETCD_LIMIT


def test_a_reader_keeps_the_last_target_while_the_index_names_slices_it_has_not_received() -> None:
    rng = np.random.default_rng(1)
    old = random_placement(rng, 1000, 3, nodes=12)
    dataset, parts = sliced("d", old, 3)
    store = SliceStore()
    assert store.resolve(dataset) is None  # nothing received yet: wait, do not take it as unplaced
    for part in parts:
        store.apply("ADDED", part.to_object())
    first = store.resolve(dataset)
    assert first is not None
    assert first.placement is not None
    pieces = old.pieces.copy()
    pieces[5] = [0, 1, 2] if set(pieces[5]) != {0, 1, 2} else [3, 4, 5]
    new = ShardPlacement(old.nodes, pieces)
    new_dataset, new_parts = sliced("d", new, 3)
    changed = [p for p in new_parts if p.version != parts[p.index].version]
    assert [p.index for p in changed] == [0]
    stale = store.resolve(new_dataset)  # the index moved on, its new slice has not arrived
    assert stale is not None
    assert stale.placement is not None
    assert stale.placement.equals(old)
    store.apply("DELETED", parts[0].to_object())  # the old slice's deletion may come first too
    kept = store.resolve(new_dataset)
    assert kept is not None
    assert kept.placement is not None
    assert kept.placement.equals(old)
    store.apply("ADDED", changed[0].to_object())
    now = store.resolve(new_dataset)
    assert now is not None
    assert now.placement is not None
    assert now.placement.equals(new)
    partial = SliceStore()
    for part in new_parts[1:]:
        partial.add(part)
    assembled = partial.resolve(new_dataset, partial=True)  # the writer's reading: a missing slice's shards are unplaced
    assert assembled is not None
    assert assembled.placement is not None
    assert (assembled.placement.pieces[: shards_per_slice(3, 1000)] == -1).all()
    assert (assembled.placement.pieces[shards_per_slice(3, 1000) :] >= 0).all()


def test_an_index_of_the_wrong_length_is_rejected_naming_the_field() -> None:
    obj = dataset_object("d", shards=100, shard_size="1Gi", redundancy=Replicas(3))
    obj["status"] = {"placement": {"slices": {"shardsPerSlice": 10, "versions": ["a"] * 9}}}
    with pytest.raises(ObjectError, match=r"status\.placement\.slices\.versions.*expected one per slice \(10"):
        DataSet.from_object(obj)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda o: o["spec"]["shards"][0].append(99), r"spec\.shards\[0\]"),
        (lambda o: o["spec"].update(nodes=["a", "a"]), r"spec\.nodes"),
        (lambda o: o["spec"].pop("version"), r"spec\.version"),
        (lambda o: o["spec"].pop("dataSet"), r"spec\.dataSet"),
    ],
)
def test_a_malformed_slice_is_rejected_naming_the_field_and_a_reader_ignores_it(mutate: object, field: str) -> None:
    placement = random_placement(np.random.default_rng(2), 50, 3, nodes=8)
    obj = split("default", "d", placement)[0].to_object()
    mutate(obj)  # type: ignore[operator]
    with pytest.raises(ObjectError, match=field):
        PlacementSlice.from_object(obj)
    store = SliceStore()
    assert store.apply("ADDED", obj) is None
    assert store.rejected == 1


def test_slice_names_are_dns_subdomains_even_for_the_longest_dataset_names() -> None:
    long = "d" * 253
    name = slice_name(long, 4095, "0123456789ab")
    assert len(name) <= 253
    assert name.endswith("-p4095-0123456789ab")
    assert slice_name(long, 1, "a") != slice_name("d" * 252 + "e", 1, "a")
    assert slice_name("imagenet", 17, "3f9a0c5e21d4") == "imagenet-p17-3f9a0c5e21d4"


def test_the_version_names_the_content_so_the_same_slice_written_twice_is_one_object() -> None:
    placement = random_placement(np.random.default_rng(3), 300, 3, nodes=10)
    a = split("default", "d", placement)
    reordered = ShardPlacement(tuple(reversed(placement.nodes)), (len(placement.nodes) - 1 - placement.pieces).astype(np.int32))
    b = split("default", "d", reordered)
    assert [p.name for p in a] == [p.name for p in b]  # same pieces on the same nodes: same names
    moved = replace(placement, pieces=np.where(np.arange(300)[:, None] == 0, placement.pieces[[1]], placement.pieces).astype(np.int32))
    assert split("default", "d", moved)[0].name != a[0].name


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), outside=st.integers(0, 3))
def test_changed_slices_through_table_positions_equal_those_by_name(seed: int, outside: int) -> None:
    """The reconciler matches node lists through its node table's positions; a few names outside
    the table (a cordoned holder) are looked up by name: the answer is the one by name."""
    rng = np.random.default_rng(seed)
    old = random_placement(rng, 1500, 3, nodes=40)
    table = [*old.nodes[outside:], "joined"]  # the first ``outside`` nodes are not in the table
    index = {n: i for i, n in enumerate(table)}
    names = (*old.nodes, "joined")
    pieces = old.pieces.copy()
    rows = rng.choice(1500, 30, replace=False)
    pieces[rows, 0] = len(names) - 1
    pieces[rows, 1] = np.where(pieces[rows, 1] == len(names) - 1, pieces[rows, 2], pieces[rows, 1])
    order = rng.permutation(len(names))
    new = ShardPlacement(tuple(names[i] for i in order), np.argsort(order)[pieces].astype(np.int32))

    def positions(listed: tuple[str, ...]) -> np.ndarray:
        return np.array([index.get(n, -1) for n in listed], dtype=np.int64)

    assert changed_slices(old, new, positions=positions).tolist() == changed_slices(old, new).tolist()


def test_split_renders_each_slice_as_render_slice_does() -> None:
    from topology.slices import render_slice

    placement = random_placement(np.random.default_rng(5), 2000, 3, nodes=50, missing=0.05)
    per = shards_per_slice(3, 2000)
    together = split("default", "d", placement, only=[0, 3, 7, slice_count(2000, per) - 1])
    alone = [render_slice("default", "d", i, per, placement) for i in (0, 3, 7, slice_count(2000, per) - 1)]
    assert [(s.index, s.first_shard, s.version, s.nodes) for s in together] == [(s.index, s.first_shard, s.version, s.nodes) for s in alone]
    assert all(np.array_equal(a.pieces, b.pieces) for a, b in zip(together, alone, strict=True))


def test_slices_rendered_through_a_node_tables_order_are_the_slices_of_their_own_order() -> None:
    """The reconciler sorts its node table once per pass and renders every DataSet's slices
    through it (NameOrder.within): the slices are the ones the target's own order gives."""
    from topology.slices import NameOrder

    rng = np.random.default_rng(7)
    table = tuple(f"node-{i:05d}" for i in rng.permutation(400))
    placement = random_placement(rng, 3000, 3, nodes=300)
    index = {n: i for i, n in enumerate(table)}
    placement = ShardPlacement(tuple(table[i] for i in sorted(rng.choice(400, 300, replace=False))), placement.pieces)
    positions = np.array([index[n] for n in placement.nodes], dtype=np.int64)
    through = split("default", "d", placement, order=NameOrder.within(NameOrder(table), positions, placement.nodes))
    own = split("default", "d", placement)
    assert [(s.version, s.nodes) for s in through] == [(s.version, s.nodes) for s in own]
    assert all(np.array_equal(a.pieces, b.pieces) for a, b in zip(through, own, strict=True))


@pytest.mark.parametrize(("shards", "width", "fits"), [(10_000_000, 20, True), (10_000_000, 22, False)])
def test_the_index_bounds_a_dataset_at_about_two_hundred_million_pieces(shards: int, width: int, fits: bool) -> None:
    """What README.md and dataplane/README.md state: 200,000,000 pieces leave 16 KB of etcd's
    1.5 MiB for the rest of the DataSet; 220,000,000 do not fit (the reconciler refuses them:
    PlacementTooLarge, test_object_size.py)."""
    per = shards_per_slice(width, shards)
    index = SliceIndex(per, tuple("0123456789ab" for _ in range(slice_count(shards, per))))
    assert (len(orjson.dumps({"status": {"placement": index.to_status()}})) + 16_384 < ETCD_LIMIT) is fits


def test_a_reader_waiting_for_a_new_indexs_slices_assembles_once_when_the_last_arrives(monkeypatch: pytest.MonkeyPatch) -> None:
    """The extender and the agents resolve a DataSet on each slice event: while a new index
    waits for thousands of slices, no event scans the index or assembles; a slice of the
    index deleted before the target is whole is awaited again."""
    rng = np.random.default_rng(11)
    old = random_placement(rng, 3000, 3, nodes=40)
    dataset, parts = sliced("d", old, 3)
    store = SliceStore()
    for part in parts:
        store.apply("ADDED", part.to_object())
    assert store.resolve(dataset) is not None
    new = ShardPlacement(old.nodes, np.roll(old.pieces, 1, axis=1))  # every shard's pieces on other slots
    new_dataset, new_parts = sliced("d", new, 3)
    calls: list[int] = []
    assemble = SliceStore._assemble

    def counted(self: SliceStore, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return assemble(self, *args, **kwargs)

    monkeypatch.setattr(SliceStore, "_assemble", counted)
    waiting = store.resolve(new_dataset)  # the index first
    assert waiting is not None
    assert waiting.placement is not None
    assert waiting.placement.equals(old)
    store.apply("ADDED", new_parts[0].to_object())
    store.apply("DELETED", new_parts[0].to_object())  # gone again: awaited again
    for part in new_parts[1:]:
        store.apply("ADDED", part.to_object())
        held = store.resolve(new_dataset)
        assert held is not None
        assert held.placement is not None
        assert held.placement.equals(old)
    assert calls == []
    store.apply("ADDED", new_parts[0].to_object())
    whole = store.resolve(new_dataset)
    assert whole is not None
    assert whole.placement is not None
    assert whole.placement.equals(new)
    assert len(calls) == 1
