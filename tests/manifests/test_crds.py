"""The shipped DataSet and KBL CRDs: structural, and in agreement with kbl's own parsers.

Invariant: whatever the CRD admits, ``DataSet.from_object``/``KBL.from_object`` accept (the
CRD is never looser than the code that reads the objects); broken objects are refused by both.
"""

from __future__ import annotations

import copy
import random
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.manifests.crdschemas import CrdValidator, schema_nodes
from tests.manifests.shipped import CRDS, example_objects, load_docs
from topology.datasets import DataSet
from topology.errors import KblError
from topology.kbls import KBL

Obj = dict[str, Any]
PARSERS: dict[str, Callable[[Obj], object]] = {"DataSet": DataSet.from_object, "KBL": KBL.from_object}


def _crd(name: str) -> Obj:
    docs = load_docs(CRDS / f"{name}.yaml")
    assert len(docs) == 1
    return docs[0]


VALIDATORS = {"DataSet": CrdValidator(_crd("datasets.kbl.io")), "KBL": CrdValidator(_crd("kbls.kbl.io"))}


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


@pytest.mark.parametrize("name", ["datasets.kbl.io", "kbls.kbl.io", "nodeholdings.kbl.io"])
def test_crd_has_status_subresource_and_printer_columns_that_resolve(name: str) -> None:
    crd = _crd(name)
    (version,) = crd["spec"]["versions"]
    assert version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
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
    assert len(rules) == 3
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
