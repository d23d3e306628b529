"""``kbl place`` on a snapshot built from the real EKS node objects."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import yaml

from kbl.cli import main
from topology.datasets import DataSet, Erasure, Replicas, dataset_object
from topology.examples import as_list, make_cluster_nodes
from topology.nodes import Node


def write_nodes(path: Path, *, zones: int, racks_per_zone: int, hosts_per_rack: int) -> list[Node]:
    objs = make_cluster_nodes(zones=zones, racks_per_zone=racks_per_zone, hosts_per_rack=hosts_per_rack)
    path.write_text(json.dumps(as_list(objs)))
    return [Node.from_object(o) for o in objs]


def test_place_writes_the_dataset_with_a_rack_spread_placement(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nodes = write_nodes(tmp_path / "nodes.json", zones=3, racks_per_zone=2, hosts_per_rack=2)
    ds = dataset_object("train", namespace="ml", shards=300, shard_size="2Gi", redundancy=Replicas(3), failure_domain="rack")
    ds["metadata"]["labels"] = {"team": "ml"}
    (tmp_path / "ds.yaml").write_text(yaml.safe_dump(ds))
    out = tmp_path / "placed.json"
    assert main(["place", "--nodes", str(tmp_path / "nodes.json"), "--dataset", str(tmp_path / "ds.yaml"), "-o", str(out)]) == 0
    obj = json.loads(out.read_text())
    assert obj["metadata"]["labels"] == {"team": "ml"}
    placed = DataSet.from_object(obj)
    assert placed.placement is not None
    racks = {n.name: n.rack for n in nodes}
    for s in range(300):
        holders = placed.placement.holders(s)
        assert len({racks[h] for h in holders}) == 3
    err = capsys.readouterr().err
    assert "fresh placement over 12 eligible nodes" in err
    assert "rule violations: 0" in err


def test_place_with_previous_moves_only_what_a_new_node_needs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_nodes(tmp_path / "small.json", zones=3, racks_per_zone=2, hosts_per_rack=2)
    write_nodes(tmp_path / "big.json", zones=3, racks_per_zone=2, hosts_per_rack=3)
    ds = dataset_object("s", shards=600, shard_size="1Gi", redundancy=Erasure(2, 1), failure_domain="zone")
    (tmp_path / "ds.json").write_text(json.dumps(ds))
    first = tmp_path / "first.json"
    assert main(["place", "--nodes", str(tmp_path / "small.json"), "--dataset", str(tmp_path / "ds.json"), "-o", str(first)]) == 0
    capsys.readouterr()
    args = ["place", "--nodes", str(tmp_path / "big.json"), "--dataset", str(tmp_path / "ds.json"), "--previous", str(first)]
    assert main(args) == 0
    captured = capsys.readouterr()
    before = DataSet.from_object(json.loads(first.read_text())).placement
    after = DataSet.from_object(json.loads(captured.out)).placement
    assert before is not None
    assert after is not None
    moved = Counter(after.holders(s)[p] for s in range(600) for p in range(3) if after.holders(s)[p] != before.holders(s)[p])
    assert set(moved) <= {n for n in after.nodes if n.endswith("-2")}, "only the new hosts receive pieces"
    assert "pieces moved" in captured.err
    assert "move shard" in captured.err


def test_a_bad_dataset_exits_1_with_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_nodes(tmp_path / "nodes.json", zones=1, racks_per_zone=1, hosts_per_rack=2)
    bad = {"apiVersion": "kbl.io/v1alpha1", "kind": "DataSet", "metadata": {"name": "b"}, "spec": {"shards": 4, "shardSize": "1Gi"}}
    (tmp_path / "ds.json").write_text(json.dumps(bad))
    assert main(["place", "--nodes", str(tmp_path / "nodes.json"), "--dataset", str(tmp_path / "ds.json")]) == 1
    assert "spec.redundancy" in capsys.readouterr().err


def test_redundancy_that_cannot_be_honoured_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_nodes(tmp_path / "nodes.json", zones=1, racks_per_zone=2, hosts_per_rack=2)
    ds = dataset_object("z", shards=4, shard_size="1Gi", redundancy=Replicas(2), failure_domain="zone")
    (tmp_path / "ds.json").write_text(json.dumps(ds))
    assert main(["place", "--nodes", str(tmp_path / "nodes.json"), "--dataset", str(tmp_path / "ds.json")]) == 1
    assert "at least 2 domains are needed" in capsys.readouterr().err


def test_place_warns_when_the_placed_object_is_larger_than_an_api_server_stores(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Offline planning has no size limit, but the reconciler would not write such a placement:
    ``kbl place`` says so (here with a 20 KB limit standing for etcd's 1.5 MiB)."""
    from dataplane.reconciler.settings import MAX_OBJECT_BYTES
    from kbl.commands import place as command

    assert command.ETCD_MAX_REQUEST_BYTES == MAX_OBJECT_BYTES  # one limit, written twice (the CLI stays light)
    write_nodes(tmp_path / "nodes.json", zones=3, racks_per_zone=2, hosts_per_rack=2)
    for shards, warned in ((100, False), (3000, True)):
        (tmp_path / "ds.json").write_text(json.dumps(dataset_object("d", shards=shards, shard_size="1Gi", redundancy=Replicas(3))))
        monkeypatch.setattr(command, "ETCD_MAX_REQUEST_BYTES", 20_000)
        out = tmp_path / "placed.json"
        assert main(["place", "--nodes", str(tmp_path / "nodes.json"), "--dataset", str(tmp_path / "ds.json"), "-o", str(out)]) == 0
        err = capsys.readouterr().err
        assert ("PlacementTooLarge" in err) is warned
        assert DataSet.from_object(json.loads(out.read_text())).placement is not None  # written anyway: offline planning
