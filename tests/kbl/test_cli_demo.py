"""`kbl demo` produces its table, plot, report and figures without a cluster."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kbl.cli import main


def test_demo_quick_writes_table_plot_report_and_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "optimum" in printed
    assert "stork-like" in printed
    assert "kbl" in printed
    png = (out / "locality.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(png) > 10_000
    report = (out / "report.md").read_text()
    assert "| policy |" in report
    assert "cost / optimum" in report
    assert "locality.png" in report
    results = json.loads((out / "results.json").read_text())
    labels = [p["label"] for p in results["policies"]]
    assert labels[0].startswith("default")
    assert any(label.startswith("kbl") for label in labels)
    assert all(p["pending"] == 0 and p["ratio_to_optimum"] >= 1.0 - 1e-9 for p in results["policies"])
    # The companion controller's node-group request for the KBL whose pods fit nowhere.
    assert "companion controller" in printed
    assert "r6i.4xlarge" in printed
    assert "## Companion controller" in report
    (request,) = results["capacity"]["requests"]
    assert results["capacity"]["existing_nodes_matching"] == 0
    assert request["instance_type"] == "r6i.4xlarge"
    assert request["count"] >= results["capacity"]["pods"]  # the pods, and the next stage pre-warmed
    assert "stage call" in request["why"]
    by_zone = results["capacity"]["bytes_by_zone"]
    assert by_zone[request["zone"]] == max(by_zone.values())  # grown where the pods' data lives
    assert f"| {request['group']} | r6i.4xlarge | {request['count']} | {request['zone']} |" in report
    assert [request["group"], request["zone"], request["count"]] in results["capacity"]["cloud_groups"]
    snapshot = json.loads((out / "snapshot.json").read_text())
    assert {o["kind"] for o in snapshot["items"]} == {"Node", "DataSet"}
    # The data plane acted for real: DataSets Ready, a node and a rack lost, a flipped byte found,
    # every replica on disk byte-identical to the generated source, every erasure-coded shard read
    # back whole through an agent, nothing lost.
    plane = results["dataPlane"]
    assert plane["ready"] == {"replicated": True, "erasure": True}
    assert plane["shards_lost"] == 0
    assert plane["corrupt_found"] >= 1
    assert plane["caught_on_read"] >= 1, "the flipped byte was caught by a read (the scrub runs daily, as in the chart)"
    assert plane["read_after_flip_identical"], "the read that met the bad segment was answered with the right bytes"
    assert plane["repaired_by_kind"]["peer-zone"] > 0, "repairs came from peers in the zone"
    assert plane["rebuilt_fragments"] >= 1, "lost erasure fragments were rebuilt from k others in their zone"
    assert len(plane["killed_nodes"]) >= 2
    assert plane["replicas_checked"] > 0
    assert plane["replicas_identical"] == plane["replicas_checked"]
    assert plane["erasure_shards_checked"] > 0
    assert plane["erasure_shards_identical"] == plane["erasure_shards_checked"]
    assert plane["repaired_bytes"] > 0
    assert "## Data plane" in report
    final = json.loads((out / "data" / "datasets.json").read_text())["items"]
    assert {d["metadata"]["name"] for d in final} == {"replicated", "erasure"}
    assert all(not (d["status"].get("transfers") or []) for d in final)
    source = out / "data" / "source" / "replicated"
    for name in plane["killed_nodes"]:
        assert not (out / "data" / "nodes" / name).exists()
    survivors = [p for p in (out / "data" / "nodes").iterdir() if p.is_dir()]
    copies = [f for node in survivors for f in (node / "demo" / "replicated").glob("part-*.bin")]
    assert copies
    assert all(f.read_bytes() == (source / f.name).read_bytes() for f in copies)
