"""``kbl reconciler``: offline dry runs and the options ``kbl controller`` gains."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kbl.cli import build_parser, main
from tests.dataplane.reconciler.worlds import cluster_nodes, dataset
from topology.examples import as_list
from topology.slices import shards_per_slice


def test_dry_run_on_a_snapshot_prints_the_planned_status_per_dataset_as_json_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = dataset("bad")
    bad["spec"]["redundancy"] = {"replicas": 3}
    bad["spec"]["failureDomain"] = "region"
    snapshot = tmp_path / "cluster.json"
    snapshot.write_text(json.dumps(as_list([*cluster_nodes(), dataset("d"), bad])))
    assert main(["reconciler", "--dry-run", "--snapshot", str(snapshot)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["dataset"] for line in lines] == ["default/bad", "default/d"]
    placed = {c["type"]: c["status"] for c in lines[1]["status"]["conditions"]}
    assert placed == {"Placed": "True", "Ready": "False", "Degraded": "False"}
    assert len(lines[1]["status"]["placement"]["shards"]) == 60
    assert {c["type"]: c["reason"] for c in lines[0]["status"]["conditions"]}["Placed"] == "PlacementFailed"


def test_a_snapshot_without_dry_run_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snapshot = tmp_path / "cluster.json"
    snapshot.write_text(json.dumps(as_list(cluster_nodes())))
    assert main(["reconciler", "--snapshot", str(snapshot)]) == 1
    assert "--dry-run" in capsys.readouterr().err


def test_kbl_controller_runs_the_reconciler_by_default_and_can_switch_it_off() -> None:
    parser = build_parser()
    assert parser.parse_args(["controller"]).reconciler is True
    args = parser.parse_args(["controller", "--no-reconciler", "--metrics-port", "9102", "--node-lost-grace-s", "60"])
    assert (args.reconciler, args.metrics_port, args.node_lost_grace_s) == (False, 9102, 60.0)


def test_the_agent_ttl_is_a_flag_of_both_commands_and_reaches_the_settings() -> None:
    from kbl.commands.reconciler import settings

    parser = build_parser()
    for command in ("controller", "reconciler"):
        args = parser.parse_args([command, "--agent-ttl-s", "45"])
        assert settings(args).agent_ttl_s == 45.0
    assert settings(parser.parse_args(["reconciler"])).agent_ttl_s == 120.0


def test_inline_placement_bytes_is_a_flag_of_both_commands_and_reaches_the_settings(capsys: pytest.CaptureFixture[str]) -> None:
    """``--inline-placement-bytes N``: unset keeps the settings' default (the one its help names),
    0 slices every target, a negative size is refused as a usage error."""
    from kbl.commands.reconciler import settings
    from topology.errors import KblError
    from topology.slices import INLINE_PLACEMENT_BYTES

    parser = build_parser()
    for command in ("controller", "reconciler"):
        assert settings(parser.parse_args([command])).inline_placement_bytes == INLINE_PLACEMENT_BYTES
        for size in ("0", "1048576"):
            assert settings(parser.parse_args([command, "--inline-placement-bytes", size])).inline_placement_bytes == int(size)
        with pytest.raises(KblError, match="sizes"):
            settings(parser.parse_args([command, "--inline-placement-bytes", "-1"]))
    with pytest.raises(SystemExit):
        parser.parse_args(["reconciler", "--help"])
    assert f"(default {INLINE_PLACEMENT_BYTES}; 0: every target is sliced)" in " ".join(capsys.readouterr().out.split())


def test_a_dry_run_with_inline_placement_bytes_0_prints_the_slice_index(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snapshot = tmp_path / "cluster.json"
    snapshot.write_text(json.dumps(as_list([*cluster_nodes(), dataset("d")])))
    assert main(["reconciler", "--dry-run", "--snapshot", str(snapshot), "--inline-placement-bytes", "0"]) == 0
    (line,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert line["status"]["placement"]["slices"]["shardsPerSlice"] == shards_per_slice(3, 60)  # 256 pieces // 3 replicas
    assert len(line["status"]["placement"]["slices"]["versions"]) == 1
