"""``kbl controller --provider karpenter --dry-run``: the whole NodePool it would create, as JSON lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller.providers.karpenter import NODEPOOL_LABEL, KarpenterSettings, node_pool
from kbl.cli import main
from tests.controller.karpenter.crds import validator
from tests.controller.karpenter.test_nodepools import spec
from tests.kbl.test_cli_controller import write_snapshot
from topology import labels
from topology.examples import as_list


def test_dry_run_on_a_snapshot_prints_the_whole_nodepool_and_its_placeholders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snapshot = str(write_snapshot(tmp_path))
    code = main(["controller", "--once", "--dry-run", "--provider", "karpenter", "--node-class", "data", "--snapshot", snapshot])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0
    assert [line.get("action") or line["karpenter"] for line in lines] == ["CreateNodeGroup", "create", "create"]
    pool, placeholders = lines[1]["object"], lines[2]["object"]
    assert validator("NodePool").errors(pool) == []
    assert pool["metadata"]["name"] == lines[0]["group"]
    requirements = {r["key"]: r["values"] for r in pool["spec"]["template"]["spec"]["requirements"]}
    assert requirements[labels.ZONE] == ["us-east-1b"]  # where the data is
    assert pool["spec"]["template"]["spec"]["nodeClassRef"]["name"] == "data"
    assert placeholders["kind"] == "Deployment"
    assert placeholders["spec"]["replicas"] == lines[0]["desired"]
    assert placeholders["spec"]["template"]["spec"]["nodeSelector"] == {NODEPOOL_LABEL: pool["metadata"]["name"]}


def test_dry_run_sees_the_nodepools_a_snapshot_holds_and_plans_a_resize(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A snapshot that includes ``kubectl get nodepools -o json``: the group exists, so no create."""
    path = write_snapshot(tmp_path)
    objects = json.loads(path.read_text())["items"]
    group = spec(name="kbl-default-genomics-us-east-1b", zone="us-east-1b", instance_type="m6i.xlarge", desired=0, max_size=10)
    path.write_text(json.dumps(as_list([*objects, node_pool(group, KarpenterSettings())])))
    assert main(["controller", "--once", "--dry-run", "--provider", "karpenter", "--snapshot", str(path)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line.get("action") or line["karpenter"] for line in lines] == ["ResizeNodeGroup", "patch"]
    assert lines[1]["patch"] == {"spec": {"replicas": lines[0]["desired"]}}
