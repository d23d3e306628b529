"""``kbl controller --once --dry-run --snapshot FILE`` plans offline and prints JSON lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kbl.cli import main
from kbl.commands.controller import subnets
from tests.placement.scenarios import base_nodes, kbl_object, placed_dataset, pod_object
from topology.errors import KblError
from topology.examples import as_list


def write_snapshot(tmp_path: Path) -> Path:
    objects = [*base_nodes(), kbl_object("genomics"), placed_dataset("reads", [["gen-b0", "gen-b1"]])]
    objects += [pod_object(f"p{i}", kbl="genomics", dataset="reads", cpu="3") for i in range(2)]
    path = tmp_path / "snap.json"
    path.write_text(json.dumps(as_list(objects)))
    return path


def test_dry_run_on_a_snapshot_prints_one_json_action_per_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["controller", "--once", "--dry-run", "--snapshot", str(write_snapshot(tmp_path))])
    out = capsys.readouterr().out
    assert code == 0
    actions = [json.loads(line) for line in out.splitlines()]
    assert [a["action"] for a in actions] == ["CreateNodeGroup"]
    assert (actions[0]["zone"], actions[0]["desired"], actions[0]["kbl"]) == ("us-east-1b", 2, "default/genomics")


def test_snapshot_without_dry_run_is_refused_with_a_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["controller", "--once", "--snapshot", str(write_snapshot(tmp_path))]) == 1
    assert "add --dry-run" in capsys.readouterr().err


def test_subnet_arguments_are_checked() -> None:
    assert subnets(["us-east-1a=subnet-1", "us-east-1a=subnet-2"]) == {"us-east-1a": ["subnet-1", "subnet-2"]}
    with pytest.raises(KblError, match="expected ZONE=SUBNET"):
        subnets(["subnet-1"])
