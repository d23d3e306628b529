"""``kbl place`` reads its files with the one object reader: unreadable input is a clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kbl.cli import main
from topology.datasets import Replicas, dataset_object
from topology.examples import as_list, make_cluster_nodes


def test_a_dataset_file_that_is_not_utf8_exits_1_with_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "nodes.json").write_text(json.dumps(as_list(make_cluster_nodes(zones=1, racks_per_zone=1, hosts_per_rack=2))))
    text = json.dumps(dataset_object("l", shards=2, shard_size="1Gi", redundancy=Replicas(1)))
    (tmp_path / "ds.json").write_bytes(text.replace('"l"', '"caf\xe9"').encode("latin-1"))  # é as one Latin-1 byte
    assert main(["place", "--nodes", str(tmp_path / "nodes.json"), "--dataset", str(tmp_path / "ds.json")]) == 1
    err = capsys.readouterr().err
    assert "is not UTF-8 text" in err
    assert "Traceback" not in err


def test_a_missing_dataset_file_exits_1_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "nodes.json").write_text(json.dumps(as_list(make_cluster_nodes(zones=1, racks_per_zone=1, hosts_per_rack=2))))
    assert main(["place", "--nodes", str(tmp_path / "nodes.json"), "--dataset", str(tmp_path / "absent.json")]) == 1
    assert "absent.json" in capsys.readouterr().err
