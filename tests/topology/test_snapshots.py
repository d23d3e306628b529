import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import EMBEDDED_NODE, SHARED_FIXTURES
from topology.datasets import Replicas, dataset_object, parse_index_rows
from topology.errors import SnapshotError
from topology.examples import as_list, make_cluster_nodes, node_template
from topology.nodes import Node, slim_node_object
from topology.snapshots import iter_file_objects, load_snapshot, read_file_objects, read_objects


def test_kubectl_list_of_mixed_kinds_loads_every_kind(tmp_path: Path, eks_node: dict[str, Any]) -> None:
    items = [
        eks_node,
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "x"}, "spec": {"containers": []}},
        {"apiVersion": "kbl.io/v1alpha1", "kind": "DataSet", "metadata": {"name": "d", "namespace": "x"},
         "spec": {"shards": 2, "shardSize": "1Gi", "redundancy": {"replicas": 1}}},
        {"apiVersion": "kbl.io/v1alpha1", "kind": "KBL", "metadata": {"name": "k", "namespace": "x"}, "spec": {}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}},
    ]
    path = tmp_path / "snap.json"
    path.write_text(json.dumps(as_list(items)))
    snap = load_snapshot(path)
    assert [len(snap.nodes), len(snap.pods), len(snap.datasets), len(snap.kbls)] == [1, 1, 1, 1]
    assert snap.ignored_kinds == {"ConfigMap": 1}
    assert snap.rejected == []


def test_bare_node_list_without_item_kinds_loads(tmp_path: Path) -> None:
    nodes = make_cluster_nodes(zones=1, racks_per_zone=1, hosts_per_rack=3)
    for n in nodes:
        del n["kind"]
    path = tmp_path / "nodes.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "NodeList", "items": nodes}))
    assert len(load_snapshot(path).nodes) == 3


def test_yaml_stream_loads(tmp_path: Path) -> None:
    nodes = make_cluster_nodes(zones=1, racks_per_zone=1, hosts_per_rack=2)
    path = tmp_path / "nodes.yaml"
    path.write_text(yaml.safe_dump_all(nodes))
    assert {n.name for n in load_snapshot(path).nodes} == {"node-0-0-0", "node-0-0-1"}


def test_one_bad_object_is_rejected_and_the_rest_load() -> None:
    nodes = make_cluster_nodes(zones=1, racks_per_zone=1, hosts_per_rack=3)
    nodes[1]["status"]["allocatable"]["memory"] = "twelve"
    snap = load_snapshot(as_list(nodes))
    assert len(snap.nodes) == 2
    assert len(snap.rejected) == 1
    assert "Node node-0-0-1: status.allocatable" in str(snap.rejected[0])


def test_duplicate_nodes_are_rejected_not_merged() -> None:
    nodes = make_cluster_nodes(zones=1, racks_per_zone=1, hosts_per_rack=1)
    snap = load_snapshot(as_list(nodes + nodes))
    assert len(snap.nodes) == 1
    assert "duplicate" in str(snap.rejected[0])


@pytest.mark.parametrize("text", ["{not json", "- [unclosed", "42"])
def test_unusable_file_is_a_snapshot_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(SnapshotError):
        load_snapshot(path)


def test_missing_file_is_a_snapshot_error(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match="cannot read snapshot"):
        load_snapshot(tmp_path / "nope.json")


def test_embedded_node_template_is_the_shared_real_fixture() -> None:
    shared = SHARED_FIXTURES / "eks-node.json"
    if not shared.exists():
        pytest.skip("shared fixtures are not beside this checkout")
    assert json.loads(shared.read_text()) == json.loads(EMBEDDED_NODE.read_text()) == node_template()


# ------------------------------------------------------------- the streamed reader of big files


def mixed_items(eks_node: dict[str, Any]) -> list[Any]:
    bad = json.loads(json.dumps(eks_node))
    bad["metadata"]["name"] = "bad"
    bad["status"]["allocatable"]["memory"] = "twelve"
    odd = json.loads(json.dumps(eks_node))
    odd["metadata"]["name"] = "odd"
    odd["spec"] = "not an object"
    return [
        eks_node,
        bad,
        odd,
        7,
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "x"}, "spec": {"containers": []}},
        {"apiVersion": "kbl.io/v1alpha1", "kind": "DataSet", "metadata": {"name": "d", "namespace": "x"},
         "spec": {"shards": 2, "shardSize": "1Gi", "redundancy": {"replicas": 1}},
         "status": {"placement": {"nodes": ["n"], "shards": [[0], []]}}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}},
    ]


def test_streamed_file_reading_types_the_same_snapshot_as_the_whole_file_reader(tmp_path: Path, eks_node: dict[str, Any]) -> None:
    path = tmp_path / "snap.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": mixed_items(eks_node)}))
    streamed = load_snapshot(path)
    whole = read_objects(read_file_objects(path))
    assert streamed.nodes == whole.nodes
    assert [p.name for p in streamed.pods] == [p.name for p in whole.pods]
    assert [d.key for d in streamed.datasets] == [d.key for d in whole.datasets]
    assert [str(e) for e in streamed.rejected] == [str(e) for e in whole.rejected]
    assert streamed.ignored_kinds == whole.ignored_kinds == {"ConfigMap": 1}
    assert len(streamed.rejected) == 3  # the bad quantity, the odd spec, the number


def test_streamed_node_keeps_only_the_fields_kbl_reads(tmp_path: Path, eks_node: dict[str, Any]) -> None:
    assert eks_node["status"]["images"]  # the real object carries its image list
    path = tmp_path / "snap.json"
    path.write_text(json.dumps({"kind": "NodeList", "items": [{k: v for k, v in eks_node.items() if k != "kind"}]}))
    (obj,) = list(iter_file_objects(path))
    assert obj["kind"] == "Node"
    assert "images" not in obj["status"]
    assert "managedFields" not in obj["metadata"]
    assert obj == slim_node_object({**eks_node, "kind": "Node"})
    assert Node.from_object(obj) == Node.from_object(eks_node)


@pytest.mark.parametrize("text", ['{"kind": "List", "items": [{"kind": "Node", "metadata": }]}', '{"kind": "List", "items": [{]}'])
def test_a_broken_item_in_a_big_file_is_a_snapshot_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(SnapshotError):
        load_snapshot(path)


_entry = st.one_of(st.integers(-2, 6), st.just(10**20), st.just(1.5), st.just(True), st.just("x"), st.none())


@settings(max_examples=150, deadline=None)
@given(
    rows=st.one_of(
        st.lists(st.lists(st.integers(0, 5), max_size=3), max_size=6),
        st.lists(st.one_of(st.lists(_entry, max_size=4), _entry), max_size=6),
    ),
    indent=st.sampled_from([None, 2]),
)
def test_a_placement_read_from_a_file_as_numbers_is_the_placement_read_from_lists(
    tmp_path_factory: pytest.TempPathFactory, rows: list[Any], indent: int | None
) -> None:
    obj = dataset_object("d", namespace="x", shards=max(1, len(rows)), shard_size="1Gi", redundancy=Replicas(3))
    obj["status"] = {"placement": {"nodes": [f"n{i}" for i in range(6)], "shards": rows}, "transfers": []}
    path = tmp_path_factory.mktemp("snap") / "snap.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [obj]}, indent=indent))
    streamed = load_snapshot(path)
    whole = read_objects(read_file_objects(path))
    assert [e.field for e in streamed.rejected] == [e.field for e in whole.rejected]  # 1e20 may print as a float
    assert len(streamed.datasets) == len(whole.datasets)
    for a, b in zip(streamed.datasets, whole.datasets, strict=True):
        assert a.placement is not None
        assert b.placement is not None
        assert a.placement.nodes == b.placement.nodes
        assert np.array_equal(a.placement.pieces, b.placement.pieces)


def test_rows_of_node_indexes_are_read_as_numbers_or_left_to_the_careful_reader() -> None:
    assert parse_index_rows(b"[[0, 1, 2],\n [3], []]").tolist() == [[0, 1, 2], [3, -1, -1], [-1, -1, -1]]  # type: ignore[union-attr]
    for text in (b"[]", b"[[0, -1]]", b"[[1.5]]", b"[[1],2]", b"[[1,,2]]", b"[[1]", b'[["a"]]', b"[[99999999999999999999]]", b"[[1]][[2]]"):
        assert parse_index_rows(text) is None, text
