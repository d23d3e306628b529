import json
from pathlib import Path

import pytest

from kbl.cli import main
from topology.datasets import Replicas, dataset_object
from topology.examples import as_list, make_cluster_nodes


def write_snapshot(path: Path, *, crowd: bool = False, bad: bool = False) -> Path:
    nodes = make_cluster_nodes(zones=2, racks_per_zone=2, hosts_per_rack=2)
    ds = dataset_object("d", namespace="x", shards=2, shard_size="1Gi", redundancy=Replicas(2), failure_domain="zone")
    names = [n["metadata"]["name"] for n in nodes]
    # node-0-* are in zone a, node-1-* in zone b
    second = names.index("node-0-1-0") if crowd else names.index("node-1-0-0")
    ds["status"] = {"placement": {"nodes": names, "shards": [[0, second], [1, names.index("node-1-1-1")]]}}
    items = [*nodes, ds]
    if bad:
        items.append({"kind": "DataSet", "metadata": {"name": "broken", "namespace": "x"}, "spec": {"shards": -1}})
    path.write_text(json.dumps(as_list(items)))
    return path


def test_topology_summary_prints_tree_and_datasets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topology", "--snapshot", str(write_snapshot(tmp_path / "s.json"))]) == 0
    out = capsys.readouterr().out
    assert "region us-east-1: 8 nodes" in out
    assert "zone us-east-1a: 4 nodes" in out
    assert "x/d" in out


def test_topology_json_reports_two_replicas_in_one_zone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topology", "--json", "--snapshot", str(write_snapshot(tmp_path / "s.json", crowd=True))]) == 0
    facts = json.loads(capsys.readouterr().out)
    violations = facts["datasets"][0]["violations"]
    assert len(violations) == 1
    assert "same-domain" in violations[0]
    assert "x/d[0]" in violations[0]


def test_topology_reports_rejected_objects_and_exits_nonzero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topology", "--snapshot", str(write_snapshot(tmp_path / "s.json", bad=True))]) == 1
    assert "DataSet x/broken: spec.shards" in capsys.readouterr().out


def test_missing_snapshot_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topology", "--snapshot", str(tmp_path / "none.json")]) == 1
    assert "cannot read snapshot" in capsys.readouterr().err
