"""The shipped DataSet, KBL and PlacementSlice CRDs: structural, and in agreement with kbl's own parsers.

Invariant: whatever the CRD admits, ``DataSet.from_object``/``KBL.from_object``/
``PlacementSlice.from_object`` accept (the CRD is never looser than the code that reads the
objects); broken objects are refused by both. And the CRDs admit what the placement reconciler
writes (a sliced target: its PlacementSlices and the DataSet's index).
"""

from __future__ import annotations

import copy
import random
import re
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from tests.manifests.crdschemas import CrdValidator, schema_nodes
from tests.manifests.shipped import CRDS, example_objects, load_docs
from topology.datasets import DataSet, ShardPlacement, SliceIndex
from topology.errors import KblError
from topology.kbls import KBL
from topology.slices import PlacementSlice, render_slice, split

Obj = dict[str, Any]
PARSERS: dict[str, Callable[[Obj], object]] = {
    "DataSet": DataSet.from_object, "KBL": KBL.from_object, "PlacementSlice": PlacementSlice.from_object,
}  # fmt: skip


def _crd(name: str) -> Obj:
    docs = load_docs(CRDS / f"{name}.yaml")
    assert len(docs) == 1
    return docs[0]


VALIDATORS = {
    "DataSet": CrdValidator(_crd("datasets.kbl.io")), "KBL": CrdValidator(_crd("kbls.kbl.io")),
    "PlacementSlice": CrdValidator(_crd("placementslices.kbl.io")),
}  # fmt: skip


def _parser_accepts(obj: Obj) -> bool:
    try:
        PARSERS[obj["kind"]](obj)
    except KblError:
        return False
    return True


def _dataset(**spec: Any) -> Obj:
    body = {"shards": 4, "shardSize": "1Gi", "redundancy": {"replicas": 2}}
    body.update(spec)
    return {"apiVersion": "kbl.io/v1alpha1", "kind": "DataSet", "metadata": {"name": "d", "namespace": "ns"}, "spec": body}


def _without(obj: Obj, *path: str) -> Obj:
    out = copy.deepcopy(obj)
    node = out
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return out


def _kbl(node_group: Obj | None = None, stages: list[Obj] | None = None) -> Obj:
    spec: Obj = {"nodeGroup": node_group if node_group is not None else {"mode": "dedicated", "minSize": 0, "maxSize": 4}}
    if stages is not None:
        spec["blueprint"] = {"stages": stages}
    return {"apiVersion": "kbl.io/v1alpha1", "kind": "KBL", "metadata": {"name": "k", "namespace": "ns"}, "spec": spec}


#: A small 2x target of 4 shards over 3 nodes, and one with pieces not placed (-1): a whole shard,
#: one piece of another, and a slice of which no piece is placed (an empty node list).
TARGET = ShardPlacement(("n1", "n2", "n3"), np.array([[0, 1], [2, 0], [1, 2], [0, 2]], dtype=np.int32))
HOLES = ShardPlacement(("n1", "n2", "n3"), np.array([[0, 1], [-1, -1], [1, -1], [-1, -1], [-1, -1]], dtype=np.int32))


def _slice(name: str, placement: ShardPlacement, index: int = 0, per: int = 4, namespace: str = "ns") -> Obj:
    """A PlacementSlice as the reconciler writes it (topology.slices), owned by its DataSet."""
    return render_slice(namespace, name, index, per, placement).to_object(dataset_uid=f"uid-{name}")


def _sliced_dataset(**status: Any) -> Obj:
    """DataSet ``d`` (4 shards) whose target is the slices of :data:`TARGET`, 2 shards each."""
    versions = tuple(s.version for s in (render_slice("ns", "d", i, 2, TARGET) for i in range(2)))
    return {**_dataset(), "status": {"placement": SliceIndex(2, versions).to_status(), **status}}


def _renamed(obj: Obj, name: str) -> Obj:
    out = copy.deepcopy(obj)
    out["metadata"]["name"] = name
    return out


GOOD = {
    "dataset-int-size": _dataset(shardSize=1 << 30),
    "dataset-per-shard-sizes": _without(_dataset(shards=2, shardSizes=["1Gi", 1024]), "spec", "shardSize"),
    "dataset-erasure-no-parity": _dataset(redundancy={"erasure": {"data": 4, "parity": 0}}),
    "dataset-erasure-64-pieces": _dataset(redundancy={"erasure": {"data": 60, "parity": 4}}),
    "dataset-s3-source": _dataset(source={"s3": {"bucket": "b", "prefix": "imagenet/", "region": "us-east-1"}}, shardKey="part-{index:05d}.bin"),
    "dataset-path-source": _dataset(source={"path": "/mnt/shared/data"}, shardKey="{index}.parquet"),
    "dataset-label-key-domain": _dataset(failureDomain="example.com/power-feed", nodeSelector={"disk": "nvme"}),
    "dataset-placed": {
        **_dataset(shards=2),
        "status": {"placement": {"nodes": ["n1", "n2", "n3"], "shards": [[0, 1], [2, 0]]}, "observedGeneration": 3},
    },
    "dataset-sliced": _sliced_dataset(observedGeneration=3),
    "placementslice": _slice("d", TARGET),
    "placementslice-second-of-two": _slice("d", TARGET, index=1, per=2),
    "placementslice-unplaced-pieces": _slice("d", HOLES, per=3),
    "placementslice-nothing-placed": _slice("d", HOLES, index=1, per=3),
    "placementslice-longest-dataset-name": _slice("d" * 253, TARGET),  # the name is shortened, no label
    "kbl-empty-spec": {"apiVersion": "kbl.io/v1alpha1", "kind": "KBL", "metadata": {"name": "k"}, "spec": {}},
    "kbl-shared-spot": _kbl({"mode": "shared", "capacityType": "SPOT", "instanceTypes": ["c7g.large"], "minSize": 10}),
    "kbl-stages": _kbl(
        stages=[
            {"name": "a", "start": "2026-12-01T21:00:00.5+01:00", "durationSeconds": 0.5, "needs": {"cpu": "500m", "memory": 1 << 30}},
            {"name": "b", "startAfterSeconds": 0, "needs": {"nodes": 0}, "job": "b-job"},
            {"name": "c", "after": {"stage": "b", "fraction": 0.8}, "datasets": ["imagenet"], "needs": {"nodes": 2}},
        ]
    ),
    "kbl-window": {**_kbl(), "spec": {**_kbl()["spec"], "window": {"start": "21:30", "durationSeconds": 28800}}},
}

BAD = {
    "dataset-no-shards": _without(_dataset(), "spec", "shards"),
    "dataset-zero-shards": _dataset(shards=0),
    "dataset-string-shards": _dataset(shards="4"),
    "dataset-too-many-shards": _dataset(shards=10_000_001, shardSize="1"),
    "dataset-no-redundancy": _without(_dataset(), "spec", "redundancy"),
    "dataset-empty-redundancy": _dataset(redundancy={}),
    "dataset-both-redundancies": _dataset(redundancy={"replicas": 2, "erasure": {"data": 2, "parity": 1}}),
    "dataset-zero-replicas": _dataset(redundancy={"replicas": 0}),
    "dataset-65-replicas": _dataset(redundancy={"replicas": 65}),
    "dataset-erasure-no-parity-field": _dataset(redundancy={"erasure": {"data": 4}}),
    "dataset-erasure-zero-data": _dataset(redundancy={"erasure": {"data": 0, "parity": 2}}),
    "dataset-erasure-65-pieces": _dataset(redundancy={"erasure": {"data": 60, "parity": 5}}),
    "dataset-no-size": _without(_dataset(), "spec", "shardSize"),
    "dataset-both-sizes": _dataset(shardSizes=["1Gi"] * 4),
    "dataset-sizes-wrong-length": _without(_dataset(shardSizes=["1Gi"] * 3), "spec", "shardSize"),
    "dataset-size-not-quantity": _dataset(shardSize="lots"),
    "dataset-negative-size": _dataset(shardSize="-1Gi"),
    "dataset-negative-int-size": _dataset(shardSize=-5),
    "dataset-selector-not-strings": _dataset(nodeSelector={"disk": 1}),
    "dataset-two-sources": _dataset(source={"s3": {"bucket": "b"}, "path": "/d"}),
    "dataset-relative-path-source": _dataset(source={"path": "data"}),
    "dataset-s3-no-bucket": _dataset(source={"s3": {"prefix": "p/"}}),
    "dataset-shard-key-without-index": _dataset(shardKey="same-name"),
    "dataset-shard-key-hidden": _dataset(shardKey=".{index}"),
    "dataset-placement-index-not-int": {**_dataset(shards=1), "status": {"placement": {"nodes": ["n1"], "shards": [["n1"]]}}},
    "dataset-placement-node-not-string": {**_dataset(shards=1), "status": {"placement": {"nodes": [7], "shards": [[0]]}}},
    "dataset-sliced-no-versions": _without(_sliced_dataset(), "status", "placement", "slices", "versions"),
    "dataset-sliced-zero-shards-per-slice": {**_dataset(shards=1), "status": {"placement": SliceIndex(0, ("ab",)).to_status()}},
    "dataset-sliced-empty-version": {**_dataset(shards=1), "status": {"placement": SliceIndex(1, ("",)).to_status()}},
    "placementslice-index-beyond-nodes": {**_slice("d", TARGET), "spec": {**_slice("d", TARGET)["spec"], "shards": [[0, 3]]}},
    "placementslice-duplicate-nodes": {**_slice("d", TARGET), "spec": {**_slice("d", TARGET)["spec"], "nodes": ["n1", "n1", "n3"]}},
    "placementslice-empty-node-name": {**_slice("d", TARGET), "spec": {**_slice("d", TARGET)["spec"], "nodes": ["n1", "", "n3"]}},
    "placementslice-no-shards": {**_slice("d", TARGET), "spec": {**_slice("d", TARGET)["spec"], "shards": []}},
    "placementslice-no-dataset": _without(_slice("d", TARGET), "spec", "dataSet"),
    "placementslice-empty-dataset": {**_slice("d", TARGET), "spec": {**_slice("d", TARGET)["spec"], "dataSet": ""}},
    "placementslice-no-version": _without(_slice("d", TARGET), "spec", "version"),
    "placementslice-no-first-shard": _without(_slice("d", TARGET), "spec", "firstShard"),
    "placementslice-negative-first-shard": {**_slice("d", TARGET), "spec": {**_slice("d", TARGET)["spec"], "firstShard": -1}},
    "placementslice-index-not-int": {**_slice("d", TARGET), "spec": {**_slice("d", TARGET)["spec"], "shards": [["n1"]]}},
    "kbl-unknown-mode": _kbl({"mode": "exclusive"}),
    "kbl-lowercase-capacity": _kbl({"capacityType": "spot"}),
    "kbl-min-above-max": _kbl({"minSize": 5, "maxSize": 2}),
    "kbl-min-above-default-max": _kbl({"minSize": 11}),
    "kbl-negative-min": _kbl({"minSize": -1}),
    "kbl-empty-instance-type": _kbl({"instanceTypes": [""]}),
    "kbl-taint-bad-effect": _kbl({"taints": [{"key": "a", "effect": "Never"}]}),
    "kbl-taint-no-key": _kbl({"taints": [{"value": "x"}]}),
    "kbl-label-not-string": _kbl({"labels": {"team": 3}}),
    "kbl-stage-no-name": _kbl(stages=[{"durationSeconds": 10}]),
    "kbl-stage-bad-start": _kbl(stages=[{"name": "a", "start": "tomorrow"}]),
    "kbl-stage-start-no-zone": _kbl(stages=[{"name": "a", "start": "2026-12-01T21:00:00"}]),
    "kbl-stage-zero-duration": _kbl(stages=[{"name": "a", "durationSeconds": 0}]),
    "kbl-stage-negative-after": _kbl(stages=[{"name": "a", "startAfterSeconds": -5}]),
    "kbl-stage-negative-nodes": _kbl(stages=[{"name": "a", "needs": {"nodes": -1}}]),
    "kbl-stage-bad-cpu": _kbl(stages=[{"name": "a", "needs": {"cpu": "lots"}}]),
    "kbl-duplicate-stages": _kbl(stages=[{"name": "a"}, {"name": "a"}]),
    "kbl-stage-after-no-stage": _kbl(stages=[{"name": "a", "after": {"fraction": 0.5}}]),
    "kbl-stage-after-zero-fraction": _kbl(stages=[{"name": "a", "after": {"stage": "b", "fraction": 0}}]),
    "kbl-stage-after-above-one": _kbl(stages=[{"name": "a", "after": {"stage": "b", "fraction": 1.5}}]),
    "kbl-stage-datasets-not-names": _kbl(stages=[{"name": "a", "datasets": [""]}]),
    "kbl-window-bad-time": {**_kbl(), "spec": {**_kbl()["spec"], "window": {"start": "25:00", "durationSeconds": 60}}},
    "kbl-window-longer-than-a-day": {**_kbl(), "spec": {**_kbl()["spec"], "window": {"start": "01:00", "durationSeconds": 86401}}},
}


#: Refused by the CRD only: what kbl reads does not depend on it, but the writer does.
CRD_ONLY = {
    # The reconciler deletes a slice by the name its spec gives: one named otherwise is never pruned.
    "placementslice-name-without-its-version": _renamed(_slice("d", TARGET), "d-p0-0123456789ab"),
    "placementslice-name-of-another-index": _renamed(_slice("d", TARGET), _slice("d", TARGET)["metadata"]["name"].replace("-p0-", "-p1-")),
    # Both forms at once: kbl reads the slices; the reconciler never writes both.
    "dataset-inline-and-sliced": {
        **_dataset(), "status": {"placement": {**TARGET.to_status(), **_sliced_dataset()["status"]["placement"]}},
    },  # fmt: skip
}


@pytest.mark.parametrize(("file", "obj"), [(f, o) for f, o in example_objects() if o["kind"] in PARSERS], ids=lambda v: str(v)[:30])
def test_examples_are_admitted_by_the_crd_and_parsed_by_kbl(file: str, obj: Obj) -> None:
    assert VALIDATORS[obj["kind"]].errors(obj) == [], file
    PARSERS[obj["kind"]](obj)


@pytest.mark.parametrize("name", sorted(GOOD))
def test_good_objects_are_admitted_by_the_crd_and_parsed_by_kbl(name: str) -> None:
    obj = GOOD[name]
    assert VALIDATORS[obj["kind"]].errors(obj) == []
    PARSERS[obj["kind"]](obj)


@pytest.mark.parametrize("name", sorted(BAD))
def test_broken_objects_are_rejected_by_the_crd_and_by_kbl(name: str) -> None:
    obj = BAD[name]
    assert VALIDATORS[obj["kind"]].errors(obj), f"the CRD admits {name}"
    with pytest.raises(KblError):
        PARSERS[obj["kind"]](obj)


@pytest.mark.parametrize("name", sorted(CRD_ONLY))
def test_what_only_the_crd_refuses(name: str) -> None:
    obj = CRD_ONLY[name]
    assert VALIDATORS[obj["kind"]].errors(obj), f"the CRD admits {name}"
    PARSERS[obj["kind"]](obj)  # if kbl refuses it too, it belongs in BAD


def test_a_placement_slice_is_immutable_its_metadata_is_not() -> None:
    """Readers key a slice by (index, version): a spec changed in place would be taken for the
    content that version names. The API server refuses it (a transition rule); labels may change."""
    validator = VALIDATORS["PlacementSlice"]
    old = GOOD["placementslice"]
    relabelled = copy.deepcopy(old)
    relabelled["metadata"]["labels"]["team"] = "ml"
    assert validator.errors(relabelled, old) == []
    moved = copy.deepcopy(old)
    moved["spec"]["shards"][0] = moved["spec"]["shards"][0][::-1]  # still a valid slice, as a new object
    assert validator.errors(moved) == []
    assert validator.errors(moved, old) == [".spec: a PlacementSlice is immutable (write a new version)"]


def _written(name: str, shards: int, redundancy: Any) -> tuple[Obj, list[Obj]]:
    """A DataSet placed by the real placement reconciler with every target sliced
    (``inline_placement_bytes=0``): the DataSet as stored, and the PlacementSlices it created."""
    from kube.api import PLACEMENT_SLICES
    from tests.dataplane.reconciler.worlds import World, dataset

    world = World()
    world.add_dataset(dataset(name, shards=shards, redundancy=redundancy))
    world.reconciler(inline_placement_bytes=0).reconcile_once()
    return world.get(name), world.api.list(PLACEMENT_SLICES)[0]


def test_the_crds_admit_what_the_reconciler_writes_and_kbl_reads_it_back() -> None:
    """A 3x DataSet of 700 shards (full slices of 85 shards, 255 pieces, and a partial one) and
    a 4+2 one: every slice and the DataSets' index are admitted, and the slices assemble into a
    target that places every piece of every shard on distinct nodes."""
    from topology.datasets import Erasure, Replicas
    from topology.slices import SLICE_PIECES, SliceStore

    for name, shards, redundancy in (("reads", 700, Replicas(3)), ("frames", 50, Erasure(4, 2))):
        stored, slices = _written(name, shards, redundancy)
        assert "slices" in stored["status"]["placement"]
        assert VALIDATORS["DataSet"].errors(stored) == []
        assert len(slices) == len(stored["status"]["placement"]["slices"]["versions"])
        for obj in slices:
            assert VALIDATORS["PlacementSlice"].errors(obj) == [], obj["metadata"]["name"]
            assert sum(len(row) for row in obj["spec"]["shards"]) <= SLICE_PIECES
        store = SliceStore()
        store.replace(slices)
        typed = store.resolve(DataSet.from_object(stored))
        assert typed is not None and typed.placement is not None
        width = redundancy.width
        assert typed.placement.pieces.shape == (shards, width)
        assert all(len(set(row)) == width for row in typed.placement.pieces.tolist())


def test_split_slices_of_a_placement_are_admitted() -> None:
    """Every slice :func:`topology.slices.split` cuts from a target, in a DataSet's namespace."""
    for piece_slice in split("ns", "d", TARGET) + split("ns", "d", HOLES):
        obj = piece_slice.to_object()
        assert VALIDATORS["PlacementSlice"].errors(obj) == []
        assert PlacementSlice.from_object(obj) == piece_slice


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _paths(item, (*path, i))


REPLACEMENTS: list[Any] = [-1, 0, 1, 3, 11, 64, 65, 10_000_001, 2**62, 1.5, True, "", "x", "1Gi", "-1", "500m", [], {}, ["a"], {"a": "b"}]


def _mutants(obj: Obj, rng: random.Random, count: int) -> Iterator[Obj]:
    paths = [p for p in _paths(obj["spec"], ("spec",)) if len(p) > 1]
    for _ in range(count if paths else 0):
        out = copy.deepcopy(obj)
        path = rng.choice(paths)
        parent = out
        for key in path[:-1]:
            parent = parent[key]
        if rng.random() < 0.25 and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = copy.deepcopy(rng.choice(REPLACEMENTS))
        yield out


def test_whatever_the_crds_admit_kbl_parses() -> None:
    """Seeded mutations of the spec of every good object. ``status`` is left out: it is written
    by kbl, and its agreement with the spec (one placement row per shard, indexes into the node
    list) is checked by kbl when it reads the object, not by the CRD (see the CRD's comment)."""
    seeds = [{k: v for k, v in o.items() if k != "status"} for _, o in example_objects() if o["kind"] in PARSERS]
    seeds += [{k: v for k, v in o.items() if k != "status"} for o in GOOD.values()]
    rng = random.Random(7)
    admitted = refused = 0
    for seed in seeds:
        for mutant in _mutants(seed, rng, 60):
            if VALIDATORS[mutant["kind"]].admits(mutant):
                admitted += 1
                assert _parser_accepts(mutant), f"the CRD admits an object kbl refuses: {mutant['spec']}"
            else:
                refused += 1
    # The mutations must exercise both sides, or the invariant says nothing.
    assert admitted > 50
    assert refused > 200


@pytest.mark.parametrize("kind", sorted(VALIDATORS))
def test_crd_schema_is_structural(kind: str) -> None:
    """The API server only accepts structural schemas: a type on every node (except
    int-or-string and preserve-unknown-fields), and value-only branches under oneOf/anyOf."""
    schema = VALIDATORS[kind].schema
    for path, node in schema_nodes(schema):
        if node.get("x-kubernetes-int-or-string"):
            assert "type" not in node, path
            assert node.get("anyOf") == [{"type": "integer"}, {"type": "string"}], path
            continue
        assert node.get("type") in {"object", "array", "string", "integer", "number", "boolean"}, f"{path} has no type"
        for branch in node.get("oneOf", []) + node.get("anyOf", []):
            assert not {"type", "description", "default", "additionalProperties", "nullable"} & branch.keys(), path
            assert set(branch.get("required", [])) <= node.get("properties", {}).keys(), path
        if node["type"] == "object":
            assert not ("properties" in node and "additionalProperties" in node), path
        if node.get("x-kubernetes-list-type") == "map":
            keys = node["x-kubernetes-list-map-keys"]
            assert set(keys) <= set(node["items"].get("required", [])), f"{path}: list-map keys must be required"


#: Each CRD's subresources: a PlacementSlice has no status (it is written whole, once).
SUBRESOURCES: dict[str, Obj | None] = {
    "datasets.kbl.io": {"status": {}}, "kbls.kbl.io": {"status": {}}, "nodeholdings.kbl.io": {"status": {}},
    "placementslices.kbl.io": None,
}  # fmt: skip


def test_every_shipped_crd_is_checked() -> None:
    assert {p.stem for p in CRDS.glob("*.yaml")} == SUBRESOURCES.keys()


@pytest.mark.parametrize("name", sorted(SUBRESOURCES))
def test_crd_has_its_subresources_and_printer_columns_that_resolve(name: str) -> None:
    crd = _crd(name)
    (version,) = crd["spec"]["versions"]
    assert version["served"] and version["storage"]
    assert version.get("subresources") == SUBRESOURCES[name]
    schema = version["schema"]["openAPIV3Schema"]
    columns = version["additionalPrinterColumns"]
    assert len(columns) >= 4
    for column in columns:
        node = schema
        path = re.sub(r"\[\?\(@\.(\w+)==\"[^\"]*\"\)\]", "", column["jsonPath"])  # a filter selects array items
        for part in path.lstrip(".").replace("[*]", "").split("."):
            if part in ("metadata", "creationTimestamp") and column["type"] == "date":
                break
            while node.get("type") == "array":
                node = node["items"]
            assert part in node.get("properties", {}), f"{name}: printer column {column['name']} names unknown {part}"
            node = node["properties"][part]
    assert crd["spec"]["group"] == "kbl.io"
    assert crd["metadata"]["name"] == f"{crd['spec']['names']['plural']}.kbl.io"


def test_crd_cel_rules_compile() -> None:
    rules = [r for v in VALIDATORS.values() for r in v.rules()]
    assert len(rules) == 6
    for validator in VALIDATORS.values():
        for rule in validator.rules():
            validator._rule({"rule": rule})  # compiles, or raises


def test_nodeholdings_crd_admits_what_the_agent_writes_and_kbl_reads_it_back() -> None:
    from topology.holdings import DataSetHoldings, NodeHoldings

    held = NodeHoldings(
        node="n1", endpoint="https://10.0.0.1:8090", heartbeat="2026-11-30T08:00:00Z", capacity_bytes=10, free_bytes=5,
        datasets={"ml/d": DataSetHoldings("ml", "d", "uid-1", ready={"replica": frozenset({0, 1, 2, 7})}, ready_bytes=4)},
    )
    obj = held.to_object(node_uid="uid-n1")
    obj["status"]["conditions"] = [{"type": "DiskFull", "status": "True", "reason": "NoSpace", "message": "quota"}]
    validator = CrdValidator(_crd("nodeholdings.kbl.io"))
    assert validator.errors(obj) == []
    assert NodeHoldings.from_object(obj).datasets["ml/d"].ready == {"replica": frozenset({0, 1, 2, 7})}
    obj["status"]["datasets"][0]["ready"] = {"replica": 3}
    assert validator.errors(obj)
