import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import EMBEDDED_NODE, SHARED_FIXTURES
from topology.errors import SnapshotError
from topology.examples import as_list, make_cluster_nodes, node_template
from topology.snapshots import load_snapshot


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
